//! The prober doubts itself (`prober::doubt`): real local targets that the
//! test stops (their ports then refuse connections) and starts again on the
//! same address, a real webhook receiver, the Prometheus text of
//! `/metrics`.
//!
//! - With a canary configured: every target down while the canary answers
//!   is a real outage (incidents, notifications); the canary down as well
//!   (the prober's "network" gone) records the failures `UNKNOWN`, opens
//!   nothing, notifies nobody, and says so in `/metrics` and `/readyz`.
//! - Without canaries, the mass-failure rule: 200 URLs on 20 targets (20
//!   distinct loopback addresses, 127.0.0.2 to 127.0.0.21) all refusing at
//!   once open nothing; one target of the 20 down opens its URLs' incidents.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use axum::{Router, routing::get};
use monitor::proto::monitor::v1::{self as pb, UrlState};
use sea_orm::{ConnectionTrait, Statement};
use tokio::{net::TcpListener, task::JoinHandle};
use tonic_health::pb::health_check_response::ServingStatus;

use crate::{
    channels::{create_channel, webhook},
    helpers::{Backend, TestApp, authed, spawn_app_with},
    notifications::{Receiver, notifying},
    observability::grpc_health,
};

/// A target answering 200 on every path that can be stopped (its port then
/// refuses) and started again on the same address.
struct Stoppable {
    addr: SocketAddr,
    server: Option<JoinHandle<()>>,
}

impl Stoppable {
    async fn start(ip: &str) -> Self {
        let listener = TcpListener::bind(format!("{ip}:0")).await.unwrap();
        let addr = listener.local_addr().unwrap();
        Self {
            addr,
            server: Some(serve(listener)),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
            let _ = server.await;
        }
    }

    async fn restart(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) => {
                    assert!(Instant::now() < deadline, "rebinding {}: {e}", self.addr);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        self.server = Some(serve(listener));
    }
}

fn serve(listener: TcpListener) -> JoinHandle<()> {
    let app = Router::new().fallback(get(|| async { "ok" }));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    })
}

/// Waits until `cond` holds (60 s at most), saying `what` otherwise.
async fn until<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond().await {
        assert!(Instant::now() < deadline, "not within 60 s: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    let backend = app.db.get_database_backend();
    app.db
        .query_one_raw(Statement::from_string(backend, sql.to_owned()))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index::<i64>(0)
        .unwrap()
}

async fn incidents(app: &TestApp) -> i64 {
    count(app, "SELECT COUNT(*) FROM incidents").await
}

async fn up_urls(app: &TestApp) -> i64 {
    count(app, "SELECT COUNT(*) FROM url_states WHERE state = 2").await
}

/// Statuses recorded UNKNOWN (the prober doubted itself).
async fn unknown_statuses(app: &TestApp) -> i64 {
    count(app, "SELECT COUNT(*) FROM statuses WHERE verdict = 7").await
}

async fn metrics(app: &TestApp) -> String {
    reqwest::get(app.http_url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The value of one sample line (`name{labels}`) of the metrics text.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

async fn degraded(app: &TestApp, reason: &str) -> bool {
    let text = metrics(app).await;
    sample(
        &text,
        &format!("monitor_prober_degraded{{reason=\"{reason}\"}}"),
    ) == Some(1.0)
}

/// A URL's stats over the ten minutes before `end` (seconds), in minutes.
async fn stats_until(app: &TestApp, token: &str, url_id: i64, end: i64) -> pb::StatsBucket {
    let at = |seconds| Some(monitor::proto::Timestamp { seconds, nanos: 0 });
    app.client
        .clone()
        .get_url_stats(authed(
            pb::GetUrlStatsRequest {
                url_id,
                start_time: at(end - 600),
                end_time: at(end),
                granularity: pb::Granularity::Minute as i32,
            },
            token,
        ))
        .await
        .unwrap()
        .into_inner()
        .total
        .unwrap()
}

/// A user with a webhook channel for all their URLs to `receiver`.
async fn user_with_channel(app: &TestApp, receiver: &Receiver) -> String {
    let (_, token) = app.user().await;
    create_channel(app, &token, webhook("hooks", &receiver.url()))
        .await
        .expect("create channel");
    token
}

#[allow(clippy::too_many_lines)] // one scenario: up, network gone, back, real outage
async fn a_canary_down_with_every_target_means_the_prober_doubts_itself(backend: Backend) {
    let mut canary = Stoppable::start("127.0.0.1").await;
    let mut targets = Vec::new();
    for _ in 0..3 {
        targets.push(Stoppable::start("127.0.0.1").await);
    }
    let receiver = Receiver::start(200, None).await;
    let canary_url = canary.url("/canary");
    let app = spawn_app_with(backend, |s| {
        notifying(s);
        s.prober.doubt.canary_urls = vec![canary_url];
        s.prober.doubt.canary_interval = Duration::from_millis(200);
        s.prober.doubt.mass_failure_window = Duration::from_secs(1);
        s.health_interval = Duration::from_millis(200);
    })
    .await;
    let token = user_with_channel(&app, &receiver).await;
    let mut ids = Vec::new();
    for t in &targets {
        ids.push(app.add_url_every(&token, &t.url("/"), 1).await.id);
    }
    until("every URL UP", || async { up_urls(&app).await == 3 }).await;

    // The prober's "network" goes: the canary first, then every target.
    canary.stop().await;
    for t in &mut targets {
        t.stop().await;
    }
    until("the prober degraded by its canary", || async {
        degraded(&app, "canary").await
    })
    .await;
    until("five UNKNOWN results per URL", || async {
        unknown_statuses(&app).await >= 15
    })
    .await;
    let (code, body) = app.get_json("/readyz", None).await;
    assert_eq!(code, 200, "a doubting prober keeps the API ready: {body}");
    assert_eq!(body["prober"]["degraded"][0], "canary", "{body}");
    until("grpc.health says the prober is degraded", || async {
        grpc_health(&app, monitor::health::PROBER_HEALTH_SERVICE).await == ServingStatus::NotServing
    })
    .await;
    assert_eq!(
        grpc_health(&app, "monitor.v1.MonitorService").await,
        ServingStatus::Serving,
        "Envoy's check: the API is served all the same"
    );
    let text = metrics(&app).await;
    assert!(
        sample(&text, "monitor_probes_unknown_total").unwrap_or(0.0) >= 15.0,
        "{text}"
    );
    let status = app
        .statuses(&token, ids[0])
        .await
        .into_iter()
        .find(|s| s.verdict() == UrlState::Unknown)
        .expect("an UNKNOWN status");
    assert_eq!(status.error_kind(), pb::ErrorKind::ProberDegraded);
    assert!(
        status.error_message.contains("connect"),
        "{}",
        status.error_message
    );
    assert_eq!(incidents(&app).await, 0);
    assert_eq!(up_urls(&app).await, 3, "no URL moved");

    // The network is back: the targets, then the canary.
    for t in &mut targets {
        t.restart().await;
    }
    canary.restart().await;
    until("the prober trusts itself again", || async {
        !degraded(&app, "canary").await
    })
    .await;
    let recovered = chrono::Utc::now().timestamp();
    let ups = count(&app, "SELECT COUNT(*) FROM statuses WHERE verdict = 2").await;
    until("every URL probed UP again", || async {
        count(&app, "SELECT COUNT(*) FROM statuses WHERE verdict = 2").await >= ups + 6
    })
    .await;
    assert_eq!(incidents(&app).await, 0);
    assert!(receiver.got().is_empty(), "{:?}", receiver.got());
    let (_, body) = app.get_json("/readyz", None).await;
    assert_eq!(body["prober"], "ok", "{body}");
    until("grpc.health says the prober is fine", || async {
        grpc_health(&app, monitor::health::PROBER_HEALTH_SERVICE).await == ServingStatus::Serving
    })
    .await;
    // In stats the UNKNOWN slots are missed, never down (up to the
    // recovery, once the results of then are surely stored).
    until("the doubted slots missed in stats", || async {
        let total = stats_until(&app, &token, ids[0], recovered).await;
        assert_eq!(total.down, 0, "{total:?}");
        total.missed >= 5
    })
    .await;

    // Every target down while the canary answers: a real outage.
    let stopped = chrono::Utc::now().timestamp();
    for t in &mut targets {
        t.stop().await;
    }
    until("an incident per URL", || async {
        incidents(&app).await == 3
    })
    .await;
    until("three incident.opened webhooks", || async {
        receiver
            .got()
            .iter()
            .filter(|r| r.body.contains("incident.opened"))
            .count()
            >= 3
    })
    .await;
    assert!(!degraded(&app, "canary").await);
    for id in ids {
        assert_eq!(app.get_url(&token, id).await.state(), UrlState::Down);
        let since_stop: Vec<_> = app
            .statuses(&token, id)
            .await
            .into_iter()
            .filter(|s| s.due_at.unwrap().seconds > stopped)
            .collect();
        assert!(
            since_stop.iter().all(|s| s.verdict() == UrlState::Down),
            "{since_stop:?}"
        );
    }
}

async fn mass_failure_across_many_hosts_opens_nothing_one_host_down_does(backend: Backend) {
    // 20 targets on distinct loopback addresses (all of 127/8 reaches lo).
    let mut targets = Vec::new();
    for n in 2..22 {
        targets.push(Stoppable::start(&format!("127.0.0.{n}")).await);
    }
    let receiver = Receiver::start(200, None).await;
    let app = spawn_app_with(backend, |s| {
        notifying(s);
        s.urls.max_urls_per_user = 1_000;
        s.prober.doubt.mass_failure_window = Duration::from_secs(1);
    })
    .await;
    let token = user_with_channel(&app, &receiver).await;
    let mut by_target = Vec::new();
    for t in &targets {
        let mut ids = Vec::new();
        for i in 0..10 {
            ids.push(
                app.add_url_every(&token, &t.url(&format!("/{i}")), 1)
                    .await
                    .id,
            );
        }
        by_target.push(ids);
    }
    until("200 URLs UP", || async { up_urls(&app).await == 200 }).await;

    for t in &mut targets {
        t.stop().await;
    }
    until("the prober degraded by a mass failure", || async {
        degraded(&app, "mass_failure").await
    })
    .await;
    until("three UNKNOWN results per URL", || async {
        unknown_statuses(&app).await >= 600
    })
    .await;
    assert_eq!(incidents(&app).await, 0);
    assert_eq!(up_urls(&app).await, 200, "no URL moved");

    for t in &mut targets {
        t.restart().await;
    }
    until("the mass failure over", || async {
        !degraded(&app, "mass_failure").await
    })
    .await;

    // One target of the 20 down: its URLs' own outage.
    targets[7].stop().await;
    until("an incident per URL of the stopped target", || async {
        incidents(&app).await >= 10
    })
    .await;
    for id in &by_target[7] {
        assert_eq!(app.get_url(&token, *id).await.state(), UrlState::Down);
    }
    assert_eq!(incidents(&app).await, 10, "only the stopped target's URLs");
    assert!(!degraded(&app, "mass_failure").await);
    until("ten incident.opened webhooks", || async {
        receiver
            .got()
            .iter()
            .filter(|r| r.body.contains("incident.opened"))
            .count()
            >= 10
    })
    .await;
}

#[test]
fn settings_that_cannot_work_are_refused() {
    type Set = fn(&mut monitor::config::Settings);
    let dir = tempfile::tempdir().unwrap();
    let bad: [(&str, Set); 5] = [
        ("MONITOR_MASS_FAILURE_PERCENT", |s| {
            s.prober.doubt.mass_failure_percent = 101;
        }),
        ("MONITOR_MASS_FAILURE_MIN_HOSTS", |s| {
            s.prober.doubt.mass_failure_min_hosts = 1;
        }),
        ("MONITOR_MASS_FAILURE_WINDOW", |s| {
            s.prober.doubt.mass_failure_window = Duration::from_millis(10);
        }),
        ("MONITOR_CANARY_INTERVAL", |s| {
            s.prober.doubt.canary_interval = Duration::ZERO;
        }),
        ("MONITOR_CANARY_URLS", |s| {
            s.prober.doubt.canary_urls = vec!["ftp://127.0.0.1/".into()];
        }),
    ];
    for (name, set) in bad {
        let mut s = monitor::config::Settings::for_tests(dir.path());
        set(&mut s);
        let err = s.prober.validate().expect_err(name);
        assert!(err.to_string().contains(name), "{err}");
    }
    // A loopback canary passes only where private targets are allowed.
    let mut s = monitor::config::Settings::for_tests(dir.path());
    s.prober.doubt.canary_urls = vec!["http://127.0.0.1:9/".into()];
    assert!(s.prober.validate().is_err());
    s.prober.probe.allow_private_targets = true;
    s.prober.validate().unwrap();
}

crate::on_both_backends!(
    a_canary_down_with_every_target_means_the_prober_doubts_itself,
    mass_failure_across_many_hosts_opens_nothing_one_host_down_does,
);
