//! One probe: GET a URL once and say what happened.
//!
//! Every probe opens a new connection (no pooling), so the latency includes
//! DNS, connect and TLS, as a user's first request would. The body is read
//! up to a limit and then dropped. Redirects are not followed unless the
//! settings allow some; the 3xx is then the status. A failure is never given
//! a made-up status code: status_code is 0 and error_kind says why.

use std::{error::Error as StdError, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use reqwest::redirect;
use tokio::time::Instant;

use super::{
    ProbeResult,
    ssrf::{self, Blocked, DnsFailure, GuardedResolver},
};
use crate::proto::monitor::v1::ErrorKind;

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
    #[arg(long = "allow-private-targets", env = "MONITOR_ALLOW_PRIVATE_TARGETS", default_value_t = false, action = clap::ArgAction::Set)]
    pub allow_private_targets: bool,
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
        )
    }
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
        let client = reqwest::Client::builder()
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

    /// Probes `url`, due at `due_at`, starting at `started_at` (now).
    pub async fn run(
        &self,
        url_id: i64,
        url: &str,
        due_at: DateTime<Utc>,
        started_at: DateTime<Utc>,
    ) -> ProbeResult {
        let start = Instant::now();
        match self.fetch(url).await {
            Ok((code, head_latency, body_error)) => {
                ProbeResult::new(url_id, due_at, started_at, code, head_latency, body_error)
            }
            Err(e) => ProbeResult::new(url_id, due_at, started_at, 0, start.elapsed(), Some(e)),
        }
    }

    /// The status code, the time to the response head, and a body failure if any.
    async fn fetch(
        &self,
        url: &str,
    ) -> Result<(u16, Duration, Option<(ErrorKind, String)>), (ErrorKind, String)> {
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
        let head_latency = start.elapsed();
        let code = resp.status().as_u16();
        let mut read = 0usize;
        let body_error = loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    read += chunk.len();
                    if read >= self.settings.max_body_kib * 1024 {
                        break None; // enough: drop the rest with the connection
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
        Ok((code, head_latency, body_error))
    }
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
