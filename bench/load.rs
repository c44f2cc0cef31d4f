//! A gRPC load generator on the crate's generated client, taking ghz's main
//! options and writing ghz's JSON summary, for machines without ghz.
//!
//! ```sh
//! cargo bench --bench load -- --config bench/ghz/register.json 127.0.0.1:50051
//! cargo bench --bench load -- --call monitor.v1.MonitorService/ListUrls \
//!     -m '{"authorization":"Bearer <token>"}' -c 50 --connections 4 -z 10s --rps 2000 127.0.0.1:50051
//! ```
//!
//! Options as in ghz: `-c` concurrency (workers), `--connections`, `--rps`
//! (0: as fast as possible), `-z` duration or `-n` total, `--call`, `-d`
//! data (JSON; `{{.RequestNumber}}`, `{{.UUID}}`, `{{.WorkerID}}` and
//! `{{.TimestampUnix}}` are filled per request), `-m` metadata, `--config`
//! a ghz JSON config (flags given on the command line win). The summary has
//! ghz's fields: count, total, average, fastest, slowest (ns), rps,
//! latencyDistribution, statusCodeDistribution, errorDistribution.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use clap::Parser;
use monitor::proto::monitor::v1::{self as pb, monitor_service_client::MonitorServiceClient};
use serde_json::{Value, json};
use tonic::{Request, metadata::MetadataMap, transport::Channel};

#[derive(Debug, Parser, Clone)]
struct Args {
    /// host:port of the gRPC server (or set "host" in --config).
    host: Option<String>,
    /// A ghz JSON config file.
    #[arg(long)]
    config: Option<std::path::PathBuf>,
    /// Fully qualified method: monitor.v1.MonitorService/Register.
    #[arg(long)]
    call: Option<String>,
    /// Request data as JSON (proto3 JSON), with per-request templates.
    #[arg(short = 'd', long)]
    data: Option<String>,
    /// Metadata as a JSON object.
    #[arg(short = 'm', long)]
    metadata: Option<String>,
    /// A JSON file holding an array of metadata objects; worker `w` sends
    /// entry `w % len` (e.g. one token per user, to load many users at once).
    /// Not a ghz option.
    #[arg(long)]
    metadata_list: Option<std::path::PathBuf>,
    /// Workers sending requests.
    #[arg(short = 'c', long)]
    concurrency: Option<usize>,
    /// HTTP/2 connections the workers share.
    #[arg(long)]
    connections: Option<usize>,
    /// Requests per second across all workers (0 = unlimited).
    #[arg(long)]
    rps: Option<u64>,
    /// How long to run (e.g. 10s).
    #[arg(short = 'z', long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// How many requests to send (instead of a duration).
    #[arg(short = 'n', long)]
    total: Option<u64>,
    /// Accepted for `cargo bench`.
    #[arg(long, hide = true)]
    bench: bool,
}

/// The run's settings after merging the config file and the flags.
#[derive(Debug, Clone)]
struct Plan {
    host: String,
    call: String,
    data: String,
    metadata: BTreeMap<String, String>,
    metadata_list: Vec<BTreeMap<String, String>>,
    concurrency: usize,
    connections: usize,
    rps: u64,
    duration: Option<Duration>,
    total: Option<u64>,
}

fn plan(args: Args) -> anyhow::Result<Plan> {
    let config: Value = match &args.config {
        Some(path) => serde_json::from_str(&std::fs::read_to_string(path)?)?,
        None => json!({}),
    };
    let text = |key: &str| config.get(key).and_then(Value::as_str).map(str::to_owned);
    let number = |key: &str| config.get(key).and_then(Value::as_u64);
    let metadata: BTreeMap<String, String> = match &args.metadata {
        Some(m) => serde_json::from_str(m)?,
        None => config
            .get("metadata")
            .map(|m| serde_json::from_value(m.clone()))
            .transpose()?
            .unwrap_or_default(),
    };
    let data = match &args.data {
        Some(d) => d.clone(),
        None => config
            .get("data")
            .map_or_else(|| "{}".to_owned(), Value::to_string),
    };
    let duration = match args.duration {
        Some(d) => Some(d),
        None => text("duration")
            .map(|d| humantime::parse_duration(&d))
            .transpose()?,
    };
    let total = args.total.or_else(|| number("total"));
    Ok(Plan {
        host: args
            .host
            .or_else(|| text("host"))
            .ok_or_else(|| anyhow::anyhow!("give host:port"))?,
        call: args
            .call
            .or_else(|| text("call"))
            .ok_or_else(|| anyhow::anyhow!("give --call"))?,
        data,
        metadata,
        metadata_list: match &args.metadata_list {
            Some(path) => serde_json::from_str(&std::fs::read_to_string(path)?)?,
            None => Vec::new(),
        },
        concurrency: args
            .concurrency
            .or_else(|| number("concurrency").and_then(|n| usize::try_from(n).ok()))
            .unwrap_or(50),
        connections: args
            .connections
            .or_else(|| number("connections").and_then(|n| usize::try_from(n).ok()))
            .unwrap_or(1),
        rps: args.rps.or_else(|| number("rps")).unwrap_or(0),
        duration: if duration.is_none() && total.is_none() {
            Some(Duration::from_secs(10))
        } else {
            duration
        },
        total,
    })
}

/// Fills ghz's per-request template variables.
fn render(template: &str, n: u64, worker: usize) -> String {
    template
        .replace("{{.RequestNumber}}", &n.to_string())
        .replace("{{.WorkerID}}", &worker.to_string())
        .replace("{{.UUID}}", &uuid::Uuid::new_v4().to_string())
        .replace(
            "{{.TimestampUnix}}",
            &std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs()
                .to_string(),
        )
}

fn request<T>(msg: T, metadata: &BTreeMap<String, String>) -> anyhow::Result<Request<T>> {
    let mut req = Request::new(msg);
    let map: &mut MetadataMap = req.metadata_mut();
    for (k, v) in metadata {
        map.insert(
            tonic::metadata::MetadataKey::from_bytes(k.as_bytes())?,
            v.parse()?,
        );
    }
    Ok(req)
}

/// Sends one call; the gRPC code name on failure.
async fn send(
    client: &mut MonitorServiceClient<Channel>,
    call: &str,
    data: &str,
    metadata: &BTreeMap<String, String>,
) -> anyhow::Result<Result<(), tonic::Status>> {
    let method = call.rsplit('/').next().unwrap_or(call);
    macro_rules! unary {
        ($ty:ty, $rpc:ident) => {{
            let msg: $ty = serde_json::from_str(data)?;
            client.$rpc(request(msg, metadata)?).await.map(|_| ())
        }};
    }
    Ok(match method {
        "Register" => unary!(pb::RegisterRequest, register),
        "Login" => unary!(pb::LoginRequest, login),
        "AddUrl" => unary!(pb::AddUrlRequest, add_url),
        "ListUrls" => unary!(pb::ListUrlsRequest, list_urls),
        "DeleteUrl" => unary!(pb::DeleteUrlRequest, delete_url),
        "ListStatuses" => unary!(pb::ListStatusesRequest, list_statuses),
        "GetUrlStats" => unary!(pb::GetUrlStatsRequest, get_url_stats),
        other => anyhow::bail!("unknown method {other}"),
    })
}

fn code_name(code: tonic::Code) -> String {
    // ghz spells codes as Go's grpc does: "OK", "Unavailable", ...
    match code {
        tonic::Code::Ok => "OK".to_owned(),
        other => format!("{other:?}"),
    }
}

#[tokio::main]
#[allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::too_many_lines
)]
async fn main() -> anyhow::Result<()> {
    let plan = Arc::new(plan(Args::parse())?);
    let mut channels = Vec::new();
    for _ in 0..plan.connections.max(1) {
        channels.push(
            Channel::from_shared(format!("http://{}", plan.host))?
                .connect()
                .await?,
        );
    }
    // Rate: one token per 1/rps, shared by the workers.
    let (tokens_tx, tokens_rx) = async_channel::bounded::<()>(plan.concurrency.max(1));
    if plan.rps > 0 {
        let period = Duration::from_secs_f64(1.0 / plan.rps as f64);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            loop {
                tick.tick().await;
                if tokens_tx.send(()).await.is_err() {
                    return;
                }
            }
        });
    }
    let issued = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = plan.duration.map(|d| started + d);
    let mut workers = Vec::new();
    for w in 0..plan.concurrency.max(1) {
        let plan = plan.clone();
        let issued = issued.clone();
        let tokens = tokens_rx.clone();
        let mut client = MonitorServiceClient::new(channels[w % channels.len()].clone());
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut codes: BTreeMap<String, u64> = BTreeMap::new();
            let mut errors: BTreeMap<String, u64> = BTreeMap::new();
            loop {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                if plan.rps > 0 {
                    let wait = deadline.map_or(Duration::from_secs(3600), |d| {
                        d.saturating_duration_since(Instant::now())
                    });
                    match tokio::time::timeout(wait, tokens.recv()).await {
                        Ok(Ok(())) => {}
                        _ => break,
                    }
                }
                let n = issued.fetch_add(1, Ordering::Relaxed);
                if plan.total.is_some_and(|t| n >= t) {
                    break;
                }
                let data = render(&plan.data, n, w);
                let t = Instant::now();
                let metadata = if plan.metadata_list.is_empty() {
                    &plan.metadata
                } else {
                    &plan.metadata_list[w % plan.metadata_list.len()]
                };
                let result = send(&mut client, &plan.call, &data, metadata).await;
                let took = t.elapsed().as_nanos() as u64;
                latencies.push(took);
                match result {
                    Ok(Ok(())) => *codes.entry("OK".into()).or_default() += 1,
                    Ok(Err(status)) => {
                        *codes.entry(code_name(status.code())).or_default() += 1;
                        *errors
                            .entry(format!(
                                "rpc error: code = {} desc = {}",
                                code_name(status.code()),
                                status.message()
                            ))
                            .or_default() += 1;
                    }
                    Err(e) => *errors.entry(format!("{e:#}")).or_default() += 1,
                }
            }
            (latencies, codes, errors)
        }));
    }
    let mut latencies = Vec::new();
    let mut codes: BTreeMap<String, u64> = BTreeMap::new();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    for w in workers {
        let (l, c, e) = w.await?;
        latencies.extend(l);
        for (k, v) in c {
            *codes.entry(k).or_default() += v;
        }
        for (k, v) in e {
            *errors.entry(k).or_default() += v;
        }
    }
    let total_ns = started.elapsed().as_nanos() as u64;
    latencies.sort_unstable();
    let count = latencies.len() as u64;
    let pct = |p: f64| -> u64 {
        if latencies.is_empty() {
            0
        } else {
            latencies[((latencies.len() as f64 - 1.0) * p / 100.0).round() as usize]
        }
    };
    let distribution: Vec<Value> = [10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0]
        .into_iter()
        .map(|p| json!({"percentage": p as u64, "latency": pct(p)}))
        .collect();
    let summary = json!({
        "date": chrono::Utc::now().to_rfc3339(),
        "options": {
            "call": plan.call, "host": plan.host, "concurrency": plan.concurrency,
            "connections": plan.connections, "rps": plan.rps,
            "duration": plan.duration.map(|d| d.as_nanos() as u64),
            "total": plan.total,
        },
        "count": count,
        "total": total_ns,
        "average": latencies.iter().sum::<u64>().checked_div(count).unwrap_or(0),
        "fastest": latencies.first().copied().unwrap_or(0),
        "slowest": latencies.last().copied().unwrap_or(0),
        "rps": count as f64 / (total_ns as f64 / 1e9),
        "latencyDistribution": distribution,
        "statusCodeDistribution": codes,
        "errorDistribution": errors,
    });
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(())
}
