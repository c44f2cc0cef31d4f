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
    failure::{TIMED_OUT, short},
    plain::{self, USER_AGENT},
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

    /// Probe plain `http://` URLs (no credentials, no redirect to follow)
    /// over a hyper connection of their own, without reqwest's client
    /// (`prober::plain`: the same answers for less CPU). `false`: every
    /// probe goes through reqwest.
    #[arg(long = "probe-plain-http", env = "MONITOR_PROBE_PLAIN_HTTP", default_value_t = true, action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    pub plain_http: bool,

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

/// How probes are made, shared by all of them: plain `http://` URLs over a
/// connection of their own (`prober::plain`, unless
/// [`ProbeSettings::plain_http`] is off), the others through a reqwest
/// client set up for probing.
#[derive(Debug, Clone)]
pub struct Probe {
    client: reqwest::Client,
    settings: Arc<ProbeSettings>,
}

/// A response body as it is read, whichever path got the response.
enum Body {
    Reqwest(reqwest::Response),
    Plain(plain::Body),
}

impl Body {
    async fn chunk(&mut self) -> Result<Option<bytes::Bytes>, (ErrorKind, String)> {
        match self {
            Self::Plain(body) => body.chunk().await,
            Self::Reqwest(resp) => resp.chunk().await.map_err(|e| {
                let (kind, msg) = classify(&e);
                let kind = if kind == ErrorKind::Timeout {
                    kind
                } else {
                    ErrorKind::Body
                };
                (kind, msg)
            }),
        }
    }
}

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
            .user_agent(USER_AGENT)
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
        let (code, headers, tls_not_after, mut body) = if self.settings.plain_http
            && plain::eligible(&parsed, self.settings.follow_redirects)
        {
            let deadline = start + self.settings.timeout;
            let (head, body) =
                plain::head(&parsed, self.settings.allow_private_targets, deadline).await?;
            (head.status.as_u16(), head.headers, None, Body::Plain(body))
        } else {
            let mut resp = self
                .client
                .get(parsed)
                .send()
                .await
                .map_err(|e| classify(&e))?;
            let tls_not_after = resp
                .extensions()
                .get::<reqwest::tls::TlsInfo>()
                .and_then(reqwest::tls::TlsInfo::peer_certificate)
                .and_then(not_after);
            let headers = std::mem::take(resp.headers_mut());
            let code = resp.status().as_u16();
            (code, headers, tls_not_after, Body::Reqwest(resp))
        };
        let latency = start.elapsed();
        let limit = self.settings.max_body_kib * 1024;
        let mut kept = keep_body.then(Vec::new);
        let mut read = 0usize;
        let mut body_cut = false;
        let body_error = loop {
            match body.chunk().await {
                Ok(Some(chunk)) => {
                    if let Some(kept) = &mut kept {
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
                Err(failure) => break Some(failure),
            }
        };
        Ok(Fetched {
            code,
            latency,
            headers,
            body: kept,
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
        TIMED_OUT.to_owned()
    } else {
        deepest
    };
    (kind, short(&msg))
}

#[cfg(test)]
mod tests {
    //! The plain path and reqwest's give the same answers, case by case,
    //! against a local HTTP/1.1 server over real sockets.

    use std::time::Duration;

    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::{TcpListener, TcpStream},
    };

    use super::{ErrorKind, Probe, ProbeSettings, TIMED_OUT, USER_AGENT};

    /// Answers by the request's path; `/echo` sends back the request head.
    async fn serve(mut s: TcpStream) {
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        let path = head.split(' ').nth(1).unwrap_or("").to_owned();
        let reply = |code: &str, extra: &str, body: &str| {
            format!(
                "HTTP/1.1 {code}\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n{body}",
                body.len()
            )
        };
        let out = match path.split('?').next().unwrap_or("") {
            "/ok" => reply("200 OK", "X-Probe: yes\r\n", "ok"),
            "/fail" => reply("500 Internal Server Error", "", "no"),
            "/echo" => reply("200 OK", "", &head),
            "/chunked" => {
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
                           5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
                    .to_owned()
            }
            "/huge" => format!(
                "HTTP/1.1 200 OK\r\nContent-Length: 200000\r\nConnection: close\r\n\r\n{}",
                "x".repeat(200_000)
            ),
            "/short" => {
                "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\nten bytes!"
                    .to_owned()
            }
            "/trickle" => {
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nx")
                    .await;
                tokio::time::sleep(Duration::from_secs(10)).await;
                return;
            }
            "/slow" => {
                tokio::time::sleep(Duration::from_secs(10)).await;
                return;
            }
            "/garbage" => "this is not HTTP\r\n\r\n".to_owned(),
            _ => reply("404 Not Found", "", ""),
        };
        let _ = s.write_all(out.as_bytes()).await;
    }

    async fn server() -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                tokio::spawn(serve(s));
            }
        });
        port
    }

    /// A server that closes every connection unread (so with a reset).
    async fn resetting() -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                tokio::time::sleep(Duration::from_millis(20)).await;
                drop(s);
            }
        });
        port
    }

    fn probe(allow_private: bool, plain: bool) -> Probe {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Probe::new(ProbeSettings {
            timeout: Duration::from_millis(700),
            max_body_kib: 64,
            follow_redirects: 0,
            allow_private_targets: allow_private,
            plain_http: plain,
            extra_roots: Vec::new(),
        })
        .unwrap()
    }

    /// What a fetch came to, in the terms both paths must agree on.
    #[derive(Debug, PartialEq)]
    struct Answer {
        code: u16,
        kind: ErrorKind,
        timed_out: bool,
        body: Option<String>,
        body_cut: bool,
        x_probe: Option<String>,
    }

    async fn answer(p: &Probe, url: &str) -> (Answer, String) {
        match p.fetch(url, true).await {
            Ok(f) => {
                let (kind, msg) = f
                    .body_error
                    .unwrap_or((ErrorKind::Unspecified, String::new()));
                let answer = Answer {
                    code: f.code,
                    kind,
                    timed_out: msg == TIMED_OUT,
                    body: f.body.map(|b| {
                        let s = String::from_utf8_lossy(&b).into_owned();
                        if s.len() > 100 {
                            format!("{} bytes", s.len())
                        } else {
                            s
                        }
                    }),
                    body_cut: f.body_cut,
                    x_probe: f
                        .headers
                        .get("x-probe")
                        .map(|v| v.to_str().unwrap().to_owned()),
                };
                (answer, msg)
            }
            Err((kind, msg)) => {
                let answer = Answer {
                    code: 0,
                    kind,
                    timed_out: msg == TIMED_OUT,
                    body: None,
                    body_cut: false,
                    x_probe: None,
                };
                (answer, msg)
            }
        }
    }

    #[tokio::test]
    async fn the_plain_path_answers_as_reqwest_does() {
        let port = server().await;
        let reset = resetting().await;
        let closed = {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            l.local_addr().unwrap().port()
        };
        let at = |path: &str| format!("http://127.0.0.1:{port}{path}");
        let cases = [
            (at("/ok"), 200, ErrorKind::Unspecified),
            (at("/fail"), 500, ErrorKind::Unspecified),
            (at("/chunked"), 200, ErrorKind::Unspecified),
            (at("/huge"), 200, ErrorKind::Unspecified),
            (at("/short"), 200, ErrorKind::Body),
            (at("/trickle"), 200, ErrorKind::Timeout),
            (at("/slow"), 0, ErrorKind::Timeout),
            (at("/garbage"), 0, ErrorKind::Connect),
            (format!("http://127.0.0.1:{reset}/"), 0, ErrorKind::Connect),
            (format!("http://127.0.0.1:{closed}/"), 0, ErrorKind::Connect),
            (
                format!("http://localhost:{port}/ok"),
                200,
                ErrorKind::Unspecified,
            ),
        ];
        let (plain, reqwest) = (probe(true, true), probe(true, false));
        for (url, code, kind) in cases {
            let (a, a_msg) = answer(&plain, &url).await;
            let (b, b_msg) = answer(&reqwest, &url).await;
            assert_eq!((&a, &a_msg), (&b, &b_msg), "{url}");
            assert_eq!((a.code, a.kind), (code, kind), "{url}: {a:?} {a_msg:?}");
            assert_eq!(
                a_msg.is_empty(),
                kind == ErrorKind::Unspecified,
                "{url}: {a_msg:?}"
            );
        }
        let (huge, _) = answer(&plain, &at("/huge")).await;
        assert!(huge.body_cut, "{huge:?}");
        assert_eq!(huge.body.as_deref(), Some("65536 bytes"));
        let (chunked, _) = answer(&plain, &at("/chunked")).await;
        assert_eq!(chunked.body.as_deref(), Some("hello world"));
    }

    #[tokio::test]
    async fn the_plain_path_sends_what_reqwest_sends() {
        let port = server().await;
        let url = format!("http://127.0.0.1:{port}/echo?a=1&b=%20#fragment");
        for p in [probe(true, true), probe(true, false)] {
            let head = answer(&p, &url).await.0.body.unwrap().to_lowercase();
            assert!(
                head.starts_with("get /echo?a=1&b=%20 http/1.1\r\n"),
                "{head}"
            );
            for line in [
                format!("host: 127.0.0.1:{port}\r\n"),
                format!("user-agent: {}\r\n", USER_AGENT.to_lowercase()),
                "accept: */*\r\n".to_owned(),
            ] {
                assert!(head.contains(&line), "{line:?} in {head}");
            }
        }
    }

    #[tokio::test]
    async fn the_plain_path_keeps_the_ssrf_guard() {
        let port = server().await;
        let (plain, reqwest) = (probe(false, true), probe(false, false));
        for url in [
            format!("http://localhost:{port}/ok"),
            format!("http://127.0.0.1:{port}/ok"),
            format!("http://[::ffff:127.0.0.1]:{port}/ok"),
        ] {
            let (a, a_msg) = answer(&plain, &url).await;
            let (b, _) = answer(&reqwest, &url).await;
            assert_eq!(a, b, "{url}");
            assert_eq!(a.kind, ErrorKind::Blocked, "{url}: {a:?}");
            assert!(a_msg.contains("MONITOR_ALLOW_PRIVATE_TARGETS"), "{a_msg}");
        }
    }

    #[test]
    fn only_plain_http_without_credentials_or_redirects_takes_the_plain_path() {
        let url = |s: &str| url::Url::parse(s).unwrap();
        assert!(super::plain::eligible(&url("http://127.0.0.1:8/x?y"), 0));
        assert!(!super::plain::eligible(&url("http://127.0.0.1:8/"), 1));
        assert!(!super::plain::eligible(&url("https://127.0.0.1:8/"), 0));
        assert!(!super::plain::eligible(&url("http://u:p@127.0.0.1:8/"), 0));
        assert!(!super::plain::eligible(&url("http://u@127.0.0.1:8/"), 0));
    }
}
