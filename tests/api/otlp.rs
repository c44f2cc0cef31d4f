//! With the `otlp` feature (`cargo test --features otlp`), spans reach an
//! OTLP/HTTP collector: here a stand-in that records what is posted.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Router, body::Bytes, extract::State, routing::post};
use monitor::proto::monitor::v1 as pb;

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
    let mut child = Command::new(env!("CARGO_BIN_EXE_monitor"))
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .env("MONITOR_DATA_DIR", tmp.path())
        .env("MONITOR_GRPC_ADDR", "127.0.0.1:0")
        .env("MONITOR_HTTP_ADDR", "127.0.0.1:0")
        .env("MONITOR_LOG_FORMAT", "json")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let addr = stdout
        .lines()
        .map_while(Result::ok)
        .find(|l| l.contains("\"serving\""))
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(&l).unwrap()["grpc_addr"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .expect("the server said it is serving");

    let mut client =
        pb::monitor_service_client::MonitorServiceClient::connect(format!("http://{addr}"))
            .await
            .unwrap();
    client
        .register(pb::RegisterRequest {
            email: "otlp@example.com".into(),
            password: "correct horse battery".into(),
        })
        .await
        .unwrap();
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
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
