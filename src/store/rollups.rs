//! Rollup buckets (`domain::rollup`): merged by the flush inside its
//! transaction (per batch, for every tier at once: one read, then on Postgres
//! one update and one insert, on SQLite one upsert), read by
//! GetUrlStats, pruned per tier by the retention pass.
//!
//! The flush holds the lock on the touched URLs' `url_states` rows (see
//! `store::outcomes`) while it reads and rewrites their buckets, so two
//! flushers never merge into one bucket at once.

use std::collections::BTreeMap;

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement};
use sqlx::{Postgres, Sqlite, Transaction};

use super::{numbered, one_of};

use crate::domain::{
    rollup::{Bucket, ScheduleSpan, Tier},
    sketch::Sketch,
    state::Outcome,
    verdict::Verdict,
};

/// A bucket's key: URL, tier, bucket start (ms).
pub type Key = (i64, Tier, i64);

/// The buckets a batch's inserted results add to, in every stored tier.
pub fn deltas(per_url: &BTreeMap<i64, Vec<Outcome>>) -> BTreeMap<Key, Bucket> {
    let mut out: BTreeMap<Key, Bucket> = BTreeMap::new();
    for (url_id, outcomes) in per_url {
        // UNKNOWN counts nowhere (its slot shows as missed): no bucket.
        for o in outcomes.iter().filter(|o| o.verdict != Verdict::Unknown) {
            // A probe that got a response (any status) has a latency.
            let latency =
                (o.probe.status_code > 0).then(|| u64::try_from(o.probe.latency_us).unwrap_or(0));
            for tier in Tier::STORED {
                out.entry((*url_id, tier, tier.bucket_of(o.due_ms)))
                    .or_default()
                    .add(o.verdict, latency);
            }
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

/// One URL's buckets of `tier` starting in `[from_ms, to_ms)`, in order.
pub async fn read(
    db: &DatabaseConnection,
    url_id: i64,
    tier: Tier,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<(i64, Bucket)>, DbErr> {
    let backend = db.get_database_backend();
    let rows = db
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
    rows.iter()
        .map(|r| {
            let sketch: Vec<u8> = r.try_get("", "sketch")?;
            Ok((
                r.try_get("", "bucket_ms")?,
                bucket_of_row(r, Some(&sketch))?,
            ))
        })
        .collect()
}

/// The buckets of `tier` starting in `[from_ms, to_ms)` of several URLs at
/// once, ordered by URL and start; with `sketches: false` their latency
/// sketches are left empty (not read, not decoded): counts alone.
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
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            backend,
            numbered(
                backend,
                &format!(
                    "SELECT url_id, {agg}(bucket_ms || ':' || up || ':' || degraded || ':' || down \
                                         || ':' || maintenance || ':' || {max} || ':' || {sketch}, ',') AS buckets \
                     FROM rollups WHERE tier = $1 AND bucket_ms >= $2 AND bucket_ms < $3 AND {ids} \
                     GROUP BY url_id ORDER BY url_id"
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
    let mut out = Vec::new();
    for row in &rows {
        let url_id: i64 = row.try_get("", "url_id")?;
        let joined: String = row.try_get("", "buckets")?;
        for text in joined.split(',').filter(|t| !t.is_empty()) {
            let (start, bucket) = parse_joined(text)
                .ok_or_else(|| DbErr::Type(format!("rollups of URL {url_id}: {text:?}")))?;
            out.push((url_id, start, bucket));
        }
    }
    // Sorted here: an ORDER BY inside the aggregate made SQLite sort each
    // URL's rows through a temporary b-tree.
    out.sort_unstable_by_key(|(url_id, start, _)| (*url_id, *start));
    Ok(out)
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
/// to_ms)`, summed per URL by the database (no sketches): one row per URL
/// that has any.
pub async fn sums(
    db: &DatabaseConnection,
    url_ids: &[i64],
    tier: Tier,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<(i64, Bucket)>, DbErr> {
    let backend = db.get_database_backend();
    let (ids, ids_value) = one_of(backend, "url_id", 4, url_ids);
    // Postgres sums int4 into int8; the casts keep both backends' types alike.
    let rows = db
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
    rows.iter()
        .map(|r| {
            let count = |c| -> Result<u64, DbErr> {
                Ok(u64::try_from(r.try_get::<i64>("", c)?).unwrap_or(0))
            };
            Ok((
                r.try_get("", "url_id")?,
                Bucket {
                    up: count("up")?,
                    degraded: count("degraded")?,
                    down: count("down")?,
                    maintenance: count("maintenance")?,
                    max_us: r
                        .try_get::<Option<i64>>("", "latency_max_us")?
                        .and_then(|m| u64::try_from(m).ok()),
                    latency: Sketch::default(),
                },
            ))
        })
        .collect()
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
