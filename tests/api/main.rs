//! Integration tests: the real server, the real databases, the generated
//! client, over real sockets. Each behaviour runs on SQLite and on Postgres.

mod binary;
mod client;
mod connections;
mod faults;
mod grpc_web;
mod helpers;
mod hostile;
mod http;
mod migrations;
mod newcomer;
mod notif_faults;
mod notifications;
mod observability;
#[cfg(feature = "otlp")]
mod otlp;
mod services;
mod steps;
mod target;
mod tools;
mod wire;

mod abuse;
mod accounts;
mod assertions;
mod auth;
mod channel_kinds;
mod channels;
mod dependencies;
mod events;
mod incidents;
mod maintenance;
mod monitors_as_code;
mod outages;
mod pipeline;
mod prober;
mod prober_doubt;
mod properties;
mod scaleout;
mod server;
mod stats;
mod status_page;
mod statuses;
mod update;
mod urls;
