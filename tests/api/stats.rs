//! GetUrlStats: buckets from the rollup tiers, expected and missed slots,
//! percentiles within 1%, errors, and history that outlives raw retention.

use chrono::{DateTime, Utc};
use monitor::{
    domain::ProbeResult,
    flush::Flusher,
    proto::monitor::v1::{self as pb, Granularity},
    store::outcomes,
};
use sea_orm::{ConnectionTrait, Statement};
use tonic::Code;

use crate::helpers::{Backend, TestApp, authed, spawn_app};

const MINUTE: i64 = 60_000;
const HOUR: i64 = 3_600_000;

fn ts(ms: i64) -> monitor::proto::Timestamp {
    monitor::proto::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: 0,
    }
}

async fn stats(
    app: &TestApp,
    token: &str,
    url_id: i64,
    range: (i64, i64),
    granularity: Granularity,
) -> Result<pb::GetUrlStatsResponse, tonic::Status> {
    app.client
        .clone()
        .get_url_stats(authed(
            pb::GetUrlStatsRequest {
                url_id,
                start_time: Some(ts(range.0)),
                end_time: Some(ts(range.1)),
                granularity: granularity as i32,
            },
            token,
        ))
        .await
        .map(tonic::Response::into_inner)
}

/// Moves a URL's creation and schedule to `t0` on a one-minute grid, as if
/// it had been added then.
pub(crate) async fn backdate(app: &TestApp, url_id: i64, t0: i64) {
    let db = &app.db;
    let created = DateTime::<Utc>::from_timestamp_millis(t0).unwrap();
    let created = match db.get_database_backend() {
        sea_orm::DbBackend::Postgres => format!("'{}'", created.to_rfc3339()),
        _ => format!(
            "'{}'",
            monitor::store::statuses::sqlite_timestamp_text(created)
        ),
    };
    for sql in [
        format!(
            "UPDATE urls SET created_at = {created}, period_seconds = 60, phase_ms = 0 WHERE id = {url_id}"
        ),
        format!(
            "UPDATE url_periods SET since_ms = {t0}, period_seconds = 60, phase_ms = 0 WHERE url_id = {url_id}"
        ),
        // AddUrl's roll mark is the creation time (nothing to roll before).
        format!("UPDATE url_states SET rolled_to_ms = {t0} WHERE url_id = {url_id}"),
    ] {
        db.execute_raw(Statement::from_string(db.get_database_backend(), sql))
            .await
            .unwrap();
    }
}

/// A time as a query parameter: `Z`, no `+` to be read as a space.
fn rfc3339(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn duration_us(d: Option<&pbjson_types::Duration>) -> f64 {
    let d = d.expect("a latency");
    #[allow(clippy::cast_precision_loss)]
    let us = (d.seconds * 1_000_000 + i64::from(d.nanos) / 1000) as f64;
    us
}

/// Two hours of one probe a minute, from a URL backdated to three hours
/// ago: minutes 30..35 missed, 60..70 failing (500), latencies 10..130 ms.
/// Returns the URL, the range and the latencies, sorted.
async fn two_hours(app: &TestApp, token: &str) -> (i64, (i64, i64), Vec<i64>) {
    let url_id = app.add_url(token, "https://example.com/stats").await.id;
    let now = Utc::now().timestamp_millis();
    let t0 = now - now.rem_euclid(HOUR) - 3 * HOUR;
    backdate(app, url_id, t0).await;
    let mut results = Vec::new();
    let mut latencies = Vec::new();
    for k in 0..120_i64 {
        if (30..35).contains(&k) {
            continue;
        }
        let latency_us = 10_000 + (k * 7_919) % 120_000;
        latencies.push(latency_us);
        results.push(ProbeResult {
            url_id,
            due_ms: t0 + k * MINUTE,
            started_us: (t0 + k * MINUTE) * 1000 + 2_000,
            status_code: if (60..70).contains(&k) { 500 } else { 200 },
            latency_us,
            error_kind: None,
            error_message: None,
            ..Default::default()
        });
    }
    // In two batches, the second delivered twice.
    let (a, b) = results.split_at(50);
    for batch in [a, b, b] {
        outcomes::write_batch(&app.db, &batch.iter().collect::<Vec<_>>())
            .await
            .unwrap();
    }
    latencies.sort_unstable();
    (url_id, (t0, t0 + 2 * HOUR), latencies)
}

async fn buckets_count_expected_missed_up_and_down_with_percentiles(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, token) = app.user().await;
    let (url_id, range, latencies) = two_hours(&app, &token).await;
    let hours = stats(&app, &token, url_id, range, Granularity::Hour)
        .await
        .unwrap();
    assert_eq!(hours.granularity(), Granularity::Hour);
    let counts: Vec<_> = hours
        .buckets
        .iter()
        .map(|b| (b.expected, b.up, b.down, b.missed))
        .collect();
    assert_eq!(counts, [(60, 55, 0, 5), (60, 50, 10, 0)]);
    let total = hours.total.as_ref().unwrap();
    assert_eq!(
        (total.expected, total.up, total.down, total.missed),
        (120, 105, 10, 5)
    );
    let uptime = total.uptime.unwrap();
    assert!(
        (uptime - 105.0 / 115.0).abs() < 1e-9,
        "{uptime}: missed are not down"
    );
    for (got, q) in [(&total.p50, 0.5), (&total.p95, 0.95), (&total.p99, 0.99)] {
        #[allow(
            clippy::cast_precision_loss,
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss
        )]
        let want = latencies[(q * (latencies.len() - 1) as f64).floor() as usize] as f64;
        let got = duration_us(got.as_ref());
        assert!(
            (got - want).abs() <= 0.01 * want + 1.0,
            "p{q}: {got} vs {want}"
        );
    }
    #[allow(clippy::cast_precision_loss)]
    let max = *latencies.last().unwrap() as f64;
    assert!(
        (duration_us(total.max.as_ref()) - max).abs() < 1.0,
        "max is exact"
    );

    // The same totals in minutes (auto: 120 buckets) and days.
    let minutes = stats(&app, &token, url_id, range, Granularity::Unspecified)
        .await
        .unwrap();
    assert_eq!(minutes.granularity(), Granularity::Minute);
    assert_eq!(minutes.buckets.len(), 120);
    assert_eq!(minutes.buckets[31].missed, 1);
    assert_eq!(minutes.buckets[61].down, 1);
    assert_eq!(minutes.total, hours.total);
    let days = stats(&app, &token, url_id, range, Granularity::Day)
        .await
        .unwrap();
    let d = days.total.unwrap();
    assert_eq!(
        (d.up, d.down, d.p99, d.max),
        (total.up, total.down, total.p99, total.max)
    );

    // Over JSON.
    let (status, body) = app
        .get_json(
            &format!(
                "/v1/urls/{}/stats?granularity=GRANULARITY_HOUR&startTime={}&endTime={}",
                url_id,
                rfc3339(range.0),
                rfc3339(range.1),
            ),
            Some(&format!("Bearer {token}")),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["total"]["missed"], "5", "{body}");
}

/// Raw statuses go after two days; the hour and day tiers stay. A deleted
/// URL's rollups go with it.
async fn rollups_outlive_raw_retention_and_go_with_their_url(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, token) = app.user().await;
    let (url_id, range, _) = two_hours(&app, &token).await;
    let hours = stats(&app, &token, url_id, range, Granularity::Hour)
        .await
        .unwrap();
    let three_days_on = Utc::now() + chrono::Duration::days(3);
    let settings = monitor::config::Settings::for_tests("unused").flush;
    Flusher::new(
        app.db.clone(),
        std::sync::Arc::new(monitor::buffer::MemoryBuffer::new(1, 1)),
        settings,
    )
    .retention_once(three_days_on)
    .await
    .unwrap();
    assert!(
        app.statuses(&token, url_id).await.is_empty(),
        "raw statuses deleted"
    );
    let kept = stats(&app, &token, url_id, range, Granularity::Hour)
        .await
        .unwrap();
    assert_eq!(
        kept.total, hours.total,
        "the hour tier outlives raw retention"
    );

    app.client
        .clone()
        .delete_url(authed(pb::DeleteUrlRequest { id: url_id }, &token))
        .await
        .unwrap();
    assert_eq!(rollup_rows(&app, url_id).await, 0);
}

#[allow(clippy::too_many_lines)] // one case after another, each short
async fn bad_ranges_and_other_users_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, token) = app.user().await;
    let url_id = app.add_url(&token, "https://example.com/ranges").await.id;
    let now = Utc::now().timestamp_millis();
    let err = |r: Result<pb::GetUrlStatsResponse, tonic::Status>, code: Code, field: &str| {
        let s = r.unwrap_err();
        assert_eq!(s.code(), code, "{s:?}");
        assert!(s.message().contains(field), "{}", s.message());
    };
    err(
        stats(&app, &token, url_id, (now, now - HOUR), Granularity::Hour).await,
        Code::InvalidArgument,
        "start_time",
    );
    // Minute buckets are kept 48 hours: a range entirely older is refused,
    // one reaching past it starts at the oldest minute kept.
    err(
        stats(
            &app,
            &token,
            url_id,
            (now - 96 * HOUR, now - 72 * HOUR),
            Granularity::Minute,
        )
        .await,
        Code::InvalidArgument,
        "start_time",
    );
    let last_two_days = stats(
        &app,
        &token,
        url_id,
        (now - 72 * HOUR, now),
        Granularity::Minute,
    )
    .await
    .unwrap();
    let first = last_two_days.buckets[0]
        .start_time
        .as_ref()
        .unwrap()
        .seconds
        * 1000;
    assert!(
        first >= now - 48 * HOUR - MINUTE && first <= now - 48 * HOUR + MINUTE,
        "{first}"
    );
    assert!((2_879..=2_881).contains(&last_two_days.buckets.len()));
    // 40 days of minutes would be 57,600 buckets (and are not kept).
    let auto = stats(
        &app,
        &token,
        url_id,
        (now - 40 * 24 * HOUR, now),
        Granularity::Unspecified,
    )
    .await
    .unwrap();
    assert_eq!(auto.granularity(), Granularity::Hour);
    let mut bad = authed(
        pb::GetUrlStatsRequest {
            url_id,
            granularity: 9,
            ..Default::default()
        },
        &token,
    );
    err(
        app.client
            .clone()
            .get_url_stats(bad)
            .await
            .map(tonic::Response::into_inner),
        Code::InvalidArgument,
        "granularity",
    );
    bad = authed(
        pb::GetUrlStatsRequest {
            url_id: 0,
            ..Default::default()
        },
        &token,
    );
    err(
        app.client
            .clone()
            .get_url_stats(bad)
            .await
            .map(tonic::Response::into_inner),
        Code::InvalidArgument,
        "url_id",
    );
    let (_, other) = app.user().await;
    err(
        stats(&app, &other, url_id, (now - HOUR, now), Granularity::Hour).await,
        Code::NotFound,
        "",
    );
    // A fresh URL: one slot expected (its first probe) once it has settled.
    let fresh = stats(
        &app,
        &token,
        url_id,
        (now - HOUR, now),
        Granularity::Unspecified,
    )
    .await
    .unwrap();
    assert!(fresh.total.unwrap().expected <= 1);
}

async fn rollup_rows(app: &TestApp, url_id: i64) -> i64 {
    app.db
        .query_one_raw(Statement::from_string(
            app.db.get_database_backend(),
            format!("SELECT count(*) AS n FROM rollups WHERE url_id = {url_id}"),
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get("", "n")
        .unwrap()
}

/// The flush writes no rollup bucket of its own: the roll pass builds the
/// buckets from the statuses, and what GetUrlStats answers is the same
/// before it (read from the statuses), after it (from the buckets) and
/// with a status stored after the pass went by (merged by the flush),
/// counted once whatever is rolled again.
async fn the_roll_pass_builds_the_buckets_without_changing_an_answer(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, token) = app.user().await;
    let (url_id, range, _) = two_hours(&app, &token).await;
    let answer = |g| stats(&app, &token, url_id, range, g);
    let (hours, days) = (
        answer(Granularity::Hour).await.unwrap(),
        answer(Granularity::Day).await.unwrap(),
    );
    assert_eq!(hours.total.as_ref().unwrap().up, 105, "{hours:?}");
    assert_eq!(rollup_rows(&app, url_id).await, 0, "the flush wrote none");

    // A pass up to the middle of the second hour: the first hour and a
    // half in buckets, the rest read from the statuses.
    let flusher = Flusher::new(
        app.db.clone(),
        std::sync::Arc::new(monitor::buffer::MemoryBuffer::new(1, 1)),
        monitor::config::Settings::for_tests("unused").flush,
    );
    let rolled = monitor::store::rollups::roll(&app.db, range.0 + HOUR + 30 * MINUTE)
        .await
        .unwrap();
    assert_eq!(rolled.statuses, 85, "{rolled:?}");
    assert!(rollup_rows(&app, url_id).await >= 2);
    assert_eq!(answer(Granularity::Hour).await.unwrap(), hours);
    assert_eq!(answer(Granularity::Day).await.unwrap(), days);

    // A status stored late, due before the mark (a slot that was missed):
    // the flush merges it; the answers count it once.
    let late = ProbeResult {
        url_id,
        due_ms: range.0 + 31 * MINUTE,
        started_us: (range.0 + 31 * MINUTE) * 1000 + 2_000,
        status_code: 200,
        latency_us: 50_000,
        ..Default::default()
    };
    outcomes::write_batch(&app.db, &[&late]).await.unwrap();
    let with_late = answer(Granularity::Hour).await.unwrap();
    assert_eq!(with_late.total.as_ref().unwrap().up, 106);
    assert_eq!(with_late.total.as_ref().unwrap().missed, 4);

    // Everything rolled (the flusher's own pass, up to the minute before
    // now): the same answers, the statuses still there.
    let rolled = flusher.roll_once(Utc::now()).await.unwrap();
    assert_eq!(rolled.statuses, 30, "{rolled:?}");
    assert_eq!(answer(Granularity::Hour).await.unwrap(), with_late);
    let again = flusher.roll_once(Utc::now()).await.unwrap();
    assert_eq!(again.statuses, 0, "nothing rolled twice");
    assert_eq!(answer(Granularity::Hour).await.unwrap(), with_late);
    assert_eq!(
        answer(Granularity::Day).await.unwrap().total.unwrap().up,
        106
    );
    assert_eq!(app.statuses(&token, url_id).await.len(), 116);
}

crate::on_both_backends!(
    the_roll_pass_builds_the_buckets_without_changing_an_answer,
    buckets_count_expected_missed_up_and_down_with_percentiles,
    rollups_outlive_raw_retention_and_go_with_their_url,
    bad_ranges_and_other_users_are_refused,
);
