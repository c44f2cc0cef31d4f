use std::time::Duration;

use crate::error::Error;

/// Longest period the product allows between two probes of one URL.
pub const MAX_PERIOD_LIMIT: Duration = Duration::from_secs(100 * 60);

/// The default period when a request leaves it unset.
pub const DEFAULT: Duration = Duration::from_secs(60);

/// The periods the server accepts (settings `MONITOR_MIN_PERIOD`, `MONITOR_MAX_PERIOD`).
#[derive(Debug, Clone, Copy)]
pub struct PeriodBounds {
    pub min: Duration,
    pub max: Duration,
}

/// How often a URL is probed: whole seconds, within the server's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period(u32);

impl Period {
    /// Checks a requested number of seconds against the server's bounds;
    /// `None` means the default of one minute.
    pub fn parse(
        field: &'static str,
        seconds: Option<u64>,
        bounds: PeriodBounds,
    ) -> Result<Self, Error> {
        let out_of_range = || {
            Error::invalid(
                field,
                format!(
                    "must be between {} and {}",
                    humantime::format_duration(bounds.min),
                    humantime::format_duration(bounds.max)
                ),
            )
        };
        let secs = seconds.unwrap_or(DEFAULT.as_secs());
        let period = Duration::from_secs(secs);
        if period < bounds.min || period > bounds.max {
            return Err(out_of_range());
        }
        u32::try_from(secs).map(Self).map_err(|_| out_of_range())
    }

    /// Builds a period already known to be valid (read back from the database).
    pub fn from_stored_seconds(secs: i32) -> Self {
        Self(u32::try_from(secs).unwrap_or(1))
    }

    pub fn seconds(self) -> u32 {
        self.0
    }

    /// The period in milliseconds: the unit of the schedule's grid.
    pub fn millis(self) -> i64 {
        i64::from(self.0) * 1000
    }

    /// How often a URL with this period is probed, in millionths of a probe
    /// per second, rounded down (10 s: 100,000).
    pub fn rate_micros(self) -> i64 {
        1_000_000 / i64::from(self.0.max(1))
    }

    pub fn as_duration(self) -> Duration {
        Duration::from_secs(u64::from(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDS: PeriodBounds = PeriodBounds {
        min: Duration::from_secs(10),
        max: Duration::from_secs(6000),
    };

    #[test]
    fn unset_means_one_minute() {
        assert_eq!(Period::parse("period", None, BOUNDS).unwrap().seconds(), 60);
    }

    #[test]
    fn bounds_are_inclusive() {
        assert!(Period::parse("period", Some(10), BOUNDS).is_ok());
        assert!(Period::parse("period", Some(6000), BOUNDS).is_ok());
        assert!(Period::parse("period", Some(9), BOUNDS).is_err());
        assert!(Period::parse("period", Some(6001), BOUNDS).is_err());
        assert!(Period::parse("period", Some(u64::MAX), BOUNDS).is_err());
    }
}
