//! What probes found. `(url_id, due_at)` is the primary key (a batch
//! written twice adds nothing) and the only index; `error_kind` holds the
//! proto `ErrorKind` number. Batches are written by `store::outcomes`, with
//! what they change in the URLs' states.
//!
//! Rows are narrow (migration 18): the probe time is kept as microseconds
//! after the due time, the certificate's expiry as seconds left after the
//! due time's second. On Postgres the table is partitioned by UTC day of
//! `due_at` ([`ensure_days`] creates partitions, [`drop_days_before`] drops
//! them), and a day, once over, is packed into one row per URL in
//! `statuses_packed` ([`pack_closed_days`], migration 19), which [`page`]
//! and [`due_between`] read beside the partitions; SQLite keeps one table
//! and deletes old rows in `rowid` order.

use std::fmt::Write as _;

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use sea_orm::{DatabaseConnection, DbBackend, QueryOrder, QuerySelect, entity::prelude::*};

use crate::domain::{
    ProbeResult, StatusRecord, UserId,
    verdict::{FailedAssertion, Verdict},
};

/// Rows per retention DELETE (SQLite).
const RETENTION_CHUNK: i64 = 5_000;

/// Partitions a Postgres retention pass creates ahead: today's and the
/// next two UTC days'.
const DAYS_AHEAD: i64 = 2;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "statuses")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub url_id: i64,
    #[sea_orm(primary_key, auto_increment = false)]
    pub due_at: DateTimeUtc,
    /// The probe's start, in µs after `due_at`.
    pub probed_after_us: i32,
    pub latency_micros: i32,
    pub status_code: i16,
    /// The verdict's `UrlState` number; `None` in rows from before verdicts.
    pub verdict: Option<i16>,
    /// https: seconds from `due_at`'s whole second to the certificate's
    /// expiry.
    pub tls_remaining_s: Option<i32>,
    pub error_kind: Option<i16>,
    pub error_message: Option<String>,
    /// The failed assertions as JSON (`None`: none).
    pub failed_assertions: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::urls::Entity",
        from = "Column::UrlId",
        to = "super::urls::Column::Id",
        on_delete = "Cascade"
    )]
    Url,
}

impl Related<super::urls::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Url.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}

/// SQLite stores a timestamp as the text sqlx writes for a bound
/// `DateTime<Utc>`; rows written here must compare equal to those (the
/// unique key includes `due_at`).
pub fn sqlite_timestamp_text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, false)
}

/// The columns a [`ProbeResult`] is stored as, past its URL and due time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Narrow {
    pub probed_after_us: i32,
    pub latency_micros: i32,
    pub status_code: i16,
    pub tls_remaining_s: Option<i32>,
}

fn clamp_i32(v: i64) -> i32 {
    i32::try_from(v).unwrap_or(if v < 0 { i32::MIN } else { i32::MAX })
}

impl Narrow {
    pub(super) fn of(r: &ProbeResult) -> Self {
        Self {
            probed_after_us: clamp_i32(r.started_us - r.due_ms * 1000),
            latency_micros: clamp_i32(r.latency_us),
            status_code: i16::try_from(r.status_code).unwrap_or(i16::MAX),
            tls_remaining_s: r
                .tls_not_after_ms
                .map(|ms| clamp_i32(ms.div_euclid(1000) - r.due_ms.div_euclid(1000))),
        }
    }
}

/// The probe time a row stores as an offset.
fn probed_at(due_at: DateTime<Utc>, after_us: i32) -> DateTime<Utc> {
    due_at + chrono::Duration::microseconds(i64::from(after_us))
}

/// The certificate expiry a row stores as seconds left.
fn tls_not_after(due_at: DateTime<Utc>, remaining_s: Option<i32>) -> Option<DateTime<Utc>> {
    remaining_s.and_then(|s| DateTime::from_timestamp(due_at.timestamp() + i64::from(s), 0))
}

/// Creates the Postgres partitions of `days` that are missing (a no-op on
/// SQLite). Outside any transaction: a partition's creation locks the
/// whole table for as long as its transaction lasts.
pub async fn ensure_days(db: &DatabaseConnection, days: &[NaiveDate]) -> Result<(), DbErr> {
    if db.get_database_backend() != DbBackend::Postgres || days.is_empty() {
        return Ok(());
    }
    let days: Vec<String> = days
        .iter()
        .map(|d| d.format("%Y-%m-%d").to_string())
        .collect();
    sqlx::query("SELECT statuses_partition(d) FROM unnest($1::date[]) AS d")
        .bind(days)
        .execute(db.get_postgres_connection_pool())
        .await
        .map_err(sqlx_err)?;
    Ok(())
}

/// The UTC days of `rows`' due times, each once.
pub(super) fn days_of(rows: &[&ProbeResult]) -> Vec<NaiveDate> {
    let mut days: Vec<i64> = rows
        .iter()
        .map(|r| r.due_ms.div_euclid(86_400_000))
        .collect();
    days.sort_unstable();
    days.dedup();
    days.into_iter().filter_map(day_number).collect()
}

fn day_number(n: i64) -> Option<NaiveDate> {
    DateTime::from_timestamp(n * 86_400, 0).map(|t| t.date_naive())
}

/// The UTC days from `from`'s to `to`'s, both included.
pub fn days_spanning(from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<NaiveDate> {
    let day = |t: DateTime<Utc>| t.timestamp().div_euclid(86_400);
    (day(from)..=day(to)).filter_map(day_number).collect()
}

/// What one retention pass over raw statuses did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Rows deleted (SQLite).
    pub deleted: u64,
    /// Whole days dropped (Postgres partitions).
    pub dropped_days: u64,
}

/// Statuses due before `cutoff` go: on Postgres the partitions whose whole
/// day is before it (a day is kept until all of it is past retention), and
/// partitions for today and the next days are created ahead; on SQLite the
/// rows, a bounded number per statement, oldest inserted first.
pub async fn retain(
    db: &DatabaseConnection,
    now: DateTime<Utc>,
    cutoff: DateTime<Utc>,
) -> Result<Retention, DbErr> {
    if db.get_database_backend() == DbBackend::Postgres {
        let ahead = now + chrono::Duration::days(DAYS_AHEAD);
        // From today on: a day before is written to only by a late batch,
        // which creates its partition itself (a packed day has none).
        ensure_days(db, &days_spanning(now, ahead)).await?;
        Ok(Retention {
            dropped_days: drop_days_before(db, cutoff).await?,
            ..Retention::default()
        })
    } else {
        Ok(Retention {
            deleted: delete_sqlite_before(db, cutoff).await?,
            ..Retention::default()
        })
    }
}

/// Drops the Postgres partitions, day partitions and packed days, whose
/// day ends at or before `cutoff`; returns how many days. Each in its own
/// short transaction that gives up after 5 s waiting for its lock (a drop
/// locks the whole table): the next pass tries again.
pub async fn drop_days_before(
    db: &DatabaseConnection,
    cutoff: DateTime<Utc>,
) -> Result<u64, DbErr> {
    let pool = db.get_postgres_connection_pool();
    let names: Vec<(String, String)> = sqlx::query_as(
        "SELECT c.relname::text, to_char(to_date(right(c.relname, 8), 'YYYYMMDD'), 'YYYY-MM-DD') \
         FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
         WHERE ((i.inhparent = 'statuses'::regclass AND c.relname ~ '^statuses_[0-9]{8}$') \
             OR (i.inhparent = 'statuses_packed'::regclass AND c.relname ~ '^statuses_packed_[0-9]{8}$')) \
           AND (to_date(right(c.relname, 8), 'YYYYMMDD') + 1)::timestamp <= ($1 AT TIME ZONE 'UTC') \
         ORDER BY 2, 1",
    )
    .bind(cutoff)
    .fetch_all(pool)
    .await
    .map_err(sqlx_err)?;
    for (name, day) in &names {
        let mut tx = begin_giving_up_after_5s(pool).await?;
        // Audited: `name` matched one of the two patterns above.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP TABLE IF EXISTS \"{name}\""
        )))
        .execute(&mut *tx)
        .await
        .map_err(sqlx_err)?;
        sqlx::query("DELETE FROM statuses_packed_days WHERE day = $1::date")
            .bind(day)
            .execute(&mut *tx)
            .await
            .map_err(sqlx_err)?;
        tx.commit().await.map_err(sqlx_err)?;
    }
    let mut days: Vec<&String> = names.iter().map(|(_, day)| day).collect();
    days.dedup();
    Ok(days.len() as u64)
}

/// A transaction that gives up after 5 s waiting for a lock (a partition
/// dropped or packed: the next retention pass tries again).
async fn begin_giving_up_after_5s(
    pool: &sqlx::PgPool,
) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, DbErr> {
    let mut tx = pool.begin().await.map_err(sqlx_err)?;
    sqlx::query("SET LOCAL lock_timeout = '5s'")
        .execute(&mut *tx)
        .await
        .map_err(sqlx_err)?;
    Ok(tx)
}

/// How long after its day ends a partition is left to late writes before
/// [`pack_closed_days`] packs it.
pub const PACK_AFTER: chrono::Duration = chrono::Duration::hours(1);

/// What `statuses_pack` returns when another packer holds its lock.
const BUSY: i64 = -2;

/// Packs each Postgres day partition whose day ended [`PACK_AFTER`] or
/// more before `now`, and whose statuses are all rolled (the day ended at
/// or before every URL's roll mark: the roll pass and the readers' tails
/// read the day partitions only, `store::rollups`), into one row per URL
/// (`statuses_packed`, migration 19), oldest first; returns how many days
/// (0 on SQLite).
///
/// A status in a partition costs ~98 bytes once its index is rebuilt full
/// (a heap tuple and a btree entry, ~60 of them headers); packed, ~22 plus
/// the arrays' headers, less what TOAST's compression finds. Each day in
/// its own transaction (`statuses_pack`: one packer at a time, a pass that
/// finds another at work leaves the rest to it), given up after 5 s
/// waiting for a lock. Only the day's partition is locked (against
/// writes, while it is read; then emptied): reads and the flush go on, and
/// a writer of that very day (DeleteUrl, a late status) waits for the
/// packing to end.
pub async fn pack_closed_days(db: &DatabaseConnection, now: DateTime<Utc>) -> Result<u64, DbErr> {
    if db.get_database_backend() != DbBackend::Postgres {
        return Ok(0);
    }
    let pool = db.get_postgres_connection_pool();
    let days: Vec<(String,)> = sqlx::query_as(
        "SELECT to_char(to_date(right(c.relname, 8), 'YYYYMMDD'), 'YYYY-MM-DD') \
         FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
         WHERE i.inhparent = 'statuses'::regclass AND c.relname ~ '^statuses_[0-9]{8}$' \
           AND (to_date(right(c.relname, 8), 'YYYYMMDD') + 1)::timestamp <= ($1 AT TIME ZONE 'UTC') \
           AND to_date(right(c.relname, 8), 'YYYYMMDD') NOT IN (SELECT day FROM statuses_packed_days) \
           AND (to_date(right(c.relname, 8), 'YYYYMMDD') + 1)::timestamp AT TIME ZONE 'UTC' \
               <= COALESCE((SELECT to_timestamp(MIN(rolled_to_ms) / 1000.0) FROM url_states), 'infinity') \
         ORDER BY 1",
    )
    .bind(now - PACK_AFTER)
    .fetch_all(pool)
    .await
    .map_err(sqlx_err)?;
    let mut packed = 0;
    for (day,) in &days {
        let mut tx = begin_giving_up_after_5s(pool).await?;
        let (urls,): (i64,) = sqlx::query_as("SELECT statuses_pack($1::date)")
            .bind(day)
            .fetch_one(&mut *tx)
            .await
            .map_err(sqlx_err)?;
        tx.commit().await.map_err(sqlx_err)?;
        match urls {
            // Another pass is at work: it goes on through the days it
            // listed (the same list, oldest first, unless a day closed in
            // between: the next pass packs that). Going on here instead
            // would skip each day the other holds the lock on while this
            // one tries it, and the other has passed it already.
            BUSY => break,
            0.. => packed += 1,
            _ => {}
        }
    }
    Ok(packed)
}

/// Every packed status is due before this (the start of `now`'s UTC day):
/// a day is packed [`PACK_AFTER`] after its end, by an instance whose
/// clock is less than that ahead of this one's.
fn packed_before(now: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(now.timestamp().div_euclid(86_400) * 86_400, 0).unwrap_or(now)
}

/// Deletes SQLite statuses due before `cutoff`, in `rowid` order (the
/// order of inserts, close to due order) a chunk at a time, until a chunk
/// holds none: rows written late for an old time go when the rows
/// inserted around them do. Returns how many.
async fn delete_sqlite_before(
    db: &DatabaseConnection,
    cutoff: DateTime<Utc>,
) -> Result<u64, DbErr> {
    let pool = db.get_sqlite_connection_pool();
    let cutoff = sqlite_timestamp_text(cutoff);
    let (mut total, mut last) = (0, 0_i64);
    loop {
        let (end,): (Option<i64>,) = sqlx::query_as(
            "SELECT max(rowid) FROM (SELECT rowid FROM statuses WHERE rowid > ?1 ORDER BY rowid LIMIT ?2)",
        )
        .bind(last)
        .bind(RETENTION_CHUNK)
        .fetch_one(pool)
        .await
        .map_err(sqlx_err)?;
        let Some(end) = end else {
            return Ok(total);
        };
        let deleted =
            sqlx::query("DELETE FROM statuses WHERE rowid > ?1 AND rowid <= ?2 AND due_at < ?3")
                .bind(last)
                .bind(end)
                .bind(&cutoff)
                .execute(pool)
                .await
                .map_err(sqlx_err)?
                .rows_affected();
        total += deleted;
        if deleted == 0 {
            return Ok(total);
        }
        last = end;
    }
}

fn sqlx_err(e: sqlx::Error) -> DbErr {
    DbErr::Query(sea_orm::RuntimeErr::SqlxError(e.into()))
}

impl From<Model> for StatusRecord {
    fn from(m: Model) -> Self {
        Self {
            url_id: m.url_id,
            due_at: m.due_at,
            probed_at: probed_at(m.due_at, m.probed_after_us),
            status_code: i32::from(m.status_code),
            latency: std::time::Duration::from_micros(u64::try_from(m.latency_micros).unwrap_or(0)),
            error_kind: m.error_kind,
            verdict: Verdict::from_stored(m.verdict, i32::from(m.status_code), m.error_kind),
            error_message: m.error_message,
            failed_assertions: m
                .failed_assertions
                .and_then(|json| serde_json::from_str(&json).ok())
                .unwrap_or_default(),
            tls_not_after: tls_not_after(m.due_at, m.tls_remaining_s),
        }
    }
}

/// The JSON kept for a probe's failed assertions (`None`: none failed).
pub(super) fn failed_json(failed: &[FailedAssertion]) -> Option<String> {
    (!failed.is_empty()).then(|| serde_json::to_string(failed).unwrap_or_default())
}

/// One page of a user's URL's statuses, newest first.
#[derive(Debug, Clone)]
pub struct PageQuery {
    pub user: UserId,
    pub url_id: i64,
    /// Due at or after.
    pub start: Option<DateTime<Utc>>,
    /// Due before.
    pub end: Option<DateTime<Utc>>,
    /// Due strictly before this (the last row of the previous page).
    pub before: Option<DateTime<Utc>>,
    pub limit: u64,
    /// The reader's clock: which statuses may be packed (Postgres).
    pub now: DateTime<Utc>,
}

/// A status row as [`page`] reads it, in [`Model`]'s column order.
type PageRow = (
    i64,
    DateTime<Utc>,
    i32,
    i32,
    i16,
    Option<i16>,
    Option<i32>,
    Option<i16>,
    Option<String>,
    Option<String>,
);

fn record_from(row: PageRow) -> StatusRecord {
    Model {
        url_id: row.0,
        due_at: row.1,
        probed_after_us: row.2,
        latency_micros: row.3,
        status_code: row.4,
        verdict: row.5,
        tls_remaining_s: row.6,
        error_kind: row.7,
        error_message: row.8,
        failed_assertions: row.9,
    }
    .into()
}

/// The statuses of `query.url_id` if the URL is `query.user`'s (none
/// otherwise): ownership is a join in the same query, one round trip.
///
/// Read through sqlx directly (the hottest read: a page of 100 rows per
/// call, where sea-orm's model decoding showed in the profile), with one
/// statement text per combination of bounds (at most 8, each prepared once
/// per pooled connection). Every bound is on the primary key's `due_at`
/// (on Postgres also the partition key: a page reads only the partitions
/// its bounds reach, newest first).
///
/// On Postgres, closed days may be packed ([`pack_closed_days`]): when the
/// page is not full of statuses of today, a second statement reads the
/// packed days the bounds reach, and the two are merged.
pub async fn page(db: &DatabaseConnection, query: PageQuery) -> Result<Vec<StatusRecord>, DbErr> {
    let mut bounds = String::new();
    let mut n = 2;
    let mut next = || {
        n += 1;
        n
    };
    if query.start.is_some() {
        let _ = write!(bounds, " AND s.due_at >= ${}", next());
    }
    if query.end.is_some() {
        let _ = write!(bounds, " AND s.due_at < ${}", next());
    }
    if query.before.is_some() {
        let _ = write!(bounds, " AND s.due_at < ${}", next());
    }
    let limit_at = next();
    let sql = format!(
        "SELECT {PAGE_COLUMNS} FROM statuses s JOIN urls u ON u.id = s.url_id \
         WHERE s.url_id = $1 AND u.user_id = $2{bounds} ORDER BY s.due_at DESC LIMIT ${limit_at}"
    );
    let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
    let times = [query.start, query.end, query.before];
    let rows: Vec<PageRow> = match db.get_database_backend() {
        sea_orm::DbBackend::Postgres => {
            let pool = db.get_postgres_connection_pool();
            let mut rows = page_rows(pool, sql, &query, &times, limit).await?;
            let full_of_today = rows.len() as u64 >= query.limit
                && rows.last().is_some_and(|r| r.1 >= packed_before(query.now));
            if !full_of_today {
                let packed = page_rows(
                    pool,
                    packed_page_sql(&query, &bounds, limit_at),
                    &query,
                    &times,
                    limit,
                )
                .await?;
                if !packed.is_empty() {
                    rows.extend(packed);
                    rows.sort_unstable_by_key(|r| std::cmp::Reverse(r.1));
                    rows.dedup_by_key(|r| r.1); // see [`UNPACKED`]
                    rows.truncate(usize::try_from(query.limit).unwrap_or(usize::MAX));
                }
            }
            rows
        }
        backend => {
            let sql = super::numbered(backend, &sql);
            let mut q = sqlx::query_as::<_, PageRow>(sqlx::AssertSqlSafe(sql))
                .bind(query.url_id)
                .bind(query.user.0);
            for t in times.into_iter().flatten() {
                q = q.bind(sqlite_timestamp_text(t));
            }
            q.bind(limit)
                .fetch_all(db.get_sqlite_connection_pool())
                .await
                .map_err(sqlx_err)?
        }
    };
    Ok(rows.into_iter().map(record_from).collect())
}

/// The columns of a page, in [`PageRow`]'s order.
const PAGE_COLUMNS: &str = "s.url_id, s.due_at, s.probed_after_us, s.latency_micros, s.status_code, \
     s.verdict, s.tls_remaining_s, s.error_kind, s.error_message, s.failed_assertions";

/// Packed statuses as rows of [`PAGE_COLUMNS`] (`s`), from the packed days
/// of `p` (Postgres).
///
/// A reader reads the day partitions first, then this, in two statements
/// (two snapshots): a day packed in between is read twice, once from each
/// place, and the reader keeps one of each due time. It is never missed:
/// a status is in its partition until the packing commits and packed
/// after, and the second read's snapshot is the later.
const UNPACKED: &str = "SELECT p.url_id, (p.day::timestamp AT TIME ZONE 'UTC') + x.due_ms * interval '1 millisecond' AS due_at, \
     x.probed_after_us, x.latency_micros, x.status_code, x.verdict, x.tls_remaining_s, x.error_kind, \
     x.error_message, x.failed_assertions \
     FROM statuses_packed p CROSS JOIN LATERAL unnest(p.due_ms, p.probed_after_us, p.latency_micros, \
          p.status_code, p.verdict, p.tls_remaining_s, p.error_kind, p.error_message, p.failed_assertions) \
       AS x(due_ms, probed_after_us, latency_micros, status_code, verdict, tls_remaining_s, error_kind, \
            error_message, failed_assertions)";

/// [`page`]'s statement over the packed days: the same parameters, and
/// each bound also on the day (only the days it reaches are unpacked).
fn packed_page_sql(query: &PageQuery, bounds: &str, limit_at: i32) -> String {
    let mut days = String::new();
    let mut n = 2;
    if query.start.is_some() {
        n += 1;
        let _ = write!(days, " AND p.day >= (${n} AT TIME ZONE 'UTC')::date");
    }
    for bound in [query.end, query.before] {
        if bound.is_some() {
            n += 1;
            let _ = write!(days, " AND p.day <= (${n} AT TIME ZONE 'UTC')::date");
        }
    }
    format!(
        "SELECT {PAGE_COLUMNS} FROM ({UNPACKED} WHERE p.url_id = $1{days}) s \
         JOIN urls u ON u.id = s.url_id \
         WHERE u.user_id = $2{bounds} ORDER BY s.due_at DESC LIMIT ${limit_at}"
    )
}

async fn page_rows(
    pool: &sqlx::PgPool,
    sql: String,
    query: &PageQuery,
    times: &[Option<DateTime<Utc>>; 3],
    limit: i64,
) -> Result<Vec<PageRow>, DbErr> {
    // Audited: the text is made of the fixed fragments above only.
    let mut q = sqlx::query_as::<_, PageRow>(sqlx::AssertSqlSafe(sql))
        .bind(query.url_id)
        .bind(query.user.0);
    for t in times.iter().flatten() {
        q = q.bind(*t);
    }
    q.bind(limit).fetch_all(pool).await.map_err(sqlx_err)
}

/// One URL's statuses due in `[from_ms, to_ms)`, by due time: (due time
/// in ms, status code, latency in µs, verdict). What minute buckets are
/// built from (they are not stored: raw statuses are kept as long).
pub async fn due_between(
    db: &DatabaseConnection,
    url_id: i64,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<(i64, i32, i64, Verdict)>, DbErr> {
    /// Due time, status code, latency, error kind, verdict.
    type Row = (DateTimeUtc, i16, i32, Option<i16>, Option<i16>);
    let time = |ms: i64| DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default();
    let mut rows: Vec<Row> = Entity::find()
        .select_only()
        .column(Column::DueAt)
        .column(Column::StatusCode)
        .column(Column::LatencyMicros)
        .column(Column::ErrorKind)
        .column(Column::Verdict)
        .filter(Column::UrlId.eq(url_id))
        .filter(Column::DueAt.gte(time(from_ms)))
        .filter(Column::DueAt.lt(time(to_ms)))
        .order_by_asc(Column::DueAt)
        .into_tuple()
        .all(db)
        .await?;
    if db.get_database_backend() == DbBackend::Postgres {
        // Closed days may be packed: their statuses, the same columns.
        let packed: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT s.due_at, s.status_code, s.latency_micros, s.error_kind, s.verdict \
             FROM ({UNPACKED} WHERE p.url_id = $1 AND p.day >= ($2 AT TIME ZONE 'UTC')::date \
                   AND p.day <= ($3 AT TIME ZONE 'UTC')::date) s \
             WHERE s.due_at >= $2 AND s.due_at < $3"
        )))
        .bind(url_id)
        .bind(time(from_ms))
        .bind(time(to_ms))
        .fetch_all(db.get_postgres_connection_pool())
        .await
        .map_err(sqlx_err)?;
        if !packed.is_empty() {
            rows.extend(packed);
            rows.sort_unstable_by_key(|r| r.0);
            rows.dedup_by_key(|r| r.0); // see [`UNPACKED`]
        }
    }
    Ok(rows
        .into_iter()
        .map(|(due, code, latency, kind, verdict)| {
            let code = i32::from(code);
            let verdict = Verdict::from_stored(verdict, code, kind);
            (due.timestamp_millis(), code, i64::from(latency), verdict)
        })
        .collect())
}
