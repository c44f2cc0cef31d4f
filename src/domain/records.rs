//! What the store hands back and the services return: plain records, with no
//! database or transport types in them.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{
    Assertions, Period, UserId,
    state::{FailedProbe, Thresholds, UrlState},
    verdict::{FailedAssertion, Verdict},
};

/// A registered account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: UserId,
    pub email: String,
}

/// An account's id and stored password hash, for a login check.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub id: UserId,
    pub password_hash: String,
}

/// A monitored URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlRecord {
    pub id: i64,
    pub user_id: UserId,
    pub url: String,
    pub period: Period,
    pub created_at: DateTime<Utc>,
    /// The user's label, if any.
    pub name: Option<String>,
    pub paused: bool,
    pub thresholds: Thresholds,
    pub state: UrlState,
    pub state_since: Option<DateTime<Utc>>,
    pub assertions: Assertions,
    /// When the certificate its latest https probe saw expires.
    pub tls_not_after: Option<DateTime<Utc>>,
    /// The URL it depends on: while that one is DOWN, this one's incidents
    /// are part of its incident, not sent on their own.
    pub depends_on: Option<i64>,
}

/// A run of probes that were not UP and turned a URL DEGRADED or DOWN (see
/// `domain::state`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentRecord {
    pub id: i64,
    pub url_id: i64,
    pub state: UrlState,
    pub opened_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub first_failure: FailedProbe,
    pub failed_probes: u32,
    /// The parent URL's incident this one is part of: opened while its
    /// URL's parent was DOWN, so not sent on its own.
    pub parent_id: Option<i64>,
}

/// One stored probe result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusRecord {
    pub url_id: i64,
    pub due_at: DateTime<Utc>,
    pub probed_at: DateTime<Utc>,
    /// 0 when there was no response.
    pub status_code: i32,
    pub latency: Duration,
    /// The proto `ErrorKind` number, when something failed.
    pub error_kind: Option<i16>,
    pub error_message: Option<String>,
    pub verdict: Verdict,
    pub failed_assertions: Vec<FailedAssertion>,
    /// When the certificate of the probe's TLS handshake expires (https).
    pub tls_not_after: Option<DateTime<Utc>>,
}

/// Drops sub-microsecond precision, which Postgres would drop on write:
/// values compared with stored ones must match exactly on both backends.
pub fn truncate_to_micros(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}
