//! Assertions: what a user expects of a URL's response beyond "it answered".
//!
//! A URL has at most [`MAX_ASSERTIONS`] of them, each with a severity (a
//! failure makes the probe `DOWN`, the default, or `DEGRADED`) and one check:
//! allowed status codes (which replace the default 200–399 rule), a largest
//! latency, text the body contains or does not contain, a header's value, a
//! JSON value at an RFC 6901 pointer, or days left on the TLS certificate.
//! Every text is at most [`MAX_TEXT_BYTES`]; there are no regular
//! expressions (no pattern can make a probe expensive).
//!
//! Built only through the parsing constructors below, which name the field
//! path of what they refuse (`assertions[2].json.pointer`); stored as JSON
//! (`Assertions::to_json`) and read back without checks (it was checked
//! when written).
//!
//! [`Assertions::judge`] evaluates them on what the probe already has: its
//! status, latency, headers, the part of the body it read (only kept when a
//! body or JSON check needs it) and the certificate of its own handshake.

use std::{borrow::Cow, time::Duration};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::verdict::{FailedAssertion, Verdict};
use crate::error::Error;

/// Most assertions one URL may have.
pub const MAX_ASSERTIONS: usize = 20;
/// Longest text an assertion may hold (a header name or value, a body
/// text, a JSON pointer, a JSON value written out, a status range), in bytes.
pub const MAX_TEXT_BYTES: usize = 1024;
/// Most ranges one status assertion may list.
pub const MAX_STATUS_RANGES: usize = 50;
/// Longest `max_latency`.
pub const MAX_LATENCY_LIMIT: Duration = Duration::from_secs(3600);
/// Most days a `tls_days_left` may ask for (ten years).
pub const MAX_TLS_DAYS: u32 = 3650;
/// Longest failure message kept with a status, in bytes.
const MAX_MESSAGE: usize = 200;

/// What a failing assertion makes the probe.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    #[default]
    Down,
    Degraded,
}

impl Severity {
    #[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
    fn is_down(&self) -> bool {
        *self == Self::Down
    }
}

/// How a header's value is matched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeaderMatch {
    Equals(String),
    Contains(String),
}

/// One check of a response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// Allowed status codes, as inclusive ranges.
    Status(Vec<(u16, u16)>),
    /// The largest latency allowed, in microseconds.
    MaxLatencyUs(u64),
    BodyContains(String),
    BodyNotContains(String),
    Header {
        /// Lower-case, as HTTP/2 and `http::HeaderName` spell it.
        name: String,
        #[serde(flatten)]
        expect: HeaderMatch,
    },
    Json {
        pointer: String,
        value: serde_json::Value,
    },
    /// Fewest days the certificate must still be valid for.
    TlsDaysLeft(u32),
}

/// One assertion: a check and what its failure makes the probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assertion {
    #[serde(default, skip_serializing_if = "Severity::is_down")]
    pub severity: Severity,
    #[serde(flatten)]
    pub check: Check,
}

/// A URL's assertions, in the order the user gave them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Assertions(Vec<Assertion>);

/// What a probe saw of a response, for [`Assertions::judge`].
#[derive(Debug, Clone, Copy)]
pub struct Response<'a> {
    pub status: u16,
    /// From sending the request to the response head.
    pub latency: Duration,
    pub headers: &'a http::HeaderMap,
    /// The part of the body read (`None` when no check needed it).
    pub body: Option<&'a [u8]>,
    /// Whether the body went on past what was read.
    pub body_cut: bool,
    /// When the leaf certificate of the probe's TLS handshake expires.
    pub tls_not_after: Option<DateTime<Utc>>,
    /// When the probe was sent.
    pub now: DateTime<Utc>,
}

/// What the assertions say of one response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judgement {
    pub verdict: Verdict,
    pub failed: Vec<FailedAssertion>,
}

/// `assertions[3]` and the like, under `prefix` (`""`, or `"url."` in UpdateUrl).
fn path(prefix: &str, index: usize, rest: &str) -> Cow<'static, str> {
    Cow::Owned(format!("{prefix}assertions[{index}]{rest}"))
}

/// A text of at most [`MAX_TEXT_BYTES`], not empty unless `may_be_empty`.
fn text(field: Cow<'static, str>, raw: String, may_be_empty: bool) -> Result<String, Error> {
    if raw.len() > MAX_TEXT_BYTES {
        return Err(Error::invalid(
            field,
            format!(
                "must be at most {MAX_TEXT_BYTES} bytes (it has {})",
                raw.len()
            ),
        ));
    }
    if raw.is_empty() && !may_be_empty {
        return Err(Error::invalid(field, "must not be empty"));
    }
    Ok(raw)
}

impl Assertion {
    /// An assertion whose check was parsed by one of the `Check` constructors.
    pub fn new(severity: Severity, check: Check) -> Self {
        Self { severity, check }
    }
}

/// A field of one assertion, for the constructors below: the assertion's
/// place in the request, so an error names its whole path.
#[derive(Debug, Clone, Copy)]
pub struct Place<'a> {
    /// `""` (AddUrl) or `"url."` (UpdateUrl).
    pub prefix: &'a str,
    pub index: usize,
}

impl Place<'_> {
    pub fn field(&self, rest: &str) -> Cow<'static, str> {
        path(self.prefix, self.index, rest)
    }
}

impl Check {
    /// Status codes as ranges (`"200-299"`) or single codes (`"301"`), 100 to 599.
    pub fn status(at: Place<'_>, codes: &[String]) -> Result<Self, Error> {
        if codes.is_empty() {
            return Err(Error::invalid(
                at.field(".status.codes"),
                "must list at least one code or range, e.g. \"200-299\"",
            ));
        }
        if codes.len() > MAX_STATUS_RANGES {
            return Err(Error::invalid(
                at.field(".status.codes"),
                format!("must list at most {MAX_STATUS_RANGES} codes or ranges"),
            ));
        }
        let mut ranges = Vec::with_capacity(codes.len());
        for (i, raw) in codes.iter().enumerate() {
            let field = at.field(&format!(".status.codes[{i}]"));
            let raw = text(field.clone(), raw.clone(), false)?;
            let code = |s: &str| {
                s.trim()
                    .parse::<u16>()
                    .ok()
                    .filter(|c| (100..=599).contains(c))
            };
            let range = match raw.split_once('-') {
                Some((a, b)) => code(a).zip(code(b)),
                None => code(&raw).map(|c| (c, c)),
            };
            match range {
                Some((from, to)) if from <= to => ranges.push((from, to)),
                Some((from, to)) => {
                    return Err(Error::invalid(
                        field,
                        format!(
                            "{raw:?} is an empty range: {from} is above {to}; write \"{to}-{from}\""
                        ),
                    ));
                }
                None => {
                    return Err(Error::invalid(
                        field,
                        format!(
                            "{raw:?} is not a status code or range; write a code from 100 to 599 (\"301\") or a range (\"200-299\")"
                        ),
                    ));
                }
            }
        }
        Ok(Self::Status(ranges))
    }

    /// A largest latency: more than zero, at most [`MAX_LATENCY_LIMIT`].
    pub fn max_latency(at: Place<'_>, latency: Option<Duration>) -> Result<Self, Error> {
        match latency {
            Some(d) if !d.is_zero() && d <= MAX_LATENCY_LIMIT => Ok(Self::MaxLatencyUs(
                u64::try_from(d.as_micros()).unwrap_or(u64::MAX),
            )),
            _ => Err(Error::invalid(
                at.field(".max_latency"),
                "must be a duration above 0 and at most 1h, e.g. \"0.5s\"",
            )),
        }
    }

    pub fn body_contains(at: Place<'_>, raw: String) -> Result<Self, Error> {
        text(at.field(".body_contains"), raw, false).map(Self::BodyContains)
    }

    pub fn body_not_contains(at: Place<'_>, raw: String) -> Result<Self, Error> {
        text(at.field(".body_not_contains"), raw, false).map(Self::BodyNotContains)
    }

    /// A header (its name as HTTP allows it) whose value equals `equals` or
    /// contains `contains` (one of the two; `contains` not empty).
    pub fn header(
        at: Place<'_>,
        name: String,
        equals: Option<String>,
        contains: Option<String>,
    ) -> Result<Self, Error> {
        let field = at.field(".header.name");
        let name = text(field.clone(), name, false)?;
        let name = http::HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| {
            Error::invalid(
                field,
                format!("{name:?} is not a header name (letters, digits and !#$%&'*+-.^_`|~)"),
            )
        })?;
        let expect = match (equals, contains) {
            (Some(v), None) => HeaderMatch::Equals(text(at.field(".header.equals"), v, true)?),
            (None, Some(v)) => HeaderMatch::Contains(text(at.field(".header.contains"), v, false)?),
            _ => {
                return Err(Error::invalid(
                    at.field(".header"),
                    "must set one of equals or contains",
                ));
            }
        };
        Ok(Self::Header {
            name: name.as_str().to_owned(),
            expect,
        })
    }

    /// An RFC 6901 pointer (`""` for the whole document, else `/`-separated
    /// tokens with `~0` for `~` and `~1` for `/`) and the value expected
    /// there (`None`: JSON null).
    pub fn json(
        at: Place<'_>,
        pointer: String,
        value: Option<serde_json::Value>,
    ) -> Result<Self, Error> {
        let field = at.field(".json.pointer");
        let pointer = text(field.clone(), pointer, true)?;
        if let Some(why) = pointer_error(&pointer) {
            return Err(Error::invalid(
                field,
                format!("{pointer:?} is not a JSON pointer (RFC 6901): {why}"),
            ));
        }
        // Unset is JSON null (proto3 JSON writes a null `Value` as unset).
        let value = whole_numbers(value.unwrap_or(serde_json::Value::Null));
        let written = serde_json::to_string(&value).unwrap_or_default();
        text(at.field(".json.value"), written, false)?;
        Ok(Self::Json { pointer, value })
    }

    /// Fewest days the certificate must still be valid for: 1 to [`MAX_TLS_DAYS`].
    pub fn tls_days_left(at: Place<'_>, days: i32) -> Result<Self, Error> {
        u32::try_from(days)
            .ok()
            .filter(|d| (1..=MAX_TLS_DAYS).contains(d))
            .map(Self::TlsDaysLeft)
            .ok_or_else(|| {
                Error::invalid(
                    at.field(".tls_days_left"),
                    format!("must be between 1 and {MAX_TLS_DAYS} days"),
                )
            })
    }

    fn needs_body(&self) -> bool {
        matches!(
            self,
            Self::BodyContains(_) | Self::BodyNotContains(_) | Self::Json { .. }
        )
    }
}

/// Why `pointer` is not an RFC 6901 JSON pointer, if it is not.
fn pointer_error(pointer: &str) -> Option<&'static str> {
    if !pointer.is_empty() && !pointer.starts_with('/') {
        return Some("it must be empty (the whole document) or start with \"/\"");
    }
    let mut chars = pointer.chars();
    while let Some(c) = chars.next() {
        if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
            return Some("\"~\" must be followed by 0 (for ~) or 1 (for /)");
        }
    }
    None
}

/// At most [`MAX_ASSERTIONS`] assertions.
pub fn check_count(prefix: &str, n: usize) -> Result<(), Error> {
    if n > MAX_ASSERTIONS {
        return Err(Error::invalid(
            format!("{prefix}assertions"),
            format!("must have at most {MAX_ASSERTIONS} assertions (it has {n})"),
        ));
    }
    Ok(())
}

impl Assertions {
    /// A URL's assertions: at most [`MAX_ASSERTIONS`]; each one already parsed.
    pub fn new(prefix: &str, list: Vec<Assertion>) -> Result<Self, Error> {
        check_count(prefix, list.len())?;
        Ok(Self(list))
    }

    /// Checks what only the URL tells: a `tls_days_left` needs an https URL.
    pub fn check_for_url(&self, prefix: &str, url: &str) -> Result<(), Error> {
        if url.starts_with("https:") {
            return Ok(());
        }
        match self
            .0
            .iter()
            .position(|a| matches!(a.check, Check::TlsDaysLeft(_)))
        {
            Some(i) => Err(Error::invalid(
                path(prefix, i, ".tls_days_left"),
                "is only for https URLs: an http probe has no certificate",
            )),
            None => Ok(()),
        }
    }

    pub fn as_slice(&self) -> &[Assertion] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether a check reads the body (so the probe keeps what it reads).
    pub fn needs_body(&self) -> bool {
        self.0.iter().any(|a| a.check.needs_body())
    }

    /// The stored form (`None` for none, so URLs without assertions store nothing).
    pub fn to_json(&self) -> Option<String> {
        (!self.0.is_empty()).then(|| serde_json::to_string(&self.0).unwrap_or_default())
    }

    /// Reads the stored form back (written by [`Self::to_json`], so already checked).
    pub fn from_json(stored: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(stored)
    }

    /// The verdict on a response (a probe that got none is `DOWN` without
    /// asking): `DOWN` when a `DOWN` assertion failed, or when no status
    /// assertion is set and the status is outside 200–399; `DEGRADED` when
    /// only `DEGRADED` assertions failed; `UP` otherwise.
    pub fn judge(&self, response: &Response<'_>) -> Judgement {
        let mut failed = Vec::new();
        let mut down = !self.0.iter().any(|a| matches!(a.check, Check::Status(_)))
            && !(200..=399).contains(&response.status);
        for (i, a) in self.0.iter().enumerate() {
            if let Some(message) = a.check.failure(response) {
                down |= a.severity == Severity::Down;
                failed.push(FailedAssertion {
                    index: u32::try_from(i).unwrap_or(u32::MAX),
                    message: short(message),
                });
            }
        }
        let verdict = if down {
            Verdict::Down
        } else if failed.is_empty() {
            Verdict::Up
        } else {
            Verdict::Degraded
        };
        Judgement { verdict, failed }
    }
}

impl Check {
    /// What is wrong with the response, if this check fails on it.
    fn failure(&self, r: &Response<'_>) -> Option<String> {
        match self {
            Self::Status(ranges) => (!ranges
                .iter()
                .any(|(from, to)| (*from..=*to).contains(&r.status)))
            .then(|| format!("status {} is not {}", r.status, ranges_text(ranges))),
            Self::MaxLatencyUs(max) => {
                let max = Duration::from_micros(*max);
                (r.latency > max).then(|| {
                    format!(
                        "took {}, more than {}",
                        millis_text(r.latency),
                        millis_text(max)
                    )
                })
            }
            Self::BodyContains(needle) => {
                let body = r.body.unwrap_or_default();
                memchr::memmem::find(body, needle.as_bytes())
                    .is_none()
                    .then(|| format!("body has no {} {}", quoted(needle), read_text(r)))
            }
            Self::BodyNotContains(needle) => {
                let body = r.body.unwrap_or_default();
                memchr::memmem::find(body, needle.as_bytes())
                    .map(|at| format!("body has {} at byte {at}", quoted(needle)))
            }
            Self::Header { name, expect } => {
                let values: Vec<&[u8]> = r
                    .headers
                    .get_all(name.as_str())
                    .iter()
                    .map(http::HeaderValue::as_bytes)
                    .collect();
                let found = values.first().map(|v| String::from_utf8_lossy(v));
                let ok = values.iter().any(|v| match expect {
                    HeaderMatch::Equals(want) => *v == want.as_bytes(),
                    HeaderMatch::Contains(want) => {
                        memchr::memmem::find(v, want.as_bytes()).is_some()
                    }
                });
                (!ok).then(|| match (found, expect) {
                    (None, _) => format!("no {name} header"),
                    (Some(v), HeaderMatch::Equals(want)) => {
                        format!("{name} is {}, not {}", quoted(&v), quoted(want))
                    }
                    (Some(v), HeaderMatch::Contains(want)) => {
                        format!("{name} is {}, without {}", quoted(&v), quoted(want))
                    }
                })
            }
            Self::Json { pointer, value } => {
                let body = r.body.unwrap_or_default();
                match serde_json::from_slice::<serde_json::Value>(body) {
                    Err(e) => Some(format!("body is not JSON ({e}) {}", read_text(r))),
                    Ok(doc) => match doc.pointer(pointer) {
                        None => Some(format!("nothing at {pointer:?}")),
                        Some(found) if json_equal(found, value) => None,
                        Some(found) => Some(format!(
                            "{pointer:?} is {}, not {}",
                            json_text(found),
                            json_text(value)
                        )),
                    },
                }
            }
            Self::TlsDaysLeft(days) => match r.tls_not_after {
                None => Some("no TLS certificate: the probe did not use https".into()),
                Some(not_after) => {
                    let left = not_after - r.now;
                    (left < chrono::Duration::days(i64::from(*days))).then(|| {
                        format!(
                            "certificate expires {} (in {} days), fewer than {days}",
                            not_after.format("%Y-%m-%d %H:%M UTC"),
                            left.num_days()
                        )
                    })
                }
            },
        }
    }
}

/// `value` with whole numbers written as integers: a protobuf `Value` holds
/// every number as a double, and `3` reads better than `3.0` in messages.
fn whole_numbers(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value as V;
    match value {
        V::Number(n) => match n.as_f64() {
            #[allow(clippy::cast_possible_truncation, clippy::float_cmp)]
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 9.0e15 => V::from(f as i64),
            _ => V::Number(n),
        },
        V::Array(items) => V::Array(items.into_iter().map(whole_numbers).collect()),
        V::Object(fields) => V::Object(
            fields
                .into_iter()
                .map(|(k, v)| (k, whole_numbers(v)))
                .collect(),
        ),
        other => other,
    }
}

/// JSON values equal as JSON means them: numbers by value (`1` is `1.0`).
fn json_equal(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value as V;
    match (a, b) {
        (V::Number(x), V::Number(y)) => x == y || x.as_f64() == y.as_f64(),
        (V::Array(x), V::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_equal(a, b))
        }
        (V::Object(x), V::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
        }
        _ => a == b,
    }
}

/// A status range as users write it: `"200-299"`, or `"301"` for one code.
pub fn range_text((from, to): (u16, u16)) -> String {
    if from == to {
        from.to_string()
    } else {
        format!("{from}-{to}")
    }
}

fn ranges_text(ranges: &[(u16, u16)]) -> String {
    let parts: Vec<String> = ranges.iter().copied().map(range_text).collect();
    parts.join(", ")
}

fn millis_text(d: Duration) -> String {
    format!("{:.0}ms", d.as_secs_f64() * 1000.0)
}

/// How much of the body was read, for messages about it.
fn read_text(r: &Response<'_>) -> String {
    let n = r.body.map_or(0, <[u8]>::len);
    if r.body_cut {
        format!("in the first {n} bytes read (MONITOR_PROBE_MAX_BODY_KIB)")
    } else {
        format!("in its {n} bytes")
    }
}

/// A text quoted, cut to 40 characters.
fn quoted(s: &str) -> String {
    if s.chars().count() > 40 {
        format!("{:?}…", s.chars().take(40).collect::<String>())
    } else {
        format!("{s:?}")
    }
}

fn json_text(v: &serde_json::Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 60 {
        format!("{}…", s.chars().take(60).collect::<String>())
    } else {
        s
    }
}

/// A message cut to [`MAX_MESSAGE`] bytes.
fn short(mut s: String) -> String {
    if s.len() > MAX_MESSAGE {
        let mut cut = MAX_MESSAGE;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const AT: Place<'static> = Place {
        prefix: "",
        index: 2,
    };

    fn field(result: Result<Check, Error>) -> String {
        match result {
            Err(Error::InvalidArgument { field, .. }) => field.into_owned(),
            other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
        }
    }

    fn response<'a>(headers: &'a http::HeaderMap, body: &'a [u8]) -> Response<'a> {
        Response {
            status: 200,
            latency: Duration::from_millis(120),
            headers,
            body: Some(body),
            body_cut: false,
            tls_not_after: None,
            now: DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
        }
    }

    fn of(checks: Vec<(Severity, Check)>) -> Assertions {
        Assertions::new(
            "",
            checks
                .into_iter()
                .map(|(s, c)| Assertion::new(s, c))
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn status_ranges_parse_and_bad_ones_name_their_place() {
        let codes =
            |c: &[&str]| Check::status(AT, &c.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>());
        assert_eq!(
            codes(&["200-299", " 301 "]).unwrap(),
            Check::Status(vec![(200, 299), (301, 301)])
        );
        assert_eq!(
            field(codes(&["200", "500-200"])),
            "assertions[2].status.codes[1]"
        );
        assert_eq!(field(codes(&["2xx"])), "assertions[2].status.codes[0]");
        assert_eq!(field(codes(&["600"])), "assertions[2].status.codes[0]");
        assert_eq!(field(codes(&[])), "assertions[2].status.codes");
    }

    #[test]
    fn pointers_follow_rfc_6901() {
        for good in ["", "/", "/a/0", "/a~1b/~0c", "/ spaced "] {
            assert!(
                Check::json(AT, good.into(), Some(serde_json::json!(1))).is_ok(),
                "{good}"
            );
        }
        for bad in ["a", "/a~", "/a~2", "#/a"] {
            assert_eq!(
                field(Check::json(AT, bad.into(), Some(serde_json::json!(1)))),
                "assertions[2].json.pointer",
                "{bad}"
            );
        }
        assert_eq!(
            Check::json(AT, "/a".into(), None).unwrap(),
            Check::Json {
                pointer: "/a".into(),
                value: serde_json::Value::Null
            },
            "unset is null"
        );
        assert_eq!(
            Check::json(AT, String::new(), Some(serde_json::json!([1.0, 2.5]))).unwrap(),
            Check::Json {
                pointer: String::new(),
                value: serde_json::json!([1, 2.5])
            },
            "whole numbers are integers"
        );
    }

    #[test]
    fn texts_are_limited_to_a_kib_and_header_names_must_be_names() {
        let long = "x".repeat(MAX_TEXT_BYTES + 1);
        assert_eq!(
            field(Check::body_contains(AT, long.clone())),
            "assertions[2].body_contains"
        );
        assert!(Check::body_contains(AT, "x".repeat(MAX_TEXT_BYTES)).is_ok());
        assert_eq!(
            field(Check::header(AT, String::new(), Some("v".into()), None)),
            "assertions[2].header.name"
        );
        assert_eq!(
            field(Check::header(AT, "a b".into(), Some("v".into()), None)),
            "assertions[2].header.name"
        );
        assert_eq!(
            field(Check::header(AT, "x".into(), None, Some(long))),
            "assertions[2].header.contains"
        );
        assert_eq!(
            field(Check::header(AT, "x".into(), None, None)),
            "assertions[2].header"
        );
        assert_eq!(
            Check::header(AT, "Content-Type".into(), Some(String::new()), None).unwrap(),
            Check::Header {
                name: "content-type".into(),
                expect: HeaderMatch::Equals(String::new())
            }
        );
        assert_eq!(
            field(Check::tls_days_left(AT, 0)),
            "assertions[2].tls_days_left"
        );
        assert_eq!(
            field(Check::max_latency(AT, Some(Duration::ZERO))),
            "assertions[2].max_latency"
        );
    }

    #[test]
    fn more_than_twenty_is_refused_and_tls_needs_https() {
        let one = || Assertion::new(Severity::Down, Check::TlsDaysLeft(14));
        let err = Assertions::new("url.", (0..=MAX_ASSERTIONS).map(|_| one()).collect());
        assert!(
            matches!(err, Err(Error::InvalidArgument { field, .. }) if field == "url.assertions")
        );
        let list = Assertions::new("", vec![one()]).unwrap();
        assert!(list.check_for_url("", "https://example.com/").is_ok());
        assert!(matches!(
            list.check_for_url("", "http://example.com/"),
            Err(Error::InvalidArgument { field, .. }) if field == "assertions[0].tls_days_left"
        ));
    }

    #[test]
    fn stored_json_round_trips_and_none_stores_nothing() {
        let list = of(vec![
            (Severity::Degraded, Check::Status(vec![(200, 299)])),
            (
                Severity::Down,
                Check::Header {
                    name: "x".into(),
                    expect: HeaderMatch::Contains("y".into()),
                },
            ),
            (
                Severity::Down,
                Check::Json {
                    pointer: "/a".into(),
                    value: serde_json::json!({"b": [1, null]}),
                },
            ),
        ]);
        let json = list.to_json().unwrap();
        assert_eq!(Assertions::from_json(&json).unwrap(), list);
        assert_eq!(Assertions::default().to_json(), None);
    }

    #[test]
    fn the_verdict_is_down_for_a_down_failure_degraded_for_degraded_ones_only() {
        let headers = http::HeaderMap::new();
        let slow = |severity| of(vec![(severity, Check::MaxLatencyUs(100_000))]);
        let r = response(&headers, b"");
        let down = slow(Severity::Down).judge(&r);
        assert_eq!(down.verdict, Verdict::Down);
        assert_eq!(down.failed[0].index, 0);
        assert_eq!(down.failed[0].message, "took 120ms, more than 100ms");
        assert_eq!(
            slow(Severity::Degraded).judge(&r).verdict,
            Verdict::Degraded
        );
        let fast = Response {
            latency: Duration::from_millis(50),
            ..r
        };
        let up = slow(Severity::Down).judge(&fast);
        assert_eq!((up.verdict, up.failed.len()), (Verdict::Up, 0));
    }

    #[test]
    fn a_status_assertion_replaces_the_default_rule() {
        let headers = http::HeaderMap::new();
        let r = Response {
            status: 503,
            ..response(&headers, b"")
        };
        assert_eq!(Assertions::default().judge(&r).verdict, Verdict::Down);
        let maintenance = of(vec![(Severity::Degraded, Check::Status(vec![(200, 299)]))]);
        assert_eq!(maintenance.judge(&r).verdict, Verdict::Degraded);
        let allowed = of(vec![(Severity::Down, Check::Status(vec![(500, 599)]))]);
        assert_eq!(allowed.judge(&r).verdict, Verdict::Up);
        // Without a status assertion, other failures add to the default rule.
        let body = of(vec![(Severity::Degraded, Check::BodyContains("ok".into()))]);
        assert_eq!(body.judge(&r).verdict, Verdict::Down);
    }

    #[test]
    fn body_header_and_json_checks_say_what_they_found() {
        let mut headers = http::HeaderMap::new();
        headers.insert("content-type", "application/json".parse().unwrap());
        let body = br#"{"status": "degraded", "count": 3, "items": [1, 2]}"#;
        let r = response(&headers, body);
        let check = |c: Check| {
            of(vec![(Severity::Down, c)])
                .judge(&r)
                .failed
                .pop()
                .map(|f| f.message)
        };
        assert_eq!(check(Check::BodyContains("count".into())), None);
        assert_eq!(
            check(Check::BodyContains("\"ok\"".into())).unwrap(),
            format!("body has no \"\\\"ok\\\"\" in its {} bytes", body.len())
        );
        assert_eq!(
            check(Check::BodyNotContains("degraded".into())).unwrap(),
            "body has \"degraded\" at byte 12"
        );
        let header = |name: &str, expect| Check::Header {
            name: name.into(),
            expect,
        };
        assert_eq!(
            check(header("content-type", HeaderMatch::Contains("json".into()))),
            None
        );
        assert_eq!(
            check(header(
                "content-type",
                HeaderMatch::Equals("text/html".into())
            ))
            .unwrap(),
            "content-type is \"application/json\", not \"text/html\""
        );
        assert_eq!(
            check(header("x-missing", HeaderMatch::Equals(String::new()))).unwrap(),
            "no x-missing header"
        );
        let json = |pointer: &str, value| Check::Json {
            pointer: pointer.into(),
            value,
        };
        assert_eq!(check(json("/count", serde_json::json!(3.0))), None);
        assert_eq!(check(json("/items/1", serde_json::json!(2))), None);
        assert_eq!(
            check(json("/status", serde_json::json!("ok"))).unwrap(),
            "\"/status\" is \"degraded\", not \"ok\""
        );
        assert_eq!(
            check(json("/nope", serde_json::json!(1))).unwrap(),
            "nothing at \"/nope\""
        );
        let cut = Response {
            body: Some(&body[..10]),
            body_cut: true,
            ..r
        };
        let message = of(vec![(Severity::Down, json("/count", serde_json::json!(3)))])
            .judge(&cut)
            .failed
            .pop()
            .unwrap()
            .message;
        assert!(
            message.starts_with("body is not JSON") && message.contains("first 10 bytes read"),
            "{message}"
        );
    }

    #[test]
    fn tls_days_left_counts_from_the_probe() {
        let headers = http::HeaderMap::new();
        let r = response(&headers, b"");
        let days = |d: i64| Response {
            tls_not_after: Some(r.now + chrono::Duration::days(d) + chrono::Duration::hours(1)),
            ..r
        };
        let want = of(vec![(Severity::Degraded, Check::TlsDaysLeft(14))]);
        assert_eq!(want.judge(&days(30)).verdict, Verdict::Up);
        assert_eq!(want.judge(&days(14)).verdict, Verdict::Up);
        let soon = want.judge(&days(5));
        assert_eq!(soon.verdict, Verdict::Degraded);
        assert!(
            soon.failed[0]
                .message
                .contains("(in 5 days), fewer than 14"),
            "{:?}",
            soon.failed
        );
        assert_eq!(want.judge(&r).verdict, Verdict::Degraded, "no certificate");
    }
}
