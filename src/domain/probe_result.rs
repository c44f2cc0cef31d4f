//! What one probe found, as it travels from the prober through the buffer to
//! the store. Defined here, apart from all three, so none imports another.
//!
//! It is also the Redis stream's wire format (JSON): fields added since the
//! first version are optional with serde defaults, so entries written by an
//! older version still decode (and are judged by the default rule).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{
    StatusRecord, truncate_to_micros,
    verdict::{FailedAssertion, Verdict},
};
use crate::proto::monitor::v1::ErrorKind;

/// What one probe found, as it travels through the buffer to the store.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
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
    /// The probe's verdict; `None` from a version before assertions (see
    /// [`Self::verdict`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    /// The URL's assertions that failed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_assertions: Vec<FailedAssertion>,
    /// When the leaf certificate of the probe's TLS handshake expires (ms
    /// since the epoch); https only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_not_after_ms: Option<i64>,
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
            verdict: None,
            failed_assertions: Vec::new(),
            tls_not_after_ms: None,
        }
    }

    /// UP, DEGRADED or DOWN: as the probe judged it, or for a result
    /// without a verdict (an older version's), by the default rule.
    pub fn verdict(&self) -> Verdict {
        self.verdict
            .unwrap_or_else(|| Verdict::by_default(self.status_code, self.error_kind))
    }

    /// The status this result becomes.
    pub fn to_record(&self) -> StatusRecord {
        StatusRecord {
            url_id: self.url_id,
            due_at: DateTime::from_timestamp_millis(self.due_ms).unwrap_or_default(),
            probed_at: DateTime::from_timestamp_micros(self.started_us).unwrap_or_default(),
            status_code: self.status_code,
            latency: Duration::from_micros(u64::try_from(self.latency_us).unwrap_or(0)),
            error_kind: self.error_kind,
            error_message: self.error_message.clone(),
            verdict: self.verdict(),
            failed_assertions: self.failed_assertions.clone(),
            tls_not_after: self
                .tls_not_after_ms
                .and_then(DateTime::from_timestamp_millis),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_from_before_assertions_decodes_and_is_judged_by_the_default_rule() {
        let old = r#"{"url_id":1,"due_ms":2,"started_us":3,"status_code":503,"latency_us":4,"error_kind":null,"error_message":null}"#;
        let r: ProbeResult = serde_json::from_str(old).unwrap();
        assert_eq!((r.verdict, r.verdict()), (None, Verdict::Down));
        assert!(r.failed_assertions.is_empty());
        // And a new entry without assertions writes what the old version reads.
        let plain = ProbeResult {
            verdict: Some(Verdict::Up),
            ..r.clone()
        };
        let json = serde_json::to_string(&plain).unwrap();
        assert!(!json.contains("failed_assertions") && !json.contains("tls_not_after_ms"));
        assert_eq!(serde_json::from_str::<ProbeResult>(&json).unwrap(), plain);
    }
}
