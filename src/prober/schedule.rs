//! The schedule: which URLs are due, claimed exactly once across instances.
//!
//! Each URL has a grid of due times, `phase_ms + k * period`, fixed when it
//! is added (`phase_ms` is random, so URLs added together spread evenly over
//! their period rather than firing in a burst). The next due time is always
//! computed from the previous due time, never from when a probe finished, so
//! nothing drifts. A new URL is due at once; its second probe is the first
//! grid point at least half a period later.
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
//! The cost: a due time claimed by an instance that dies within the
//! look-ahead (well under a second) before firing it is not probed.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement};

/// One claimed due time of one URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub url_id: i64,
    pub url: String,
    pub period_ms: i64,
    pub due_ms: i64,
}

impl Claim {
    pub fn due_at(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.due_ms).unwrap_or_default()
    }
}

/// The first grid point strictly after `t`.
pub fn next_grid_after(t: i64, phase: i64, period: i64) -> i64 {
    t + period - (t - phase).rem_euclid(period)
}

/// The second due time of a URL whose first was `first`.
pub fn second_due(first: i64, phase: i64, period: i64) -> i64 {
    next_grid_after(first + period / 2, phase, period)
}

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
         WHERE id IN (SELECT id FROM urls WHERE next_due_ms <= {horizon} \
                      ORDER BY next_due_ms LIMIT {lim} {lock}) \
         RETURNING id, url, period_seconds, last_due_ms"
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
            Ok(Claim {
                url_id: row.try_get("", "id")?,
                url: row.try_get("", "url")?,
                period_ms: i64::from(period) * 1000,
                due_ms: row
                    .try_get::<Option<i64>>("", "last_due_ms")?
                    .unwrap_or(now_ms),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_points_are_phase_plus_multiples_of_the_period() {
        assert_eq!(next_grid_after(0, 7, 10), 7);
        assert_eq!(next_grid_after(7, 7, 10), 17);
        assert_eq!(next_grid_after(8, 7, 10), 17);
        assert_eq!(
            next_grid_after(1_700_000_000_000, 123, 60_000) % 60_000,
            123
        );
    }

    #[test]
    fn the_second_probe_is_the_first_grid_point_half_a_period_on() {
        // Added at 1000 with phase 0 and a 60 s period: second due at 60 000.
        assert_eq!(second_due(1_000, 0, 60_000), 60_000);
        // Added just before a grid point: that point is too close, the next one is used.
        assert_eq!(second_due(59_000, 0, 60_000), 120_000);
        // On the grid, the next due is exactly one period later.
        assert_eq!(second_due(120_000, 0, 60_000), 180_000);
    }
}
