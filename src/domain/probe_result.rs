//! What one probe found, as it travels from the prober through the buffer to
//! the store. Defined here, apart from all three, so none imports another.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::truncate_to_micros;
use crate::proto::monitor::v1::ErrorKind;

/// What one probe found, as it travels through the buffer to the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeResult {
    pub url_id: i64,
    /// When the probe was due by the schedule (ms since the epoch).
    pub due_ms: i64,
    /// When it was sent (µs since the epoch).
    pub started_us: i64,
    /// 0 when there was no response.
    pub status_code: i32,
    pub latency_us: i64,
    /// `ErrorKind` number, when something failed.
    pub error_kind: Option<i16>,
    pub error_message: Option<String>,
}

impl ProbeResult {
    pub fn new(
        url_id: i64,
        due_at: DateTime<Utc>,
        started_at: DateTime<Utc>,
        status_code: u16,
        latency: Duration,
        error: Option<(ErrorKind, String)>,
    ) -> Self {
        let (error_kind, error_message) = match error {
            Some((kind, msg)) => (Some(kind as i16), Some(msg)),
            None => (None, None),
        };
        Self {
            url_id,
            due_ms: due_at.timestamp_millis(),
            started_us: truncate_to_micros(started_at).timestamp_micros(),
            status_code: i32::from(status_code),
            latency_us: i64::try_from(latency.as_micros()).unwrap_or(i64::MAX),
            error_kind,
            error_message,
        }
    }
}
