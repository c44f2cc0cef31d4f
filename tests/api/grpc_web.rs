//! gRPC-Web on the gRPC port (tonic-web), the way a browser speaks it: a
//! hand-rolled client over HTTP/1.1 (reqwest) framing the generated prost
//! messages (1 flag byte, 4-byte big-endian length, the message; trailers
//! as a frame flagged 0x80), in binary (`application/grpc-web+proto`) and
//! text (`application/grpc-web-text`, base64) modes; and CORS for the
//! origins in `MONITOR_CORS_ORIGINS`.

use base64::{Engine, engine::general_purpose::STANDARD};
use monitor::proto::monitor::v1 as pb;
use prost::Message;
use reqwest::{StatusCode, header::HeaderMap};

use std::time::Duration;

use crate::{
    helpers::{Backend, PASSWORD, TestApp, prober_settings, spawn_app, spawn_app_with},
    target::Target,
};

const ALLOWED: &str = "https://status.example.com";
const OTHER: &str = "https://evil.example.net";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Binary,
    Text,
}

impl Mode {
    fn content_type(self) -> &'static str {
        match self {
            Mode::Binary => "application/grpc-web+proto",
            Mode::Text => "application/grpc-web-text",
        }
    }
}

/// What a gRPC-Web call got back.
#[derive(Debug)]
struct Answer {
    http: StatusCode,
    headers: HeaderMap,
    messages: Vec<Vec<u8>>,
    /// `grpc-status` from the trailers frame (or the headers, for a
    /// trailers-only answer).
    grpc_status: Option<i32>,
    grpc_message: String,
}

impl Answer {
    fn message<M: Message + Default>(&self) -> M {
        assert_eq!(self.grpc_status, Some(0), "{self:?}");
        assert_eq!(self.messages.len(), 1, "{self:?}");
        M::decode(self.messages[0].as_slice()).expect("a message of the answer's type")
    }
}

/// One length-prefixed gRPC-Web frame.
fn frame(flag: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![flag];
    out.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Decodes a text-mode body: base64 whose padded pieces may be
/// concatenated (one per frame), so each 4-character group on its own.
fn decode_text(body: &[u8]) -> Vec<u8> {
    let clean: Vec<u8> = body
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    assert_eq!(clean.len() % 4, 0, "text body is whole base64 groups");
    clean
        .chunks(4)
        .flat_map(|group| STANDARD.decode(group).expect("base64"))
        .collect()
}

/// Posts `body` (already framed, base64 in text mode) to `/monitor.v1.MonitorService/<method>`.
async fn post(
    app: &TestApp,
    method: &str,
    mode: Mode,
    body: Vec<u8>,
    token: Option<&str>,
    origin: Option<&str>,
) -> Answer {
    let url = format!("http://{}/monitor.v1.MonitorService/{method}", app.addr);
    let mut req = reqwest::Client::new()
        .post(url)
        .header("content-type", mode.content_type())
        .header("accept", mode.content_type())
        .header("x-grpc-web", "1")
        .body(body);
    if let Some(token) = token {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    if let Some(origin) = origin {
        req = req.header("origin", origin);
    }
    let res = req.send().await.expect("gRPC-Web request");
    assert_eq!(
        res.version(),
        reqwest::Version::HTTP_11,
        "a browser's HTTP/1.1"
    );
    let (http, headers) = (res.status(), res.headers().clone());
    let raw = res.bytes().await.expect("gRPC-Web body").to_vec();
    let mut bytes = if mode == Mode::Text && http.is_success() {
        decode_text(&raw)
    } else {
        raw
    };
    let header_text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let mut answer = Answer {
        http,
        grpc_status: header_text("grpc-status").and_then(|s| s.parse().ok()),
        grpc_message: header_text("grpc-message").unwrap_or_default(),
        headers,
        messages: Vec::new(),
    };
    while !bytes.is_empty() {
        assert!(bytes.len() >= 5, "a whole frame header: {bytes:?}");
        let len = u32::from_be_bytes(bytes[1..5].try_into().unwrap()) as usize;
        let payload = bytes[5..5 + len].to_vec();
        if bytes[0] & 0x80 == 0 {
            answer.messages.push(payload);
        } else {
            for line in String::from_utf8(payload).unwrap().split("\r\n") {
                if let Some((name, value)) = line.split_once(':') {
                    match name.trim().to_ascii_lowercase().as_str() {
                        "grpc-status" => answer.grpc_status = value.trim().parse().ok(),
                        "grpc-message" => value.trim().clone_into(&mut answer.grpc_message),
                        _ => {}
                    }
                }
            }
        }
        bytes.drain(..5 + len);
    }
    answer
}

/// A unary call with `request`, framed for `mode`.
async fn call(
    app: &TestApp,
    method: &str,
    mode: Mode,
    request: &impl Message,
    token: Option<&str>,
    origin: Option<&str>,
) -> Answer {
    let framed = frame(0, &request.encode_to_vec());
    let body = match mode {
        Mode::Binary => framed,
        Mode::Text => STANDARD.encode(framed).into_bytes(),
    };
    post(app, method, mode, body, token, origin).await
}

async fn login_and_list_urls_over_grpc_web(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.cors.cors_origins = vec![ALLOWED.into()]).await;
    let (_, email) = app.register().await;
    for mode in [Mode::Binary, Mode::Text] {
        let login = pb::LoginRequest {
            email: email.clone(),
            password: PASSWORD.into(),
        };
        let answer = call(&app, "Login", mode, &login, None, Some(ALLOWED)).await;
        assert_eq!(answer.http, StatusCode::OK, "{mode:?}");
        assert!(
            answer.headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with(mode.content_type()),
            "{mode:?}: {:?}",
            answer.headers
        );
        assert_eq!(answer.headers["access-control-allow-origin"], ALLOWED);
        let exposed = answer.headers["access-control-expose-headers"]
            .to_str()
            .unwrap();
        assert!(exposed.contains("grpc-status"), "{exposed}");
        let token = answer.message::<pb::LoginResponse>().token;
        assert!(!token.is_empty());

        // A URL added over plain gRPC is listed over gRPC-Web.
        let url = app
            .add_url(&token, &format!("https://example.com/{mode:?}"))
            .await;
        let answer = call(
            &app,
            "ListUrls",
            mode,
            &pb::ListUrlsRequest::default(),
            Some(&token),
            Some(ALLOWED),
        )
        .await;
        let listed = answer.message::<pb::ListUrlsResponse>();
        assert!(
            listed.urls.iter().any(|u| u.id == url.id),
            "{mode:?}: {listed:?}"
        );

        // Without an Origin (not a browser) it works too.
        let answer = call(&app, "Login", mode, &login, None, None).await;
        assert!(!answer.message::<pb::LoginResponse>().token.is_empty());
        assert!(answer.headers.get("access-control-allow-origin").is_none());
    }
}

async fn grpc_web_errors_carry_their_grpc_codes(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, email) = app.register().await;
    for mode in [Mode::Binary, Mode::Text] {
        // No token: UNAUTHENTICATED, with a message.
        let answer = call(
            &app,
            "ListUrls",
            mode,
            &pb::ListUrlsRequest::default(),
            None,
            None,
        )
        .await;
        assert_eq!(answer.http, StatusCode::OK, "{answer:?}");
        assert_eq!(
            answer.grpc_status,
            Some(tonic::Code::Unauthenticated as i32),
            "{answer:?}"
        );
        assert!(!answer.grpc_message.is_empty(), "{answer:?}");
        assert!(answer.messages.is_empty());

        // A wrong password.
        let login = pb::LoginRequest {
            email: email.clone(),
            password: "not the password".into(),
        };
        let answer = call(&app, "Login", mode, &login, None, None).await;
        assert_eq!(
            answer.grpc_status,
            Some(tonic::Code::Unauthenticated as i32),
            "{answer:?}"
        );

        // A bad email: INVALID_ARGUMENT.
        let register = pb::RegisterRequest {
            email: "not an email".into(),
            password: PASSWORD.into(),
        };
        let answer = call(&app, "Register", mode, &register, None, None).await;
        assert_eq!(
            answer.grpc_status,
            Some(tonic::Code::InvalidArgument as i32),
            "{answer:?}"
        );

        // A frame that is not a LoginRequest: the client's fault, no panic.
        let garbage = frame(0, &[0xff, 0xff, 0xff]);
        let body = match mode {
            Mode::Binary => garbage,
            Mode::Text => STANDARD.encode(garbage).into_bytes(),
        };
        let answer = post(&app, "Login", mode, body, None, None).await;
        assert_eq!(
            answer.grpc_status,
            Some(tonic::Code::InvalidArgument as i32),
            "{answer:?}"
        );
    }
    // An unknown method, with a token (the token is checked first), after
    // which the server still answers plain gRPC.
    let token = app.login(&email).await;
    let answer = call(
        &app,
        "NoSuchMethod",
        Mode::Binary,
        &pb::ListUrlsRequest::default(),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(
        answer.grpc_status,
        Some(tonic::Code::Unimplemented as i32),
        "{answer:?}"
    );
}

/// A CORS preflight for a gRPC-Web call from `origin`.
async fn preflight(app: &TestApp, origin: &str) -> reqwest::Response {
    reqwest::Client::new()
        .request(
            reqwest::Method::OPTIONS,
            format!("http://{}/monitor.v1.MonitorService/ListUrls", app.addr),
        )
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type,x-grpc-web,x-user-agent,authorization",
        )
        .send()
        .await
        .expect("preflight")
}

async fn cors_allows_the_listed_origins_only(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.cors.cors_origins = vec![ALLOWED.into()]).await;
    let res = preflight(&app, ALLOWED).await;
    assert!(res.status().is_success(), "{res:?}");
    let headers = res.headers();
    assert_eq!(headers["access-control-allow-origin"], ALLOWED);
    let allowed_headers = headers["access-control-allow-headers"].to_str().unwrap();
    for h in ["content-type", "x-grpc-web", "authorization"] {
        assert!(allowed_headers.contains(h), "{allowed_headers}");
    }
    assert!(
        headers["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("POST")
    );

    // Another origin: its preflight and its call are refused, with no
    // Access-Control-Allow-Origin for a browser to act on.
    let res = preflight(&app, OTHER).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(res.headers().get("access-control-allow-origin").is_none());
    let login = pb::LoginRequest {
        email: "a@example.com".into(),
        password: PASSWORD.into(),
    };
    let answer = call(&app, "Login", Mode::Binary, &login, None, Some(OTHER)).await;
    assert_eq!(answer.http, StatusCode::FORBIDDEN, "{answer:?}");
    assert!(answer.headers.get("access-control-allow-origin").is_none());
    assert!(answer.messages.is_empty());
}

async fn no_origin_is_allowed_by_default(backend: Backend) {
    let app = spawn_app(backend).await;
    let res = preflight(&app, ALLOWED).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(res.headers().get("access-control-allow-origin").is_none());
    let (_, email) = app.register().await;
    let login = pb::LoginRequest {
        email,
        password: PASSWORD.into(),
    };
    let answer = call(&app, "Login", Mode::Text, &login, None, Some(ALLOWED)).await;
    assert_eq!(answer.http, StatusCode::FORBIDDEN);
    assert!(answer.headers.get("access-control-allow-origin").is_none());
    // Not from a browser: served.
    let answer = call(&app, "Login", Mode::Text, &login, None, None).await;
    assert!(!answer.message::<pb::LoginResponse>().token.is_empty());

    // Plain HTTP/1 that is not gRPC-Web: 400.
    let res = reqwest::get(format!("http://{}/", app.addr)).await.unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
}

/// Server streaming (WatchEvents) over gRPC-Web, read as a browser reads
/// it: frames as they arrive on an open HTTP/1.1 response, until a status
/// of the watched URL comes (text mode: base64 decoded a whole group at a time).
async fn watch_events_streams_over_grpc_web(backend: Backend) {
    let target = Target::start().await;
    let app = spawn_app_with(backend, |s| {
        prober_settings(s);
        s.cors.cors_origins = vec![ALLOWED.into()];
    })
    .await;
    let (_, token) = app.user().await;
    let url = app.add_url_every(&token, &target.url("/ok"), 1).await;
    for mode in [Mode::Binary, Mode::Text] {
        let request = pb::WatchEventsRequest {
            url_id: url.id,
            resume_token: String::new(),
        };
        let framed = frame(0, &request.encode_to_vec());
        let body = match mode {
            Mode::Binary => framed,
            Mode::Text => STANDARD.encode(framed).into_bytes(),
        };
        let mut res = reqwest::Client::new()
            .post(format!(
                "http://{}/monitor.v1.MonitorService/WatchEvents",
                app.addr
            ))
            .header("content-type", mode.content_type())
            .header("accept", mode.content_type())
            .header("x-grpc-web", "1")
            .header("origin", ALLOWED)
            .header("authorization", format!("Bearer {token}"))
            .body(body)
            .send()
            .await
            .expect("gRPC-Web request");
        assert_eq!(res.status(), StatusCode::OK, "{mode:?}");
        assert_eq!(res.headers()["access-control-allow-origin"], ALLOWED);
        let (mut bytes, mut text) = (Vec::new(), Vec::new());
        let mut kinds = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        'read: loop {
            let chunk = tokio::time::timeout_at(deadline, res.chunk())
                .await
                .unwrap_or_else(|_| panic!("{mode:?}: no status event in 20 s; got {kinds:?}"))
                .expect("the stream stays open")
                .expect("a chunk, not the end of the stream");
            match mode {
                Mode::Binary => bytes.extend_from_slice(&chunk),
                Mode::Text => {
                    text.extend(chunk.iter().filter(|b| !b.is_ascii_whitespace()));
                    let whole = text.len() / 4 * 4;
                    bytes.extend(decode_text(&text[..whole]));
                    text.drain(..whole);
                }
            }
            while bytes.len() >= 5 {
                let len = u32::from_be_bytes(bytes[1..5].try_into().unwrap()) as usize;
                if bytes.len() < 5 + len {
                    break;
                }
                assert_eq!(bytes[0], 0, "{mode:?}: a message frame, not trailers");
                let event = pb::Event::decode(&bytes[5..5 + len]).expect("an Event");
                bytes.drain(..5 + len);
                if let Some(pb::event::Kind::Status(status)) = &event.kind {
                    assert_eq!((status.url_id, status.status_code), (url.id, 200));
                    break 'read;
                }
                kinds.push(event.kind);
            }
        }
    }
}

crate::on_both_backends!(
    watch_events_streams_over_grpc_web,
    login_and_list_urls_over_grpc_web,
    grpc_web_errors_carry_their_grpc_codes,
    cors_allows_the_listed_origins_only,
    no_origin_is_allowed_by_default,
);
