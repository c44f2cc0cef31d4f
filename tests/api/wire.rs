//! Malformed gRPC on the wire (issue 13, item 6): messages that do not
//! decode are the client's fault (INVALID_ARGUMENT), a stream the client
//! resets is CANCELLED; neither is logged as a server failure nor counted
//! as INTERNAL. Raw HTTP/2 frames, sent with the h2 crate to the binary.

use std::time::Duration;

use bytes::Bytes;
use tokio::net::TcpStream;

use crate::binary::{Running, monitor_command};

const REGISTER: &str = "/monitor.v1.MonitorService/Register";

async fn h2_client(addr: &str) -> h2::client::SendRequest<Bytes> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

fn grpc_request(addr: &str, path: &str) -> http::Request<()> {
    grpc_request_with(addr, path, &[])
}

fn grpc_request_with(addr: &str, path: &str, headers: &[(&str, &str)]) -> http::Request<()> {
    let mut request = http::Request::post(format!("http://{addr}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(()).unwrap()
}

/// A gRPC frame: uncompressed, its length, the bytes.
fn frame(message: &[u8]) -> Bytes {
    let mut frame = vec![0u8];
    frame.extend(u32::try_from(message.len()).unwrap().to_be_bytes());
    frame.extend(message);
    frame.into()
}

/// Sends `body` as one request to `path`; returns the answer's grpc-status
/// and grpc-message (from the headers of a trailers-only answer, or the
/// trailers).
async fn call_raw(
    client: &h2::client::SendRequest<Bytes>,
    addr: &str,
    body: Bytes,
) -> (String, String) {
    call_raw_with(client, grpc_request(addr, REGISTER), body).await
}

async fn call_raw_with(
    client: &h2::client::SendRequest<Bytes>,
    request: http::Request<()>,
    body: Bytes,
) -> (String, String) {
    let mut client = client.clone().ready().await.unwrap();
    let (response, mut send) = client.send_request(request, false).unwrap();
    send.send_data(body, true).unwrap();
    let response = response.await.unwrap();
    let mut headers = response.headers().clone();
    if headers.get("grpc-status").is_none() {
        let mut body = response.into_body();
        while let Some(data) = body.data().await {
            let _ = data;
        }
        headers = body.trailers().await.unwrap().unwrap_or_default();
    }
    let get = |name: &str| {
        headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    (get("grpc-status"), get("grpc-message"))
}

/// Register's counter for `code` in `/metrics`, 0 when absent.
async fn register_count(http: &str, code: &str) -> u64 {
    let text = reqwest::get(format!("http://{http}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| {
            l.contains(&format!("method=\"{REGISTER}\"")) && l.contains(&format!("code=\"{code}\""))
        })
        .filter(|l| !l.starts_with('#') && l.contains("_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test]
async fn malformed_messages_are_invalid_argument_and_resets_cancelled_never_internal() {
    // reqwest is used here before any App installs the TLS provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tmp = tempfile::tempdir().unwrap();
    let mut server = Running::start(monitor_command(tmp.path()));
    let (grpc, http) = server.addrs();
    let client = h2_client(&grpc).await;

    // Field 1 (email, a string) whose length is a varint that never ends.
    let bad_varint = [
        0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
    ];
    // Field 1 holding two bytes that are not UTF-8.
    let bad_utf8 = [0x0a, 0x02, 0xff, 0xfe];
    // An unknown field 15 made of 200 nested groups: past prost's recursion limit.
    let too_deep: Vec<u8> = std::iter::repeat_n(0x7b, 200)
        .chain(std::iter::repeat_n(0x7c, 200))
        .collect();
    let mut answers = Vec::new();
    for (name, message) in [
        ("bad varint", &bad_varint[..]),
        ("invalid UTF-8", &bad_utf8[..]),
        ("too deep", &too_deep[..]),
    ] {
        let (code, message) = call_raw(&client, &grpc, frame(message)).await;
        eprintln!("{name}: grpc-status {code}, {message:?}");
        answers.push((name, code, message));
    }

    // A call whose client resets the stream before its message is complete.
    let mut ready = client.clone().ready().await.unwrap();
    let (_response, mut send) = ready
        .send_request(grpc_request(&grpc, REGISTER), false)
        .unwrap();
    let mut partial = vec![0u8, 0, 0, 0, 100];
    partial.extend([0x0a, 0x05, b'a']);
    send.send_data(partial.into(), false).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    send.send_reset(h2::Reason::CANCEL);
    // And one reset while its handler runs (hashing the password).
    let mut ready = client.clone().ready().await.unwrap();
    let (_response, mut send) = ready
        .send_request(grpc_request(&grpc, REGISTER), false)
        .unwrap();
    let register = [
        &[0x0a, 13][..],
        b"a@example.com",
        &[0x12, 16],
        b"a long password!",
    ]
    .concat();
    send.send_data(frame(&register), false).unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    send.send_reset(h2::Reason::CANCEL);
    tokio::time::sleep(Duration::from_millis(500)).await;

    let invalid = register_count(&http, "INVALID_ARGUMENT").await;
    let internal = register_count(&http, "INTERNAL").await;
    let cancelled = register_count(&http, "CANCELLED").await;
    let log = server.read_log().join("\n");
    eprintln!("metrics: INVALID_ARGUMENT {invalid}, INTERNAL {internal}, CANCELLED {cancelled}");
    for line in log.lines().filter(|l| l.contains("\"level\":\"ERROR\"")) {
        eprintln!("server error: {line}");
    }
    for (name, code, message) in &answers {
        assert_eq!(code, "3", "{name}: INVALID_ARGUMENT ({message})");
        assert!(message.contains("decode"), "{name}: {message}");
    }
    assert_eq!((invalid, internal, cancelled), (3, 0, 2), "{log}");
    assert!(
        !log.contains("\"level\":\"ERROR\""),
        "nothing logged as a server failure:\n{log}"
    );
}

/// The server ends a call past the deadline its client sent (`grpc-timeout`)
/// with DEADLINE_EXCEEDED, whether or not the client enforces it (this one
/// does not): an argon2 hash takes longer than a millisecond.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_past_its_grpc_timeout_is_deadline_exceeded() {
    use prost::Message;
    let app = crate::helpers::spawn_app(crate::helpers::Backend::Sqlite).await;
    let addr = app.addr.to_string();
    let client = h2_client(&addr).await;
    let register = |email: &str| {
        frame(
            &monitor::proto::monitor::v1::RegisterRequest {
                email: email.into(),
                password: crate::helpers::PASSWORD.into(),
            }
            .encode_to_vec(),
        )
    };
    let late = grpc_request_with(&addr, REGISTER, &[("grpc-timeout", "1m")]);
    let (status, message) = call_raw_with(&client, late, register("late@example.com")).await;
    assert_eq!(status, "4", "DEADLINE_EXCEEDED: {message}");
    let in_time = grpc_request_with(&addr, REGISTER, &[("grpc-timeout", "30S")]);
    let (status, message) = call_raw_with(&client, in_time, register("in-time@example.com")).await;
    assert_eq!(status, "0", "{message}");
}
