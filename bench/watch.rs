//! WatchEvents fan-out: probe-to-client latency with many watchers on one
//! instance, beside one watcher, in the same run.
//!
//!     cargo bench --bench watch -- --watchers 1000 --rate 20 --seconds 20
//!
//! An embedded-default server (SQLite, in-process buffer, prober off) in
//! this process; one user with one URL. Results are pushed to the app's
//! buffer (what the prober does when a probe ends) at `--rate` per second
//! for `--seconds`, each stamped with the moment it was pushed
//! (`probed_at`). Every watcher (`WatchEvents{url_id: 0}`, the generated
//! client, over 8 HTTP/2 connections) records now − `probed_at` for each
//! status it gets: the probe-to-client latency. Baseline: the same with one
//! watcher. Prints JSON: p50/p95/p99/max per round, the ratio of the p99s,
//! events delivered and expected. The target (issue 17): p99 ≤ 500 ms with
//! 1,000 watchers.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use chrono::Utc;
use monitor::{
    app::App,
    config::Settings,
    prober::ProbeResult,
    proto::monitor::v1::{self as pb, event::Kind, monitor_service_client::MonitorServiceClient},
};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

#[path = "shared/mod.rs"]
mod shared;

use shared::{arg, authed, percentile};

/// One round: `watchers` streams, `rate × seconds` results; latencies (ms).
async fn round(
    app_buffer: &Arc<dyn monitor::buffer::Buffer>,
    channels: &[Channel],
    token: &str,
    url_id: i64,
    watchers: usize,
    rate: usize,
    seconds: usize,
) -> anyhow::Result<serde_json::Value> {
    let latencies = Arc::new(Mutex::new(Vec::<f64>::new()));
    let expected = rate * seconds;
    let mut tasks = Vec::new();
    for i in 0..watchers {
        let mut client = MonitorServiceClient::new(channels[i % channels.len()].clone());
        let mut stream = client
            .watch_events(authed(
                pb::WatchEventsRequest {
                    url_id: 0,
                    resume_token: String::new(),
                },
                token,
            ))
            .await?
            .into_inner();
        let latencies = latencies.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = 0;
            let mut mine = Vec::with_capacity(expected);
            while got < expected {
                let Ok(Ok(Some(event))) =
                    tokio::time::timeout(Duration::from_secs(10), stream.message()).await
                else {
                    break;
                };
                if let Some(Kind::Status(s)) = event.kind {
                    let probed = s.probed_at.unwrap_or_default();
                    let at_us = probed.seconds * 1_000_000 + i64::from(probed.nanos) / 1000;
                    #[allow(clippy::cast_precision_loss)]
                    mine.push((Utc::now().timestamp_micros() - at_us) as f64 / 1000.0);
                    got += 1;
                }
            }
            latencies.lock().unwrap().extend(mine);
        }));
    }
    // Let every stream open before the first result.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let start = Instant::now();
    let gap = Duration::from_secs(1) / u32::try_from(rate.max(1)).unwrap_or(u32::MAX);
    for n in 0..expected {
        let due = start + gap * u32::try_from(n).unwrap_or(u32::MAX);
        tokio::time::sleep_until(due.into()).await;
        let now = Utc::now();
        let mut result = ProbeResult::new(url_id, now, now, 200, Duration::from_millis(5), None);
        result.due_ms = 1_800_000_000_000 + i64::try_from(n).unwrap_or(0) * 1000;
        app_buffer.push(result).await;
    }
    for t in tasks {
        t.await?;
    }
    let mut all = std::mem::take(&mut *latencies.lock().unwrap());
    all.sort_by(f64::total_cmp);
    Ok(serde_json::json!({
        "watchers": watchers,
        "events_expected": expected * watchers,
        "events_delivered": all.len(),
        "ms": {
            "p50": percentile(&all, 0.50),
            "p95": percentile(&all, 0.95),
            "p99": percentile(&all, 0.99),
            "max": all.last().copied().unwrap_or(f64::NAN),
        },
    }))
}

fn main() -> anyhow::Result<()> {
    let watchers = arg("--watchers", 1000);
    let rate = arg("--rate", 20);
    let seconds = arg("--seconds", 20);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir()?;
        let mut settings = Settings::for_tests(dir.path());
        settings.grpc_addr = "127.0.0.1:0".parse()?;
        settings.http_addr = "127.0.0.1:0".parse()?;
        settings.prober.enabled = false;
        settings.events.watchers_per_user = u32::try_from(watchers + 10).unwrap_or(u32::MAX);
        settings.events.watch_queue = 10_000;
        settings.auth.login.register_per_peer = 1_000;
        let app = App::build(settings).await?;
        let addr = app.grpc_addr();
        let buffer = app.buffer();
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(app.run(shutdown.clone()));
        let mut channels = Vec::new();
        for _ in 0..8 {
            channels.push(Channel::from_shared(format!("http://{addr}"))?.connect().await?);
        }
        let mut client = MonitorServiceClient::new(channels[0].clone());
        let (email, password) = ("bench@example.com", "correct horse battery");
        client
            .register(pb::RegisterRequest {
                email: email.into(),
                password: password.into(),
            })
            .await?;
        let token = client
            .login(pb::LoginRequest {
                email: email.into(),
                password: password.into(),
            })
            .await?
            .into_inner()
            .token;
        let url = client
            .add_url(authed(
                pb::AddUrlRequest {
                    url: "https://bench.invalid/".into(),
                    ..Default::default()
                },
                &token,
            ))
            .await?
            .into_inner()
            .url
            .expect("the added URL");
        let baseline = round(&buffer, &channels, &token, url.id, 1, rate, seconds).await?;
        let many = round(&buffer, &channels, &token, url.id, watchers, rate, seconds).await?;
        let p99 = |v: &serde_json::Value| v["ms"]["p99"].as_f64().unwrap_or(f64::NAN);
        let report = serde_json::json!({
            "command": format!(
                "cargo bench --bench watch -- --watchers {watchers} --rate {rate} --seconds {seconds}"
            ),
            "rate_per_s": rate,
            "seconds": seconds,
            "baseline_one_watcher": baseline,
            "many_watchers": many,
            "p99_ratio_many_over_one": p99(&many) / p99(&baseline),
            "target_p99_ms": 500,
            "met": p99(&many) <= 500.0,
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
        shutdown.cancel();
        let _ = server.await;
        anyhow::Ok(())
    })
}
