use std::fmt;

use url::Url;

use crate::error::Error;

/// Longest URL accepted, in characters, before and after normalization.
pub const MAX_LEN: usize = 2048;

/// An absolute http(s) URL with a host and no credentials, normalized by the
/// WHATWG rules (lower-case scheme and host, default port dropped, path
/// percent-encoded), so that one URL spelled two ways is recognised as one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetUrl(Url);

impl TargetUrl {
    pub fn parse(field: &'static str, raw: &str) -> Result<Self, Error> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(Error::invalid(field, "is required"));
        }
        let too_long = || Error::invalid(field, format!("must be at most {MAX_LEN} characters"));
        // Counted before trimming: what was sent is what is limited.
        if raw.chars().count() > MAX_LEN {
            return Err(too_long());
        }
        // The WHATWG parser would drop tabs and newlines silently and accept
        // what is left: a URL with control characters is not what was meant.
        if let Some(c) = trimmed.chars().find(|c| c.is_control()) {
            return Err(Error::invalid(
                field,
                format!("must not contain control characters (found {c:?})"),
            ));
        }
        let url = Url::parse(trimmed).map_err(|e| {
            Error::invalid(
                field,
                format!("is not an absolute URL ({e}); expected e.g. https://example.com/health"),
            )
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Error::invalid(
                field,
                format!(
                    "scheme {:?} is not supported; use http or https",
                    url.scheme()
                ),
            ));
        }
        match url.host() {
            None => return Err(Error::invalid(field, "must have a host")),
            Some(url::Host::Domain(name)) => check_host_name(field, name)?,
            Some(_) => {}
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Error::invalid(
                field,
                "must not contain a user name or password",
            ));
        }
        if url.as_str().len() > MAX_LEN {
            return Err(too_long());
        }
        Ok(Self(url))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    pub fn as_url(&self) -> &Url {
        &self.0
    }

    /// The host its probes go to, as counted for the per-host rate: the
    /// normalized host without a trailing dot (`[::1]` for IPv6).
    pub fn host_key(&self) -> &str {
        host_key(&self.0)
    }
}

/// The per-host rate's key of any parsed URL (see [`TargetUrl::host_key`]);
/// also for URLs read back from storage.
pub fn host_key(url: &Url) -> &str {
    let host = url.host_str().unwrap_or_default();
    host.strip_suffix('.').unwrap_or(host)
}

/// RFC 1035: a name of at most 253 characters, in labels of 1 to 63.
fn check_host_name(field: &'static str, name: &str) -> Result<(), Error> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() {
        return Err(Error::invalid(field, "must have a host"));
    }
    if name.len() > 253 {
        return Err(Error::invalid(
            field,
            format!(
                "host name is {} characters; at most 253 are allowed",
                name.len()
            ),
        ));
    }
    if let Some(label) = name.split('.').find(|l| l.is_empty() || l.len() > 63) {
        return Err(Error::invalid(
            field,
            format!(
                "host name label {:?} must be 1 to 63 characters",
                label.chars().take(70).collect::<String>()
            ),
        ));
    }
    Ok(())
}

impl fmt::Display for TargetUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_follow_rfc_1035_lengths() {
        let label = |n: usize| "a".repeat(n);
        assert!(TargetUrl::parse("url", &format!("https://{}.com/", label(63))).is_ok());
        let err = TargetUrl::parse("url", &format!("https://{}.com/", label(64))).unwrap_err();
        assert!(err.to_string().contains("1 to 63"), "{err}");
        let long = [label(60).as_str(); 5].join(".");
        let err = TargetUrl::parse("url", &format!("https://{long}/")).unwrap_err();
        assert!(err.to_string().contains("at most 253"), "{err}");
        assert!(TargetUrl::parse("url", "https://a..b/").is_err());
        assert!(TargetUrl::parse("url", "https://example.com./").is_ok());
    }

    #[test]
    fn control_characters_are_refused_not_stripped() {
        for bad in [
            "https://exa\tmple.com/",
            "https://example.com/a\nb",
            "https://example.com/\u{7}",
        ] {
            let err = TargetUrl::parse("url", bad).unwrap_err();
            assert!(
                err.to_string().contains("control characters"),
                "{bad:?}: {err}"
            );
        }
    }

    #[test]
    fn normalizes_case_and_default_port() {
        let u = TargetUrl::parse("url", " HTTPS://Example.COM:443/Path ").unwrap();
        assert_eq!(u.as_str(), "https://example.com/Path");
    }

    #[test]
    fn rejects_what_cannot_be_probed() {
        for bad in [
            "",
            "example.com",
            "/relative",
            "ftp://example.com/",
            "file:///etc/passwd",
            "javascript:alert(1)",
            "http://",
            "http://user:pass@example.com/",
            "http://user@example.com/",
            "http://exa mple.com/",
        ] {
            assert!(
                TargetUrl::parse("url", bad).is_err(),
                "{bad:?} was accepted"
            );
        }
    }

    #[test]
    fn length_limit_holds() {
        let base = "https://example.com/";
        let ok = format!("{base}{}", "a".repeat(MAX_LEN - base.len()));
        assert!(TargetUrl::parse("url", &ok).is_ok());
        let long = format!("{ok}a");
        assert!(TargetUrl::parse("url", &long).is_err());
        // Short input that grows past the limit when percent-encoded.
        let grows = format!("{base}{}", "é".repeat(1000));
        assert!(TargetUrl::parse("url", &grows).is_err());
    }
}
