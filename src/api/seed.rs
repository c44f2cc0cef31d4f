//! The seed service's curl session, kept working as its README wrote it:
//!
//! ```text
//! POST /register {"Email": "...", "Password": "..."}        -> 201
//! POST /login    {"Email": "...", "Password": "..."}        -> 200 {"token": ...}
//! POST /url      {"URL": "https://...", "Period": 2}        -> 201   (Authorization: <token>)
//! ```
//!
//! Field names match in any case, as Go's JSON decoder matched them; `Period`
//! is in whole minutes (default 1). Each route calls the same
//! [`MonitorApi`] method as its v1 route, so validation and errors are the
//! same; statuses are read through `GET /v1/urls/{url_id}/statuses`.

use std::sync::Arc;

use axum::{Extension, Json, Router, extract::State, http::StatusCode, routing::post};
use serde_json::{Map, Value};

use super::{Caller, gateway::RestError, grpc::MonitorApi};
use crate::{
    error::Error,
    proto::{
        PUBLIC_METHODS,
        monitor::v1::{self as pb, monitor_service_server::MonitorService},
    },
};

/// Each seed route and the RPC it stands for.
const ROUTES: [(&str, &str); 3] = [
    ("/register", "Register"),
    ("/login", "Login"),
    ("/url", "AddUrl"),
];

/// Whether a seed route is callable without a token: its RPC is.
pub fn is_public(path: &str) -> bool {
    ROUTES
        .iter()
        .any(|(route, method)| *route == path && PUBLIC_METHODS.contains(method))
}

pub fn router(api: Arc<MonitorApi>) -> Router {
    Router::new()
        .route(ROUTES[0].0, post(register))
        .route(ROUTES[1].0, post(login))
        .route(ROUTES[2].0, post(add_url))
        .with_state(api)
}

/// The JSON object's field `name`, matched in any case.
fn field<'a>(body: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    body.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

fn object(body: &Value) -> Result<&Map<String, Value>, Error> {
    body.as_object()
        .ok_or_else(|| Error::invalid("body", "expected a JSON object"))
}

fn string(body: &Map<String, Value>, name: &'static str) -> Result<String, Error> {
    match field(body, name) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(Error::invalid(name, "expected a string")),
    }
}

/// `Period` in whole minutes; unset means the default.
fn period(body: &Map<String, Value>) -> Result<Option<pbjson_types::Duration>, Error> {
    let minutes = match field(body, "Period") {
        None | Some(Value::Null) => return Ok(None),
        Some(v) => v.as_i64().filter(|m| *m > 0).ok_or_else(|| {
            Error::invalid(
                "Period",
                "expected whole minutes as a positive number, e.g. 2",
            )
        })?,
    };
    let seconds = minutes
        .checked_mul(60)
        .ok_or_else(|| Error::invalid("Period", "too long"))?;
    Ok(Some(pbjson_types::Duration { seconds, nanos: 0 }))
}

/// Email and password from a seed body, field names in any case.
pub fn credentials(body: &Value) -> Result<(String, String), Error> {
    let body = object(body)?;
    Ok((string(body, "Email")?, string(body, "Password")?))
}

/// The AddUrl request a seed `/url` body stands for.
pub fn add_url_request(body: &Value) -> Result<pb::AddUrlRequest, Error> {
    let body = object(body)?;
    Ok(pb::AddUrlRequest {
        url: string(body, "URL")?,
        period: period(body)?,
        assertions: Vec::new(),
    })
}

async fn register(
    State(api): State<Arc<MonitorApi>>,
    Json(body): Json<Value>,
) -> Result<(StatusCode, Json<pb::RegisterResponse>), RestError> {
    let (email, password) = credentials(&body)?;
    let res = api
        .register(tonic::Request::new(pb::RegisterRequest { email, password }))
        .await?;
    Ok((StatusCode::CREATED, Json(res.into_inner())))
}

async fn login(
    State(api): State<Arc<MonitorApi>>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<Value>,
) -> Result<Json<pb::LoginResponse>, RestError> {
    let (email, password) = credentials(&body)?;
    let mut req = tonic::Request::new(pb::LoginRequest { email, password });
    caller.attach(&mut req);
    let res = api.login(req).await?;
    Ok(Json(res.into_inner()))
}

async fn add_url(
    State(api): State<Arc<MonitorApi>>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<Value>,
) -> Result<(StatusCode, Json<pb::AddUrlResponse>), RestError> {
    let mut req = tonic::Request::new(add_url_request(&body)?);
    caller.attach(&mut req);
    let res = api.add_url(req).await?;
    Ok((StatusCode::CREATED, Json(res.into_inner())))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn fields_match_in_any_case() {
        let body = json!({"eMaIl": "a@b.c", "PASSWORD": "p"});
        assert_eq!(
            credentials(&body).unwrap(),
            ("a@b.c".to_owned(), "p".to_owned())
        );
    }

    #[test]
    fn period_is_whole_positive_minutes() {
        let p = |v: Value| period(json!({ "period": v }).as_object().unwrap());
        assert_eq!(p(json!(2)).unwrap().unwrap().seconds, 120);
        assert!(p(Value::Null).unwrap().is_none());
        assert!(period(&Map::new()).unwrap().is_none());
        for bad in [json!(0), json!(-1), json!(1.5), json!("2"), json!(i64::MAX)] {
            assert!(p(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn wrong_types_are_refused() {
        assert!(credentials(&json!([1])).is_err());
        assert!(credentials(&json!({"Email": 1, "Password": "p"})).is_err());
    }
}
