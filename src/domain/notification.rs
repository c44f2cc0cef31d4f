//! What a notification says and when a failed one is sent again.
//!
//! An incident event's body is made once, when the flush writes the
//! incident (so every attempt of a delivery sends the same event), and
//! completed at send time with the URL it is about. Retries follow
//! [`retry_delay`]: exponential from one second, doubled per attempt, capped
//! at ten minutes, with jitter; a receiver's `Retry-After` wins.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::state::{FailedProbe, UrlState};

/// An event type as sent (`type`) and stored (`deliveries.event`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Opened,
    /// An incident still open, sent again (`Channel.remind_every`).
    Reminder,
    Resolved,
    Test,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Opened => "incident.opened",
            Self::Reminder => "incident.reminder",
            Self::Resolved => "incident.resolved",
            Self::Test => "test",
        }
    }

    pub fn parse(stored: &str) -> Option<Self> {
        [Self::Opened, Self::Reminder, Self::Resolved, Self::Test]
            .into_iter()
            .find(|k| k.as_str() == stored)
    }
}

/// An incident as an event shows it.
#[derive(Debug, Clone, Serialize)]
pub struct IncidentView {
    pub id: i64,
    pub url_id: i64,
    /// `DOWN` or `DEGRADED`.
    pub state: &'static str,
    pub opened_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub failed_probes: u32,
    pub first_failure: FirstFailure,
}

/// The probe that started an incident's run.
#[derive(Debug, Clone, Serialize)]
pub struct FirstFailure {
    pub due_at: DateTime<Utc>,
    /// 0: no response.
    pub status_code: i32,
    pub error: Option<String>,
}

/// The name of a state as events show it.
pub fn state_name(state: UrlState) -> &'static str {
    match state {
        UrlState::Pending => "PENDING",
        UrlState::Up => "UP",
        UrlState::Degraded => "DEGRADED",
        UrlState::Down => "DOWN",
        UrlState::Paused => "PAUSED",
        UrlState::Maintenance => "MAINTENANCE",
    }
}

impl IncidentView {
    pub fn new(
        id: i64,
        url_id: i64,
        state: UrlState,
        (opened_at, resolved_at): (DateTime<Utc>, Option<DateTime<Utc>>),
        failed_probes: u32,
        first: &FailedProbe,
    ) -> Self {
        Self {
            id,
            url_id,
            state: state_name(state),
            opened_at,
            resolved_at,
            failed_probes,
            first_failure: FirstFailure {
                due_at: DateTime::from_timestamp_millis(first.due_ms).unwrap_or(opened_at),
                status_code: first.status_code,
                error: first.error_message.clone(),
            },
        }
    }

    /// The stored event body, less the URL (added at send time):
    /// `{type, timestamp, data: {incident}}`, timestamped when it happened.
    pub fn event_json(&self, kind: EventKind) -> String {
        let at = match kind {
            EventKind::Resolved => self.resolved_at.unwrap_or(self.opened_at),
            _ => self.opened_at,
        };
        serde_json::json!({
            "type": kind.as_str(),
            "timestamp": at,
            "data": {"incident": self},
        })
        .to_string()
    }
}

/// Where a delivery is. The numbers are the proto's `DeliveryState` and
/// what `deliveries.state` stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i16)]
pub enum DeliveryState {
    Pending = 1,
    Delivered = 2,
    GaveUp = 3,
}

impl DeliveryState {
    pub fn from_stored(n: i16) -> Self {
        match n {
            2 => Self::Delivered,
            3 => Self::GaveUp,
            _ => Self::Pending,
        }
    }
}

/// One event for one channel, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRecord {
    pub id: i64,
    pub channel_id: i64,
    /// None for a test event.
    pub incident_id: Option<i64>,
    pub event: EventKind,
    pub state: DeliveryState,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub next_attempt_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
    /// An `incident.reminder`'s count (1 for the first).
    pub reminder: Option<u32>,
}

/// The reminder due now for an incident first sent to a channel at
/// `since`, with one every `every`, when reminders up to `sent` went out:
/// the count of whole intervals since, if more than `sent` (missed ones are
/// not made up: one reminder, with the count it would have had).
pub fn due_reminder(
    since: DateTime<Utc>,
    every: Duration,
    now: DateTime<Utc>,
    sent: u32,
) -> Option<u32> {
    let elapsed = (now - since).to_std().ok()?;
    let every_ms = every.as_millis().max(1);
    let n = u32::try_from(elapsed.as_millis() / every_ms).unwrap_or(u32::MAX);
    (n > sent).then_some(n)
}

/// A reminder's body, from the incident's opened event as the channel got
/// it: type `incident.reminder`, timestamped `now`, with the incident's
/// state and failed probes as they are now and `data.reminder` = `n`.
pub fn reminder_json(
    opened: &str,
    n: u32,
    state: UrlState,
    failed_probes: i32,
    now: DateTime<Utc>,
) -> Option<String> {
    let mut event: serde_json::Value = serde_json::from_str(opened).ok()?;
    event["type"] = EventKind::Reminder.as_str().into();
    event["timestamp"] = serde_json::to_value(now).ok()?;
    let data = event.get_mut("data")?;
    data["reminder"] = n.into();
    let incident = data.get_mut("incident")?;
    incident["state"] = state_name(state).into();
    incident["failed_probes"] = failed_probes.into();
    Some(event.to_string())
}

/// A test event's body: `{type: "test", timestamp, data: {channel}}`.
pub fn test_event_json(channel_id: i64, channel_name: &str, at: DateTime<Utc>) -> String {
    serde_json::json!({
        "type": EventKind::Test.as_str(),
        "timestamp": at,
        "data": {"channel": {"id": channel_id, "name": channel_name}},
    })
    .to_string()
}

/// What a flush tells live watchers once it has committed: a URL's state
/// changed, or one of its incidents opened or resolved (as it is then).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LiveNotice {
    StateChange {
        url_id: i64,
        /// Stored state numbers ([`UrlState::stored`]).
        from: i16,
        to: i16,
        at_ms: i64,
    },
    Incident {
        url_id: i64,
        id: i64,
        /// Stored state number: DOWN or DEGRADED.
        state: i16,
        opened_ms: i64,
        resolved_ms: Option<i64>,
        failed_probes: u32,
        first: FailedProbe,
    },
}

impl LiveNotice {
    pub fn url_id(&self) -> i64 {
        match self {
            Self::StateChange { url_id, .. } | Self::Incident { url_id, .. } => *url_id,
        }
    }
}

/// First retry delay.
pub const FIRST_RETRY: Duration = Duration::from_secs(1);

/// Longest retry delay.
pub const MAX_RETRY: Duration = Duration::from_secs(600);

/// The delay before attempt `attempts + 1` after `attempts` failed ones:
/// `FIRST_RETRY * 2^(attempts-1)`, capped at [`MAX_RETRY`], of which the
/// upper half is scaled by `jitter` (0 to 1), so that receivers coming back
/// are not hit by every sender at once.
pub fn retry_delay(attempts: u32, jitter: f64) -> Duration {
    let exp = attempts.saturating_sub(1).min(20);
    let full = FIRST_RETRY.saturating_mul(1u32 << exp).min(MAX_RETRY);
    full / 2 + (full / 2).mul_f64(jitter.clamp(0.0, 1.0))
}

/// A `Retry-After` value: seconds, or an HTTP date (then from `now`).
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?;
    Some((at.with_timezone(&Utc) - now).to_std().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_double_from_a_second_up_to_ten_minutes_with_jitter() {
        let at = |n, j| retry_delay(n, j).as_millis();
        assert_eq!((at(1, 0.0), at(1, 1.0)), (500, 1000));
        assert_eq!((at(2, 0.0), at(2, 1.0)), (1000, 2000));
        assert_eq!(at(5, 1.0), 16_000);
        assert_eq!(at(10, 1.0), 512_000);
        assert_eq!((at(11, 0.0), at(11, 1.0)), (300_000, 600_000));
        assert_eq!(at(1000, 1.0), 600_000);
        assert_eq!(at(3, 0.5), 3000);
    }

    #[test]
    fn retry_after_is_read_as_seconds_or_a_date() {
        let now = DateTime::parse_from_rfc3339("2015-10-21T07:28:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(parse_retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn event_kinds_round_trip() {
        for k in [EventKind::Opened, EventKind::Resolved, EventKind::Test] {
            assert_eq!(EventKind::parse(k.as_str()), Some(k));
        }
    }

    #[test]
    fn a_reminder_is_due_once_per_whole_interval_and_missed_ones_are_not_made_up() {
        let since = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let at = |s: i64| since + chrono::Duration::seconds(s);
        let every = Duration::from_secs(60);
        assert_eq!(due_reminder(since, every, at(59), 0), None);
        assert_eq!(due_reminder(since, every, at(60), 0), Some(1));
        assert_eq!(due_reminder(since, every, at(61), 1), None, "sent already");
        assert_eq!(due_reminder(since, every, at(120), 1), Some(2));
        assert_eq!(
            due_reminder(since, every, at(600), 2),
            Some(10),
            "one, counted"
        );
        assert_eq!(
            due_reminder(since, every, at(-5), 0),
            None,
            "a clock behind"
        );
    }

    #[test]
    fn a_reminder_is_the_opened_event_with_its_count_and_the_incident_as_it_is_now() {
        let opened = r#"{"type":"incident.opened","timestamp":"2026-01-01T00:00:00Z","data":{"incident":{"id":7,"url_id":3,"state":"DEGRADED","failed_probes":3}}}"#;
        let now = DateTime::parse_from_rfc3339("2026-01-01T01:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let body = reminder_json(opened, 2, UrlState::Down, 40, now).unwrap();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["type"], "incident.reminder");
        assert_eq!(v["timestamp"], "2026-01-01T01:00:00Z");
        assert_eq!(v["data"]["reminder"], 2);
        assert_eq!(v["data"]["incident"]["id"], 7);
        assert_eq!(v["data"]["incident"]["state"], "DOWN");
        assert_eq!(v["data"]["incident"]["failed_probes"], 40);
        assert_eq!(reminder_json("not json", 1, UrlState::Down, 1, now), None);
    }
}
