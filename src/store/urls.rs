//! Monitored URLs; `(user_id, url)` is unique.

use sea_orm::entity::prelude::*;
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, PaginatorTrait, QueryOrder, Statement,
    TransactionTrait,
};

use super::numbered;
use crate::domain::{
    Assertions, Period, TargetUrl, UrlRecord, UserId,
    state::{Thresholds, UrlState},
    target_url,
};

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
    pub name: Option<String>,
    pub paused: bool,
    pub failure_threshold: i32,
    pub success_threshold: i32,
    /// The URL's assertions as JSON (`domain::assertion`); `None`: none.
    pub assertions: Option<String>,
    /// Another URL of the user's this one depends on.
    pub depends_on: Option<i64>,
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

/// The columns of [`Model`], named: statements that return URL rows list
/// them instead of `*`. A pooled connection keeps each statement prepared
/// with the column list it had then; after a migration adds a column,
/// Postgres refuses such a `*` statement ("cached plan must not change
/// result type") and sqlx's SQLite worker panics on the longer row (test:
/// `migrations::*::statements_prepared_before_a_migration_keep_working_after_it`).
macro_rules! url_columns {
    () => {
        "id, user_id, url, period_seconds, created_at, phase_ms, name, paused, failure_threshold, success_threshold, assertions, depends_on"
    };
}
pub(crate) use url_columns;

/// The owner of each of `ids` that is a URL still there (a deleted one is
/// absent). One statement text whatever the number of ids (an array on Postgres, a JSON array on SQLite).
pub async fn owners_of_ids(
    db: &DatabaseConnection,
    ids: &[i64],
) -> Result<std::collections::HashMap<i64, i64>, DbErr> {
    let statement = match db.get_database_backend() {
        DbBackend::Postgres => Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT id, user_id FROM urls WHERE id = ANY($1)",
            [ids.to_vec().into()],
        ),
        backend => Statement::from_sql_and_values(
            backend,
            "SELECT id, user_id FROM urls WHERE id IN (SELECT value FROM json_each(?1))",
            [serde_json::to_string(ids).unwrap_or_default().into()],
        ),
    };
    db.query_all_raw(statement)
        .await?
        .iter()
        .map(|row| {
            Ok((
                row.try_get::<i64>("", "id")?,
                row.try_get::<i64>("", "user_id")?,
            ))
        })
        .collect()
}

/// Who owns the URL with this id (None: there is none).
pub async fn owner_of(db: &DatabaseConnection, id: i64) -> Result<Option<UserId>, DbErr> {
    Ok(Entity::find_by_id(id)
        .one(db)
        .await?
        .map(|m| UserId(m.user_id)))
}

/// The URL as stored, in the state of a URL with no result yet (see
/// [`with_states`] for the state the flush keeps).
impl From<Model> for UrlRecord {
    fn from(m: Model) -> Self {
        Self {
            id: m.id,
            user_id: UserId(m.user_id),
            url: m.url,
            period: Period::from_stored_seconds(m.period_seconds),
            created_at: m.created_at,
            name: m.name,
            paused: m.paused,
            thresholds: Thresholds {
                failure: u32::try_from(m.failure_threshold).unwrap_or(1),
                success: u32::try_from(m.success_threshold).unwrap_or(1),
            },
            state: if m.paused {
                UrlState::Paused
            } else {
                UrlState::Pending
            },
            state_since: None,
            assertions: stored_assertions(m.id, m.assertions.as_deref()),
            tls_not_after: None,
            depends_on: m.depends_on,
        }
    }
}

/// A URL's stored assertions. They were checked when written; a text that
/// no longer reads (a bug, or a hand edit) is logged and read as none.
pub(super) fn stored_assertions(url_id: i64, stored: Option<&str>) -> Assertions {
    stored.map_or_else(Assertions::default, |json| {
        Assertions::from_json(json).unwrap_or_else(|e| {
            tracing::error!(url_id, error = %e, "stored assertions do not read; probing without them");
            Assertions::default()
        })
    })
}

/// The URLs with the state the flush keeps for them (one query for all).
pub(super) async fn with_states(
    db: &impl ConnectionTrait,
    models: Vec<Model>,
) -> Result<Vec<UrlRecord>, DbErr> {
    if models.is_empty() {
        return Ok(Vec::new());
    }
    let backend = db.get_database_backend();
    let ids: Vec<i64> = models.iter().map(|m| m.id).collect();
    let statement = match backend {
        DbBackend::Postgres => Statement::from_sql_and_values(
            backend,
            "SELECT url_id, state, state_since, tls_not_after FROM url_states WHERE url_id = ANY($1)",
            [ids.into()],
        ),
        _ => Statement::from_sql_and_values(
            backend,
            "SELECT url_id, state, state_since, tls_not_after FROM url_states \
             WHERE url_id IN (SELECT value FROM json_each(?))",
            [serde_json::to_string(&ids).unwrap_or_default().into()],
        ),
    };
    let mut states = std::collections::HashMap::new();
    for row in db.query_all_raw(statement).await? {
        let id: i64 = row.try_get("", "url_id")?;
        let state: i16 = row.try_get("", "state")?;
        let since: Option<DateTimeUtc> = row.try_get("", "state_since")?;
        let tls: Option<DateTimeUtc> = row.try_get("", "tls_not_after")?;
        states.insert(id, (UrlState::from_stored(state), since, tls));
    }
    Ok(models
        .into_iter()
        .map(|m| {
            let state = states.get(&m.id).copied();
            let mut record = UrlRecord::from(m);
            if let Some((state, since, tls)) = state {
                record.state = state;
                record.state_since = since;
                record.tls_not_after = tls;
            }
            record
        })
        .collect())
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
    pub assertions: &'a Assertions,
}

/// The limits an added URL must stay within.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// URLs one user may monitor.
    pub max_urls: u32,
    /// Millionths of a probe per second one user's URLs may send to one host.
    pub max_host_rate_micros: i64,
}

/// Inserts a URL while the user's quota counter is below
/// `limits.max_urls` and the user's rate on the URL's host stays within
/// `limits.max_host_rate_micros`, raising both with it. `None`: nothing was
/// changed (a limit was reached, or the account is gone). A URL the user
/// monitors already is a unique violation ([`super::is_unique_violation`]),
/// nothing changed.
///
/// One transaction. On Postgres its work is one statement (the user's row
/// and the (user, host) row are held from that statement to the commit);
/// on SQLite, whose writes take turns anyway, three.
pub async fn insert_within_limits(
    db: &DatabaseConnection,
    new: NewUrl<'_>,
    limits: Limits,
) -> Result<Option<UrlRecord>, DbErr> {
    let quota: [sea_orm::Value; 2] = [
        new.user.0.into(),
        i32::try_from(limits.max_urls).unwrap_or(i32::MAX).into(),
    ];
    let host: [sea_orm::Value; 3] = [
        new.url.host_key().into(),
        new.period.rate_micros().into(),
        limits.max_host_rate_micros.into(),
    ];
    let row: [sea_orm::Value; 5] = [
        new.url.as_str().into(),
        i32::try_from(new.period.seconds())
            .unwrap_or(i32::MAX)
            .into(),
        new.created_at.into(),
        new.phase_ms.into(),
        new.assertions.to_json().into(),
    ];
    let next_due_ms: sea_orm::Value = new.next_due_ms.into();
    let backend = db.get_database_backend();
    let txn = db.begin().await?;
    let since_ms: sea_orm::Value = new.created_at.timestamp_millis().into();
    let added = if backend == DbBackend::Postgres {
        let values = quota
            .into_iter()
            .chain(host)
            .chain(row)
            .chain([next_due_ms, since_ms]);
        Entity::find()
            .from_raw_sql(Statement::from_sql_and_values(
                backend,
                ADD_POSTGRES,
                values,
            ))
            .one(&txn)
            .await
    } else {
        let user = new.user.0;
        let raised = |sql, values: Vec<sea_orm::Value>| {
            let txn = &txn;
            async move {
                Ok::<_, DbErr>(
                    txn.execute_raw(Statement::from_sql_and_values(backend, sql, values))
                        .await?
                        .rows_affected()
                        == 1,
                )
            }
        };
        let host = std::iter::once(user.into()).chain(host).collect();
        let row = std::iter::once(user.into()).chain(row);
        if raised(RAISE_COUNT, quota.into()).await? && raised(RAISE_HOST_RATE, host).await? {
            let added = Entity::find()
                .from_raw_sql(Statement::from_sql_and_values(backend, INSERT, row))
                .one(&txn)
                .await?;
            if let Some(url) = &added {
                txn.execute_raw(Statement::from_sql_and_values(
                    backend,
                    INSERT_DUE,
                    [
                        url.id.into(),
                        next_due_ms,
                        new.period.millis().into(),
                        url.phase_ms.into(),
                    ],
                ))
                .await?;
                let schedule = [
                    url.id.into(),
                    since_ms.clone(),
                    url.period_seconds.into(),
                    url.phase_ms.into(),
                ];
                txn.execute_raw(Statement::from_sql_and_values(
                    backend,
                    INSERT_SCHEDULE,
                    schedule,
                ))
                .await?;
                txn.execute_raw(Statement::from_sql_and_values(
                    backend,
                    INSERT_STATE,
                    [url.id.into(), since_ms],
                ))
                .await?;
            }
            Ok(added)
        } else {
            Ok(None)
        }
    };
    if matches!(added, Ok(Some(_))) {
        txn.commit().await?;
    } else {
        txn.rollback().await?;
    }
    Ok(added?.map(UrlRecord::from))
}

/// Postgres: raise the quota counter while below the quota, then the
/// (user, host) rate while within its limit, insert, and start the URL's
/// due times, its schedule history and its state row (pending: the flush then only
/// locks and updates state rows, never creates them on its hot path). No row back means a limit was reached; the caller
/// rolls back what was raised.
const ADD_POSTGRES: &str = concat!(
    "WITH quota AS (
    UPDATE users SET url_count = url_count + 1 WHERE id = $1 AND url_count < $2 RETURNING id
), host AS (
    INSERT INTO host_rates (user_id, host, rate_micros)
    SELECT id, $3, $4 FROM quota WHERE $4 <= $5
    ON CONFLICT (user_id, host) DO UPDATE SET rate_micros = host_rates.rate_micros + EXCLUDED.rate_micros
    WHERE host_rates.rate_micros + EXCLUDED.rate_micros <= $5
    RETURNING user_id
), added AS (
    INSERT INTO urls (user_id, url, period_seconds, created_at, phase_ms, assertions)
    SELECT user_id, $6, $7, $8, $9, $10 FROM host
    RETURNING ",
    url_columns!(),
    "
), due AS (
    INSERT INTO url_schedules (url_id, next_due_ms, period_ms, phase_ms)
    SELECT id, $11, period_seconds::bigint * 1000, phase_ms FROM added
), schedule AS (
    INSERT INTO url_periods (url_id, since_ms, period_seconds, phase_ms, paused)
    SELECT id, $12, period_seconds, phase_ms, false FROM added
), state AS (
    INSERT INTO url_states (url_id, state, rolled_to_ms) SELECT id, 1, $12 FROM added
)
SELECT ",
    url_columns!(),
    " FROM added"
);

/// SQLite, inside a transaction: raise the counter while below the quota...
const RAISE_COUNT: &str =
    "UPDATE users SET url_count = url_count + 1 WHERE id = ? AND url_count < ?";

/// ...the (user, host) rate while within its limit...
const RAISE_HOST_RATE: &str = "INSERT INTO host_rates (user_id, host, rate_micros)
SELECT ?1, ?2, ?3 WHERE ?3 <= ?4
ON CONFLICT (user_id, host) DO UPDATE SET rate_micros = host_rates.rate_micros + excluded.rate_micros
WHERE host_rates.rate_micros + excluded.rate_micros <= ?4";

/// ...set its first due time, start its schedule history and its
/// (pending) state...
const INSERT_DUE: &str =
    "INSERT INTO url_schedules (url_id, next_due_ms, period_ms, phase_ms) VALUES (?, ?, ?, ?)";
const INSERT_SCHEDULE: &str =
    "INSERT INTO url_periods (url_id, since_ms, period_seconds, phase_ms, paused)
VALUES (?, ?, ?, ?, false)";
/// (Its roll mark is its creation: it has no status before, nothing to
/// roll; `store::rollups`.)
const INSERT_STATE: &str = "INSERT INTO url_states (url_id, state, rolled_to_ms) VALUES (?, 1, ?)";

/// ...after the insert.
const INSERT: &str = concat!(
    "INSERT INTO urls (user_id, url, period_seconds, created_at, phase_ms, assertions)
VALUES (?, ?, ?, ?, ?, ?)
RETURNING ",
    url_columns!()
);

/// How often the user's URLs probe `host`, in millionths of a probe per second.
pub async fn host_rate_micros(
    db: &impl ConnectionTrait,
    user: UserId,
    host: &str,
) -> Result<i64, DbErr> {
    let backend = db.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => {
            "SELECT rate_micros FROM host_rates WHERE user_id = $1 AND host = $2"
        }
        _ => "SELECT rate_micros FROM host_rates WHERE user_id = ? AND host = ?",
    };
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            backend,
            sql,
            [user.0.into(), host.into()],
        ))
        .await?;
    row.map_or(Ok(0), |row| row.try_get("", "rate_micros"))
}

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
    let models = Entity::find()
        .filter(Column::UserId.eq(user.0))
        .order_by_asc(Column::Id)
        .all(db)
        .await?;
    with_states(db, models).await
}

/// The user's URLs among `ids` (others' and missing ones left out), in
/// id order.
pub async fn get_many_for_user(
    db: &DatabaseConnection,
    user: UserId,
    ids: &[i64],
) -> Result<Vec<UrlRecord>, DbErr> {
    let models = Entity::find()
        .filter(Column::UserId.eq(user.0))
        .filter(Column::Id.is_in(ids.iter().copied()))
        .order_by_asc(Column::Id)
        .all(db)
        .await?;
    with_states(db, models).await
}

/// The user's URL with this id, if there is one.
pub async fn get_for_user(
    db: &DatabaseConnection,
    user: UserId,
    id: i64,
) -> Result<Option<UrlRecord>, DbErr> {
    let model = Entity::find_by_id(id)
        .filter(Column::UserId.eq(user.0))
        .one(db)
        .await?;
    Ok(with_states(db, model.into_iter().collect()).await?.pop())
}

/// Deletes the user's URL (its statuses go with it) and lowers the user's
/// quota counter and rate on its host, in one transaction. `false`: the
/// user has no such URL.
pub async fn delete_for_user(
    db: &DatabaseConnection,
    user: UserId,
    id: i64,
) -> Result<bool, DbErr> {
    let backend = db.get_database_backend();
    let sql = |pg: &str| numbered(backend, pg);
    let txn = db.begin().await?;
    let Some(deleted) = txn
        .query_one_raw(Statement::from_sql_and_values(
            backend,
            sql("DELETE FROM urls WHERE id = $1 AND user_id = $2 \
                 RETURNING url, period_seconds, paused"),
            [id.into(), user.0.into()],
        ))
        .await?
    else {
        txn.rollback().await?;
        return Ok(false);
    };
    let host = stored_host(&deleted.try_get::<String>("", "url")?);
    // A paused URL's rate was given back when it was paused.
    let rate_micros = if deleted.try_get("", "paused")? {
        0
    } else {
        Period::from_stored_seconds(deleted.try_get("", "period_seconds")?).rate_micros()
    };
    for (statement, values) in [
        (
            "UPDATE users SET url_count = url_count - 1 WHERE id = $1",
            vec![user.0.into()],
        ),
        (
            "UPDATE host_rates SET rate_micros = rate_micros - $3 WHERE user_id = $1 AND host = $2",
            vec![user.0.into(), host.clone().into(), rate_micros.into()],
        ),
        (DROP_SPENT_HOST_RATE, vec![user.0.into(), host.into()]),
        // Its children depend on nothing now.
        (
            "UPDATE urls SET depends_on = NULL WHERE depends_on = $1 AND user_id = $2",
            vec![id.into(), user.0.into()],
        ),
        // Its raw statuses: no foreign key on Postgres (migration 17).
        ("DELETE FROM statuses WHERE url_id = $1", vec![id.into()]),
    ] {
        txn.execute_raw(Statement::from_sql_and_values(
            backend,
            sql(statement),
            values,
        ))
        .await?;
    }
    if backend == DbBackend::Postgres {
        // Its packed days (migration 19).
        txn.execute_raw(Statement::from_sql_and_values(
            backend,
            "DELETE FROM statuses_packed WHERE url_id = $1",
            [id.into()],
        ))
        .await?;
    }
    txn.commit().await?;
    Ok(true)
}

/// The host a stored URL's probes count against. Parsed by the URL parser
/// alone: a URL stored before a stricter rule of `TargetUrl` still had its
/// host counted by this one.
pub(super) fn stored_host(url: &str) -> String {
    url::Url::parse(url)
        .map(|u| target_url::host_key(&u).to_owned())
        .unwrap_or_default()
}

/// A (user, host) rate that fell to nothing is dropped.
pub(super) const DROP_SPENT_HOST_RATE: &str =
    "DELETE FROM host_rates WHERE user_id = $1 AND host = $2 AND rate_micros <= 0";

#[cfg(test)]
mod columns {
    use sea_orm::{IdenStatic, Iterable};

    /// `url_columns!` names every column of the model, in its order.
    #[test]
    fn url_columns_are_the_models() {
        let model: Vec<&str> = super::Column::iter().map(|c| c.as_str()).collect();
        let listed: Vec<&str> = super::url_columns!().split(',').map(str::trim).collect();
        assert_eq!(listed, model);
    }
}
