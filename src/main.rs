//! The `monitor` server binary: settings, telemetry, build, run until a signal.

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
    let settings = match Settings::try_parse_with_env_names(std::env::args_os()) {
        Ok(settings) => settings,
        Err(e) => e.exit(),
    };
    telemetry::init(settings.log_format);
    if let Err(e) = settings.validate() {
        eprintln!("monitor: {e}");
        return std::process::ExitCode::from(2);
    }
    let app = match App::build(settings).await {
        Ok(app) => app,
        Err(e) if unusable_setting(&e) => {
            eprintln!("monitor: {e:#}");
            return std::process::ExitCode::from(2);
        }
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

/// Whether start-up failed on a setting that cannot work as given (a
/// database that refuses us, an address in use): exit 2, like a bad flag.
fn unusable_setting(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause.is::<monitor::config::SettingsError>()
            || cause
                .downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::AddrInUse)
    })
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
