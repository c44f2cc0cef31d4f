//! The `monitor` server binary: settings, telemetry, build, run until a signal.

use clap::Parser;
use monitor::{app::App, config::Settings, telemetry};
use tokio_util::sync::CancellationToken;

/// mimalloc instead of glibc's malloc: the server allocates many small,
/// short-lived buffers across threads (probes, rows, protobuf messages), and
/// glibc's arenas spent ~8% of the server's CPU in malloc/free under the
/// prober and ListStatuses benchmarks (perf; README, Performance).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let settings = Settings::parse();
    telemetry::init(settings.log_format);
    if let Err(e) = settings.validate() {
        eprintln!("monitor: {e}");
        return std::process::ExitCode::from(2);
    }
    let app = match App::build(settings).await {
        Ok(app) => app,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "start-up failed");
            return std::process::ExitCode::FAILURE;
        }
    };
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    let code = match app.run(shutdown).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "server failed");
            std::process::ExitCode::FAILURE
        }
    };
    telemetry::shutdown();
    code
}

/// Cancels `shutdown` on the first SIGINT or SIGTERM.
async fn cancel_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
    }
    shutdown.cancel();
}
