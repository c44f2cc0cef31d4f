//! Status pages: the owner's GetStatusPage / UpdateStatusPage, and what a
//! public page shows to anyone (its URLs' state, uptime, latency, daily
//! history and incidents), read through the URL, stats and incident
//! services — from the rollups, never the raw statuses.
//!
//! A page that does not exist, is not public, or does not list the URL
//! asked for is the same `None`: the transports answer all three alike.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use sea_orm::DatabaseConnection;

use super::{IncidentQuery, IncidentService, StatsQuery, StatsService, UrlService};
use crate::{
    domain::{
        IncidentRecord, UrlRecord, UserId,
        rollup::{Bucket, Tier},
        state::UrlState,
        status_page::{Slug, StatusPageRecord, StatusPageUpdate},
        truncate_to_micros,
    },
    error::{Error, Result},
    store::status_pages::{self, PageRow, Refused},
};

/// Days of bars a page shows per URL.
pub const DAYS: i64 = 90;
/// Resolved incidents a page lists.
pub const RESOLVED_SHOWN: usize = 10;
/// Incidents read per URL (for the list and the bars' tooltips).
const INCIDENTS_READ: i32 = 200;

/// One day of a URL's history.
#[derive(Debug, Clone)]
pub struct DayView {
    pub date: DateTime<Utc>,
    /// `None`: no probe that day.
    pub uptime: Option<f64>,
    /// Incidents open at some time that day.
    pub incidents: u32,
}

/// One URL as a public page shows it.
#[derive(Debug, Clone)]
pub struct UrlView {
    pub id: i64,
    /// The URL's name, or its host.
    pub label: String,
    /// The whole address, when the owner chose to show it.
    pub address: Option<String>,
    pub state: UrlState,
    pub uptime_24h: Option<f64>,
    pub uptime_7d: Option<f64>,
    pub uptime_30d: Option<f64>,
    pub uptime_90d: Option<f64>,
    /// The 95th percentile latency over 24 hours, in µs.
    pub p95_24h_us: Option<f64>,
    /// The last [`DAYS`] days, oldest first (today last).
    pub days: Vec<DayView>,
}

/// One incident as a public page shows it.
#[derive(Debug, Clone)]
pub struct IncidentView {
    pub label: String,
    pub state: UrlState,
    pub opened_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub failed_probes: u32,
}

/// A public page, ready to render.
#[derive(Debug, Clone)]
pub struct PageView {
    pub slug: String,
    pub title: String,
    pub urls: Vec<UrlView>,
    /// Open incidents, newest first.
    pub open: Vec<IncidentView>,
    /// The last [`RESOLVED_SHOWN`] resolved incidents, latest resolved first.
    pub resolved: Vec<IncidentView>,
}

#[derive(Debug)]
pub struct StatusPageService {
    db: DatabaseConnection,
    urls: Arc<UrlService>,
    stats: Arc<StatsService>,
    incidents: Arc<IncidentService>,
}

impl StatusPageService {
    pub fn new(
        db: DatabaseConnection,
        urls: Arc<UrlService>,
        stats: Arc<StatsService>,
        incidents: Arc<IncidentService>,
    ) -> Self {
        Self {
            db,
            urls,
            stats,
            incidents,
        }
    }

    /// The user's page, or NOT_FOUND.
    pub async fn get(&self, user: UserId) -> Result<StatusPageRecord> {
        status_pages::get_for_user(&self.db, user)
            .await?
            .ok_or_else(|| {
                Error::NotFound(
                    "you have no status page yet; UpdateStatusPage with a slug creates it".into(),
                )
            })
    }

    /// Applies `update` to the user's page (creating it: then a slug is
    /// needed); nothing is written unless all of it is good.
    pub async fn update(&self, user: UserId, update: StatusPageUpdate) -> Result<StatusPageRecord> {
        let current = status_pages::get_for_user(&self.db, user).await?;
        let slug: Slug = match (update.slug, &current) {
            (Some(slug), _) => slug,
            (None, Some(page)) => page.slug.clone(),
            (None, None) => {
                return Err(Error::invalid(
                    "page.slug",
                    "is required to create your status page",
                ));
            }
        };
        let title = update
            .title
            .or_else(|| current.as_ref().map(|p| p.title.clone()))
            .unwrap_or_default();
        let url_ids = update
            .url_ids
            .or_else(|| current.as_ref().map(|p| p.url_ids.clone()))
            .unwrap_or_default();
        let public = update
            .public
            .or(current.as_ref().map(|p| p.public))
            .unwrap_or(false);
        let show_urls = update
            .show_urls
            .or(current.as_ref().map(|p| p.show_urls))
            .unwrap_or(false);
        let row = PageRow {
            slug: &slug,
            title: &title,
            url_ids: &url_ids,
            public,
            show_urls,
            updated_at: truncate_to_micros(Utc::now()),
        };
        match status_pages::upsert(&self.db, user, &row).await? {
            Ok(page) => {
                tracing::info!(
                    user_id = user.0,
                    slug = page.slug.as_str(),
                    "status page written"
                );
                Ok(page)
            }
            Err(Refused::SlugTaken) => Err(Error::AlreadyExists(format!(
                "the slug \"{}\" is taken; choose another",
                slug.as_str()
            ))),
            Err(Refused::UnknownUrl(id)) => {
                Err(Error::NotFound(format!("you have no URL with id {id}")))
            }
        }
    }

    /// The public page with this slug; `None` when there is none or it is
    /// not public.
    pub async fn public_page(&self, slug: &str) -> Result<Option<PageView>> {
        let Some(page) = self.public_record(slug).await? else {
            return Ok(None);
        };
        let now = Utc::now();
        let mut urls = Vec::with_capacity(page.url_ids.len());
        let mut open = Vec::new();
        let mut resolved = Vec::new();
        for id in &page.url_ids {
            // A URL deleted since the page was read is left out.
            let Some(url) = self.listed_url(&page, *id).await? else {
                continue;
            };
            let incidents = self.url_incidents(page.user_id, *id).await?;
            let view = self.url_view(&page, &url, &incidents, now).await?;
            for incident in incidents {
                let shown = IncidentView {
                    label: view.label.clone(),
                    state: incident.state,
                    opened_at: incident.opened_at,
                    resolved_at: incident.resolved_at,
                    failed_probes: incident.failed_probes,
                };
                if incident.resolved_at.is_some() {
                    resolved.push(shown);
                } else {
                    open.push(shown);
                }
            }
            urls.push(view);
        }
        open.sort_by_key(|i| std::cmp::Reverse(i.opened_at));
        resolved.sort_by_key(|i| std::cmp::Reverse(i.resolved_at));
        resolved.truncate(RESOLVED_SHOWN);
        Ok(Some(PageView {
            title: if page.title.is_empty() {
                page.slug.as_str().to_owned()
            } else {
                page.title.clone()
            },
            slug: page.slug.as_str().to_owned(),
            urls,
            open,
            resolved,
        }))
    }

    /// One URL of the public page with this slug; `None` when there is no
    /// such public page or it does not list the URL.
    pub async fn public_url(&self, slug: &str, url_id: i64) -> Result<Option<UrlView>> {
        let Some(page) = self.public_record(slug).await? else {
            return Ok(None);
        };
        let Some(url) = self.listed_url(&page, url_id).await? else {
            return Ok(None);
        };
        let incidents = self.url_incidents(page.user_id, url_id).await?;
        Ok(Some(
            self.url_view(&page, &url, &incidents, Utc::now()).await?,
        ))
    }

    /// The page's URL with this id; `None` when the page does not list it
    /// (or it was deleted since the page was read).
    async fn listed_url(&self, page: &StatusPageRecord, url_id: i64) -> Result<Option<UrlRecord>> {
        if !page.url_ids.contains(&url_id) {
            return Ok(None);
        }
        match self.urls.get(page.user_id, "url_id", url_id).await {
            Ok(url) => Ok(Some(url)),
            Err(Error::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn public_record(&self, slug: &str) -> Result<Option<StatusPageRecord>> {
        Ok(status_pages::get_by_slug(&self.db, slug)
            .await?
            .filter(|p| p.public))
    }

    async fn url_incidents(&self, user: UserId, url_id: i64) -> Result<Vec<IncidentRecord>> {
        Ok(self
            .incidents
            .list(
                user,
                IncidentQuery {
                    url_id,
                    page_size: INCIDENTS_READ,
                    page_token: String::new(),
                },
            )
            .await?
            .incidents)
    }

    async fn url_view(
        &self,
        page: &StatusPageRecord,
        url: &UrlRecord,
        incidents: &[IncidentRecord],
        now: DateTime<Utc>,
    ) -> Result<UrlView> {
        let stats = |start: DateTime<Utc>, tier: Tier| StatsQuery {
            url_id: url.id,
            start: Some(start),
            end: Some(now),
            granularity: Some(tier),
        };
        // Hours for the last week (24 h and 7 d), days for the bars (90 d, 30 d).
        let hours = self
            .stats
            .get(page.user_id, stats(now - Duration::days(7), Tier::Hour))
            .await?;
        let today = Tier::Day.bucket_of(now.timestamp_millis());
        let first_day = DateTime::from_timestamp_millis(today - (DAYS - 1) * Tier::Day.width_ms())
            .unwrap_or(now);
        let days = self
            .stats
            .get(page.user_id, stats(first_day, Tier::Day))
            .await?;
        let merged = |rows: &mut dyn Iterator<Item = &Bucket>| {
            let mut total = Bucket::default();
            for b in rows {
                total.merge(b);
            }
            total
        };
        let since_day = now - Duration::hours(24);
        let day = merged(
            &mut hours
                .buckets
                .iter()
                .filter(|r| r.start + Duration::hours(1) > since_day)
                .map(|r| &r.bucket),
        );
        let since_month = now - Duration::days(30);
        let month = merged(
            &mut days
                .buckets
                .iter()
                .filter(|r| r.start + Duration::days(1) > since_month)
                .map(|r| &r.bucket),
        );
        let day_views = days
            .buckets
            .iter()
            .map(|r| {
                let end = r.start + Duration::days(1);
                let overlapping = incidents
                    .iter()
                    .filter(|i| i.opened_at < end && i.resolved_at.is_none_or(|at| at >= r.start))
                    .count();
                DayView {
                    date: r.start,
                    uptime: r.bucket.uptime(),
                    incidents: u32::try_from(overlapping).unwrap_or(u32::MAX),
                }
            })
            .collect();
        Ok(UrlView {
            id: url.id,
            label: label(url),
            address: page.show_urls.then(|| url.url.clone()),
            state: url.state,
            uptime_24h: day.uptime(),
            uptime_7d: hours.total.bucket.uptime(),
            uptime_30d: month.uptime(),
            uptime_90d: days.total.bucket.uptime(),
            p95_24h_us: day.latency.quantile(0.95),
            days: day_views,
        })
    }
}

/// What a page calls a URL: its name, or its host (never its path or query).
fn label(url: &UrlRecord) -> String {
    if let Some(name) = url.name.as_deref().filter(|n| !n.is_empty()) {
        return name.to_owned();
    }
    url::Url::parse(&url.url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_else(|| format!("URL {}", url.id))
}
