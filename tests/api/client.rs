//! The crate's retrying client (`monitor::client`) against a gRPC endpoint
//! whose responses break the way a killed instance's do behind a proxy:
//! headers sent, then the stream reset. The endpoint is a plain HTTP/2
//! server on port 0 that answers with real gRPC frames, so each failure
//! happens exactly when the test says, with no timing involved.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use axum::{Router, body::Bytes, extract::State, http::StatusCode, response::Response};
use http_body_util::BodyExt;
use monitor::{
    client::{RetryChannel, RetryPolicy},
    proto::{
        IDEMPOTENT_METHODS, monitor::v1 as pb,
        monitor::v1::monitor_service_client::MonitorServiceClient,
    },
};
use prost::Message;
use tokio::net::TcpListener;
use tonic::{Code, transport::Channel};

/// How the endpoint answers each method, attempt by attempt.
#[derive(Clone, Copy, Debug)]
enum Answer {
    /// Headers and half a message, then the stream is reset.
    BreakMidResponse,
    /// A trailers-only `UNAVAILABLE`.
    Unavailable,
    /// A trailers-only `NOT_FOUND`: an answer, not a failure.
    NotFound,
    /// A whole, successful response.
    Ok,
}

#[derive(Clone, Default)]
struct Script {
    /// Per method: the answers to give, in order; the last one repeats.
    plans: Arc<HashMap<&'static str, Vec<Answer>>>,
    /// Per method: the request bodies received.
    seen: Arc<Mutex<HashMap<String, Vec<Bytes>>>>,
}

fn grpc_frame(message: &impl Message) -> Bytes {
    let body = message.encode_to_vec();
    let mut frame = vec![0u8];
    frame.extend(u32::try_from(body.len()).unwrap().to_be_bytes());
    frame.extend(body);
    frame.into()
}

fn success_body(method: &str) -> Bytes {
    match method {
        "Login" => grpc_frame(&pb::LoginResponse {
            token: "v4.local.test".into(),
            expires_at: None,
        }),
        "ListUrls" => grpc_frame(&pb::ListUrlsResponse {
            urls: vec![pb::Url {
                id: 7,
                ..Default::default()
            }],
        }),
        _ => grpc_frame(&pb::AddUrlResponse { url: None }),
    }
}

fn trailers_only(code: Code) -> Response {
    Response::builder()
        .header("content-type", "application/grpc")
        .header("grpc-status", (code as i32).to_string())
        .header("grpc-message", "scripted")
        .body(axum::body::Body::empty())
        .unwrap()
}

async fn answer(State(script): State<Script>, request: axum::extract::Request) -> Response {
    let method = request.uri().path().rsplit('/').next().unwrap().to_owned();
    let body = request.into_body().collect().await.unwrap().to_bytes();
    let attempt = {
        let mut seen = script.seen.lock().unwrap();
        let bodies = seen.entry(method.clone()).or_default();
        bodies.push(body);
        bodies.len()
    };
    let plan = &script.plans[method.as_str()];
    match plan[(attempt - 1).min(plan.len() - 1)] {
        Answer::Unavailable => trailers_only(Code::Unavailable),
        Answer::NotFound => trailers_only(Code::NotFound),
        Answer::BreakMidResponse => {
            let half = success_body(&method).slice(..3);
            let frames = futures_util::stream::iter([
                Ok(half),
                Err(std::io::Error::other("the instance died")),
            ]);
            Response::builder()
                .header("content-type", "application/grpc")
                .body(axum::body::Body::from_stream(frames))
                .unwrap()
        }
        Answer::Ok => {
            let mut trailers = http::HeaderMap::new();
            trailers.insert("grpc-status", "0".parse().unwrap());
            let frames = futures_util::stream::iter([
                Ok::<_, std::convert::Infallible>(http_body::Frame::data(success_body(&method))),
                Ok(http_body::Frame::trailers(trailers)),
            ]);
            Response::builder()
                .status(StatusCode::OK)
                .header("content-type", "application/grpc")
                .body(axum::body::Body::new(http_body_util::StreamBody::new(
                    frames,
                )))
                .unwrap()
        }
    }
}

/// Serves `plans` over h2c on port 0; returns a retrying client and the script.
async fn scripted(
    plans: HashMap<&'static str, Vec<Answer>>,
) -> (MonitorServiceClient<RetryChannel>, Script) {
    let script = Script {
        plans: Arc::new(plans),
        ..Script::default()
    };
    let app = Router::new().fallback(answer).with_state(script.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let policy = RetryPolicy {
        initial_backoff: std::time::Duration::from_millis(1),
        ..RetryPolicy::default()
    };
    (
        MonitorServiceClient::new(RetryChannel::with_policy(channel, policy)),
        script,
    )
}

fn attempts(script: &Script, method: &str) -> Vec<Bytes> {
    script
        .seen
        .lock()
        .unwrap()
        .get(method)
        .cloned()
        .unwrap_or_default()
}

#[test]
fn the_proto_marks_reads_and_login_idempotent_and_no_write() {
    let mut methods: Vec<&str> = IDEMPOTENT_METHODS
        .iter()
        .map(|p| p.strip_prefix("/monitor.v1.MonitorService/").unwrap())
        .collect();
    methods.sort_unstable();
    assert_eq!(
        methods,
        [
            "GetStatusPage",
            "GetUrl",
            "GetUrlStats",
            "ListChannels",
            "ListDeliveries",
            "ListIncidents",
            "ListMaintenanceWindows",
            "ListStatuses",
            "ListUrls",
            "Login"
        ]
    );
}

#[tokio::test]
async fn a_read_whose_stream_breaks_mid_response_is_sent_again_and_succeeds() {
    use Answer::{BreakMidResponse, Ok};
    let (mut client, script) = scripted(HashMap::from([(
        "ListUrls",
        vec![BreakMidResponse, BreakMidResponse, Ok],
    )]))
    .await;
    let urls = client.list_urls(pb::ListUrlsRequest {}).await.unwrap();
    assert_eq!(urls.into_inner().urls[0].id, 7);
    let sent = attempts(&script, "ListUrls");
    assert_eq!(sent.len(), 3, "two broken attempts, then a whole one");
}

#[tokio::test]
async fn login_after_unavailable_is_sent_again_with_the_same_body() {
    use Answer::{Ok, Unavailable};
    let (mut client, script) = scripted(HashMap::from([("Login", vec![Unavailable, Ok])])).await;
    let request = pb::LoginRequest {
        email: "a@example.com".into(),
        password: "correct horse battery".into(),
    };
    let res = client.login(request.clone()).await.unwrap();
    assert_eq!(res.into_inner().token, "v4.local.test");
    let sent = attempts(&script, "Login");
    assert_eq!(sent.len(), 2);
    for body in sent {
        assert_eq!(
            body,
            grpc_frame(&request),
            "each attempt carries the request"
        );
    }
}

#[tokio::test]
async fn a_write_is_never_sent_twice() {
    let (mut client, script) = scripted(HashMap::from([(
        "AddUrl",
        vec![Answer::BreakMidResponse, Answer::Ok],
    )]))
    .await;
    let err = client
        .add_url(pb::AddUrlRequest {
            url: "http://127.0.0.1/".into(),
            period: None,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_ne!(err.code(), Code::Ok);
    assert_eq!(attempts(&script, "AddUrl").len(), 1, "AddUrl sent once");
}

#[tokio::test]
async fn an_answer_other_than_unavailable_is_returned_at_once() {
    let (mut client, script) = scripted(HashMap::from([(
        "ListUrls",
        vec![Answer::NotFound, Answer::Ok],
    )]))
    .await;
    let err = client.list_urls(pb::ListUrlsRequest {}).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(attempts(&script, "ListUrls").len(), 1);
}

#[tokio::test]
async fn retries_stop_after_the_policys_attempts_with_the_last_answer() {
    let (mut client, script) =
        scripted(HashMap::from([("ListUrls", vec![Answer::Unavailable])])).await;
    let err = client.list_urls(pb::ListUrlsRequest {}).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert_eq!(err.message(), "scripted");
    let max = RetryPolicy::default().max_attempts as usize;
    assert_eq!(attempts(&script, "ListUrls").len(), max);

    let (mut client, script) = scripted(HashMap::from([(
        "ListUrls",
        vec![Answer::BreakMidResponse],
    )]))
    .await;
    let err = client.list_urls(pb::ListUrlsRequest {}).await.unwrap_err();
    assert_ne!(err.code(), Code::Ok);
    assert_eq!(attempts(&script, "ListUrls").len(), max);
}

#[test]
fn the_service_config_for_other_languages_retries_the_same_methods_the_same_way() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grpc-service-config.json");
    let config: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let method = &config["methodConfig"][0];
    let mut named: Vec<String> = method["name"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            format!(
                "/{}/{}",
                n["service"].as_str().unwrap(),
                n["method"].as_str().unwrap()
            )
        })
        .collect();
    named.sort();
    let mut idempotent: Vec<&str> = IDEMPOTENT_METHODS.to_vec();
    idempotent.sort_unstable();
    assert_eq!(
        named, idempotent,
        "deploy/grpc-service-config.json names the proto's idempotent methods"
    );
    let policy = RetryPolicy::default();
    let retry = &method["retryPolicy"];
    assert_eq!(retry["maxAttempts"], policy.max_attempts);
    assert_eq!(
        retry["initialBackoff"],
        format!("{}s", policy.initial_backoff.as_secs_f64())
    );
    assert_eq!(
        retry["maxBackoff"],
        format!("{}s", policy.max_backoff.as_secs_f64())
    );
    assert_eq!(
        retry["retryableStatusCodes"],
        serde_json::json!(["UNAVAILABLE"])
    );
}

#[test]
fn envoy_retries_exactly_the_protos_idempotent_methods() {
    let yaml = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/envoy.yaml"),
    )
    .unwrap();
    let list = yaml
        .lines()
        .find_map(|l| l.split("MonitorService/(").nth(1))
        .and_then(|rest| rest.split(')').next())
        .expect("deploy/envoy.yaml has the retried methods' regex");
    let mut named: Vec<&str> = list.split('|').collect();
    named.sort_unstable();
    let mut idempotent: Vec<&str> = IDEMPOTENT_METHODS
        .iter()
        .map(|p| p.strip_prefix("/monitor.v1.MonitorService/").unwrap())
        .collect();
    idempotent.sort_unstable();
    assert_eq!(named, idempotent);
}
