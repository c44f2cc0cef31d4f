//! The prober pipeline end to end: schedule -> probe -> buffer -> store,
//! against a local target that counts its hits.

use std::{
    collections::HashSet,
    time::{Duration, SystemTime},
};

use monitor::proto::monitor::v1::{self as pb, ErrorKind};
use tonic::Code;

use crate::{
    helpers::{Backend, authed, expect_code, prober_settings, spawn_app_with, use_redis},
    target::Target,
};

fn ms(ts: Option<monitor::proto::Timestamp>) -> i64 {
    let ts = ts.expect("timestamp");
    ts.seconds * 1000 + i64::from(ts.nanos) / 1_000_000
}

fn secs_between(a: SystemTime, b: SystemTime) -> f64 {
    b.duration_since(a).unwrap_or_default().as_secs_f64()
}

async fn probes_record_status_codes_and_error_kinds(backend: Backend) {
    let target = Target::start().await;
    let app = spawn_app_with(backend, prober_settings).await;
    let (_, token) = app.user().await;
    let cases = [
        (target.url("/ok"), 200, ErrorKind::Unspecified),
        (target.url("/fail"), 500, ErrorKind::Unspecified),
        (target.url("/redirect"), 302, ErrorKind::Unspecified),
        (target.url("/slow"), 0, ErrorKind::Timeout),
        (target.reset_url(), 0, ErrorKind::Connect),
        (
            "http://127.0.0.1:1/closed-port".to_owned(),
            0,
            ErrorKind::Connect,
        ),
    ];
    let mut added = Vec::new();
    for (url, _, _) in &cases {
        added.push(app.add_url_every(&token, url, 60).await);
    }
    for ((url, code, kind), u) in cases.iter().zip(&added) {
        let s = &app
            .wait_for_statuses(&token, u.id, 1, Duration::from_secs(10))
            .await[0];
        assert_eq!(s.status_code, *code, "{url}: {s:?}");
        assert_eq!(s.error_kind, *kind as i32, "{url}: {s:?}");
        if *code == 0 {
            assert!(!s.error_message.is_empty(), "{url}: a failure says why");
        } else {
            assert!(s.error_message.is_empty(), "{url}: {s:?}");
        }
        assert!(s.latency.is_some());
        // A new URL is probed at once: within a second of being added.
        let created = ms(u.created_at);
        assert!(
            ms(s.probed_at) - created < 1_000,
            "{url}: first probe {} ms after AddUrl",
            ms(s.probed_at) - created
        );
    }
    // The redirect was not followed: /ok was hit once, by its own URL.
    assert_eq!(target.hits("/ok").len(), 1);
}

async fn probes_follow_redirects_only_when_allowed(backend: Backend) {
    let target = Target::start().await;
    let app = spawn_app_with(backend, |s| {
        prober_settings(s);
        s.prober.probe.follow_redirects = 3;
    })
    .await;
    let (_, token) = app.user().await;
    let u = app
        .add_url_every(&token, &target.url("/redirect"), 60)
        .await;
    let s = &app
        .wait_for_statuses(&token, u.id, 1, Duration::from_secs(10))
        .await[0];
    assert_eq!(s.status_code, 200);
    assert_eq!(target.hits("/ok").len(), 1);
}

async fn each_url_is_probed_on_its_period_without_drift(backend: Backend) {
    probed_on_its_period_without_drift(backend, prober_settings).await;
}

/// Probes run on a runtime of their own (`MONITOR_PROBE_THREADS`: by default
/// one thread on SQLite, the service's runtime on Postgres) or on the
/// service's: every setting keeps the schedule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_probe_runtime_setting_keeps_the_schedule() {
    for threads in [0, 2] {
        probed_on_its_period_without_drift(Backend::Sqlite, |s| {
            prober_settings(s);
            s.prober.threads = Some(threads);
        })
        .await;
    }
    if !crate::helpers::postgres_skipped() {
        probed_on_its_period_without_drift(Backend::Postgres, |s| {
            prober_settings(s);
            s.prober.threads = Some(1);
        })
        .await;
    }
}

async fn probed_on_its_period_without_drift(
    backend: Backend,
    customize: impl FnOnce(&mut monitor::config::Settings),
) {
    let target = Target::start().await;
    let app = spawn_app_with(backend, customize).await;
    let (_, token) = app.user().await;
    let period = 2;
    let u = app
        .add_url_every(&token, &target.url("/ok?every=2"), period)
        .await;
    let statuses = app
        .wait_for_statuses(&token, u.id, 5, Duration::from_secs(15))
        .await;
    // After the first (immediate) probe, due times are exactly one period apart.
    let dues: Vec<i64> = statuses.iter().map(|s| ms(s.due_at)).collect();
    for pair in dues[1..].windows(2) {
        assert_eq!(pair[1] - pair[0], period * 1000, "due times {dues:?}");
    }
    // The first gap is between half a period and one and a half.
    let first_gap = dues[1] - dues[0];
    assert!(
        (period * 500..=period * 1500).contains(&first_gap),
        "{dues:?}"
    );
    // Probes start on time and the target saw them one period apart (± 1 s).
    for s in &statuses {
        let late = ms(s.probed_at) - ms(s.due_at);
        assert!(
            (0..1_000).contains(&late),
            "probe started {late} ms after its due time"
        );
    }
    let hits = target.hits("/ok?every=2");
    for pair in hits[1..].windows(2) {
        let gap = secs_between(pair[0], pair[1]);
        assert!((gap - 2.0).abs() <= 1.0, "hits {gap} s apart");
    }
}

async fn a_deleted_url_is_never_probed_again(backend: Backend) {
    let target = Target::start().await;
    let app = spawn_app_with(backend, prober_settings).await;
    let (_, token) = app.user().await;
    let u = app
        .add_url_every(&token, &target.url("/ok?deleted"), 1)
        .await;
    app.wait_for_statuses(&token, u.id, 2, Duration::from_secs(10))
        .await;
    app.client
        .clone()
        .delete_url(authed(pb::DeleteUrlRequest { id: u.id }, &token))
        .await
        .unwrap();
    // A probe claimed just before the delete may still land (look-ahead < 1 s).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after_delete = target.hits("/ok?deleted").len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        target.hits("/ok?deleted").len(),
        after_delete,
        "probed after delete"
    );
    expect_code(
        app.client
            .clone()
            .list_statuses(authed(
                pb::ListStatusesRequest {
                    url_id: u.id,
                    ..Default::default()
                },
                &token,
            ))
            .await,
        Code::NotFound,
    );
}

async fn the_ssrf_guard_blocks_loopback_unless_allowed(backend: Backend) {
    let target = Target::start().await;
    let app = spawn_app_with(backend, |s| {
        prober_settings(s);
        s.prober.probe.allow_private_targets = false;
    })
    .await;
    let (_, token) = app.user().await;
    let port = target.addr.port();
    for url in [
        format!("http://127.0.0.1:{port}/ok"),
        format!("http://localhost:{port}/ok"),
        format!("http://[::1]:{port}/ok"),
        format!("http://169.254.169.254:{port}/latest/meta-data"),
        "http://10.0.0.1/".to_owned(),
    ] {
        let u = app.add_url_every(&token, &url, 60).await;
        let s = &app
            .wait_for_statuses(&token, u.id, 1, Duration::from_secs(10))
            .await[0];
        assert_eq!(s.status_code, 0, "{url}");
        assert_eq!(s.error_kind, ErrorKind::Blocked as i32, "{url}: {s:?}");
        // It says how to allow it (issue 19).
        assert!(
            s.error_message
                .contains("MONITOR_ALLOW_PRIVATE_TARGETS=true"),
            "{url}: {}",
            s.error_message
        );
    }
    assert_eq!(target.total_hits(), 0, "nothing reached the target");
}

async fn a_restart_continues_the_schedule(backend: Backend) {
    let target = Target::start().await;
    let mut first = spawn_app_with(backend, |s| {
        prober_settings(s);
        if backend == Backend::Postgres {
            use_redis(s);
        }
    })
    .await;
    let (_, token) = first.user().await;
    let period = 2;
    let u = first
        .add_url_every(&token, &target.url("/ok?restart"), period)
        .await;
    first
        .wait_for_statuses(&token, u.id, 3, Duration::from_secs(10))
        .await;
    first.stop().await;
    let downtime = Duration::from_millis(2500);
    tokio::time::sleep(downtime).await;
    let second = first.sibling(|_| {}).await;
    let before = second.statuses(&token, u.id).await.len();
    let statuses = second
        .wait_for_statuses(&token, u.id, before + 3, Duration::from_secs(15))
        .await;
    let dues: Vec<i64> = statuses.iter().map(|s| ms(s.due_at)).collect();
    // Every due time after the first is on the URL's grid: multiples of the
    // period apart, none repeated, no burst at start-up.
    for pair in dues[1..].windows(2) {
        let gap = pair[1] - pair[0];
        assert!(gap > 0 && gap % (period * 1000) == 0, "due times {dues:?}");
    }
    // Skipped at most the due times that fell in the downtime.
    let skipped: i64 = dues[1..]
        .windows(2)
        .map(|p| (p[1] - p[0]) / (period * 1000) - 1)
        .sum();
    let max_skipped = i64::try_from(downtime.as_millis()).unwrap() / (period * 1000) + 1;
    assert!(
        skipped <= max_skipped,
        "skipped {skipped} due times: {dues:?}"
    );
    assert_eq!(
        target.hits("/ok?restart").len(),
        statuses.len(),
        "every probe recorded once"
    );
}

async fn probes_of_one_host_respect_the_per_host_limit(backend: Backend) {
    let target = Target::start().await;
    let app = spawn_app_with(backend, |s| {
        prober_settings(s);
        s.prober.per_host = 2;
    })
    .await;
    let (_, token) = app.user().await;
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(
            app.add_url_every(&token, &target.url(&format!("/hold?n={i}")), 60)
                .await
                .id,
        );
    }
    for id in ids {
        app.wait_for_statuses(&token, id, 1, Duration::from_secs(10))
            .await;
    }
    let max = target
        .in_flight
        .max
        .load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(max, 2, "at most 2 probes of one host at once");
}

crate::on_both_backends!(
    probes_of_one_host_respect_the_per_host_limit,
    probes_record_status_codes_and_error_kinds,
    probes_follow_redirects_only_when_allowed,
    each_url_is_probed_on_its_period_without_drift,
    a_deleted_url_is_never_probed_again,
    the_ssrf_guard_blocks_loopback_unless_allowed,
    a_restart_continues_the_schedule,
);

/// Two instances on one Postgres and one Redis: each due time probed once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_probe_each_due_time_exactly_once() {
    if crate::helpers::postgres_skipped() {
        return;
    }
    let target = Target::start().await;
    let mut a = spawn_app_with(Backend::Postgres, |s| {
        prober_settings(s);
        use_redis(s);
    })
    .await;
    let mut b = a.sibling(|_| {}).await;
    let (_, token) = a.user().await;
    let mut urls = Vec::new();
    for i in 0..8 {
        urls.push(
            a.add_url_every(&token, &target.url(&format!("/ok?two={i}")), 1)
                .await,
        );
    }
    tokio::time::sleep(Duration::from_secs(6)).await;
    a.stop().await;
    b.stop().await;
    let c = a.sibling(|s| s.prober.enabled = false).await;
    for (i, u) in urls.iter().enumerate() {
        let statuses = c.statuses(&token, u.id).await;
        let hits = target.hits(&format!("/ok?two={i}"));
        assert!(
            statuses.len() >= 4,
            "url {i}: only {} probes in 6 s",
            statuses.len()
        );
        assert_eq!(
            hits.len(),
            statuses.len(),
            "url {i}: hits at the target vs rows stored"
        );
        let dues: HashSet<i64> = statuses.iter().map(|s| ms(s.due_at)).collect();
        assert_eq!(
            dues.len(),
            statuses.len(),
            "url {i}: a due time recorded twice"
        );
    }
}

/// A URL whose row a flush has key-share locked (it inserted a row that
/// references the URL: a rollup bucket, an incident) and not yet committed
/// is still claimed on time: the claim locks `FOR NO KEY UPDATE`, which a
/// key-share lock does not block (with `FOR UPDATE SKIP LOCKED` it was
/// skipped for as long as that flush ran).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_referenced_by_an_unfinished_flush_is_still_claimed() {
    use sea_orm::{ConnectionTrait, Statement, TransactionTrait};
    if crate::helpers::postgres_skipped() {
        return;
    }
    let app = crate::helpers::spawn_app(Backend::Postgres).await;
    let (_, token) = app.user().await;
    let url = app.add_url(&token, "https://example.com/locked").await;
    let due: i64 = chrono::Utc::now().timestamp_millis();
    app.db
        .execute_unprepared(&format!(
            "UPDATE url_schedules SET next_due_ms = {due} WHERE url_id = {}",
            url.id
        ))
        .await
        .unwrap();
    let other = app.open_db().await;
    let flush = other.begin().await.unwrap();
    flush
        .execute_raw(Statement::from_string(
            sea_orm::DbBackend::Postgres,
            format!(
                "INSERT INTO rollups (url_id, tier, bucket_ms, up, degraded, down, sketch) \
                 VALUES ({}, 1, 0, 1, 0, 0, '')",
                url.id
            ),
        ))
        .await
        .unwrap();
    let claims = monitor::store::schedule::claim_due(&app.db, due, 1_000, 5_000, 10)
        .await
        .unwrap();
    flush.rollback().await.unwrap();
    assert_eq!(
        claims.iter().map(|c| c.url_id).collect::<Vec<_>>(),
        vec![url.id],
        "claimed while the flush holds its key-share lock"
    );
}

/// A URL whose schedule row an UpdateUrl holds (`store::url_update` locks
/// it after the URL's row) is skipped by a claim, not waited for; once the
/// update commits, the claim takes the new due time and steps on with the
/// new period, read from the same row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_being_updated_is_skipped_then_claimed_on_its_new_grid() {
    use sea_orm::{ConnectionTrait, TransactionTrait};
    if crate::helpers::postgres_skipped() {
        return;
    }
    let app = crate::helpers::spawn_app(Backend::Postgres).await;
    let (_, token) = app.user().await;
    let url = app.add_url(&token, "https://example.com/updating").await;
    // On the 10 s grid of phase 0 the update below sets.
    let due: i64 = chrono::Utc::now().timestamp_millis() / 10_000 * 10_000;
    let other = app.open_db().await;
    let update = other.begin().await.unwrap();
    for sql in [
        format!("SELECT 1 FROM urls WHERE id = {} FOR NO KEY UPDATE", url.id),
        format!(
            "SELECT 1 FROM url_schedules WHERE url_id = {} FOR NO KEY UPDATE",
            url.id
        ),
        // A period of 10 s on a grid of phase 0, due at `due`.
        format!(
            "UPDATE url_schedules SET next_due_ms = {due}, period_ms = 10000, phase_ms = 0 \
             WHERE url_id = {}",
            url.id
        ),
    ] {
        update.execute_unprepared(&sql).await.unwrap();
    }
    let claim = || monitor::store::schedule::claim_due(&app.db, due, 1_000, 5_000, 10);
    assert!(claim().await.unwrap().is_empty(), "skipped while held");
    update.commit().await.unwrap();
    let claims = claim().await.unwrap();
    assert_eq!(
        claims
            .iter()
            .map(|c| (c.url_id, c.due_ms, c.next_ms, c.period_ms))
            .collect::<Vec<_>>(),
        vec![(url.id, due, due + 10_000, 10_000)]
    );
}
