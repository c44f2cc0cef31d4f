//! Notification delivery on Postgres: latency from the flush's commit to
//! the receiver's 2xx, and webhook sends/s through the outbox beside plain
//! reqwest POSTs of the same signed body, in one run.
//!
//!     BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/monitor_bench_delivery \
//!     cargo bench --bench delivery -- --rate 100 --seconds 25 --sends 20000
//!
//! The database must be empty (a fresh one): the bench creates the schema,
//! one user, `rate × seconds` URLs (failure threshold 1) and one webhook
//! channel for all of them to a local receiver (axum, its own runtime and
//! thread).
//!
//! Latency: every `--flush-ms` (default 1000, the flush's default
//! interval) one failing result per URL for `rate × flush-ms` URLs is
//! written with `store::outcomes::write_batch`, the flush's own write: each
//! opens an incident and its outbox row in that transaction. A `Deliverer`
//! runs its loop (`run`) with the default settings (a pass every 1 s, 50
//! at once). Each incident's latency is its URL's first arrival at the
//! receiver minus the moment its write committed; p50/p95/p99 over all of
//! them. With the default `MONITOR_DELIVERY_INTERVAL` of 1 s most of it is
//! the wait for the next pass.
//!
//! Throughput: `--sends` pending rows (the body of a real opened event)
//! drained by `Deliverer::run_once` passes back to back (what the loop does
//! while a pass claims a full batch), beside the baseline: the same number
//! of POSTs of the same body, signed the same way, from as many concurrent
//! tasks as a pass sends at once (the batch, 50), with one reqwest client,
//! no outbox. Alternating, two rounds each. Per core: the client side runs
//! on its own runtime (2 worker threads, named `bench-sender`); its CPU
//! time is read from `/proc/self/task/*/stat` (utime + stime, USER_HZ 100)
//! before and after, so sends per CPU-second leave out the receiver's
//! thread. Postgres' CPU (every `postgres` process, also from /proc) is
//! reported beside it.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{Router, body::Bytes, extract::State, http::StatusCode, routing::post};
use chrono::Utc;
use monitor::{
    config::Settings,
    deliver::{Deliverer, DeliverySettings, sign, webhook_id},
    domain::{ChannelTarget, NewChannel, TargetUrl, UserId, WebhookSecret},
    prober::ProbeResult,
    store,
};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use tokio_util::sync::CancellationToken;

/// The sender runtime's thread name, to find its threads in /proc.
const SENDER: &str = "bench-sender";

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What the receiver got: each URL's first arrival, and every request.
#[derive(Debug, Default)]
struct Arrivals {
    first: Mutex<HashMap<i64, Instant>>,
    requests: AtomicU64,
}

async fn receive(State(arrivals): State<Arc<Arrivals>>, body: Bytes) -> StatusCode {
    let at = Instant::now();
    arrivals.requests.fetch_add(1, Ordering::Relaxed);
    if let Some(url_id) = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["data"]["url"]["id"].as_i64())
    {
        arrivals.first.lock().unwrap().entry(url_id).or_insert(at);
    }
    StatusCode::OK
}

/// CPU seconds used so far by this process's threads named `name`.
#[allow(clippy::cast_precision_loss)]
fn thread_cpu_s(name: &str) -> f64 {
    let mut ticks = 0u64;
    for task in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        if let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) {
            ticks += stat_ticks(&stat, |comm| comm == name);
        }
    }
    ticks as f64 / 100.0
}

/// CPU seconds used so far by every `postgres` process.
#[allow(clippy::cast_precision_loss)]
fn postgres_cpu_s() -> f64 {
    let mut ticks = 0u64;
    for proc in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if let Ok(stat) = std::fs::read_to_string(proc.path().join("stat")) {
            ticks += stat_ticks(&stat, |comm| comm == "postgres");
        }
    }
    ticks as f64 / 100.0
}

/// utime + stime of a `stat` line whose comm passes `wanted`, else 0.
fn stat_ticks(stat: &str, wanted: impl Fn(&str) -> bool) -> u64 {
    let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
        return 0;
    };
    if !wanted(&stat[open + 1..close]) {
        return 0;
    }
    // After the comm: state is field 3; utime and stime are fields 14, 15.
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    field(14).unwrap_or(0) + field(15).unwrap_or(0)
}

/// Sends, wall and CPU seconds of one timed run.
#[derive(Debug, Clone, Copy)]
struct Timed {
    sends: u64,
    wall_s: f64,
    cpu_s: f64,
    postgres_cpu_s: f64,
}

#[allow(clippy::cast_precision_loss)]
impl Timed {
    fn json(self) -> serde_json::Value {
        serde_json::json!({
            "sends": self.sends,
            "wall_s": self.wall_s,
            "cpu_s": self.cpu_s,
            "postgres_cpu_s": self.postgres_cpu_s,
            "sends_per_s": self.sends as f64 / self.wall_s,
            "cores_used": self.cpu_s / self.wall_s,
            "sends_per_cpu_s": self.sends as f64 / self.cpu_s.max(0.01),
        })
    }
}

async fn timed<F: Future<Output = anyhow::Result<()>>>(
    arrivals: &Arrivals,
    run: F,
) -> anyhow::Result<Timed> {
    let (requests, cpu, pg) = (
        arrivals.requests.load(Ordering::SeqCst),
        thread_cpu_s(SENDER),
        postgres_cpu_s(),
    );
    let started = Instant::now();
    run.await?;
    Ok(Timed {
        sends: arrivals.requests.load(Ordering::SeqCst) - requests,
        wall_s: started.elapsed().as_secs_f64(),
        cpu_s: thread_cpu_s(SENDER) - cpu,
        postgres_cpu_s: postgres_cpu_s() - pg,
    })
}

#[allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn scalar(db: &DatabaseConnection, sql: &str) -> anyhow::Result<i64> {
    Ok(db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await?
        .ok_or_else(|| anyhow::anyhow!("no row: {sql}"))?
        .try_get_by_index(0)?)
}

fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let receiver_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("bench-receiver")
        .enable_all()
        .build()?;
    let arrivals = Arc::new(Arrivals::default());
    let addr = receiver_rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state(arrivals.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        anyhow::Ok(addr)
    })?;
    let sender_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(SENDER)
        .enable_all()
        .build()?;
    // The whole run on the sender's workers, none of it on this thread.
    let out = sender_rt.block_on(async move {
        tokio::spawn(run(format!("http://{addr}/hook"), arrivals)).await?
    })?;
    println!("{out}");
    Ok(())
}

#[allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_wrap,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::too_many_lines
)]
async fn run(hook: String, arrivals: Arc<Arrivals>) -> anyhow::Result<serde_json::Value> {
    let rate = arg("--rate", 100);
    let seconds = arg("--seconds", 25);
    let flush_ms = arg("--flush-ms", 1000);
    let sends = arg("--sends", 20_000);
    let rounds = arg("--rounds", 2);
    let db_url = std::env::var("BENCH_DATABASE_URL")?;
    let tmp = tempfile::tempdir()?;
    let mut settings = Settings::for_tests(tmp.path());
    settings.database_url = Some(db_url);
    let db = monitor::app::open_database(&settings).await?;
    let delivery: DeliverySettings = settings.delivery.clone();

    // One user, its URLs (an incident at the first failure), one channel.
    let urls = rate * seconds;
    db.execute_unprepared(
        "INSERT INTO users (email, password_hash, created_at) VALUES ('deliver@example.com', 'x', now())",
    )
    .await?;
    db.execute_unprepared(&format!(
        "INSERT INTO urls (user_id, url, period_seconds, created_at, phase_ms, failure_threshold)
         SELECT (SELECT id FROM users LIMIT 1), 'http://127.0.0.1/' || g, 60, now(), 0, 1
         FROM generate_series(1, {urls}) g"
    ))
    .await?;
    db.execute_unprepared("INSERT INTO url_states (url_id, state) SELECT id, 1 FROM urls")
        .await?;
    let user = scalar(&db, "SELECT min(id) FROM users").await?;
    let first_url = scalar(&db, "SELECT min(id) FROM urls").await?;
    let secret = WebhookSecret::generate();
    let channel = store::channels::insert_within_limit(
        &db,
        UserId(user),
        &NewChannel {
            name: "bench".into(),
            target: ChannelTarget::Webhook {
                url: TargetUrl::parse("url", &hook)?,
                secret: secret.clone(),
            },
            url_ids: Vec::new(),
            notify_degraded: false,
            remind_every: None,
        },
        Utc::now(),
        10,
    )
    .await?
    .map_err(|refused| anyhow::anyhow!("channel refused: {refused:?}"))?;

    // Latency: the flush's write at `rate` incidents/s, the worker's loop
    // with the default settings.
    let deliverer = Deliverer::new(db.clone(), delivery.clone(), true)?;
    let shutdown = CancellationToken::new();
    let worker = tokio::spawn(deliverer.clone().run(shutdown.clone()));
    let per_flush = (rate * flush_ms / 1000).max(1);
    let mut committed: HashMap<i64, Instant> = HashMap::with_capacity(urls);
    let mut ticker = tokio::time::interval(Duration::from_millis(flush_ms as u64));
    let (mut next, mut opened, mut write_s) = (0usize, 0u64, 0.0f64);
    let started = Instant::now();
    while next < urls {
        ticker.tick().await;
        let now = Utc::now();
        let batch: Vec<ProbeResult> = (next..(next + per_flush).min(urls))
            .map(|i| ProbeResult {
                url_id: first_url + i as i64,
                due_ms: now.timestamp_millis(),
                started_us: now.timestamp_micros(),
                status_code: 500,
                latency_us: 12_000,
                ..ProbeResult::default()
            })
            .collect();
        let rows: Vec<&ProbeResult> = batch.iter().collect();
        let t = Instant::now();
        let written = store::outcomes::write_batch(&db, &rows).await?;
        let at = Instant::now();
        write_s += (at - t).as_secs_f64();
        opened += written.incidents_opened;
        for r in &batch {
            committed.insert(r.url_id, at);
        }
        next += batch.len();
    }
    let offered_s = started.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(60);
    while arrivals.first.lock().unwrap().len() < urls && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shutdown.cancel();
    worker.await?;
    let mut latencies_ms: Vec<f64> = {
        let first = arrivals.first.lock().unwrap();
        committed
            .iter()
            .filter_map(|(url, at)| Some((*first.get(url)? - *at).as_secs_f64() * 1000.0))
            .collect()
    };
    latencies_ms.sort_by(f64::total_cmp);
    let arrived = latencies_ms.len();
    let p99 = percentile(&latencies_ms, 99.0);

    // Throughput: the body of a real opened event, `sends` times.
    let payload: String = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT payload FROM deliveries WHERE event = 'incident.opened' LIMIT 1",
        ))
        .await?
        .ok_or_else(|| anyhow::anyhow!("no opened event"))?
        .try_get("", "payload")?;
    let concurrency = delivery.batch as usize;
    let client = reqwest::Client::builder()
        .timeout(delivery.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()?;
    let baseline = |round: usize| {
        let (client, hook, body, secret) = (
            client.clone(),
            hook.clone(),
            payload.clone(),
            secret.clone(),
        );
        async move {
            let next = Arc::new(AtomicUsize::new(0));
            let mut tasks = tokio::task::JoinSet::new();
            for _ in 0..concurrency {
                let (client, hook, body, secret, next) = (
                    client.clone(),
                    hook.clone(),
                    body.clone(),
                    secret.clone(),
                    next.clone(),
                );
                tasks.spawn(async move {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= sends {
                            return anyhow::Ok(());
                        }
                        let id = webhook_id((round * sends + i) as i64);
                        let timestamp = Utc::now().timestamp();
                        let response = client
                            .post(&hook)
                            .header(http::header::CONTENT_TYPE, "application/json")
                            .header("webhook-id", &id)
                            .header("webhook-timestamp", timestamp.to_string())
                            .header("webhook-signature", sign(&secret, &id, timestamp, &body))
                            .body(body.clone())
                            .send()
                            .await?;
                        anyhow::ensure!(response.status().is_success(), "{}", response.status());
                    }
                });
            }
            while let Some(joined) = tasks.join_next().await {
                joined??;
            }
            anyhow::Ok(())
        }
    };
    // A backlog made over time, as events are: one due time each (rows due
    // at one same instant would make each claim sort them all).
    let fill = |db: DatabaseConnection, body: String| async move {
        db.execute_raw(Statement::from_sql_and_values(
            db.get_database_backend(),
            format!(
                "INSERT INTO deliveries (channel_id, event, payload, state, attempts, next_attempt_at, created_at)
                 SELECT $1, 'test', $2, 1, 0, t, t FROM generate_series(1, {sends}) g,
                     LATERAL (SELECT now() - ({sends} - g) * interval '1 millisecond' AS t) ts"
            ),
            [channel.id.into(), body.into()],
        ))
        .await?;
        db.execute_unprepared("VACUUM ANALYZE deliveries").await?;
        anyhow::Ok(())
    };
    let (mut plain, mut outbox) = (Vec::new(), Vec::new());
    let mut passes = 0u64;
    for round in 0..rounds {
        plain.push(timed(&arrivals, baseline(round)).await?);
        fill(db.clone(), payload.clone()).await?;
        let drained = timed(&arrivals, async {
            loop {
                passes += 1;
                let report = deliverer.run_once().await?;
                anyhow::ensure!(
                    report.delivered == report.claimed,
                    "not all delivered: {report:?}"
                );
                if report.claimed == 0 {
                    return Ok(());
                }
            }
        })
        .await?;
        anyhow::ensure!(drained.sends == sends as u64, "drained {}", drained.sends);
        outbox.push(drained);
    }
    let mean =
        |runs: &[Timed], f: fn(&Timed) -> f64| runs.iter().map(f).sum::<f64>() / runs.len() as f64;
    let rate_of = |t: &Timed| t.sends as f64 / t.wall_s;
    let per_cpu = |t: &Timed| t.sends as f64 / t.cpu_s.max(0.01);
    let (plain_rate, outbox_rate) = (mean(&plain, rate_of), mean(&outbox, rate_of));
    let (plain_cpu, outbox_cpu) = (mean(&plain, per_cpu), mean(&outbox, per_cpu));

    Ok(serde_json::json!({
        "settings": {
            "delivery_interval_ms": delivery.interval.as_millis() as u64,
            "delivery_batch": delivery.batch,
            "delivery_timeout_ms": delivery.timeout.as_millis() as u64,
            "flush_ms": flush_ms,
        },
        "latency": {
            "incidents_per_s": rate,
            "seconds": seconds,
            "offered_s": offered_s,
            "incidents": urls,
            "opened": opened,
            "delivered": arrived,
            "write_s": write_s,
            "ms": {
                "p50": percentile(&latencies_ms, 50.0),
                "p95": percentile(&latencies_ms, 95.0),
                "p99": p99,
                "max": latencies_ms.last().copied().unwrap_or(f64::NAN),
            },
            "target_p99_ms": 2000,
            "met": arrived == urls && p99 <= 2000.0,
        },
        "throughput": {
            "sends": sends,
            "concurrency": concurrency,
            "body_bytes": payload.len(),
            "sender_threads": 2,
            "plain": plain.iter().map(|t| t.json()).collect::<Vec<_>>(),
            "outbox": outbox.iter().map(|t| t.json()).collect::<Vec<_>>(),
            "outbox_passes": passes,
            "plain_sends_per_s": plain_rate,
            "outbox_sends_per_s": outbox_rate,
            "ratio": outbox_rate / plain_rate,
            "plain_sends_per_cpu_s": plain_cpu,
            "outbox_sends_per_cpu_s": outbox_cpu,
            "ratio_per_cpu_s": outbox_cpu / plain_cpu,
        },
    }))
}
