//! One probe: GET a URL once and say what happened.
//!
//! Every probe opens a new connection (no pooling), so the latency includes
//! DNS, connect and TLS, as a user's first request would. The body is read
//! up to a limit and then dropped; it is kept in memory (up to the same
//! limit) only when a body or JSON assertion needs it. Redirects are not
//! followed unless the settings allow some; the 3xx is then the status. A
//! failure is never given a made-up status code: status_code is 0 and
//! error_kind says why.
//!
//! An https probe records when the leaf certificate of its own TLS
//! handshake expires (reqwest's `TlsInfo`, parsed with x509-parser): no
//! second connection. Roots are the platform's, plus any PEM files in
//! `MONITOR_PROBE_EXTRA_ROOTS` (internal CAs).
//!
//! The URL's assertions then judge the response (`domain::assertion`): the
//! probe's verdict is `UP`, `DEGRADED` or `DOWN`, with the assertions that
//! failed. A probe with an error (no response, or a body that could not be
//! read) is `DOWN` without asking them.

use std::{error::Error as StdError, path::PathBuf, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use reqwest::redirect;
use tokio::time::Instant;

use super::{
    ProbeResult,
    ssrf::{self, Blocked, DnsFailure, GuardedResolver},
};
use crate::{
    domain::{
        Assertions,
        assertion::{Judgement, Response},
        verdict::Verdict,
    },
    proto::monitor::v1::ErrorKind,
};

/// How probes are made.
#[derive(Debug, Clone, clap::Args)]
pub struct ProbeSettings {
    /// Probe timeout: DNS, connect, TLS and the whole response.
    #[arg(long = "probe-timeout", env = "MONITOR_PROBE_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,

    /// Most of a response body a probe reads, in KiB; the rest is dropped.
    #[arg(
        long = "probe-max-body-kib",
        env = "MONITOR_PROBE_MAX_BODY_KIB",
        default_value_t = 64
    )]
    pub max_body_kib: usize,

    /// Redirects a probe follows (0: the 3xx is the status).
    #[arg(
        long = "probe-follow-redirects",
        env = "MONITOR_PROBE_FOLLOW_REDIRECTS",
        default_value_t = 0
    )]
    pub follow_redirects: usize,

    /// Probe private, loopback and link-local addresses too. Off by default:
    /// turn on only for tests and local demos.
    #[arg(long = "allow-private-targets", env = "MONITOR_ALLOW_PRIVATE_TARGETS", default_value_t = false, action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    pub allow_private_targets: bool,

    /// PEM files of more root certificates https probes trust, besides the
    /// platform's (an internal CA), comma-separated. The SSRF guard applies
    /// all the same.
    #[arg(
        long = "probe-extra-roots",
        env = "MONITOR_PROBE_EXTRA_ROOTS",
        value_delimiter = ','
    )]
    pub extra_roots: Vec<PathBuf>,
}

impl ProbeSettings {
    pub fn validate(&self) -> Result<(), crate::error::SettingsError> {
        use crate::error::check_setting;
        check_setting(
            self.timeout >= Duration::from_millis(100),
            "MONITOR_PROBE_TIMEOUT",
            "must be at least 100ms",
        )?;
        check_setting(
            self.max_body_kib > 0,
            "MONITOR_PROBE_MAX_BODY_KIB",
            "must be at least 1",
        )?;
        check_setting(
            self.follow_redirects <= 20,
            "MONITOR_PROBE_FOLLOW_REDIRECTS",
            "must be at most 20",
        )?;
        self.extra_root_certificates().map(|_| ())
    }

    /// The certificates of [`Self::extra_roots`]; an unreadable file, or one
    /// with no PEM certificate, is a setting error naming it.
    pub fn extra_root_certificates(
        &self,
    ) -> Result<Vec<reqwest::Certificate>, crate::error::SettingsError> {
        let mut all = Vec::new();
        for path in &self.extra_roots {
            let bad = |why: String| {
                crate::error::SettingsError::new(
                    "MONITOR_PROBE_EXTRA_ROOTS",
                    format!("{}: {why}", path.display()),
                )
            };
            let pem = std::fs::read(path).map_err(|e| bad(format!("cannot be read ({e})")))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| bad(format!("is not PEM certificates ({e})")))?;
            if certs.is_empty() {
                return Err(bad("holds no PEM certificate".into()));
            }
            all.extend(certs);
        }
        Ok(all)
    }
}

/// What one probe got back, before the assertions judge it.
struct Fetched {
    code: u16,
    /// To the response head.
    latency: Duration,
    headers: http::HeaderMap,
    /// The part of the body read, when kept.
    body: Option<Vec<u8>>,
    /// The body went on past what was read.
    body_cut: bool,
    body_error: Option<(ErrorKind, String)>,
    tls_not_after: Option<DateTime<Utc>>,
}

/// A reqwest client set up for probing, shared by all probes.
#[derive(Debug, Clone)]
pub struct Probe {
    client: reqwest::Client,
    settings: Arc<ProbeSettings>,
}

const MAX_MESSAGE: usize = 200;

impl Probe {
    pub fn new(settings: ProbeSettings) -> anyhow::Result<Self> {
        let allow_private = settings.allow_private_targets;
        let max_redirects = settings.follow_redirects;
        let policy = redirect::Policy::custom(move |attempt| {
            if max_redirects == 0 {
                return attempt.stop(); // the 3xx is the status
            }
            if attempt.previous().len() > max_redirects {
                return attempt.error(TooManyRedirects(max_redirects));
            }
            if let Err(blocked) = ssrf::check_literal(attempt.url(), allow_private) {
                return attempt.error(blocked);
            }
            if !matches!(attempt.url().scheme(), "http" | "https") {
                let scheme = attempt.url().scheme().to_owned();
                return attempt.error(BadRedirect(scheme));
            }
            attempt.follow()
        });
        let roots = settings.extra_root_certificates()?;
        let client = reqwest::Client::builder()
            .tls_certs_merge(roots)
            .tls_info(true)
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .redirect(policy)
            .no_proxy()
            .pool_max_idle_per_host(0)
            .dns_resolver(Arc::new(GuardedResolver { allow_private }))
            .user_agent(concat!("monitor/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            client,
            settings: Arc::new(settings),
        })
    }

    /// Probes `url`, due at `due_at`, starting at `started_at` (now), and
    /// judges the response by `assertions` (none: the default rule).
    pub async fn run(
        &self,
        url_id: i64,
        url: &str,
        due_at: DateTime<Utc>,
        started_at: DateTime<Utc>,
        assertions: Option<&Assertions>,
    ) -> ProbeResult {
        let start = Instant::now();
        let keep_body = assertions.is_some_and(Assertions::needs_body);
        match self.fetch(url, keep_body).await {
            Ok(got) => {
                let mut result = ProbeResult::new(
                    url_id,
                    due_at,
                    started_at,
                    got.code,
                    got.latency,
                    got.body_error.clone(),
                );
                let judgement = match assertions {
                    _ if got.body_error.is_some() => Judgement {
                        verdict: Verdict::Down,
                        failed: Vec::new(),
                    },
                    Some(assertions) => assertions.judge(&Response {
                        status: got.code,
                        latency: got.latency,
                        headers: &got.headers,
                        body: got.body.as_deref(),
                        body_cut: got.body_cut,
                        tls_not_after: got.tls_not_after,
                        now: started_at,
                    }),
                    None => Judgement {
                        verdict: result.verdict(),
                        failed: Vec::new(),
                    },
                };
                result.verdict = Some(judgement.verdict);
                result.failed_assertions = judgement.failed;
                result.tls_not_after_ms = got.tls_not_after.map(|t| t.timestamp_millis());
                result
            }
            Err(e) => {
                let mut result =
                    ProbeResult::new(url_id, due_at, started_at, 0, start.elapsed(), Some(e));
                result.verdict = Some(Verdict::Down);
                result
            }
        }
    }

    /// The response head, the body (read up to the limit; kept when
    /// `keep_body`), a body failure if any, and the certificate's expiry.
    async fn fetch(&self, url: &str, keep_body: bool) -> Result<Fetched, (ErrorKind, String)> {
        let parsed = url::Url::parse(url).map_err(|e| (ErrorKind::Other, short(&e.to_string())))?;
        ssrf::check_literal(&parsed, self.settings.allow_private_targets)
            .map_err(|b| (ErrorKind::Blocked, short(&b.to_string())))?;
        let start = Instant::now();
        let mut resp = self
            .client
            .get(parsed)
            .send()
            .await
            .map_err(|e| classify(&e))?;
        let latency = start.elapsed();
        let code = resp.status().as_u16();
        let headers = std::mem::take(resp.headers_mut());
        let tls_not_after = resp
            .extensions()
            .get::<reqwest::tls::TlsInfo>()
            .and_then(reqwest::tls::TlsInfo::peer_certificate)
            .and_then(not_after);
        let limit = self.settings.max_body_kib * 1024;
        let mut body = keep_body.then(Vec::new);
        let mut read = 0usize;
        let mut body_cut = false;
        let body_error = loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    if let Some(kept) = &mut body {
                        kept.extend_from_slice(&chunk[..chunk.len().min(limit - kept.len())]);
                    }
                    read += chunk.len();
                    if read >= limit {
                        // Enough: drop the rest with the connection (all
                        // that was asked for was read; there may be more).
                        body_cut = true;
                        break None;
                    }
                }
                Ok(None) => break None,
                Err(e) => {
                    let (kind, msg) = classify(&e);
                    let kind = if kind == ErrorKind::Timeout {
                        kind
                    } else {
                        ErrorKind::Body
                    };
                    break Some((kind, msg));
                }
            }
        };
        Ok(Fetched {
            code,
            latency,
            headers,
            body,
            body_cut,
            body_error,
            tls_not_after,
        })
    }
}

/// When a DER certificate expires; `None` if it does not parse.
fn not_after(der: &[u8]) -> Option<DateTime<Utc>> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    DateTime::from_timestamp(cert.validity().not_after.timestamp(), 0)
}

#[derive(Debug)]
struct TooManyRedirects(usize);

impl std::fmt::Display for TooManyRedirects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "more than {} redirects", self.0)
    }
}

impl StdError for TooManyRedirects {}

#[derive(Debug)]
struct BadRedirect(String);

impl std::fmt::Display for BadRedirect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "redirect to an unsupported scheme {:?}", self.0)
    }
}

impl StdError for BadRedirect {}

fn short(s: &str) -> String {
    let mut s = s.to_owned();
    if s.len() > MAX_MESSAGE {
        let mut cut = MAX_MESSAGE;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

/// Whether `e` is a rustls error, or an io::Error wrapping one (at any
/// depth: an io::Error's `source()` skips the error it wraps).
fn is_tls(e: &(dyn StdError + 'static)) -> bool {
    let mut e = e;
    loop {
        if e.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        match e
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            Some(inner) => e = inner,
            None => return false,
        }
    }
}

/// Walks the error's causes for the ones that tell what happened.
fn classify(e: &reqwest::Error) -> (ErrorKind, String) {
    let mut source: Option<&(dyn StdError + 'static)> = e.source();
    let mut deepest = e.to_string();
    let mut tls = false;
    while let Some(s) = source {
        if let Some(b) = s.downcast_ref::<Blocked>() {
            return (ErrorKind::Blocked, short(&b.to_string()));
        }
        if let Some(d) = s.downcast_ref::<DnsFailure>() {
            return (ErrorKind::Dns, short(&d.to_string()));
        }
        if s.downcast_ref::<TooManyRedirects>().is_some()
            || s.downcast_ref::<BadRedirect>().is_some()
        {
            return (ErrorKind::Redirect, short(&s.to_string()));
        }
        if is_tls(s) {
            tls = true;
        }
        deepest = s.to_string();
        source = s.source();
    }
    let kind = if e.is_timeout() {
        ErrorKind::Timeout
    } else if tls {
        ErrorKind::Tls
    } else if e.is_redirect() {
        ErrorKind::Redirect
    } else if e.is_connect() || e.is_request() {
        ErrorKind::Connect
    } else if e.is_body() || e.is_decode() {
        ErrorKind::Body
    } else {
        ErrorKind::Other
    };
    let msg = if kind == ErrorKind::Timeout {
        "no complete answer within the probe timeout".to_owned()
    } else {
        deepest
    };
    (kind, short(&msg))
}
