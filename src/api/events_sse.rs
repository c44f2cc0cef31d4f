//! WatchEvents for curl and browsers: `GET /v1/events` as Server-Sent
//! Events (`text/event-stream`). Each event is `id: <resume token>`,
//! `event: status`, `incident`, `state_change` or `bookmark`, and `data:` the `Event` message in
//! canonical proto3 JSON. Query: `url_id` (or `urlId`; 0 or none: all the
//! caller's URLs) and `resume_token` (or `resumeToken`); a `Last-Event-ID`
//! header (what `EventSource` sends when it reconnects) wins over the
//! query's token. An error before the stream is the gateway's JSON error;
//! one during it is a last `event: error` with `{code, message}`.

use std::sync::Arc;

use axum::{
    Extension, Router,
    extract::{RawQuery, State},
    http::HeaderMap,
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
    routing::get,
};
use futures_util::StreamExt;

use super::{
    Caller,
    gateway::{RestError, build_tonic_request},
    grpc::MonitorApi,
};
use crate::{
    error::Error,
    proto::monitor::v1::{self as pb, monitor_service_server::MonitorService},
};

pub fn router(api: Arc<MonitorApi>) -> Router {
    Router::new()
        .route("/v1/events", get(events))
        .with_state(api)
}

/// The request from the query string and `Last-Event-ID`.
fn request(query: &str, headers: &HeaderMap) -> Result<pb::WatchEventsRequest, Error> {
    let mut req = pb::WatchEventsRequest::default();
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        match key.as_ref() {
            "url_id" | "urlId" => {
                req.url_id = value
                    .parse()
                    .map_err(|_| Error::invalid("url_id", "must be a URL id, or 0 for all"))?;
            }
            "resume_token" | "resumeToken" => req.resume_token = value.into_owned(),
            other => {
                return Err(Error::invalid(
                    other.to_owned(),
                    "is not a parameter of GET /v1/events (url_id, resume_token)",
                ));
            }
        }
    }
    if let Some(last) = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
    {
        last.clone_into(&mut req.resume_token);
    }
    Ok(req)
}

async fn events(
    State(api): State<Arc<MonitorApi>>,
    headers: HeaderMap,
    caller: Option<Extension<Caller>>,
    RawQuery(query): RawQuery,
) -> Result<Response, RestError> {
    let body = request(query.as_deref().unwrap_or_default(), &headers)?;
    let req = build_tonic_request(body, &headers, caller.map(|Extension(c)| c));
    let stream = api.watch_events(req).await?.into_inner();
    let events = stream.map(|item| {
        Ok::<_, std::convert::Infallible>(match item {
            Ok(event) => {
                let kind = match &event.kind {
                    Some(pb::event::Kind::Bookmark(_)) => "bookmark",
                    Some(pb::event::Kind::Incident(_)) => "incident",
                    Some(pb::event::Kind::StateChange(_)) => "state_change",
                    _ => "status",
                };
                Event::default()
                    .id(event.resume_token.clone())
                    .event(kind)
                    .data(serde_json::to_string(&event).unwrap_or_default())
            }
            Err(status) => Event::default().event("error").data(
                serde_json::json!({"code": status.code() as i32, "message": status.message()})
                    .to_string(),
            ),
        })
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
}
