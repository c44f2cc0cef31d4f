//! Maintenance windows: probes inside one are stored as MAINTENANCE, open
//! no incident and send nothing; an incident open when one starts is held
//! and paged again if its URL still fails after; stats count them apart;
//! CRUD over gRPC and JSON, bad input, ownership and the quota.

use std::time::Duration;

use chrono::{DateTime, Timelike, Utc};
use monitor::{
    domain::{ProbeResult, maintenance::WindowCache},
    proto::monitor::v1::{self as pb, Granularity, UrlState},
    store::outcomes,
};
use tonic::Code;

use crate::{
    channels::{create_channel, webhook},
    helpers::{Backend, TestApp, authed, expect_code, expect_invalid, spawn_app, spawn_app_with},
    notifications::{Receiver, body, deliveries, notifying, settled},
    stats::backdate,
    target::Target,
};

const MINUTE: i64 = 60_000;
const HOUR: i64 = 3_600_000;

fn ts(ms: i64) -> monitor::proto::Timestamp {
    monitor::proto::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: 0,
    }
}

fn ms_of(t: Option<monitor::proto::Timestamp>) -> i64 {
    let t = t.expect("a time");
    t.seconds * 1000 + i64::from(t.nanos) / 1_000_000
}

/// A window recurring daily at `start`'s local hour and minute in
/// `time_zone`, for `duration`.
fn daily(
    url_ids: Vec<i64>,
    start_ms: i64,
    duration: Duration,
    time_zone: &str,
) -> pb::MaintenanceWindow {
    let tz: chrono_tz::Tz = time_zone.parse().unwrap();
    let hour = DateTime::<Utc>::from_timestamp_millis(start_ms)
        .unwrap()
        .with_timezone(&tz)
        .hour();
    pb::MaintenanceWindow {
        url_ids,
        start_time: Some(ts(start_ms)),
        recurrence: format!("FREQ=DAILY;BYHOUR={hour}"),
        duration: Some(duration.into()),
        time_zone: time_zone.into(),
        ..Default::default()
    }
}

fn once(url_ids: Vec<i64>, start_ms: i64, end_ms: i64) -> pb::MaintenanceWindow {
    pb::MaintenanceWindow {
        url_ids,
        start_time: Some(ts(start_ms)),
        end_time: Some(ts(end_ms)),
        ..Default::default()
    }
}

async fn create(
    app: &TestApp,
    token: &str,
    window: pb::MaintenanceWindow,
) -> Result<tonic::Response<pb::MaintenanceWindow>, tonic::Status> {
    app.client
        .clone()
        .create_maintenance_window(authed(
            pb::CreateMaintenanceWindowRequest {
                window: Some(window),
            },
            token,
        ))
        .await
}

async fn list(app: &TestApp, token: &str) -> Vec<pb::MaintenanceWindow> {
    app.client
        .clone()
        .list_maintenance_windows(authed(pb::ListMaintenanceWindowsRequest {}, token))
        .await
        .expect("list windows")
        .into_inner()
        .windows
}

fn probe(url_id: i64, due_ms: i64, status_code: i32) -> ProbeResult {
    ProbeResult {
        url_id,
        due_ms,
        started_us: due_ms * 1000 + 5,
        status_code,
        latency_us: 2_000,
        ..Default::default()
    }
}

async fn write(app: &TestApp, batch: &[ProbeResult]) -> outcomes::Written {
    outcomes::write_batch(&app.db, &batch.iter().collect::<Vec<_>>())
        .await
        .unwrap()
}

/// A user with a webhook channel (all the user's URLs) to a receiver
/// answering 200: (token, receiver, channel).
async fn user_with_webhook(app: &TestApp) -> (String, Receiver, pb::Channel) {
    let (_, token) = app.user().await;
    let receiver = Receiver::start(200, None).await;
    let channel = create_channel(app, &token, webhook("hooks", &receiver.url()))
        .await
        .unwrap()
        .into_inner();
    (token, receiver, channel)
}

/// The test, at the flush, batch by batch: a URL failing from
/// minute 10 under a window recurring daily at minutes 10..30 (in a time
/// zone half an hour off UTC): its failures inside are stored as
/// MAINTENANCE, open nothing and queue nothing; after it, the third failure
/// opens the incident, dated by the first after the window. Stats count the
/// window's probes apart: not in uptime, not missed.
#[allow(clippy::too_many_lines)] // one scenario, batch by batch
async fn a_recurring_window_holds_a_failing_url_and_the_incident_opens_after_it(backend: Backend) {
    let app = spawn_app(backend).await;
    let (token, _receiver, channel) = user_with_webhook(&app).await;
    let url_id = app
        .add_url(&token, "https://example.com/maintained")
        .await
        .id;
    let now = Utc::now().timestamp_millis();
    let t0 = now - now.rem_euclid(HOUR) - 3 * HOUR;
    backdate(&app, url_id, t0).await;
    let window = create(
        &app,
        &token,
        daily(
            vec![url_id],
            t0 + 10 * MINUTE,
            Duration::from_secs(20 * 60),
            "Asia/Kolkata",
        ),
    )
    .await
    .expect("create window")
    .into_inner();
    assert!(window.id > 0);
    let minute = |k: i64| probe(url_id, t0 + k * MINUTE, if k < 10 { 200 } else { 500 });

    let first = write(&app, &(0..30).map(minute).collect::<Vec<_>>()).await;
    assert_eq!((first.inserted, first.incidents_opened), (30, 0));
    let url = app.get_url(&token, url_id).await;
    assert_eq!(url.state(), UrlState::Maintenance);
    assert_eq!(ms_of(url.state_since), t0 + 10 * MINUTE);
    let statuses = app.statuses(&token, url_id).await;
    let maintenance: Vec<i64> = statuses
        .iter()
        .filter(|s| s.verdict() == UrlState::Maintenance)
        .map(|s| (ms_of(s.due_at) - t0) / MINUTE)
        .collect();
    assert_eq!(maintenance.len(), 20, "{maintenance:?}");
    assert!(maintenance.iter().all(|k| (10..30).contains(k)));
    assert!(
        statuses
            .iter()
            .all(|s| s.status_code == 500 || s.verdict() == UrlState::Up)
    );

    let second = write(&app, &(30..32).map(minute).collect::<Vec<_>>()).await;
    assert_eq!(second.incidents_opened, 0, "two failures after the window");
    assert_eq!(app.get_url(&token, url_id).await.state(), UrlState::Pending);
    assert!(app.incidents(&token, url_id).await.is_empty());
    assert!(
        deliveries(&app, channel.id).await.is_empty(),
        "nothing queued"
    );

    let third = write(&app, &(32..40).map(minute).collect::<Vec<_>>()).await;
    assert_eq!(third.incidents_opened, 1);
    let incidents = app.incidents(&token, url_id).await;
    assert_eq!(incidents.len(), 1);
    assert_eq!(ms_of(incidents[0].opened_at), t0 + 30 * MINUTE);
    assert_eq!(
        incidents[0].failed_probes, 10,
        "failures after the window only"
    );
    assert_eq!(app.get_url(&token, url_id).await.state(), UrlState::Down);
    let rows = settled(&app, channel.id, 1).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].0, "incident.opened");

    let stats = app
        .client
        .clone()
        .get_url_stats(authed(
            pb::GetUrlStatsRequest {
                url_id,
                start_time: Some(ts(t0)),
                end_time: Some(ts(t0 + 40 * MINUTE)),
                granularity: Granularity::Minute as i32,
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    let total = stats.total.unwrap();
    assert_eq!(
        (
            total.expected,
            total.up,
            total.down,
            total.maintenance,
            total.missed
        ),
        (40, 10, 10, 20, 0)
    );
    assert_eq!(
        total.uptime,
        Some(0.5),
        "the window's probes count neither way"
    );
    let in_window = &stats.buckets[15];
    assert_eq!(
        (in_window.maintenance, in_window.down, in_window.uptime),
        (1, 0, None)
    );
}

/// The test end to end: the prober probes a target that always
/// fails, under a window recurring daily at this very hour and minute that
/// started before the URL was added and lasts a few seconds. Its probes are
/// MAINTENANCE and the URL too while it lasts; after it the incident opens
/// at the third failure, and the receiver hears of that incident only.
async fn a_recurring_window_over_a_failing_target_sends_nothing_until_it_ends(backend: Backend) {
    let target = Target::start().await;
    let receiver = Receiver::start(200, None).await;
    let app = spawn_app_with(backend, notifying).await;
    let (_, token) = app.user().await;
    create_channel(&app, &token, webhook("hooks", &receiver.url()))
        .await
        .unwrap();
    let now = Utc::now().timestamp_millis();
    let start = now - now.rem_euclid(1000);
    let end = start + 6_000;
    create(
        &app,
        &token,
        daily(vec![], start, Duration::from_secs(6), "UTC"),
    )
    .await
    .expect("create window");
    let url = app.add_url_every(&token, &target.url("/fail"), 1).await;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut seen_maintenance = false;
    let incident = loop {
        seen_maintenance |= app.get_url(&token, url.id).await.state() == UrlState::Maintenance;
        if let Some(i) = app.incidents(&token, url.id).await.first() {
            break i.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no incident within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let statuses = app.statuses(&token, url.id).await;
    let (inside, after): (Vec<_>, Vec<_>) = statuses.iter().partition(|s| ms_of(s.due_at) < end);
    assert!(!inside.is_empty(), "probed during the window");
    assert!(
        inside.iter().all(|s| s.verdict() == UrlState::Maintenance),
        "{inside:?}"
    );
    assert!(
        after.iter().all(|s| s.verdict() == UrlState::Down),
        "{after:?}"
    );
    let first_after = after.iter().map(|s| ms_of(s.due_at)).min().unwrap();
    assert_eq!(
        ms_of(incident.opened_at),
        first_after,
        "the threshold counts from the window's end"
    );
    assert!(after.len() >= 3);
    assert!(
        seen_maintenance || inside.len() <= 1,
        "the URL was MAINTENANCE during the window"
    );
    let channel_id = app
        .client
        .clone()
        .list_channels(authed(pb::ListChannelsRequest {}, &token))
        .await
        .unwrap()
        .into_inner()
        .channels[0]
        .id;
    let rows = settled(&app, channel_id, 1).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    let got = receiver.got();
    assert_eq!(body(&got[0])["data"]["incident"]["id"], incident.id);
}

/// An incident open when a window starts stays open through it (nothing
/// resolves it, nothing is sent) and, its URL still failing at the end, is
/// paged again: the same incident, one more incident.opened.
async fn an_incident_open_when_a_window_starts_is_held_then_paged_again(backend: Backend) {
    let target = Target::start().await;
    let receiver = Receiver::start(200, None).await;
    let app = spawn_app_with(backend, notifying).await;
    let (_, token) = app.user().await;
    let channel = create_channel(&app, &token, webhook("hooks", &receiver.url()))
        .await
        .unwrap()
        .into_inner();
    let url = app.add_url_every(&token, &target.url("/fail"), 1).await;
    settled(&app, channel.id, 1).await;
    // Whole seconds: the window's times travel as seconds.
    let now = Utc::now().timestamp_millis() / 1000 * 1000;
    create(&app, &token, once(vec![url.id], now, now + 5_000))
        .await
        .expect("create window");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while app.get_url(&token, url.id).await.state() != UrlState::Maintenance {
        assert!(tokio::time::Instant::now() < deadline, "never MAINTENANCE");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rows = settled(&app, channel.id, 2).await;
    assert_eq!(
        rows.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(),
        ["incident.opened", "incident.opened"]
    );
    let incidents = app.incidents(&token, url.id).await;
    assert_eq!(incidents.len(), 1, "held, not a new one");
    assert!(incidents[0].resolved_at.is_none());
    let got = receiver.got();
    assert_eq!(
        body(&got[0])["data"]["incident"]["id"],
        body(&got[1])["data"]["incident"]["id"]
    );
    let statuses = app.statuses(&token, url.id).await;
    let held: Vec<_> = statuses
        .iter()
        .filter(|s| s.verdict() == UrlState::Maintenance)
        .collect();
    assert!(!held.is_empty());
    assert!(
        held.iter()
            .all(|s| ms_of(s.due_at) >= now && ms_of(s.due_at) < now + 5_000)
    );
    let renotified_after = statuses
        .iter()
        .filter(|s| ms_of(s.due_at) >= now + 5_000)
        .count();
    assert!(renotified_after >= 1);
    assert_eq!(app.get_url(&token, url.id).await.state(), UrlState::Down);
}

/// An incident open when a window starts, whose URL is up again by the
/// end of it: held through the window (nothing resolves, nothing is sent),
/// then resolved by the successes after it, and its channel hears
/// `incident.resolved` once. Batch by batch at the flush, with one window
/// cache kept across batches as an instance keeps it, so the window added
/// after the first batch must be seen through the cache.
async fn an_incident_held_by_a_window_resolves_after_it_when_its_url_is_up(backend: Backend) {
    // Deliveries on, the prober off: the batches below are the only results.
    let app = spawn_app_with(backend, |s| {
        notifying(s);
        s.prober.enabled = false;
    })
    .await;
    let (token, _receiver, channel) = user_with_webhook(&app).await;
    let url_id = app.add_url(&token, "https://example.com/held").await.id;
    let now = Utc::now().timestamp_millis();
    let t0 = now - now.rem_euclid(HOUR) - 3 * HOUR;
    backdate(&app, url_id, t0).await;
    let owners = monitor::store::urls::owners_of_ids(&app.db, &[url_id])
        .await
        .unwrap();
    let cache = WindowCache::default();
    let write = |ks: std::ops::Range<i64>| {
        let batch: Vec<ProbeResult> = ks
            .map(|k| probe(url_id, t0 + k * MINUTE, if k < 5 { 500 } else { 200 }))
            .collect();
        let (db, owners, cache) = (app.db.clone(), &owners, &cache);
        async move {
            outcomes::write_judged(&db, &batch.iter().collect::<Vec<_>>(), owners, cache)
                .await
                .unwrap()
        }
    };
    // Minutes 0-4 fail: the incident opens at the third.
    assert_eq!(write(0..5).await.incidents_opened, 1);
    settled(&app, channel.id, 1).await;
    create(
        &app,
        &token,
        once(vec![url_id], t0 + 5 * MINUTE, t0 + 15 * MINUTE),
    )
    .await
    .expect("create window");
    // Minutes 5-14, inside the window: up again, but held.
    write(5..15).await;
    let url = app.get_url(&token, url_id).await;
    assert_eq!(url.state(), UrlState::Maintenance);
    let incidents = app.incidents(&token, url_id).await;
    assert_eq!(incidents.len(), 1);
    assert!(
        incidents[0].resolved_at.is_none(),
        "held through the window"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(deliveries(&app, channel.id).await.len(), 1, "nothing sent");
    // Minutes 15-16, after it: two successes resolve it.
    write(15..17).await;
    assert_eq!(app.get_url(&token, url_id).await.state(), UrlState::Up);
    let incidents = app.incidents(&token, url_id).await;
    assert_eq!(incidents.len(), 1, "the same incident");
    assert!(
        ms_of(incidents[0].resolved_at) >= t0 + 15 * MINUTE,
        "resolved after the window: {:?}",
        incidents[0].resolved_at
    );
    let rows = settled(&app, channel.id, 2).await;
    assert_eq!(
        rows.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(),
        ["incident.opened", "incident.resolved"]
    );
    let statuses = app.statuses(&token, url_id).await;
    assert_eq!(
        statuses
            .iter()
            .filter(|s| s.verdict() == UrlState::Maintenance)
            .count(),
        10
    );
}

/// Create, list and delete over gRPC and JSON; every bad field named and
/// nothing written; another user's windows and URLs are not found; the
/// quota.
#[allow(clippy::too_many_lines)] // one table of cases
async fn windows_are_created_listed_and_deleted_by_their_owner_only(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, token) = app.user().await;
    let (_, other) = app.user().await;
    let url_id = app.add_url(&token, "https://example.com/w").await.id;
    let t = Utc::now().timestamp_millis() / 1000 * 1000;
    let made = create(&app, &token, once(vec![url_id], t, t + HOUR))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (made.url_ids.clone(), ms_of(made.end_time)),
        (vec![url_id], t + HOUR)
    );
    let weekly = create(
        &app,
        &token,
        pb::MaintenanceWindow {
            start_time: Some(ts(t)),
            recurrence: "RRULE:FREQ=WEEKLY;BYDAY=SU;BYHOUR=2".into(),
            duration: Some(Duration::from_secs(7200).into()),
            time_zone: "Europe/Paris".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap()
    .into_inner();
    assert_eq!(weekly.recurrence, "FREQ=WEEKLY;BYDAY=SU;BYHOUR=2");
    assert!(weekly.url_ids.is_empty() && weekly.end_time.is_none());

    let auth = format!("Bearer {token}");
    let (status, json) = app
        .post_json(
            "/v1/maintenance-windows",
            serde_json::json!({
                "urlIds": [url_id.to_string()],
                "startTime": "2030-01-01T00:00:00Z",
                "endTime": "2030-01-01T01:00:00Z",
            }),
            Some(&auth),
        )
        .await;
    assert_eq!(status, 200, "{json}");
    let json_id: i64 = json["id"].as_str().unwrap().parse().unwrap();
    let (status, json) = app.get_json("/v1/maintenance-windows", Some(&auth)).await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["windows"].as_array().unwrap().len(), 3, "{json}");
    assert_eq!(json["windows"][1]["timeZone"], "Europe/Paris", "{json}");

    // Bad input: the field named, nothing written.
    let bad = |w: pb::MaintenanceWindow| create(&app, &token, w);
    let rec = |rrule: &str, tz: &str, secs: u64| pb::MaintenanceWindow {
        start_time: Some(ts(t)),
        recurrence: rrule.into(),
        duration: Some(Duration::from_secs(secs).into()),
        time_zone: tz.into(),
        ..Default::default()
    };
    let monthly = expect_invalid(
        bad(rec("FREQ=MONTHLY;BYMONTHDAY=1", "UTC", 60)).await,
        "window.recurrence",
    );
    assert!(
        monthly.message().contains("FREQ=DAILY or FREQ=WEEKLY"),
        "{monthly:?}"
    );
    expect_invalid(
        bad(rec("FREQ=DAILY", "Mars/Olympus", 60)).await,
        "window.time_zone",
    );
    expect_invalid(bad(rec("FREQ=DAILY", "UTC", 0)).await, "window.duration");
    expect_invalid(
        bad(rec("FREQ=DAILY", "UTC", 30 * 86_400)).await,
        "window.duration",
    );
    expect_invalid(bad(once(vec![], t, t - 1_000)).await, "window.end_time");
    expect_invalid(
        bad(pb::MaintenanceWindow {
            end_time: Some(ts(t)),
            ..Default::default()
        })
        .await,
        "window.start_time",
    );
    expect_invalid(
        app.client
            .clone()
            .create_maintenance_window(authed(
                pb::CreateMaintenanceWindowRequest { window: None },
                &token,
            ))
            .await,
        "window",
    );
    let (status, json) = app
        .post_json(
            "/v1/maintenance-windows",
            serde_json::json!({"startTime": "2030-01-01T00:00:00Z", "recurrence": "FREQ=HOURLY", "duration": "60s"}),
            Some(&auth),
        )
        .await;
    assert_eq!(status, 400, "{json}");
    assert_eq!(list(&app, &token).await.len(), 3, "nothing written");

    // Another user: sees none, deletes none, cannot name the owner's URL.
    assert!(list(&app, &other).await.is_empty());
    expect_code(
        app.client
            .clone()
            .delete_maintenance_window(authed(
                pb::DeleteMaintenanceWindowRequest { id: made.id },
                &other,
            ))
            .await,
        Code::NotFound,
    );
    expect_code(
        create(&app, &other, once(vec![url_id], t, t + HOUR)).await,
        Code::NotFound,
    );
    assert!(list(&app, &other).await.is_empty());

    // Deleted by its owner, over gRPC and JSON; then not found.
    app.client
        .clone()
        .delete_maintenance_window(authed(
            pb::DeleteMaintenanceWindowRequest { id: made.id },
            &token,
        ))
        .await
        .unwrap();
    let (status, _) = app
        .json(
            reqwest::Method::DELETE,
            &format!("/v1/maintenance-windows/{json_id}"),
            None,
            Some(&auth),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = app
        .json(
            reqwest::Method::DELETE,
            &format!("/v1/maintenance-windows/{json_id}"),
            None,
            Some(&auth),
        )
        .await;
    assert_eq!(status, 404);
    let left = list(&app, &token).await;
    assert_eq!(left.iter().map(|w| w.id).collect::<Vec<_>>(), [weekly.id]);

    // The quota: 100 windows a user.
    for _ in 1..100 {
        create(&app, &token, once(vec![], t, t + HOUR))
            .await
            .unwrap();
    }
    let refused = expect_code(
        create(&app, &token, once(vec![], t, t + HOUR)).await,
        Code::ResourceExhausted,
    );
    assert!(
        refused.message().contains("100 maintenance windows"),
        "{refused:?}"
    );
}

/// `monitorctl maintenance add|list|delete`: tables, JSON, exit codes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitorctl_adds_lists_and_deletes_maintenance_windows() {
    let app = spawn_app(Backend::Sqlite).await;
    let server = format!("http://{}", app.addr);
    let config = tempfile::tempdir().unwrap();
    let ctl = |args: &[&str]| crate::tools::monitorctl(&server, config.path(), args);
    for step in [
        ["register", "maint@example.com"],
        ["login", "maint@example.com"],
    ] {
        let (ok, _, err) = crate::tools::run(ctl(&step)).await;
        assert!(ok, "{err}");
    }
    let (ok, out, err) = crate::tools::run(ctl(&["maintenance", "list"])).await;
    assert!(ok && out.contains("no maintenance windows"), "{out}{err}");
    let (ok, out, err) = crate::tools::run(ctl(&[
        "maintenance",
        "add",
        "--start",
        "2030-01-06T02:00:00+01:00",
        "--every",
        "FREQ=WEEKLY;BYDAY=SU;BYHOUR=2",
        "--duration",
        "2h",
        "--tz",
        "Europe/Paris",
    ]))
    .await;
    assert!(ok, "{err}");
    for part in ["FREQ=WEEKLY;BYDAY=SU;BYHOUR=2", "2h", "Europe/Paris", "all"] {
        assert!(out.contains(part), "{part}: {out}");
    }
    let (ok, out, err) = crate::tools::run(ctl(&[
        "--json",
        "maintenance",
        "add",
        "--end",
        "2030-01-01T01:00:00Z",
        "--start",
        "2030-01-01T00:00:00Z",
    ]))
    .await;
    assert!(ok, "{err}");
    let added: serde_json::Value = serde_json::from_str(&out).unwrap();
    let id = added["id"].as_str().unwrap().to_owned();
    assert_eq!(added["endTime"], "2030-01-01T01:00:00Z", "{added}");
    let (ok, out, _) = crate::tools::run(ctl(&["--json", "maintenance", "list"])).await;
    assert!(ok);
    let listed: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(listed["windows"].as_array().unwrap().len(), 2, "{listed}");
    // Bad input: exit 4 and the field named; a rule outside the subset says what is allowed.
    let mut monthly = ctl(&[
        "maintenance",
        "add",
        "--every",
        "FREQ=MONTHLY",
        "--duration",
        "1h",
    ]);
    let out = tokio::task::spawn_blocking(move || monthly.output())
        .await
        .unwrap()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(
        err.contains("window.recurrence") && err.contains("FREQ=DAILY or FREQ=WEEKLY"),
        "{err}"
    );
    let (ok, out, err) = crate::tools::run(ctl(&["maintenance", "delete", &id])).await;
    assert!(
        ok && out.contains(&format!("deleted maintenance window {id}")),
        "{out}{err}"
    );
    let mut again = ctl(&["maintenance", "delete", &id]);
    let out = tokio::task::spawn_blocking(move || again.output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
}

crate::on_both_backends!(
    a_recurring_window_holds_a_failing_url_and_the_incident_opens_after_it,
    a_recurring_window_over_a_failing_target_sends_nothing_until_it_ends,
    an_incident_open_when_a_window_starts_is_held_then_paged_again,
    an_incident_held_by_a_window_resolves_after_it_when_its_url_is_up,
    windows_are_created_listed_and_deleted_by_their_owner_only,
);
