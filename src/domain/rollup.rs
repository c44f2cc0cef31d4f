//! Uptime and latency history in tiers of buckets that outlive raw
//! statuses (minute buckets are built from the raw statuses, which are kept
//! as long; hour and day buckets are stored): a bucket counts the probes due within it (up, degraded, down)
//! and holds a [`Sketch`] of the latencies of those that got a response,
//! plus their exact maximum. Every tier is kept from the raw results (the
//! roll pass adds each URL's new statuses every few minutes; readers add
//! those not yet rolled: `store::rollups`), and a bucket of a coarser tier is, exactly, the
//! merge of the finer buckets it spans: counts add, sketches merge.
//!
//! Expected slots (what a bucket should have had) come from the URL's
//! schedule history: see [`expected_slots`].

use super::{sketch::Sketch, verdict::Verdict};

/// A rollup tier: the width of its buckets. The numbers are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(i16)]
pub enum Tier {
    Minute = 1,
    Hour = 2,
    Day = 3,
}

impl Tier {
    pub const ALL: [Self; 3] = [Self::Minute, Self::Hour, Self::Day];

    /// The tiers kept as rollup rows. Minutes are not: raw statuses are kept
    /// as long as minute buckets would be (two days), so a minute bucket is
    /// read from them, and the roll pass writes two rollup rows per URL and
    /// pass instead of one more row per result.
    pub const STORED: [Self; 2] = [Self::Hour, Self::Day];

    pub fn width_ms(self) -> i64 {
        match self {
            Self::Minute => 60_000,
            Self::Hour => 3_600_000,
            Self::Day => 86_400_000,
        }
    }

    /// The start of the bucket holding `t_ms` (UTC-aligned).
    pub fn bucket_of(self, t_ms: i64) -> i64 {
        t_ms - t_ms.rem_euclid(self.width_ms())
    }

    pub fn from_stored(n: i16) -> Option<Self> {
        match n {
            1 => Some(Self::Minute),
            2 => Some(Self::Hour),
            3 => Some(Self::Day),
            _ => None,
        }
    }
}

/// What one bucket holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bucket {
    pub up: u64,
    pub degraded: u64,
    pub down: u64,
    /// Probes inside a maintenance window: neither up nor down, not missed.
    pub maintenance: u64,
    /// The slowest response, if any (µs).
    pub max_us: Option<u64>,
    pub latency: Sketch,
}

impl Bucket {
    /// Counts one probe; `latency_us` when it got a response. An `UNKNOWN`
    /// probe (the prober doubted itself) counts nowhere, so its slot shows
    /// as missed.
    pub fn add(&mut self, verdict: Verdict, latency_us: Option<u64>) {
        match verdict {
            Verdict::Up => self.up += 1,
            Verdict::Degraded => self.degraded += 1,
            Verdict::Down => self.down += 1,
            Verdict::Maintenance => self.maintenance += 1,
            Verdict::Unknown => return,
        }
        if let Some(us) = latency_us {
            self.latency.add(us);
            self.max_us = Some(self.max_us.map_or(us, |m| m.max(us)));
        }
    }

    pub fn merge(&mut self, other: &Self) {
        self.up += other.up;
        self.degraded += other.degraded;
        self.down += other.down;
        self.maintenance += other.maintenance;
        self.max_us = match (self.max_us, other.max_us) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        self.latency.merge(&other.latency);
    }

    /// Probes with a result (a probe in a maintenance window has one: it
    /// is not missed).
    pub fn probed(&self) -> u64 {
        self.up + self.degraded + self.down + self.maintenance
    }

    /// (up + degraded) / (up + degraded + down); `None` with no result.
    /// Probes in a maintenance window count neither way.
    pub fn uptime(&self) -> Option<f64> {
        let n = self.up + self.degraded + self.down;
        #[allow(clippy::cast_precision_loss)]
        let share = (n > 0).then(|| (self.up + self.degraded) as f64 / n as f64);
        share
    }
}

/// One stretch of a URL's schedule: from `since_ms` on, due at `phase_ms +
/// k * period_ms`, unless paused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScheduleSpan {
    pub since_ms: i64,
    pub period_ms: i64,
    pub phase_ms: i64,
    pub paused: bool,
}

/// Grid points `phase + k * period` in `[lo, hi)`.
fn grid_points(phase: i64, period: i64, lo: i64, hi: i64) -> u64 {
    if hi <= lo || period <= 0 {
        return 0;
    }
    // Points ≤ x: ⌊(x − phase) / period⌋ + const; count those in [lo, hi).
    let upto = |x: i64| (x - phase).div_euclid(period);
    u64::try_from(upto(hi - 1) - upto(lo - 1)).unwrap_or(0)
}

/// The due times a URL had in `[from, to)`: its first at `created_ms` (a
/// new URL is probed at once), then its grid from the first point more than
/// half a period later (`domain::schedule::second_due`), following each
/// span of its schedule history (sorted by `since_ms`; a paused span
/// expects nothing).
pub fn expected_slots(created_ms: i64, spans: &[ScheduleSpan], from: i64, to: i64) -> u64 {
    let mut n = u64::from((from..to).contains(&created_ms));
    for (k, span) in spans.iter().enumerate() {
        if span.paused {
            continue;
        }
        let mut lo = span.since_ms.max(from).max(created_ms + 1);
        if k == 0 {
            // The second due time: the first grid point strictly after
            // created + period / 2.
            lo = lo.max(created_ms + span.period_ms / 2 + 1);
        }
        let end = spans.get(k + 1).map_or(i64::MAX, |next| next.since_ms);
        let hi = end.min(to);
        n += grid_points(span.phase_ms, span.period_ms, lo, hi);
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::schedule::second_due;

    #[test]
    fn buckets_align_on_utc_boundaries() {
        assert_eq!(Tier::Minute.bucket_of(125_000), 120_000);
        assert_eq!(Tier::Hour.bucket_of(3_600_000 * 5 + 1), 3_600_000 * 5);
        assert_eq!(Tier::Day.bucket_of(-1), -86_400_000);
    }

    #[test]
    fn a_coarser_bucket_is_the_merge_of_finer_ones() {
        let mut minutes = [Bucket::default(), Bucket::default()];
        let mut hour = Bucket::default();
        for (i, (verdict, lat)) in [
            (Verdict::Up, Some(10)),
            (Verdict::Down, None),
            (Verdict::Down, Some(900)),
            (Verdict::Degraded, Some(30)),
            (Verdict::Up, Some(30)),
            (Verdict::Degraded, Some(40)),
        ]
        .into_iter()
        .enumerate()
        {
            minutes[i % 2].add(verdict, lat);
            hour.add(verdict, lat);
        }
        let mut merged = minutes[0].clone();
        merged.merge(&minutes[1]);
        assert_eq!(merged, hour);
        assert_eq!((hour.up, hour.degraded, hour.down), (2, 2, 2));
        // Degraded probes answered: they count as up time.
        assert_eq!(hour.uptime(), Some(4.0 / 6.0));
        assert_eq!(hour.max_us, Some(900));
    }

    #[test]
    fn expected_slots_follow_the_first_probe_then_the_grid() {
        let span = ScheduleSpan {
            since_ms: 1_000,
            period_ms: 10_000,
            phase_ms: 3_000,
            paused: false,
        };
        // Created at 1 000: due at 1 000, then 13 000 (second_due), 23 000, ...
        assert_eq!(second_due(1_000, 3_000, 10_000), 13_000);
        assert_eq!(expected_slots(1_000, &[span], 0, 60_000), 6);
        assert_eq!(expected_slots(1_000, &[span], 0, 13_000), 1);
        assert_eq!(expected_slots(1_000, &[span], 13_000, 23_001), 2);
        // Created at 9 000: 13 000 is less than half a period on, so 23 000 is next.
        assert_eq!(second_due(9_000, 3_000, 10_000), 23_000);
        let later = ScheduleSpan {
            since_ms: 9_000,
            ..span
        };
        assert_eq!(expected_slots(9_000, &[later], 0, 30_000), 2);
    }

    #[test]
    fn paused_spans_expect_nothing_and_a_new_period_takes_over() {
        let spans = [
            ScheduleSpan {
                since_ms: 0,
                period_ms: 10_000,
                phase_ms: 0,
                paused: false,
            },
            ScheduleSpan {
                since_ms: 100_000,
                period_ms: 10_000,
                phase_ms: 0,
                paused: true,
            },
            ScheduleSpan {
                since_ms: 200_000,
                period_ms: 20_000,
                phase_ms: 5_000,
                paused: false,
            },
        ];
        // 0, then 10 000 .. 90 000 (9), nothing while paused, 205 000 .. 285 000 (5).
        assert_eq!(expected_slots(0, &spans, 0, 300_000), 1 + 9 + 5);
    }
}
