//! Incident notifications end to end: a real target's probes open and
//! resolve an incident, the flush writes the outbox in its transaction, the
//! delivery worker sends signed webhooks to a real receiver over a real
//! socket. The signature is checked here from the Standard Webhooks spec
//! with the `hmac` and `sha2` crates, not with the server's signing code.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::post,
};
use base64::{Engine, engine::general_purpose::STANDARD};
use hmac::{Hmac, KeyInit, Mac};
use monitor::proto::monitor::v1::{self as pb, channel::Target as ChannelTarget};
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::net::TcpListener;
use tonic::Code;

use crate::{
    channels::{create_channel, update_channel, webhook},
    helpers::{
        Backend, TestApp, authed, expect_code, expect_invalid, prober_settings, spawn_app,
        spawn_app_with,
    },
    target::Target,
};

/// One request the receiver got, and what it answered.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub id: String,
    pub timestamp: String,
    pub signature: String,
    pub body: String,
    pub answered: u16,
}

/// How the receiver answers: `status` (with `Retry-After: 1` when 503)
/// until `until`, 200 after.
#[derive(Debug)]
struct Answer {
    status: u16,
    until: Option<Instant>,
}

#[derive(Debug, Clone)]
pub(crate) struct Receiver {
    addr: SocketAddr,
    got: Arc<Mutex<Vec<Received>>>,
}

type ReceiverState = (Arc<Mutex<Vec<Received>>>, Arc<Mutex<Answer>>);

async fn receive(
    State((got, answer)): State<ReceiverState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let status = {
        let answer = answer.lock().unwrap();
        match answer.until {
            Some(until) if Instant::now() >= until => 200,
            _ => answer.status,
        }
    };
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    got.lock().unwrap().push(Received {
        id: header("webhook-id"),
        timestamp: header("webhook-timestamp"),
        signature: header("webhook-signature"),
        body: String::from_utf8_lossy(&body).into_owned(),
        answered: status,
    });
    let code = StatusCode::from_u16(status).unwrap();
    if status == 503 {
        (code, [("retry-after", "1")], "later").into_response()
    } else {
        (code, "").into_response()
    }
}

impl Receiver {
    /// A receiver answering `status` for `for_how_long` (`None`: always).
    pub(crate) async fn start(status: u16, for_how_long: Option<Duration>) -> Self {
        let got = Arc::new(Mutex::new(Vec::new()));
        let answer = Arc::new(Mutex::new(Answer {
            status,
            until: for_how_long.map(|d| Instant::now() + d),
        }));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state((got.clone(), answer));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { addr, got }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub(crate) fn got(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }
}

/// Standard Webhooks, from the spec: base64 of HMAC-SHA256 over
/// `id.timestamp.body`, keyed with the base64-decoded secret after `whsec_`.
pub(crate) fn verify(secret: &str, r: &Received) {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{}.{}.{}", r.id, r.timestamp, r.body).as_bytes());
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    assert!(
        r.signature.split(' ').any(|s| s == expected),
        "signature {:?} is not {expected:?}",
        r.signature
    );
    let ts: i64 = r.timestamp.parse().expect("webhook-timestamp in seconds");
    assert!((chrono::Utc::now().timestamp() - ts).abs() < 60, "{ts}");
}

pub(crate) fn notifying(s: &mut monitor::config::Settings) {
    prober_settings(s);
    s.delivery.interval = Duration::from_millis(100);
    s.delivery.timeout = Duration::from_secs(2);
}

/// A user, a URL of `target_path` probed every second, and a webhook
/// channel for all the user's URLs to `receiver`: (url id, secret, channel).
pub(crate) async fn watched(
    app: &TestApp,
    target: &Target,
    path: &str,
    receiver: &Receiver,
) -> (i64, String, i64) {
    let (_, token) = app.user().await;
    let channel = create_channel(app, &token, webhook("hooks", &receiver.url()))
        .await
        .expect("create channel")
        .into_inner();
    let Some(ChannelTarget::Webhook(pb::WebhookTarget { secret, .. })) = channel.target else {
        panic!("a webhook");
    };
    let url = app.add_url_every(&token, &target.url(path), 1).await;
    (url.id, secret, channel.id)
}

/// The channel's deliveries as stored: (event, state, attempts, last_error).
pub(crate) async fn deliveries(
    app: &TestApp,
    channel_id: i64,
) -> Vec<(String, i16, i32, Option<String>)> {
    let backend = app.db.get_database_backend();
    let sql = match backend {
        sea_orm::DbBackend::Postgres => {
            "SELECT event, state, attempts, last_error FROM deliveries WHERE channel_id = $1 ORDER BY id"
        }
        _ => {
            "SELECT event, state, attempts, last_error FROM deliveries WHERE channel_id = ? ORDER BY id"
        }
    };
    app.db
        .query_all_raw(Statement::from_sql_and_values(
            backend,
            sql,
            [channel_id.into()],
        ))
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.try_get("", "event").unwrap(),
                r.try_get("", "state").unwrap(),
                r.try_get("", "attempts").unwrap(),
                r.try_get("", "last_error").unwrap(),
            )
        })
        .collect()
}

/// Waits until the channel has `n` deliveries, none pending.
pub(crate) async fn settled(
    app: &TestApp,
    channel_id: i64,
    n: usize,
) -> Vec<(String, i16, i32, Option<String>)> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let rows = deliveries(app, channel_id).await;
        if rows.len() >= n && rows.iter().all(|r| r.1 != 1) {
            return rows;
        }
        assert!(Instant::now() < deadline, "not settled in 60 s: {rows:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The first request of each webhook-id, in the order received.
pub(crate) fn first_of_each(got: &[Received]) -> Vec<Received> {
    let mut seen = std::collections::HashSet::new();
    got.iter()
        .filter(|r| seen.insert(r.id.clone()))
        .cloned()
        .collect()
}

pub(crate) fn body(r: &Received) -> Value {
    serde_json::from_str(&r.body).unwrap()
}

async fn an_incident_is_notified_opened_then_resolved_signed(backend: Backend) {
    let target = Target::start().await;
    let receiver = Receiver::start(200, None).await;
    let app = spawn_app_with(backend, notifying).await;
    let (url_id, secret, channel_id) = watched(&app, &target, "/seq/++---+", &receiver).await;
    let rows = settled(&app, channel_id, 2).await;
    assert_eq!(
        rows.iter().map(|r| (r.0.as_str(), r.1)).collect::<Vec<_>>(),
        [("incident.opened", 2), ("incident.resolved", 2)]
    );
    let got = receiver.got();
    assert_eq!(got.len(), 2, "{got:?}");
    for r in &got {
        verify(&secret, r);
    }
    let (opened, resolved) = (body(&got[0]), body(&got[1]));
    assert_eq!(opened["type"], "incident.opened");
    assert_eq!(resolved["type"], "incident.resolved");
    assert_eq!(
        opened["data"]["incident"]["id"],
        resolved["data"]["incident"]["id"]
    );
    assert_eq!(opened["data"]["incident"]["state"], "DOWN");
    assert_eq!(
        opened["data"]["incident"]["first_failure"]["status_code"],
        500
    );
    assert!(resolved["data"]["incident"]["resolved_at"].is_string());
    assert_eq!(opened["data"]["url"]["id"], url_id);
    assert!(opened["timestamp"].is_string());
    assert_ne!(got[0].id, got[1].id, "one webhook-id per delivery");
}

async fn a_receiver_down_for_a_while_gets_every_event_in_order_once_per_id(backend: Backend) {
    let target = Target::start().await;
    // The outage: 503 (Retry-After: 1) for 30 s, then 200.
    let receiver = Receiver::start(503, Some(Duration::from_secs(30))).await;
    let app = spawn_app_with(backend, notifying).await;
    let (_, secret, channel_id) = watched(&app, &target, "/seq/---++", &receiver).await;
    let rows = settled(&app, channel_id, 2).await;
    assert!(rows.iter().all(|r| r.1 == 2), "all delivered: {rows:?}");
    let got = receiver.got();
    // Sent again about every second (its Retry-After) through the outage.
    let refused = got.iter().filter(|r| r.answered == 503).count();
    assert!(refused >= 10, "{refused} sends refused: {got:?}");
    for r in &got {
        verify(&secret, r);
    }
    let firsts = first_of_each(&got);
    assert_eq!(
        firsts
            .iter()
            .map(|r| body(r)["type"].clone())
            .collect::<Vec<_>>(),
        ["incident.opened", "incident.resolved"]
    );
    for id in firsts.iter().map(|r| &r.id) {
        let tries: Vec<&Received> = got.iter().filter(|r| &r.id == id).collect();
        assert_eq!(
            tries.iter().filter(|r| r.answered == 200).count(),
            1,
            "{id} accepted once"
        );
        assert!(
            tries.windows(2).all(|w| w[0].body == w[1].body),
            "a retry sends the same event"
        );
    }
    // The resolved event waited for the opened one: none was sent before
    // the opened one was accepted.
    let opened_ok = got
        .iter()
        .position(|r| r.id == firsts[0].id && r.answered == 200)
        .unwrap();
    let resolved_first = got.iter().position(|r| r.id == firsts[1].id).unwrap();
    assert!(opened_ok < resolved_first, "{got:?}");
}

async fn a_gone_receiver_is_given_up_at_once_with_its_status(backend: Backend) {
    let target = Target::start().await;
    let receiver = Receiver::start(410, None).await;
    let app = spawn_app_with(backend, notifying).await;
    let (_, _, channel_id) = watched(&app, &target, "/seq/---", &receiver).await;
    let rows = settled(&app, channel_id, 1).await;
    let (event, state, attempts, error) = &rows[0];
    assert_eq!(
        (event.as_str(), *state, *attempts),
        ("incident.opened", 3, 1)
    );
    assert!(
        error.as_deref().unwrap_or_default().contains("410"),
        "{error:?}"
    );
    assert_eq!(receiver.got().len(), 1);
}

async fn flapping_opens_nothing_and_sends_nothing(backend: Backend) {
    let target = Target::start().await;
    let receiver = Receiver::start(200, None).await;
    let app = spawn_app_with(backend, notifying).await;
    let (url_id, _, channel_id) =
        watched(&app, &target, "/seq/+-+-+-+-+-+-+-+-+-+-+-+-+-", &receiver).await;
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert!(app.statuses_count(url_id).await >= 5);
    assert!(deliveries(&app, channel_id).await.is_empty());
    assert!(receiver.got().is_empty());
}

/// A channel for one URL hears of that URL only; one for all the user's
/// URLs of every one; another user's channel of none.
async fn a_channel_hears_only_of_its_owners_urls_it_names(backend: Backend) {
    let target = Target::start().await;
    let (one, all, stranger) = (
        Receiver::start(200, None).await,
        Receiver::start(200, None).await,
        Receiver::start(200, None).await,
    );
    let app = spawn_app_with(backend, notifying).await;
    let (_, token) = app.user().await;
    let (_, other) = app.user().await;
    let a = app
        .add_url_every(&token, &target.url("/seq/---?a"), 1)
        .await;
    let b = app
        .add_url_every(&token, &target.url("/seq/---?b"), 1)
        .await;
    let mut only_a = webhook("a", &one.url());
    only_a.url_ids = vec![a.id];
    let only_a = create_channel(&app, &token, only_a)
        .await
        .unwrap()
        .into_inner();
    let every = create_channel(&app, &token, webhook("all", &all.url()))
        .await
        .unwrap()
        .into_inner();
    create_channel(&app, &other, webhook("x", &stranger.url()))
        .await
        .unwrap();
    settled(&app, every.id, 2).await;
    settled(&app, only_a.id, 1).await;
    let urls = |r: &Receiver| {
        let mut ids: Vec<i64> = r
            .got()
            .iter()
            .map(|g| body(g)["data"]["url"]["id"].as_i64().unwrap())
            .collect();
        ids.sort_unstable();
        ids
    };
    assert_eq!(urls(&all), [a.id, b.id]);
    assert_eq!(urls(&one), [a.id]);
    assert!(stranger.got().is_empty());
}

async fn test_channel(
    app: &TestApp,
    token: &str,
    id: i64,
) -> Result<tonic::Response<pb::Delivery>, tonic::Status> {
    app.client
        .clone()
        .test_channel(authed(pb::TestChannelRequest { id }, token))
        .await
}

async fn list_deliveries(
    app: &TestApp,
    token: &str,
    channel_id: i64,
    page_size: i32,
    page_token: &str,
) -> Result<tonic::Response<pb::ListDeliveriesResponse>, tonic::Status> {
    app.client
        .clone()
        .list_deliveries(authed(
            pb::ListDeliveriesRequest {
                channel_id,
                page_size,
                page_token: page_token.into(),
            },
            token,
        ))
        .await
}

async fn a_test_event_is_sent_signed_and_listed_as_delivered(backend: Backend) {
    let receiver = Receiver::start(200, None).await;
    let app = spawn_app_with(backend, |s| {
        s.delivery.interval = Duration::from_millis(100);
    })
    .await;
    let (_, token) = app.user().await;
    let channel = create_channel(&app, &token, webhook("hooks", &receiver.url()))
        .await
        .unwrap()
        .into_inner();
    let Some(ChannelTarget::Webhook(pb::WebhookTarget { secret, .. })) = &channel.target else {
        panic!("a webhook");
    };
    let queued = test_channel(&app, &token, channel.id)
        .await
        .expect("test channel")
        .into_inner();
    assert_eq!(queued.event, "test");
    assert_eq!(queued.state(), pb::DeliveryState::Pending);
    assert_eq!((queued.channel_id, queued.incident_id), (channel.id, 0));
    let deadline = Instant::now() + Duration::from_secs(20);
    let listed = loop {
        let page = list_deliveries(&app, &token, channel.id, 0, "")
            .await
            .unwrap()
            .into_inner();
        if page.deliveries[0].state() == pb::DeliveryState::Delivered {
            break page.deliveries[0].clone();
        }
        assert!(Instant::now() < deadline, "not delivered: {page:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(listed.id, queued.id);
    assert_eq!(listed.attempts, 1);
    assert!(listed.delivered_at.is_some() && listed.next_attempt_at.is_none());
    let got = receiver.got();
    assert_eq!(got.len(), 1);
    verify(secret, &got[0]);
    let sent = body(&got[0]);
    assert_eq!(sent["type"], "test");
    assert_eq!(sent["data"]["channel"]["id"], channel.id);
    // Recorded as the pass that sent it ends (the gauge within 5 s).
    let lines = [
        "monitor_deliveries_total{kind=\"webhook\",outcome=\"delivered\"} 1",
        "monitor_deliveries_pending 0",
        "monitor_delivery_duration_seconds_count 1",
        "monitor_delivery_latency_seconds_count 1",
    ];
    // The pending gauge is sampled every 5 s.
    let deadline = Instant::now() + Duration::from_secs(12);
    loop {
        let metrics = reqwest::get(app.http_url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if lines.iter().all(|line| metrics.lines().any(|l| l == *line)) {
            break;
        }
        assert!(Instant::now() < deadline, "{lines:?} in:\n{metrics}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The JSON side: the custom verb, and the list.
    let auth = format!("Bearer {token}");
    let (status, queued) = app
        .post_json(
            &format!("/v1/channels/{}:test", channel.id),
            json!({}),
            Some(&auth),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::OK, "{queued}");
    assert_eq!(queued["event"], "test");
    assert_eq!(queued["state"], "DELIVERY_STATE_PENDING");
    let (status, page) = app
        .get_json(
            &format!("/v1/channels/{}/deliveries", channel.id),
            Some(&auth),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::OK, "{page}");
    assert_eq!(page["deliveries"].as_array().unwrap().len(), 2);
    let (status, _) = app
        .post_json(
            &format!("/v1/channels/{}:nope", channel.id),
            json!({}),
            Some(&auth),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::NOT_FOUND);
}

async fn deliveries_are_paged_newest_first_and_only_the_owners(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, token) = app.user().await;
    let (_, other) = app.user().await;
    // Nobody listens there: the deliveries stay PENDING or are retried.
    let channel = create_channel(&app, &token, webhook("c", "http://127.0.0.1:9/hook"))
        .await
        .unwrap()
        .into_inner();
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(
            test_channel(&app, &token, channel.id)
                .await
                .unwrap()
                .into_inner()
                .id,
        );
    }
    let first = list_deliveries(&app, &token, channel.id, 2, "")
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        first.deliveries.iter().map(|d| d.id).collect::<Vec<_>>(),
        [ids[2], ids[1]]
    );
    assert!(!first.next_page_token.is_empty());
    let second = list_deliveries(&app, &token, channel.id, 2, &first.next_page_token)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        second.deliveries.iter().map(|d| d.id).collect::<Vec<_>>(),
        [ids[0]]
    );
    assert!(second.next_page_token.is_empty());

    expect_code(test_channel(&app, &other, channel.id).await, Code::NotFound);
    expect_code(
        list_deliveries(&app, &other, channel.id, 0, "").await,
        Code::NotFound,
    );
    expect_invalid(
        list_deliveries(&app, &token, channel.id, 1001, "").await,
        "page_size",
    );
    expect_invalid(
        list_deliveries(&app, &token, channel.id, 0, "garbage").await,
        "page_token",
    );
    expect_invalid(list_deliveries(&app, &token, 0, 0, "").await, "channel_id");
    expect_invalid(test_channel(&app, &token, -1).await, "id");
}

impl TestApp {
    async fn statuses_count(&self, url_id: i64) -> usize {
        let backend = self.db.get_database_backend();
        let sql = match backend {
            sea_orm::DbBackend::Postgres => "SELECT count(*) AS n FROM statuses WHERE url_id = $1",
            _ => "SELECT count(*) AS n FROM statuses WHERE url_id = ?",
        };
        let row = self
            .db
            .query_one_raw(Statement::from_sql_and_values(
                backend,
                sql,
                [url_id.into()],
            ))
            .await
            .unwrap()
            .unwrap();
        usize::try_from(row.try_get::<i64>("", "n").unwrap()).unwrap()
    }
}

/// Reminders (`remind_every`): an incident still open is sent again every
/// interval, each a reminder with the same incident id and the next count,
/// signed like any event, until it is resolved; then nothing more.
async fn an_open_incident_is_reminded_every_interval_until_resolved(backend: Backend) {
    let target = Target::start().await;
    let receiver = Receiver::start(200, None).await;
    let app = spawn_app_with(backend, notifying).await;
    let (_, token) = app.user().await;
    let mut channel = webhook("hooks", &receiver.url());
    channel.remind_every = Some(pbjson_types::Duration {
        seconds: 2,
        nanos: 0,
    });
    let channel = create_channel(&app, &token, channel)
        .await
        .expect("create channel")
        .into_inner();
    assert_eq!(channel.remind_every.map(|d| d.seconds), Some(2));
    let Some(ChannelTarget::Webhook(pb::WebhookTarget { secret, .. })) = &channel.target else {
        panic!("a webhook");
    };
    // Up twice, down for 14 probes (about 12 s open), then up.
    let pattern = format!("/seq/++{}+", "-".repeat(14));
    app.add_url_every(&token, &target.url(&pattern), 1).await;
    let deadline = Instant::now() + Duration::from_secs(90);
    let events = loop {
        let got = first_of_each(&receiver.got());
        if got.iter().any(|r| body(r)["type"] == "incident.resolved") {
            break got;
        }
        assert!(Instant::now() < deadline, "not resolved in 90 s: {got:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for r in &events {
        verify(secret, r);
    }
    let kinds: Vec<Value> = events.iter().map(|r| body(r)["type"].clone()).collect();
    assert_eq!(kinds[0], "incident.opened", "{kinds:?}");
    assert_eq!(kinds[kinds.len() - 1], "incident.resolved", "{kinds:?}");
    let reminders: Vec<Value> = events[1..events.len() - 1].iter().map(body).collect();
    assert!(
        reminders.len() >= 3,
        "open for about 6 intervals: {kinds:?}"
    );
    let incident = body(&events[0])["data"]["incident"]["id"].clone();
    for (n, r) in reminders.iter().enumerate() {
        assert_eq!(r["type"], "incident.reminder", "{kinds:?}");
        assert_eq!(r["data"]["reminder"], n + 1, "counted 1, 2, 3…");
        assert_eq!(r["data"]["incident"]["id"], incident, "the same incident");
        assert_eq!(r["data"]["incident"]["state"], "DOWN");
        assert!(r["data"]["url"]["id"].is_number(), "{r}");
    }
    // Listed with their counts; and after the resolve, no more.
    let listed = list_deliveries(&app, &token, channel.id, 0, "")
        .await
        .unwrap()
        .into_inner()
        .deliveries;
    let counts: Vec<i32> = listed
        .iter()
        .rev()
        .filter(|d| d.event == "incident.reminder")
        .map(|d| d.reminder)
        .collect();
    assert_eq!(
        counts,
        (1..=i32::try_from(counts.len()).unwrap()).collect::<Vec<_>>()
    );
    let sent = receiver.got().len();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(receiver.got().len(), sent, "nothing after the resolve");
    // A reminder read as due just before the resolve is not queued after
    // it (the reminder pass checks the incident again as it writes).
    let late = monitor::store::deliveries::add_reminder(
        &app.db,
        channel.id,
        incident.as_i64().expect("an incident id"),
        "{}".into(),
        chrono::Utc::now(),
        99,
    )
    .await
    .unwrap();
    assert!(!late, "a reminder of a resolved incident");
}

/// `remind_every` outside its bounds is refused by name; UpdateChannel
/// sets and clears it.
async fn reminder_intervals_are_checked_and_changed(backend: Backend) {
    let app = spawn_app_with(backend, notifying).await;
    let (_, token) = app.user().await;
    for (seconds, nanos) in [
        (0, 500_000_000),
        (1, 500_000_000),
        (-5, 0),
        (31 * 86_400, 0),
    ] {
        let mut channel = webhook("hooks", "https://hooks.example.com/");
        channel.remind_every = Some(pbjson_types::Duration { seconds, nanos });
        expect_invalid(
            create_channel(&app, &token, channel).await,
            "channel.remind_every",
        );
    }
    let made = create_channel(&app, &token, webhook("hooks", "https://hooks.example.com/"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(made.remind_every, None);
    let mut change = pb::Channel {
        id: made.id,
        remind_every: Some(pbjson_types::Duration {
            seconds: 1800,
            nanos: 0,
        }),
        ..Default::default()
    };
    let changed = update_channel(&app, &token, change.clone(), &["remindEvery"])
        .await
        .unwrap()
        .into_inner();
    assert_eq!(changed.remind_every.map(|d| d.seconds), Some(1800));
    change.remind_every = None;
    let cleared = update_channel(&app, &token, change, &["remind_every"])
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cleared.remind_every, None);
}

crate::on_both_backends!(
    an_open_incident_is_reminded_every_interval_until_resolved,
    reminder_intervals_are_checked_and_changed,
    an_incident_is_notified_opened_then_resolved_signed,
    a_receiver_down_for_a_while_gets_every_event_in_order_once_per_id,
    a_gone_receiver_is_given_up_at_once_with_its_status,
    flapping_opens_nothing_and_sends_nothing,
    a_channel_hears_only_of_its_owners_urls_it_names,
    a_test_event_is_sent_signed_and_listed_as_delivered,
    deliveries_are_paged_newest_first_and_only_the_owners,
);
