//! What probes found. `(url_id, due_at)` is unique, so a batch written twice
//! adds nothing; `error_kind` holds the proto `ErrorKind` number. Batches are
//! written by `store::outcomes`, with what they change in the URLs' states.

use std::fmt::Write as _;

use chrono::{DateTime, SecondsFormat, Utc};
use sea_orm::{DatabaseConnection, QueryOrder, QuerySelect, entity::prelude::*, sea_query::Query};

use crate::domain::{
    StatusRecord, UserId,
    verdict::{FailedAssertion, Verdict},
};

/// Rows per retention DELETE.
const RETENTION_CHUNK: u64 = 5_000;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "statuses")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub url_id: i64,
    pub due_at: DateTimeUtc,
    pub probed_at: DateTimeUtc,
    pub status_code: i32,
    pub latency_micros: i64,
    pub error_kind: Option<i16>,
    pub error_message: Option<String>,
    /// The verdict's `UrlState` number; `None` in rows from before verdicts.
    pub verdict: Option<i16>,
    /// The failed assertions as JSON (`None`: none).
    pub failed_assertions: Option<String>,
    pub tls_not_after: Option<DateTimeUtc>,
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

/// Deletes statuses probed before `cutoff`, oldest first, a bounded number
/// per statement so no lock is held long. Returns how many.
pub async fn delete_older_than(
    db: &DatabaseConnection,
    cutoff: DateTime<Utc>,
) -> anyhow::Result<u64> {
    let mut total = 0;
    loop {
        let oldest = Query::select()
            .column(Column::Id)
            .from(Entity)
            .and_where(Column::ProbedAt.lt(cutoff))
            .order_by(Column::ProbedAt, sea_orm::Order::Asc)
            .limit(RETENTION_CHUNK)
            .to_owned();
        let deleted = Entity::delete_many()
            .filter(Column::Id.in_subquery(oldest))
            .exec(db)
            .await?
            .rows_affected;
        total += deleted;
        if deleted < RETENTION_CHUNK {
            return Ok(total);
        }
    }
}

impl From<Model> for StatusRecord {
    fn from(m: Model) -> Self {
        Self {
            id: m.id,
            url_id: m.url_id,
            due_at: m.due_at,
            probed_at: m.probed_at,
            status_code: m.status_code,
            latency: std::time::Duration::from_micros(u64::try_from(m.latency_micros).unwrap_or(0)),
            error_kind: m.error_kind,
            error_message: m.error_message,
            verdict: Verdict::from_stored(m.verdict, m.status_code, m.error_kind),
            failed_assertions: m
                .failed_assertions
                .and_then(|json| serde_json::from_str(&json).ok())
                .unwrap_or_default(),
            tls_not_after: m.tls_not_after,
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
    /// Probed at or after.
    pub start: Option<DateTime<Utc>>,
    /// Probed before.
    pub end: Option<DateTime<Utc>>,
    /// Strictly after this (probed_at, id) in newest-first order.
    pub after: Option<(DateTime<Utc>, i64)>,
    pub limit: u64,
}

/// A status row as [`page`] reads it: id, url id, due and probe times,
/// status code, latency, error kind and message, verdict, failed
/// assertions, certificate expiry.
type PageRow = (
    i64,
    i64,
    DateTime<Utc>,
    DateTime<Utc>,
    i32,
    i64,
    Option<i16>,
    Option<String>,
    Option<i16>,
    Option<String>,
    Option<DateTime<Utc>>,
);

fn record_from(row: PageRow) -> StatusRecord {
    let (id, url_id, due_at, probed_at, status_code, latency_micros, error_kind, error_message) =
        (row.0, row.1, row.2, row.3, row.4, row.5, row.6, row.7);
    Model {
        id,
        url_id,
        due_at,
        probed_at,
        status_code,
        latency_micros,
        error_kind,
        error_message,
        verdict: row.8,
        failed_assertions: row.9,
        tls_not_after: row.10,
    }
    .into()
}

/// Binds [`page`]'s optional bounds, in the order its text names them.
macro_rules! bind_bounds {
    ($q:expr, $query:expr) => {{
        let mut q = $q;
        if let Some(s) = $query.start {
            q = q.bind(s);
        }
        if let Some(e) = $query.end {
            q = q.bind(e);
        }
        if let Some((at, id)) = $query.after {
            q = q.bind(at).bind(id);
        }
        q
    }};
}
/// The statuses of `query.url_id` if the URL is `query.user`'s (none
/// otherwise): ownership is a join in the same query, one round trip.
///
/// Read through sqlx directly (the hottest read: a page of 100 rows per
/// call, where sea-orm's model decoding showed in the profile), with one
/// statement text per combination of bounds (at most 8, each prepared once
/// per pooled connection) so every plan has its index conditions.
pub async fn page(db: &DatabaseConnection, query: PageQuery) -> Result<Vec<StatusRecord>, DbErr> {
    let mut sql = String::from(
        "SELECT s.id, s.url_id, s.due_at, s.probed_at, s.status_code, s.latency_micros, \
         s.error_kind, s.error_message, s.verdict, s.failed_assertions, s.tls_not_after \
         FROM statuses s JOIN urls u ON u.id = s.url_id \
         WHERE s.url_id = $1 AND u.user_id = $2",
    );
    let mut n = 2;
    let mut next = || {
        n += 1;
        n
    };
    if query.start.is_some() {
        let _ = write!(sql, " AND s.probed_at >= ${}", next());
    }
    if query.end.is_some() {
        let _ = write!(sql, " AND s.probed_at < ${}", next());
    }
    if query.after.is_some() {
        // (probed_at, id) < (at, id), written out for SQLite.
        let (at, id) = (next(), next());
        let _ = write!(
            sql,
            " AND (s.probed_at < ${at} OR (s.probed_at = ${at} AND s.id < ${id}))"
        );
    }
    let _ = write!(
        sql,
        " ORDER BY s.probed_at DESC, s.id DESC LIMIT ${}",
        next()
    );
    let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
    let err = |e: sqlx::Error| DbErr::Query(sea_orm::RuntimeErr::SqlxError(e.into()));
    let rows: Vec<PageRow> = match db.get_database_backend() {
        sea_orm::DbBackend::Postgres => {
            // Audited: the text is made of the fixed fragments above only.
            let mut q = sqlx::query_as::<_, PageRow>(sqlx::AssertSqlSafe(sql))
                .bind(query.url_id)
                .bind(query.user.0);
            q = bind_bounds!(q, query);
            q.bind(limit)
                .fetch_all(db.get_postgres_connection_pool())
                .await
                .map_err(err)?
        }
        backend => {
            let sql = super::numbered(backend, &sql);
            let mut q = sqlx::query_as::<_, PageRow>(sqlx::AssertSqlSafe(sql))
                .bind(query.url_id)
                .bind(query.user.0);
            q = bind_bounds!(q, query);
            q.bind(limit)
                .fetch_all(db.get_sqlite_connection_pool())
                .await
                .map_err(err)?
        }
    };
    Ok(rows.into_iter().map(record_from).collect())
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
    type Row = (DateTimeUtc, i32, i64, Option<i16>, Option<i16>);
    let time = |ms: i64| DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default();
    let rows: Vec<Row> = Entity::find()
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
    Ok(rows
        .into_iter()
        .map(|(due, code, latency, kind, verdict)| {
            let verdict = Verdict::from_stored(verdict, code, kind);
            (due.timestamp_millis(), code, latency, verdict)
        })
        .collect())
}
