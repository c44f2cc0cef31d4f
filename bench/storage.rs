//! What a raw status costs on Postgres, and what one retention pass costs,
//! before and after migration 18 (narrow rows, partitioned by day), in one
//! run on one machine:
//!
//!     BENCH_ADMIN_URL=postgres://postgres@127.0.0.1:5432/postgres \
//!     cargo bench --bench storage -- --urls 20000 --minutes 60
//!
//! Two databases are made afresh: `monitor_bench_storage_old`, migrated up
//! to migration 17 (the layout before: `id`, four indexes, wide columns),
//! and `monitor_bench_storage_new`, migrated to the end. Each gets the same
//! statuses: `--urls` URLs probed once a minute for `--minutes` minutes,
//! all due on one UTC day three days back, written a minute at a time (one
//! statement of `--urls` rows, in URL order, as a flush writes a batch);
//! one probe in 100 a connect failure with its message, every other URL
//! https with a certificate expiry.
//!
//! Reported for each: the seconds the inserts took, bytes per row (table
//! and indexes, `pg_total_relation_size` summed over partitions, after
//! `VACUUM`), split into heap and indexes; after, once more when the day
//! has been packed into one row per URL (`store::statuses::pack_closed_days`,
//! what the retention pass starts once a day is over: migration 19), with
//! the seconds and write-ahead log the packing took; then one retention
//! pass over all of it (every row is past two days): before, the
//! statement retention ran until migration 18 (`DELETE` of 5,000 rows at a
//! time by the `probed_at` index, oldest first); after,
//! `store::statuses::retain` (drops the packed day). For both, its seconds and the write-ahead
//! log it wrote (`pg_wal_lsn_diff`, the I/O a replica and the disk see).
//! Last, the old database is filled again and migrated, timed: what the
//! upgrade costs at that size, and the size of the converted rows.

use std::time::Instant;

use chrono::{DurationRound, Utc};
use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};

#[path = "shared/mod.rs"]
#[allow(dead_code)] // this bench runs no server: `arg` is all it needs
mod shared;

use shared::arg;

fn sql(db: &DatabaseConnection, text: String) -> Statement {
    Statement::from_string(db.get_database_backend(), text)
}

async fn scalar_i64(db: &DatabaseConnection, text: &str) -> anyhow::Result<i64> {
    let row = db
        .query_one_raw(sql(db, text.to_owned()))
        .await?
        .ok_or_else(|| anyhow::anyhow!("no row: {text}"))?;
    Ok(row.try_get_by_index(0)?)
}

/// A fresh database `name` on the server of `admin`, migrated by `steps`
/// (`None`: all).
async fn fresh(admin: &str, name: &str, steps: Option<u32>) -> anyhow::Result<DatabaseConnection> {
    let server = Database::connect(admin).await?;
    server
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await?;
    server
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await?;
    server.close().await?;
    let base = admin.rsplit_once('/').map_or(admin, |(b, _)| b);
    let db = Database::connect(format!("{base}/{name}")).await?;
    Migrator::up(&db, steps).await?;
    db.execute_unprepared(
        "INSERT INTO users (email, password_hash, created_at) VALUES ('storage@example.com', 'x', now())",
    )
    .await?;
    Ok(db)
}

/// Adds `urls` URLs to the database's one user; returns the first id.
async fn add_urls(db: &DatabaseConnection, urls: usize) -> anyhow::Result<i64> {
    db.execute_unprepared(&format!(
        "INSERT INTO urls (user_id, url, period_seconds, created_at, phase_ms)
         SELECT (SELECT id FROM users LIMIT 1), 'https://127.0.0.1/' || g, 60, now(), 0
         FROM generate_series(1, {urls}) g"
    ))
    .await?;
    scalar_i64(db, "SELECT min(id) FROM urls").await
}

/// The statuses of minute `m` (0-based) from `day` on for URLs
/// `first..first + urls`, as one statement, in the layout `old` or not.
fn minute(old: bool, first: i64, urls: usize, day: &str, m: usize) -> String {
    let due = format!("timestamptz '{day}' + interval '{m} minutes'");
    // Per URL g and minute: latency 10-60 ms and the probe's start 1-3 ms
    // after its due time, both varying from probe to probe (as measured
    // values do: packed arrays compress only what truly repeats), a
    // failure one probe in 100, https on every other URL.
    let common = format!(
        "FROM generate_series(0, {last}) g, \
         LATERAL (SELECT (g * 7919 + {m} * 104729) % 100 = 0 AS failed, \
                         10000 + (g * 7919 + {m} * 104723) % 50000 AS latency, \
                         1000 + (g * 31 + {m} * 7907) % 2000 AS after_us) f \
         ORDER BY g",
        last = urls - 1
    );
    if old {
        format!(
            "INSERT INTO statuses (url_id, due_at, probed_at, status_code, latency_micros, error_kind, \
                                   error_message, verdict, tls_not_after) \
             SELECT {first} + g, {due}, {due} + after_us * interval '1 microsecond', \
                    CASE WHEN failed THEN 0 ELSE 200 END, latency, \
                    CASE WHEN failed THEN 3 END, CASE WHEN failed THEN 'connection refused' END, \
                    CASE WHEN failed THEN 4 ELSE 2 END, \
                    CASE WHEN g % 2 = 0 THEN timestamptz '2027-03-01' END {common}"
        )
    } else {
        format!(
            "INSERT INTO statuses (url_id, due_at, probed_after_us, latency_micros, status_code, verdict, \
                                   tls_remaining_s, error_kind, error_message) \
             SELECT {first} + g, {due}, after_us, latency, \
                    CASE WHEN failed THEN 0 ELSE 200 END, CASE WHEN failed THEN 4 ELSE 2 END, \
                    CASE WHEN g % 2 = 0 THEN extract(epoch FROM timestamptz '2027-03-01' - {due})::int END, \
                    CASE WHEN failed THEN 3 END, CASE WHEN failed THEN 'connection refused' END {common}"
        )
    }
}

/// Writes every minute; returns the seconds it took.
async fn fill(
    db: &DatabaseConnection,
    old: bool,
    first: i64,
    urls: usize,
    minutes: usize,
    day: &str,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    for m in 0..minutes {
        db.execute_unprepared(&minute(old, first, urls, day, m))
            .await?;
    }
    Ok(started.elapsed().as_secs_f64())
}

/// Table and index bytes of `statuses` (its partitions', if any), after
/// `VACUUM`: (total, heap, indexes, rows).
async fn size(db: &DatabaseConnection) -> anyhow::Result<(i64, i64, i64, i64)> {
    db.execute_unprepared("VACUUM ANALYZE statuses").await?;
    let parts = "(SELECT 'statuses'::regclass AS r UNION ALL \
                  SELECT inhrelid::regclass FROM pg_inherits WHERE inhparent = 'statuses'::regclass)";
    let total = scalar_i64(
        db,
        &format!("SELECT sum(pg_total_relation_size(r))::int8 FROM {parts} p"),
    )
    .await?;
    let heap = scalar_i64(
        db,
        &format!("SELECT sum(pg_table_size(r))::int8 FROM {parts} p"),
    )
    .await?;
    let indexes = scalar_i64(
        db,
        &format!("SELECT sum(pg_indexes_size(r))::int8 FROM {parts} p"),
    )
    .await?;
    let rows = scalar_i64(db, "SELECT count(*) FROM statuses").await?;
    Ok((total, heap, indexes, rows))
}

/// Table (with TOAST) and index bytes of the packed days, and of any day
/// partition left, after `VACUUM`: (total, heap and TOAST, indexes).
async fn packed_size(db: &DatabaseConnection) -> anyhow::Result<(i64, i64, i64)> {
    db.execute_unprepared("VACUUM ANALYZE statuses_packed")
        .await?;
    let (total, heap, indexes, _) = size(db).await?;
    let parts = "(SELECT 'statuses_packed'::regclass AS r UNION ALL SELECT 'statuses_packed_days'::regclass \
                  UNION ALL SELECT inhrelid::regclass FROM pg_inherits WHERE inhparent = 'statuses_packed'::regclass)";
    let of = |f: &str| format!("SELECT sum({f}(r))::int8 FROM {parts} p");
    Ok((
        total + scalar_i64(db, &of("pg_total_relation_size")).await?,
        heap + scalar_i64(db, &of("pg_table_size")).await?,
        indexes + scalar_i64(db, &of("pg_indexes_size")).await?,
    ))
}

async fn wal_lsn(db: &DatabaseConnection) -> anyhow::Result<String> {
    let row = db
        .query_one_raw(sql(db, "SELECT pg_current_wal_lsn()::text".into()))
        .await?
        .ok_or_else(|| anyhow::anyhow!("no lsn"))?;
    Ok(row.try_get_by_index(0)?)
}

async fn wal_since(db: &DatabaseConnection, lsn: &str) -> anyhow::Result<i64> {
    scalar_i64(
        db,
        &format!("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '{lsn}')::int8"),
    )
    .await
}

/// The retention statement before migration 18, until no row is left
/// before `cutoff`: (rows, seconds, WAL bytes).
async fn delete_old_way(db: &DatabaseConnection, cutoff: &str) -> anyhow::Result<(u64, f64, i64)> {
    let lsn = wal_lsn(db).await?;
    let started = Instant::now();
    let mut total = 0;
    loop {
        let deleted = db
            .execute_unprepared(&format!(
                "DELETE FROM statuses WHERE id IN (SELECT id FROM statuses \
                 WHERE probed_at < timestamptz '{cutoff}' ORDER BY probed_at LIMIT 5000)"
            ))
            .await?
            .rows_affected();
        total += deleted;
        if deleted < 5000 {
            break;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok((total, seconds, wal_since(db, &lsn).await?))
}

#[allow(clippy::cast_precision_loss)]
fn per_row(bytes: i64, rows: i64) -> f64 {
    bytes as f64 / rows.max(1) as f64
}

fn layout(secs: f64, (total, heap, indexes, rows): (i64, i64, i64, i64)) -> serde_json::Value {
    #[allow(clippy::cast_precision_loss)]
    let rows_per_s = rows as f64 / secs;
    serde_json::json!({
        "rows": rows,
        "insert_s": secs,
        "insert_rows_per_s": rows_per_s,
        "bytes": total,
        "bytes_per_row": per_row(total, rows),
        "heap_bytes_per_row": per_row(heap, rows),
        "index_bytes_per_row": per_row(indexes, rows),
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let urls = arg("--urls", 20_000);
    let minutes = arg("--minutes", 60);
    let admin = std::env::var("BENCH_ADMIN_URL")?;
    let now = Utc::now();
    let day = (now - chrono::Duration::days(3))
        .duration_trunc(chrono::Duration::days(1))?
        .format("%Y-%m-%d 00:00:00+00")
        .to_string();

    let old = fresh(&admin, "monitor_bench_storage_old", Some(16)).await?;
    let old_first = add_urls(&old, urls).await?;
    let old_fill = fill(&old, true, old_first, urls, minutes, &day).await?;
    let old_size = size(&old).await?;
    let cutoff = (now - chrono::Duration::days(2)).to_rfc3339();
    let (old_deleted, old_retention_s, old_wal) = delete_old_way(&old, &cutoff).await?;

    let new = fresh(&admin, "monitor_bench_storage_new", None).await?;
    let new_first = add_urls(&new, urls).await?;
    monitor::store::statuses::ensure_days(
        &new,
        &monitor::store::statuses::days_spanning(now - chrono::Duration::days(3), now),
    )
    .await?;
    let new_fill = fill(&new, false, new_first, urls, minutes, &day).await?;
    let new_size = size(&new).await?;
    // The day is over: the retention pass packs it (one row per URL).
    let lsn = wal_lsn(&new).await?;
    let started = Instant::now();
    let packed_days = monitor::store::statuses::pack_closed_days(&new, now).await?;
    let pack_s = started.elapsed().as_secs_f64();
    let pack_wal = wal_since(&new, &lsn).await?;
    let packed_size = packed_size(&new).await?;
    let packed_rows = scalar_i64(
        &new,
        "SELECT coalesce(sum(cardinality(due_ms)), 0)::int8 FROM statuses_packed",
    )
    .await?;
    let lsn = wal_lsn(&new).await?;
    let started = Instant::now();
    let gone = monitor::store::statuses::retain(&new, now, now - chrono::Duration::days(2)).await?;
    let new_retention_s = started.elapsed().as_secs_f64();
    let new_wal = wal_since(&new, &lsn).await?;
    let new_left = scalar_i64(&new, "SELECT count(*) FROM statuses").await?;

    // The upgrade itself: the old layout filled again, then migrated.
    fill(&old, true, old_first, urls, minutes, &day).await?;
    let started = Instant::now();
    Migrator::up(&old, None).await?;
    let migrate_s = started.elapsed().as_secs_f64();
    let migrated_size = size(&old).await?;

    let before = layout(old_fill, old_size);
    let after = layout(new_fill, new_size);
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::json!({
            "urls": urls,
            "minutes": minutes,
            "before_migration_18": before,
            "after_migration_18": after,
            "after_migration_19_day_packed": {
                "days": packed_days,
                "statuses": packed_rows,
                "pack_s": pack_s,
                "pack_statuses_per_s": per_row(packed_rows, 1) / pack_s,
                "pack_wal_bytes": pack_wal,
                "bytes_per_status": per_row(packed_size.0, packed_rows),
                "heap_and_toast_bytes_per_status": per_row(packed_size.1, packed_rows),
                "index_bytes_per_status": per_row(packed_size.2, packed_rows),
            },
            "bytes_per_row_before_over_packed": per_row(old_size.0, old_size.3) / per_row(packed_size.0, packed_rows),
            "converted_by_migration_18": {
                "rows": migrated_size.3,
                "migrate_s": migrate_s,
                "bytes_per_row": per_row(migrated_size.0, migrated_size.3),
            },
            "bytes_per_row_before_over_after": per_row(old_size.0, old_size.3) / per_row(new_size.0, new_size.3),
            "insert_rows_per_s_after_over_before": old_fill / new_fill,
            "retention": {
                "before": {"rows_deleted": old_deleted, "seconds": old_retention_s, "wal_bytes": old_wal},
                "after": {"days_dropped": gone.dropped_days, "rows_left": new_left,
                          "seconds": new_retention_s, "wal_bytes": new_wal},
                "seconds_before_over_after": old_retention_s / new_retention_s,
            },
        }))?
    );
    Ok(())
}
