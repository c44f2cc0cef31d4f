//! The JSON routes written by hand: those whose `google.api.http` rule takes
//! one field as the body, which the route generator cannot express
//! (build.rs leaves them out). They do what grpc-gateway does, call the
//! same [`MonitorApi`] method as gRPC, and answer its errors in the same
//! JSON shape.
//!
//! - UpdateUrl (`PATCH /v1/urls/{url.id}`, `body: "url"`, AIP-134): the
//!   body is a `Url` in canonical proto3 JSON, the id comes from the path,
//!   and `update_mask` from the query string (`updateMask` or
//!   `update_mask`, comma-separated paths, either spelling; repeated is
//!   fine too).
//! - UpdateStatusPage (`PUT /v1/status-page`, `body: "page"`): the body
//!   is a `StatusPage`, `update_mask` comes from the query string as for
//!   UpdateUrl.
//! - UpdateChannel (`PATCH /v1/channels/{channel.id}`, `body: "channel"`):
//!   as UpdateUrl, with a `Channel` body.
//! - CreateChannel (`POST /v1/channels`, `body: "channel"`, AIP-133): the
//!   body is a `Channel`; the request has no other field, so any query
//!   parameter is refused.
//! - CreateMaintenanceWindow (`POST /v1/maintenance-windows`, `body:
//!   "window"`): as CreateChannel, with a `MaintenanceWindow` body.
//!
//! And the custom verbs (AIP-136), which axum's router cannot match (a
//! parameter and more in one path segment): TestChannel
//! (`POST /v1/channels/{id}:test`), routed as `POST /v1/channels/{id}`
//! and read here.

use std::sync::Arc;

use axum::{
    Extension, Json, Router,
    extract::{Path, RawQuery, State},
    http::HeaderMap,
    routing::{patch, post, put},
};

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
        .route("/v1/urls/{id}", patch(update_url))
        .route("/v1/status-page", put(update_status_page))
        .route("/v1/channels", post(create_channel))
        .route("/v1/maintenance-windows", post(create_maintenance_window))
        .route(
            "/v1/channels/{id}",
            post(channel_verb).patch(update_channel),
        )
        .with_state(api)
}

async fn update_url(
    State(api): State<Arc<MonitorApi>>,
    headers: HeaderMap,
    caller: Option<Extension<Caller>>,
    Path(id): Path<i64>,
    RawQuery(query): RawQuery,
    Json(mut url): Json<pb::Url>,
) -> Result<Json<pb::Url>, RestError> {
    url.id = id;
    let update_mask = update_mask(query.as_deref().unwrap_or_default())?;
    let req = build_tonic_request(
        pb::UpdateUrlRequest {
            url: Some(url),
            update_mask,
        },
        &headers,
        caller.map(|Extension(c)| c),
    );
    Ok(Json(api.update_url(req).await?.into_inner()))
}

async fn update_status_page(
    State(api): State<Arc<MonitorApi>>,
    headers: HeaderMap,
    caller: Option<Extension<Caller>>,
    RawQuery(query): RawQuery,
    Json(page): Json<pb::StatusPage>,
) -> Result<Json<pb::StatusPage>, RestError> {
    let update_mask = update_mask(query.as_deref().unwrap_or_default())?;
    let req = build_tonic_request(
        pb::UpdateStatusPageRequest {
            page: Some(page),
            update_mask,
        },
        &headers,
        caller.map(|Extension(c)| c),
    );
    Ok(Json(api.update_status_page(req).await?.into_inner()))
}

async fn update_channel(
    State(api): State<Arc<MonitorApi>>,
    headers: HeaderMap,
    caller: Option<Extension<Caller>>,
    Path(id): Path<i64>,
    RawQuery(query): RawQuery,
    Json(mut channel): Json<pb::Channel>,
) -> Result<Json<pb::Channel>, RestError> {
    channel.id = id;
    let update_mask = update_mask(query.as_deref().unwrap_or_default())?;
    let req = build_tonic_request(
        pb::UpdateChannelRequest {
            channel: Some(channel),
            update_mask,
        },
        &headers,
        caller.map(|Extension(c)| c),
    );
    Ok(Json(api.update_channel(req).await?.into_inner()))
}

/// A request with no field besides its body: any query parameter is
/// unknown.
fn no_query(query: Option<&str>, body: &str) -> Result<(), RestError> {
    match query
        .and_then(|q| url::form_urlencoded::parse(q.as_bytes()).next())
        .map(|(key, _)| key.into_owned())
    {
        Some(key) => Err(Error::invalid(
            key.clone(),
            format!("unknown query parameter \"{key}\"; send the {body} as the body"),
        )
        .into()),
        None => Ok(()),
    }
}

async fn create_maintenance_window(
    State(api): State<Arc<MonitorApi>>,
    headers: HeaderMap,
    caller: Option<Extension<Caller>>,
    RawQuery(query): RawQuery,
    Json(window): Json<pb::MaintenanceWindow>,
) -> Result<Json<pb::MaintenanceWindow>, RestError> {
    no_query(query.as_deref(), "window")?;
    let req = build_tonic_request(
        pb::CreateMaintenanceWindowRequest {
            window: Some(window),
        },
        &headers,
        caller.map(|Extension(c)| c),
    );
    Ok(Json(api.create_maintenance_window(req).await?.into_inner()))
}

async fn create_channel(
    State(api): State<Arc<MonitorApi>>,
    headers: HeaderMap,
    caller: Option<Extension<Caller>>,
    RawQuery(query): RawQuery,
    Json(channel): Json<pb::Channel>,
) -> Result<Json<pb::Channel>, RestError> {
    no_query(query.as_deref(), "channel")?;
    let req = build_tonic_request(
        pb::CreateChannelRequest {
            channel: Some(channel),
        },
        &headers,
        caller.map(|Extension(c)| c),
    );
    Ok(Json(api.create_channel(req).await?.into_inner()))
}

/// `POST /v1/channels/{id}:test`; any other segment is an unknown route.
async fn channel_verb(
    State(api): State<Arc<MonitorApi>>,
    headers: HeaderMap,
    caller: Option<Extension<Caller>>,
    Path(segment): Path<String>,
) -> Result<Json<pb::Delivery>, RestError> {
    let Some(id) = segment.strip_suffix(":test") else {
        return Err(Error::NotFound(format!(
            "no route POST /v1/channels/{segment}; did you mean /v1/channels/{{id}}:test?"
        ))
        .into());
    };
    let id = id
        .parse()
        .map_err(|_| Error::invalid("id", format!("{id:?} is not a channel id")))?;
    let req = build_tonic_request(
        pb::TestChannelRequest { id },
        &headers,
        caller.map(|Extension(c)| c),
    );
    Ok(Json(api.test_channel(req).await?.into_inner()))
}

/// The query string's `update_mask`; any other parameter is refused, as the
/// generated routes refuse unknown fields.
fn update_mask(query: &str) -> Result<Option<pbjson_types::FieldMask>, Error> {
    let mut paths: Option<Vec<String>> = None;
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        if key != "updateMask" && key != "update_mask" {
            return Err(Error::invalid(
                "update_mask",
                format!("unknown query parameter \"{key}\"; the only one is updateMask"),
            ));
        }
        paths.get_or_insert_default().extend(
            value
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_owned),
        );
    }
    Ok(paths.map(|paths| pbjson_types::FieldMask { paths }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mask_is_read_comma_separated_in_either_spelling_and_repeated() {
        let paths = |q: &str| update_mask(q).unwrap().map(|m| m.paths);
        assert_eq!(paths(""), None);
        assert_eq!(
            paths("updateMask=name,failureThreshold"),
            Some(vec!["name".into(), "failureThreshold".into()])
        );
        assert_eq!(
            paths("update_mask=name%2C%20period&updateMask=paused"),
            Some(vec!["name".into(), "period".into(), "paused".into()])
        );
        assert!(update_mask("fields=name").is_err());
    }
}
