//! Claiming due URLs, exactly once across instances.
//!
//! The grid itself is `domain::schedule`'s; the UPDATE below applies the
//! same arithmetic in SQL.
//!
//! Claiming is one UPDATE that advances `next_due_ms` of the URLs due within
//! the look-ahead and returns them. It updates `url_schedules`, a narrow
//! row per URL (its due times, and copies of its period and phase that
//! AddUrl and UpdateUrl write with `urls`), not the wide `urls` row: in
//! the service on Postgres, 0.75x the time and 0.63x the WAL per claimed
//! URL (migration 21's doc; README, Performance). On Postgres the rows are
//! picked with `FOR NO KEY UPDATE SKIP LOCKED`, so concurrent instances
//! claim disjoint rows, and a due time, once advanced past, is never
//! claimed again: each due time is probed by one instance, once. State
//! lives in the database, so the schedule survives restarts. A due time missed by more than the allowed lateness
//! (the service was down, or every instance was overloaded) is skipped, not
//! made up: [`skip_missed`] moves the URL to the newest grid point, probed
//! if that one is still within the lateness, so a restart brings no burst
//! and skips nothing beyond the downtime. The claim itself takes only due
//! times still within the lateness, so an overloaded instance's claims are
//! all probes it starts in time, never work it then throws away.
//!
//! A paused URL is never claimed: pausing moves its next due time past any
//! horizon (`domain::schedule::PAUSED_DUE_MS`), out of the range the claim
//! and the skip read on `url_schedules_next_due_ms_idx`.
//!
//! The cost: a due time claimed by an instance that dies within the
//! look-ahead (0.5 s on Postgres, 1.1 s on SQLite) before firing it is not probed.
//!
//! While claims fail, each instance probes the URLs whose latest due time it
//! claimed from memory (`prober::holdings`); this module's rule for stale
//! due times is what brings the schedule back once the database returns.

use std::sync::Arc;

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement};

use super::urls::stored_assertions;
use crate::domain::Claim;

/// The row lock the claims take.
fn lock(backend: DbBackend) -> &'static str {
    match backend {
        // NO KEY UPDATE: what the claim's own UPDATE takes (it changes no
        // key), so claims skip each other's rows and an UpdateUrl's.
        DbBackend::Postgres => "FOR NO KEY UPDATE SKIP LOCKED",
        _ => "",
    }
}

/// Moves URLs whose next due time was missed by more than `max_late_ms`
/// (the service was down, or this instance was overloaded) to the newest
/// grid point at or before now if that one is still within the lateness
/// (it is then claimed as usual), else to the first grid point after now.
/// At most `limit` URLs, oldest first. Returns how many due times were
/// skipped outright (the URL moved past now).
///
/// One set-based UPDATE that returns one number per row: a missed due time
/// costs no claim, no task and no result, so an overloaded instance spends
/// its capacity on the URLs it can still probe in time.
pub async fn skip_missed(
    db: &DatabaseConnection,
    now_ms: i64,
    max_late_ms: i64,
    limit: u64,
) -> Result<usize, DbErr> {
    let backend = db.get_database_backend();
    let lock = lock(backend);
    let (late, now, lim, p) = ("$1", "$2", "$3", "period_ms");
    let newest = format!("({now} - ((({now}) - phase_ms) % {p} + {p}) % {p})");
    let sql = format!(
        "UPDATE url_schedules SET \
           last_due_ms = CASE WHEN {newest} >= {late} THEN last_due_ms ELSE {newest} END, \
           next_due_ms = CASE WHEN {newest} >= {late} THEN {newest} ELSE {newest} + {p} END \
         WHERE url_id IN (SELECT url_id FROM url_schedules WHERE next_due_ms < {late} \
                          ORDER BY next_due_ms LIMIT {lim} {lock}) \
         RETURNING next_due_ms"
    );
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            backend,
            super::numbered(backend, &sql),
            [
                (now_ms - max_late_ms).into(),
                now_ms.into(),
                i64::try_from(limit).unwrap_or(i64::MAX).into(),
            ],
        ))
        .await?;
    let mut skipped = 0;
    for row in rows {
        skipped += usize::from(row.try_get::<i64>("", "next_due_ms")? > now_ms);
    }
    Ok(skipped)
}

/// Claims the due times in `[now_ms - max_late_ms, now_ms + lookahead_ms]`,
/// oldest first, at most `limit`: only what can still start within the
/// allowed lateness ([`skip_missed`] moves the others on).
pub async fn claim_due(
    db: &DatabaseConnection,
    now_ms: i64,
    lookahead_ms: i64,
    max_late_ms: i64,
    limit: u64,
) -> Result<Vec<Claim>, DbErr> {
    let backend = db.get_database_backend();
    let lock = lock(backend);
    let (late, horizon, lim, p) = ("$1", "$2", "$3", "period_ms");
    // The grid point after the claimed one (half a period on, then up to
    // the grid: robust to a phase changed in between).
    let second = format!("(next_due_ms + {p} / 2)");
    let grid_after_next = format!("({second} + {p} - (({second} - phase_ms) % {p} + {p}) % {p})");
    // The URL and its assertions by primary key, one subquery each: SQLite
    // lets RETURNING read no other table.
    let of_url =
        |column| format!("(SELECT {column} FROM urls WHERE urls.id = url_schedules.url_id)");
    let (url, assertions) = (of_url("url"), of_url("assertions"));
    let sql = format!(
        "UPDATE url_schedules SET last_due_ms = next_due_ms, next_due_ms = {grid_after_next} \
         WHERE url_id IN (SELECT url_id FROM url_schedules \
                          WHERE next_due_ms >= {late} AND next_due_ms <= {horizon} \
                          ORDER BY next_due_ms LIMIT {lim} {lock}) \
         RETURNING url_id, {url} AS url, period_ms, last_due_ms, next_due_ms, {assertions} AS assertions"
    );
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            backend,
            super::numbered(backend, &sql),
            [
                (now_ms - max_late_ms).into(),
                (now_ms + lookahead_ms).into(),
                i64::try_from(limit).unwrap_or(i64::MAX).into(),
            ],
        ))
        .await?;
    rows.into_iter()
        .map(|row| {
            let url_id = row.try_get("", "url_id")?;
            // A URL without assertions costs one NULL; one with them, a parse.
            let assertions = row
                .try_get::<Option<String>>("", "assertions")?
                .map(|json| Arc::new(stored_assertions(url_id, Some(&json))))
                .filter(|a| !a.is_empty());
            Ok(Claim {
                url_id,
                url: row.try_get::<String>("", "url")?.into(),
                period_ms: row.try_get("", "period_ms")?,
                due_ms: row
                    .try_get::<Option<i64>>("", "last_due_ms")?
                    .unwrap_or(now_ms),
                next_ms: row.try_get("", "next_due_ms")?,
                assertions,
            })
        })
        .collect()
}
