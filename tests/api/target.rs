//! A local HTTP target for probes, on port 0, that records every hit; and
//! the same routes over https ([`TlsTarget`]) with a certificate made for
//! the test, from a CA the test writes out for `MONITOR_PROBE_EXTRA_ROOTS`.
//!
//! Routes: `/ok` 200, `/fail` 500, `/redirect` 302 to `/ok`, `/slow` answers
//! after 30 s, `/hold` after 300 ms while counting requests in flight,
//! `/json` a JSON document with `x-version: 3`.
//! Hostile ones: `/trickle` sends a byte a second, `/huge` a 100 MB body,
//! `/loop` redirects to itself forever. A second listener resets every
//! connection it accepts.
//! Any query string is kept, so tests tell URLs apart by it.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, SystemTime},
};

use axum::{
    Router,
    extract::{Request, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use tokio::net::TcpListener;

type Hits = Arc<Mutex<HashMap<String, Vec<SystemTime>>>>;

/// Requests to `/hold` in flight now, and the most ever at once.
#[derive(Debug, Default)]
pub struct InFlight {
    now: AtomicUsize,
    pub max: AtomicUsize,
}

#[derive(Debug, Clone)]
struct AppState {
    hits: Hits,
    in_flight: Arc<InFlight>,
}

#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub reset_addr: SocketAddr,
    hits: Hits,
    pub in_flight: Arc<InFlight>,
}

async fn record(State(state): State<AppState>, req: Request) -> Response {
    let hits = state.hits;
    let key = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().path().to_owned(), ToString::to_string);
    let nth = {
        let mut hits = hits.lock().unwrap();
        let list = hits.entry(key).or_default();
        list.push(SystemTime::now());
        list.len() - 1
    };
    // `/seq/<pattern>`: the nth hit answers 200 for `+` and 500 for `-` at
    // position n of the pattern (its last past the end).
    if let Some(pattern) = req.uri().path().strip_prefix("/seq/") {
        let ok = pattern.chars().nth(nth).or_else(|| pattern.chars().last()) == Some('+');
        let status = if ok {
            StatusCode::OK
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        };
        return (status, "seq").into_response();
    }
    match req.uri().path() {
        "/ok" => (StatusCode::OK, "ok").into_response(),
        "/fail" => (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response(),
        "/redirect" => (StatusCode::FOUND, [(header::LOCATION, "/ok")]).into_response(),
        "/hold" => {
            let n = state.in_flight.now.fetch_add(1, Ordering::SeqCst) + 1;
            state.in_flight.max.fetch_max(n, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(300)).await;
            state.in_flight.now.fetch_sub(1, Ordering::SeqCst);
            (StatusCode::OK, "held").into_response()
        }
        "/trickle" => {
            let bytes = futures_util::stream::unfold(0u32, |n| async move {
                (n < 60).then_some(())?;
                tokio::time::sleep(Duration::from_secs(1)).await;
                Some((
                    Ok::<_, std::io::Error>(axum::body::Bytes::from_static(b"x")),
                    n + 1,
                ))
            });
            (StatusCode::OK, axum::body::Body::from_stream(bytes)).into_response()
        }
        "/huge" => {
            // 100 chunks of 1 MiB, made as they are read.
            let chunk = axum::body::Bytes::from(vec![b'x'; 1 << 20]);
            let bytes = futures_util::stream::iter(
                (0..100).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
            );
            (StatusCode::OK, axum::body::Body::from_stream(bytes)).into_response()
        }
        "/loop" => (StatusCode::FOUND, [(header::LOCATION, "/loop")]).into_response(),
        "/json" => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::HeaderName::from_static("x-version"), "3"),
            ],
            r#"{"status": "ok", "version": 3, "checks": [{"name": "db", "ok": true}]}"#,
        )
            .into_response(),
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            (StatusCode::OK, "late").into_response()
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

/// The routes, recording hits in `hits`.
fn routes(hits: &Hits, in_flight: &Arc<InFlight>) -> Router {
    Router::new().fallback(get(record)).with_state(AppState {
        hits: hits.clone(),
        in_flight: in_flight.clone(),
    })
}

impl Target {
    pub async fn start() -> Self {
        let hits: Hits = Arc::default();
        let in_flight = Arc::new(InFlight::default());
        let app = routes(&hits, &in_flight);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

        let reset = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let reset_addr = reset.local_addr().unwrap();
        let reset_hits = hits.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = reset.accept().await {
                reset_hits
                    .lock()
                    .unwrap()
                    .entry("/reset".into())
                    .or_default()
                    .push(SystemTime::now());
                // Linger 0: close with RST, not FIN.
                let _ = stream.set_zero_linger();
                drop(stream);
            }
        });
        Self {
            addr,
            reset_addr,
            hits,
            in_flight,
        }
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{path_and_query}", self.addr)
    }

    pub fn reset_url(&self) -> String {
        format!("http://{}/reset", self.reset_addr)
    }

    /// Hit times for a path and query, in order.
    pub fn hits(&self, path_and_query: &str) -> Vec<SystemTime> {
        self.hits
            .lock()
            .unwrap()
            .get(path_and_query)
            .cloned()
            .unwrap_or_default()
    }

    pub fn total_hits(&self) -> usize {
        self.hits.lock().unwrap().values().map(Vec::len).sum()
    }
}

/// The routes over https on 127.0.0.1, port 0, with a leaf certificate for
/// `127.0.0.1` and `localhost` signed by a CA made for the test. The CA's
/// PEM file is [`Self::ca_pem`], for `MONITOR_PROBE_EXTRA_ROOTS`. Each
/// connection gets the certificate current when it is accepted, so
/// [`Self::renew`] is seen by the next probe.
#[derive(Debug)]
pub struct TlsTarget {
    pub addr: SocketAddr,
    pub ca_pem: std::path::PathBuf,
    hits: Hits,
    ca: rcgen::Issuer<'static, rcgen::KeyPair>,
    config: Arc<Mutex<Arc<tokio_rustls::rustls::ServerConfig>>>,
    _dir: tempfile::TempDir,
}

impl TlsTarget {
    /// Serves a certificate that expires `days_left` days (and an hour) from now.
    pub async fn start(days_left: i64) -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "monitor test CA");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let key = rcgen::KeyPair::generate().unwrap();
        let ca_cert = params.self_signed(&key).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ca_pem = dir.path().join("test-ca.pem");
        std::fs::write(&ca_pem, ca_cert.pem()).unwrap();
        let ca = rcgen::Issuer::new(params, key);
        let config = Arc::new(Mutex::new(server_config(&ca, days_left)));

        let hits: Hits = Arc::default();
        let app = routes(&hits, &Arc::default());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let current = config.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let tls = tokio_rustls::TlsAcceptor::from(current.lock().unwrap().clone());
                let app = app.clone();
                tokio::spawn(async move {
                    let Ok(stream) = tls.accept(tcp).await else {
                        return;
                    };
                    let _ = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(
                        hyper_util::rt::TokioIo::new(stream),
                        hyper_util::service::TowerToHyperService::new(app),
                    )
                    .await;
                });
            }
        });
        Self {
            addr,
            ca_pem,
            hits,
            ca,
            config,
            _dir: dir,
        }
    }

    /// `https://127.0.0.1:<port><path_and_query>`.
    pub fn url(&self, path_and_query: &str) -> String {
        format!("https://{}{path_and_query}", self.addr)
    }

    /// From the next connection on, a new certificate expiring `days_left` days from now.
    pub fn renew(&self, days_left: i64) {
        *self.config.lock().unwrap() = server_config(&self.ca, days_left);
    }

    pub fn hits(&self, path_and_query: &str) -> usize {
        self.hits
            .lock()
            .unwrap()
            .get(path_and_query)
            .map_or(0, Vec::len)
    }
}

/// A server config with a new leaf from `ca`, valid from a day ago until
/// `days_left` days and an hour from now.
fn server_config(
    ca: &rcgen::Issuer<'static, rcgen::KeyPair>,
    days_left: i64,
) -> Arc<tokio_rustls::rustls::ServerConfig> {
    use tokio_rustls::rustls;
    let mut params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap();
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(days_left) + time::Duration::hours(1);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = params.signed_by(&key, ca).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![leaf.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
    .unwrap();
    Arc::new(config)
}
