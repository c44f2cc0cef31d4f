//! A local HTTP target for probes, on port 0, that records every hit.
//!
//! Routes: `/ok` 200, `/fail` 500, `/redirect` 302 to `/ok`, `/slow` answers
//! after 30 s. A second listener resets every connection it accepts.
//! Any query string is kept, so tests tell URLs apart by it.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
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

#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub reset_addr: SocketAddr,
    hits: Hits,
}

async fn record(State(hits): State<Hits>, req: Request) -> Response {
    let key = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().path().to_owned(), ToString::to_string);
    hits.lock()
        .unwrap()
        .entry(key)
        .or_default()
        .push(SystemTime::now());
    match req.uri().path() {
        "/ok" => (StatusCode::OK, "ok").into_response(),
        "/fail" => (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response(),
        "/redirect" => (StatusCode::FOUND, [(header::LOCATION, "/ok")]).into_response(),
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
        let app = Router::new().fallback(get(record)).with_state(hits.clone());
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
