//! Conversions between proto messages and domain types, with validation:
//! every proto value a service needs is parsed here, and every record a
//! service returns is turned into its message here.

use chrono::{DateTime, Utc};

use crate::{
    domain::{
        IncidentRecord, Period, PeriodBounds, StatusRecord, UrlRecord, rollup::Tier,
        state::UrlState,
    },
    error::Error,
    proto::monitor::v1 as pb,
    service::StatsRow,
};

/// Converts a proto Timestamp, rejecting values outside what proto3 allows
/// (years 1 to 9999, nanos within a second).
pub fn time_from_proto(
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

pub fn time_to_proto(t: DateTime<Utc>) -> pbjson_types::Timestamp {
    pbjson_types::Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

/// A request's period; unset means the default of one minute.
pub fn period_from_proto(
    field: &'static str,
    raw: Option<pbjson_types::Duration>,
    bounds: PeriodBounds,
) -> Result<Period, Error> {
    let requested = match raw {
        None => None,
        Some(d) if d.nanos != 0 => {
            return Err(Error::invalid(field, "must be a whole number of seconds"));
        }
        // A negative period is as far out of range as one too long.
        Some(d) => Some(u64::try_from(d.seconds).unwrap_or(u64::MAX)),
    };
    Period::parse(field, requested, bounds)
}

pub fn url_to_proto(u: UrlRecord) -> pb::Url {
    pb::Url {
        id: u.id,
        name: u.name.unwrap_or_else(|| u.url.clone()),
        url: u.url,
        period: Some(pbjson_types::Duration {
            seconds: i64::from(u.period.seconds()),
            nanos: 0,
        }),
        created_at: Some(time_to_proto(u.created_at)),
        paused: u.paused,
        failure_threshold: i32::try_from(u.thresholds.failure).unwrap_or(i32::MAX),
        success_threshold: i32::try_from(u.thresholds.success).unwrap_or(i32::MAX),
        state: state_to_proto(u.state) as i32,
        state_since: u.state_since.map(time_to_proto),
    }
}

pub fn state_to_proto(state: UrlState) -> pb::UrlState {
    match state {
        UrlState::Pending => pb::UrlState::Pending,
        UrlState::Up => pb::UrlState::Up,
        UrlState::Degraded => pb::UrlState::Degraded,
        UrlState::Down => pb::UrlState::Down,
        UrlState::Paused => pb::UrlState::Paused,
    }
}

/// A duration of `us` microseconds (rounded from a sketch's estimate).
fn micros(us: f64) -> pbjson_types::Duration {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let us = us.round().max(0.0) as u64;
    std::time::Duration::from_micros(us).into()
}

pub fn stats_row_to_proto(r: &StatsRow) -> pb::StatsBucket {
    let b = &r.bucket;
    let q = |q: f64| b.latency.quantile(q).map(micros);
    let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    pb::StatsBucket {
        start_time: Some(time_to_proto(r.start)),
        expected: count(r.expected),
        up: count(b.up),
        degraded: count(b.degraded),
        down: count(b.down),
        missed: count(r.missed()),
        uptime: b.uptime(),
        p50: q(0.5),
        p95: q(0.95),
        p99: q(0.99),
        #[allow(clippy::cast_precision_loss)]
        max: b.max_us.map(|m| micros(m as f64)),
    }
}

pub fn tier_to_proto(t: Tier) -> pb::Granularity {
    match t {
        Tier::Minute => pb::Granularity::Minute,
        Tier::Hour => pb::Granularity::Hour,
        Tier::Day => pb::Granularity::Day,
    }
}

pub fn tier_from_proto(g: i32) -> Result<Option<Tier>, Error> {
    match pb::Granularity::try_from(g) {
        Ok(pb::Granularity::Unspecified) => Ok(None),
        Ok(pb::Granularity::Minute) => Ok(Some(Tier::Minute)),
        Ok(pb::Granularity::Hour) => Ok(Some(Tier::Hour)),
        Ok(pb::Granularity::Day) => Ok(Some(Tier::Day)),
        Err(_) => Err(Error::invalid(
            "granularity",
            "must be MINUTE, HOUR, DAY or unset",
        )),
    }
}

pub fn incident_to_proto(i: IncidentRecord) -> pb::Incident {
    let first = i.first_failure;
    let time = |us: i64| DateTime::from_timestamp_micros(us).unwrap_or_default();
    pb::Incident {
        id: i.id,
        url_id: i.url_id,
        state: state_to_proto(i.state) as i32,
        opened_at: Some(time_to_proto(i.opened_at)),
        resolved_at: i.resolved_at.map(time_to_proto),
        first_failure: Some(status_to_proto(StatusRecord {
            id: first.status_id,
            url_id: i.url_id,
            due_at: time(first.due_ms * 1000),
            probed_at: time(first.probed_us),
            status_code: first.status_code,
            latency: std::time::Duration::from_micros(u64::try_from(first.latency_us).unwrap_or(0)),
            error_kind: first.error_kind,
            error_message: first.error_message,
        })),
        failed_probes: i32::try_from(i.failed_probes).unwrap_or(i32::MAX),
    }
}

pub fn status_to_proto(s: StatusRecord) -> pb::Status {
    pb::Status {
        id: s.id,
        url_id: s.url_id,
        due_at: Some(time_to_proto(s.due_at)),
        probed_at: Some(time_to_proto(s.probed_at)),
        status_code: s.status_code,
        latency: Some(s.latency.into()),
        error_kind: s
            .error_kind
            .map_or(pb::ErrorKind::Unspecified as i32, i32::from),
        error_message: s.error_message.unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::truncate_to_micros;

    #[test]
    fn times_round_trip_and_out_of_range_ones_are_refused() {
        let t = truncate_to_micros(Utc::now());
        assert_eq!(time_from_proto("t", time_to_proto(t)).unwrap(), t);
        let bad_nanos = pbjson_types::Timestamp {
            seconds: 0,
            nanos: -1,
        };
        assert!(time_from_proto("t", bad_nanos).is_err());
        let too_late = pbjson_types::Timestamp {
            seconds: 253_402_300_800,
            nanos: 0,
        };
        assert!(time_from_proto("t", too_late).is_err());
    }

    #[test]
    fn periods_negative_fractional_and_huge_are_refused() {
        let bounds = PeriodBounds {
            min: std::time::Duration::from_secs(10),
            max: std::time::Duration::from_secs(6000),
        };
        let dur = |seconds, nanos| Some(pbjson_types::Duration { seconds, nanos });
        assert_eq!(
            period_from_proto("period", dur(60, 0), bounds)
                .unwrap()
                .seconds(),
            60
        );
        assert!(period_from_proto("period", dur(-60, 0), bounds).is_err());
        assert!(period_from_proto("period", dur(60, 500), bounds).is_err());
        assert!(period_from_proto("period", dur(i64::MAX, 0), bounds).is_err());
    }
}
