//! Changing a URL (UpdateUrl) in one transaction: its row, with its
//! schedule moved to the new period or pause (`domain::schedule`), the
//! user's rate on its host, its schedule history (`url_periods`), its
//! assertions and its state (`url_states`, through `domain::state::Tracker`).

use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, DbErr, EntityTrait, Statement,
    prelude::DateTimeUtc,
};

use super::{
    numbered,
    outcomes::{first_json, ms_to_time, tracker_from_row},
    urls::{DROP_SPENT_HOST_RATE, Entity, Model, host_rate_micros, stored_host, with_states},
};
use crate::domain::{Assertions, Period, UrlRecord, UrlUpdate, UserId, schedule::Schedule};

/// Changes the (user, host) rate by `$3`: a rise only while within `$4`.
const CHANGE_HOST_RATE: &str = "INSERT INTO host_rates (user_id, host, rate_micros)
SELECT $1, $2, $3 WHERE $3 <= $4
ON CONFLICT (user_id, host) DO UPDATE SET rate_micros = host_rates.rate_micros + excluded.rate_micros
WHERE excluded.rate_micros <= 0 OR host_rates.rate_micros + excluded.rate_micros <= $4";

/// A row of a URL's schedule history from `since_ms` on; of two changes
/// within one millisecond, the later one stands.
const APPEND_PERIOD: &str =
    "INSERT INTO url_periods (url_id, since_ms, period_seconds, phase_ms, paused)
VALUES ($1, $2, $3, $4, $5) ON CONFLICT (url_id, since_ms) DO UPDATE SET
period_seconds = excluded.period_seconds, phase_ms = excluded.phase_ms, paused = excluded.paused";

/// The URL's due times on its new grid, and the copies of the grid itself.
const MOVE_DUE: &str =
    "UPDATE url_schedules SET next_due_ms = $2, period_ms = $3, phase_ms = $4 WHERE url_id = $1";

/// What [`update_for_user`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Updated {
    Url(UrlRecord),
    /// The user has no such URL.
    NotFound,
    /// Nothing changed: the user's URLs on `host`, probed `rate_micros`
    /// millionths of a time a second, would be probed `more_micros` more
    /// with this one every `period`, past the limit.
    OverHostRate {
        host: String,
        rate_micros: i64,
        more_micros: i64,
        period: Period,
    },
    /// `depends_on` names no URL of the user's.
    UnknownParent(i64),
    /// `depends_on` would close a loop: this chain of URL ids, from the
    /// parent back to the URL.
    Cycle(Vec<i64>),
}

/// Most URLs a chain of `depends_on` is followed through.
const MAX_CHAIN: usize = 100;

/// Whether `parent` may be the parent of `id`: one of the user's URLs,
/// and not `id` itself nor one of its descendants (the chain up from
/// `parent` must not reach `id`).
async fn check_parent(
    txn: &sea_orm::DatabaseTransaction,
    user: UserId,
    id: i64,
    parent: i64,
) -> Result<Option<Updated>, DbErr> {
    let backend = txn.get_database_backend();
    let mut chain = vec![parent];
    let mut at = parent;
    for _ in 0..MAX_CHAIN {
        let row = txn
            .query_one_raw(Statement::from_sql_and_values(
                backend,
                numbered(
                    backend,
                    "SELECT depends_on FROM urls WHERE id = $1 AND user_id = $2",
                ),
                [at.into(), user.0.into()],
            ))
            .await?;
        let Some(row) = row else {
            return Ok((at == parent).then_some(Updated::UnknownParent(parent)));
        };
        match row.try_get::<Option<i64>>("", "depends_on")? {
            Some(up) if up == id => {
                chain.push(id);
                return Ok(Some(Updated::Cycle(chain)));
            }
            Some(up) => {
                chain.push(up);
                at = up;
            }
            None => return Ok(None),
        }
    }
    Ok(Some(Updated::Cycle(chain)))
}

/// Applies `update` to the user's URL at `now`, in one transaction: the
/// row (its schedule moved by [`Schedule::change`]), the (user, host) rate
/// by the difference (a rise only within `max_host_rate_micros`), a row of
/// its schedule history when the period or the pause changed, and its state
/// (`Tracker::pause` / `Tracker::resume`) when the pause changed.
///
/// The URL's row is locked first ([`lock_for_user`]; on SQLite the writer
/// lock, taken at `BEGIN IMMEDIATE`), then its state row, the way the flush
/// takes state rows.
pub async fn update_for_user(
    db: &DatabaseConnection,
    user: UserId,
    id: i64,
    update: &UrlUpdate,
    now: DateTimeUtc,
    max_host_rate_micros: i64,
) -> Result<Updated, DbErr> {
    let backend = db.get_database_backend();
    let sql = |pg: &str| numbered(backend, pg);
    let txn = super::begin_write(db).await?;
    let Some(url) = lock_for_user(&txn, user, id).await? else {
        txn.rollback().await?;
        return Ok(Updated::NotFound);
    };
    if let Some(Some(parent)) = update.depends_on
        && let Some(refused) = check_parent(&txn, user, id, parent).await?
    {
        txn.rollback().await?;
        return Ok(refused);
    }
    let now_ms = now.timestamp_millis();
    let (next_due_ms, last_due_ms) = lock_due(&txn, id).await?;
    let before = Schedule {
        period: Period::from_stored_seconds(url.period_seconds),
        phase_ms: url.phase_ms,
        next_due_ms,
        last_due_ms,
        paused: url.paused,
    };
    let after = before.change(
        update.period.unwrap_or(before.period),
        update.paused.unwrap_or(before.paused),
        now_ms,
    );
    let more_micros = after.rate_micros() - before.rate_micros();
    let host = stored_host(&url.url);
    if !change_host_rate(&txn, user, &host, more_micros, max_host_rate_micros).await? {
        let rate_micros = host_rate_micros(&txn, user, &host).await?;
        txn.rollback().await?;
        return Ok(Updated::OverHostRate {
            host,
            rate_micros,
            more_micros,
            period: after.period,
        });
    }
    let name = update.name.clone().unwrap_or(url.name);
    let threshold =
        |new: Option<u32>, old: i32| new.map_or(old, |n| i32::try_from(n).unwrap_or(old));
    let updated = Entity::find()
        .from_raw_sql(Statement::from_sql_and_values(
            backend,
            sql(concat!(
                "UPDATE urls SET name = $3, period_seconds = $4, phase_ms = $5, \
                 paused = $6, failure_threshold = $7, success_threshold = $8, assertions = $9, \
                 depends_on = $10 WHERE id = $1 AND user_id = $2 RETURNING ",
                super::urls::url_columns!()
            )),
            [
                id.into(),
                user.0.into(),
                name.into(),
                i32::try_from(after.period.seconds())
                    .unwrap_or(i32::MAX)
                    .into(),
                after.phase_ms.into(),
                after.paused.into(),
                threshold(update.failure_threshold, url.failure_threshold).into(),
                threshold(update.success_threshold, url.success_threshold).into(),
                update
                    .assertions
                    .as_ref()
                    .map_or(url.assertions, Assertions::to_json)
                    .into(),
                update.depends_on.unwrap_or(url.depends_on).into(),
            ],
        ))
        .one(&txn)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("the URL locked for its update".into()))?;
    move_schedule(&txn, id, &before, &after, now_ms).await?;
    if after.paused != before.paused {
        set_paused(&txn, id, after.paused, now_ms).await?;
    }
    let record = with_states(&txn, vec![updated]).await?.pop();
    txn.commit().await?;
    Ok(record.map_or(Updated::NotFound, Updated::Url))
}

/// Moves the URL's due times to `after` and appends a row to its schedule
/// history when its period or pause changed.
async fn move_schedule(
    txn: &sea_orm::DatabaseTransaction,
    id: i64,
    before: &Schedule,
    after: &Schedule,
    now_ms: i64,
) -> Result<(), DbErr> {
    let backend = txn.get_database_backend();
    let run = |pg: &str, values: Vec<sea_orm::Value>| {
        txn.execute_raw(Statement::from_sql_and_values(
            backend,
            numbered(backend, pg),
            values,
        ))
    };
    if after != before {
        run(
            MOVE_DUE,
            vec![
                id.into(),
                after.next_due_ms.into(),
                after.period.millis().into(),
                after.phase_ms.into(),
            ],
        )
        .await?;
    }
    if after.period != before.period || after.paused != before.paused {
        run(
            APPEND_PERIOD,
            vec![
                id.into(),
                now_ms.into(),
                i32::try_from(after.period.seconds())
                    .unwrap_or(i32::MAX)
                    .into(),
                after.phase_ms.into(),
                after.paused.into(),
            ],
        )
        .await?;
    }
    Ok(())
}

/// The URL's next and last claimed due times, its schedule row locked after
/// its `urls` row (Postgres `FOR NO KEY UPDATE`: a claim skips it; one that
/// holds it is one statement, and its change is read here after it).
async fn lock_due(
    txn: &sea_orm::DatabaseTransaction,
    id: i64,
) -> Result<(i64, Option<i64>), DbErr> {
    let backend = txn.get_database_backend();
    let lock = row_lock(backend);
    let row = txn
        .query_one_raw(Statement::from_sql_and_values(
            backend,
            numbered(
                backend,
                &format!(
                    "SELECT next_due_ms, last_due_ms FROM url_schedules WHERE url_id = $1{lock}"
                ),
            ),
            [id.into()],
        ))
        .await?
        .ok_or_else(|| DbErr::RecordNotFound(format!("the schedule of URL {id}")))?;
    Ok((
        row.try_get("", "next_due_ms")?,
        row.try_get("", "last_due_ms")?,
    ))
}

/// The row lock of an update: Postgres `FOR NO KEY UPDATE` (claims skip
/// it; the flush's foreign-key checks do not wait for it); SQLite's writer
/// lock is the transaction's already.
fn row_lock(backend: DbBackend) -> &'static str {
    if backend == DbBackend::Postgres {
        " FOR NO KEY UPDATE"
    } else {
        ""
    }
}

/// The user's URL, locked for an update ([`row_lock`]).
async fn lock_for_user(
    txn: &sea_orm::DatabaseTransaction,
    user: UserId,
    id: i64,
) -> Result<Option<Model>, DbErr> {
    let backend = txn.get_database_backend();
    let lock = row_lock(backend);
    Entity::find()
        .from_raw_sql(Statement::from_sql_and_values(
            backend,
            numbered(
                backend,
                &format!(
                    "SELECT {} FROM urls WHERE id = $1 AND user_id = $2{lock}",
                    super::urls::url_columns!()
                ),
            ),
            [id.into(), user.0.into()],
        ))
        .one(txn)
        .await
}

/// Changes the user's rate on `host` by `more_micros`, a rise only while
/// within `max_micros`; a rate that fell to nothing is dropped. `false`: the
/// rise would pass the limit, nothing changed.
async fn change_host_rate(
    txn: &sea_orm::DatabaseTransaction,
    user: UserId,
    host: &str,
    more_micros: i64,
    max_micros: i64,
) -> Result<bool, DbErr> {
    if more_micros == 0 {
        return Ok(true);
    }
    let backend = txn.get_database_backend();
    let changed = txn
        .execute_raw(Statement::from_sql_and_values(
            backend,
            numbered(backend, CHANGE_HOST_RATE),
            [
                user.0.into(),
                host.into(),
                more_micros.into(),
                max_micros.into(),
            ],
        ))
        .await?
        .rows_affected();
    if changed == 0 {
        return Ok(false);
    }
    txn.execute_raw(Statement::from_sql_and_values(
        backend,
        numbered(backend, DROP_SPENT_HOST_RATE),
        [user.0.into(), host.into()],
    ))
    .await?;
    Ok(true)
}

/// Pauses or resumes the URL's state (`Tracker::pause` / `Tracker::resume`)
/// inside the caller's transaction: its row created if missing and locked
/// (`FOR UPDATE` on Postgres), as the flush takes it.
async fn set_paused(
    txn: &sea_orm::DatabaseTransaction,
    url_id: i64,
    paused: bool,
    now_ms: i64,
) -> Result<(), DbErr> {
    let backend = txn.get_database_backend();
    let sql = |pg: &str| numbered(backend, pg);
    txn.execute_raw(Statement::from_sql_and_values(
        backend,
        sql(
            "INSERT INTO url_states (url_id, state) VALUES ($1, 1) ON CONFLICT (url_id) DO NOTHING",
        ),
        [url_id.into()],
    ))
    .await?;
    let lock = if backend == DbBackend::Postgres {
        " FOR UPDATE"
    } else {
        ""
    };
    let row = txn
        .query_one_raw(Statement::from_sql_and_values(
            backend,
            sql(&format!(
                "SELECT state, state_since, last_applied_ms, run_ok, run_len, run_start_ms, \
                 run_first, open_incident_id, down_run, down_run_start_ms, incident_state \
                 FROM url_states WHERE url_id = $1{lock}"
            )),
            [url_id.into()],
        ))
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("the URL's state row just created".into()))?;
    let mut tracker = tracker_from_row(
        row.try_get("", "state")?,
        row.try_get("", "state_since")?,
        row.try_get("", "last_applied_ms")?,
        row.try_get("", "run_ok")?,
        row.try_get("", "run_len")?,
        row.try_get("", "run_start_ms")?,
        row.try_get::<Option<String>>("", "run_first")?.as_deref(),
        row.try_get("", "open_incident_id")?,
        (
            row.try_get("", "down_run")?,
            row.try_get("", "down_run_start_ms")?,
            row.try_get("", "incident_state")?,
        ),
    );
    if paused {
        tracker.pause(now_ms);
    } else {
        tracker.resume(now_ms);
    }
    txn.execute_raw(Statement::from_sql_and_values(
        backend,
        sql("UPDATE url_states SET state = $2, state_since = $3, last_applied_ms = $4, run_ok = $5, \
             run_len = $6, run_start_ms = $7, run_first = $8, open_incident_id = $9, down_run = $10, \
             down_run_start_ms = $11, incident_state = $12 WHERE url_id = $1"),
        [
            url_id.into(),
            (tracker.state as i16).into(),
            tracker.state_since_ms.map(ms_to_time).into(),
            tracker.last_applied_ms.into(),
            tracker.run_ok.into(),
            i32::try_from(tracker.run_len).unwrap_or(i32::MAX).into(),
            tracker.run_start_ms.into(),
            tracker.run_first.as_ref().map(first_json).into(),
            tracker.open_incident.into(),
            tracker.down_run.into(),
            tracker.down_run_start_ms.into(),
            tracker.incident_state.map(|s| s as i16).into(),
        ],
    ))
    .await?;
    Ok(())
}
