//! Conversions between proto well-known types and chrono, with validation.

use chrono::{DateTime, Utc};

use crate::error::Error;

/// Converts a proto Timestamp, rejecting values outside what proto3 allows
/// (years 1 to 9999, nanos within a second).
pub fn from_proto(
    field: &'static str,
    ts: pbjson_types::Timestamp,
) -> Result<DateTime<Utc>, Error> {
    let nanos = u32::try_from(ts.nanos).ok().filter(|n| *n < 1_000_000_000);
    nanos
        .and_then(|n| DateTime::from_timestamp(ts.seconds, n))
        .filter(|t| t.timestamp() >= -62_135_596_800 && t.timestamp() <= 253_402_300_799)
        .ok_or_else(|| {
            Error::invalid(
                field,
                "is not a valid timestamp (seconds from 0001-01-01 to 9999-12-31, nanos below 1e9)",
            )
        })
}

pub fn to_proto(t: DateTime<Utc>) -> pbjson_types::Timestamp {
    pbjson_types::Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

/// Drops sub-microsecond precision, which Postgres would drop on write:
/// values compared with stored ones must match exactly on both backends.
pub fn truncate_to_micros(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_out_of_range() {
        let t = truncate_to_micros(Utc::now());
        assert_eq!(from_proto("t", to_proto(t)).unwrap(), t);
        let bad_nanos = pbjson_types::Timestamp {
            seconds: 0,
            nanos: -1,
        };
        assert!(from_proto("t", bad_nanos).is_err());
        let too_late = pbjson_types::Timestamp {
            seconds: 253_402_300_800,
            nanos: 0,
        };
        assert!(from_proto("t", too_late).is_err());
    }
}
