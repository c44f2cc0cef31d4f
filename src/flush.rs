//! The flush task: moves results from the buffer into the database in
//! batches, and deletes statuses past retention.
//!
//! A flush runs every `flush_interval`, or sooner when a full batch has
//! arrived. It reads a batch, writes it in multi-row INSERTs (chunked below
//! the bind-parameter limits of Postgres and SQLite) that skip rows already
//! stored, and acknowledges the batch only after the write succeeded. While
//! the database is down, batches stay in the buffer and are written once it
//! is back. Results for URLs deleted meanwhile are dropped.
//!
//! Retention deletes statuses older than `retention` in bounded batches by
//! the `probed_at` index, a few thousand rows per statement, so it never
//! holds long locks.

use std::{collections::HashSet, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, DatabaseConnection, DbBackend, EntityTrait, QueryFilter, QuerySelect, Set,
    sea_query::{OnConflict, Query},
};
use tokio_util::sync::CancellationToken;

use crate::{
    buffer::Buffer,
    metrics::Metrics,
    prober::ProbeResult,
    store::{statuses, urls},
    telemetry::OutageLog,
};

/// Rows per INSERT: 8 columns each stays below SQLite's 32 766 and
/// Postgres' 65 535 bind parameters.
const INSERT_CHUNK: usize = 4_000;
/// Rows per UNNEST insert on Postgres (arrays have no parameter limit;
/// this bounds one statement's memory and lock time).
const UNNEST_CHUNK: usize = 20_000;
/// Rows per retention DELETE.
const RETENTION_CHUNK: u64 = 5_000;

#[derive(Debug, Clone)]
pub struct FlushSettings {
    pub interval: Duration,
    pub batch: usize,
    pub retention: Duration,
    pub retention_interval: Duration,
}

/// What one flush did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FlushReport {
    pub read: usize,
    pub inserted: u64,
    pub dropped_deleted_urls: usize,
}

#[derive(Debug, Clone)]
pub struct Flusher {
    db: DatabaseConnection,
    buffer: Arc<dyn Buffer>,
    settings: FlushSettings,
    metrics: Arc<Metrics>,
}

impl Flusher {
    pub fn new(db: DatabaseConnection, buffer: Arc<dyn Buffer>, settings: FlushSettings) -> Self {
        Self {
            db,
            buffer,
            settings,
            metrics: Arc::new(Metrics::new()),
        }
    }

    /// Records into `metrics` (the app's) instead of a private set.
    #[must_use]
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
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
            ..FlushReport::default()
        };
        if !batch.results.is_empty() {
            let (inserted, dropped) = store_results(&self.db, &batch.results).await?;
            report.inserted = inserted;
            report.dropped_deleted_urls = dropped;
        }
        self.buffer.ack(batch).await?;
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

    /// Deletes statuses probed before `now - retention`; returns how many.
    pub async fn retention_once(&self, now: DateTime<Utc>) -> anyhow::Result<u64> {
        let retention = chrono::Duration::from_std(self.settings.retention)?;
        let deleted = delete_older_than(&self.db, now - retention).await?;
        self.metrics.retention_deleted.inc_by(deleted);
        Ok(deleted)
    }

    /// Flushes and applies retention until `shutdown`, then drains what is left.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut outage = OutageLog::new("flush");
        // The first pass one interval after start: a restart loop must not
        // turn into a stream of large deletes.
        let mut next_retention = tokio::time::Instant::now() + self.settings.retention_interval;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(self.settings.interval) => {}
                () = self.buffer.batch_ready().wait() => {}
            }
            let result = async {
                while self.flush_once().await?.read >= self.settings.batch {}
                anyhow::Ok(())
            }
            .await;
            outage.record(&result);
            if tokio::time::Instant::now() >= next_retention {
                next_retention += self.settings.retention_interval;
                match self.retention_once(Utc::now()).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(deleted = n, "retention deleted old statuses"),
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
    let ids: Vec<i64> = results
        .iter()
        .map(|r| r.url_id)
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let mut live = HashSet::with_capacity(ids.len());
    for chunk in ids.chunks(INSERT_CHUNK) {
        let found: Vec<i64> = urls::Entity::find()
            .select_only()
            .column(urls::Column::Id)
            .filter(urls::Column::Id.is_in(chunk.iter().copied()))
            .into_tuple()
            .all(db)
            .await?;
        live.extend(found);
    }
    let live: Vec<&ProbeResult> = results
        .iter()
        .filter(|r| live.contains(&r.url_id))
        .collect();
    let dropped = results.len() - live.len();
    let mut inserted = 0;
    if db.get_database_backend() == DbBackend::Postgres {
        // One statement per batch, seven array parameters whatever its size.
        let pool = db.get_postgres_connection_pool();
        for chunk in live.chunks(UNNEST_CHUNK) {
            inserted += insert_unnest(pool, chunk).await?;
        }
    } else {
        for chunk in live.chunks(INSERT_CHUNK) {
            inserted += statuses::Entity::insert_many(chunk.iter().map(|r| to_row(r)))
                .on_conflict(
                    OnConflict::columns([statuses::Column::UrlId, statuses::Column::DueAt])
                        .do_nothing()
                        .to_owned(),
                )
                .exec_without_returning(db)
                .await?;
        }
    }
    Ok((inserted, dropped))
}

/// Inserts rows on Postgres as columns: `INSERT … SELECT FROM UNNEST(…)`
/// binds seven arrays, so the statement is parsed once whatever the batch
/// size and no bind-parameter limit applies.
async fn insert_unnest(pool: &sqlx::PgPool, rows: &[&ProbeResult]) -> anyhow::Result<u64> {
    let ts = |us: i64| DateTime::from_timestamp_micros(us).unwrap_or_default();
    let done = sqlx::query(
        "INSERT INTO statuses (url_id, due_at, probed_at, status_code, latency_micros, error_kind, error_message) \
         SELECT * FROM UNNEST($1::int8[], $2::timestamptz[], $3::timestamptz[], $4::int4[], $5::int8[], $6::int2[], $7::text[]) \
         ON CONFLICT (url_id, due_at) DO NOTHING",
    )
    .bind(rows.iter().map(|r| r.url_id).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| ts(r.due_ms * 1000)).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| ts(r.started_us)).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.status_code).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.latency_us).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.error_kind).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.error_message.clone()).collect::<Vec<_>>())
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

fn to_row(r: &ProbeResult) -> statuses::ActiveModel {
    statuses::ActiveModel {
        url_id: Set(r.url_id),
        due_at: Set(DateTime::from_timestamp_millis(r.due_ms).unwrap_or_default()),
        probed_at: Set(DateTime::from_timestamp_micros(r.started_us).unwrap_or_default()),
        status_code: Set(r.status_code),
        latency_micros: Set(r.latency_us),
        error_kind: Set(r.error_kind),
        error_message: Set(r.error_message.clone()),
        ..Default::default()
    }
}

/// Deletes statuses probed before `cutoff`, in bounded batches.
pub async fn delete_older_than(
    db: &DatabaseConnection,
    cutoff: DateTime<Utc>,
) -> anyhow::Result<u64> {
    let mut total = 0;
    loop {
        let oldest = Query::select()
            .column(statuses::Column::Id)
            .from(statuses::Entity)
            .and_where(statuses::Column::ProbedAt.lt(cutoff))
            .order_by(statuses::Column::ProbedAt, sea_orm::Order::Asc)
            .limit(RETENTION_CHUNK)
            .to_owned();
        let deleted = statuses::Entity::delete_many()
            .filter(statuses::Column::Id.in_subquery(oldest))
            .exec(db)
            .await?
            .rows_affected;
        total += deleted;
        if deleted < RETENTION_CHUNK {
            return Ok(total);
        }
    }
}
