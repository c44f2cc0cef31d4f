//! What probes found. `(url_id, due_at)` is unique, so a batch written twice
//! adds nothing; `error_kind` holds the proto `ErrorKind` number.
//!
//! Batch statements have one text whatever the batch: each distinct text is
//! prepared and cached per pooled connection (by sqlx, and on SQLite in this
//! process's memory), so a text that grew with the batch (a multi-row VALUES
//! list) left a large prepared statement behind for every batch size met.
//! Postgres binds whole columns as arrays (`UNNEST`); SQLite reads the batch
//! from one JSON parameter (`json_each`).

use chrono::{DateTime, SecondsFormat, Utc};
use sea_orm::{
    Condition, ConnectionTrait, DatabaseConnection, DbBackend, QueryOrder, QuerySelect, Statement,
    entity::prelude::*, sea_query::Query,
};

use crate::domain::{ProbeResult, StatusRecord, UserId};

/// Rows per insert statement, which bounds its memory and lock time (the
/// arrays and the JSON text have no parameter limit).
const POSTGRES_CHUNK: usize = 20_000;
const SQLITE_CHUNK: usize = 5_000;
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

/// Inserts results, skipping any whose `(url_id, due_at)` is stored already.
/// Returns how many rows were added. Every URL id must exist.
pub async fn insert_batch(db: &DatabaseConnection, rows: &[&ProbeResult]) -> anyhow::Result<u64> {
    let mut inserted = 0;
    if db.get_database_backend() == DbBackend::Postgres {
        let pool = db.get_postgres_connection_pool();
        for chunk in rows.chunks(POSTGRES_CHUNK) {
            inserted += insert_unnest(pool, chunk).await?;
        }
    } else {
        for chunk in rows.chunks(SQLITE_CHUNK) {
            inserted += insert_json_each(db, chunk).await?;
        }
    }
    Ok(inserted)
}

fn timestamp(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or_default()
}

/// Postgres: seven array parameters, whatever the number of rows.
async fn insert_unnest(pool: &sqlx::PgPool, rows: &[&ProbeResult]) -> anyhow::Result<u64> {
    let done = sqlx::query(
        "INSERT INTO statuses (url_id, due_at, probed_at, status_code, latency_micros, error_kind, error_message) \
         SELECT * FROM UNNEST($1::int8[], $2::timestamptz[], $3::timestamptz[], $4::int4[], $5::int8[], $6::int2[], $7::text[]) \
         ON CONFLICT (url_id, due_at) DO NOTHING",
    )
    .bind(rows.iter().map(|r| r.url_id).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| timestamp(r.due_ms * 1000)).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| timestamp(r.started_us)).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.status_code).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.latency_us).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.error_kind).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.error_message.clone()).collect::<Vec<_>>())
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// SQLite stores a timestamp as the text sqlx writes for a bound
/// `DateTime<Utc>`; rows written here must compare equal to those (the
/// unique key includes `due_at`).
pub fn sqlite_timestamp_text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, false)
}

/// SQLite: the rows as one JSON array of arrays, one bound parameter.
async fn insert_json_each(db: &DatabaseConnection, rows: &[&ProbeResult]) -> anyhow::Result<u64> {
    let json = serde_json::Value::Array(
        rows.iter()
            .map(|r| {
                serde_json::json!([
                    r.url_id,
                    sqlite_timestamp_text(timestamp(r.due_ms * 1000)),
                    sqlite_timestamp_text(timestamp(r.started_us)),
                    r.status_code,
                    r.latency_us,
                    r.error_kind,
                    r.error_message,
                ])
            })
            .collect(),
    );
    // `WHERE true` keeps SQLite from reading ON CONFLICT as a join clause.
    let done = db
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Sqlite,
            "INSERT INTO statuses (url_id, due_at, probed_at, status_code, latency_micros, error_kind, error_message) \
             SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, value ->> 6 \
             FROM json_each(?1) WHERE true \
             ON CONFLICT (url_id, due_at) DO NOTHING",
            [json.to_string().into()],
        ))
        .await?;
    Ok(done.rows_affected())
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
        }
    }
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
