//! gRPC calls that failed through the client's fault get the client's code.
//!
//! tonic answers INTERNAL for a request it cannot read: tonic-prost maps
//! every prost `DecodeError` (a bad varint, a string that is not UTF-8,
//! nesting past the recursion limit) to `Status::internal`, and a client
//! that resets its stream mid-message ends as "Unexpected EOF decoding
//! stream." or "Missing request message.". Those would be logged as server
//! failures and counted as `code="INTERNAL"`. This layer, just inside the
//! observe layer, rewrites them: a message that does not decode (or a body
//! that ends inside one) is INVALID_ARGUMENT, with tonic's message naming
//! the field; a call whose request body the client reset or abandoned is
//! CANCELLED. The codes are read from the trailers-only answer tonic gives
//! a unary call that fails before its handler runs.
//!
//! (tonic's choice follows grpc's status-code table, which lists "error
//! parsing request proto" as INTERNAL; to an operator a malformed request
//! is the client's problem, not an alert. The compressed-flag protocol
//! errors stay INTERNAL: grpc's compression spec requires it.)

use std::{
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
};

use http::HeaderValue;
use http_body::{Body, Frame};
use tonic::Code;
use tower::{Layer, Service};

/// What tonic says when the request's bytes are not a message.
const DECODE_FAILURES: [&str; 3] = [
    "failed to decode Protobuf message",
    "Unexpected EOF decoding stream.",
    "Missing request message.",
];

/// The tower layer for the gRPC server.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientFaultLayer;

impl<S> Layer<S> for ClientFaultLayer {
    type Service = ClientFaults<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ClientFaults { inner }
    }
}

#[derive(Debug, Clone)]
pub struct ClientFaults<S> {
    inner: S,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, RB> Service<http::Request<B>> for ClientFaults<S>
where
    S: Service<http::Request<Watched<B>>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let body_failed = Arc::new(AtomicBool::new(false));
        let req = req.map(|body| Watched {
            body,
            failed: body_failed.clone(),
        });
        let fut = self.inner.call(req);
        Box::pin(async move {
            let mut res = fut.await?;
            reclassify(&mut res, body_failed.load(Ordering::SeqCst));
            Ok(res)
        })
    }
}

/// Rewrites a trailers-only INTERNAL answer that the client caused.
fn reclassify<RB>(res: &mut http::Response<RB>, body_failed: bool) {
    let headers = res.headers_mut();
    let internal = headers
        .get("grpc-status")
        .is_some_and(|v| v.as_bytes() == b"13");
    if !internal {
        return;
    }
    let code = if body_failed {
        Code::Cancelled
    } else {
        let message = headers
            .get("grpc-message")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        // grpc-message is percent-encoded: spaces are %20.
        let message = message.replace("%20", " ");
        if DECODE_FAILURES.iter().any(|m| message.starts_with(m)) {
            Code::InvalidArgument
        } else {
            return;
        }
    };
    headers.insert("grpc-status", HeaderValue::from(code as i32));
}

/// A request body that notes whether reading it failed (the client reset
/// the stream or dropped the connection).
#[derive(Debug)]
pub struct Watched<B> {
    body: B,
    failed: Arc<AtomicBool>,
}

impl<B> Body for Watched<B>
where
    B: Body + Unpin,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let poll = Pin::new(&mut self.body).poll_frame(cx);
        if let Poll::Ready(Some(Err(_))) = &poll {
            self.failed.store(true, Ordering::SeqCst);
        }
        poll
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: &str, message: &str) -> http::Response<()> {
        http::Response::builder()
            .header("grpc-status", status)
            .header("grpc-message", message)
            .body(())
            .unwrap()
    }

    fn code(res: &http::Response<()>) -> &str {
        res.headers()["grpc-status"].to_str().unwrap()
    }

    #[test]
    fn decode_failures_are_invalid_argument_and_abandoned_bodies_cancelled() {
        let mut res = answer(
            "13",
            "failed%20to%20decode%20Protobuf%20message:%20X.email:%20invalid%20varint",
        );
        reclassify(&mut res, false);
        assert_eq!(code(&res), "3");

        let mut res = answer("13", "Missing%20request%20message.");
        reclassify(&mut res, true);
        assert_eq!(code(&res), "1");

        let mut res = answer("13", "internal%20error");
        reclassify(&mut res, false);
        assert_eq!(code(&res), "13", "the server's own failures stay INTERNAL");

        let mut res = answer("5", "failed%20to%20decode%20Protobuf%20message");
        reclassify(&mut res, true);
        assert_eq!(code(&res), "5", "other codes are kept");
    }
}
