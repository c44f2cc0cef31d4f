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

use super::{Assertions, Period};

/// One claimed due time of one URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub url_id: i64,
    pub url: Arc<str>,
    pub period_ms: i64,
    pub due_ms: i64,
    /// The URL's next due time after this one.
    pub next_ms: i64,
    /// What its probe must find beyond a response in 200–399 (`None`: nothing).
    pub assertions: Option<Arc<Assertions>>,
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
    let phase_ms = rand::Rng::gen_range(&mut rand::thread_rng(), 0..period.millis());
    (phase_ms, now.timestamp_millis())
}

/// A paused URL's next due time: past any claim's horizon, so that the
/// claim's index range never holds paused URLs.
pub const PAUSED_DUE_MS: i64 = i64::MAX;

/// A URL's place on its grid, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    pub period: Period,
    pub phase_ms: i64,
    /// The next due time no prober has claimed ([`PAUSED_DUE_MS`] while paused).
    pub next_due_ms: i64,
    /// The due time claimed last.
    pub last_due_ms: Option<i64>,
    pub paused: bool,
}

impl Schedule {
    /// The schedule from `now_ms` on, with `period` and `paused`.
    ///
    /// A new period starts a new grid, drift-free from the change on: the
    /// next due time is one new period after the last claimed one, or now if
    /// that is past (no burst, and no longer gap than the new period or the
    /// time since the last probe), and the grid passes through it. Resumed,
    /// a URL is due at the first point of its grid from now on, never again
    /// at a due time already claimed. Paused, it has no due time.
    #[must_use]
    pub fn change(self, period: Period, paused: bool, now_ms: i64) -> Self {
        let period_ms = period.millis();
        let phase_ms = if period == self.period {
            self.phase_ms
        } else {
            let anchor = self
                .last_due_ms
                .map_or(now_ms, |last| (last + period_ms).max(now_ms));
            anchor.rem_euclid(period_ms)
        };
        let next_due_ms = if paused {
            PAUSED_DUE_MS
        } else if period == self.period && !self.paused {
            self.next_due_ms
        } else {
            // The first grid point at or after now, after the last claimed.
            let from = self
                .last_due_ms
                .map_or(now_ms - 1, |last| last.max(now_ms - 1));
            next_grid_after(from, phase_ms, period_ms)
        };
        Self {
            period,
            phase_ms,
            next_due_ms,
            last_due_ms: self.last_due_ms,
            paused,
        }
    }

    /// Probes a second it sends, in millionths: none while paused.
    pub fn rate_micros(self) -> i64 {
        if self.paused {
            0
        } else {
            self.period.rate_micros()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every(seconds: u32) -> Period {
        Period::from_stored_seconds(i32::try_from(seconds).unwrap())
    }

    /// Probed every 60 s on phase 0, last at 600 000, next at 660 000.
    fn minutely() -> Schedule {
        Schedule {
            period: every(60),
            phase_ms: 0,
            next_due_ms: 660_000,
            last_due_ms: Some(600_000),
            paused: false,
        }
    }

    #[test]
    fn a_shorter_period_is_due_one_new_period_after_the_last_probe() {
        let s = minutely().change(every(10), false, 605_000);
        assert_eq!(s.next_due_ms, 610_000);
        assert_eq!(s.phase_ms, 0);
        // Long after the last probe: due now, and the grid goes through now.
        let s = minutely().change(every(10), false, 645_123);
        assert_eq!(s.next_due_ms, 645_123);
        assert_eq!(s.phase_ms, 5_123);
    }

    #[test]
    fn a_longer_period_waits_one_new_period_after_the_last_probe() {
        let s = minutely().change(every(90), false, 605_000);
        assert_eq!(s.next_due_ms, 690_000);
        assert_eq!((s.next_due_ms - s.phase_ms) % 90_000, 0);
    }

    #[test]
    fn the_same_period_keeps_the_grid_and_the_next_due_time() {
        assert_eq!(minutely().change(every(60), false, 605_000), minutely());
    }

    #[test]
    fn paused_there_is_no_due_time_and_resumed_the_next_grid_point_is() {
        let paused = minutely().change(every(60), true, 605_000);
        assert_eq!(paused.next_due_ms, PAUSED_DUE_MS);
        assert_eq!(paused.rate_micros(), 0);
        let resumed = paused.change(every(60), false, 1_000_000);
        assert_eq!(resumed.next_due_ms, 1_020_000);
        assert_eq!(resumed.rate_micros(), 16_666);
        // On a grid point exactly: due then, unless it was claimed already.
        assert_eq!(
            paused.change(every(60), false, 1_020_000).next_due_ms,
            1_020_000
        );
        assert_eq!(
            paused.change(every(60), false, 600_000).next_due_ms,
            660_000
        );
    }

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
