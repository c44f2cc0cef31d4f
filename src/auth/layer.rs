//! A tower layer that authenticates every MonitorService call but Register
//! and Login, before any handler runs.
//!
//! It reads `authorization: Bearer <token>` (or a bare token, as the seed's
//! curl users send it), verifies it once, and puts the caller's
//! [`UserId`] in the request extensions, where handlers find it. A request
//! without a valid token never reaches a handler. Other services on the same
//! server (health, reflection) are public.

use std::{
    sync::Arc,
    task::{Context, Poll},
};

use futures_util::future::{Either, Ready, ready};
use tonic::server::NamedService;
use tower::{Layer, Service};

use super::TokenKeys;
use crate::{
    domain::UserId,
    error::Error,
    proto::{PUBLIC_METHODS, monitor::v1::monitor_service_server::MonitorServiceServer},
};

#[derive(Debug, Clone)]
pub struct AuthLayer {
    keys: Arc<TokenKeys>,
}

impl AuthLayer {
    pub fn new(keys: Arc<TokenKeys>) -> Self {
        Self { keys }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            keys: self.keys.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct AuthService<S> {
    inner: S,
    keys: Arc<TokenKeys>,
}

/// Whether a gRPC path needs a token.
fn requires_token(path: &str) -> bool {
    let Some(rest) = path
        .strip_prefix('/')
        .and_then(|p| p.strip_prefix(<MonitorServiceServer<()> as NamedService>::NAME))
        .and_then(|p| p.strip_prefix('/'))
    else {
        return false;
    };
    !PUBLIC_METHODS.contains(&rest)
}

/// Extracts the token from an `authorization` value: `Bearer <t>` (scheme in
/// any case) or a bare `<t>`.
pub fn token_from_header(value: &str) -> Option<&str> {
    let value = value.trim();
    if value.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = match value.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
        Some(_) => return None,
        None => value,
    };
    (!token.is_empty()).then_some(token)
}

/// Authenticates a request from its headers.
pub fn authenticate(keys: &TokenKeys, headers: &http::HeaderMap) -> Result<UserId, Error> {
    let value = headers.get(http::header::AUTHORIZATION).ok_or_else(|| {
        Error::Unauthenticated(
            "missing authorization: send `authorization: Bearer <token>` with a token from Login"
                .into(),
        )
    })?;
    let token = value
        .to_str()
        .ok()
        .and_then(token_from_header)
        .ok_or_else(|| {
            Error::Unauthenticated("malformed authorization: expected `Bearer <token>`".into())
        })?;
    keys.verify(token)
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for AuthService<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    ResBody: Default,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Either<S::Future, Ready<Result<Self::Response, Self::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<ReqBody>) -> Self::Future {
        if requires_token(req.uri().path()) {
            match authenticate(&self.keys, req.headers()) {
                Ok(user) => {
                    // The RPC span (api::observe) records who called, never the token.
                    tracing::Span::current().record("user_id", user.0);
                    req.extensions_mut().insert(user);
                }
                Err(err) => {
                    let status: tonic::Status = err.into();
                    return Either::Right(ready(Ok(status.into_http())));
                }
            }
        }
        Either::Left(self.inner.call(req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_monitor_methods_but_register_and_login_need_a_token() {
        assert!(requires_token("/monitor.v1.MonitorService/AddUrl"));
        assert!(requires_token("/monitor.v1.MonitorService/ListStatuses"));
        assert!(!requires_token("/monitor.v1.MonitorService/Register"));
        assert!(!requires_token("/monitor.v1.MonitorService/Login"));
        assert!(!requires_token("/grpc.health.v1.Health/Check"));
        assert!(!requires_token(
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
        ));
    }

    #[test]
    fn header_forms() {
        assert_eq!(token_from_header("Bearer abc"), Some("abc"));
        assert_eq!(token_from_header("bearer  abc "), Some("abc"));
        assert_eq!(token_from_header("abc"), Some("abc"));
        assert_eq!(token_from_header("Basic abc"), None);
        assert_eq!(token_from_header("Bearer "), None);
        assert_eq!(token_from_header(""), None);
    }
}
