//! Adding, listing and deleting a user's monitored URLs.
//!
//! A URL belongs to one user; every query filters by the caller's id, so
//! another user's URL is indistinguishable from one that does not exist.

use std::sync::Arc;

use chrono::Utc;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, SqlErr, Statement, TransactionTrait,
};
use tokio::sync::Notify;

use super::time;
use crate::{
    domain::{Period, PeriodBounds, TargetUrl, UserId},
    error::{Error, Result},
    store::{urls, users},
};

#[derive(Debug)]
pub struct UrlService {
    db: DatabaseConnection,
    bounds: PeriodBounds,
    max_per_user: u32,
    /// Wakes this instance's scheduler, so a new URL is probed at once.
    scheduler: Arc<Notify>,
}

impl UrlService {
    pub fn new(
        db: DatabaseConnection,
        bounds: PeriodBounds,
        max_per_user: u32,
        scheduler: Arc<Notify>,
    ) -> Self {
        Self {
            db,
            bounds,
            max_per_user,
            scheduler,
        }
    }

    /// Starts monitoring `url` for `user`.
    ///
    /// The quota is a counter on the user's row, raised only while below the
    /// limit, in the same statement as the insert on Postgres (one round
    /// trip, the row held for that statement only) and in the same
    /// transaction on SQLite (whose writes take turns anyway). A duplicate
    /// URL rolls the counter back with the insert, so the quota holds under
    /// races and costs the same at any count.
    pub async fn add(
        &self,
        user: UserId,
        url: &str,
        period: Option<pbjson_types::Duration>,
    ) -> Result<urls::Model> {
        let url = TargetUrl::parse("url", url)?;
        let period = Period::parse("period", period, self.bounds)?;
        let now = time::truncate_to_micros(Utc::now());
        // Due at once; later due times fall on a random phase of the period,
        // so URLs added together do not fire together.
        let phase_ms = rand::Rng::gen_range(
            &mut rand::thread_rng(),
            0..i64::from(period.seconds()) * 1000,
        );
        let quota: [sea_orm::Value; 2] = [
            user.0.into(),
            i32::try_from(self.max_per_user).unwrap_or(i32::MAX).into(),
        ];
        let row: [sea_orm::Value; 6] = [
            user.0.into(),
            url.as_str().into(),
            i32::try_from(period.seconds())
                .map_err(Error::internal)?
                .into(),
            now.into(),
            phase_ms.into(),
            now.timestamp_millis().into(),
        ];

        let added = match self.db.get_database_backend() {
            DbBackend::Postgres => {
                // $1 is the user in both parts; the row's own user is dropped.
                let values = quota.into_iter().chain(row.into_iter().skip(1));
                urls::Entity::find()
                    .from_raw_sql(Statement::from_sql_and_values(
                        DbBackend::Postgres,
                        ADD_POSTGRES,
                        values,
                    ))
                    .one(&self.db)
                    .await
            }
            backend => {
                let txn = self.db.begin().await?;
                let raised = txn
                    .execute_raw(Statement::from_sql_and_values(backend, RAISE_COUNT, quota))
                    .await?
                    .rows_affected();
                let added = if raised == 1 {
                    urls::Entity::find()
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
                added
            }
        };
        let model = match added {
            Ok(Some(model)) => model,
            Ok(None) => return Err(self.why_not_added(user, &url).await),
            Err(e) => {
                return Err(match e.sql_err() {
                    Some(SqlErr::UniqueConstraintViolation(_)) => already_monitored(&url),
                    _ => e.into(),
                });
            }
        };
        self.scheduler.notify_one();
        tracing::info!(user_id = user.0, url_id = model.id, "url added");
        Ok(model)
    }

    /// Why the quota counter was not raised: the URL is already there, the
    /// user is at the quota, or the account is gone.
    async fn why_not_added(&self, user: UserId, url: &TargetUrl) -> Error {
        let duplicate = urls::Entity::find()
            .filter(urls::Column::UserId.eq(user.0))
            .filter(urls::Column::Url.eq(url.as_str()))
            .count(&self.db)
            .await;
        let exists = users::Entity::find_by_id(user.0).count(&self.db).await;
        match (duplicate, exists) {
            (Err(e), _) | (_, Err(e)) => e.into(),
            (Ok(d), _) if d > 0 => already_monitored(url),
            (_, Ok(0)) => {
                Error::Unauthenticated("this account no longer exists; register again".into())
            }
            _ => Error::ResourceExhausted(format!(
                "you monitor {} URLs, the most allowed; delete one to add another",
                self.max_per_user
            )),
        }
    }

    /// The user's URLs, oldest first.
    pub async fn list(&self, user: UserId) -> Result<Vec<urls::Model>> {
        Ok(urls::Entity::find()
            .filter(urls::Column::UserId.eq(user.0))
            .order_by_asc(urls::Column::Id)
            .all(&self.db)
            .await?)
    }

    /// The user's URL with this id, or NOT_FOUND.
    pub async fn get(&self, user: UserId, field: &'static str, id: i64) -> Result<urls::Model> {
        check_id(field, id)?;
        urls::Entity::find_by_id(id)
            .filter(urls::Column::UserId.eq(user.0))
            .one(&self.db)
            .await?
            .ok_or_else(|| not_found(id))
    }

    /// Stops monitoring a URL; its statuses go with it, and the user's quota
    /// counter goes down in the same transaction.
    pub async fn delete(&self, user: UserId, id: i64) -> Result<()> {
        check_id("id", id)?;
        let txn = self.db.begin().await?;
        let result = urls::Entity::delete_many()
            .filter(urls::Column::Id.eq(id))
            .filter(urls::Column::UserId.eq(user.0))
            .exec(&txn)
            .await?;
        if result.rows_affected == 0 {
            txn.rollback().await?;
            return Err(not_found(id));
        }
        txn.execute_raw(Statement::from_sql_and_values(
            txn.get_database_backend(),
            match txn.get_database_backend() {
                DbBackend::Postgres => "UPDATE users SET url_count = url_count - 1 WHERE id = $1",
                _ => "UPDATE users SET url_count = url_count - 1 WHERE id = ?",
            },
            [user.0.into()],
        ))
        .await?;
        txn.commit().await?;
        tracing::info!(user_id = user.0, url_id = id, "url deleted");
        Ok(())
    }
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

fn already_monitored(url: &TargetUrl) -> Error {
    Error::AlreadyExists(format!(
        "you already monitor {url}; delete it first to change its period"
    ))
}

pub(super) fn check_id(field: &'static str, id: i64) -> Result<()> {
    if id <= 0 {
        return Err(Error::invalid(
            field,
            "is required and must be a positive URL id",
        ));
    }
    Ok(())
}

fn not_found(id: i64) -> Error {
    Error::NotFound(format!("you have no URL with id {id}"))
}
