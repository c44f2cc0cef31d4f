//! What each kind of channel is sent for one event: the webhook's JSON, a
//! Slack message, a PagerDuty Events v2 call and an email, all made from
//! the event as stored in the outbox (so every attempt says the same) and
//! the URL it is about, as it is named when sent.

use std::fmt::Write;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

/// The URL an incident is about: id, address, the user's name for it.
pub type UrlRef = (i64, String, Option<String>);

/// A stored event, read back (the shape `domain::notification` writes).
#[derive(Debug, Clone, Deserialize)]
pub struct Event {
    #[serde(rename = "type")]
    pub kind: String,
    pub timestamp: DateTime<Utc>,
    #[serde(default)]
    pub data: EventData,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct EventData {
    pub incident: Option<Incident>,
    pub channel: Option<ChannelRef>,
    /// An `incident.reminder`'s count.
    pub reminder: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ChannelRef {
    pub id: i64,
    pub name: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Incident {
    pub id: i64,
    pub url_id: i64,
    /// `DOWN` or `DEGRADED`.
    pub state: String,
    pub opened_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub failed_probes: u32,
    pub first_failure: FirstFailure,
}

#[derive(Debug, Clone, Deserialize)]
pub struct FirstFailure {
    pub due_at: DateTime<Utc>,
    pub status_code: i32,
    pub error: Option<String>,
}

impl FirstFailure {
    /// Why the first failing probe failed, as a person reads it.
    pub fn cause(&self) -> String {
        match (&self.error, self.status_code) {
            (Some(error), 0) => error.clone(),
            (Some(error), code) => format!("HTTP {code}: {error}"),
            (None, 0) => "no response".to_owned(),
            (None, code) => format!("HTTP {code}"),
        }
    }
}

/// The words of a notification, the same in every channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// One line: `DOWN: name`, `RESOLVED: name`, `Test notification`.
    pub headline: String,
    /// The URL's address (empty for a test).
    pub address: String,
    /// The URL's name (its address when unnamed).
    pub name: String,
    /// `DOWN`, `DEGRADED`, `UP` (resolved) or `TEST`.
    pub state: String,
    pub since: Option<DateTime<Utc>>,
    /// Sentences after the headline.
    pub lines: Vec<String>,
    /// The first failure's cause, for incidents.
    pub cause: Option<String>,
    pub incident_id: Option<i64>,
}

impl Event {
    pub fn parse(payload: &str) -> Option<Self> {
        serde_json::from_str(payload).ok()
    }

    pub fn is_resolved(&self) -> bool {
        self.kind == "incident.resolved"
    }

    /// What the event says, with the URL it is about.
    pub fn message(&self, url: Option<&UrlRef>) -> Message {
        let (address, name) = match url {
            Some((_, address, name)) => (
                address.clone(),
                name.clone().unwrap_or_else(|| address.clone()),
            ),
            None => (String::new(), String::new()),
        };
        let Some(incident) = &self.data.incident else {
            let channel = self
                .data
                .channel
                .as_ref()
                .map_or_else(String::new, |c| c.name.clone());
            return Message {
                headline: "Test notification from monitor".to_owned(),
                address,
                name,
                state: "TEST".to_owned(),
                since: None,
                lines: vec![format!(
                    "This is a test of the channel \"{channel}\". If you can read it, the channel works."
                )],
                cause: None,
                incident_id: None,
            };
        };
        let cause = incident.first_failure.cause();
        let mut lines = Vec::new();
        let (headline, state, since) = if self.is_resolved() {
            let resolved = incident.resolved_at.unwrap_or(self.timestamp);
            lines.push(format!(
                "{address} is UP again since {}, after being {} for {}.",
                when(resolved),
                incident.state,
                duration(resolved - incident.opened_at),
            ));
            (format!("RESOLVED: {name}"), "UP".to_owned(), resolved)
        } else if let Some(n) = self.data.reminder {
            lines.push(format!(
                "{address} is still {} since {} ({}; {} failed probes so far).",
                incident.state,
                when(incident.opened_at),
                duration(self.timestamp - incident.opened_at),
                incident.failed_probes,
            ));
            (
                format!("{} (reminder {n}): {name}", incident.state),
                incident.state.clone(),
                incident.opened_at,
            )
        } else {
            lines.push(format!(
                "{address} is {} since {} ({} failed probes in a row).",
                incident.state,
                when(incident.opened_at),
                incident.failed_probes,
            ));
            (
                format!("{}: {name}", incident.state),
                incident.state.clone(),
                incident.opened_at,
            )
        };
        lines.push(format!(
            "First failure: {cause} (probe due {}).",
            when(incident.first_failure.due_at)
        ));
        Message {
            headline,
            address,
            name,
            state,
            since: Some(since),
            lines,
            cause: Some(cause),
            incident_id: Some(incident.id),
        }
    }
}

/// A time as notifications show it: `2026-11-26 17:50:03 UTC`.
pub fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// A duration as notifications show it: `1h 2m 3s`, `45s`.
pub fn duration(d: chrono::Duration) -> String {
    let secs = d.num_seconds().max(0);
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m {s}s"),
        _ => format!("{h}h {m}m {s}s"),
    }
}

/// The webhook's body: the stored event with `data.url` added.
pub fn webhook_body(payload: &str, url: Option<&UrlRef>) -> String {
    let Ok(mut body) = serde_json::from_str::<Value>(payload) else {
        return payload.to_owned();
    };
    if let (Some(data), Some((id, address, name))) = (body.get_mut("data"), url) {
        data["url"] = json!({
            "id": id,
            "url": address,
            "name": name.as_deref().unwrap_or(address),
        });
    }
    body.to_string()
}

/// Slack's mrkdwn escapes: `&`, `<` and `>`.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A Slack incoming-webhook body: `text` (the notification's one line, for
/// clients without blocks) and `blocks` (header, fields, context).
pub fn slack_body(message: &Message) -> String {
    let icon = match message.state.as_str() {
        "DOWN" => ":red_circle:",
        "DEGRADED" => ":large_orange_circle:",
        "UP" => ":large_green_circle:",
        _ => ":bell:",
    };
    let text = format!(
        "{icon} {} {}",
        slack_escape(&message.headline),
        slack_escape(&message.lines.join(" "))
    );
    let mut fields = Vec::new();
    if !message.address.is_empty() {
        fields.push(json!({"type": "mrkdwn", "text": format!(
            "*URL*\n<{}|{}>",
            slack_escape(&message.address),
            slack_escape(&message.name)
        )}));
    }
    fields.push(json!({"type": "mrkdwn", "text": format!("*State*\n{}", message.state)}));
    if let Some(since) = message.since {
        fields.push(json!({"type": "mrkdwn", "text": format!("*Since*\n{}", when(since))}));
    }
    if let Some(cause) = &message.cause {
        fields.push(
            json!({"type": "mrkdwn", "text": format!("*First failure*\n{}", slack_escape(cause))}),
        );
    }
    let context = match message.incident_id {
        Some(id) => format!("Incident {id} · monitor"),
        None => "monitor".to_owned(),
    };
    // Slack limits a header to 150 characters.
    let header: String = message.headline.chars().take(150).collect();
    json!({
        "text": text,
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": header}},
            {"type": "section", "text": {"type": "mrkdwn", "text": slack_escape(&message.lines.join("\n"))}},
            {"type": "section", "fields": fields},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": context}]},
        ],
    })
    .to_string()
}

/// A PagerDuty Events API v2 body. An incident triggers with `dedup_key`
/// its id and resolves with the same key, which closes the alert it
/// opened; a test triggers an `info` alert of its own key.
pub fn pagerduty_body(
    event: &Event,
    message: &Message,
    routing_key: &str,
    delivery_id: i64,
) -> String {
    let dedup_key = match &event.data.incident {
        Some(incident) => incident.id.to_string(),
        None => format!("test-{delivery_id}"),
    };
    if event.is_resolved() {
        return json!({
            "routing_key": routing_key,
            "event_action": "resolve",
            "dedup_key": dedup_key,
        })
        .to_string();
    }
    let severity = match message.state.as_str() {
        "DOWN" => "critical",
        "DEGRADED" => "warning",
        _ => "info",
    };
    // PagerDuty truncates a summary at 1,024 characters.
    let summary: String = format!("{} ({})", message.headline, message.lines.join(" "))
        .chars()
        .take(1024)
        .collect();
    let source = if message.address.is_empty() {
        "monitor".to_owned()
    } else {
        message.address.clone()
    };
    let mut body = json!({
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": dedup_key,
        "client": "monitor",
        "payload": {
            "summary": summary,
            "source": source,
            "severity": severity,
            "timestamp": message.since.unwrap_or(event.timestamp),
            "component": message.name,
            "class": "http",
            "custom_details": {
                "state": message.state,
                "first_failure": message.cause,
                "incident": event.data.incident.as_ref().map(|i| json!({
                    "id": i.id,
                    "url_id": i.url_id,
                    "opened_at": i.opened_at,
                    "failed_probes": i.failed_probes,
                })),
            },
        },
    });
    if !message.address.is_empty() {
        body["links"] = json!([{"href": message.address, "text": message.name}]);
    }
    body.to_string()
}

/// An email: subject, plain text and HTML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    pub subject: String,
    pub text: String,
    pub html: String,
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub fn email(message: &Message) -> Email {
    // A subject is one line: names cannot hold line breaks, but be sure.
    let subject: String = format!("[monitor] {}", message.headline)
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect();
    let mut text = format!("{}\n\n", message.headline);
    for line in &message.lines {
        text.push_str(line);
        text.push('\n');
    }
    if let Some(id) = message.incident_id {
        let _ = write!(text, "\nIncident {id}\n");
    }
    text.push_str("\n-- \nmonitor\n");
    let mut html = format!(
        "<!doctype html><html><body><h2>{}</h2>",
        html_escape(&message.headline)
    );
    for line in &message.lines {
        let _ = write!(html, "<p>{}</p>", html_escape(line));
    }
    if !message.address.is_empty() {
        let _ = write!(
            html,
            "<p><a href=\"{0}\">{0}</a></p>",
            html_escape(&message.address)
        );
    }
    if let Some(id) = message.incident_id {
        let _ = write!(html, "<p><small>Incident {id} · monitor</small></p>");
    }
    html.push_str("</body></html>");
    Email {
        subject,
        text,
        html,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opened() -> String {
        json!({
            "type": "incident.opened",
            "timestamp": "2026-11-26T17:00:00Z",
            "data": {"incident": {
                "id": 42, "url_id": 7, "state": "DOWN",
                "opened_at": "2026-11-26T17:00:00Z", "resolved_at": null,
                "failed_probes": 3,
                "first_failure": {"due_at": "2026-11-26T16:59:40Z", "status_code": 503, "error": null},
            }},
        })
        .to_string()
    }

    fn resolved() -> String {
        opened()
            .replace("incident.opened", "incident.resolved")
            .replace(
                "\"resolved_at\":null",
                "\"resolved_at\":\"2026-11-26T17:05:30Z\"",
            )
    }

    fn url() -> UrlRef {
        (
            7,
            "https://shop.example/<x>".into(),
            Some("Shop & co".into()),
        )
    }

    #[test]
    fn an_opened_incident_says_which_url_what_state_since_when_and_why() {
        let event = Event::parse(&opened()).unwrap();
        let m = event.message(Some(&url()));
        assert_eq!(m.headline, "DOWN: Shop & co");
        assert_eq!(m.cause.as_deref(), Some("HTTP 503"));
        let slack: Value = serde_json::from_str(&slack_body(&m)).unwrap();
        let text = slack["text"].as_str().unwrap();
        assert!(text.contains("DOWN: Shop &amp; co"), "{text}");
        assert!(text.contains("2026-11-26 17:00:00 UTC"), "{text}");
        assert!(text.contains("HTTP 503"), "{text}");
        assert!(text.contains("&lt;x&gt;"), "escaped: {text}");
        assert_eq!(slack["blocks"][0]["type"], "header");
        let pd: Value = serde_json::from_str(&pagerduty_body(&event, &m, "KEY", 9)).unwrap();
        assert_eq!(pd["event_action"], "trigger");
        assert_eq!(pd["dedup_key"], "42");
        assert_eq!(pd["payload"]["severity"], "critical");
        assert_eq!(pd["payload"]["source"], "https://shop.example/<x>");
        let mail = email(&m);
        assert_eq!(mail.subject, "[monitor] DOWN: Shop & co");
        assert!(mail.text.contains("HTTP 503"));
        assert!(mail.html.contains("Shop &amp; co") && !mail.html.contains("<x>"));
    }

    #[test]
    fn a_resolved_incident_resolves_the_same_pagerduty_key_and_says_how_long() {
        let event = Event::parse(&resolved()).unwrap();
        let m = event.message(Some(&url()));
        assert_eq!(m.headline, "RESOLVED: Shop & co");
        assert_eq!(m.state, "UP");
        assert!(
            m.lines[0].contains("after being DOWN for 5m 30s"),
            "{:?}",
            m.lines
        );
        let pd: Value = serde_json::from_str(&pagerduty_body(&event, &m, "KEY", 9)).unwrap();
        assert_eq!(
            pd,
            json!({"routing_key": "KEY", "event_action": "resolve", "dedup_key": "42"})
        );
    }

    #[test]
    fn a_test_event_names_its_channel() {
        let payload = json!({"type": "test", "timestamp": "2026-11-26T17:00:00Z",
            "data": {"channel": {"id": 3, "name": "ops"}}})
        .to_string();
        let event = Event::parse(&payload).unwrap();
        let m = event.message(None);
        assert!(m.lines[0].contains("\"ops\""));
        let pd: Value = serde_json::from_str(&pagerduty_body(&event, &m, "KEY", 9)).unwrap();
        assert_eq!(pd["dedup_key"], "test-9");
        assert_eq!(pd["payload"]["severity"], "info");
    }

    #[test]
    fn causes_and_durations_read_well() {
        let f = |status_code, error: Option<&str>| FirstFailure {
            due_at: Utc::now(),
            status_code,
            error: error.map(str::to_owned),
        };
        assert_eq!(f(0, None).cause(), "no response");
        assert_eq!(f(0, Some("timed out")).cause(), "timed out");
        assert_eq!(
            f(200, Some("body lacks \"ok\"")).cause(),
            "HTTP 200: body lacks \"ok\""
        );
        assert_eq!(duration(chrono::Duration::seconds(45)), "45s");
        assert_eq!(duration(chrono::Duration::seconds(3723)), "1h 2m 3s");
    }

    #[test]
    fn the_url_is_added_to_the_webhook_event() {
        let body = webhook_body(
            r#"{"type":"incident.opened","data":{"incident":{"id":1}}}"#,
            Some(&(7, "https://example.com/".into(), None)),
        );
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["data"]["url"]["id"], 7);
        assert_eq!(v["data"]["url"]["name"], "https://example.com/");
        assert_eq!(v["data"]["incident"]["id"], 1);
    }
}
