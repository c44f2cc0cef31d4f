//! Logging set-up: tracing-subscriber, pretty or JSON, filtered by `RUST_LOG`
//! (default `info`, with sqlx's per-query logs held at `warn`).
//!
//! Built with the `otlp` feature and run with `OTEL_EXPORTER_OTLP_ENDPOINT`
//! set (e.g. `http://collector:4318`), spans are also exported over
//! OTLP/HTTP; [`shutdown`] flushes them at exit.

use tracing_subscriber::{EnvFilter, Layer, fmt, prelude::*, registry::LookupSpan};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable, coloured when the output is a terminal.
    Pretty,
    /// One JSON object per line, for log shippers.
    Json,
}

const DEFAULT_FILTER: &str = "info,sqlx=warn,sea_orm=warn,h2=warn,tower=warn,hyper=warn";

/// Installs the global subscriber. Call once, first thing in `main`.
pub fn init(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(otlp_layer());
    match format {
        // Colour only when the log stream (stdout) is a terminal: a file or
        // a pipe gets plain text.
        LogFormat::Pretty => registry
            .with(
                fmt::layer()
                    .with_target(false)
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout())),
            )
            .init(),
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

type BoxedLayer<S> = Box<dyn Layer<S> + Send + Sync>;

#[cfg(feature = "otlp")]
static PROVIDER: std::sync::OnceLock<opentelemetry_sdk::trace::SdkTracerProvider> =
    std::sync::OnceLock::new();

/// The OTLP span exporter layer, when built in and configured.
fn otlp_layer<S>() -> Option<BoxedLayer<S>>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
{
    #[cfg(feature = "otlp")]
    {
        use opentelemetry::trace::TracerProvider as _;
        std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT")?;
        let exporter = match opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()
        {
            Ok(exporter) => exporter,
            Err(e) => {
                eprintln!("monitor: OTLP export disabled: {e}");
                return None;
            }
        };
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(
                opentelemetry_sdk::Resource::builder()
                    .with_service_name("monitor")
                    .build(),
            )
            .build();
        let tracer = provider.tracer("monitor");
        let _ = PROVIDER.set(provider);
        Some(Box::new(tracing_opentelemetry::layer().with_tracer(tracer)))
    }
    #[cfg(not(feature = "otlp"))]
    None
}

/// Flushes exported spans; call once before exit.
pub fn shutdown() {
    #[cfg(feature = "otlp")]
    if let Some(provider) = PROVIDER.get()
        && let Err(e) = provider.shutdown()
    {
        eprintln!("monitor: flushing OTLP spans failed: {e}");
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
