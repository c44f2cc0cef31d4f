//! A local HTTP target for probes, on port 0, that records every hit.
//!
//! Routes: `/ok` 200, `/fail` 500, `/redirect` 302 to `/ok`, `/slow` answers
//! after 30 s, `/hold` after 300 ms while counting requests in flight.
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
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            (StatusCode::OK, "late").into_response()
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

impl Target {
    pub async fn start() -> Self {
        let hits: Hits = Arc::default();
        let in_flight = Arc::new(InFlight::default());
        let app = Router::new().fallback(get(record)).with_state(AppState {
            hits: hits.clone(),
            in_flight: in_flight.clone(),
        });
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
