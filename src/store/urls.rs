//! Monitored URLs; `(user_id, url)` is unique.

use sea_orm::entity::prelude::*;
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, PaginatorTrait, QueryOrder, Statement,
    TransactionTrait,
};

use crate::domain::{Period, TargetUrl, UrlRecord, UserId};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "urls")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub user_id: i64,
    pub url: String,
    pub period_seconds: i32,
    pub created_at: DateTimeUtc,
    /// Fixes the grid of due times: `phase_ms + k * period` (ms since the epoch).
    pub phase_ms: i64,
    /// The next due time no prober has claimed yet.
    pub next_due_ms: i64,
    /// The due time claimed last.
    pub last_due_ms: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::users::Entity",
        from = "Column::UserId",
        to = "super::users::Column::Id",
        on_delete = "Cascade"
    )]
    User,
}

impl Related<super::users::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::User.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}

/// Which of `ids` are URLs that still exist. One statement text whatever the
/// number of ids (an array on Postgres, a JSON array on SQLite).
pub async fn existing_ids(
    db: &DatabaseConnection,
    ids: &[i64],
) -> Result<std::collections::HashSet<i64>, DbErr> {
    let statement = match db.get_database_backend() {
        DbBackend::Postgres => Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT id FROM urls WHERE id = ANY($1)",
            [ids.to_vec().into()],
        ),
        backend => Statement::from_sql_and_values(
            backend,
            "SELECT id FROM urls WHERE id IN (SELECT value FROM json_each(?1))",
            [serde_json::to_string(ids).unwrap_or_default().into()],
        ),
    };
    db.query_all_raw(statement)
        .await?
        .iter()
        .map(|row| row.try_get::<i64>("", "id"))
        .collect()
}

impl From<Model> for UrlRecord {
    fn from(m: Model) -> Self {
        Self {
            id: m.id,
            user_id: UserId(m.user_id),
            url: m.url,
            period: Period::from_stored_seconds(m.period_seconds),
            created_at: m.created_at,
        }
    }
}

/// A URL to insert: its schedule's phase and first due time are chosen by
/// the caller.
#[derive(Debug, Clone)]
pub struct NewUrl<'a> {
    pub user: UserId,
    pub url: &'a TargetUrl,
    pub period: Period,
    pub created_at: DateTimeUtc,
    pub phase_ms: i64,
    pub next_due_ms: i64,
}

/// Inserts a URL while the user's quota counter is below `max_per_user`,
/// raising the counter with it. `None`: the counter was not raised (at the
/// quota, or the account is gone). A URL the user monitors already is a
/// unique violation ([`super::is_unique_violation`]), the counter unchanged.
///
/// On Postgres the counter and the insert are one statement (one round
/// trip, the user's row held for that statement only); on SQLite, whose
/// writes take turns anyway, one transaction.
pub async fn insert_within_quota(
    db: &DatabaseConnection,
    new: NewUrl<'_>,
    max_per_user: u32,
) -> Result<Option<UrlRecord>, DbErr> {
    let quota: [sea_orm::Value; 2] = [
        new.user.0.into(),
        i32::try_from(max_per_user).unwrap_or(i32::MAX).into(),
    ];
    let row: [sea_orm::Value; 6] = [
        new.user.0.into(),
        new.url.as_str().into(),
        i32::try_from(new.period.seconds())
            .unwrap_or(i32::MAX)
            .into(),
        new.created_at.into(),
        new.phase_ms.into(),
        new.next_due_ms.into(),
    ];
    let added = match db.get_database_backend() {
        DbBackend::Postgres => {
            // $1 is the user in both parts; the row's own user is dropped.
            let values = quota.into_iter().chain(row.into_iter().skip(1));
            Entity::find()
                .from_raw_sql(Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    ADD_POSTGRES,
                    values,
                ))
                .one(db)
                .await?
        }
        backend => {
            let txn = db.begin().await?;
            let raised = txn
                .execute_raw(Statement::from_sql_and_values(backend, RAISE_COUNT, quota))
                .await?
                .rows_affected();
            let added = if raised == 1 {
                Entity::find()
                    .from_raw_sql(Statement::from_sql_and_values(backend, INSERT, row))
                    .one(&txn)
                    .await
            } else {
                Ok(None)
            };
            if matches!(added, Ok(Some(_))) {
                txn.commit().await?;
            } else {
                txn.rollback().await?;
            }
            added?
        }
    };
    Ok(added.map(UrlRecord::from))
}

/// Postgres: raise the counter while below the quota and insert, one
/// statement. No row back means the counter was not raised.
const ADD_POSTGRES: &str = "WITH quota AS (
    UPDATE users SET url_count = url_count + 1 WHERE id = $1 AND url_count < $2 RETURNING id
)
INSERT INTO urls (user_id, url, period_seconds, created_at, phase_ms, next_due_ms)
SELECT id, $3, $4, $5, $6, $7 FROM quota
RETURNING *";

/// SQLite, inside a transaction: raise the counter while below the quota...
const RAISE_COUNT: &str =
    "UPDATE users SET url_count = url_count + 1 WHERE id = ? AND url_count < ?";

/// ...then insert.
const INSERT: &str =
    "INSERT INTO urls (user_id, url, period_seconds, created_at, phase_ms, next_due_ms)
VALUES (?, ?, ?, ?, ?, ?)
RETURNING *";

/// Whether the user monitors this URL already.
pub async fn is_monitored(
    db: &DatabaseConnection,
    user: UserId,
    url: &TargetUrl,
) -> Result<bool, DbErr> {
    Ok(Entity::find()
        .filter(Column::UserId.eq(user.0))
        .filter(Column::Url.eq(url.as_str()))
        .count(db)
        .await?
        > 0)
}

/// The user's URLs, oldest first.
pub async fn list_for_user(db: &DatabaseConnection, user: UserId) -> Result<Vec<UrlRecord>, DbErr> {
    Ok(Entity::find()
        .filter(Column::UserId.eq(user.0))
        .order_by_asc(Column::Id)
        .all(db)
        .await?
        .into_iter()
        .map(UrlRecord::from)
        .collect())
}

/// The user's URL with this id, if there is one.
pub async fn get_for_user(
    db: &DatabaseConnection,
    user: UserId,
    id: i64,
) -> Result<Option<UrlRecord>, DbErr> {
    Ok(Entity::find_by_id(id)
        .filter(Column::UserId.eq(user.0))
        .one(db)
        .await?
        .map(UrlRecord::from))
}

/// Deletes the user's URL (its statuses go with it) and lowers the user's
/// quota counter, in one transaction. `false`: the user has no such URL.
pub async fn delete_for_user(
    db: &DatabaseConnection,
    user: UserId,
    id: i64,
) -> Result<bool, DbErr> {
    let txn = db.begin().await?;
    let deleted = Entity::delete_many()
        .filter(Column::Id.eq(id))
        .filter(Column::UserId.eq(user.0))
        .exec(&txn)
        .await?
        .rows_affected;
    if deleted == 0 {
        txn.rollback().await?;
        return Ok(false);
    }
    let backend = txn.get_database_backend();
    txn.execute_raw(Statement::from_sql_and_values(
        backend,
        match backend {
            DbBackend::Postgres => "UPDATE users SET url_count = url_count - 1 WHERE id = $1",
            _ => "UPDATE users SET url_count = url_count - 1 WHERE id = ?",
        },
        [user.0.into()],
    ))
    .await?;
    txn.commit().await?;
    Ok(true)
}
