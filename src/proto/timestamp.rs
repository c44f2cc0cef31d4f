//! `google.protobuf.Timestamp` with proto3's canonical JSON form.
//!
//! The generated messages use this type for every Timestamp field (build.rs
//! maps `.google.protobuf.Timestamp` here; the other well-known types come
//! from pbjson-types). pbjson-types' own Timestamp writes chrono's
//! `to_rfc3339`, `2026-11-26T06:55:05.112258+00:00`; proto3 JSON wants UTC
//! with `Z` and 0, 3, 6 or 9 fractional digits, `2026-11-26T06:55:05.112258Z`,
//! which is what protobuf's own printers (Go's protojson, Python's
//! `json_format`) write. Reading accepts any RFC 3339 offset, as they do.
//!
//! On the wire it is the same message (fields 1 and 2), so nothing changes
//! for gRPC clients.

use chrono::{DateTime, SecondsFormat, Utc};

/// Seconds and nanoseconds since the Unix epoch, UTC.
#[derive(Clone, Copy, PartialEq, Eq, Hash, ::prost::Message)]
pub struct Timestamp {
    /// Seconds since 1970-01-01T00:00:00Z (0001-01-01 to 9999-12-31).
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    /// Nanoseconds within the second, 0 to 999,999,999.
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

impl ::prost::Name for Timestamp {
    const NAME: &'static str = "Timestamp";
    const PACKAGE: &'static str = "google.protobuf";

    fn full_name() -> String {
        "google.protobuf.Timestamp".to_owned()
    }

    fn type_url() -> String {
        "type.googleapis.com/google.protobuf.Timestamp".to_owned()
    }
}

/// Seconds of 0001-01-01T00:00:00Z and of 9999-12-31T23:59:59Z: the range
/// proto3 allows.
const MIN_SECONDS: i64 = -62_135_596_800;
const MAX_SECONDS: i64 = 253_402_300_799;

impl TryFrom<Timestamp> for DateTime<Utc> {
    type Error = &'static str;

    fn try_from(ts: Timestamp) -> Result<Self, Self::Error> {
        let nanos = u32::try_from(ts.nanos)
            .ok()
            .filter(|n| *n < 1_000_000_000)
            .ok_or("nanos must be from 0 to 999999999")?;
        if !(MIN_SECONDS..=MAX_SECONDS).contains(&ts.seconds) {
            return Err("seconds must be from 0001-01-01 to 9999-12-31");
        }
        DateTime::from_timestamp(ts.seconds, nanos).ok_or("out of range")
    }
}

impl From<DateTime<Utc>> for Timestamp {
    fn from(t: DateTime<Utc>) -> Self {
        Self {
            seconds: t.timestamp(),
            nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
        }
    }
}

impl Timestamp {
    /// The canonical proto3 JSON text: UTC, `Z`, and 0, 3, 6 or 9
    /// fractional digits (as few as show every non-zero digit).
    ///
    /// # Errors
    /// When the value is outside what proto3 allows.
    pub fn to_json_text(self) -> Result<String, &'static str> {
        let t = DateTime::<Utc>::try_from(self)?;
        Ok(t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let text = self.to_json_text().map_err(serde::ser::Error::custom)?;
        serializer.serialize_str(&text)
    }
}

impl<'de> serde::Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        let t = DateTime::parse_from_rfc3339(&text).map_err(|e| {
            serde::de::Error::custom(format!(
                "{e}: a timestamp is RFC 3339 text, like 2026-11-26T06:55:05.112Z"
            ))
        })?;
        let ts = Self::from(t.with_timezone(&Utc));
        DateTime::<Utc>::try_from(ts).map_err(serde::de::Error::custom)?;
        Ok(ts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(seconds: i64, nanos: i32) -> String {
        serde_json::to_string(&Timestamp { seconds, nanos }).unwrap()
    }

    #[test]
    fn json_is_utc_with_z_and_0_3_6_or_9_fractional_digits() {
        assert_eq!(json(1_795_676_105, 0), r#""2026-11-26T06:55:05Z""#);
        assert_eq!(
            json(1_795_676_105, 112_000_000),
            r#""2026-11-26T06:55:05.112Z""#
        );
        assert_eq!(
            json(1_795_676_105, 112_258_000),
            r#""2026-11-26T06:55:05.112258Z""#
        );
        assert_eq!(
            json(1_795_676_105, 112_258_001),
            r#""2026-11-26T06:55:05.112258001Z""#
        );
        assert_eq!(json(MIN_SECONDS, 0), r#""0001-01-01T00:00:00Z""#);
        assert_eq!(
            json(MAX_SECONDS, 999_999_999),
            r#""9999-12-31T23:59:59.999999999Z""#
        );
    }

    #[test]
    fn out_of_range_values_are_not_written() {
        for (seconds, nanos) in [
            (0, -1),
            (0, 1_000_000_000),
            (MAX_SECONDS + 1, 0),
            (MIN_SECONDS - 1, 0),
        ] {
            assert!(serde_json::to_string(&Timestamp { seconds, nanos }).is_err());
        }
    }

    #[test]
    fn any_offset_is_read_and_kept_as_the_same_instant() {
        let read = |s: &str| serde_json::from_str::<Timestamp>(s);
        let z = read(r#""2026-11-26T06:55:05.112258Z""#).unwrap();
        assert_eq!(read(r#""2026-11-26T06:55:05.112258+00:00""#).unwrap(), z);
        assert_eq!(read(r#""2026-11-26T08:55:05.112258+02:00""#).unwrap(), z);
        assert!(read(r#""2026-11-26 06:55""#).is_err());
        assert!(read(r#""10000-01-01T00:00:00Z""#).is_err());
    }
}
