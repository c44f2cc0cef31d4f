//! Transports: thin adapters that decode a request, call a service and map
//! the result. No SQL and no business rules live here.
//!
//! - [`grpc`]: the tonic `MonitorService` implementation.
//! - [`convert`]: proto messages to and from domain types.
//! - [`http`]: the JSON side's router: the gateway routes generated from the
//!   proto's `google.api.http` annotations ([`gateway`]) and UpdateUrl's,
//!   CreateChannel's and TestChannel's, written by hand ([`body_routes`]),
//!   over the same implementation, the seed's routes ([`seed`]), the
//!   OpenAPI document
//!   ([`openapi`]) and the ops endpoints; [`middleware`] identifies the
//!   [`Caller`] and keeps every answer JSON.
//! - [`status_page`]: the public status pages and badges (HTML and SVG,
//!   no token), beside the JSON side.
//! - [`observe`]: one span, metric sample and request id per call;
//!   [`client_faults`] gives calls that failed through the client's fault
//!   (undecodable messages, reset streams) the client's code; [`deadline`]
//!   ends a call past its `grpc-timeout` with DEADLINE_EXCEEDED.
//! - [`grpc_web`]: gRPC-Web (tonic-web) and CORS on the gRPC port.
//! - [`connections`]: the accept loop of both ports, with a cap, timeouts
//!   and keepalive on every connection; [`protocol_errors`] gives hyper's
//!   own answers on the JSON port (414, 431, 400) the JSON error shape.

pub mod body_routes;
pub mod client_faults;
pub mod connections;
pub mod convert;
pub mod deadline;
pub mod events_sse;
pub mod gateway;
pub mod grpc;
pub mod grpc_web;
pub mod http;
pub mod middleware;
pub mod observe;
pub mod openapi;
pub mod protocol_errors;
pub mod seed;
pub mod status_page;

use std::net::IpAddr;

use crate::domain::UserId;

/// Who is calling, as the JSON side learned it: the connection's peer
/// address, and the user whose token the request carried (on routes that
/// need one). One typed extension from the middleware to the handlers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Caller {
    pub user: Option<UserId>,
    pub peer: Option<IpAddr>,
}
