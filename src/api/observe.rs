//! One span, one metric sample and one request id per call, for both
//! transports.
//!
//! The span (`rpc`) carries the method, the request id and, once the auth
//! layer has verified the token, the caller's user id — never the token —
//! and finally the code. The request id is taken from `x-request-id` when
//! the client sent a sane one, otherwise generated, and returned in the
//! response headers (gRPC metadata). Calls a client got wrong are logged at
//! DEBUG; server-side failures at ERROR.
//!
//! For gRPC the code is read from the response headers: a unary error is
//! answered "trailers-only" with `grpc-status` there; without it the call
//! succeeded. (A streaming call — only reflection here — is counted when its
//! headers are sent.)

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use axum::{
    extract::{MatchedPath, Request, State},
    middleware::Next,
    response::Response,
};
use http::HeaderValue;
use tonic::Code;
use tower::{Layer, Service};
use tracing::{Instrument, Span, field::Empty};

use crate::metrics::Metrics;

pub const REQUEST_ID: &str = "x-request-id";

/// The client's request id if it is short printable ASCII, else a new one.
fn request_id(headers: &http::HeaderMap) -> HeaderValue {
    headers
        .get(REQUEST_ID)
        .filter(|v| {
            let b = v.as_bytes();
            !b.is_empty() && b.len() <= 128 && b.iter().all(u8::is_ascii_graphic)
        })
        .cloned()
        .unwrap_or_else(|| {
            HeaderValue::from_str(&uuid::Uuid::new_v4().to_string())
                .expect("a UUID is a valid header value")
        })
}

fn span(transport: &'static str, method: &str, id: &HeaderValue) -> Span {
    tracing::info_span!(
        "rpc",
        transport,
        method,
        request_id = id.to_str().unwrap_or_default(),
        user_id = Empty,
        code = Empty,
    )
}

/// Whether a gRPC code means the server failed (rather than the client).
fn server_fault(code: Code) -> bool {
    matches!(
        code,
        Code::Unknown
            | Code::Internal
            | Code::Unavailable
            | Code::DataLoss
            | Code::DeadlineExceeded
    )
}

fn finish(
    metrics: &Metrics,
    transport: &'static str,
    method: &str,
    code: String,
    fault: bool,
    started: Instant,
) {
    let took = started.elapsed();
    Span::current().record("code", code.as_str());
    if fault {
        tracing::error!(code, took_ms = took.as_millis(), "call failed");
    } else {
        tracing::debug!(code, took_ms = took.as_millis(), "call answered");
    }
    metrics.rpc(transport, method, code, took);
}

/// The tower layer for the gRPC server.
#[derive(Debug, Clone)]
pub struct GrpcObserveLayer {
    metrics: Arc<Metrics>,
}

impl GrpcObserveLayer {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self { metrics }
    }
}

impl<S> Layer<S> for GrpcObserveLayer {
    type Service = GrpcObserve<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcObserve {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct GrpcObserve<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, RB> Service<http::Request<B>> for GrpcObserve<S>
where
    S: Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    RB: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let started = Instant::now();
        let id = request_id(req.headers());
        req.headers_mut().insert(REQUEST_ID, id.clone());
        let method = req.uri().path().to_owned();
        let span = span("grpc", &method, &id);
        // The inner layers (auth) run inside the span and record the user.
        let fut = span.in_scope(|| self.inner.call(req));
        let metrics = self.metrics.clone();
        Box::pin(
            async move {
                let mut res = fut.await?;
                let code = res
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<i32>().ok())
                    .map_or(Code::Ok, Code::from);
                res.headers_mut().insert(REQUEST_ID, id);
                let name = tonic_rest::grpc_code_name(code).to_owned();
                finish(&metrics, "grpc", &method, name, server_fault(code), started);
                Ok(res)
            }
            .instrument(span),
        )
    }
}

/// The same for the JSON side, as axum middleware (it sees the matched route).
pub async fn observe_http(
    State(metrics): State<Arc<Metrics>>,
    matched: Option<MatchedPath>,
    mut req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let id = request_id(req.headers());
    req.headers_mut().insert(REQUEST_ID, id.clone());
    let route = matched.as_ref().map_or("unmatched", MatchedPath::as_str);
    let method = format!("{} {route}", req.method());
    let span = span("http", &method, &id);
    async move {
        let mut res = next.run(req).await;
        res.headers_mut().insert(REQUEST_ID, id);
        let status = res.status();
        finish(
            &metrics,
            "http",
            &method,
            status.as_u16().to_string(),
            status.is_server_error(),
            started,
        );
        res
    }
    .instrument(span)
    .await
}
