//! The schedule's arithmetic: each URL has a grid of due times,
//! `phase_ms + k * period`, fixed when it is added (`phase_ms` is random, so
//! URLs added together spread evenly over their period rather than firing in
//! a burst). The next due time is always computed from the previous due
//! time, never from when a probe finished, so nothing drifts. A new URL is
//! due at once; its second probe is the first grid point at least half a
//! period later. `store::schedule::claim_due` applies the same arithmetic in
//! SQL.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::Period;

/// One claimed due time of one URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub url_id: i64,
    pub url: Arc<str>,
    pub period_ms: i64,
    pub due_ms: i64,
    /// The URL's next due time after this one.
    pub next_ms: i64,
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

/// A new URL's place on the grid: a random phase within its period, and
/// its first due time (now: a new URL is probed at once).
pub fn first_due(period: Period, now: DateTime<Utc>) -> (i64, i64) {
    let phase_ms = rand::Rng::gen_range(
        &mut rand::thread_rng(),
        0..i64::from(period.seconds()) * 1000,
    );
    (phase_ms, now.timestamp_millis())
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
