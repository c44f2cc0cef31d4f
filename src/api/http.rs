//! The JSON side: grpc-gateway style routes generated from the proto's
//! `google.api.http` annotations, the seed's curl routes, and the OpenAPI
//! document.
//!
//! The routes call the same [`MonitorApi`] as gRPC, so validation, errors and
//! isolation are the gRPC ones. Bodies are canonical proto3 JSON (pbjson):
//! lowerCamelCase out, both spellings in, unknown fields refused.
//!
//! Every error is `{code, message, details}` (a `google.rpc.Status` in JSON)
//! with grpc-gateway's HTTP status for the code — including what axum
//! rejects before a handler runs (malformed JSON, wrong types, an unknown
//! route or method, a body over the limit), which [`errors_as_json`] rewrites.

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::{DefaultBodyLimit, MatchedPath, Request, State},
    http::{HeaderValue, Method, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
};
use serde_json::{Value, json};
use tonic::Code;
use tonic_types::StatusExt;

use super::{grpc::MonitorApi, observe::observe_http, openapi, seed};
use crate::{
    auth::{TokenKeys, layer::authenticate},
    error::http_status,
    health::Health,
    metrics::Metrics,
    proto::rest,
};

/// What the generated handlers need at run time (`runtime_crate` in
/// build.rs): the error type they return and how they build a tonic request.
pub mod gateway {
    use std::net::IpAddr;

    use crate::auth::limit::Peer;

    /// The header [`super::peer_header`] sets from the connection (any value
    /// a client sent is replaced), read back into a [`Peer`] extension.
    pub const PEER_HEADER: &str = "x-monitor-peer";

    /// A tonic request for a generated handler: the forwarded headers as
    /// metadata, the caller's identity and the peer address as extensions.
    pub fn build_tonic_request<T, E>(
        body: T,
        headers: &axum::http::HeaderMap,
        extension: Option<E>,
    ) -> tonic::Request<T>
    where
        E: Clone + Send + Sync + 'static,
    {
        let mut req = tonic_rest::build_tonic_request(body, headers, extension);
        if let Some(ip) = headers
            .get(PEER_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<IpAddr>().ok())
        {
            req.extensions_mut().insert(Peer(ip));
        }
        req
    }

    /// A gRPC status answered as JSON.
    #[derive(Debug)]
    pub struct RestError(tonic::Status);

    impl RestError {
        pub fn new(status: tonic::Status) -> Self {
            Self(status)
        }
    }

    impl From<tonic::Status> for RestError {
        fn from(status: tonic::Status) -> Self {
            Self(status)
        }
    }

    impl axum::response::IntoResponse for RestError {
        fn into_response(self) -> axum::response::Response {
            super::status_response(&self.0)
        }
    }
}

/// Paths callable without a token.
fn is_public(path: &str) -> bool {
    rest::PUBLIC_REST_PATHS.contains(&path) || seed::PUBLIC_PATHS.contains(&path)
}

/// The HTTP router: generated v1 routes, the seed's routes,
/// `/openapi.json`, `/metrics`, `/healthz` and `/readyz`.
pub fn router(
    api: MonitorApi,
    keys: Arc<TokenKeys>,
    max_body: usize,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
) -> Router {
    let api = Arc::new(api);
    let ops = Router::new()
        .route("/metrics", get(metrics_text))
        .with_state(metrics.clone())
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(ready).with_state(health));
    Router::new()
        .merge(rest::monitor_service_rest_router(api.clone()))
        .merge(seed::router(api))
        .route_layer(middleware::from_fn_with_state(keys, require_token))
        .route("/openapi.json", get(openapi_document))
        .merge(ops)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn(errors_as_json))
        .layer(middleware::from_fn_with_state(metrics, observe_http))
        .layer(middleware::map_request(json_by_default))
        .layer(middleware::map_request(peer_header))
}

/// Puts the connection's peer address in [`gateway::PEER_HEADER`],
/// replacing whatever a client sent there, for the login limits.
async fn peer_header(mut req: Request) -> Request {
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    let headers = req.headers_mut();
    headers.remove(gateway::PEER_HEADER);
    if let Some(ip) = peer
        && let Ok(value) = HeaderValue::from_str(&ip.to_string())
    {
        headers.insert(gateway::PEER_HEADER, value);
    }
    req
}

/// Prometheus text format.
async fn metrics_text(State(metrics): State<Arc<Metrics>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        metrics.encode(),
    )
        .into_response()
}

/// Readiness: 200 while the database and Redis answer, 503 otherwise, with
/// which one is down.
async fn ready(State(health): State<Arc<Health>>) -> Response {
    let status = if health.ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(health.report())).into_response()
}

async fn openapi_document() -> Response {
    (
        [(
            header::CACHE_CONTROL,
            HeaderValue::from_static("max-age=60"),
        )],
        Json(openapi::document().clone()),
    )
        .into_response()
}

async fn not_found(method: Method, uri: axum::http::Uri) -> Response {
    error_response(
        StatusCode::NOT_FOUND,
        Code::NotFound,
        &format!("no route for {method} {}; see /openapi.json", uri.path()),
        &[],
    )
}

/// Authenticates a matched route that needs a token and hands the handler
/// the caller's [`crate::domain::UserId`], as the gRPC auth layer does.
async fn require_token(
    State(keys): State<Arc<TokenKeys>>,
    matched: Option<MatchedPath>,
    mut req: Request,
    next: Next,
) -> Response {
    let public = matched.as_ref().is_some_and(|m| is_public(m.as_str()));
    if !public {
        match authenticate(&keys, req.headers()) {
            Ok(user) => {
                tracing::Span::current().record("user_id", user.0);
                req.extensions_mut().insert(user);
            }
            Err(err) => return status_response(&err.into()),
        }
    }
    next.run(req).await
}

/// The gateway speaks only JSON: a body sent without a content type, or with
/// curl's default form type (`curl -d`), is read as JSON. Any other type is
/// refused with 415.
async fn json_by_default(mut req: Request) -> Request {
    let form_or_missing = req.headers().get(header::CONTENT_TYPE).is_none_or(|v| {
        v.to_str()
            .is_ok_and(|t| t.starts_with("application/x-www-form-urlencoded"))
    });
    if form_or_missing && matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH) {
        req.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    req
}

/// Rewrites an error response that is not JSON yet — axum's rejections —
/// into the JSON error shape, keeping what it says.
async fn errors_as_json(req: Request, next: Next) -> Response {
    let res = next.run(req).await;
    let status = res.status();
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return res;
    }
    let allow = res.headers().get(header::ALLOW).cloned();
    let body = axum::body::to_bytes(res.into_body(), 16 * 1024)
        .await
        .unwrap_or_default();
    let said = String::from_utf8_lossy(&body).trim().to_owned();
    let (status, code, message) = match status {
        StatusCode::NOT_FOUND => (status, Code::NotFound, or(said, "not found")),
        StatusCode::METHOD_NOT_ALLOWED => {
            let allowed = allow
                .as_ref()
                .and_then(|v| v.to_str().ok())
                .unwrap_or("another method");
            (
                status,
                Code::Unimplemented,
                format!("method not allowed on this path; use {allowed}"),
            )
        }
        StatusCode::PAYLOAD_TOO_LARGE => (
            status,
            Code::InvalidArgument,
            "request body too large (the limit is MONITOR_HTTP_MAX_BODY)".to_owned(),
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            status,
            Code::InvalidArgument,
            or(said, "send Content-Type: application/json"),
        ),
        // A body that parsed as JSON but not as the message (wrong types,
        // unknown fields) is a bad argument, as grpc-gateway answers it.
        StatusCode::UNPROCESSABLE_ENTITY => (
            StatusCode::BAD_REQUEST,
            Code::InvalidArgument,
            or(said, "invalid request"),
        ),
        s if s.is_server_error() => {
            tracing::error!(status = %s, body = %said, "HTTP handler failed");
            (s, Code::Internal, "internal error".to_owned())
        }
        s => (s, Code::InvalidArgument, or(said, "invalid request")),
    };
    let mut res = error_response(status, code, &message, &[]);
    if let Some(allow) = allow {
        res.headers_mut().insert(header::ALLOW, allow);
    }
    res
}

fn or(said: String, fallback: &str) -> String {
    if said.is_empty() {
        fallback.to_owned()
    } else {
        said
    }
}

/// A tonic status as a JSON error response.
pub fn status_response(status: &tonic::Status) -> Response {
    let error_details = status.get_error_details();
    let retry_after = error_details.retry_info().and_then(|r| r.retry_delay);
    let mut details: Vec<Value> = error_details
        .bad_request()
        .map(|br| {
            let violations: Vec<Value> = br
                .field_violations
                .iter()
                .map(|v| json!({"field": v.field, "description": v.description}))
                .collect();
            vec![json!({
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": violations,
            })]
        })
        .unwrap_or_default();
    if let Some(delay) = retry_after {
        details.push(json!({
            "@type": "type.googleapis.com/google.rpc.RetryInfo",
            "retryDelay": format!("{}s", delay.as_secs()),
        }));
    }
    let mut res = error_response(
        http_status(status.code()),
        status.code(),
        status.message(),
        &details,
    );
    if let Some(delay) = retry_after
        && let Ok(value) = HeaderValue::from_str(&delay.as_secs().to_string())
    {
        res.headers_mut().insert(header::RETRY_AFTER, value);
    }
    res
}

/// The JSON error shape: a `google.rpc.Status`, as grpc-gateway writes it.
fn error_response(status: StatusCode, code: Code, message: &str, details: &[Value]) -> Response {
    let body = json!({"code": code as i32, "message": message, "details": details});
    let mut res = (status, Json(body)).into_response();
    if status == StatusCode::UNAUTHORIZED {
        res.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    res
}
