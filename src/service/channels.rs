//! Adding, listing and deleting a user's notification channels.
//!
//! Like URLs, a channel belongs to one user: every query filters by the
//! caller's id, so another user's channel is indistinguishable from one that
//! does not exist. A channel's URL is checked by the SSRF guard's literal
//! check here (a name is checked again after DNS, at every send).

use chrono::Utc;
use sea_orm::DatabaseConnection;

use super::{page_token, statuses::page_size};
use crate::{
    domain::{
        ChannelRecord, ChannelTarget, ChannelUpdate, NewChannel, UserId,
        notification::{DeliveryRecord, test_event_json},
        truncate_to_micros,
    },
    error::{Error, Result, SettingsError, check_setting},
    prober::ssrf,
    store::{
        channels::{self, Refused},
        deliveries,
    },
};

/// A ListDeliveries request, as a transport decoded it.
#[derive(Debug, Clone, Default)]
pub struct DeliveryQuery {
    pub channel_id: i64,
    pub page_size: i32,
    pub page_token: String,
}

#[derive(Debug)]
pub struct DeliveryPage {
    pub deliveries: Vec<DeliveryRecord>,
    pub next_page_token: String,
}

/// What users may ask of channels.
#[derive(Debug, Clone, clap::Args)]
pub struct ChannelSettings {
    /// How many notification channels one user may have.
    #[arg(long, env = "MONITOR_MAX_CHANNELS_PER_USER", default_value_t = 50)]
    pub max_channels_per_user: u32,
}

impl ChannelSettings {
    pub fn validate(&self) -> Result<(), SettingsError> {
        check_setting(
            self.max_channels_per_user > 0,
            "MONITOR_MAX_CHANNELS_PER_USER",
            "must be at least 1",
        )
    }
}

#[derive(Debug)]
pub struct ChannelService {
    db: DatabaseConnection,
    max_channels: u32,
    /// Private and loopback addresses are allowed (tests, local demos).
    allow_private: bool,
    /// An SMTP relay is set, so email channels can be sent.
    email_enabled: bool,
}

impl ChannelService {
    pub fn new(
        db: DatabaseConnection,
        settings: &ChannelSettings,
        allow_private: bool,
        email_enabled: bool,
    ) -> Self {
        Self {
            db,
            max_channels: settings.max_channels_per_user,
            allow_private,
            email_enabled,
        }
    }

    /// Whether this server can send to `target`. `url_field` names the
    /// target's URL field in the request (for the error of a refused address).
    fn check_target(&self, url_field: &'static str, target: &ChannelTarget) -> Result<()> {
        if let Some(url) = target.url() {
            ssrf::check_literal(url.as_url(), self.allow_private).map_err(|blocked| {
                Error::invalid(
                    url_field,
                    format!("{blocked}; notifications go to public addresses only"),
                )
            })?;
        }
        if matches!(target, ChannelTarget::Email { .. }) && !self.email_enabled {
            return Err(Error::FailedPrecondition(
                "this server sends no email: its operator has not set MONITOR_SMTP_URL; \
                 use a webhook, Slack or PagerDuty channel"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Adds a channel for `user`. `url_field` names the target's URL field
    /// in the request (for the error of a refused address).
    pub async fn create(
        &self,
        user: UserId,
        url_field: &'static str,
        new: NewChannel,
    ) -> Result<ChannelRecord> {
        self.check_target(url_field, &new.target)?;
        let now = truncate_to_micros(Utc::now());
        match channels::insert_within_limit(&self.db, user, &new, now, self.max_channels).await? {
            Ok(record) => {
                tracing::info!(user_id = user.0, channel_id = record.id, "channel added");
                Ok(record)
            }
            Err(Refused::Quota) => Err(Error::ResourceExhausted(format!(
                "you have {} channels, the most allowed; delete one first",
                self.max_channels
            ))),
            Err(Refused::UnknownUrl(id)) => {
                Err(Error::NotFound(format!("you have no URL with id {id}")))
            }
        }
    }

    /// Changes the user's channel `id`; the answer says whether its webhook
    /// secret is new (shown once, then).
    pub async fn update(
        &self,
        user: UserId,
        id: i64,
        url_field: &'static str,
        update: ChannelUpdate,
    ) -> Result<(ChannelRecord, bool)> {
        if let Some(target) = &update.target {
            self.check_target(url_field, target)?;
        }
        let (channel, new_secret) = self.get(user, "channel.id", id).await?.updated(update);
        match channels::update_for_user(&self.db, &channel).await? {
            Ok(true) => {
                tracing::info!(user_id = user.0, channel_id = id, "channel changed");
                Ok((channel, new_secret))
            }
            Ok(false) => Err(not_found(id)),
            Err(Refused::UnknownUrl(url)) => {
                Err(Error::NotFound(format!("you have no URL with id {url}")))
            }
            Err(Refused::Quota) => Err(Error::Internal(anyhow::anyhow!(
                "a channel change was refused for the quota"
            ))),
        }
    }

    /// The user's channels, oldest first.
    pub async fn list(&self, user: UserId) -> Result<Vec<ChannelRecord>> {
        Ok(channels::list_for_user(&self.db, user).await?)
    }

    /// The user's channel with this id, or NOT_FOUND.
    pub async fn get(&self, user: UserId, field: &'static str, id: i64) -> Result<ChannelRecord> {
        check_id(field, id)?;
        channels::get_for_user(&self.db, user, id)
            .await?
            .ok_or_else(|| not_found(id))
    }

    /// Puts a test event for the user's channel in the outbox; the
    /// delivery worker sends it like any event.
    pub async fn test(&self, user: UserId, id: i64) -> Result<DeliveryRecord> {
        let channel = self.get(user, "id", id).await?;
        let now = truncate_to_micros(Utc::now());
        let payload = test_event_json(channel.id, &channel.name, now);
        Ok(deliveries::insert_test(&self.db, channel.id, payload, now).await?)
    }

    /// The deliveries of the user's channel, newest first, in pages.
    pub async fn deliveries(&self, user: UserId, query: DeliveryQuery) -> Result<DeliveryPage> {
        let limit = page_size(query.page_size)?;
        let before_id = page_token::before_id("d", query.channel_id, &query.page_token)?;
        let channel = self.get(user, "channel_id", query.channel_id).await?;
        let mut rows = deliveries::page(&self.db, channel.id, before_id, limit + 1).await?;
        let more = rows.len() as u64 > limit;
        rows.truncate(usize::try_from(limit).map_err(Error::internal)?);
        let next_page_token = match rows.last() {
            Some(last) if more => page_token::encode("d", channel.id, last.id),
            _ => String::new(),
        };
        Ok(DeliveryPage {
            deliveries: rows,
            next_page_token,
        })
    }

    /// Deletes the user's channel and its deliveries.
    pub async fn delete(&self, user: UserId, id: i64) -> Result<()> {
        check_id("id", id)?;
        if !channels::delete_for_user(&self.db, user, id).await? {
            return Err(not_found(id));
        }
        tracing::info!(user_id = user.0, channel_id = id, "channel deleted");
        Ok(())
    }
}

fn check_id(field: &'static str, id: i64) -> Result<()> {
    if id <= 0 {
        return Err(Error::invalid(
            field,
            "is required and must be a positive channel id",
        ));
    }
    Ok(())
}

fn not_found(id: i64) -> Error {
    Error::NotFound(format!("you have no channel with id {id}"))
}
