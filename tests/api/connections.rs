//! Connections cannot use up the server (issue 13, item 4): a cap per port,
//! a header-read timeout and an idle timeout, shown on the binary under a
//! low open-file limit.

use std::time::{Duration, Instant};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tonic::transport::Endpoint;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use crate::binary::{Running, monitor_command, with_open_file_limit};

/// The HTTP/2 client preface and an empty SETTINGS frame: enough for the
/// server's handshake to finish, then nothing.
const H2_HELLO: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0";
/// An HTTP/1 request head that never ends.
const H1_HELLO: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: monitor\r\n";

/// `count` connections to `addr`; every other one sends `hello` and then
/// nothing, the rest send nothing at all.
async fn open_idle(addr: &str, count: usize, hello: &[u8]) -> Vec<TcpStream> {
    let mut streams = Vec::with_capacity(count);
    for i in 0..count {
        if let Ok(Ok(mut stream)) =
            tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(addr)).await
        {
            if i % 2 == 1 {
                let _ = stream.write_all(hello).await;
            }
            streams.push(stream);
        }
    }
    streams
}

/// Whether the server closed `stream` (EOF or reset); what it sent before
/// (SETTINGS, a GOAWAY, a 408) is read and ignored.
fn closed(stream: &TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match stream.try_read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        }
    }
}

async fn healthz(http: &str) -> bool {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    client
        .get(format!("http://{http}/healthz"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

/// A gRPC health check on a new connection.
async fn grpc_check(grpc: &str) -> bool {
    let connect = Endpoint::from_shared(format!("http://{grpc}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(1))
        .connect()
        .await;
    let Ok(channel) = connect else { return false };
    HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .await
        .is_ok()
}

#[tokio::test]
async fn idle_connections_past_the_file_limit_are_shed_and_both_ports_keep_answering() {
    const FILE_LIMIT: u32 = 256;
    const PER_PORT: usize = 300;
    // reqwest is used here before any App installs the TLS provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tmp = tempfile::tempdir().unwrap();
    let mut cmd = monitor_command(tmp.path());
    cmd.env("MONITOR_HEADER_READ_TIMEOUT", "1s")
        .env("MONITOR_CONNECTION_IDLE_TIMEOUT", "3s");
    let mut server = Running::start(with_open_file_limit(&cmd, FILE_LIMIT));
    let (grpc, http) = server.addrs();

    // A client connected before the flood.
    let early = Endpoint::from_shared(format!("http://{grpc}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut early = HealthClient::new(early);
    early.check(HealthCheckRequest::default()).await.unwrap();

    // More idle connections than the process may open files, on each port.
    let started = Instant::now();
    let mut flood = open_idle(&grpc, PER_PORT, H2_HELLO).await;
    flood.extend(open_idle(&http, PER_PORT, H1_HELLO).await);
    let opened = flood.len();
    let flood_took = started.elapsed();
    let fds_under_flood = server.open_fds();

    // The connection opened before keeps working.
    early
        .check(HealthCheckRequest::default())
        .await
        .expect("a connection opened before the flood still answers");

    // New connections are answered again once the idle ones are shed.
    let flood_ended = Instant::now();
    let mut healthz_after = None;
    let mut grpc_after = None;
    while flood_ended.elapsed() < Duration::from_secs(10)
        && (healthz_after.is_none() || grpc_after.is_none())
    {
        if healthz_after.is_none() && healthz(&http).await {
            healthz_after = Some(flood_ended.elapsed());
        }
        if grpc_after.is_none() && grpc_check(&grpc).await {
            grpc_after = Some(flood_ended.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Header-read timeout (1 s), idle timeout (3 s) and one more second
    // for a GOAWAY that is not answered: every flood connection is gone.
    tokio::time::sleep(Duration::from_secs(5).saturating_sub(flood_ended.elapsed())).await;
    let still_open = flood.iter().filter(|s| !closed(s)).count();
    let fds_after = server.open_fds();
    let log = server.read_log().join("\n");
    eprintln!(
        "opened {opened} idle connections in {flood_took:?}; server fds under the flood: \
         {fds_under_flood}, after: {fds_after}; /healthz answered after {healthz_after:?}, \
         a new gRPC call after {grpc_after:?}; flood connections still open after 5 s: {still_open}"
    );
    assert!(
        !log.contains("Too many open files"),
        "the server ran out of file descriptors:\n{log}"
    );
    let healthz_after = healthz_after.expect("/healthz answered again");
    let grpc_after = grpc_after.expect("a new gRPC call succeeded again");
    assert!(
        healthz_after < Duration::from_secs(5) && grpc_after < Duration::from_secs(5),
        "recovered within the timeouts"
    );
    assert_eq!(still_open, 0, "every idle connection was closed");
    assert!(
        log.contains("connection cap reached"),
        "the cap was reached and logged:\n{log}"
    );
    assert!(log.contains("\"open_files\":256"), "{log}");
}

#[tokio::test]
async fn silent_slow_and_kept_alive_http1_connections_close_at_the_header_read_timeout() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cmd = monitor_command(tmp.path());
    cmd.env("MONITOR_HEADER_READ_TIMEOUT", "1s")
        .env("MONITOR_CONNECTION_IDLE_TIMEOUT", "60s");
    let mut server = Running::start(cmd);
    let (grpc, http) = server.addrs();

    let silent = TcpStream::connect(&http).await.unwrap();
    let silent_grpc = TcpStream::connect(&grpc).await.unwrap();
    let mut partial = TcpStream::connect(&http).await.unwrap();
    partial.write_all(H1_HELLO).await.unwrap();
    // A kept-alive connection after one whole request and its answer.
    let mut kept_alive = TcpStream::connect(&http).await.unwrap();
    kept_alive.write_all(H1_HELLO).await.unwrap();
    kept_alive.write_all(b"\r\n").await.unwrap();
    let mut answer = [0u8; 1024];
    let n = kept_alive.read(&mut answer).await.unwrap();
    assert!(answer[..n].starts_with(b"HTTP/1.1 200"));
    let started = Instant::now();
    let mut closed_after = [None; 4];
    while started.elapsed() < Duration::from_secs(5) && closed_after.iter().any(Option::is_none) {
        for (i, stream) in [&silent, &silent_grpc, &partial, &kept_alive]
            .into_iter()
            .enumerate()
        {
            if closed_after[i].is_none() && closed(stream) {
                closed_after[i] = Some(started.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "closed after (silent HTTP, silent gRPC, unfinished head, HTTP/1 kept alive after a \
         request): {closed_after:?} (header-read timeout 1 s, idle timeout 60 s)"
    );
    for after in closed_after {
        let after = after.expect("closed");
        assert!(
            after >= Duration::from_millis(900) && after < Duration::from_millis(2500),
            "{after:?}"
        );
    }
}
