//! The prober: claims due URLs, probes each at its due time, and hands the
//! results to the buffer.
//!
//! The loop is a step function ([`Prober::tick`]) driven every
//! `schedule_tick`, or at once when AddUrl wakes it. Claims are taken a short
//! look-ahead before they are due; each claimed probe is a task that sleeps
//! until its due time, takes a global and a per-host permit, probes and
//! pushes. So the tasks alive at any moment are the probes due within the
//! look-ahead plus those in flight, never one per URL: the per-URL state is
//! three integers in the database. The probe tasks run on a runtime of
//! their own ([`ProbeRuntime`], `MONITOR_PROBE_THREADS`) on the embedded
//! default, on the service's runtime with Postgres.
//!
//! While claims fail (the database is down or unreachable), the instance
//! probes the URLs it holds, those whose latest due time it claimed, from
//! memory ([`holdings`]), for at most `MONITOR_PROBER_OUTAGE_HOLD`.
//!
//! The prober doubts itself ([`doubt`]): when its canaries fail, or most of
//! its probes fail across many hosts at once, its DNS/connect/timeout
//! failures are recorded `UNKNOWN` (error kind `PROBER_DEGRADED`) instead of
//! `DOWN`. Such failures are held until their window is judged, released by
//! each tick.

pub mod doubt;
mod failure;
pub mod holdings;
mod plain;
pub mod probe;
pub mod ssrf;

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicI64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use chrono::{DateTime, Utc};
use sea_orm::DatabaseConnection;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

pub use doubt::{Doubt, DoubtSettings};
pub use holdings::Holdings;
pub use probe::{Probe, ProbeSettings};

pub use crate::domain::ProbeResult;

use crate::{
    buffer::Buffer,
    domain::Claim,
    error::{SettingsError, check_setting},
    metrics::{Metrics, ProbeLabels},
    proto::monitor::v1::ErrorKind,
    store,
    telemetry::OutageLog,
};

/// Scheduling, concurrency and probe settings.
#[derive(Debug, Clone, clap::Args)]
pub struct ProberSettings {
    /// Run the prober and flush tasks in this instance (off: API only).
    #[arg(long = "prober", env = "MONITOR_PROBER", default_value_t = true, action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    pub enabled: bool,

    /// How often the scheduler claims due URLs. Default: 500ms on the
    /// embedded default (SQLite), where a claim can wait behind a flush's
    /// write for the one writer lock and the longer look-ahead it brings
    /// covers that wait; 200ms with Postgres.
    #[arg(long = "schedule-tick", env = "MONITOR_SCHEDULE_TICK", value_parser = humantime::parse_duration)]
    pub tick: Option<Duration>,

    /// A due time missed by more than this (the service was down) is skipped.
    #[arg(long = "schedule-max-lateness", env = "MONITOR_SCHEDULE_MAX_LATENESS", default_value = "5s", value_parser = humantime::parse_duration)]
    pub max_lateness: Duration,

    /// Probes running at once in this instance.
    #[arg(
        long = "probe-concurrency",
        env = "MONITOR_PROBE_CONCURRENCY",
        default_value_t = 512
    )]
    pub concurrency: usize,

    /// Probes running at once against one host.
    #[arg(
        long = "probe-per-host",
        env = "MONITOR_PROBE_PER_HOST",
        default_value_t = 16
    )]
    pub per_host: usize,

    /// Probes start on a grid of this step: at the first multiple of it at
    /// or after their due time (0: each at its due time). Probes due within
    /// one step start together, so the probe thread wakes once for them
    /// instead of once each; each starts at most this much later than due.
    /// Default: 10ms on the embedded default (SQLite), where the probe
    /// thread took 0.76-0.84x the CPU so at 100,000 URLs a minute; 0 with
    /// Postgres, where the stored rate at 6.5x blackbox_exporter's was not
    /// better with it (README, Performance).
    #[arg(long = "probe-start-step", env = "MONITOR_PROBE_START_STEP", value_parser = humantime::parse_duration)]
    pub start_step: Option<Duration>,

    /// Most claimed probes unfinished at once (default: 16 per concurrent
    /// probe, at least 8192). For tests and tuning.
    #[arg(
        long = "prober-max-pending",
        env = "MONITOR_PROBER_MAX_PENDING",
        hide = true
    )]
    pub max_pending: Option<usize>,

    /// While the database cannot be reached, keep probing the URLs this
    /// instance holds (those whose latest due time it claimed) from memory
    /// for this long (0: stop probing at once).
    #[arg(long = "prober-outage-hold", env = "MONITOR_PROBER_OUTAGE_HOLD", default_value = "1h", value_parser = humantime::parse_duration)]
    pub outage_hold: Duration,

    /// Threads of a runtime of the probes' own (0: probes share the
    /// service's runtime). Default: 1 on the embedded default (SQLite), where
    /// one thread probes 100,000 URLs a minute without waking another; 0 with
    /// Postgres, where a fleet instance probes with every core.
    #[arg(long = "probe-threads", env = "MONITOR_PROBE_THREADS")]
    pub threads: Option<usize>,

    #[command(flatten)]
    pub probe: ProbeSettings,

    #[command(flatten)]
    pub doubt: DoubtSettings,
}

/// Most threads `MONITOR_PROBE_THREADS` may ask for.
const MAX_PROBE_THREADS: usize = 64;

/// A runtime of the probes' own, on threads of its own (`monitor-probes`):
/// probe tasks wake only each other, never the threads serving the API,
/// claiming and flushing. On one thread it has no work stealing, and no
/// wake-ups between worker threads: the embedded default at 100,000 URLs
/// took 0.91-0.95x the CPU so (README, issue 18 part 3). Its threads stop
/// when it is dropped (the prober holding it is gone); tasks still on it
/// then are dropped.
#[derive(Debug)]
pub struct ProbeRuntime {
    handle: tokio::runtime::Handle,
    stop: CancellationToken,
}

impl ProbeRuntime {
    /// Starts a runtime on `threads` (at least 1) threads of its own.
    pub fn start(threads: usize) -> std::io::Result<Self> {
        let mut builder = if threads <= 1 {
            tokio::runtime::Builder::new_current_thread()
        } else {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(threads);
            b
        };
        let runtime = builder.enable_all().thread_name("monitor-probes").build()?;
        let handle = runtime.handle().clone();
        let stop = CancellationToken::new();
        let until = stop.clone();
        // A current-thread runtime runs its tasks only inside `block_on`:
        // this thread sits there (and owns the runtime, of either kind)
        // until `stop` is cancelled.
        std::thread::Builder::new()
            .name("monitor-probes".into())
            .spawn(move || runtime.block_on(until.cancelled()))?;
        Ok(Self { handle, stop })
    }
}

impl Drop for ProbeRuntime {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl ProberSettings {
    /// Most URLs claimed in one tick.
    pub const CLAIM_BATCH: u64 = 10_000;

    /// The tick on Postgres unless set.
    pub const TICK_POSTGRES: Duration = Duration::from_millis(200);

    /// The tick on SQLite unless set: its look-ahead (1.1 s) covers a claim
    /// that waits up to 600 ms behind a flush's write for the one writer
    /// lock (with 200 ms, 300 ms did not: README, Performance, part 3).
    pub const TICK_SQLITE: Duration = Duration::from_millis(500);

    /// The tick, given whether the service runs on Postgres (see
    /// [`ProberSettings::tick`]).
    pub fn tick(&self, postgres: bool) -> Duration {
        by_backend(self.tick, postgres, Self::TICK_POSTGRES, Self::TICK_SQLITE)
    }

    /// How far ahead of its due time a probe is claimed, with ticks every
    /// `tick`: two ticks and 100 ms. The claim that covers a due time
    /// starts at least a tick and 100 ms before it, so its probes start on
    /// time even when the claim waits that long for the database.
    pub fn lookahead(tick: Duration) -> Duration {
        tick * 2 + Duration::from_millis(100)
    }

    /// How long a claim may take before the database counts as unreachable
    /// for this tick (the tick then probes from memory).
    pub fn claim_timeout(&self) -> Duration {
        self.max_lateness / 2
    }

    /// The start step on SQLite unless set.
    pub const START_STEP_SQLITE: Duration = Duration::from_millis(10);

    /// The probes' start step, given whether the service runs on Postgres
    /// (see [`ProberSettings::start_step`]).
    pub fn start_step(&self, postgres: bool) -> Duration {
        by_backend(
            self.start_step,
            postgres,
            Duration::ZERO,
            Self::START_STEP_SQLITE,
        )
    }

    /// Threads of the probes' own runtime (0: none), given whether the
    /// service runs on Postgres (see [`ProberSettings::threads`]).
    pub fn threads(&self, postgres: bool) -> usize {
        by_backend(self.threads, postgres, 0, 1)
    }

    /// Most claimed probes unfinished at once (see [`Prober::tick`]): room
    /// for a look-ahead of due probes plus a queue for the permits.
    pub fn max_pending(&self) -> usize {
        self.max_pending
            .unwrap_or_else(|| (self.concurrency * 16).max(8192))
    }

    pub fn validate(&self) -> Result<(), SettingsError> {
        check_setting(
            self.concurrency > 0,
            "MONITOR_PROBE_CONCURRENCY",
            "must be at least 1",
        )?;
        check_setting(
            self.per_host > 0,
            "MONITOR_PROBE_PER_HOST",
            "must be at least 1",
        )?;
        check_setting(
            self.threads.is_none_or(|t| t <= MAX_PROBE_THREADS),
            "MONITOR_PROBE_THREADS",
            "must be between 0 (probes share the service's runtime) and 64",
        )?;
        check_setting(
            self.tick
                .is_none_or(|t| (Duration::from_millis(10)..=Duration::from_secs(1)).contains(&t)),
            "MONITOR_SCHEDULE_TICK",
            "must be between 10ms and 1s",
        )?;
        check_setting(
            self.start_step.is_none_or(|s| s <= Duration::from_secs(1)),
            "MONITOR_PROBE_START_STEP",
            "must be at most 1s (0: each probe starts at its due time)",
        )?;
        check_setting(
            self.max_lateness >= Duration::from_secs(1),
            "MONITOR_SCHEDULE_MAX_LATENESS",
            "must be at least 1s",
        )?;
        self.probe.validate()?;
        self.doubt.validate(self.probe.allow_private_targets)
    }

    /// The rules the prober judges its own doubt by.
    pub fn doubt_rules(&self) -> doubt::Rules {
        doubt::Rules {
            window_ms: millis(self.doubt.mass_failure_window),
            judge_delay_ms: millis(self.doubt.judge_delay(self.probe.timeout)),
            percent: self.doubt.mass_failure_percent,
            min_hosts: self.doubt.mass_failure_min_hosts,
            canaries: !self.doubt.canary_urls.is_empty(),
            max_held: self.max_pending(),
        }
    }
}

/// A setting's value: as set, else its default on the service's backend.
fn by_backend<T>(set: Option<T>, postgres: bool, on_postgres: T, on_sqlite: T) -> T {
    set.unwrap_or(if postgres { on_postgres } else { on_sqlite })
}

/// Wall-clock time as the prober reads it: due times are wall-clock
/// milliseconds shared by every instance through the database.
#[derive(Debug, Clone, Copy, Default)]
pub enum Clock {
    /// The system's clock.
    #[default]
    System,
    /// Follows tokio's clock from `start`: under `tokio::time::pause()`
    /// a test moves it by hand, and the probes' sleeps follow.
    Tokio {
        start: DateTime<Utc>,
        at: tokio::time::Instant,
    },
}

impl Clock {
    /// A clock reading `start` now and following tokio's clock from here.
    pub fn tokio_from(start: DateTime<Utc>) -> Self {
        Self::Tokio {
            start,
            at: tokio::time::Instant::now(),
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Self::System => Utc::now(),
            Self::Tokio { start, at } => {
                *start + chrono::Duration::from_std(at.elapsed()).unwrap_or_default()
            }
        }
    }
}

/// Per-host semaphores, dropped when no probe of the host is running.
#[derive(Debug, Default)]
struct HostLimits {
    per_host: usize,
    hosts: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl HostLimits {
    async fn acquire(&self, host: &str) -> OwnedSemaphorePermit {
        let sem = {
            let mut hosts = self.hosts.lock().expect("host limits poisoned");
            if hosts.len() > 1024 {
                // Forget hosts nobody is probing right now.
                hosts.retain(|_, s| Arc::strong_count(s) > 1);
            }
            hosts
                .entry(host.to_owned())
                .or_insert_with(|| Arc::new(Semaphore::new(self.per_host)))
                .clone()
        };
        sem.acquire_owned().await.expect("semaphore never closed")
    }
}

/// What one tick did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TickReport {
    /// Due times claimed in the database.
    pub claimed: usize,
    /// Probes started (from claims or from memory).
    pub scheduled: usize,
    /// Due times missed by more than the allowed lateness.
    pub skipped_late: usize,
    /// Claimed due times already probed from memory during an outage.
    pub already_probed: usize,
    /// Due times taken from memory because the claim failed.
    pub from_memory: usize,
}

#[derive(Debug, Clone)]
pub struct Prober {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    db: DatabaseConnection,
    probe: Probe,
    buffer: Arc<dyn Buffer>,
    settings: ProberSettings,
    /// How often it claims: the setting, or the backend's default.
    tick: Duration,
    /// The probes' start step (ms): the setting, or the backend's default.
    start_step_ms: i64,
    clock: Clock,
    wake: Arc<Notify>,
    global: Arc<Semaphore>,
    hosts: HostLimits,
    tasks: TaskTracker,
    /// The probes' own runtime (`None`: probes run on the caller's).
    runtime: Option<ProbeRuntime>,
    metrics: Arc<Metrics>,
    /// Claimed probes not finished yet (waiting for their time or a permit,
    /// or running).
    pending: Arc<AtomicUsize>,
    /// How long (ms) the latest probe to start waited for its permits (its
    /// host's, then a global one): about what a new claim's probes wait
    /// behind the queue (see [`claimable_lateness`]).
    queue_wait_ms: AtomicI64,
    /// The URLs this instance probes from memory when claims fail, and
    /// since when (ms) claims have been failing.
    memory: Mutex<Memory>,
    /// Whether the prober trusts its own network, and the failures held
    /// until it knows.
    doubt: Mutex<Doubt>,
}

/// What the prober keeps for an outage.
#[derive(Debug, Default)]
struct Memory {
    holdings: Holdings,
    /// Since when (ms) claims have been failing.
    failing_since: Option<i64>,
}

impl Prober {
    pub fn new(
        db: DatabaseConnection,
        probe: Probe,
        buffer: Arc<dyn Buffer>,
        settings: ProberSettings,
        wake: Arc<Notify>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let rules = settings.doubt_rules();
        let postgres = db.get_database_backend() == sea_orm::DbBackend::Postgres;
        let tick = settings.tick(postgres);
        let start_step_ms = millis(settings.start_step(postgres));
        Self {
            inner: Arc::new(Inner {
                db,
                probe,
                buffer,
                global: Arc::new(Semaphore::new(settings.concurrency)),
                hosts: HostLimits {
                    per_host: settings.per_host,
                    ..HostLimits::default()
                },
                settings,
                tick,
                start_step_ms,
                clock: Clock::System,
                wake,
                tasks: TaskTracker::new(),
                runtime: None,
                metrics,
                pending: Arc::default(),
                queue_wait_ms: AtomicI64::new(0),
                memory: Mutex::default(),
                doubt: Mutex::new(Doubt::new(rules)),
            }),
        }
    }

    /// Reads the time from `clock` instead of the system's (tests).
    #[must_use]
    pub fn with_clock(mut self, clock: Clock) -> Self {
        Arc::get_mut(&mut self.inner)
            .expect("the clock is set before the prober is shared")
            .clock = clock;
        self
    }

    /// Runs probe tasks on `runtime` instead of the caller's runtime.
    #[must_use]
    pub fn with_runtime(mut self, runtime: ProbeRuntime) -> Self {
        Arc::get_mut(&mut self.inner)
            .expect("the runtime is set before the prober is shared")
            .runtime = Some(runtime);
        self
    }

    /// Claimed probes not finished yet.
    pub fn pending(&self) -> usize {
        self.inner.pending.load(Ordering::Relaxed)
    }

    /// URLs this instance would probe from memory if claims failed now.
    pub fn held(&self) -> usize {
        self.memory().holdings.len()
    }

    fn memory(&self) -> std::sync::MutexGuard<'_, Memory> {
        self.inner.memory.lock().expect("prober memory poisoned")
    }

    fn doubt(&self) -> std::sync::MutexGuard<'_, Doubt> {
        self.inner.doubt.lock().expect("prober doubt poisoned")
    }

    /// Why this instance doubts its own network now (empty: it does not).
    pub fn doubts(&self) -> Vec<doubt::Reason> {
        self.doubt().reasons()
    }

    /// Pushes the held failures whose window is judged (all of them when
    /// `all`), `UNKNOWN` when the prober doubted itself; returns how many.
    pub async fn release_judged(&self, all: bool) -> usize {
        let now = self.inner.clock.now().timestamp_millis();
        let (released, reasons) = {
            let mut doubt = self.doubt();
            let released = if all {
                doubt.judge_all()
            } else {
                doubt.judge(now)
            };
            (released, doubt.reasons())
        };
        self.show_doubt(&reasons);
        let m = &self.inner.metrics;
        m.doubt.unknown.inc_by(released.unknown as u64);
        if released.unknown > 0 {
            tracing::warn!(
                unknown = released.unknown,
                ?reasons,
                "the prober doubted its own network: failures recorded UNKNOWN"
            );
        }
        let n = released.results.len();
        for result in released.results {
            self.inner.buffer.push(result).await;
        }
        n
    }

    fn show_doubt(&self, reasons: &[doubt::Reason]) {
        for reason in doubt::Reason::ALL {
            self.inner
                .metrics
                .doubt
                .degraded
                .get_or_create(&crate::metrics::ReasonLabels {
                    reason: reason.label(),
                })
                .set(i64::from(reasons.contains(&reason)));
        }
    }

    /// Probes every canary once and tells the doubt whether any was reached.
    pub async fn canary_round(&self) -> bool {
        let started = self.inner.clock.now();
        let mut set = tokio::task::JoinSet::new();
        for url in &self.inner.settings.doubt.canary_urls {
            let probe = self.inner.probe.clone();
            let url = url.clone();
            set.spawn(async move { probe.run(0, &url, started, started, None).await });
        }
        let mut reached = false;
        while let Some(result) = set.join_next().await {
            if let Ok(r) = result {
                reached |= !doubt::is_network_failure(&r);
            }
        }
        let reasons = {
            let mut doubt = self.doubt();
            let before = doubt.reasons();
            doubt.canary_round(started.timestamp_millis(), reached);
            let after = doubt.reasons();
            if before != after {
                if reached {
                    tracing::info!("a canary answers again: the prober trusts its network");
                } else {
                    tracing::warn!(
                        "every canary failed (DNS/connect/timeout): the prober doubts its own network"
                    );
                }
            }
            after
        };
        self.show_doubt(&reasons);
        reached
    }

    /// Runs canary rounds every interval until `shutdown` (none configured:
    /// returns at once).
    async fn run_canaries(self, shutdown: CancellationToken) {
        if self.inner.settings.doubt.canary_urls.is_empty() {
            return;
        }
        let interval = self.inner.settings.doubt.canary_interval;
        loop {
            self.canary_round().await;
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(interval) => {}
            }
        }
    }

    /// Claims what is due and starts a task for each claim.
    ///
    /// Backpressure: an instance claims only while fewer than
    /// `max_pending` of its claims are unfinished. Overloaded, it leaves due
    /// URLs in the database, where another instance can claim them (or,
    /// missed by more than the allowed lateness, they are skipped), instead
    /// of queueing tasks without bound. It claims only due times it can
    /// still start within the lateness; those missed by more are moved on
    /// first, in one set-based statement that claims nothing
    /// (`store::schedule::skip_missed`), so overload spends no capacity on
    /// probes that would be skipped. "In time" counts the queue for
    /// permits the claim's probes join ([`claimable_lateness`]).
    ///
    /// When the claim fails or takes longer than
    /// [`ProberSettings::claim_timeout`], the held URLs due before the next
    /// tick could run are probed from memory, and the claim's error is
    /// returned; while claims keep failing, each tick does the same before it
    /// tries again.
    pub async fn tick(&self) -> anyhow::Result<TickReport> {
        self.release_judged(false).await;
        let s = &self.inner.settings;
        let pending = self.inner.pending.load(Ordering::Relaxed);
        let room = s.max_pending().saturating_sub(pending);
        if room == 0 {
            return Ok(TickReport::default());
        }
        let mut report = TickReport::default();
        let mut room = room;
        if self.memory().failing_since.is_some() {
            self.probe_from_memory(&mut report, &mut room);
        }
        let now = self.inner.clock.now().timestamp_millis();
        // Fewer probes pending than permits: a new claim's probes queue
        // behind none, whatever the latest wait was.
        let queued =
            (pending >= s.concurrency).then(|| self.inner.queue_wait_ms.load(Ordering::Relaxed));
        let lateness = claimable_lateness(millis(s.max_lateness), queued);
        let limit = ProberSettings::CLAIM_BATCH.min(room as u64);
        let claimed = tokio::time::timeout(s.claim_timeout(), async {
            // Missed due times first, set-based: they cost no claim and no
            // task, and one still within the lateness is claimed just below.
            let skipped = store::schedule::skip_missed(
                &self.inner.db,
                now,
                lateness,
                ProberSettings::CLAIM_BATCH,
            )
            .await?;
            let claims = store::schedule::claim_due(
                &self.inner.db,
                now,
                millis(self.lookahead()),
                lateness,
                limit,
            )
            .await?;
            Ok::<_, sea_orm::DbErr>((skipped, claims))
        })
        .await;
        let claims = match claimed {
            Ok(Ok((skipped, claims))) => {
                if skipped > 0 {
                    report.skipped_late += skipped;
                    self.inner
                        .metrics
                        .probes_skipped_late
                        .inc_by(skipped as u64);
                    tracing::debug!(
                        skipped,
                        "due times missed by more than the lateness; skipped"
                    );
                }
                claims
            }
            Ok(Err(e)) => return Err(self.claim_failed(report, room, e.into())),
            Err(_) => {
                let e = anyhow::anyhow!("claiming due URLs took over {:?}", s.claim_timeout());
                return Err(self.claim_failed(report, room, e));
            }
        };
        report.claimed = claims.len();
        let complete = (claims.len() as u64) < limit;
        let fresh = {
            let mut memory = self.memory();
            if let Some(since) = memory.failing_since.take() {
                tracing::info!(
                    outage_ms = now - since,
                    "database reachable again: claiming from it, not from memory"
                );
            }
            memory
                .holdings
                .claimed(claims, now + millis(self.lookahead()), complete)
        };
        report.already_probed = report.claimed - fresh.len();
        for claim in fresh {
            if now - claim.due_ms > millis(s.max_lateness) {
                report.skipped_late += 1;
                self.inner.metrics.probes_skipped_late.inc();
                tracing::debug!(
                    url_id = claim.url_id,
                    due_ms = claim.due_ms,
                    "due time missed while down; skipped"
                );
                continue;
            }
            report.scheduled += 1;
            self.spawn_fire(claim);
        }
        Ok(report)
    }

    /// A claim failed: marks the outage and, the first time, probes from
    /// memory at once.
    fn claim_failed(
        &self,
        mut report: TickReport,
        mut room: usize,
        error: anyhow::Error,
    ) -> anyhow::Error {
        let now = self.inner.clock.now().timestamp_millis();
        let first = {
            let mut memory = self.memory();
            let first = memory.failing_since.is_none();
            if first {
                memory.failing_since = Some(now);
                tracing::warn!(
                    held = memory.holdings.len(),
                    hold = ?self.inner.settings.outage_hold,
                    "cannot claim from the database: probing the URLs this instance holds from memory"
                );
            }
            first
        };
        if first {
            self.probe_from_memory(&mut report, &mut room);
        }
        if report.from_memory > 0 {
            tracing::debug!(?report, "probed from memory");
        }
        error.context(format!(
            "claiming due URLs ({} probes from memory this tick)",
            report.from_memory
        ))
    }

    /// Starts the held URLs' probes due before the next tick could run,
    /// unless the outage has lasted longer than the hold.
    fn probe_from_memory(&self, report: &mut TickReport, room: &mut usize) {
        let s = &self.inner.settings;
        let now = self.inner.clock.now().timestamp_millis();
        let due = {
            let mut memory = self.memory();
            let since = memory.failing_since.unwrap_or(now);
            if now - since > millis(s.outage_hold) {
                return;
            }
            // The claim that follows may take up to its timeout: cover that too.
            let horizon = now + millis(self.lookahead() + s.claim_timeout());
            memory
                .holdings
                .due(now, horizon, millis(s.max_lateness), *room)
        };
        report.skipped_late += due.skipped_late;
        report.from_memory += due.claims.len();
        report.scheduled += due.claims.len();
        *room -= due.claims.len();
        let m = &self.inner.metrics;
        m.probes_skipped_late.inc_by(due.skipped_late as u64);
        m.probes_from_memory.inc_by(due.claims.len() as u64);
        for claim in due.claims {
            self.spawn_fire(claim);
        }
    }

    fn spawn_fire(&self, claim: Claim) {
        let this = self.clone();
        self.inner.pending.fetch_add(1, Ordering::Relaxed);
        let task = async move {
            this.fire(claim).await;
            this.inner.pending.fetch_sub(1, Ordering::Relaxed);
        };
        match &self.inner.runtime {
            Some(runtime) => drop(self.inner.tasks.spawn_on(task, &runtime.handle)),
            None => drop(self.inner.tasks.spawn(task)),
        }
    }

    async fn fire(&self, claim: Claim) {
        let due_at = claim.due_at();
        let start_ms = start_on_step(claim.due_ms, self.inner.start_step_ms);
        let start_at = DateTime::from_timestamp_millis(start_ms).unwrap_or(due_at);
        let wait = (start_at - self.inner.clock.now())
            .to_std()
            .unwrap_or_default();
        tokio::time::sleep(wait).await;
        let host = url::Url::parse(&claim.url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_default();
        let queued_at = self.inner.clock.now();
        let host_permit = self.inner.hosts.acquire(&host).await;
        let global_permit = self
            .inner
            .global
            .clone()
            .acquire_owned()
            .await
            .expect("never closed");
        let started_at = self.inner.clock.now();
        self.inner.queue_wait_ms.store(
            (started_at - queued_at).num_milliseconds().max(0),
            Ordering::Relaxed,
        );
        // Waited so long for a permit that the probe would be meaningless
        // (overload): skip it, as a restart skips missed due times.
        let late = started_at - due_at;
        if late.num_milliseconds() > millis(self.inner.settings.max_lateness) {
            self.inner.metrics.probes_skipped_late.inc();
            tracing::debug!(
                url_id = claim.url_id,
                late_ms = late.num_milliseconds(),
                "overloaded; skipped"
            );
            return;
        }
        let result = self
            .inner
            .probe
            .run(
                claim.url_id,
                &claim.url,
                due_at,
                started_at,
                claim.assertions.as_deref(),
            )
            .await;
        // The permits bound probes in flight, not the hand-over below: held
        // through it, every probe's slot also waited for the buffer's and
        // the live stream's Redis round trips (a third of the throughput).
        drop(global_permit);
        drop(host_permit);
        self.record(&result);
        tracing::debug!(url_id = claim.url_id, status = result.status_code, kind = ?result.error_kind, verdict = ?result.verdict, "probed");
        // Network failures wait for their window's judgement (see `doubt`).
        let now = self.doubt().observe(result, &host);
        if let Some(result) = now {
            self.inner.buffer.push(result).await;
        }
    }

    fn record(&self, result: &ProbeResult) {
        let m = &self.inner.metrics;
        #[allow(clippy::cast_precision_loss)] // microseconds fit an f64 exactly
        let seconds = |us: i64| us as f64 / 1e6;
        m.schedule_lateness
            .observe(seconds(result.started_us - result.due_ms * 1000).max(0.0));
        m.probe_duration.observe(seconds(result.latency_us));
        let labels = match result.error_kind {
            Some(kind) => ProbeLabels {
                outcome: "error",
                error_kind: ErrorKind::try_from(i32::from(kind)).map_or_else(
                    |_| "other".to_owned(),
                    |k| {
                        k.as_str_name()
                            .trim_start_matches("ERROR_KIND_")
                            .to_lowercase()
                    },
                ),
                status_class: "",
            },
            None => ProbeLabels {
                outcome: "response",
                error_kind: String::new(),
                status_class: match result.status_code {
                    100..=199 => "1xx",
                    200..=299 => "2xx",
                    300..=399 => "3xx",
                    400..=499 => "4xx",
                    _ => "5xx",
                },
            },
        };
        m.probes.get_or_create(&labels).inc();
    }

    /// How far ahead of their due times this prober claims.
    fn lookahead(&self) -> Duration {
        ProberSettings::lookahead(self.inner.tick)
    }

    /// Ticks until `shutdown`, then lets claimed probes finish (at most `grace`).
    pub async fn run(self, shutdown: CancellationToken, grace: Duration) {
        let tick = self.inner.tick;
        let mut outage = OutageLog::new("scheduler");
        self.show_doubt(&[]);
        let canaries = tokio::spawn(self.clone().run_canaries(shutdown.clone()));
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(tick) => {}
                () = self.inner.wake.notified() => {}
            }
            outage.record(&self.tick().await);
        }
        self.inner.tasks.close();
        if tokio::time::timeout(grace, self.inner.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("probes still running at shutdown were abandoned");
        }
        canaries.abort();
        // Failures still held are judged now rather than lost.
        self.release_judged(true).await;
    }
}

/// When a probe due at `due_ms` starts: the first multiple of `step_ms` at
/// or after it (`step_ms` 0 or 1: at `due_ms`).
fn start_on_step(due_ms: i64, step_ms: i64) -> i64 {
    if step_ms <= 1 {
        return due_ms;
    }
    due_ms + (step_ms - due_ms.rem_euclid(step_ms)) % step_ms
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// How late (ms) a due time may be and still be claimed, given the
/// lateness allowed and, when at least as many probes are pending as there
/// are permits, how long the latest probe to start waited for its permits
/// (`queued_ms`).
///
/// A claim's probes start behind that queue. Claims go oldest first, so
/// under overload a claim that ignored the queue took the due times closest
/// to the bound, and they passed it while they waited: claimed, then
/// skipped at their permit, the capacity spent on them lost (at 1.6x its
/// ceiling an instance threw away 5,000 claims a second). Twice the latest
/// wait leaves room for the queue to grow; a due time older than that is
/// moved on by `skip_missed` instead. At least half the lateness stays
/// claimable: the wait may be one host's queue (its per-host limit), and
/// other hosts' due times should not pay for it beyond that.
fn claimable_lateness(max_lateness_ms: i64, queued_ms: Option<i64>) -> i64 {
    let queue = queued_ms.unwrap_or(0).saturating_mul(2);
    max_lateness_ms - queue.min(max_lateness_ms / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_start_on_the_step_at_or_after_their_due_time() {
        assert_eq!(start_on_step(1_000, 10), 1_000, "on the step: on time");
        assert_eq!(start_on_step(1_001, 10), 1_010);
        assert_eq!(start_on_step(1_009, 10), 1_010);
        assert_eq!(start_on_step(-5, 10), 0, "before the epoch too");
        for step in [0, 1] {
            assert_eq!(start_on_step(1_234, step), 1_234, "step {step}: as due");
        }
        for due in 0..1_000 {
            let start = start_on_step(due, 25);
            assert!(start >= due && start - due < 25 && start % 25 == 0);
        }
        let s = parse(&["monitor"]).expect("no flags");
        assert_eq!(s.start_step, None, "unset: the backend decides");
        assert_eq!(s.start_step(false), Duration::from_millis(10), "SQLite");
        assert_eq!(s.start_step(true), Duration::ZERO, "Postgres");
        let s = parse(&["monitor", "--probe-start-step", "25ms"]).expect("a step");
        assert_eq!(
            (s.start_step(false), s.start_step(true)),
            (Duration::from_millis(25), Duration::from_millis(25))
        );
        let s = parse(&["monitor", "--probe-start-step", "2s"]).expect("parses");
        let e = s.validate().expect_err("over a second");
        assert!(e.to_string().contains("MONITOR_PROBE_START_STEP"), "{e}");
        let s = parse(&["monitor", "--probe-start-step", "0s"]).expect("parses");
        assert!(s.validate().is_ok());
    }

    #[test]
    fn a_claim_leaves_room_for_the_queue_it_joins() {
        // No queue (a permit free, or no probe waited): the whole lateness.
        assert_eq!(claimable_lateness(5_000, None), 5_000);
        assert_eq!(claimable_lateness(5_000, Some(0)), 5_000);
        // The latest probe waited 1 s: due times at most 3 s late.
        assert_eq!(claimable_lateness(5_000, Some(1_000)), 3_000);
        // However long the queue, half the lateness stays claimable.
        assert_eq!(claimable_lateness(5_000, Some(2_000)), 2_500);
        assert_eq!(claimable_lateness(5_000, Some(i64::MAX)), 2_500);
    }

    /// The prober's settings alone, parsed from `args` (not
    /// `config::Settings`, which imports this module).
    fn parse(args: &[&str]) -> Result<ProberSettings, clap::Error> {
        #[derive(clap::Parser)]
        struct Args {
            #[command(flatten)]
            prober: ProberSettings,
        }
        <Args as clap::Parser>::try_parse_from(args).map(|a| a.prober)
    }

    #[test]
    fn probes_get_a_thread_of_their_own_only_on_the_embedded_default() {
        let mut s = parse(&["monitor"]).expect("no flags");
        s.threads = None;
        assert_eq!(s.threads(false), 1, "SQLite: one thread of their own");
        assert_eq!(s.threads(true), 0, "Postgres: the service's runtime");
        s.threads = Some(3);
        assert_eq!((s.threads(false), s.threads(true)), (3, 3));
        assert!(s.validate().is_ok());
        s.threads = Some(MAX_PROBE_THREADS + 1);
        let e = s.validate().expect_err("too many threads");
        assert!(e.to_string().contains("MONITOR_PROBE_THREADS"), "{e}");
    }

    #[test]
    fn the_embedded_default_claims_further_ahead() {
        let s = parse(&["monitor"]).expect("no flags");
        assert_eq!(s.tick, None, "unset: the backend decides");
        assert_eq!(s.tick(false), Duration::from_millis(500), "SQLite");
        assert_eq!(s.tick(true), Duration::from_millis(200), "Postgres");
        // Look-ahead: two ticks and 100 ms, so a claim that waits up to a
        // tick for the database still starts its probes on time.
        assert_eq!(
            ProberSettings::lookahead(s.tick(false)),
            Duration::from_millis(1100)
        );
        assert_eq!(
            ProberSettings::lookahead(s.tick(true)),
            Duration::from_millis(500)
        );
        let set = parse(&["monitor", "--schedule-tick", "50ms"]).expect("a tick");
        assert_eq!(
            (set.tick(false), set.tick(true)),
            (Duration::from_millis(50), Duration::from_millis(50))
        );
        for bad in ["5ms", "2s"] {
            let s = parse(&["monitor", "--schedule-tick", bad]).expect("parses");
            let e = s.validate().expect_err(bad);
            assert!(
                e.to_string().contains("MONITOR_SCHEDULE_TICK"),
                "{bad}: {e}"
            );
        }
    }

    /// A guard that reports when it is dropped.
    struct Dropped(std::sync::mpsc::Sender<()>);

    impl Drop for Dropped {
        fn drop(&mut self) {
            let _ = self.0.send(());
        }
    }

    #[test]
    fn a_probe_runtime_runs_tasks_on_its_own_threads_and_stops_when_dropped() {
        for threads in [1, 2] {
            let runtime = ProbeRuntime::start(threads).expect("runtime");
            let (tx, rx) = std::sync::mpsc::channel();
            let (name_tx, name_rx) = std::sync::mpsc::channel();
            runtime.handle.spawn(async move {
                let _ = name_tx.send(std::thread::current().name().map(str::to_owned));
            });
            let name = name_rx
                .recv_timeout(Duration::from_secs(5))
                .expect("the task ran");
            assert_eq!(name.as_deref(), Some("monitor-probes"));
            let guard = Dropped(tx);
            runtime.handle.spawn(async move {
                let _guard = guard;
                std::future::pending::<()>().await;
            });
            drop(runtime);
            rx.recv_timeout(Duration::from_secs(5))
                .expect("a task still waiting is dropped with the runtime");
        }
    }
}
