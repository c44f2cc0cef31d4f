//! The flush task: moves results from the buffer into the database in
//! batches, and deletes statuses past retention.
//!
//! A flush runs every `flush_interval`, or sooner when a full batch has
//! arrived. It reads a batch, writes it and what it changes in the URLs'
//! states and incidents in one transaction (`store::outcomes::write_judged`,
//! skipping rows already stored), and acknowledges the batch only after the
//! commit. While
//! the database is down, batches stay in the buffer and are written once it
//! is back. Results for URLs deleted meanwhile are dropped.
//!
//! Retention lets statuses older than `retention` go: on Postgres it drops
//! the day partitions wholly past it (no row is deleted, no index touched)
//! and creates the next days' partitions ahead; on SQLite it deletes rows in
//! `rowid` order, a few thousand per statement, so it never holds long
//! locks.

use std::{collections::HashSet, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use sea_orm::DatabaseConnection;
use tokio_util::sync::CancellationToken;

use crate::{
    buffer::Buffer,
    domain::{ProbeResult, maintenance::WindowCache, rollup::Tier},
    error::{SettingsError, check_setting},
    live::{LiveEvent, Publisher},
    metrics::Metrics,
    store::{self, rollups, statuses, urls},
    telemetry::OutageLog,
};

/// When and how much to flush, and how long statuses are kept.
#[derive(Debug, Clone, clap::Args)]
pub struct FlushSettings {
    /// Flush results to the database at least this often (100m at most).
    #[arg(long = "flush-interval", env = "MONITOR_FLUSH_INTERVAL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub interval: Duration,

    /// Results per flush batch; a full batch flushes at once.
    #[arg(
        long = "flush-batch",
        env = "MONITOR_FLUSH_BATCH",
        default_value_t = 20_000
    )]
    pub batch: usize,

    /// Statuses older than this are deleted.
    #[arg(long = "retention", env = "MONITOR_RETENTION", default_value = "2days", value_parser = humantime::parse_duration)]
    pub retention: Duration,

    /// How often retention runs.
    #[arg(long = "retention-interval", env = "MONITOR_RETENTION_INTERVAL", default_value = "1m", value_parser = humantime::parse_duration)]
    pub retention_interval: Duration,

    /// How often the roll pass adds the statuses stored since the last one
    /// to the hour and day rollup buckets (until then readers add them
    /// from the statuses).
    #[arg(long = "rollup-interval", env = "MONITOR_ROLLUP_INTERVAL", default_value = "10m", value_parser = humantime::parse_duration)]
    pub rollup_interval: Duration,

    /// How long hour rollup buckets are kept.
    #[arg(long = "rollup-hours", env = "MONITOR_ROLLUP_HOURS", default_value = "90days", value_parser = humantime::parse_duration)]
    pub rollup_hours: Duration,

    /// How long day rollup buckets are kept.
    #[arg(long = "rollup-days", env = "MONITOR_ROLLUP_DAYS", default_value = "730days", value_parser = humantime::parse_duration)]
    pub rollup_days: Duration,
}

impl FlushSettings {
    pub fn validate(&self) -> Result<(), SettingsError> {
        check_setting(
            (Duration::from_millis(10)..=crate::domain::period::MAX_PERIOD_LIMIT)
                .contains(&self.interval),
            "MONITOR_FLUSH_INTERVAL",
            "must be between 10ms and 100m",
        )?;
        check_setting(
            (1..=100_000).contains(&self.batch),
            "MONITOR_FLUSH_BATCH",
            "must be between 1 and 100000",
        )?;
        check_setting(
            self.retention >= Duration::from_secs(60),
            "MONITOR_RETENTION",
            "must be at least 1m",
        )?;
        check_setting(
            self.retention_interval >= Duration::from_secs(1),
            "MONITOR_RETENTION_INTERVAL",
            "must be at least 1s",
        )?;
        check_setting(
            (Duration::from_secs(1)..=Duration::from_secs(3_600)).contains(&self.rollup_interval),
            "MONITOR_ROLLUP_INTERVAL",
            "must be between 1s and 1h",
        )?;
        for tier in Tier::STORED {
            let (name, kept) = self.rollup_setting(tier);
            let width = Duration::from_millis(u64::try_from(tier.width_ms()).unwrap_or(0));
            check_setting(
                kept >= width * 2 && kept <= Duration::from_secs(100 * 366 * 86_400),
                name,
                "must be at least two buckets and at most 100 years",
            )?;
        }
        Ok(())
    }

    /// How long `tier`'s buckets are kept, and the setting's name.
    pub fn rollup_setting(&self, tier: Tier) -> (&'static str, Duration) {
        match tier {
            // Minute buckets are read from the raw statuses.
            Tier::Minute => ("MONITOR_RETENTION", self.retention),
            Tier::Hour => ("MONITOR_ROLLUP_HOURS", self.rollup_hours),
            Tier::Day => ("MONITOR_ROLLUP_DAYS", self.rollup_days),
        }
    }
}

/// What one flush did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FlushReport {
    pub read: usize,
    /// The buffer may hold more already (the read stopped at a limit).
    pub more: bool,
    pub inserted: u64,
    pub dropped_deleted_urls: usize,
}

#[derive(Debug, Clone)]
pub struct Flusher {
    db: DatabaseConnection,
    buffer: Arc<dyn Buffer>,
    settings: FlushSettings,
    metrics: Arc<Metrics>,
    /// Where state changes and incident events go once committed.
    live: Option<Publisher>,
    /// This instance's maintenance windows, kept from batch to batch.
    windows: Arc<WindowCache>,
    /// Set while closed days are being packed (beside the flush).
    packing: Arc<std::sync::atomic::AtomicBool>,
    /// Set while a roll pass runs (beside the flush).
    rolling: Arc<std::sync::atomic::AtomicBool>,
}

impl Flusher {
    pub fn new(db: DatabaseConnection, buffer: Arc<dyn Buffer>, settings: FlushSettings) -> Self {
        Self {
            db,
            buffer,
            settings,
            metrics: Arc::new(Metrics::new()),
            live: None,
            windows: Arc::default(),
            packing: Arc::default(),
            rolling: Arc::default(),
        }
    }

    /// Records into `metrics` (the app's) instead of a private set.
    #[must_use]
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Publishes each batch's state changes and incident events to live
    /// watchers, after the batch is committed and acknowledged.
    #[must_use]
    pub fn with_live(mut self, live: Publisher) -> Self {
        self.live = Some(live);
        self
    }

    /// Moves one batch from the buffer to the database.
    pub async fn flush_once(&self) -> anyhow::Result<FlushReport> {
        let result = self.flush_batch().await;
        if result.is_err() {
            self.metrics.flush_failures.inc();
        }
        result
    }

    #[tracing::instrument(name = "flush", skip(self), fields(batch = tracing::field::Empty, inserted = tracing::field::Empty))]
    async fn flush_batch(&self) -> anyhow::Result<FlushReport> {
        let started = std::time::Instant::now();
        self.buffer.retry_local().await;
        let batch = self.buffer.read(self.settings.batch).await?;
        let mut report = FlushReport {
            read: batch.results.len(),
            more: batch.more,
            ..FlushReport::default()
        };
        let mut notices = Vec::new();
        if !batch.results.is_empty() {
            let (written, dropped) = store_batch(&self.db, &batch.results, &self.windows).await?;
            report.inserted = written.inserted;
            report.dropped_deleted_urls = dropped;
            notices = written.notices;
        }
        self.buffer.ack(batch).await?;
        if let Some(live) = &self.live {
            let events = notices
                .into_iter()
                .map(|n| LiveEvent::Notice(Arc::new(n)))
                .collect();
            live.publish_all(events).await;
        }
        if report.read > 0 {
            let span = tracing::Span::current();
            span.record("batch", report.read);
            span.record("inserted", report.inserted);
            self.metrics.flush_batches.inc();
            self.metrics.flush_rows.inc_by(report.inserted);
            self.metrics
                .flush_duration
                .observe(started.elapsed().as_secs_f64());
            tracing::debug!(read = report.read, inserted = report.inserted, "flushed");
        }
        Ok(report)
    }

    /// Flushes until the buffer is empty (or a flush fails).
    pub async fn drain(&self) -> anyhow::Result<u64> {
        let mut total = 0;
        loop {
            let r = self.flush_once().await?;
            total += r.inserted;
            if r.read == 0 {
                return Ok(total);
            }
        }
    }

    /// Lets statuses due before `now - retention` go (Postgres: the
    /// partitions whose whole day is past it, and partitions for the next
    /// days are created; SQLite: the rows) and rollup buckets past their
    /// tier's horizon, then (SQLite) checkpoints the write-ahead log and
    /// truncates it; returns what went of the statuses.
    ///
    /// SQLite's own checkpoints (every 1,000 pages) copy the log into the
    /// database but rewind it only when no connection still reads an older
    /// snapshot, which a busy pool rarely allows: under steady load the file
    /// grew by ~4 MiB a minute. A `TRUNCATE` checkpoint each retention pass
    /// bounds it to about one interval of writes.
    ///
    /// No status goes before it is rolled: URLs whose roll mark is before
    /// the cutoff are rolled up to it first, and statuses at or after the
    /// lowest mark stay (a URL the roll skipped, its state row held by a
    /// flush, holds the cutoff back until the next pass).
    pub async fn retention_once(&self, now: DateTime<Utc>) -> anyhow::Result<statuses::Retention> {
        let retention = chrono::Duration::from_std(self.settings.retention)?;
        let mut cutoff = now - retention;
        if rollups::rolled_floor(&self.db)
            .await?
            .is_some_and(|floor| floor < cutoff.timestamp_millis())
        {
            rollups::roll(&self.db, cutoff.timestamp_millis()).await?;
        }
        if let Some(floor) = rollups::rolled_floor(&self.db).await? {
            cutoff = cutoff.min(DateTime::from_timestamp_millis(floor).unwrap_or(cutoff));
        }
        let gone = statuses::retain(&self.db, now, cutoff).await?;
        self.metrics.retention_deleted.inc_by(gone.deleted);
        self.metrics
            .retention_dropped_days
            .inc_by(gone.dropped_days);
        for tier in Tier::STORED {
            let kept = chrono::Duration::from_std(self.settings.rollup_setting(tier).1)?;
            let cutoff = tier.bucket_of((now - kept).timestamp_millis());
            rollups::prune(&self.db, tier, cutoff).await?;
        }
        store::checkpoint(&self.db).await?;
        self.pack_in_background(now);
        Ok(gone)
    }

    /// The roll pass (`store::rollups::roll`): every URL's statuses due
    /// up to the start of the minute before `now`'s are added to its hour
    /// and day buckets (a status due later may still be on its way; one
    /// that arrives after the pass is merged by the flush).
    pub async fn roll_once(&self, now: DateTime<Utc>) -> anyhow::Result<rollups::Rolled> {
        let until = Tier::Minute.bucket_of(now.timestamp_millis()) - Tier::Minute.width_ms();
        let rolled = rollups::roll(&self.db, until).await?;
        self.metrics.rollup_statuses.inc_by(rolled.statuses);
        Ok(rolled)
    }

    /// Starts [`Self::roll_once`] beside the flush (a pass at 100,000 URLs
    /// takes seconds, in chunks that let the flush's own transactions in
    /// between), unless the last one still runs.
    fn roll_in_background(&self, now: DateTime<Utc>) {
        use std::sync::atomic::Ordering;
        if self.rolling.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            match this.roll_once(now).await {
                Ok(rolled) => tracing::debug!(
                    urls = rolled.urls,
                    statuses = rolled.statuses,
                    "rolled statuses into hour and day buckets"
                ),
                Err(e) => tracing::warn!(error = format!("{e:#}"), "the roll pass failed"),
            }
            this.rolling.store(false, Ordering::Release);
        });
    }

    /// Starts [`statuses::pack_closed_days`] beside the flush (packing a
    /// day takes minutes at 100,000 URLs, and the flush must not wait for
    /// it), unless the last one still runs.
    fn pack_in_background(&self, now: DateTime<Utc>) {
        use std::sync::atomic::Ordering;
        if self.db.get_database_backend() != sea_orm::DbBackend::Postgres
            || self.packing.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let (db, packing) = (self.db.clone(), self.packing.clone());
        tokio::spawn(async move {
            match statuses::pack_closed_days(&db, now).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(days = n, "packed closed days of statuses"),
                Err(e) => tracing::warn!(error = format!("{e:#}"), "packing closed days failed"),
            }
            packing.store(false, Ordering::Release);
        });
    }

    /// Flushes and applies retention until `shutdown`, then drains what is left.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut outage = OutageLog::new("flush");
        // The first pass one interval after start: a restart loop must not
        // turn into a stream of large deletes.
        let mut next_retention = tokio::time::Instant::now() + self.settings.retention_interval;
        let mut next_roll = tokio::time::Instant::now() + self.settings.rollup_interval;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(self.settings.interval) => {}
                () = self.buffer.batch_ready().wait() => {}
            }
            let result = async {
                while self.flush_once().await?.more {}
                anyhow::Ok(())
            }
            .await;
            outage.record(&result);
            if tokio::time::Instant::now() >= next_roll {
                next_roll += self.settings.rollup_interval;
                self.roll_in_background(Utc::now());
            }
            if tokio::time::Instant::now() >= next_retention {
                next_retention += self.settings.retention_interval;
                match self.retention_once(Utc::now()).await {
                    Ok(statuses::Retention {
                        deleted: 0,
                        dropped_days: 0,
                    }) => {}
                    Ok(gone) => tracing::info!(
                        deleted = gone.deleted,
                        dropped_days = gone.dropped_days,
                        "retention let old statuses go"
                    ),
                    Err(e) => tracing::warn!(error = format!("{e:#}"), "retention failed"),
                }
            }
        }
        match self.drain().await {
            Ok(n) => tracing::info!(inserted = n, "final flush done"),
            Err(e) => tracing::error!(
                error = format!("{e:#}"),
                "final flush failed; results stay in the buffer"
            ),
        }
    }
}

/// Writes results, skipping ones already stored and ones whose URL is gone.
/// Returns (rows inserted, results dropped for deleted URLs).
pub async fn store_results(
    db: &DatabaseConnection,
    results: &[ProbeResult],
) -> anyhow::Result<(u64, usize)> {
    let (written, dropped) = store_batch(db, results, &WindowCache::default()).await?;
    Ok((written.inserted, dropped))
}

/// [`store_results`], with all that the batch wrote.
async fn store_batch(
    db: &DatabaseConnection,
    results: &[ProbeResult],
    windows: &WindowCache,
) -> anyhow::Result<(store::outcomes::Written, usize)> {
    let ids: Vec<i64> = results
        .iter()
        .map(|r| r.url_id)
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let owners = urls::owners_of_ids(db, &ids).await?;
    let live: Vec<&ProbeResult> = results
        .iter()
        .filter(|r| owners.contains_key(&r.url_id))
        .collect();
    let dropped = results.len() - live.len();
    let written = store::outcomes::write_judged(db, &live, &owners, windows).await?;
    Ok((written, dropped))
}
