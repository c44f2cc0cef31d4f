//! The HTTP router: the generated v1 routes and the seed's routes, with
//! `/openapi.json`, `/metrics`, `/healthz`, `/readyz` and the public status
//! pages (`/status/…`).
//!
//! The routes call the same [`MonitorApi`] as gRPC, so validation, errors and
//! isolation are the gRPC ones. Bodies are canonical proto3 JSON (pbjson):
//! lowerCamelCase out, both spellings in, unknown fields refused. Even what
//! axum rejects before a handler runs (malformed JSON, wrong types, an
//! unknown route or method, a body over the limit) is answered in the JSON
//! error shape ([`middleware::errors_as_json`]).

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::{DefaultBodyLimit, State},
    http::{HeaderValue, Method, StatusCode, header},
    middleware::{from_fn, from_fn_with_state, map_request},
    response::{IntoResponse, Response},
    routing::get,
};
use serde_json::{Value, json};
use tonic::Code;

use super::{
    body_routes, events_sse,
    gateway::{error_response, routes},
    grpc::MonitorApi,
    middleware,
    observe::{self, observe_http},
    seed, status_page,
};
use crate::{auth::TokenKeys, health::Health, metrics::Metrics};

/// What the router serves besides the API.
#[derive(Debug, Clone)]
pub struct HttpParts {
    pub keys: Arc<TokenKeys>,
    pub max_body: usize,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    /// The OpenAPI document (built once, with the configured limits).
    pub openapi: Arc<Value>,
    /// How long a built public status page is served again.
    pub status_page_cache: std::time::Duration,
}

pub fn router(api: MonitorApi, parts: HttpParts) -> Router {
    // HTML and SVG, outside the JSON-only layers (their 404 is a page).
    let status_pages =
        status_page::router(api.services().status_pages.clone(), parts.status_page_cache)
            .layer(from_fn_with_state(parts.metrics.clone(), observe_http))
            .layer(observe::request_id_layers());
    let api = Arc::new(api);
    let ops = Router::new()
        .route("/metrics", get(metrics_text))
        .with_state(parts.metrics.clone())
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(ready).with_state(parts.health))
        .route(
            "/openapi.json",
            get(openapi_document).with_state(parts.openapi),
        );
    let routes = Router::new()
        .merge(routes::monitor_service_rest_router(api.clone()))
        .merge(body_routes::router(api.clone()))
        .merge(events_sse::router(api.clone()))
        .merge(seed::router(api))
        .route_layer(from_fn_with_state(parts.keys, middleware::identify))
        .merge(ops)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(parts.max_body))
        .layer(from_fn(middleware::errors_as_json))
        .layer(from_fn_with_state(parts.metrics, observe_http))
        .layer(observe::request_id_layers())
        .layer(map_request(middleware::json_by_default));
    // Layers of a Router run inside each route, before axum adds `Allow` to
    // a 405; this one wraps the whole router to see it.
    Router::new()
        .merge(status_pages)
        .fallback_service(routes)
        .layer(from_fn(middleware::name_allowed_methods))
}

/// Prometheus text format.
async fn metrics_text(State(metrics): State<Arc<Metrics>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        metrics.encode(),
    )
        .into_response()
}

/// Readiness: 200 while the database and Redis answer, 503 otherwise, with
/// which one is down.
async fn ready(State(health): State<Arc<Health>>) -> Response {
    let status = if health.ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(health.report())).into_response()
}

async fn openapi_document(State(document): State<Arc<Value>>) -> Response {
    (
        [(
            header::CACHE_CONTROL,
            HeaderValue::from_static("max-age=60"),
        )],
        Json(document.as_ref().clone()),
    )
        .into_response()
}

async fn not_found(method: Method, uri: axum::http::Uri) -> Response {
    error_response(
        StatusCode::NOT_FOUND,
        Code::NotFound,
        &format!("no route for {method} {}; see /openapi.json", uri.path()),
        &[],
    )
}
