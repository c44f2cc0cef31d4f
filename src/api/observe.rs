//! One span, one metric sample and one request id per call, for both
//! transports.
//!
//! Request ids are tower-http's ([`request_id_layers`]: `SetRequestId`,
//! `PropagateRequestId`): the client's `x-request-id` when it sent a sane
//! one (1–128 printable ASCII bytes), otherwise a new UUID, returned in the
//! response headers (gRPC metadata). The span (`rpc`) carries the method,
//! the request id and, once the auth layer has verified the token, the
//! caller's user id — never the token — and finally the code. Calls a client
//! got wrong are logged at DEBUG; server-side failures at ERROR.
//!
//! The span and metrics layer is ours rather than tower-http's `Trace`:
//! `Trace` hands its response callback the response alone, and the metrics
//! are labelled by the request's method (and, on the JSON side, by the route
//! that matched).
//!
//! Labels are bounded: a gRPC path this server does not serve is counted as
//! `unknown`, an HTTP method that is not a standard one as `OTHER`, and a
//! path no route matched as `unmatched`.
//!
//! For gRPC the code is read from the response headers: a unary error is
//! answered "trailers-only" with `grpc-status` there; without it the call
//! succeeded. (A streaming call — only reflection here — is counted when its
//! headers are sent.) A call dropped before it answered (the client reset
//! it) is counted as CANCELLED. [`super::client_faults`], just inside this
//! layer, gives the client's code to calls tonic fails as INTERNAL for the
//! client's doing (a message that does not decode, a reset stream).

use std::{
    collections::HashSet,
    pin::Pin,
    sync::{Arc, OnceLock},
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
use tower::{
    Layer, Service, ServiceBuilder,
    layer::util::{Identity, Stack},
    util::MapRequestLayer,
};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tracing::{Instrument, Span, field::Empty};

use crate::metrics::Metrics;

pub const REQUEST_ID: &str = "x-request-id";

/// The layers of [`request_id_layers`].
pub type RequestIdLayers<B> = Stack<
    PropagateRequestIdLayer,
    Stack<SetRequestIdLayer<MakeRequestUuid>, Stack<MapRequestLayer<MapRequestFn<B>>, Identity>>,
>;

type MapRequestFn<B> = fn(http::Request<B>) -> http::Request<B>;

/// Request id layers, outermost first: a client's id that is not sane is
/// dropped, `SetRequestId` gives a request without one a new UUID, and
/// `PropagateRequestId` returns it with the response.
pub fn request_id_layers<B>() -> ServiceBuilder<RequestIdLayers<B>> {
    ServiceBuilder::new()
        .layer(MapRequestLayer::new(
            keep_sane_request_id::<B> as MapRequestFn<B>,
        ))
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(PropagateRequestIdLayer::x_request_id())
}

/// Drops a client's request id unless it is 1–128 printable ASCII bytes.
fn keep_sane_request_id<B>(mut req: http::Request<B>) -> http::Request<B> {
    let sane = |v: &HeaderValue| {
        let b = v.as_bytes();
        !b.is_empty() && b.len() <= 128 && b.iter().all(u8::is_ascii_graphic)
    };
    if req.headers().get(REQUEST_ID).is_some_and(|v| !sane(v)) {
        req.headers_mut().remove(REQUEST_ID);
    }
    req
}

/// The request id `SetRequestId` put on the request.
fn request_id(headers: &http::HeaderMap) -> HeaderValue {
    headers
        .get(REQUEST_ID)
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static(""))
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

/// What a gRPC call is labelled and logged as: its path when it is a method
/// this server has (ours, health, reflection), else `unknown` — so made-up
/// paths cannot add label values (series) without bound.
fn grpc_method_label(path: &str) -> &str {
    static KNOWN: OnceLock<HashSet<String>> = OnceLock::new();
    let known = KNOWN.get_or_init(|| {
        [
            crate::proto::FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
        ]
        .into_iter()
        .filter_map(|set| prost_reflect::DescriptorPool::decode(set).ok())
        .flat_map(|pool| {
            pool.services()
                .flat_map(|s| {
                    s.methods()
                        .map(|m| format!("/{}/{}", s.full_name(), m.name()))
                        .collect::<Vec<_>>()
                })
                .collect::<Vec<_>>()
        })
        .collect()
    });
    if known.contains(path) {
        path
    } else {
        "unknown"
    }
}

/// An HTTP method as a label: the standard ones by name, any other `OTHER`.
fn http_method_label(method: &http::Method) -> &str {
    use http::Method;
    match *method {
        Method::GET
        | Method::POST
        | Method::PUT
        | Method::PATCH
        | Method::DELETE
        | Method::HEAD
        | Method::OPTIONS
        | Method::TRACE
        | Method::CONNECT => method.as_str(),
        _ => "OTHER",
    }
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

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let started = Instant::now();
        let id = request_id(req.headers());
        let method = grpc_method_label(req.uri().path()).to_owned();
        let span = span("grpc", &method, &id);
        // The inner layers (auth) run inside the span and record the user.
        let fut = span.in_scope(|| self.inner.call(req));
        let mut unanswered = Unanswered {
            metrics: self.metrics.clone(),
            method,
            started,
            answered: false,
        };
        Box::pin(
            async move {
                let res = fut.await?;
                let code = res
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<i32>().ok())
                    .map_or(Code::Ok, Code::from);
                unanswered.answered = true;
                let name = tonic_rest::grpc_code_name(code).to_owned();
                let u = &unanswered;
                finish(
                    &u.metrics,
                    "grpc",
                    &u.method,
                    name,
                    server_fault(code),
                    started,
                );
                Ok(res)
            }
            .instrument(span),
        )
    }
}

/// A gRPC call whose future is dropped before it answers was cancelled:
/// the client reset the stream (or the connection went away) and hyper
/// dropped the call. It is counted and logged as CANCELLED, a client's
/// doing.
struct Unanswered {
    metrics: Arc<Metrics>,
    method: String,
    started: Instant,
    answered: bool,
}

impl Drop for Unanswered {
    fn drop(&mut self) {
        if !self.answered {
            let name = tonic_rest::grpc_code_name(Code::Cancelled).to_owned();
            finish(
                &self.metrics,
                "grpc",
                &self.method,
                name,
                false,
                self.started,
            );
        }
    }
}

/// The same for the JSON side, as axum middleware (it sees the matched route).
pub async fn observe_http(
    State(metrics): State<Arc<Metrics>>,
    matched: Option<MatchedPath>,
    req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let id = request_id(req.headers());
    let route = matched.as_ref().map_or("unmatched", MatchedPath::as_str);
    let method = format!("{} {route}", http_method_label(req.method()));
    let span = span("http", &method, &id);
    async move {
        let res = next.run(req).await;
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
