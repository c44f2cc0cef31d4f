//! Adding, listing and deleting a user's monitored URLs.
//!
//! A URL belongs to one user; every query filters by the caller's id, so
//! another user's URL is indistinguishable from one that does not exist.

use std::sync::Arc;

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, Set, SqlErr, TransactionTrait,
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
    /// The insert and the quota check share a transaction, and concurrent
    /// adds by one user take turns (a row lock on Postgres, the write lock
    /// SQLite takes at the insert), so the quota holds under races.
    pub async fn add(
        &self,
        user: UserId,
        url: &str,
        period: Option<pbjson_types::Duration>,
    ) -> Result<urls::Model> {
        let url = TargetUrl::parse("url", url)?;
        let period = Period::parse("period", period, self.bounds)?;

        let txn = self.db.begin().await?;
        if txn.get_database_backend() == DbBackend::Postgres {
            users::Entity::find_by_id(user.0)
                .select_only()
                .column(users::Column::Id)
                .lock_exclusive()
                .into_tuple::<i64>()
                .one(&txn)
                .await?;
        }
        let now = time::truncate_to_micros(Utc::now());
        let row = urls::ActiveModel {
            user_id: Set(user.0),
            url: Set(url.as_str().to_owned()),
            period_seconds: Set(i32::try_from(period.seconds()).map_err(Error::internal)?),
            created_at: Set(now),
            // Due at once; later due times fall on a random phase of the
            // period, so URLs added together do not fire together.
            phase_ms: Set(rand::Rng::gen_range(
                &mut rand::thread_rng(),
                0..i64::from(period.seconds()) * 1000,
            )),
            next_due_ms: Set(now.timestamp_millis()),
            last_due_ms: Set(None),
            ..Default::default()
        };
        let model = match row.insert(&txn).await {
            Ok(model) => model,
            Err(e) => {
                return Err(match e.sql_err() {
                    Some(SqlErr::UniqueConstraintViolation(_)) => Error::AlreadyExists(format!(
                        "you already monitor {url}; delete it first to change its period"
                    )),
                    Some(SqlErr::ForeignKeyConstraintViolation(_)) => Error::Unauthenticated(
                        "this account no longer exists; register again".into(),
                    ),
                    _ => e.into(),
                });
            }
        };
        let count = urls::Entity::find()
            .filter(urls::Column::UserId.eq(user.0))
            .count(&txn)
            .await?;
        if count > u64::from(self.max_per_user) {
            txn.rollback().await?;
            return Err(Error::ResourceExhausted(format!(
                "you monitor {} URLs, the most allowed; delete one to add another",
                self.max_per_user
            )));
        }
        txn.commit().await?;
        self.scheduler.notify_one();
        tracing::info!(user_id = user.0, url_id = model.id, "url added");
        Ok(model)
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

    /// Stops monitoring a URL; its statuses go with it.
    pub async fn delete(&self, user: UserId, id: i64) -> Result<()> {
        check_id("id", id)?;
        let result = urls::Entity::delete_many()
            .filter(urls::Column::Id.eq(id))
            .filter(urls::Column::UserId.eq(user.0))
            .exec(&self.db)
            .await?;
        if result.rows_affected == 0 {
            return Err(not_found(id));
        }
        tracing::info!(user_id = user.0, url_id = id, "url deleted");
        Ok(())
    }
}

fn check_id(field: &'static str, id: i64) -> Result<()> {
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
