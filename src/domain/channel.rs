//! Notification channels: where a user's incident events are sent.
//!
//! A channel parses, not validates: a [`NewChannel`] holds a checked name, a
//! target whose URL is a [`TargetUrl`] and a set of URL ids, so the service
//! only has to check what needs the database (the URLs are the caller's,
//! the quota). A webhook's secret is generated here, printed nowhere (its
//! `Debug` is redacted) and given to the client once, at creation.

use std::{fmt, time::Duration};

use base64::{Engine, engine::general_purpose::STANDARD};
use chrono::{DateTime, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::{Email, TargetUrl, UserId};
use crate::error::Error;

/// Most URL ids one channel may be limited to.
pub const MAX_URL_IDS: usize = 100;

/// Random bytes in a generated webhook secret (Standard Webhooks: 24 to 64).
const SECRET_BYTES: usize = 32;

/// What Standard Webhooks secrets start with.
const SECRET_PREFIX: &str = "whsec_";

/// A webhook's signing secret: `whsec_` and the standard base64 of its bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(String);

impl WebhookSecret {
    /// A new secret from the operating system's random source.
    pub fn generate() -> Self {
        let mut bytes = [0u8; SECRET_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self(format!("{SECRET_PREFIX}{}", STANDARD.encode(bytes)))
    }

    /// A secret as stored (written by [`Self::generate`]).
    pub fn from_stored(stored: String) -> Self {
        Self(stored)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The bytes an HMAC is keyed with: the base64 after the prefix.
    pub fn key(&self) -> Vec<u8> {
        STANDARD
            .decode(self.0.strip_prefix(SECRET_PREFIX).unwrap_or(&self.0))
            .unwrap_or_else(|_| self.0.as_bytes().to_vec())
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(redacted)")
    }
}

/// PagerDuty's Events API v2 endpoint, where a PagerDuty channel sends
/// unless it names another (a proxy, a test receiver).
pub const PAGERDUTY_EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";

/// A PagerDuty integration's routing key: 1 to 64 ASCII letters and digits
/// (PagerDuty's are 32). Whoever has it can open incidents on the service,
/// so its `Debug` is redacted and it is listed masked.
#[derive(Clone, PartialEq, Eq)]
pub struct RoutingKey(String);

impl RoutingKey {
    pub fn parse(field: &'static str, raw: &str) -> Result<Self, Error> {
        let key = raw.trim();
        if key.is_empty() {
            return Err(Error::invalid(
                field,
                "is required: the integration's routing key",
            ));
        }
        if key.len() > 64 || !key.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(Error::invalid(
                field,
                "must be a PagerDuty routing key: up to 64 letters and digits",
            ));
        }
        Ok(Self(key.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The key as listed: its last four characters only.
    pub fn masked(&self) -> String {
        let tail = self.0.len().saturating_sub(4);
        format!("…{}", &self.0[tail..])
    }
}

impl fmt::Debug for RoutingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RoutingKey(redacted)")
    }
}

/// A Slack incoming webhook's URL. Its path is the credential (whoever has
/// it can post to the channel), so its `Debug` shows the host only and it
/// is listed masked.
#[derive(Clone, PartialEq, Eq)]
pub struct SlackWebhook(TargetUrl);

impl SlackWebhook {
    pub fn new(url: TargetUrl) -> Self {
        Self(url)
    }

    pub fn url(&self) -> &TargetUrl {
        &self.0
    }

    /// The URL as listed: scheme and host, the path hidden.
    pub fn masked(&self) -> String {
        let url = self.0.as_url();
        let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
        format!(
            "{}://{}{port}/…",
            url.scheme(),
            url.host_str().unwrap_or_default()
        )
    }
}

impl fmt::Debug for SlackWebhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SlackWebhook({})", self.masked())
    }
}

/// Where a channel sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelTarget {
    /// A signed HTTP POST (Standard Webhooks).
    Webhook {
        url: TargetUrl,
        secret: WebhookSecret,
    },
    /// A Slack incoming webhook (`text` and `blocks`).
    Slack { webhook: SlackWebhook },
    /// An email through the server's SMTP relay.
    Email { to: Email },
    /// PagerDuty Events API v2: trigger, and resolve with the same
    /// `dedup_key`.
    PagerDuty {
        routing_key: RoutingKey,
        events_url: TargetUrl,
    },
}

impl ChannelTarget {
    /// The kind's number as stored (1 webhook, 2 Slack, 3 email,
    /// 4 PagerDuty).
    pub fn kind(&self) -> i16 {
        match self {
            Self::Webhook { .. } => 1,
            Self::Slack { .. } => 2,
            Self::Email { .. } => 3,
            Self::PagerDuty { .. } => 4,
        }
    }

    /// The kind's name (metrics labels, listings).
    pub fn kind_name(&self) -> &'static str {
        match self {
            Self::Webhook { .. } => "webhook",
            Self::Slack { .. } => "slack",
            Self::Email { .. } => "email",
            Self::PagerDuty { .. } => "pagerduty",
        }
    }

    /// The URL the channel sends to; none for email (the server's SMTP
    /// relay is the operator's, not the user's).
    pub fn url(&self) -> Option<&TargetUrl> {
        match self {
            Self::Webhook { url, .. } => Some(url),
            Self::Slack { webhook } => Some(webhook.url()),
            Self::Email { .. } => None,
            Self::PagerDuty { events_url, .. } => Some(events_url),
        }
    }
}

impl ChannelTarget {
    /// A digest of every setting the user gave (a webhook's secret, which
    /// the server generates, is left out): the first 16 hex digits of the
    /// SHA-256 of the kind and its settings. The server shows secrets
    /// masked; with this a client holding the settings can tell whether
    /// they changed, and nobody can get them back from it (each secret is
    /// random and long).
    pub fn digest(&self) -> String {
        let parts: Vec<&str> = match self {
            Self::Webhook { url, .. } => vec![url.as_str()],
            Self::Slack { webhook } => vec![webhook.url().as_str()],
            Self::Email { to } => vec![to.as_str()],
            Self::PagerDuty {
                routing_key,
                events_url,
            } => vec![routing_key.expose(), events_url.as_str()],
        };
        let mut hasher = Sha256::new();
        hasher.update(self.kind_name().as_bytes());
        for part in parts {
            hasher.update([0]);
            hasher.update(part.as_bytes());
        }
        hex::encode(&hasher.finalize()[..8])
    }
}

/// The changes to one channel (UpdateChannel): `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct ChannelUpdate {
    pub name: Option<String>,
    /// A webhook here carries a generated secret, used only when the
    /// channel was not a webhook before (see [`ChannelRecord::updated`]).
    pub target: Option<ChannelTarget>,
    /// The whole new list; empty: all of the owner's URLs.
    pub url_ids: Option<Vec<i64>>,
    pub notify_degraded: Option<bool>,
    /// `Some(None)`: no more reminders.
    pub remind_every: Option<Option<Duration>>,
}

impl ChannelRecord {
    /// This channel with `update` applied, and whether its webhook secret is
    /// new (the answer then shows it, once). A webhook that stays a webhook
    /// keeps its secret, so receivers need not change their key.
    pub fn updated(mut self, update: ChannelUpdate) -> (Self, bool) {
        let mut new_secret = false;
        if let Some(name) = update.name {
            self.name = name;
        }
        if let Some(target) = update.target {
            self.target = match (self.target, target) {
                (ChannelTarget::Webhook { secret, .. }, ChannelTarget::Webhook { url, .. }) => {
                    ChannelTarget::Webhook { url, secret }
                }
                (_, target) => {
                    new_secret = matches!(target, ChannelTarget::Webhook { .. });
                    target
                }
            };
        }
        if let Some(ids) = update.url_ids {
            self.url_ids = ids;
        }
        if let Some(on) = update.notify_degraded {
            self.notify_degraded = on;
        }
        if let Some(every) = update.remind_every {
            self.remind_every = every;
        }
        (self, new_secret)
    }
}

/// Longest reminder interval.
pub const MAX_REMIND_EVERY: Duration = Duration::from_secs(30 * 86_400);

/// A checked reminder interval: whole seconds, from `min` (the server's
/// shortest period) to [`MAX_REMIND_EVERY`].
pub fn parse_remind_every(
    field: &'static str,
    every: Duration,
    min: Duration,
) -> Result<Duration, Error> {
    if every.subsec_nanos() != 0 || every < min || every > MAX_REMIND_EVERY {
        return Err(Error::invalid(
            field,
            format!(
                "must be whole seconds from {} to 30 days (unset: no reminders)",
                humantime::format_duration(min)
            ),
        ));
    }
    Ok(every)
}

/// A checked channel name: [`super::url_update::parse_name`]'s rules, and
/// required.
pub fn parse_name(field: &'static str, raw: &str) -> Result<String, Error> {
    super::url_update::parse_name(field, raw)?.ok_or_else(|| Error::invalid(field, "is required"))
}

/// Checked URL ids: positive, at most [`MAX_URL_IDS`], sorted, without
/// repeats. Empty: all of the owner's URLs.
pub fn parse_url_ids(field: &'static str, ids: Vec<i64>) -> Result<Vec<i64>, Error> {
    if ids.len() > MAX_URL_IDS {
        return Err(Error::invalid(
            field,
            format!("must name at most {MAX_URL_IDS} URLs (none: all of yours)"),
        ));
    }
    if let Some(bad) = ids.iter().find(|id| **id <= 0) {
        return Err(Error::invalid(field, format!("{bad} is not a URL id")));
    }
    let mut ids = ids;
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

/// A channel to add, checked.
#[derive(Debug, Clone)]
pub struct NewChannel {
    pub name: String,
    pub target: ChannelTarget,
    /// Empty: all of the owner's URLs.
    pub url_ids: Vec<i64>,
    pub notify_degraded: bool,
    /// Send an open incident again this often (none: never).
    pub remind_every: Option<Duration>,
}

/// A stored channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelRecord {
    pub id: i64,
    pub user_id: UserId,
    pub name: String,
    pub target: ChannelTarget,
    pub url_ids: Vec<i64>,
    pub notify_degraded: bool,
    pub remind_every: Option<Duration>,
    pub created_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_secret_has_the_prefix_and_decodes_to_its_bytes() {
        let secret = WebhookSecret::generate();
        assert!(secret.expose().starts_with("whsec_"));
        assert_eq!(secret.key().len(), SECRET_BYTES);
        assert_ne!(secret, WebhookSecret::generate());
        assert!(!format!("{secret:?}").contains(secret.expose()));
    }

    #[test]
    fn names_and_url_ids_are_checked() {
        assert_eq!(parse_name("name", "  ops ").unwrap(), "ops");
        assert!(parse_name("name", " ").is_err());
        assert!(parse_name("name", &"x".repeat(1000)).is_err());
        assert!(parse_name("name", "a\nb").is_err());
        assert_eq!(parse_url_ids("ids", vec![3, 1, 3]).unwrap(), vec![1, 3]);
        assert!(parse_url_ids("ids", vec![0]).is_err());
        assert!(parse_url_ids("ids", vec![1; MAX_URL_IDS + 1]).is_err());
    }

    #[test]
    fn routing_keys_and_slack_urls_are_masked_and_never_debug_printed() {
        let key = RoutingKey::parse("k", " R0123456789abcdefABCDEF012345678 ").unwrap();
        assert_eq!(key.expose(), "R0123456789abcdefABCDEF012345678");
        assert_eq!(key.masked(), "…5678");
        assert!(!format!("{key:?}").contains("5678"));
        for bad in ["", "  ", "has space", "ключ", &"a".repeat(65)] {
            assert!(RoutingKey::parse("k", bad).is_err(), "{bad:?}");
        }
        let hook = SlackWebhook::new(
            TargetUrl::parse("u", "https://hooks.slack.com/services/T0/B0/SECRET").unwrap(),
        );
        assert_eq!(hook.masked(), "https://hooks.slack.com/…");
        assert!(!format!("{hook:?}").contains("SECRET"));
        let local = SlackWebhook::new(TargetUrl::parse("u", "http://127.0.0.1:8080/x").unwrap());
        assert_eq!(local.masked(), "http://127.0.0.1:8080/…");
    }
}
