//! The background loops' step functions under paused time: `Prober::tick`
//! (the schedule grid, the lateness skip, backpressure) and the flush loop
//! (its interval, its first retention pass), with the clock moved by the
//! test instead of slept through.
//!
//! The database is a real SQLite file. Paused time jumps to the next timer
//! whenever the runtime is idle, as it is while a query runs on SQLite's own
//! thread; a task that only yields keeps the runtime busy, so time moves
//! when the test advances it and at no other moment, and a query takes no
//! virtual time. Probes go to a loopback address with private targets
//! refused, so each one ends at once as BLOCKED, with no network involved.

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use monitor::{
    buffer::{Buffer, MemoryBuffer},
    config::Settings,
    domain::{Email, Period, ProbeResult, TargetUrl, UrlUpdate, UserId, schedule::second_due},
    flush::Flusher,
    prober::{Clock, Probe, Prober},
    store::{self, statuses, url_update, urls},
};
use sea_orm::{ConnectionTrait, DatabaseConnection, EntityTrait, PaginatorTrait, Statement};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// A fixed wall-clock start on a whole second.
fn start() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

struct Fixture {
    settings: Settings,
    db: DatabaseConnection,
    user: UserId,
    buffer: Arc<MemoryBuffer>,
    _dir: tempfile::TempDir,
}

impl Fixture {
    async fn new(customize: impl FnOnce(&mut Settings)) -> Self {
        // Keeps the runtime busy: paused time moves only when advanced.
        tokio::spawn(async {
            loop {
                tokio::task::yield_now().await;
            }
        });
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        let mut settings = Settings::for_tests(dir.path());
        settings.prober.tick = Some(Duration::from_millis(200));
        customize(&mut settings);
        let db = monitor::app::open_database(&settings).await.unwrap();
        let email = Email::parse("email", "steps@example.com").unwrap();
        let user = store::users::insert(&db, &email, "x".into(), start())
            .await
            .unwrap()
            .id;
        Self {
            buffer: Arc::new(MemoryBuffer::new(100_000, 100_000)),
            settings,
            db,
            user,
            _dir: dir,
        }
    }

    /// A URL every `period_s` seconds on `phase_ms`, first due at `first_due_ms`.
    async fn url(&self, n: usize, period_s: u64, phase_ms: i64, first_due_ms: i64) -> i64 {
        self.url_to(
            &format!("http://127.0.0.1:9/{n}"),
            period_s,
            phase_ms,
            first_due_ms,
        )
        .await
    }

    /// As [`Fixture::url`], to `target`.
    async fn url_to(&self, target: &str, period_s: u64, phase_ms: i64, first_due_ms: i64) -> i64 {
        let url = TargetUrl::parse("url", target).unwrap();
        let period = Period::parse("period", Some(period_s), self.settings.urls.bounds()).unwrap();
        urls::insert_within_limits(
            &self.db,
            urls::NewUrl {
                user: self.user,
                url: &url,
                period,
                created_at: start(),
                phase_ms,
                next_due_ms: first_due_ms,
                assertions: &monitor::domain::Assertions::default(),
            },
            urls::Limits {
                max_urls: 1_000,
                max_host_rate_micros: i64::MAX,
            },
        )
        .await
        .unwrap()
        .unwrap()
        .id
    }

    /// The tick the fixture sets (whatever the backend).
    fn tick(&self) -> Duration {
        self.settings
            .prober
            .tick
            .expect("the fixture sets the tick")
    }

    fn prober(&self) -> Prober {
        self.prober_on(self.db.clone())
    }

    /// A prober claiming through `db`.
    fn prober_on(&self, db: DatabaseConnection) -> Prober {
        Prober::new(
            db,
            Probe::new(self.settings.prober.probe.clone()).unwrap(),
            self.buffer.clone(),
            self.settings.prober.clone(),
            Arc::new(Notify::new()),
            Arc::default(),
        )
        .with_clock(Clock::tokio_from(start()))
    }

    /// Every result pushed so far.
    async fn results(&self) -> Vec<ProbeResult> {
        let batch = self.buffer.read(usize::MAX).await.unwrap();
        let results = batch.results.clone();
        self.buffer.ack(batch).await.unwrap();
        results
    }
}

/// Lets every task that can run now run, before time moves.
async fn settle() {
    for _ in 0..200 {
        tokio::task::yield_now().await;
    }
}

/// Moves paused time on by `d`, letting every task run before and after.
async fn advance(d: Duration) {
    settle().await;
    tokio::time::advance(d).await;
    settle().await;
}

/// Waits (in real time, paused time standing still) for the claimed probes
/// that are due to finish.
async fn wait_until_idle(prober: &Prober) {
    while prober.pending() > 0 {
        tokio::task::yield_now().await;
    }
}

/// Ticks every `tick` for `span` of paused time, moving time a millisecond
/// at a time so that each probe runs at the millisecond it is due.
async fn tick_for(prober: &Prober, tick: Duration, span: Duration) {
    assert_eq!(ticks_for(prober, tick, span).await, 0, "a tick failed");
}

/// As [`tick_for`]; returns how many ticks failed.
async fn ticks_for(prober: &Prober, tick: Duration, span: Duration) -> usize {
    let step = Duration::from_millis(1);
    let mut elapsed = Duration::ZERO;
    let mut failed = 0;
    while elapsed < span {
        if elapsed.as_millis().is_multiple_of(tick.as_millis()) {
            failed += usize::from(prober.tick().await.is_err());
        }
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        tokio::time::advance(step).await;
        elapsed += step;
    }
    failed
}

/// When a probe due at `due_ms` starts with the default start step on
/// SQLite (`MONITOR_PROBE_START_STEP`, 10 ms): the first multiple of it at
/// or after the due time.
fn on_step(due_ms: i64) -> i64 {
    (due_ms + 9) / 10 * 10
}

#[tokio::test(start_paused = true)]
async fn ticks_probe_every_url_on_its_grid_once_per_due_time() {
    let f = Fixture::new(|s| s.urls.min_period = Duration::from_secs(1)).await;
    let t0 = start().timestamp_millis();
    let phases = [1_000, 4_500, 9_999];
    let mut ids = Vec::new();
    for (n, phase) in phases.iter().enumerate() {
        ids.push(f.url(n, 10, *phase, t0).await);
    }
    let prober = f.prober();
    tick_for(&prober, f.tick(), Duration::from_secs(35)).await;
    wait_until_idle(&prober).await;
    let results = f.results().await;
    for (id, phase) in ids.iter().zip(phases) {
        let mut dues: Vec<i64> = results
            .iter()
            .filter(|r| r.url_id == *id)
            .map(|r| r.due_ms)
            .collect();
        dues.sort_unstable();
        // Due at once, then on the grid from half a period on, every period.
        let mut want = vec![t0, second_due(t0, phase, 10_000)];
        while *want.last().unwrap() + 10_000 <= t0 + 35_000 {
            want.push(want.last().unwrap() + 10_000);
        }
        assert_eq!(dues, want, "URL {id} (phase {phase} ms)");
    }
    // Claimed within the look-ahead, a probe starts at the first step
    // (10 ms by default) at or after its due time: phase 9,999 ms, 1 ms late.
    for r in &results {
        assert_eq!(r.started_us, on_step(r.due_ms) * 1000, "started late");
    }
    assert!(results.iter().any(|r| r.started_us > r.due_ms * 1000));
}

/// UpdateUrl at paused time `since` the prober's clock started.
async fn update_at(f: &Fixture, id: i64, since: Duration, update: UrlUpdate) {
    let now = start() + chrono::Duration::from_std(since).unwrap();
    let updated = url_update::update_for_user(&f.db, f.user, id, &update, now, i64::MAX)
        .await
        .unwrap();
    assert!(
        matches!(updated, url_update::Updated::Url(_)),
        "{updated:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn period_changes_and_a_pause_keep_the_url_on_a_grid_with_no_burst_and_no_gap() {
    let f = Fixture::new(|s| {
        s.urls.min_period = Duration::from_secs(1);
        // No start step: each probe starts at its due time.
        s.prober.start_step = Some(Duration::ZERO);
    })
    .await;
    let t0 = start().timestamp_millis();
    let id = f.url(0, 10, 1_000, t0).await;
    let prober = f.prober();
    let tick = f.tick();
    let every = |s: u64| UrlUpdate {
        period: Some(Period::parse("period", Some(s), f.settings.urls.bounds()).unwrap()),
        ..UrlUpdate::default()
    };
    let paused = |p: bool| UrlUpdate {
        paused: Some(p),
        ..UrlUpdate::default()
    };
    let secs = Duration::from_millis;
    // Every 10 s on phase 1 s: due at 0, 11, 21 s.
    tick_for(&prober, tick, secs(23_500)).await;
    // 4 s from 23.5 s: one new period after the last probe (21 s), then every 4 s.
    update_at(&f, id, secs(23_500), every(4)).await;
    tick_for(&prober, tick, secs(11_000)).await;
    // 8 s from 34.5 s: the last probe was at 33 s, the next is at 41 s.
    update_at(&f, id, secs(34_500), every(8)).await;
    tick_for(&prober, tick, secs(16_000)).await;
    // Paused from 50.5 s to 60.5 s: nothing; resumed at the next point of
    // its grid (1 + 8k s): 65 s.
    update_at(&f, id, secs(50_500), paused(true)).await;
    tick_for(&prober, tick, secs(10_000)).await;
    update_at(&f, id, secs(60_500), paused(false)).await;
    tick_for(&prober, tick, secs(6_000)).await;
    wait_until_idle(&prober).await;
    let results = f.results().await;
    let dues: Vec<i64> = results.iter().map(|r| (r.due_ms - t0) / 1_000).collect();
    assert_eq!(dues, [0, 11, 21, 25, 29, 33, 41, 49, 65]);
    for r in &results {
        assert_eq!(r.started_us, r.due_ms * 1000, "started late");
    }
}

#[tokio::test(start_paused = true)]
async fn due_times_missed_while_down_are_skipped_not_made_up() {
    let f = Fixture::new(|s| s.urls.min_period = Duration::from_secs(1)).await;
    let t0 = start().timestamp_millis();
    let id = f.url(0, 10, 1_000, t0).await;
    let prober = f.prober();
    // Down for a minute: nothing ticks.
    advance(Duration::from_secs(60)).await;
    let report = prober.tick().await.unwrap();
    // The newest grid point (51 s) is 9 s late, past the 5 s allowed:
    // skipped without being claimed.
    assert_eq!(
        (report.claimed, report.skipped_late, report.scheduled),
        (0, 1, 0)
    );
    tick_for(&prober, f.tick(), Duration::from_secs(15)).await;
    wait_until_idle(&prober).await;
    let dues: Vec<i64> = f.results().await.iter().map(|r| r.due_ms).collect();
    assert_eq!(
        dues,
        [t0 + 61_000, t0 + 71_000],
        "no burst for the missed minute, id {id}"
    );
}

/// Overloaded (room for 5 probes), an instance with 10 URLs whose due
/// times were missed and 5 due now claims the 5 it can start in time: the
/// missed ones are moved on in one statement, never claimed, and a missed
/// URL whose newest grid point is still within the lateness is probed at
/// that point.
#[tokio::test(start_paused = true)]
async fn overloaded_an_instance_claims_what_it_can_start_in_time_and_skips_the_rest_unclaimed() {
    let f = Fixture::new(|s| {
        s.urls.min_period = Duration::from_secs(1);
        s.prober.max_pending = Some(5);
    })
    .await;
    let t0 = start().timestamp_millis();
    let prober = f.prober();
    // Due 20 s ago on a 60 s grid: the newest grid point is 20 s late.
    let mut missed = Vec::new();
    for n in 0..10 {
        missed.push(f.url(n, 60, 0, t0).await);
    }
    advance(Duration::from_secs(20)).await;
    let now = t0 + 20_000;
    // Due now, on a grid through now.
    let mut timely = Vec::new();
    for n in 10..15 {
        timely.push(f.url(n, 60, 20_000, now).await);
    }
    // Missed 12 s ago on a 10 s grid: its newest grid point (now - 2 s) is
    // within the 5 s allowed.
    let recent = f.url(15, 10, 8_000, now - 12_000).await;
    let report = prober.tick().await.unwrap();
    assert_eq!(report.skipped_late, 10, "the missed ones, unclaimed");
    assert_eq!(report.claimed, 5, "as many as there is room for");
    wait_until_idle(&prober).await;
    advance(Duration::from_millis(1)).await;
    let report = prober.tick().await.unwrap();
    assert_eq!((report.claimed, report.skipped_late), (1, 0));
    wait_until_idle(&prober).await;
    let results = f.results().await;
    let mut probed_ids: Vec<i64> = results.iter().map(|r| r.url_id).collect();
    probed_ids.sort_unstable();
    let mut want = timely.clone();
    want.push(recent);
    assert_eq!(probed_ids, want, "missed: {missed:?}");
    let late = results.iter().find(|r| r.url_id == recent).unwrap();
    assert_eq!(late.due_ms, now - 2_000, "its newest grid point");
    // The missed ones wait for their next grid point, a minute after t0.
    let next: Vec<i64> =
        f.db.query_all_raw(Statement::from_string(
            f.db.get_database_backend(),
            "SELECT url_id, next_due_ms FROM url_schedules ORDER BY url_id",
        ))
        .await
        .unwrap()
        .into_iter()
        .filter(|row| missed.contains(&row.try_get::<i64>("", "url_id").unwrap()))
        .map(|row| row.try_get("", "next_due_ms").unwrap())
        .collect();
    assert_eq!(next, vec![t0 + 60_000; 10]);
}

/// A buffer whose pushes wait until the test opens the gate (a slow Redis).
#[derive(Debug)]
struct GatedBuffer {
    inner: Arc<MemoryBuffer>,
    gate: tokio::sync::Semaphore,
    waiting: std::sync::atomic::AtomicUsize,
}

#[tonic::async_trait]
impl Buffer for GatedBuffer {
    async fn push(&self, result: ProbeResult) {
        self.waiting
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.gate.acquire().await.unwrap().forget();
        self.inner.push(result).await;
    }
    async fn read(&self, max: usize) -> anyhow::Result<monitor::buffer::Batch> {
        self.inner.read(max).await
    }
    async fn ack(&self, batch: monitor::buffer::Batch) -> anyhow::Result<()> {
        self.inner.ack(batch).await
    }
    async fn backlog(&self) -> anyhow::Result<u64> {
        self.inner.backlog().await
    }
    fn batch_ready(&self) -> &monitor::buffer::BatchTrigger {
        self.inner.batch_ready()
    }
}

/// The concurrency permits bound probes in flight, not the hand-over of
/// their results: with one permit and the buffer stalled, a second probe
/// due at the same time still runs.
#[tokio::test(start_paused = true)]
async fn a_stalled_buffer_does_not_hold_the_probe_permits() {
    let f = Fixture::new(|s| {
        s.prober.concurrency = 1;
        s.prober.per_host = 1;
    })
    .await;
    let t0 = start().timestamp_millis();
    f.url(0, 60, 0, t0 + 300).await;
    f.url(1, 60, 0, t0 + 300).await;
    let gated = Arc::new(GatedBuffer {
        inner: f.buffer.clone(),
        gate: tokio::sync::Semaphore::new(0),
        waiting: std::sync::atomic::AtomicUsize::new(0),
    });
    let prober = Prober::new(
        f.db.clone(),
        Probe::new(f.settings.prober.probe.clone()).unwrap(),
        gated.clone(),
        f.settings.prober.clone(),
        Arc::new(Notify::new()),
        Arc::default(),
    )
    .with_clock(Clock::tokio_from(start()));
    assert_eq!(prober.tick().await.unwrap().claimed, 2);
    advance(Duration::from_millis(300)).await;
    wait_for(|| async { gated.waiting.load(std::sync::atomic::Ordering::SeqCst) == 2 }).await;
    gated.gate.add_permits(2);
    wait_until_idle(&prober).await;
    assert_eq!(f.results().await.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn while_claims_fail_the_held_urls_are_probed_from_memory_on_their_grid() {
    let f = Fixture::new(|s| s.urls.min_period = Duration::from_secs(1)).await;
    let t0 = start().timestamp_millis();
    let a = f.url(0, 2, 500, t0).await;
    let b = f.url(1, 5, 1_000, t0).await;
    // The prober's own pool, closed below as if the database went away.
    let db = monitor::app::open_database(&f.settings).await.unwrap();
    let prober = f.prober_on(db.clone());
    let tick = f.tick();
    tick_for(&prober, tick, Duration::from_secs(10)).await;
    assert_eq!(prober.held(), 2);

    db.close_by_ref().await.unwrap();
    let failed = ticks_for(&prober, tick, Duration::from_secs(30)).await;
    assert_eq!(failed, 150, "every tick of the outage failed to claim");
    // The last tick (at 39.8 s) started what is due up to 42.8 s (its look-ahead
    // plus the claim's timeout); let those run.
    for _ in 0..3_000 {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        tokio::time::advance(Duration::from_millis(1)).await;
    }
    wait_until_idle(&prober).await;
    let results = f.results().await;
    for (id, phase, period) in [(a, 500, 2_000), (b, 1_000, 5_000)] {
        let mut dues: Vec<i64> = results
            .iter()
            .filter(|r| r.url_id == id)
            .map(|r| r.due_ms)
            .collect();
        dues.sort_unstable();
        let mut want = vec![t0, second_due(t0, phase, period)];
        while *want.last().unwrap() + period <= t0 + 42_800 {
            want.push(want.last().unwrap() + period);
        }
        assert_eq!(dues, want, "URL {id}: its grid, through the outage");
    }
    for r in &results {
        assert_eq!(r.started_us, on_step(r.due_ms) * 1000, "started late");
    }
}

/// Overloaded, a claim leaves room for the queue its probes join. With
/// the one permit taken and the latest probe having waited 2 s for it, a
/// due time 3.5 s late (within the 5 s allowed, but not after another 2 s
/// in the queue) is moved on unclaimed, where it used to be claimed and
/// then skipped at its permit; once the queue is gone, the whole lateness
/// counts again.
#[tokio::test(start_paused = true)]
async fn overloaded_a_claim_leaves_room_for_the_queue_its_probes_join() {
    // A target that answers after 2 s of paused time.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = hits.clone();
    let server = tokio::spawn(async move {
        let slow = move || {
            let counted = counted.clone();
            async move {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(2)).await;
                "ok"
            }
        };
        let app = axum::Router::new().route("/", axum::routing::get(slow));
        axum::serve(listener, app).await.unwrap();
    });
    let hit = |n: usize| {
        let hits = hits.clone();
        move || {
            let hits = hits.clone();
            async move { hits.load(std::sync::atomic::Ordering::SeqCst) == n }
        }
    };
    let f = Fixture::new(|s| {
        s.prober.probe.allow_private_targets = true;
        s.prober.concurrency = 1;
    })
    .await;
    let target = |n: usize| format!("http://127.0.0.1:{port}/?n={n}");
    let t0 = start().timestamp_millis();
    let prober = f.prober();
    // Two due now: the first takes the one permit for 2 s, the second
    // waits those 2 s for it.
    let first = f.url_to(&target(0), 60, 0, t0).await;
    let second = f.url_to(&target(1), 60, 0, t0).await;
    assert_eq!(prober.tick().await.unwrap().claimed, 2);
    wait_for(hit(1)).await;
    advance(Duration::from_secs(2)).await;
    wait_for(hit(2)).await;
    // Now (t0 + 2 s): due 3.5 s ago, and due in 100 ms.
    let stale = f.url_to(&target(2), 60, 58_500, t0 - 1_500).await;
    let timely = f.url_to(&target(3), 60, 2_100, t0 + 2_100).await;
    let report = prober.tick().await.unwrap();
    assert_eq!(
        (report.claimed, report.skipped_late),
        (1, 1),
        "the due time 3.5 s late is moved on, not claimed"
    );
    advance(Duration::from_secs(2)).await;
    wait_for(hit(3)).await;
    advance(Duration::from_secs(2)).await;
    wait_until_idle(&prober).await;
    // Now (t0 + 6 s) no probe waits: a due time 4 s late is claimed.
    let late = f.url_to(&target(4), 60, 2_000, t0 + 2_000).await;
    let report = prober.tick().await.unwrap();
    assert_eq!((report.claimed, report.skipped_late), (1, 0));
    wait_for(hit(4)).await;
    advance(Duration::from_secs(2)).await;
    wait_until_idle(&prober).await;
    let mut ids: Vec<i64> = f.results().await.iter().map(|r| r.url_id).collect();
    ids.sort_unstable();
    assert_eq!(ids, [first, second, timely, late], "not {stale}");
    server.abort();
}

#[tokio::test(start_paused = true)]
async fn an_instance_claims_no_more_than_it_can_finish() {
    let f = Fixture::new(|s| s.prober.max_pending = Some(5)).await;
    let t0 = start().timestamp_millis();
    for n in 0..12 {
        f.url(n, 60, 0, t0 + 300).await;
    }
    let prober = f.prober();
    // Due within the look-ahead: claimed, then waiting for their time.
    assert_eq!(prober.tick().await.unwrap().claimed, 5);
    assert_eq!(prober.pending(), 5);
    assert_eq!(prober.tick().await.unwrap().claimed, 0, "no room");
    advance(Duration::from_millis(300)).await;
    wait_until_idle(&prober).await;
    assert_eq!(prober.tick().await.unwrap().claimed, 5);
    wait_until_idle(&prober).await;
    assert_eq!(prober.tick().await.unwrap().claimed, 2);
    wait_until_idle(&prober).await;
    assert_eq!(f.results().await.len(), 12);
}

#[tokio::test(start_paused = true)]
async fn the_flush_loop_writes_each_interval_and_retention_waits_one_interval() {
    let f = Fixture::new(|s| {
        s.flush.interval = Duration::from_secs(1);
        s.flush.retention_interval = Duration::from_secs(60);
        s.flush.rollup_interval = Duration::from_secs(30);
    })
    .await;
    // Retention compares with the system's clock: statuses of today.
    let t0 = Utc::now().timestamp_millis();
    let id = f.url(0, 60, 0, i64::MAX).await;
    // Nothing of it rolled yet (AddUrl's mark is its creation; a restored
    // URL's may be older): the roll pass has its status of long ago to add.
    sea_orm::ConnectionTrait::execute_unprepared(
        &f.db,
        &format!("UPDATE url_states SET rolled_to_ms = 0 WHERE url_id = {id}"),
    )
    .await
    .unwrap();
    // A status from long ago, for retention.
    let old = Utc::now() - chrono::Duration::days(3);
    let result = |due_ms: i64| ProbeResult {
        url_id: id,
        due_ms,
        started_us: due_ms * 1000,
        status_code: 200,
        latency_us: 1_000,
        error_kind: None,
        error_message: None,
        ..Default::default()
    };
    store::outcomes::write_batch(&f.db, &[&result(old.timestamp_millis())])
        .await
        .unwrap();
    let flusher = Flusher::new(f.db.clone(), f.buffer.clone(), f.settings.flush.clone());
    let stop = CancellationToken::new();
    let run = tokio::spawn(flusher.run(stop.clone()));
    for i in 0..3 {
        f.buffer.push(result(t0 + i)).await;
    }
    let stored = || async { statuses::Entity::find().count(&f.db).await.unwrap() };
    advance(Duration::from_millis(999)).await;
    assert_eq!(stored().await, 1, "nothing flushed before the interval");
    advance(Duration::from_millis(1)).await;
    wait_for(|| async { stored().await == 4 }).await;
    // The URL's roll mark: the roll pass moves it every rollup interval.
    let mark = || async {
        sea_orm::ConnectionTrait::query_one_raw(
            &f.db,
            sea_orm::Statement::from_string(
                f.db.get_database_backend(),
                format!("SELECT rolled_to_ms FROM url_states WHERE url_id = {id}"),
            ),
        )
        .await
        .unwrap()
        .unwrap()
        .try_get::<i64>("", "rolled_to_ms")
        .unwrap()
    };
    advance(Duration::from_secs(28)).await;
    assert_eq!(mark().await, 0, "no roll pass in the first interval");
    advance(Duration::from_secs(2)).await;
    wait_for(|| async { mark().await > old.timestamp_millis() }).await;
    advance(Duration::from_secs(28)).await;
    assert_eq!(stored().await, 4, "no retention pass in the first interval");
    advance(Duration::from_secs(2)).await;
    wait_for(|| async { stored().await == 3 }).await;
    stop.cancel();
    run.await.unwrap();
}

/// The canary loop (`Prober::run` starts it beside the ticks): a round at
/// once, then one every `canary_interval` of paused time. While its only
/// canary refuses connections the prober doubts itself; once the canary
/// answers, the doubt lasts until the next round and no longer.
#[tokio::test(start_paused = true)]
async fn canary_rounds_run_every_interval_and_end_the_doubt_at_the_first_answer() {
    // A loopback port that refuses until the test listens on it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let f = Fixture::new(|s| {
        s.prober.probe.allow_private_targets = true;
        s.prober.doubt.canary_urls = vec![format!("http://127.0.0.1:{port}/")];
        s.prober.doubt.canary_interval = Duration::from_secs(5);
    })
    .await;
    let prober = f.prober();
    let stop = CancellationToken::new();
    let run = tokio::spawn(prober.clone().run(stop.clone(), Duration::from_secs(1)));
    let canary = monitor::prober::doubt::Reason::Canary;
    wait_for(|| async { prober.doubts() == vec![canary] }).await;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let server = tokio::spawn(async move {
        let app = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
        axum::serve(listener, app).await.unwrap();
    });
    // The canary answers now, but no round has run since.
    advance(Duration::from_millis(4_900)).await;
    // Real time for a round to show, had one started.
    let until = std::time::Instant::now() + Duration::from_millis(300);
    while std::time::Instant::now() < until {
        tokio::task::yield_now().await;
    }
    assert_eq!(
        prober.doubts(),
        vec![canary],
        "no round before the interval"
    );
    advance(Duration::from_millis(100)).await;
    wait_for(|| async { prober.doubts().is_empty() }).await;
    stop.cancel();
    run.await.unwrap();
    server.abort();
}

/// Waits in real time, paused time standing still, until `done`.
async fn wait_for<F, Fut>(done: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !done().await {
        assert!(std::time::Instant::now() < deadline, "not done within 10 s");
        tokio::task::yield_now().await;
    }
}
