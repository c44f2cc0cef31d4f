//! What probes found. `(url_id, due_at)` is unique, so a batch written twice
//! adds nothing; `error_kind` holds the proto `ErrorKind` number. Batches are
//! written by `store::outcomes`, with what they change in the URLs' states.

use chrono::{DateTime, SecondsFormat, Utc};
use sea_orm::{
    Condition, DatabaseConnection, QueryOrder, QuerySelect, entity::prelude::*, sea_query::Query,
};

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

/// The statuses of `query.url_id` if the URL is `query.user`'s (none
/// otherwise): ownership is a join in the same query, one round trip.
pub async fn page(db: &DatabaseConnection, query: PageQuery) -> Result<Vec<StatusRecord>, DbErr> {
    let mut select = Entity::find()
        .inner_join(super::urls::Entity)
        .filter(super::urls::Column::UserId.eq(query.user.0))
        .filter(Column::UrlId.eq(query.url_id));
    if let Some(s) = query.start {
        select = select.filter(Column::ProbedAt.gte(s));
    }
    if let Some(e) = query.end {
        select = select.filter(Column::ProbedAt.lt(e));
    }
    if let Some((at, id)) = query.after {
        select = select.filter(
            Condition::any().add(Column::ProbedAt.lt(at)).add(
                Condition::all()
                    .add(Column::ProbedAt.eq(at))
                    .add(Column::Id.lt(id)),
            ),
        );
    }
    Ok(select
        .order_by_desc(Column::ProbedAt)
        .order_by_desc(Column::Id)
        .limit(query.limit)
        .all(db)
        .await?
        .into_iter()
        .map(StatusRecord::from)
        .collect())
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
