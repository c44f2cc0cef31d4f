//! Rollup buckets (`domain::rollup`): built from the raw statuses by the
//! roll pass ([`roll`]) once per interval, read by GetUrlStats and status
//! pages, pruned per tier by the retention pass.
//!
//! Each URL's `url_states.rolled_to_ms` (migration 20) is its roll mark:
//! its statuses due before the mark are counted in its hour and day
//! buckets, those due at or after it are not yet. So:
//! - the roll pass takes each URL's statuses from its mark up to the pass's
//!   own bound, adds them to the buckets and moves the mark to the bound,
//!   all in one transaction per chunk of URLs;
//! - the flush merges into the buckets only a status due before its URL's
//!   mark (one stored late, after the pass went by: rare); the rest it
//!   leaves to the pass, so a probe costs no rollup write of its own;
//! - every reader ([`read`], [`read_many`], [`sums`]) adds the statuses
//!   at or after each URL's mark (the tail) to what the buckets hold, in
//!   one snapshot with them: what it answers equals a recompute from the
//!   raw statuses at every moment, whether or not a pass has run.
//!
//! The flush and the roll pass both hold the lock on the URLs' `url_states`
//! rows (Postgres `FOR UPDATE`, the pass skipping rows a flush holds;
//! SQLite's writer lock) while they read a mark and write buckets, so a
//! status is counted once: by the flush if the mark had passed it, by the
//! pass otherwise. Retention never lets a status go before it is rolled
//! (`Flusher::retention_once` rolls first and keeps statuses at or after
//! the lowest mark).

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use sea_orm::{
    AccessMode, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr,
    IsolationLevel, Statement, TransactionTrait,
};
use sqlx::{Postgres, Sqlite, Transaction};

use super::{numbered, one_of, statuses::sqlite_timestamp_text};

use crate::domain::{
    rollup::{Bucket, ScheduleSpan, Tier},
    sketch::Sketch,
    state::Outcome,
    verdict::Verdict,
};

/// A bucket's key: URL, tier, bucket start (ms).
pub type Key = (i64, Tier, i64);

/// A status as the buckets count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counted {
    pub url_id: i64,
    pub due_ms: i64,
    pub verdict: Verdict,
    /// The latency of a probe that got a response (any status).
    pub latency_us: Option<u64>,
}

impl Counted {
    /// From a stored status's columns.
    fn of_row(
        url_id: i64,
        due_ms: i64,
        code: i16,
        latency: i32,
        kind: Option<i16>,
        verdict: Option<i16>,
    ) -> Self {
        Self {
            url_id,
            due_ms,
            verdict: Verdict::from_stored(verdict, i32::from(code), kind),
            latency_us: (code > 0).then(|| u64::try_from(latency).unwrap_or(0)),
        }
    }

    /// Adds this status to its bucket of each of `tiers` in `out`. UNKNOWN
    /// counts nowhere (its slot shows as missed).
    fn add_to(&self, out: &mut BTreeMap<Key, Bucket>, tiers: &[Tier]) {
        if self.verdict == Verdict::Unknown {
            return;
        }
        for tier in tiers {
            out.entry((self.url_id, *tier, tier.bucket_of(self.due_ms)))
                .or_default()
                .add(self.verdict, self.latency_us);
        }
    }
}

/// What the flush merges into the stored tiers of a batch's inserted
/// results: those due before their URL's roll mark (`marks`; a URL not in
/// it has none rolled). The others are the roll pass's.
#[allow(clippy::implicit_hasher)]
pub fn deltas(
    per_url: &BTreeMap<i64, Vec<Outcome>>,
    marks: &HashMap<i64, i64>,
) -> BTreeMap<Key, Bucket> {
    let mut out: BTreeMap<Key, Bucket> = BTreeMap::new();
    for (url_id, outcomes) in per_url {
        let mark = marks.get(url_id).copied().unwrap_or(i64::MIN);
        for o in outcomes.iter().filter(|o| o.due_ms < mark) {
            Counted {
                url_id: *url_id,
                due_ms: o.due_ms,
                verdict: o.verdict,
                latency_us: (o.probe.status_code > 0)
                    .then(|| u64::try_from(o.probe.latency_us).unwrap_or(0)),
            }
            .add_to(&mut out, &Tier::STORED);
        }
    }
    out
}

/// A stored row.
type Row = (i64, i16, i64, i32, i32, i32, Option<i64>, Vec<u8>, i32);

fn bucket_from(r: &Row) -> Bucket {
    Bucket {
        up: u64::try_from(r.3).unwrap_or(0),
        degraded: u64::try_from(r.4).unwrap_or(0),
        down: u64::try_from(r.5).unwrap_or(0),
        maintenance: u64::try_from(r.8).unwrap_or(0),
        max_us: r.6.and_then(|m| u64::try_from(m).ok()),
        latency: Sketch::decode(&r.7).unwrap_or_default(),
    }
}

fn count(n: u64) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn max_us(b: &Bucket) -> Option<i64> {
    b.max_us.map(|m| i64::try_from(m).unwrap_or(i64::MAX))
}

/// Adds `deltas` to what the rows hold: the merged buckets to write.
fn merged(mut deltas: BTreeMap<Key, Bucket>, stored: &[Row]) -> BTreeMap<Key, Bucket> {
    for r in stored {
        let Some(tier) = Tier::from_stored(r.1) else {
            continue;
        };
        if let Some(b) = deltas.get_mut(&(r.0, tier, r.2)) {
            b.merge(&bucket_from(r));
        }
    }
    deltas
}

/// Adds `deltas` to what the rows hold: the merged buckets stored already,
/// and the new ones.
#[allow(clippy::type_complexity)]
fn split(
    deltas: BTreeMap<Key, Bucket>,
    stored: &[Row],
) -> (Vec<(Key, Bucket)>, Vec<(Key, Bucket)>) {
    let stored_keys: std::collections::HashSet<Key> = stored
        .iter()
        .filter_map(|r| Some((r.0, Tier::from_stored(r.1)?, r.2)))
        .collect();
    merged(deltas, stored)
        .into_iter()
        .partition(|(k, _)| stored_keys.contains(k))
}

const COLUMNS: &str =
    "url_id, tier, bucket_ms, up, degraded, down, latency_max_us, sketch, maintenance";

/// The stored buckets of a batch's keys: a join on the keys, so each is one
/// primary-key lookup (a row-value `IN` over them was planned as a scan).
const JOINED: &str = "r.url_id, r.tier, r.bucket_ms, r.up, r.degraded, r.down, r.latency_max_us, r.sketch, \
     r.maintenance";

const UPDATE_ALL: &str = "DO UPDATE SET up = excluded.up, degraded = excluded.degraded, \
     down = excluded.down, latency_max_us = excluded.latency_max_us, sketch = excluded.sketch, \
     maintenance = excluded.maintenance";

/// Postgres: merges `deltas` into the stored buckets: one read, then one
/// `UPDATE` of the buckets stored already and one `INSERT` of the new ones
/// (an `ON CONFLICT` upsert of all of them took ~20% longer: each row
/// tries the insert first; `bench/flush.rs` at 20,000 URLs).
pub async fn merge_postgres(
    tx: &mut Transaction<'_, Postgres>,
    deltas: BTreeMap<Key, Bucket>,
) -> anyhow::Result<()> {
    if deltas.is_empty() {
        return Ok(());
    }
    let keys = || deltas.keys();
    let stored: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {JOINED} FROM UNNEST($1::int8[], $2::int2[], $3::int8[]) AS k(url_id, tier, bucket_ms) \
         JOIN rollups r ON r.url_id = k.url_id AND r.tier = k.tier AND r.bucket_ms = k.bucket_ms"
    )))
    .bind(keys().map(|k| k.0).collect::<Vec<_>>())
    .bind(keys().map(|k| k.1 as i16).collect::<Vec<_>>())
    .bind(keys().map(|k| k.2).collect::<Vec<_>>())
    .fetch_all(&mut **tx)
    .await?;
    let (old, new) = split(deltas, &stored);
    if !old.is_empty() {
        bind_buckets(
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE rollups r SET up = v.up, degraded = v.degraded, down = v.down, \
                    latency_max_us = v.latency_max_us, sketch = v.sketch, \
                    maintenance = v.maintenance \
                 FROM UNNEST($1::int8[], $2::int2[], $3::int8[], $4::int4[], $5::int4[], \
                             $6::int4[], $7::int8[], $8::bytea[], $9::int4[]) AS v({COLUMNS}) \
                 WHERE r.url_id = v.url_id AND r.tier = v.tier AND r.bucket_ms = v.bucket_ms"
            ))),
            &old,
        )
        .execute(&mut **tx)
        .await?;
    }
    if !new.is_empty() {
        // A bucket another flusher created meanwhile cannot be: the caller
        // holds the lock on these URLs' state rows.
        bind_buckets(
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO rollups ({COLUMNS}) \
                 SELECT * FROM UNNEST($1::int8[], $2::int2[], $3::int8[], $4::int4[], $5::int4[], \
                                      $6::int4[], $7::int8[], $8::bytea[], $9::int4[])"
            ))),
            &new,
        )
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Binds buckets as the nine column arrays `$1..$9` in [`COLUMNS`] order.
fn bind_buckets<'q>(
    query: sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>,
    buckets: &[(Key, Bucket)],
) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
    let col = |f: fn(&(Key, Bucket)) -> i32| buckets.iter().map(f).collect::<Vec<_>>();
    query
        .bind(buckets.iter().map(|(k, _)| k.0).collect::<Vec<_>>())
        .bind(buckets.iter().map(|(k, _)| k.1 as i16).collect::<Vec<_>>())
        .bind(buckets.iter().map(|(k, _)| k.2).collect::<Vec<_>>())
        .bind(col(|(_, b)| count(b.up)))
        .bind(col(|(_, b)| count(b.degraded)))
        .bind(col(|(_, b)| count(b.down)))
        .bind(buckets.iter().map(|(_, b)| max_us(b)).collect::<Vec<_>>())
        .bind(
            buckets
                .iter()
                .map(|(_, b)| b.latency.encode())
                .collect::<Vec<_>>(),
        )
        .bind(col(|(_, b)| count(b.maintenance)))
}

/// SQLite: the same, the keys and rows as JSON (sketches hex-encoded).
pub async fn merge_sqlite(
    tx: &mut Transaction<'_, Sqlite>,
    deltas: BTreeMap<Key, Bucket>,
) -> anyhow::Result<()> {
    if deltas.is_empty() {
        return Ok(());
    }
    let keys: Vec<_> = deltas.keys().map(|k| (k.0, k.1 as i16, k.2)).collect();
    let stored: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {JOINED} FROM json_each(?1) AS k \
         JOIN rollups r ON r.url_id = k.value ->> 0 AND r.tier = k.value ->> 1 \
                       AND r.bucket_ms = k.value ->> 2"
    )))
    .bind(serde_json::to_string(&keys)?)
    .fetch_all(&mut **tx)
    .await?;
    let rows: Vec<_> = merged(deltas, &stored)
        .iter()
        .map(|(k, b)| {
            serde_json::json!([
                k.0,
                k.1 as i16,
                k.2,
                b.up,
                b.degraded,
                b.down,
                max_us(b),
                hex(&b.latency.encode()),
                b.maintenance,
            ])
        })
        .collect();
    // `WHERE true` keeps SQLite from reading ON CONFLICT as a join clause.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO rollups ({COLUMNS}) \
         SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, \
                value ->> 6, unhex(value ->> 7), value ->> 8 \
         FROM json_each(?1) WHERE true \
         ON CONFLICT (url_id, tier, bucket_ms) {UPDATE_ALL}"
    )))
    .bind(serde_json::Value::Array(rows).to_string())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// A read transaction: what it reads of the buckets and of the tail is one
/// snapshot (a roll pass that commits meanwhile moves statuses from the
/// one to the other).
async fn snapshot(db: &DatabaseConnection) -> Result<DatabaseTransaction, DbErr> {
    match db.get_database_backend() {
        DbBackend::Postgres => {
            db.begin_with_config(
                Some(IsolationLevel::RepeatableRead),
                Some(AccessMode::ReadOnly),
            )
            .await
        }
        // A deferred transaction: in WAL mode its first read fixes its
        // snapshot.
        _ => db.begin().await,
    }
}

/// The first bucket start of `tier` at or after `t_ms`.
fn bucket_at_or_after(tier: Tier, t_ms: i64) -> i64 {
    let start = tier.bucket_of(t_ms);
    if start == t_ms {
        start
    } else {
        start + tier.width_ms()
    }
}

/// The tail's buckets of `tier` for `ids` (statuses at or after each URL's
/// mark, in buckets starting in `[from_ms, to_ms)`).
async fn tail_buckets<C: ConnectionTrait>(
    c: &C,
    ids: &[i64],
    tier: Tier,
    from_ms: i64,
    to_ms: i64,
) -> Result<BTreeMap<Key, Bucket>, DbErr> {
    let counted = tail(
        c,
        ids,
        bucket_at_or_after(tier, from_ms),
        bucket_at_or_after(tier, to_ms),
    )
    .await?;
    let mut out = BTreeMap::new();
    for status in &counted {
        status.add_to(&mut out, &[tier]);
    }
    Ok(out)
}

/// One URL's buckets of `tier` starting in `[from_ms, to_ms)`, in order,
/// its tail included.
pub async fn read(
    db: &DatabaseConnection,
    url_id: i64,
    tier: Tier,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<(i64, Bucket)>, DbErr> {
    let backend = db.get_database_backend();
    let txn = snapshot(db).await?;
    let rows = txn
        .query_all_raw(Statement::from_sql_and_values(
            backend,
            numbered(
                backend,
                "SELECT bucket_ms, up, degraded, down, latency_max_us, sketch, maintenance FROM rollups \
                 WHERE url_id = $1 AND tier = $2 AND bucket_ms >= $3 AND bucket_ms < $4 \
                 ORDER BY bucket_ms",
            ),
            [
                url_id.into(),
                (tier as i16).into(),
                from_ms.into(),
                to_ms.into(),
            ],
        ))
        .await?;
    let mut buckets = tail_buckets(&txn, &[url_id], tier, from_ms, to_ms).await?;
    txn.commit().await?;
    for r in &rows {
        let sketch: Vec<u8> = r.try_get("", "sketch")?;
        let start: i64 = r.try_get("", "bucket_ms")?;
        buckets
            .entry((url_id, tier, start))
            .or_default()
            .merge(&bucket_of_row(r, Some(&sketch))?);
    }
    Ok(buckets
        .into_iter()
        .map(|((_, _, start), bucket)| (start, bucket))
        .collect())
}

/// The buckets of `tier` starting in `[from_ms, to_ms)` of several URLs at
/// once, their tails included, ordered by URL and start; with
/// `sketches: false` their latency sketches are left empty (not read, not
/// decoded): counts alone.
///
/// The database returns one row per URL, its buckets joined into one text
/// (`start:up:degraded:down:maintenance:max:sketch-hex`, comma-separated): a page reads
/// thousands of buckets, and a row costs far more to hand over (SQLite's
/// worker thread sends each through a channel) than to parse.
pub async fn read_many(
    db: &DatabaseConnection,
    url_ids: &[i64],
    tier: Tier,
    from_ms: i64,
    to_ms: i64,
    sketches: bool,
) -> Result<Vec<(i64, i64, Bucket)>, DbErr> {
    let backend = db.get_database_backend();
    let (ids, ids_value) = one_of(backend, "url_id", 4, url_ids);
    let (max, sketch, agg) = match backend {
        DbBackend::Postgres => (
            "COALESCE(latency_max_us::text, '')",
            if sketches {
                "encode(sketch, 'hex')"
            } else {
                "''"
            },
            "string_agg",
        ),
        _ => (
            "COALESCE(latency_max_us, '')",
            if sketches { "hex(sketch)" } else { "''" },
            "group_concat",
        ),
    };
    let txn = snapshot(db).await?;
    let rows = txn
        .query_all_raw(Statement::from_sql_and_values(
            backend,
            numbered(
                backend,
                &format!(
                    "SELECT url_id, {agg}(bucket_ms || ':' || up || ':' || degraded || ':' || down \
                                         || ':' || maintenance || ':' || {max} || ':' || {sketch}, ',') AS buckets \
                     FROM rollups WHERE tier = $1 AND bucket_ms >= $2 AND bucket_ms < $3 AND {ids} \
                     GROUP BY url_id"
                ),
            ),
            [
                (tier as i16).into(),
                from_ms.into(),
                to_ms.into(),
                ids_value,
            ],
        ))
        .await?;
    let mut buckets = tail_buckets(&txn, url_ids, tier, from_ms, to_ms).await?;
    txn.commit().await?;
    if !sketches {
        for bucket in buckets.values_mut() {
            bucket.latency = Sketch::default();
        }
    }
    for row in &rows {
        let url_id: i64 = row.try_get("", "url_id")?;
        let joined: String = row.try_get("", "buckets")?;
        for text in joined.split(',').filter(|t| !t.is_empty()) {
            let (start, bucket) = parse_joined(text)
                .ok_or_else(|| DbErr::Type(format!("rollups of URL {url_id}: {text:?}")))?;
            buckets
                .entry((url_id, tier, start))
                .or_default()
                .merge(&bucket);
        }
    }
    // In key order: an ORDER BY inside the aggregate made SQLite sort each
    // URL's rows through a temporary b-tree.
    Ok(buckets
        .into_iter()
        .map(|((url_id, _, start), bucket)| (url_id, start, bucket))
        .collect())
}

/// The statuses of `ids` due in `[from_ms, to_ms)` and at or after their
/// URL's roll mark: what the buckets do not hold yet. Two reads: the marks,
/// then each URL's statuses from the later of its mark and `from_ms` (a
/// range of the primary key per URL).
async fn tail<C: ConnectionTrait>(
    c: &C,
    url_ids: &[i64],
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<Counted>, DbErr> {
    if url_ids.is_empty() || from_ms >= to_ms {
        return Ok(Vec::new());
    }
    let backend = c.get_database_backend();
    let (ids, ids_value) = one_of(backend, "url_id", 1, url_ids);
    let marks: HashMap<i64, i64> = c
        .query_all_raw(Statement::from_sql_and_values(
            backend,
            numbered(
                backend,
                &format!("SELECT url_id, rolled_to_ms FROM url_states WHERE {ids}"),
            ),
            [ids_value],
        ))
        .await?
        .iter()
        .map(|r| Ok((r.try_get("", "url_id")?, r.try_get("", "rolled_to_ms")?)))
        .collect::<Result<_, DbErr>>()?;
    // A URL without a state row has nothing rolled.
    let since: Vec<(i64, i64)> = url_ids
        .iter()
        .map(|id| (*id, marks.get(id).copied().unwrap_or(0).max(from_ms)))
        .filter(|(_, since)| *since < to_ms)
        .collect();
    if since.is_empty() {
        return Ok(Vec::new());
    }
    let to = time(to_ms);
    let (sql, values): (&str, Vec<sea_orm::Value>) = match backend {
        DbBackend::Postgres => (
            "SELECT s.url_id, s.due_at, s.status_code, s.latency_micros, s.error_kind, s.verdict \
             FROM UNNEST($1::int8[], $2::text[]) AS k(url_id, since) \
             JOIN statuses s ON s.url_id = k.url_id AND s.due_at >= k.since::timestamptz \
                            AND s.due_at < $3",
            vec![
                since.iter().map(|(id, _)| *id).collect::<Vec<_>>().into(),
                since
                    .iter()
                    .map(|(_, ms)| time(*ms).to_rfc3339())
                    .collect::<Vec<_>>()
                    .into(),
                to.into(),
            ],
        ),
        // CROSS JOIN: the list is the outer loop, each URL's range of the
        // primary key the inner.
        _ => (
            "SELECT s.url_id, s.due_at, s.status_code, s.latency_micros, s.error_kind, s.verdict \
             FROM json_each(?1) AS k CROSS JOIN statuses s \
               ON s.url_id = k.value ->> 0 AND s.due_at >= k.value ->> 1 AND s.due_at < ?2",
            vec![
                serde_json::to_string(
                    &since
                        .iter()
                        .map(|(id, ms)| (*id, sqlite_timestamp_text(time(*ms))))
                        .collect::<Vec<_>>(),
                )
                .unwrap_or_default()
                .into(),
                sqlite_timestamp_text(to).into(),
            ],
        ),
    };
    c.query_all_raw(Statement::from_sql_and_values(backend, sql, values))
        .await?
        .iter()
        .map(|r| {
            let due: DateTime<Utc> = r.try_get("", "due_at")?;
            Ok(Counted::of_row(
                r.try_get("", "url_id")?,
                due.timestamp_millis(),
                r.try_get("", "status_code")?,
                r.try_get("", "latency_micros")?,
                r.try_get("", "error_kind")?,
                r.try_get("", "verdict")?,
            ))
        })
        .collect()
}

/// `ms` as a time, within 1970 to 9999 (a caller's open bound: SQLite
/// compares times as text, which holds only for four-digit years).
fn time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms.clamp(0, 253_402_300_799_999)).unwrap_or_default()
}

/// URLs per roll transaction.
const ROLL_CHUNK: i64 = 500;

/// What a roll pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Rolled {
    /// URLs whose mark moved.
    pub urls: u64,
    /// Statuses added to the buckets.
    pub statuses: u64,
}

impl Rolled {
    /// What one chunk did: its URLs' marks moved, its statuses added.
    fn of(urls: &[i64], statuses: &[RawRow]) -> Self {
        Self {
            urls: urls.len() as u64,
            statuses: statuses.len() as u64,
        }
    }
}

/// A status as the roll pass reads it: URL, due time, code, latency,
/// error kind, verdict.
type RawRow = (i64, DateTime<Utc>, i16, i32, Option<i16>, Option<i16>);

fn counted(rows: &[RawRow]) -> BTreeMap<Key, Bucket> {
    let mut out = BTreeMap::new();
    for r in rows {
        Counted::of_row(r.0, r.1.timestamp_millis(), r.2, r.3, r.4, r.5)
            .add_to(&mut out, &Tier::STORED);
    }
    out
}

/// The roll pass: adds every URL's statuses due from its mark up to
/// `until_ms` to its hour and day buckets and moves its mark to
/// `until_ms`, [`ROLL_CHUNK`] URLs per transaction, in URL order. On
/// Postgres a URL whose state row a flush holds is skipped (the next pass
/// takes it).
pub async fn roll(db: &DatabaseConnection, until_ms: i64) -> anyhow::Result<Rolled> {
    let mut done = Rolled::default();
    let mut after = i64::MIN;
    loop {
        let started = std::time::Instant::now();
        let chunk = if db.get_database_backend() == DbBackend::Postgres {
            let mut tx = db.get_postgres_connection_pool().begin().await?;
            let chunk = roll_postgres(&mut tx, after, until_ms).await?;
            tx.commit().await?;
            chunk
        } else {
            let mut tx = db
                .get_sqlite_connection_pool()
                .begin_with("BEGIN IMMEDIATE")
                .await?;
            let chunk = roll_sqlite(&mut tx, after, until_ms).await?;
            tx.commit().await?;
            chunk
        };
        let Some((last, rolled)) = chunk else {
            return Ok(done);
        };
        after = last;
        done.urls += rolled.urls;
        done.statuses += rolled.statuses;
        if rolled.urls < ROLL_CHUNK.unsigned_abs() {
            return Ok(done); // the last chunk
        }
        if db.get_database_backend() == DbBackend::Postgres {
            tokio::task::yield_now().await;
        } else {
            // SQLite's writers waiting for its one lock poll for it (the
            // busy handler sleeps between tries): without a pause as long
            // as the chunk took, this pass would take the lock again
            // before any of them woke, and the claims would wait for the
            // whole pass (lateness p99 1.4 s at 100,000 URLs).
            tokio::time::sleep(started.elapsed().max(std::time::Duration::from_millis(5))).await;
        }
    }
}

/// One chunk of [`roll`] after URL `after`: the last URL it took and what
/// it did, or `None` when none was left.
async fn roll_postgres(
    tx: &mut Transaction<'_, Postgres>,
    after: i64,
    until_ms: i64,
) -> anyhow::Result<Option<(i64, Rolled)>> {
    sqlx::query("SET LOCAL plan_cache_mode = force_custom_plan")
        .execute(&mut **tx)
        .await?;
    let marks: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT url_id, rolled_to_ms FROM url_states WHERE url_id > $1 AND rolled_to_ms < $2 \
         ORDER BY url_id LIMIT $3 FOR UPDATE SKIP LOCKED",
    )
    .bind(after)
    .bind(until_ms)
    .bind(ROLL_CHUNK)
    .fetch_all(&mut **tx)
    .await?;
    let Some(last) = marks.last().map(|m| m.0) else {
        return Ok(None);
    };
    let ids: Vec<i64> = marks.iter().map(|m| m.0).collect();
    let raw: Vec<RawRow> = sqlx::query_as(
        "SELECT s.url_id, s.due_at, s.status_code, s.latency_micros, s.error_kind, s.verdict \
         FROM UNNEST($1::int8[], $2::timestamptz[]) AS k(url_id, since) \
         JOIN statuses s ON s.url_id = k.url_id AND s.due_at >= k.since AND s.due_at < $3",
    )
    .bind(&ids)
    .bind(marks.iter().map(|m| time(m.1)).collect::<Vec<_>>())
    .bind(time(until_ms))
    .fetch_all(&mut **tx)
    .await?;
    merge_postgres(tx, counted(&raw)).await?;
    sqlx::query("UPDATE url_states SET rolled_to_ms = $2 WHERE url_id = ANY($1)")
        .bind(&ids)
        .bind(until_ms)
        .execute(&mut **tx)
        .await?;
    Ok(Some((last, Rolled::of(&ids, &raw))))
}

/// [`roll_postgres`] on SQLite (the writer lock held).
async fn roll_sqlite(
    tx: &mut Transaction<'_, Sqlite>,
    after: i64,
    until_ms: i64,
) -> anyhow::Result<Option<(i64, Rolled)>> {
    let marks: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT url_id, rolled_to_ms FROM url_states WHERE url_id > ?1 AND rolled_to_ms < ?2 \
         ORDER BY url_id LIMIT ?3",
    )
    .bind(after)
    .bind(until_ms)
    .bind(ROLL_CHUNK)
    .fetch_all(&mut **tx)
    .await?;
    let Some(last) = marks.last().map(|m| m.0) else {
        return Ok(None);
    };
    let since: Vec<(i64, String)> = marks
        .iter()
        .map(|m| (m.0, sqlite_timestamp_text(time(m.1))))
        .collect();
    let raw: Vec<RawRow> = sqlx::query_as(
        "SELECT s.url_id, s.due_at, s.status_code, s.latency_micros, s.error_kind, s.verdict \
         FROM json_each(?1) AS k CROSS JOIN statuses s \
           ON s.url_id = k.value ->> 0 AND s.due_at >= k.value ->> 1 AND s.due_at < ?2",
    )
    .bind(serde_json::to_string(&since)?)
    .bind(sqlite_timestamp_text(time(until_ms)))
    .fetch_all(&mut **tx)
    .await?;
    merge_sqlite(tx, counted(&raw)).await?;
    let ids: Vec<i64> = marks.iter().map(|m| m.0).collect();
    sqlx::query(
        "UPDATE url_states SET rolled_to_ms = ?2 WHERE url_id IN (SELECT value FROM json_each(?1))",
    )
    .bind(serde_json::to_string(&ids)?)
    .bind(until_ms)
    .execute(&mut **tx)
    .await?;
    Ok(Some((last, Rolled::of(&ids, &raw))))
}

/// The lowest roll mark: every status due before it is rolled (`None`: no
/// URL).
pub async fn rolled_floor(db: &DatabaseConnection) -> Result<Option<i64>, DbErr> {
    let backend = db.get_database_backend();
    let row = db
        .query_one_raw(Statement::from_string(
            backend,
            "SELECT MIN(rolled_to_ms) AS floor FROM url_states",
        ))
        .await?;
    Ok(match row {
        Some(r) => r.try_get::<Option<i64>>("", "floor")?,
        None => None,
    })
}

/// One bucket as [`read_many`] has the database join it.
fn parse_joined(text: &str) -> Option<(i64, Bucket)> {
    let mut parts = text.split(':');
    let mut next = || parts.next();
    let start = next()?.parse().ok()?;
    let mut count = || next()?.parse::<u64>().ok();
    let (up, degraded, down, maintenance) = (count()?, count()?, count()?, count()?);
    let max_us = match next()? {
        "" => None,
        max => Some(max.parse::<u64>().ok()?),
    };
    let latency = match next()? {
        "" => Sketch::default(),
        sketch => Sketch::decode(&hex::decode(sketch).ok()?)?,
    };
    Some((
        start,
        Bucket {
            up,
            degraded,
            down,
            maintenance,
            max_us,
            latency,
        },
    ))
}

/// The counts of each URL's buckets of `tier` starting in `[from_ms,
/// to_ms)`, its tail included, summed per URL (the buckets by the
/// database; no sketches): one row per URL that has any, in URL order.
pub async fn sums(
    db: &DatabaseConnection,
    url_ids: &[i64],
    tier: Tier,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<(i64, Bucket)>, DbErr> {
    let backend = db.get_database_backend();
    let (ids, ids_value) = one_of(backend, "url_id", 4, url_ids);
    let txn = snapshot(db).await?;
    // Postgres sums int4 into int8; the casts keep both backends' types alike.
    let rows = txn
        .query_all_raw(Statement::from_sql_and_values(
            backend,
            numbered(
                backend,
                &format!(
                    "SELECT url_id, CAST(SUM(up) AS BIGINT) AS up, \
                            CAST(SUM(degraded) AS BIGINT) AS degraded, \
                            CAST(SUM(down) AS BIGINT) AS down, \
                            CAST(SUM(maintenance) AS BIGINT) AS maintenance, \
                            MAX(latency_max_us) AS latency_max_us \
                     FROM rollups WHERE tier = $1 AND bucket_ms >= $2 AND bucket_ms < $3 AND {ids} \
                     GROUP BY url_id"
                ),
            ),
            [
                (tier as i16).into(),
                from_ms.into(),
                to_ms.into(),
                ids_value,
            ],
        ))
        .await?;
    let tail = tail_buckets(&txn, url_ids, tier, from_ms, to_ms).await?;
    txn.commit().await?;
    let mut out: BTreeMap<i64, Bucket> = BTreeMap::new();
    for ((url_id, _, _), mut bucket) in tail {
        bucket.latency = Sketch::default();
        out.entry(url_id).or_default().merge(&bucket);
    }
    for r in &rows {
        let count =
            |c| -> Result<u64, DbErr> { Ok(u64::try_from(r.try_get::<i64>("", c)?).unwrap_or(0)) };
        let url_id: i64 = r.try_get("", "url_id")?;
        out.entry(url_id).or_default().merge(&Bucket {
            up: count("up")?,
            degraded: count("degraded")?,
            down: count("down")?,
            maintenance: count("maintenance")?,
            max_us: r
                .try_get::<Option<i64>>("", "latency_max_us")?
                .and_then(|m| u64::try_from(m).ok()),
            latency: Sketch::default(),
        });
    }
    Ok(out.into_iter().collect())
}

/// A bucket from a row of `up, degraded, down, latency_max_us` and its
/// sketch's bytes (none: an empty sketch).
fn bucket_of_row(r: &sea_orm::QueryResult, sketch: Option<&[u8]>) -> Result<Bucket, DbErr> {
    let count =
        |c| -> Result<u64, DbErr> { Ok(u64::try_from(r.try_get::<i32>("", c)?).unwrap_or(0)) };
    Ok(Bucket {
        up: count("up")?,
        degraded: count("degraded")?,
        down: count("down")?,
        maintenance: count("maintenance")?,
        max_us: r
            .try_get::<Option<i64>>("", "latency_max_us")?
            .and_then(|m| u64::try_from(m).ok()),
        latency: sketch.and_then(Sketch::decode).unwrap_or_default(),
    })
}

/// One URL's schedule history, oldest first.
pub async fn schedule(db: &DatabaseConnection, url_id: i64) -> Result<Vec<ScheduleSpan>, DbErr> {
    let backend = db.get_database_backend();
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            backend,
            numbered(
                backend,
                "SELECT since_ms, period_seconds, phase_ms, paused FROM url_periods \
                 WHERE url_id = $1 ORDER BY since_ms",
            ),
            [url_id.into()],
        ))
        .await?;
    rows.iter()
        .map(|r| {
            Ok(ScheduleSpan {
                since_ms: r.try_get("", "since_ms")?,
                period_ms: i64::from(r.try_get::<i32>("", "period_seconds")?) * 1000,
                phase_ms: r.try_get("", "phase_ms")?,
                paused: r.try_get("", "paused")?,
            })
        })
        .collect()
}

/// Rows per pruning DELETE, so no lock is held long.
const PRUNE_CHUNK: i64 = 5_000;

/// Deletes `tier`'s buckets that start before `cutoff_ms`; returns how many.
pub async fn prune(db: &DatabaseConnection, tier: Tier, cutoff_ms: i64) -> Result<u64, DbErr> {
    let backend = db.get_database_backend();
    let sql = numbered(
        backend,
        "DELETE FROM rollups WHERE (url_id, tier, bucket_ms) IN \
         (SELECT url_id, tier, bucket_ms FROM rollups WHERE tier = $1 AND bucket_ms < $2 LIMIT $3)",
    );
    let mut total = 0;
    loop {
        let deleted = db
            .execute_raw(Statement::from_sql_and_values(
                backend,
                &sql,
                [(tier as i16).into(), cutoff_ms.into(), PRUNE_CHUNK.into()],
            ))
            .await?
            .rows_affected();
        total += deleted;
        if deleted < u64::try_from(PRUNE_CHUNK).unwrap_or(0) {
            return Ok(total);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_joined_bucket_reads_back() {
        let mut bucket = Bucket::default();
        bucket.add(crate::domain::verdict::Verdict::Up, Some(12_000));
        bucket.add(crate::domain::verdict::Verdict::Down, Some(900_000));
        bucket.add(crate::domain::verdict::Verdict::Maintenance, None);
        let text = format!(
            "1700000000000:{}:{}:{}:{}:{}:{}",
            bucket.up,
            bucket.degraded,
            bucket.down,
            bucket.maintenance,
            bucket.max_us.unwrap(),
            hex(&bucket.latency.encode())
        );
        assert_eq!(parse_joined(&text), Some((1_700_000_000_000, bucket)));
        let counts = parse_joined("5:1:2:3:4::").unwrap().1;
        assert_eq!(
            (
                counts.up,
                counts.degraded,
                counts.down,
                counts.maintenance,
                counts.max_us
            ),
            (1, 2, 3, 4, None)
        );
        assert_eq!(parse_joined("5:1:2"), None);
        assert_eq!(parse_joined("5:1:2:3:4::zz"), None);
    }
}
