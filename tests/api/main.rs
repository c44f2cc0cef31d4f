//! Integration tests: the real server, the real databases, the generated
//! client, over real sockets. Each behaviour runs on SQLite and on Postgres.

mod helpers;

mod accounts;
mod auth;
mod server;
mod statuses;
mod urls;
