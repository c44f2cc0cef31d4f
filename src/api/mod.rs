//! Transports: thin adapters that decode a request, call a service and map
//! the result. No SQL and no business rules live here.

pub mod grpc;
