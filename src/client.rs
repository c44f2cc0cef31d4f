//! The gRPC client as other Rust programs should build it: the generated
//! `MonitorServiceClient` over a [`RetryChannel`], which sends a call again
//! when it failed before its response was whole, for the methods the proto
//! marks with `idempotency_level` only ([`crate::proto::IDEMPOTENT_METHODS`]).
//!
//! What counts as "failed before its response was whole": the connection or
//! stream broke (refused, reset, the serving instance killed mid-response —
//! a proxy such as Envoy cannot retry a response it has begun to forward),
//! or the server answered `UNAVAILABLE`. Any other answer, an error included,
//! is the call's answer and is returned as is.
//!
//! To tell a broken response from a whole one, a retried call's response is
//! read to its end before it is handed to the caller. That is why only unary
//! methods are listed: a stream is never buffered. Writes (Register, AddUrl,
//! DeleteUrl) pass straight through: the server cannot tell a retry from a
//! second request, so sending them again is the caller's decision.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use tonic::{
    body::Body,
    transport::{Channel, Endpoint},
};
use tower::{Service, ServiceExt};

use crate::proto::{IDEMPOTENT_METHODS, monitor::v1::monitor_service_client::MonitorServiceClient};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The generated client over a channel that retries idempotent calls.
pub type Client = MonitorServiceClient<RetryChannel>;

/// Connects to `endpoint` (e.g. `http://127.0.0.1:50051`) with the default
/// [`RetryPolicy`].
pub async fn connect(endpoint: impl Into<String>) -> Result<Client, tonic::transport::Error> {
    let channel = Endpoint::from_shared(endpoint.into())?.connect().await?;
    Ok(MonitorServiceClient::new(RetryChannel::new(channel)))
}

/// How often and how patiently an idempotent call is sent again.
///
/// The defaults match `deploy/grpc-service-config.json`, the same policy for
/// clients in other languages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first one included.
    pub max_attempts: u32,
    /// The wait before the first retry; it doubles with each retry.
    pub initial_backoff: Duration,
    /// The longest wait between two attempts.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(1),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (1 for the first), with full
    /// jitter over its upper half so that many clients do not retry in step.
    fn backoff(&self, retry: u32) -> Duration {
        let ceiling = self
            .initial_backoff
            .saturating_mul(1 << retry.saturating_sub(1).min(16))
            .min(self.max_backoff);
        ceiling.mul_f64(rand::random::<f64>().mul_add(0.5, 0.5))
    }
}

/// A [`Channel`] that retries the calls of [`IDEMPOTENT_METHODS`] under a
/// [`RetryPolicy`]; every other call passes straight through.
#[derive(Clone, Debug)]
pub struct RetryChannel {
    inner: Channel,
    policy: RetryPolicy,
}

impl RetryChannel {
    /// Wraps `inner` with the default policy.
    pub fn new(inner: Channel) -> Self {
        Self::with_policy(inner, RetryPolicy::default())
    }

    /// Wraps `inner` with `policy`.
    pub fn with_policy(inner: Channel, policy: RetryPolicy) -> Self {
        Self { inner, policy }
    }
}

/// What one attempt came to.
enum Attempt {
    /// The connection or stream broke before the response was whole.
    Broken(BoxError),
    /// A whole response, buffered; `UNAVAILABLE` ones are worth repeating.
    Whole(http::Response<Body>, Option<tonic::Code>),
}

impl RetryChannel {
    /// Sends a buffered request once and reads its response to the end.
    async fn attempt(channel: &mut Channel, head: &http::request::Parts, body: Bytes) -> Attempt {
        let mut request = http::Request::new(Body::new(
            http_body_util::Full::new(body).map_err(|never| match never {}),
        ));
        *request.method_mut() = head.method.clone();
        *request.uri_mut() = head.uri.clone();
        *request.version_mut() = head.version;
        *request.headers_mut() = head.headers.clone();
        let response = match channel.ready().await {
            Ok(ready) => ready.call(request).await,
            Err(e) => Err(e),
        };
        // Refused, reset or closed before a response: the method is
        // idempotent, so sending it again is safe whether or not it ran.
        let response = match response {
            Ok(response) => response,
            Err(e) => return Attempt::Broken(e.into()),
        };
        // A trailers-only answer carries its status in the headers.
        if let Some(code) = grpc_code(response.headers()) {
            return Attempt::Whole(response, Some(code));
        }
        let (parts, body) = response.into_parts();
        let collected = match body.collect().await {
            Ok(collected) => collected,
            Err(e) => return Attempt::Broken(e.into()),
        };
        let trailers = collected.trailers().cloned();
        let code = trailers.as_ref().and_then(grpc_code);
        let mut frames = vec![Ok::<_, std::convert::Infallible>(http_body::Frame::data(
            collected.to_bytes(),
        ))];
        frames.extend(trailers.map(|t| Ok(http_body::Frame::trailers(t))));
        let body = Body::new(StreamBody::new(futures_util::stream::iter(frames)));
        Attempt::Whole(http::Response::from_parts(parts, body), code)
    }

    async fn call_with_retries(
        mut channel: Channel,
        policy: RetryPolicy,
        request: http::Request<Body>,
    ) -> Result<http::Response<Body>, BoxError> {
        let (head, body) = request.into_parts();
        let body = body.collect().await?.to_bytes();
        let mut attempt = 1;
        loop {
            let last = attempt >= policy.max_attempts;
            let cause = match Self::attempt(&mut channel, &head, body.clone()).await {
                Attempt::Whole(_, Some(tonic::Code::Unavailable)) if !last => {
                    "the server answered UNAVAILABLE".to_owned()
                }
                Attempt::Whole(response, _) => return Ok(response),
                Attempt::Broken(cause) if last => return Err(cause),
                Attempt::Broken(cause) => cause.to_string(),
            };
            tracing::debug!(path = head.uri.path(), attempt, %cause, "retrying an idempotent call");
            tokio::time::sleep(policy.backoff(attempt)).await;
            attempt += 1;
        }
    }
}

fn grpc_code(headers: &http::HeaderMap) -> Option<tonic::Code> {
    let value = headers.get("grpc-status")?.to_str().ok()?;
    Some(tonic::Code::from_i32(value.parse().ok()?))
}

impl Service<http::Request<Body>> for RetryChannel {
    type Response = http::Response<Body>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        // The instance that was polled ready serves this call; a fresh clone
        // takes its place (tower's rule for cloned services).
        let fresh = self.inner.clone();
        let mut ready = std::mem::replace(&mut self.inner, fresh);
        if IDEMPOTENT_METHODS.contains(&request.uri().path()) {
            Box::pin(Self::call_with_retries(ready, self.policy, request))
        } else {
            Box::pin(async move { ready.call(request).await.map_err(Into::into) })
        }
    }
}
