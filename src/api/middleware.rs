//! The JSON side's middleware, outermost first: the caller (peer address
//! and, on routes that need one, the token's user) as one typed extension;
//! JSON as the default content type; axum's own rejections rewritten into
//! the JSON error shape.

use std::{net::SocketAddr, sync::Arc};

use axum::{
    extract::{ConnectInfo, MatchedPath, Request, State},
    http::{HeaderValue, Method, StatusCode, header},
    middleware::Next,
    response::Response,
};
use tonic::Code;

use super::{
    Caller,
    gateway::{error_response, routes::PUBLIC_REST_PATHS, status_response},
    seed,
};
use crate::auth::{TokenKeys, layer::authenticate};

/// Paths callable without a token.
fn is_public(path: &str) -> bool {
    PUBLIC_REST_PATHS.contains(&path) || seed::is_public(path)
}

/// Puts the [`Caller`] in the request's extensions: the connection's peer
/// address (for the login limits) and, on a matched route that needs a
/// token, the authenticated user, as the gRPC auth layer does. A route that
/// needs a token and has no valid one is answered here.
pub async fn identify(
    State(keys): State<Arc<TokenKeys>>,
    matched: Option<MatchedPath>,
    mut req: Request,
    next: Next,
) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let mut caller = Caller { user: None, peer };
    let public = matched.as_ref().is_some_and(|m| is_public(m.as_str()));
    if !public {
        match authenticate(&keys, req.headers()) {
            Ok(user) => {
                tracing::Span::current().record("user_id", user.0);
                caller.user = Some(user);
            }
            Err(err) => return status_response(&err.into()),
        }
    }
    req.extensions_mut().insert(caller);
    next.run(req).await
}

/// The gateway speaks only JSON: a body sent without a content type, or with
/// curl's default form type (`curl -d`), is read as JSON. Any other type is
/// refused with 415.
pub async fn json_by_default(mut req: Request) -> Request {
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
pub async fn errors_as_json(req: Request, next: Next) -> Response {
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
        // The methods a path allows are known only outside the router
        // (axum adds `Allow` last): [`name_allowed_methods`] words it.
        StatusCode::METHOD_NOT_ALLOWED => (
            status,
            Code::Unimplemented,
            "method not allowed on this path".to_owned(),
        ),
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

/// Outside the router: a 405 names the methods the path allows, in its
/// message and in the `Allow` header axum set (`GET, HEAD` for `/healthz`).
pub async fn name_allowed_methods(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let res = next.run(req).await;
    let allowed = res
        .headers()
        .get(header::ALLOW)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(',').map(str::trim).collect::<Vec<_>>().join(", "))
        .filter(|v| !v.is_empty());
    // axum sets `Allow` only when a path's method router fell back, i.e.
    // the method is not routed there; the token check (a route layer) runs
    // around that fallback too, so a request without a token would get 401
    // for a method the path does not have: it is a 405 all the same.
    let not_routed = allowed
        .as_deref()
        .is_some_and(|a| !a.split(", ").any(|m| m == method.as_str()));
    if res.status() != StatusCode::METHOD_NOT_ALLOWED && !not_routed {
        return res;
    }
    let message = match &allowed {
        Some(allowed) => format!("{method} is not allowed on {path}; allowed: {allowed}"),
        None => format!("{method} is not allowed on {path}"),
    };
    let (mut parts, _) = res.into_parts();
    parts.status = StatusCode::METHOD_NOT_ALLOWED;
    parts.headers.remove(header::WWW_AUTHENTICATE);
    let json = error_response(parts.status, Code::Unimplemented, &message, &[]);
    let (json_parts, body) = json.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.extend(json_parts.headers);
    if let Some(allowed) = allowed.and_then(|v| HeaderValue::from_str(&v).ok()) {
        parts.headers.insert(header::ALLOW, allowed);
    }
    Response::from_parts(parts, body)
}

fn or(said: String, fallback: &str) -> String {
    if said.is_empty() {
        fallback.to_owned()
    } else {
        said
    }
}
