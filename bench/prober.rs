//! End-to-end prober benchmark: schedule -> probe -> buffer -> store against
//! a local HTTP target, in one process.
//!
//! It starts the service in process (SQLite and the in-process buffer, or
//! Postgres and Redis from BENCH_DATABASE_URL / BENCH_REDIS_URL), adds
//! `--urls` URLs with `--period`, lets them run for a warm-up and then
//! `--duration`, and reports, from the statuses stored in that window:
//! probes per second, schedule lateness (probe start minus due time)
//! p50/p99/max, how even the load is (busiest second over the mean), and the
//! resident memory added per URL (an upper bound: target and client share
//! the process).
//!
//!     cargo bench --bench prober -- --urls 2000 --period 1s --duration 20s
//!
//! With `--sample 60s` it also records resident memory and the SQLite WAL
//! file's size every minute of the window (the soak benchmark).
//!
//! With `--assertions-ratio` it measures two more windows of the same
//! length: one with three assertions on every URL (status 200-299, latency
//! under 5 s, body contains "ok"; the body is then kept and searched), then
//! one without again, and reports the stored rate with assertions over the
//! mean of the two without (`assertions.ratio`). Give it more demand than
//! the prober can serve (bench/run: 20,000 URLs a second) so that each
//! window measures what the prober sustains, not the demand.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use chrono::{DateTime, Utc};
use clap::Parser;
use monitor::{
    app::App,
    config::Settings,
    domain::Verdict,
    proto::monitor::v1::{self as pb, monitor_service_client::MonitorServiceClient},
    store::{statuses, urls},
};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set, sea_query::Expr};
use tokio_util::sync::CancellationToken;

/// The server binary's allocator (src/main.rs), so this in-process bench
/// measures what the binary does.
/// mimalloc instead of glibc's malloc: the server allocates many small,
/// short-lived buffers across threads (probes, rows, protobuf messages), and
/// glibc's arenas spent ~8% of the server's CPU in malloc/free under the
/// prober and ListStatuses benchmarks (perf; README, Performance).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
struct Args {
    /// URLs to monitor.
    #[arg(long, default_value_t = 2000)]
    urls: usize,
    /// Period of every URL.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    period: Duration,
    /// Measured window.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Warm-up before the window (default: one period, at least 3 s).
    #[arg(long, value_parser = humantime::parse_duration)]
    warmup: Option<Duration>,
    /// Probe this base URL (e.g. nginx) instead of the in-process target;
    /// URLs are `<target>u/<i>`.
    #[arg(long)]
    target: Option<String>,
    /// Probes in flight at once (global and per host).
    #[arg(long, default_value_t = 512)]
    concurrency: usize,
    /// Sample resident memory (and the SQLite WAL file's size) this often
    /// during the window: the soak benchmark (bench/run, `soak_*`).
    #[arg(long, value_parser = humantime::parse_duration)]
    sample: Option<Duration>,
    /// Also measure with three assertions per URL, and report the ratio.
    #[arg(long)]
    assertions_ratio: bool,
    /// Accepted for `cargo bench` compatibility.
    #[arg(long, hide = true)]
    bench: bool,
}

/// Stored probes per second in `[from, to)` and how many were not UP.
async fn stored_rate(
    db: &sea_orm::DatabaseConnection,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> anyhow::Result<(f64, usize)> {
    let rows = statuses::Entity::find()
        .filter(statuses::Column::DueAt.gte(from))
        .filter(statuses::Column::DueAt.lt(to))
        .all(db)
        .await?;
    let not_up = rows
        .iter()
        .filter(|r| r.verdict != Some(Verdict::Up.stored()))
        .count();
    #[allow(clippy::cast_precision_loss)]
    let rate = rows.len() as f64 / ((to - from).num_milliseconds() as f64 / 1000.0);
    Ok((rate, not_up))
}

/// Sets (or with `None` removes) every URL's assertions, waits `warmup`,
/// then measures a window of `duration`: (stored probes/s, not UP).
async fn window_with(
    db: &sea_orm::DatabaseConnection,
    assertions: Option<String>,
    warmup: Duration,
    duration: Duration,
    settle: Duration,
) -> anyhow::Result<(f64, usize)> {
    urls::Entity::update_many()
        .col_expr(urls::Column::Assertions, Expr::value(assertions))
        .exec(db)
        .await?;
    tokio::time::sleep(warmup).await;
    let from = Utc::now();
    tokio::time::sleep(duration).await;
    let to = Utc::now();
    // Let the window's results reach the store.
    tokio::time::sleep(settle).await;
    stored_rate(db, from, to).await
}

/// The three assertions the ratio is measured with, as stored.
fn three_assertions() -> Option<String> {
    use monitor::domain::assertion::{Assertion, Check, Severity};
    let list = vec![
        Assertion::new(Severity::Down, Check::Status(vec![(200, 299)])),
        Assertion::new(Severity::Degraded, Check::MaxLatencyUs(5_000_000)),
        Assertion::new(Severity::Down, Check::BodyContains("ok".into())),
    ];
    monitor::domain::Assertions::new("", list)
        .expect("three assertions are within the limit")
        .to_json()
}

/// `monitor_probes_total` (all outcomes) and
/// `monitor_probes_skipped_late_total` from the service's `/metrics` (a
/// counter's exposed name ends in `_total`; without it the sum was 0).
async fn probe_counters(http: std::net::SocketAddr) -> anyhow::Result<(f64, f64)> {
    let text = reqwest::get(format!("http://{http}/metrics"))
        .await?
        .error_for_status()?
        .text()
        .await?;
    let sum = |name: &str| -> f64 {
        text.lines()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with([' ', '{']))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    Ok((
        sum("monitor_probes_total"),
        sum("monitor_probes_skipped_late_total"),
    ))
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib * 1024)
}

/// CPU time (user + system) this process has used, in seconds, from
/// `/proc/self/stat` (clock ticks of 1/100 s, Linux's `USER_HZ`).
#[allow(clippy::cast_precision_loss)] // ticks of a few hours fit an f64 exactly
fn cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the command name (which may hold spaces).
            let rest = &s[s.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
            Some(ticks as f64 / 100.0)
        })
        .unwrap_or(0.0)
}

/// A tiny HTTP target on its own runtime thread, counting hits.
fn start_target() -> (SocketAddr, Arc<AtomicU64>) {
    let hits = Arc::new(AtomicU64::new(0));
    let counter = hits.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let app = axum::Router::new().fallback(move || {
                let counter = counter.clone();
                async move {
                    counter.fetch_add(1, Ordering::Relaxed);
                    "ok"
                }
            });
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    (rx.recv().unwrap(), hits)
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[tokio::main]
#[allow(clippy::cast_precision_loss, clippy::too_many_lines)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (local, hits) = start_target();
    let base = args
        .target
        .clone()
        .unwrap_or_else(|| format!("http://{local}/"));
    let tmp = tempfile::tempdir()?;
    let mut s = Settings::defaults(tmp.path());
    s.grpc_addr = "127.0.0.1:0".parse()?;
    s.http_addr = "127.0.0.1:0".parse()?;
    // Unset or empty: the embedded default (SQLite, in-process buffer).
    let var = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
    s.database_url = var("BENCH_DATABASE_URL");
    s.redis_url = var("BENCH_REDIS_URL");
    s.buffer.redis_prefix = format!("monitor-bench-{}", std::process::id());
    s.auth.token_key = Some(hex::encode([7u8; 32]));
    s.prober.probe.allow_private_targets = true;
    s.urls.min_period = Duration::from_secs(1);
    s.urls.max_urls_per_user = u32::try_from(args.urls).unwrap_or(u32::MAX);
    // Every URL is on the one local nginx.
    s.urls.max_host_rate = 1_000_000.0;
    s.prober.concurrency = args.concurrency;
    s.prober.per_host = args.concurrency;
    s.log_format = monitor::config::LogFormat::Pretty;
    let backend = if s.database_url.is_some() {
        "postgres"
    } else {
        "sqlite"
    };
    let buffer = if s.redis_url.is_some() {
        "redis"
    } else {
        "in-process"
    };

    // How long a window's last results take to reach the store: a flush
    // interval (MONITOR_FLUSH_INTERVAL may set it) and a margin.
    let settle = s.flush.interval + Duration::from_secs(3);
    let rss_start = rss_bytes();
    let app = App::build(s).await?;
    let db = app.db().clone();
    let addr = app.grpc_addr();
    let http_addr = app.http_addr();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(app.run(shutdown.clone()));
    let mut client = MonitorServiceClient::connect(format!("http://{addr}")).await?;
    let creds = pb::RegisterRequest {
        email: "bench@example.com".into(),
        password: "bench-password".into(),
    };
    let user_id = client.register(creds.clone()).await?.into_inner().id;
    let rss_base = rss_bytes();

    // URLs go straight into the table, as steady state has them: each on a
    // random phase of its period and due next at its grid's next point
    // (AddUrl's own rate is bench/load.rs's job). Due at `now + phase`
    // instead (off the grid when `now` is not a multiple of the period),
    // every URL moved onto its grid at its second due time, by up to half
    // a period later: a window starting within that found up to a sixth
    // fewer due times than the demand (seen at 100,000 URLs, 60 s).
    let period_ms = i64::try_from(args.period.as_millis())?;
    let now = Utc::now();
    let mut rng = rand::thread_rng();
    let rows: Vec<urls::ActiveModel> = (0..args.urls)
        .map(|i| {
            let phase = rand::Rng::gen_range(&mut rng, 0..period_ms);
            urls::ActiveModel {
                user_id: Set(user_id),
                url: Set(format!("{base}u/{i}")),
                period_seconds: Set(i32::try_from(period_ms / 1000).unwrap_or(i32::MAX)),
                created_at: Set(now),
                phase_ms: Set(phase),
                ..Default::default()
            }
        })
        .collect();
    for chunk in rows.chunks(2000) {
        urls::Entity::insert_many(chunk.to_vec())
            .exec_without_returning(&db)
            .await?;
    }
    // Their schedule rows, each due next at its grid's first point from
    // `now` on (`domain::schedule::next_grid_after`, in SQL)...
    db.execute_unprepared(&format!(
        "INSERT INTO url_schedules (url_id, next_due_ms, period_ms, phase_ms) \
         SELECT id, {now} + ((phase_ms - {now}) % {period_ms} + {period_ms}) % {period_ms}, \
         {period_ms}, phase_ms FROM urls WHERE user_id = {user_id}",
        now = now.timestamp_millis(),
    ))
    .await?;
    // ...and their state rows as AddUrl makes them: pending, the roll mark at the
    // creation (the flush would otherwise create them with no status
    // rolled, and the first retention pass would roll all of them). The
    // first URLs may be probed and flushed while the rest are inserted:
    // the flush's own state rows (mark 0) get the mark too.
    db.execute_unprepared(&format!(
        "INSERT INTO url_states (url_id, state, rolled_to_ms) \
         SELECT id, 1, {} FROM urls WHERE user_id = {user_id} \
         ON CONFLICT (url_id) DO UPDATE SET rolled_to_ms = excluded.rolled_to_ms",
        now.timestamp_millis()
    ))
    .await?;

    let warmup = args
        .warmup
        .unwrap_or_else(|| args.period.max(Duration::from_secs(3)));
    tokio::time::sleep(warmup).await;
    let from = Utc::now();
    let cpu_from = cpu_seconds();
    let counted_from = probe_counters(http_addr).await?;
    let hits_from = hits.load(Ordering::Relaxed);
    let wal = tmp.path().join("monitor.db-wal");
    let mut samples = Vec::new();
    let window_start = tokio::time::Instant::now();
    let window_end = window_start + args.duration;
    if let Some(every) = args.sample {
        let mut next = window_start;
        while next <= window_end {
            tokio::time::sleep_until(next).await;
            samples.push(serde_json::json!({
                "at_s": next.duration_since(window_start).as_secs_f64(),
                "rss_mib": rss_bytes() as f64 / 1_048_576.0,
                "sqlite_wal_mib": std::fs::metadata(&wal).map_or(0.0, |m| m.len() as f64 / 1_048_576.0),
            }));
            next += every;
        }
    }
    tokio::time::sleep_until(window_end).await;
    let to = Utc::now();
    let cpu_to = cpu_seconds();
    let hits_to = hits.load(Ordering::Relaxed);
    let rss_end = rss_bytes();
    let counted_to = probe_counters(http_addr).await?;
    // Let the last window's results reach the store.
    tokio::time::sleep(settle).await;

    let rows = statuses::Entity::find()
        .filter(statuses::Column::DueAt.gte(from))
        .filter(statuses::Column::DueAt.lt(to))
        .all(&db)
        .await?;
    let mut lateness: Vec<i64> = rows.iter().map(|r| i64::from(r.probed_after_us)).collect();
    lateness.sort_unstable();
    let window = (to - from).num_milliseconds() as f64 / 1000.0;
    let mut per_second = std::collections::BTreeMap::<i64, u64>::new();
    for r in &rows {
        *per_second.entry(r.due_at.timestamp()).or_default() += 1;
    }
    let busiest = per_second.values().copied().max().unwrap_or(0) as f64;
    let mean = rows.len() as f64 / per_second.len().max(1) as f64;
    let failed = rows.iter().filter(|r| r.status_code != 200).count();
    let demand = args.urls as f64 / args.period.as_secs_f64();
    let assertions = if args.assertions_ratio {
        let plain = rows.len() as f64 / window;
        let (asserted, not_up) =
            window_with(&db, three_assertions(), warmup, args.duration, settle).await?;
        let (plain_again, _) = window_with(&db, None, warmup, args.duration, settle).await?;
        let baseline = f64::midpoint(plain, plain_again);
        serde_json::json!({
            "assertions_per_url": ["status 200-299", "latency < 5s (DEGRADED)", "body contains \"ok\""],
            "plain_probes_per_s": [plain, plain_again],
            "with_assertions_probes_per_s": asserted,
            "with_assertions_not_up": not_up,
            "ratio": if baseline > 0.0 { asserted / baseline } else { 0.0 },
        })
    } else {
        serde_json::Value::Null
    };

    let report = serde_json::json!({
        "backend": backend,
        "buffer": buffer,
        "urls": args.urls,
        "period_s": args.period.as_secs_f64(),
        "window_s": window,
        "demand_probes_per_s": demand,
        "stored_probes_per_s": rows.len() as f64 / window,
        "target": if args.target.is_some() { "external" } else { "in-process" },
        "concurrency": args.concurrency,
        "target_hits_per_s": (hits_to - hits_from) as f64 / window,
        "failed": failed,
        // The service's own counters over the window (/metrics): probes
        // made (any outcome) and due times skipped as missed, per second.
        "probes_made_per_s": (counted_to.0 - counted_from.0) / window,
        "skipped_late_per_s": (counted_to.1 - counted_from.1) / window,
        "lateness_ms": {
            "p50": percentile(&lateness, 0.50) as f64 / 1000.0,
            "p99": percentile(&lateness, 0.99) as f64 / 1000.0,
            "max": lateness.last().copied().unwrap_or(0) as f64 / 1000.0,
        },
        "busiest_second_over_mean": if mean > 0.0 { busiest / mean } else { 0.0 },
        // The whole process: the service (and the built-in target when no
        // --target is given; bench/run passes nginx).
        "cpu_percent_of_one_core": 100.0 * (cpu_to - cpu_from)
            / (to - from).num_milliseconds().max(1) as f64 * 1000.0,
        "rss_bytes_per_url": (rss_end.saturating_sub(rss_base)) as f64 / args.urls as f64,
        "rss_start_mib": rss_start as f64 / 1_048_576.0,
        "rss_end_mib": rss_end as f64 / 1_048_576.0,
        "samples": samples,
        "assertions": assertions,
        "started": DateTime::<Utc>::from(std::time::SystemTime::now()).to_rfc3339(),
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(15), server).await;
    Ok(())
}
