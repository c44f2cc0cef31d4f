//! Logging set-up: tracing-subscriber, pretty or JSON, filtered by `RUST_LOG`
//! (default `info`, with sqlx's per-query logs held at `warn`).

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::config::LogFormat;

const DEFAULT_FILTER: &str = "info,sqlx=warn,sea_orm=warn,h2=warn,tower=warn,hyper=warn";

/// Installs the global subscriber. Call once, first thing in `main`.
pub fn init(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Pretty => registry.with(fmt::layer().with_target(false)).init(),
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true),
            )
            .init(),
    }
}

/// Logs a repeating task's failures once per outage, not on every retry:
/// the first failure as an error, the recovery as info.
#[derive(Debug)]
pub struct OutageLog {
    what: &'static str,
    failing: bool,
}

impl OutageLog {
    pub fn new(what: &'static str) -> Self {
        Self {
            what,
            failing: false,
        }
    }

    pub fn record<T>(&mut self, result: &anyhow::Result<T>) {
        match (result, self.failing) {
            (Ok(_), true) => {
                tracing::info!(task = self.what, "recovered");
                self.failing = false;
            }
            (Err(e), false) => {
                tracing::error!(
                    task = self.what,
                    error = format!("{e:#}"),
                    "failing; will retry"
                );
                self.failing = true;
            }
            _ => {}
        }
    }
}
