//! Transports: thin adapters that decode a request, call a service and map
//! the result. No SQL and no business rules live here.
//!
//! - [`grpc`]: the tonic `MonitorService` implementation.
//! - [`http`]: the JSON gateway generated from the proto's `google.api.http`
//!   annotations, over the same implementation, plus the seed's routes
//!   ([`seed`]) and the OpenAPI document ([`openapi`]).
//! - [`observe`]: one span, metric sample and request id per call.

pub mod grpc;
pub mod http;
pub mod observe;
pub mod openapi;
pub mod seed;
