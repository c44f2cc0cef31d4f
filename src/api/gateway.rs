//! The JSON gateway's glue: the routes generated from the proto's
//! `google.api.http` annotations (one axum handler per RPC, calling the same
//! `MonitorService` implementation as gRPC), what those handlers need at run
//! time (`runtime_crate` in build.rs), and the JSON error shape.
//!
//! Every error is `{code, message, details}` (a `google.rpc.Status` in JSON)
//! with grpc-gateway's HTTP status for the code ([`crate::error::http_status`],
//! the one table of codes).

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};
use tonic::Code;
use tonic_types::StatusExt;

use super::Caller;
use crate::{auth::limit::Peer, error::http_status};

/// The generated routes.
// Generated code: not held to the crate's lints; its handlers `#[expect]`
// lints this module already allows.
#[allow(clippy::all, clippy::pedantic, unfulfilled_lint_expectations)]
pub mod routes {
    include!(concat!(env!("OUT_DIR"), "/monitor_rest_routes.rs"));
}

/// A tonic request for a generated handler: the forwarded headers as
/// metadata, the [`Caller`]'s identity and peer address as the extensions
/// the gRPC side reads.
pub fn build_tonic_request<T>(
    body: T,
    headers: &axum::http::HeaderMap,
    caller: Option<Caller>,
) -> tonic::Request<T> {
    let mut req = tonic_rest::build_tonic_request::<T, Caller>(body, headers, None);
    if let Some(caller) = caller {
        caller.attach(&mut req);
    }
    req
}

impl Caller {
    /// Puts the caller's identity and peer address where the gRPC handlers
    /// find them.
    pub fn attach<T>(self, req: &mut tonic::Request<T>) {
        if let Some(user) = self.user {
            req.extensions_mut().insert(user);
        }
        if let Some(ip) = self.peer {
            req.extensions_mut().insert(Peer(ip));
        }
    }
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

impl From<crate::error::Error> for RestError {
    fn from(error: crate::error::Error) -> Self {
        Self(error.into())
    }
}

impl IntoResponse for RestError {
    fn into_response(self) -> Response {
        status_response(&self.0)
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
pub fn error_response(
    status: StatusCode,
    code: Code,
    message: &str,
    details: &[Value],
) -> Response {
    let body = json!({"code": code as i32, "message": message, "details": details});
    let mut res = (status, Json(body)).into_response();
    if status == StatusCode::UNAUTHORIZED {
        res.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    res
}
