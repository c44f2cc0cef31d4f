//! Maintenance windows (`domain::maintenance`): a user's, and what the
//! flush's window cache reads for a batch (its owners' versions, then the
//! windows of those that changed, each in one statement by `user_id`).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, QueryResult, Statement};

use super::{numbered, one_of};
use crate::domain::{
    UserId,
    maintenance::{MaintenanceWindow, NewWindow, WindowSchedule, WindowsVersion},
};

/// Why a window was not created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// The user has `max` windows already.
    Quota,
    /// This URL id is not one of the user's URLs.
    UnknownUrl(i64),
}

const COLUMNS: &str =
    "id, user_id, url_ids, start_ms, end_ms, rrule, duration_ms, time_zone, created_at";

fn window_from(row: &QueryResult) -> Result<MaintenanceWindow, DbErr> {
    let url_ids: String = row.try_get("", "url_ids")?;
    let start_ms: i64 = row.try_get("", "start_ms")?;
    let end_ms: Option<i64> = row.try_get("", "end_ms")?;
    let rrule: Option<String> = row.try_get("", "rrule")?;
    let duration_ms: Option<i64> = row.try_get("", "duration_ms")?;
    let created_at: DateTime<Utc> = row.try_get("", "created_at")?;
    let schedule = match (rrule, end_ms) {
        (Some(rrule), _) => WindowSchedule::Recurring {
            start_ms,
            rrule,
            duration_ms: duration_ms.unwrap_or(0),
        },
        (None, end_ms) => WindowSchedule::Once {
            start_ms,
            end_ms: end_ms.unwrap_or(start_ms),
        },
    };
    Ok(MaintenanceWindow {
        id: row.try_get("", "id")?,
        user_id: row.try_get("", "user_id")?,
        url_ids: serde_json::from_str(&url_ids).unwrap_or_default(),
        schedule,
        time_zone: row.try_get("", "time_zone")?,
        created_ms: created_at.timestamp_millis(),
    })
}

/// Adds a window for `user` unless the user has `max` windows already or a
/// URL of `new.url_ids` is not the user's. One transaction, which first
/// takes the user's row (Postgres) or the write lock (SQLite), so two
/// concurrent adds cannot both pass the quota.
pub async fn insert_within_limit(
    db: &DatabaseConnection,
    user: UserId,
    new: &NewWindow,
    created_at: DateTime<Utc>,
    max: u64,
) -> Result<Result<MaintenanceWindow, Refused>, DbErr> {
    let backend = db.get_database_backend();
    let sql = |pg: &str| numbered(backend, pg);
    let (txn, count) = super::begin_counting(db, user, "maintenance_windows").await?;
    if u64::try_from(count).unwrap_or(0) >= max {
        txn.rollback().await?;
        return Ok(Err(Refused::Quota));
    }
    if !new.url_ids.is_empty() {
        let (cond, ids) = one_of(backend, "id", 2, &new.url_ids);
        let owned: Vec<i64> = txn
            .query_all_raw(Statement::from_sql_and_values(
                backend,
                sql(&format!(
                    "SELECT id FROM urls WHERE user_id = $1 AND {cond}"
                )),
                [user.0.into(), ids],
            ))
            .await?
            .iter()
            .map(|row| row.try_get::<i64>("", "id"))
            .collect::<Result<_, _>>()?;
        if let Some(missing) = new.url_ids.iter().find(|id| !owned.contains(id)) {
            txn.rollback().await?;
            return Ok(Err(Refused::UnknownUrl(*missing)));
        }
    }
    let (start_ms, end_ms, rrule, duration_ms) = match &new.schedule {
        WindowSchedule::Once { start_ms, end_ms } => (*start_ms, Some(*end_ms), None, None),
        WindowSchedule::Recurring {
            start_ms,
            rrule,
            duration_ms,
        } => (*start_ms, None, Some(rrule.clone()), Some(*duration_ms)),
    };
    let row = txn
        .query_one_raw(Statement::from_sql_and_values(
            backend,
            sql(&format!(
                "INSERT INTO maintenance_windows (user_id, url_ids, start_ms, end_ms, rrule, \
                 duration_ms, time_zone, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                 RETURNING {COLUMNS}"
            )),
            [
                user.0.into(),
                serde_json::to_string(&new.url_ids)
                    .unwrap_or_default()
                    .into(),
                start_ms.into(),
                end_ms.into(),
                rrule.into(),
                duration_ms.into(),
                new.time_zone.clone().into(),
                created_at.into(),
            ],
        ))
        .await?
        .ok_or_else(|| DbErr::RecordNotInserted)?;
    let window = window_from(&row)?;
    txn.commit().await?;
    Ok(Ok(window))
}

/// The user's windows, oldest first.
pub async fn list_for_user(
    db: &DatabaseConnection,
    user: UserId,
) -> Result<Vec<MaintenanceWindow>, DbErr> {
    let backend = db.get_database_backend();
    db.query_all_raw(Statement::from_sql_and_values(
        backend,
        numbered(
            backend,
            &format!("SELECT {COLUMNS} FROM maintenance_windows WHERE user_id = $1 ORDER BY id"),
        ),
        [user.0.into()],
    ))
    .await?
    .iter()
    .map(window_from)
    .collect()
}

/// Deletes the user's window. `false`: the user has no such window.
pub async fn delete_for_user(
    db: &DatabaseConnection,
    user: UserId,
    id: i64,
) -> Result<bool, DbErr> {
    super::delete_owned(db, "maintenance_windows", user, id).await
}

/// The [`WindowsVersion`] of each of `owners` that has windows (one
/// aggregate by the `user_id` index): what the flush's window cache checks
/// every batch.
pub async fn versions(
    db: &DatabaseConnection,
    owners: &[i64],
) -> Result<HashMap<i64, WindowsVersion>, DbErr> {
    if owners.is_empty() {
        return Ok(HashMap::new());
    }
    let backend = db.get_database_backend();
    let (cond, ids) = one_of(backend, "user_id", 1, owners);
    db.query_all_raw(Statement::from_sql_and_values(
        backend,
        numbered(
            backend,
            &format!(
                "SELECT user_id, count(*) AS n, max(id) AS max_id FROM maintenance_windows \
                 WHERE {cond} GROUP BY user_id"
            ),
        ),
        [ids],
    ))
    .await?
    .iter()
    .map(|row| {
        Ok((
            row.try_get("", "user_id")?,
            WindowsVersion {
                count: row.try_get("", "n")?,
                max_id: row.try_get("", "max_id")?,
            },
        ))
    })
    .collect()
}

/// Every window of `owners`, in one statement.
pub async fn for_owners(
    db: &DatabaseConnection,
    owners: &[i64],
) -> Result<Vec<MaintenanceWindow>, DbErr> {
    if owners.is_empty() {
        return Ok(Vec::new());
    }
    let backend = db.get_database_backend();
    let (cond, ids) = one_of(backend, "user_id", 1, owners);
    db.query_all_raw(Statement::from_sql_and_values(
        backend,
        numbered(
            backend,
            &format!("SELECT {COLUMNS} FROM maintenance_windows WHERE {cond}"),
        ),
        [ids],
    ))
    .await?
    .iter()
    .map(window_from)
    .collect()
}
