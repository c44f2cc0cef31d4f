//! Adding, listing, changing and deleting a user's monitored URLs.
//!
//! A URL belongs to one user; every query filters by the caller's id, so
//! another user's URL is indistinguishable from one that does not exist.

use std::{sync::Arc, time::Duration};

use chrono::Utc;
use sea_orm::DatabaseConnection;
use tokio::sync::Notify;

use crate::{
    domain::{
        Assertions, Period, PeriodBounds, TargetUrl, UrlRecord, UrlUpdate, UserId,
        period::MAX_PERIOD_LIMIT, schedule, truncate_to_micros,
    },
    error::{Error, Result, SettingsError, check_setting},
    store::{self, url_update, urls},
};

/// What users may ask for.
#[derive(Debug, Clone, clap::Args)]
pub struct UrlSettings {
    /// Shortest period a user may ask for.
    #[arg(long, env = "MONITOR_MIN_PERIOD", default_value = "10s", value_parser = humantime::parse_duration)]
    pub min_period: Duration,

    /// Longest period a user may ask for (100 minutes at most).
    #[arg(long, env = "MONITOR_MAX_PERIOD", default_value = "100m", value_parser = humantime::parse_duration)]
    pub max_period: Duration,

    /// How many URLs one user may monitor.
    #[arg(long, env = "MONITOR_MAX_URLS_PER_USER", default_value_t = 1000)]
    pub max_urls_per_user: u32,

    /// Most probes per second one account's URLs may send to one host (the
    /// sum of 1/period over its URLs on that host), so that one account
    /// cannot aim the service at a third party.
    #[arg(long, env = "MONITOR_MAX_HOST_RATE", default_value_t = 1.0)]
    pub max_host_rate: f64,
}

impl UrlSettings {
    pub fn bounds(&self) -> PeriodBounds {
        PeriodBounds {
            min: self.min_period,
            max: self.max_period,
        }
    }

    pub fn validate(&self) -> Result<(), SettingsError> {
        check_setting(
            self.min_period >= Duration::from_secs(1) && self.min_period.subsec_nanos() == 0,
            "MONITOR_MIN_PERIOD",
            "must be a whole number of seconds, at least 1s",
        )?;
        check_setting(
            self.max_period.subsec_nanos() == 0 && self.max_period <= MAX_PERIOD_LIMIT,
            "MONITOR_MAX_PERIOD",
            "must be a whole number of seconds, at most 100m",
        )?;
        if self.min_period > self.max_period {
            return Err(SettingsError::new(
                "MONITOR_MIN_PERIOD",
                format!(
                    "{} is longer than MONITOR_MAX_PERIOD ({})",
                    humantime::format_duration(self.min_period),
                    humantime::format_duration(self.max_period)
                ),
            ));
        }
        check_setting(
            self.max_urls_per_user > 0,
            "MONITOR_MAX_URLS_PER_USER",
            "must be at least 1",
        )?;
        check_setting(
            self.max_host_rate.is_finite()
                && self.max_host_rate >= 1e-6
                && self.max_host_rate <= 1e6,
            "MONITOR_MAX_HOST_RATE",
            "must be a number of probes per second between 0.000001 and 1000000",
        )
    }

    /// [`Self::max_host_rate`] in millionths of a probe per second.
    #[allow(clippy::cast_possible_truncation)] // validated: at most 1e12
    pub fn max_host_rate_micros(&self) -> i64 {
        (self.max_host_rate * 1e6).round() as i64
    }
}

#[derive(Debug)]
pub struct UrlService {
    db: DatabaseConnection,
    bounds: PeriodBounds,
    limits: urls::Limits,
    /// Wakes this instance's scheduler, so a new URL is probed at once.
    scheduler: Arc<Notify>,
}

impl UrlService {
    pub fn new(db: DatabaseConnection, settings: &UrlSettings, scheduler: Arc<Notify>) -> Self {
        Self {
            db,
            bounds: settings.bounds(),
            limits: urls::Limits {
                max_urls: settings.max_urls_per_user,
                max_host_rate_micros: settings.max_host_rate_micros(),
            },
            scheduler,
        }
    }

    /// The periods this server accepts.
    pub fn bounds(&self) -> PeriodBounds {
        self.bounds
    }

    /// Starts monitoring `url` for `user` with its assertions, within the
    /// user's quota and the per-host rate (counters raised with the insert:
    /// they hold under races and cost the same at any count).
    pub async fn add(
        &self,
        user: UserId,
        url: TargetUrl,
        period: Period,
        assertions: Assertions,
    ) -> Result<UrlRecord> {
        assertions.check_for_url("", url.as_str())?;
        let now = truncate_to_micros(Utc::now());
        let (phase_ms, next_due_ms) = schedule::first_due(period, now);
        let new = urls::NewUrl {
            user,
            url: &url,
            period,
            created_at: now,
            phase_ms,
            next_due_ms,
            assertions: &assertions,
        };
        let record = match urls::insert_within_limits(&self.db, new, self.limits).await {
            Ok(Some(record)) => record,
            Ok(None) => return Err(self.why_not_added(user, &url, period).await),
            Err(e) if store::is_unique_violation(&e) => return Err(already_monitored(&url)),
            Err(e) => return Err(e.into()),
        };
        self.scheduler.notify_one();
        tracing::info!(user_id = user.0, url_id = record.id, "url added");
        Ok(record)
    }

    /// Why the URL was not added: it is there already, the account is gone,
    /// the host's rate would pass its limit, or the user is at the quota.
    /// (Read after the fact, so only the message can be off under a race.)
    async fn why_not_added(&self, user: UserId, url: &TargetUrl, period: Period) -> Error {
        let duplicate = urls::is_monitored(&self.db, user, url).await;
        let exists = store::users::exists(&self.db, user).await;
        let host_rate = urls::host_rate_micros(&self.db, user, url.host_key()).await;
        match (duplicate, exists, host_rate) {
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => e.into(),
            (Ok(true), _, _) => already_monitored(url),
            (_, Ok(false), _) => {
                Error::Unauthenticated("this account no longer exists; register again".into())
            }
            (_, _, Ok(rate)) if rate + period.rate_micros() > self.limits.max_host_rate_micros => {
                self.over_host_rate(url.host_key(), rate, period.rate_micros(), period)
            }
            _ => Error::ResourceExhausted(format!(
                "you monitor {} URLs, the most allowed; delete one to add another",
                self.limits.max_urls
            )),
        }
    }

    /// RESOURCE_EXHAUSTED: the user's URLs on `host`, probed `rate` (in
    /// millionths a second), would be probed `more` more with one every `period`.
    fn over_host_rate(&self, host: &str, rate: i64, more: i64, period: Period) -> Error {
        Error::ResourceExhausted(format!(
            "your URLs on {host} are probed {now} times a second; with this one every {secs} s it would be {then}, \
             over the {max} per second allowed per host (so that no account can flood a site): \
             use a longer period, or fewer URLs on this host",
            now = micros_as_rate(rate),
            secs = period.seconds(),
            then = micros_as_rate(rate + more),
            max = micros_as_rate(self.limits.max_host_rate_micros),
        ))
    }

    /// Changes the user's URL (one transaction, see
    /// `store::url_update::update_for_user`), or NOT_FOUND; RESOURCE_EXHAUSTED
    /// when a shorter period or a resume would pass the per-host rate.
    pub async fn update(&self, user: UserId, id: i64, update: UrlUpdate) -> Result<UrlRecord> {
        check_id("url.id", id)?;
        if let Some(assertions) = &update.assertions {
            // A URL never changes its address: checked against the stored one.
            let url = self.get(user, "url.id", id).await?;
            assertions.check_for_url("url.", &url.url)?;
        }
        let now = truncate_to_micros(Utc::now());
        let max_rate = self.limits.max_host_rate_micros;
        match url_update::update_for_user(&self.db, user, id, &update, now, max_rate).await? {
            url_update::Updated::Url(record) => {
                if update.reschedules() {
                    self.scheduler.notify_one();
                }
                tracing::info!(user_id = user.0, url_id = id, "url updated");
                Ok(record)
            }
            url_update::Updated::NotFound => Err(not_found(id)),
            url_update::Updated::OverHostRate {
                host,
                rate_micros,
                more_micros,
                period,
            } => Err(self.over_host_rate(&host, rate_micros, more_micros, period)),
            url_update::Updated::UnknownParent(parent) => Err(Error::NotFound(format!(
                "depends_on: you have no URL with id {parent}"
            ))),
            url_update::Updated::Cycle(chain) => {
                let chain: Vec<String> = chain.iter().map(i64::to_string).collect();
                Err(Error::invalid(
                    "url.depends_on",
                    format!(
                        "would make a loop ({} depends on {}); a URL's parents must not depend on it",
                        id,
                        chain.join(" -> ")
                    ),
                ))
            }
        }
    }

    /// The user's URLs, oldest first.
    pub async fn list(&self, user: UserId) -> Result<Vec<UrlRecord>> {
        Ok(urls::list_for_user(&self.db, user).await?)
    }

    /// The user's URLs among `ids`, in id order; ids that are not the
    /// user's (or no longer exist) are left out.
    pub async fn get_many(&self, user: UserId, ids: &[i64]) -> Result<Vec<UrlRecord>> {
        Ok(urls::get_many_for_user(&self.db, user, ids).await?)
    }

    /// The user's URL with this id, or NOT_FOUND.
    pub async fn get(&self, user: UserId, field: &'static str, id: i64) -> Result<UrlRecord> {
        check_id(field, id)?;
        urls::get_for_user(&self.db, user, id)
            .await?
            .ok_or_else(|| not_found(id))
    }

    /// Stops monitoring a URL; its statuses go with it, and the user's quota
    /// counter goes down in the same transaction.
    pub async fn delete(&self, user: UserId, id: i64) -> Result<()> {
        check_id("id", id)?;
        if !urls::delete_for_user(&self.db, user, id).await? {
            return Err(not_found(id));
        }
        tracing::info!(user_id = user.0, url_id = id, "url deleted");
        Ok(())
    }
}

/// Millionths of a probe per second as a short decimal (`0.85`, `1`).
fn micros_as_rate(micros: i64) -> String {
    let whole = micros / 1_000_000;
    let frac = format!("{:06}", micros % 1_000_000);
    let frac = frac.trim_end_matches('0');
    if frac.is_empty() {
        whole.to_string()
    } else {
        format!("{whole}.{}", &frac[..frac.len().min(3)])
    }
}

fn already_monitored(url: &TargetUrl) -> Error {
    Error::AlreadyExists(format!(
        "you already monitor {url}; change its period or name with UpdateUrl"
    ))
}

pub(super) fn check_id(field: &'static str, id: i64) -> Result<()> {
    if id <= 0 {
        return Err(Error::invalid(
            field,
            "is required and must be a positive URL id",
        ));
    }
    Ok(())
}

fn not_found(id: i64) -> Error {
    Error::NotFound(format!("you have no URL with id {id}"))
}
