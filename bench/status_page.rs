//! The public status page: `/status/{slug}` with 100 URLs × 90 days,
//! uncached and revalidated (`If-None-Match`), beside `/healthz` in the
//! same run.
//!
//!     cargo bench --bench status_page -- --urls 100 --days 90 --requests 500 --seconds 10
//!
//! An embedded-default server (SQLite, prober off) in this process; one
//! user with `--urls` URLs on a public page, each with a result every hour
//! for `--days` days (some failing), written through the flush's own write
//! (`store::outcomes::write_batch`), so the rollups are what a real run
//! leaves. Uncached (the server started with `MONITOR_STATUS_PAGE_CACHE=0s`):
//! `--requests` GETs one after another, each building the page from the
//! database; p50/p95/p99 beside the same number of `/healthz` GETs (the
//! HTTP stack alone). Also the 404s of an unknown slug, a private page and
//! an unlisted URL's badge, timed alike (`--requests` each), to show they
//! cannot be told apart by time. Then the server again on the same data
//! with its default cache: 16 concurrent clients sending the page's ETag
//! for `--seconds` (answered 304), and 16 GETting the whole page, beside
//! 16 clients on `/healthz`: requests/s and the ratios. Targets (issue
//! 17): p99 ≤ 50 ms uncached, ≥ 1,000 requests/s with `If-None-Match`.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use chrono::Utc;
use monitor::{
    app::App,
    config::Settings,
    prober::ProbeResult,
    proto::monitor::v1::{self as pb, monitor_service_client::MonitorServiceClient},
    store::{outcomes, rollups},
};
use tokio_util::sync::CancellationToken;

#[path = "shared/mod.rs"]
mod shared;

use shared::{arg, authed, percentile};

/// Sequential GETs of `url`: latencies in ms, sorted.
async fn sequential(http: &reqwest::Client, url: &str, n: usize) -> anyhow::Result<Vec<f64>> {
    let mut ms = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        let response = http.get(url).send().await?;
        anyhow::ensure!(
            response.status().is_success(),
            "{url}: {}",
            response.status()
        );
        response.bytes().await?;
        ms.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    ms.sort_by(f64::total_cmp);
    Ok(ms)
}

/// Requests/s of 16 clients GETting `url` (with `etag` as If-None-Match)
/// for `seconds`, every answer `expect`.
#[allow(clippy::cast_precision_loss)]
async fn concurrent(
    url: &str,
    etag: Option<&str>,
    expect: u16,
    seconds: usize,
) -> anyhow::Result<f64> {
    let done = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + Duration::from_secs(seconds as u64);
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (url, etag, done) = (url.to_owned(), etag.map(str::to_owned), done.clone());
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            while Instant::now() < until {
                let mut req = http.get(&url);
                if let Some(etag) = &etag {
                    req = req.header("if-none-match", etag);
                }
                let response = req.send().await?;
                anyhow::ensure!(
                    response.status().as_u16() == expect,
                    "{}",
                    response.status()
                );
                response.bytes().await?;
                done.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / seconds as f64)
}

fn stats(ms: &[f64]) -> serde_json::Value {
    serde_json::json!({
        "p50": percentile(ms, 0.50),
        "p95": percentile(ms, 0.95),
        "p99": percentile(ms, 0.99),
        "max": ms.last().copied().unwrap_or(f64::NAN),
    })
}

/// `urls` URLs, each with a result every hour for `days` days (some
/// failing), written as the flush writes them; their ids.
async fn seed(
    client: &mut MonitorServiceClient<tonic::transport::Channel>,
    db: &sea_orm::DatabaseConnection,
    token: &str,
    urls: usize,
    days: usize,
) -> anyhow::Result<Vec<i64>> {
    let now = Utc::now().timestamp_millis();
    let hour = 3_600_000;
    let t0 = now - i64::try_from(days).unwrap_or(90) * 24 * hour;
    let mut ids = Vec::new();
    for u in 0..urls {
        let url = client
            .add_url(authed(
                pb::AddUrlRequest {
                    url: format!("https://service-{u}.bench.invalid/health"),
                    ..Default::default()
                },
                token,
            ))
            .await?
            .into_inner()
            .url
            .expect("the added URL");
        let u = i64::try_from(u).unwrap_or(0);
        let results: Vec<ProbeResult> = (0..(now - t0) / hour)
            .map(|k| {
                let due_ms = t0 + k * hour;
                ProbeResult {
                    url_id: url.id,
                    due_ms,
                    started_us: due_ms * 1000 + 1_000,
                    // Outages of a few hours now and then.
                    status_code: if (k + u * 7) % 300 < 4 { 500 } else { 200 },
                    latency_us: 20_000 + (k % 10) * 10_000,
                    ..ProbeResult::default()
                }
            })
            .collect();
        for batch in results.chunks(2_000) {
            outcomes::write_batch(db, &batch.iter().collect::<Vec<_>>()).await?;
        }
        ids.push(url.id);
    }
    // As a running service leaves them: rolled up to the minute before
    // (`store::rollups::roll`), only the last minutes read from statuses.
    rollups::roll(db, now - 60_000).await?;
    Ok(ids)
}

#[allow(clippy::too_many_lines)] // one sequence: seed, then the four measures
fn main() -> anyhow::Result<()> {
    let urls = arg("--urls", 100);
    let days = arg("--days", 90);
    let requests = arg("--requests", 500);
    let seconds = arg("--seconds", 10);
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
        settings.urls.max_urls_per_user = u32::try_from(urls + 10).unwrap_or(u32::MAX);
        let cached_settings = settings.clone();
        // Every page built from the database.
        settings.status_pages.status_page_cache = Duration::ZERO;
        let app = App::build(settings).await?;
        let (addr, http_addr) = (app.grpc_addr(), app.http_addr());
        let db = app.db().clone();
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(app.run(shutdown.clone()));
        let mut client = MonitorServiceClient::connect(format!("http://{addr}")).await?;
        let (email, password) = ("page@example.com", "correct horse battery");
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
        let seeding = Instant::now();
        let ids = seed(&mut client, &db, &token, urls, days).await?;
        let seed_s = seeding.elapsed().as_secs_f64();
        client
            .update_status_page(authed(
                pb::UpdateStatusPageRequest {
                    page: Some(pb::StatusPage {
                        slug: "bench".into(),
                        title: "Bench".into(),
                        url_ids: ids,
                        public: true,
                        ..Default::default()
                    }),
                    update_mask: None,
                },
                &token,
            ))
            .await?;
        // A second user's page, not public: its 404 is timed beside an
        // unknown slug's and an unlisted URL's.
        client
            .register(pb::RegisterRequest {
                email: "private@example.com".into(),
                password: password.into(),
            })
            .await?;
        let other = client
            .login(pb::LoginRequest {
                email: "private@example.com".into(),
                password: password.into(),
            })
            .await?
            .into_inner()
            .token;
        client
            .update_status_page(authed(
                pb::UpdateStatusPageRequest {
                    page: Some(pb::StatusPage {
                        slug: "hidden".into(),
                        ..Default::default()
                    }),
                    update_mask: None,
                },
                &other,
            ))
            .await?;
        let page = format!("http://{http_addr}/status/bench");
        let healthz = format!("http://{http_addr}/healthz");
        let http = reqwest::Client::new();
        let first = http.get(&page).send().await?;
        anyhow::ensure!(first.status().is_success(), "the page: {}", first.status());
        let etag = first
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .expect("the page has an ETag");
        let bytes = first.bytes().await?.len();
        let page_ms = sequential(&http, &page, requests).await?;
        let health_ms = sequential(&http, &healthz, requests).await?;
        let mut not_found = serde_json::Map::new();
        for (name, path) in [
            ("unknown_slug", "/status/no-such-page".to_owned()),
            ("private_page", "/status/hidden".to_owned()),
            ("unlisted_url_badge", "/status/bench/badges/999999/status.svg".to_owned()),
        ] {
            let mut ms = Vec::with_capacity(requests);
            for _ in 0..requests {
                let start = Instant::now();
                let response = http.get(format!("http://{http_addr}{path}")).send().await?;
                anyhow::ensure!(response.status() == 404, "{path}: {}", response.status());
                response.bytes().await?;
                ms.push(start.elapsed().as_secs_f64() * 1000.0);
            }
            ms.sort_by(f64::total_cmp);
            not_found.insert(name.into(), stats(&ms));
        }
        shutdown.cancel();
        server.await??;
        // The same data, served with the default cache.
        let cache = cached_settings.status_pages.status_page_cache;
        let app = App::build(cached_settings).await?;
        let http_addr = app.http_addr();
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(app.run(shutdown.clone()));
        let page = format!("http://{http_addr}/status/bench");
        let healthz = format!("http://{http_addr}/healthz");
        let first = http.get(&page).send().await?;
        anyhow::ensure!(first.status().is_success(), "the page: {}", first.status());
        anyhow::ensure!(
            first.headers().get("etag").and_then(|v| v.to_str().ok()) == Some(etag.as_str()),
            "the page built again has the same ETag"
        );
        first.bytes().await?;
        let revalidated = concurrent(&page, Some(&etag), 304, seconds).await?;
        let repeated = concurrent(&page, None, 200, seconds).await?;
        let health_rps = concurrent(&healthz, None, 200, seconds).await?;
        let p99 = percentile(&page_ms, 0.99);
        let report = serde_json::json!({
            "command": format!(
                "cargo bench --bench status_page -- --urls {urls} --days {days} --requests {requests} --seconds {seconds}"
            ),
            "urls": urls,
            "days": days,
            "seed_seconds": seed_s,
            "page_bytes": bytes,
            "uncached": {
                "requests": requests,
                "page_ms": stats(&page_ms),
                "healthz_ms": stats(&health_ms),
                "p99_ratio_page_over_healthz": p99 / percentile(&health_ms, 0.99),
                "target_p99_ms": 50,
                "met": p99 <= 50.0,
            },
            "not_found_ms": not_found,
            "revalidated": {
                "cache": humantime::format_duration(cache).to_string(),
                "clients": 16,
                "seconds": seconds,
                "page_304_per_s": revalidated,
                "healthz_per_s": health_rps,
                "ratio": revalidated / health_rps,
                "target_per_s": 1000,
                "met": revalidated >= 1000.0,
            },
            "repeated": {
                "clients": 16,
                "seconds": seconds,
                "page_200_per_s": repeated,
                "page_mb_per_s": repeated * f64::from(u32::try_from(bytes).unwrap_or(u32::MAX)) / 1e6,
                "ratio_over_healthz": repeated / health_rps,
            },
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
        shutdown.cancel();
        let _ = server.await;
        anyhow::Ok(())
    })
}
