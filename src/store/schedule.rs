//! Claiming due URLs, exactly once across instances.
//!
//! The grid itself is `domain::schedule`'s; the UPDATE below applies the
//! same arithmetic in SQL.
//!
//! Claiming is one UPDATE that advances `next_due_ms` of the URLs due within
//! the look-ahead and returns them. On Postgres the rows are picked with
//! `FOR UPDATE SKIP LOCKED`, so concurrent instances claim disjoint rows, and
//! a due time, once advanced past, is never claimed again: each due time is
//! probed by one instance, once. State lives in the database, so the schedule
//! survives restarts. A due time missed by more than the allowed lateness
//! (the service was down) is skipped, not made up: the URL moves to the
//! newest grid point, probed if that one is still within the lateness, so a
//! restart brings no burst and skips nothing beyond the downtime.
//!
//! A paused URL is never claimed. Pausing also moves its next due time past
//! any horizon (`domain::schedule::PAUSED_DUE_MS`), so paused URLs stay out
//! of the range the claim reads on `urls_next_due_ms_idx`.
//!
//! The cost: a due time claimed by an instance that dies within the
//! look-ahead (well under a second) before firing it is not probed.
//!
//! While claims fail, each instance probes the URLs whose latest due time it
//! claimed from memory (`prober::holdings`); this module's rule for stale
//! due times is what brings the schedule back once the database returns.

use std::sync::Arc;

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement};

use super::urls::stored_assertions;
use crate::domain::Claim;

/// Claims the due times that fall at or before `now_ms + lookahead_ms`.
///
/// A claimed due time older than `now_ms - max_late_ms` is replaced by the
/// newest grid point at or before now; callers skip claims still too late.
pub async fn claim_due(
    db: &DatabaseConnection,
    now_ms: i64,
    lookahead_ms: i64,
    max_late_ms: i64,
    limit: u64,
) -> Result<Vec<Claim>, DbErr> {
    let backend = db.get_database_backend();
    // p is the period in ms; the two CASEs read the row's old values.
    let (p, late, now, horizon, lim, lock) = match backend {
        DbBackend::Postgres => (
            "(period_seconds::bigint * 1000)",
            "$1",
            "$2",
            "$3",
            "$4",
            "FOR UPDATE SKIP LOCKED",
        ),
        _ => ("(period_seconds * 1000)", "?1", "?2", "?3", "?4", ""),
    };
    let grid_after_now = format!("({now} + {p} - ((({now}) - phase_ms) % {p} + {p}) % {p})");
    let second = format!("(next_due_ms + {p} / 2)");
    let grid_after_next = format!("({second} + {p} - (({second} - phase_ms) % {p} + {p}) % {p})");
    let sql = format!(
        "UPDATE urls SET \
           last_due_ms = CASE WHEN next_due_ms < {late} THEN {grid_after_now} - {p} ELSE next_due_ms END, \
           next_due_ms = CASE WHEN next_due_ms < {late} THEN {grid_after_now} ELSE {grid_after_next} END \
         WHERE id IN (SELECT id FROM urls WHERE next_due_ms <= {horizon} AND NOT paused \
                      ORDER BY next_due_ms LIMIT {lim} {lock}) \
         RETURNING id, url, period_seconds, last_due_ms, next_due_ms, assertions"
    );
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            backend,
            sql,
            [
                (now_ms - max_late_ms).into(),
                now_ms.into(),
                (now_ms + lookahead_ms).into(),
                i64::try_from(limit).unwrap_or(i64::MAX).into(),
            ],
        ))
        .await?;
    rows.into_iter()
        .map(|row| {
            let period: i32 = row.try_get("", "period_seconds")?;
            let url_id = row.try_get("", "id")?;
            // A URL without assertions costs one NULL; one with them, a parse.
            let assertions = row
                .try_get::<Option<String>>("", "assertions")?
                .map(|json| Arc::new(stored_assertions(url_id, Some(&json))))
                .filter(|a| !a.is_empty());
            Ok(Claim {
                url_id,
                url: row.try_get::<String>("", "url")?.into(),
                period_ms: i64::from(period) * 1000,
                due_ms: row
                    .try_get::<Option<i64>>("", "last_due_ms")?
                    .unwrap_or(now_ms),
                next_ms: row.try_get("", "next_due_ms")?,
                assertions,
            })
        })
        .collect()
}
