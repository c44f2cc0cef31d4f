//! Notifications under faults, on Postgres: the real binary killed (-9)
//! while its sends are in flight and restarted on the same database; two
//! instances' delivery workers draining one outbox; and the worker's loop
//! under paused time. Real incidents (a local target that fails, then
//! recovers), real receivers over real sockets; what they got is checked
//! against the `deliveries` and `incidents` rows.
//!
//! What the design promises, and so what is asserted: every event is sent
//! at least once (a claim whose instance died is due again after its
//! lease), each with one `webhook-id` (`msg_<delivery row id>`) on every
//! attempt; a send is repeated only when a lease expired, so with receivers
//! that answer well inside the lease, two instances send each event once.

use std::{
    collections::{BTreeMap, BTreeSet, HashSet, VecDeque},
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    routing::post,
};
use monitor::{
    deliver::{DeliveryReport, run_passes},
    proto::monitor::v1::{
        self as pb, channel::Target as ChannelTarget, monitor_service_client::MonitorServiceClient,
    },
};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    channels::{create_channel, webhook},
    helpers::{
        Backend, PASSWORD, TestApp, TestDatabase, authed, restartable_port, spawn_app_with,
        test_redis_url,
    },
    notifications::{Received, notifying, verify},
    scaleout::Instance,
    target::Target,
};

/// A webhook receiver that either holds every request (reads it, records
/// it, never answers: the sender's send stays in flight) or answers 200
/// after up to `max_delay`.
#[derive(Debug, Clone)]
struct FaultReceiver {
    addr: SocketAddr,
    got: Arc<Mutex<Vec<Received>>>,
    holding: Arc<AtomicBool>,
}

#[derive(Debug, Clone)]
struct ReceiverState {
    got: Arc<Mutex<Vec<Received>>>,
    holding: Arc<AtomicBool>,
    max_delay: Duration,
}

async fn receive(
    State(state): State<ReceiverState>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let holding = state.holding.load(Ordering::SeqCst);
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    state.got.lock().unwrap().push(Received {
        id: header("webhook-id"),
        timestamp: header("webhook-timestamp"),
        signature: header("webhook-signature"),
        body: String::from_utf8_lossy(&body).into_owned(),
        // 0: held, never answered.
        answered: if holding { 0 } else { 200 },
    });
    if holding {
        std::future::pending::<()>().await;
    }
    let delay = state.max_delay.mul_f64(rand::random::<f64>());
    tokio::time::sleep(delay).await;
    StatusCode::OK
}

impl FaultReceiver {
    async fn start(holding: bool, max_delay: Duration) -> Self {
        let got = Arc::new(Mutex::new(Vec::new()));
        let holding = Arc::new(AtomicBool::new(holding));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state(ReceiverState {
                got: got.clone(),
                holding: holding.clone(),
                max_delay,
            });
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { addr, got, holding }
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn got(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    fn answer(&self) {
        self.holding.store(false, Ordering::SeqCst);
    }
}

/// A stored delivery: (id, channel, incident, event, state, attempts).
type Row = (i64, i64, Option<i64>, String, i16, i32);

async fn delivery_rows(db: &DatabaseConnection) -> Vec<Row> {
    db.query_all_raw(Statement::from_string(
        db.get_database_backend(),
        "SELECT id, channel_id, incident_id, event, state, attempts FROM deliveries ORDER BY id",
    ))
    .await
    .unwrap()
    .iter()
    .map(|r| {
        (
            r.try_get("", "id").unwrap(),
            r.try_get("", "channel_id").unwrap(),
            r.try_get("", "incident_id").unwrap(),
            r.try_get("", "event").unwrap(),
            r.try_get("", "state").unwrap(),
            r.try_get("", "attempts").unwrap(),
        )
    })
    .collect()
}

/// (incidents, of them resolved).
async fn incident_counts(db: &DatabaseConnection) -> (i64, i64) {
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT count(*) AS n, count(resolved_at) AS r FROM incidents",
        ))
        .await
        .unwrap()
        .unwrap();
    (row.try_get("", "n").unwrap(), row.try_get("", "r").unwrap())
}

/// Waits until `urls` incidents are resolved and every delivery of them
/// (and `extra` other rows) is settled; returns the rows.
async fn all_settled(
    db: &DatabaseConnection,
    urls: i64,
    per_event: usize,
    extra: usize,
    within: Duration,
) -> Vec<Row> {
    let deadline = Instant::now() + within;
    loop {
        let rows = delivery_rows(db).await;
        let (incidents, resolved) = incident_counts(db).await;
        let want = usize::try_from(urls).unwrap() * 2 * per_event + extra;
        if incidents == urls
            && resolved == urls
            && rows.len() >= want
            && rows.iter().all(|r| r.4 != 1)
        {
            return rows;
        }
        assert!(
            Instant::now() < deadline,
            "not settled in {within:?}: {incidents} incidents, {resolved} resolved, {} rows \
             (want {want}), {} pending",
            rows.len(),
            rows.iter().filter(|r| r.4 == 1).count()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn body(r: &Received) -> Value {
    serde_json::from_str(&r.body).unwrap()
}

/// Sends of an id already received (the same event sent again).
fn duplicates(got: &[Received]) -> usize {
    got.len() - got.iter().map(|r| &r.id).collect::<HashSet<_>>().len()
}

/// Checks what `got` (one channel's receiver) holds against the rows of
/// `channel_id`: every row received (answered 200) under its own id, with
/// its own event and incident; nothing else received; signatures valid.
fn check_against_rows(got: &[Received], rows: &[Row], channel_id: i64, secret: &str) {
    let rows: BTreeMap<String, &Row> = rows
        .iter()
        .filter(|r| r.1 == channel_id)
        .map(|r| (format!("msg_{}", r.0), r))
        .collect();
    for r in got {
        verify(secret, r);
        let row = rows
            .get(&r.id)
            .unwrap_or_else(|| panic!("{} is no delivery of channel {channel_id}", r.id));
        let sent = body(r);
        assert_eq!(sent["type"], row.3, "{} sent its row's event", r.id);
        if let Some(incident) = row.2 {
            assert_eq!(sent["data"]["incident"]["id"], incident, "{}", r.id);
        }
    }
    for (id, row) in &rows {
        assert_eq!(row.4, 2, "{id} delivered: {row:?}");
        assert!(
            got.iter().any(|r| &r.id == id && r.answered == 200),
            "{id} ({}) never reached the receiver with a 2xx",
            row.3
        );
    }
    // One webhook-id per (incident, event): never two ids for one event.
    let mut ids: BTreeMap<(String, String), BTreeSet<&str>> = BTreeMap::new();
    for r in got {
        let sent = body(r);
        if let Some(incident) = sent["data"]["incident"]["id"].as_i64() {
            ids.entry((
                sent["type"].as_str().unwrap().to_owned(),
                incident.to_string(),
            ))
            .or_default()
            .insert(&r.id);
        }
    }
    for (event, ids) in &ids {
        assert_eq!(ids.len(), 1, "{event:?} sent under ids {ids:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::too_many_lines)] // one scenario, start to end
async fn kill_9_with_sends_in_flight_loses_no_event() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let target = Target::start().await;
    let receiver = FaultReceiver::start(true, Duration::ZERO).await;
    let database = TestDatabase::create(Backend::Postgres).await;
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("monitor-test-{}", uuid::Uuid::new_v4().simple());
    let redis = test_redis_url();
    let key = hex::encode(rand::random::<[u8; 32]>());
    let mut service = Instance {
        name: "deliverer",
        grpc: restartable_port(),
        http: restartable_port(),
        env: [
            ("DATABASE_URL", database.url.as_str()),
            ("REDIS_URL", redis.as_str()),
            ("MONITOR_REDIS_PREFIX", prefix.as_str()),
            ("MONITOR_TOKEN_KEY", key.as_str()),
            ("MONITOR_ALLOW_PRIVATE_TARGETS", "true"),
            ("MONITOR_MIN_PERIOD", "1s"),
            ("MONITOR_MAX_HOST_RATE", "100"),
            ("MONITOR_SCHEDULE_TICK", "50ms"),
            ("MONITOR_FLUSH_INTERVAL", "200ms"),
            ("MONITOR_PROBE_TIMEOUT", "1s"),
            // A pass every 100 ms; a send in flight for up to 5 s, so the
            // kill below lands while every opened event is in flight. The
            // lease is the timeout and 5 s: the restarted instance sends
            // them again 10 s after their claim.
            ("MONITOR_DELIVERY_INTERVAL", "100ms"),
            ("MONITOR_DELIVERY_TIMEOUT", "5s"),
            ("MONITOR_LOG_FORMAT", "json"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect(),
        log: dir.path().join("deliverer.log"),
        child: None,
    };
    service.start();
    service.wait_ready().await;

    let mut client = MonitorServiceClient::connect(format!("http://127.0.0.1:{}", service.grpc))
        .await
        .unwrap();
    let email = "kill9@example.com".to_owned();
    client
        .register(pb::RegisterRequest {
            email: email.clone(),
            password: PASSWORD.into(),
        })
        .await
        .unwrap();
    let token = client
        .login(pb::LoginRequest {
            email,
            password: PASSWORD.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .token;
    let channel = client
        .create_channel(authed(
            pb::CreateChannelRequest {
                channel: Some(webhook("hooks", &receiver.url())),
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    let Some(ChannelTarget::Webhook(pb::WebhookTarget { secret, .. })) = &channel.target else {
        panic!("a webhook");
    };
    // Each URL fails three probes (an incident opens, default threshold
    // 3), then recovers (resolved after 2).
    let urls = 4;
    for i in 0..urls {
        client
            .add_url(authed(
                pb::AddUrlRequest {
                    url: target.url(&format!("/seq/---++?k={i}")),
                    period: Some(pbjson_types::Duration {
                        seconds: 1,
                        nanos: 0,
                    }),
                    ..Default::default()
                },
                &token,
            ))
            .await
            .unwrap();
    }

    // Every opened event claimed and its send in flight: the receiver has
    // read each request and answers none.
    let deadline = Instant::now() + Duration::from_secs(30);
    while receiver
        .got()
        .iter()
        .map(|r| r.id.clone())
        .collect::<HashSet<_>>()
        .len()
        < urls
    {
        assert!(
            Instant::now() < deadline,
            "the opened events never reached the receiver: {:?}",
            receiver.got()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    service.kill9();
    let held: BTreeSet<String> = receiver.got().into_iter().map(|r| r.id).collect();

    let db = Database::connect(&database.url).await.unwrap();
    let before = delivery_rows(&db).await;
    println!("at the kill: {} requests held, rows {before:?}", held.len());
    for id in &held {
        let row = before
            .iter()
            .find(|r| &format!("msg_{}", r.0) == id)
            .unwrap_or_else(|| panic!("{id} is no delivery row"));
        assert_eq!(
            (row.3.as_str(), row.4),
            ("incident.opened", 1),
            "{id}: claimed, in flight, not settled: {row:?}"
        );
        assert!(row.5 >= 1, "{id} claimed: {row:?}");
    }

    receiver.answer();
    service.start();
    service.wait_ready().await;
    let rows = all_settled(
        &db,
        i64::try_from(urls).unwrap(),
        1,
        0,
        Duration::from_secs(60),
    )
    .await;
    service.stop();

    let got = receiver.got();
    check_against_rows(&got, &rows, channel.id, secret);
    assert_eq!(rows.len(), urls * 2, "{rows:?}");
    // Each incident: its opened and its resolved event, both delivered.
    let per_incident: BTreeMap<i64, Vec<&str>> = rows.iter().fold(BTreeMap::new(), |mut m, r| {
        m.entry(r.2.unwrap()).or_default().push(r.3.as_str());
        m
    });
    assert_eq!(per_incident.len(), urls);
    for events in per_incident.values() {
        assert_eq!(events, &["incident.opened", "incident.resolved"]);
    }
    // The held sends were made again after the restart, under the same id
    // and with the same event.
    for id in &held {
        let sends: Vec<&Received> = got.iter().filter(|r| &r.id == id).collect();
        assert!(
            sends.len() >= 2 && sends.last().unwrap().answered == 200,
            "{id}: {sends:?}"
        );
        assert!(
            sends.windows(2).all(|w| w[0].body == w[1].body),
            "{id} sent the same event each time"
        );
    }
    println!(
        "kill -9: {} events, {} sends, duplicate sends (same webhook-id): {} \
         ({} held at the kill and sent again)",
        rows.len(),
        got.len(),
        duplicates(&got),
        held.len()
    );
    db.close().await.ok();
}

async fn test_event(app: &TestApp, token: &str, channel_id: i64) {
    app.client
        .clone()
        .test_channel(authed(pb::TestChannelRequest { id: channel_id }, token))
        .await
        .expect("test channel");
}

/// `monitor_deliveries_total{kind="webhook",outcome="delivered"}` of an app.
async fn delivered_by(app: &TestApp) -> u64 {
    let text = reqwest::get(app.http_url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| {
            l.strip_prefix("monitor_deliveries_total{kind=\"webhook\",outcome=\"delivered\"} ")
        })
        .map_or(0, |v| v.trim().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_send_every_event_once_under_one_id() {
    let target = Target::start().await;
    let receivers = [
        FaultReceiver::start(false, Duration::from_millis(20)).await,
        FaultReceiver::start(false, Duration::from_millis(20)).await,
    ];
    // Small batches, a pass every 100 ms on each: the two workers claim
    // from the same rows all the time.
    let a = spawn_app_with(Backend::Postgres, |s| {
        notifying(s);
        s.delivery.batch = 10;
    })
    .await;
    let b = a.sibling(|s| s.prober.enabled = false).await;
    let (_, token) = a.user().await;
    let mut channels = Vec::new();
    for (i, receiver) in receivers.iter().enumerate() {
        let app = if i == 0 { &a } else { &b };
        let channel = create_channel(app, &token, webhook(&format!("c{i}"), &receiver.url()))
            .await
            .unwrap()
            .into_inner();
        let Some(ChannelTarget::Webhook(pb::WebhookTarget { secret, .. })) = channel.target else {
            panic!("a webhook");
        };
        channels.push((channel.id, secret));
    }
    // 25 URLs, each one incident opened and resolved: 50 events to each of
    // the two channels; and 200 test events, half through each instance.
    let urls = 25;
    for i in 0..urls {
        a.add_url_every(&token, &target.url(&format!("/seq/---++?n={i}")), 1)
            .await;
    }
    let tests = 200;
    for i in 0..tests {
        let app = if i % 2 == 0 { &a } else { &b };
        test_event(app, &token, channels[i % 2].0).await;
    }
    let rows = all_settled(&a.db, urls, 2, tests, Duration::from_secs(90)).await;
    assert_eq!(rows.len(), 4 * usize::try_from(urls).unwrap() + tests);

    // One row per (incident, event, channel).
    let keys: HashSet<(Option<i64>, &str, i64)> = rows
        .iter()
        .filter(|r| r.2.is_some())
        .map(|r| (r.2, r.3.as_str(), r.1))
        .collect();
    assert_eq!(keys.len(), rows.len() - tests);

    let mut sends = 0;
    let mut dup = 0;
    for (receiver, (channel_id, secret)) in receivers.iter().zip(&channels) {
        let got = receiver.got();
        check_against_rows(&got, &rows, *channel_id, secret);
        sends += got.len();
        dup += duplicates(&got);
    }
    let (by_a, by_b) = (delivered_by(&a).await, delivered_by(&b).await);
    println!(
        "two instances: {} events, {sends} sends ({by_a} by one instance, {by_b} by the other), \
         duplicate sends (same webhook-id): {dup}",
        rows.len()
    );
    assert_eq!(by_a + by_b, u64::try_from(rows.len()).unwrap());
    assert!(by_a > 0 && by_b > 0, "both workers delivered");
    // A send is repeated only after its lease (timeout + 5 s) expired; the
    // receivers answer within 20 ms.
    assert_eq!(dup, 0, "no event sent twice");
}

/// One pass of the loop, as [`run_passes`] calls it.
type Pass = std::pin::Pin<Box<dyn Future<Output = anyhow::Result<DeliveryReport>> + Send>>;

/// When each pass began.
type Ran = Arc<Mutex<Vec<tokio::time::Instant>>>;

/// A fake pass for the loop: records when it ran, takes 100 ms, and claims
/// what `script` says next (`None`: fails; nothing left: 0).
fn scripted_pass(script: Vec<Option<usize>>) -> (Ran, impl FnMut() -> Pass) {
    let ran = Arc::new(Mutex::new(Vec::new()));
    let mut script = VecDeque::from(script);
    let record = ran.clone();
    let pass = move || {
        let ran = record.clone();
        let next = script.pop_front().unwrap_or(Some(0));
        Box::pin(async move {
            ran.lock().unwrap().push(tokio::time::Instant::now());
            tokio::time::sleep(Duration::from_millis(100)).await;
            let claimed = next.ok_or_else(|| anyhow::anyhow!("the database is down"))?;
            Ok(DeliveryReport {
                claimed,
                delivered: claimed,
                ..DeliveryReport::default()
            })
        }) as Pass
    };
    (ran, pass)
}

fn millis_since(start: tokio::time::Instant, at: &[tokio::time::Instant]) -> Vec<u128> {
    at.iter().map(|t| (*t - start).as_millis()).collect()
}

#[tokio::test(start_paused = true)]
async fn the_delivery_loop_passes_each_interval_again_at_once_after_a_full_batch() {
    let start = tokio::time::Instant::now();
    // Batch 50: a pass that claimed 50 may have left more due.
    let (ran, pass) = scripted_pass(vec![Some(3), Some(50), Some(50), Some(7), None, Some(0)]);
    let shutdown = CancellationToken::new();
    let worker = tokio::spawn(run_passes(
        Duration::from_secs(1),
        50,
        shutdown.clone(),
        pass,
    ));
    tokio::time::sleep(Duration::from_millis(6_050)).await;
    // Each wait is an interval from the end of the last pass (100 ms each):
    // 1 s; 2.1 s, then twice at once after a full batch; 3.4 s fails, and
    // the next pass is an interval later, not at once; then every interval.
    assert_eq!(
        millis_since(start, &ran.lock().unwrap()),
        [1_000, 2_100, 2_200, 2_300, 3_400, 4_500, 5_600]
    );
    shutdown.cancel();
    worker.await.unwrap();
    assert_eq!(
        (tokio::time::Instant::now() - start).as_millis(),
        6_050,
        "stopped at once, between passes"
    );
}

#[tokio::test(start_paused = true)]
async fn the_delivery_loop_stops_on_cancel_after_the_pass_in_flight_even_with_a_backlog() {
    let start = tokio::time::Instant::now();
    // Every pass claims a full batch: a backlog that never ends.
    let (ran, pass) = scripted_pass(vec![Some(50); 1000]);
    let shutdown = CancellationToken::new();
    let worker = tokio::spawn(run_passes(
        Duration::from_secs(1),
        50,
        shutdown.clone(),
        pass,
    ));
    // Cancelled during the third pass of the first round (1.0, 1.1, 1.2 s).
    tokio::time::sleep(Duration::from_millis(1_250)).await;
    shutdown.cancel();
    worker.await.unwrap();
    assert_eq!(
        millis_since(start, &ran.lock().unwrap()),
        [1_000, 1_100, 1_200]
    );
    assert_eq!(
        (tokio::time::Instant::now() - start).as_millis(),
        1_300,
        "the pass in flight finished, no other began"
    );
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(ran.lock().unwrap().len(), 3, "nothing after the stop");
}
