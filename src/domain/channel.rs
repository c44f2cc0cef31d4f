//! Notification channels: where a user's incident events are sent.
//!
//! A channel parses, not validates: a [`NewChannel`] holds a checked name, a
//! target whose URL is a [`TargetUrl`] and a set of URL ids, so the service
//! only has to check what needs the database (the URLs are the caller's,
//! the quota). A webhook's secret is generated here, printed nowhere (its
//! `Debug` is redacted) and given to the client once, at creation.

use std::fmt;

use base64::{Engine, engine::general_purpose::STANDARD};
use chrono::{DateTime, Utc};
use rand::RngCore;

use super::{TargetUrl, UserId};
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

/// Where a channel sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelTarget {
    /// A signed HTTP POST (Standard Webhooks).
    Webhook {
        url: TargetUrl,
        secret: WebhookSecret,
    },
}

impl ChannelTarget {
    /// The kind's number as stored (1 webhook).
    pub fn kind(&self) -> i16 {
        match self {
            Self::Webhook { .. } => 1,
        }
    }

    /// The kind's name (metrics labels).
    pub fn kind_name(&self) -> &'static str {
        match self {
            Self::Webhook { .. } => "webhook",
        }
    }

    /// The URL the channel sends to.
    pub fn url(&self) -> &TargetUrl {
        match self {
            Self::Webhook { url, .. } => url,
        }
    }
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
}
