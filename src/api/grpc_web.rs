//! gRPC-Web on the gRPC port, for browsers, without a proxy.
//!
//! [`tonic_web::GrpcWebLayer`] turns a gRPC-Web call (HTTP/1.1 or HTTP/2,
//! `application/grpc-web[+proto]` or base64 `application/grpc-web-text`)
//! into a gRPC call for the same services, and its answer back, trailers as
//! the last frame. Plain gRPC (HTTP/2, `application/grpc`) passes through
//! unchanged; any other HTTP/1 request gets 400.
//!
//! Browsers call from another origin, so the port answers CORS for the
//! origins listed in `MONITOR_CORS_ORIGINS` (exact `scheme://host[:port]`
//! origins; none by default). A request carrying an `Origin` header that is
//! not listed (a preflight included) is refused with 403 before it reaches
//! a service, and gets no `Access-Control-Allow-Origin`; requests without an
//! `Origin` (every non-browser client) are not affected.

use std::{
    convert::Infallible,
    task::{Context, Poll},
    time::Duration,
};

use futures_util::future::{Either, Ready, ready};
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode, header};
use tower::{Layer, Service};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::error::{SettingsError, check_setting};

/// Browser origins allowed to call the gRPC port over gRPC-Web.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct CorsSettings {
    /// Browser origins (comma-separated, exact, like
    /// `https://status.example.com`) allowed to call the gRPC port with
    /// gRPC-Web; a request from any other origin gets 403. Empty: none.
    #[arg(long, env = "MONITOR_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,
}

impl CorsSettings {
    /// Each origin must be `scheme://host[:port]` with nothing after it, as
    /// a browser writes it in its `Origin` header.
    pub fn validate(&self) -> Result<(), SettingsError> {
        for origin in &self.cors_origins {
            let parsed = url::Url::parse(origin).ok();
            let canonical = parsed.as_ref().map(|u| u.origin().ascii_serialization());
            check_setting(
                canonical.as_deref() == Some(origin.as_str()),
                "MONITOR_CORS_ORIGINS",
                &format!(
                    "{origin:?} is not an origin: write scheme://host[:port], lower case, \
                     with no path or trailing slash (like https://status.example.com)"
                ),
            )?;
        }
        Ok(())
    }

    fn origins(&self) -> Vec<HeaderValue> {
        self.cors_origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(o).ok())
            .collect()
    }
}

/// Request headers a gRPC-Web client sends: the framing ones, the token,
/// the deadline and the request id.
const ALLOW_HEADERS: [&str; 7] = [
    "content-type",
    "x-grpc-web",
    "x-user-agent",
    "grpc-timeout",
    "authorization",
    "x-request-id",
    "grpc-accept-encoding",
];

/// Response headers a browser script may read: the status (when it comes as
/// headers, in a trailers-only answer) and the request id.
const EXPOSE_HEADERS: [&str; 4] = [
    "grpc-status",
    "grpc-message",
    "grpc-status-details-bin",
    "x-request-id",
];

/// The layers in front of the gRPC services: origins refused, then CORS,
/// then gRPC-Web translation.
pub fn layers(settings: &CorsSettings) -> (RefuseOriginsLayer, CorsLayer, tonic_web::GrpcWebLayer) {
    let origins = settings.origins();
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins.clone()))
        .allow_methods([Method::POST])
        .allow_headers(ALLOW_HEADERS.map(HeaderName::from_static))
        .expose_headers(EXPOSE_HEADERS.map(HeaderName::from_static))
        .max_age(Duration::from_secs(24 * 60 * 60));
    (
        RefuseOriginsLayer { allowed: origins },
        cors,
        tonic_web::GrpcWebLayer::new(),
    )
}

/// Refuses, with 403, requests whose `Origin` is not an allowed one.
#[derive(Debug, Clone)]
pub struct RefuseOriginsLayer {
    allowed: Vec<HeaderValue>,
}

impl<S> Layer<S> for RefuseOriginsLayer {
    type Service = RefuseOrigins<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RefuseOrigins {
            inner,
            allowed: self.allowed.clone(),
        }
    }
}

/// See [`RefuseOriginsLayer`].
#[derive(Debug, Clone)]
pub struct RefuseOrigins<S> {
    inner: S,
    allowed: Vec<HeaderValue>,
}

impl<S, B, RB> Service<Request<B>> for RefuseOrigins<S>
where
    S: Service<Request<B>, Response = Response<RB>, Error = Infallible>,
    RB: Default,
{
    type Response = Response<RB>;
    type Error = Infallible;
    type Future = Either<Ready<Result<Response<RB>, Infallible>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        match req.headers().get(header::ORIGIN) {
            Some(origin) if !self.allowed.contains(origin) => {
                tracing::debug!(
                    ?origin,
                    "gRPC-Web call from an origin not in MONITOR_CORS_ORIGINS"
                );
                let mut res = Response::new(RB::default());
                *res.status_mut() = StatusCode::FORBIDDEN;
                Either::Left(ready(Ok(res)))
            }
            _ => Either::Right(self.inner.call(req)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_exact_origins_are_accepted() {
        let check = |o: &str| {
            CorsSettings {
                cors_origins: vec![o.to_owned()],
            }
            .validate()
        };
        for good in ["https://status.example.com", "http://localhost:3000"] {
            check(good).unwrap();
        }
        for bad in [
            "https://status.example.com/",
            "status.example.com",
            "https://Example.com",
            "https://example.com/page",
            "*",
            "",
        ] {
            let err = check(bad).unwrap_err();
            assert_eq!(err.name, "MONITOR_CORS_ORIGINS", "{bad}");
        }
    }
}
