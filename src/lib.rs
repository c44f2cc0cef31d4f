//! monitor: a self-hosted HTTP endpoint monitor.
//!
//! - [`config`]: settings from flags and environment, validated early.
//! - [`telemetry`]: tracing-subscriber set-up.
//! - [`app`]: builds the server (binds listeners, returns real ports) and runs it.
//! - [`error`]: the one error vocabulary, mapped once to gRPC codes.
//! - [`domain`]: newtypes that parse request values (email, password, URL, period).
//! - [`service`]: the transport-free core (accounts, URLs, statuses).
//! - [`api`]: the gRPC adapter over the services.
//! - [`auth`]: argon2id password hashing, PASETO tokens, the auth layer.
//! - [`store`]: sea-orm entities, connection and migrations.
//! - [`prober`]: the schedule, the probe (reqwest) and the SSRF guard.
//! - [`buffer`]: where results wait between probe and store (Redis or in-process).
//! - [`flush`]: moves results into the database in batches; retention.
//! - [`deliver`]: sends the notifications the flush put in the outbox.
//! - [`health`]: dependency checks behind grpc.health.v1 and `/readyz`.
//! - [`metrics`]: the Prometheus metrics served at `/metrics`.
//! - [`proto`]: the generated protobuf types, server and client.
//! - [`client`]: the generated client over a channel that retries idempotent calls.

pub mod api;
pub mod app;
pub mod auth;
pub mod buffer;
pub mod client;
pub mod config;
pub mod deliver;
pub mod domain;
pub mod error;
pub mod flush;
pub mod health;
pub mod live;
pub mod metrics;
pub mod prober;
pub mod proto;
pub mod service;
pub mod store;
pub mod telemetry;
