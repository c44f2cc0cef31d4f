//! With the `otlp` feature (`cargo test --features otlp`), spans reach an
//! OTLP/HTTP collector: here a stand-in that records what is posted.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Router, body::Bytes, extract::State, routing::post};

use crate::binary::{Running, monitor_command};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_are_exported_over_otlp_http() {
    let posted: Arc<Mutex<Vec<Bytes>>> = Arc::default();
    let collector = Router::new()
        .route(
            "/v1/traces",
            post(
                |State(p): State<Arc<Mutex<Vec<Bytes>>>>, body: Bytes| async move {
                    p.lock().unwrap().push(body);
                    ""
                },
            ),
        )
        .with_state(posted.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, collector).await.unwrap() });

    let tmp = tempfile::tempdir().unwrap();
    let mut cmd = monitor_command(tmp.path());
    cmd.env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint);
    let mut server = Running::start(cmd);
    server
        .registered_client("otlp@example.com", "correct horse battery")
        .await;
    let (exit, _) = server.stop().await;
    assert!(exit.success());
    tokio::time::sleep(Duration::from_millis(200)).await;

    let posted = posted.lock().unwrap();
    let all: Vec<u8> = posted.iter().flat_map(|b| b.to_vec()).collect();
    let has = |needle: &[u8]| all.windows(needle.len()).any(|w| w == needle);
    assert!(!posted.is_empty(), "nothing was exported");
    assert!(
        has(b"/monitor.v1.MonitorService/Register"),
        "the RPC span is missing"
    );
    assert!(has(b"monitor"), "the service name is missing");
    assert!(!has(b"correct horse battery"), "a password was exported");
}
