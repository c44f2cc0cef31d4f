//! Status pages: the owner's GetStatusPage / UpdateStatusPage, and what a
//! public page shows to anyone (its URLs' state, uptime, latency, daily
//! history and incidents), read from the rollups (never the raw statuses)
//! for all of a page's URLs at once: a page costs a fixed number of
//! statements, however many URLs it lists.
//!
//! A page that does not exist, is not public, or does not list the URL
//! asked for is the same `None`: the transports answer all three alike.

use std::{collections::HashMap, sync::Arc};

use chrono::{DateTime, Duration, Utc};
use sea_orm::DatabaseConnection;

use super::UrlService;
use crate::{
    domain::{
        IncidentRecord, UrlRecord, UserId,
        rollup::{Bucket, Tier},
        state::UrlState,
        status_page::{Slug, StatusPageRecord, StatusPageUpdate},
        truncate_to_micros,
    },
    error::{Error, Result, SettingsError, check_setting},
    store::{
        incidents, rollups,
        status_pages::{self, PageRow, Refused},
    },
};

/// How public pages are served.
#[derive(Debug, Clone, clap::Args)]
pub struct StatusPageSettings {
    /// How long a built public page (and its badges' figures) is served
    /// again before it is built anew from the database; a page whose
    /// settings changed is built anew at once. 0s builds every request.
    #[arg(long, env = "MONITOR_STATUS_PAGE_CACHE", default_value = "10s", value_parser = humantime::parse_duration)]
    pub status_page_cache: std::time::Duration,
}

impl StatusPageSettings {
    pub fn validate(&self) -> Result<(), SettingsError> {
        check_setting(
            self.status_page_cache <= std::time::Duration::from_secs(300),
            "MONITOR_STATUS_PAGE_CACHE",
            "must be at most 5m (0s: no cache)",
        )
    }
}

/// Days of bars a page shows per URL.
pub const DAYS: i64 = 90;
/// Resolved incidents a page lists.
pub const RESOLVED_SHOWN: usize = 10;
/// Incidents read per URL (for the list and the bars' tooltips).
const INCIDENTS_READ: u64 = 200;

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
}

impl StatusPageService {
    pub fn new(db: DatabaseConnection, urls: Arc<UrlService>) -> Self {
        Self { db, urls }
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

    /// The public page with this slug (one statement, the same whether the
    /// page is missing, private or public); `None` when there is none or it
    /// is not public. What a built page was built from: when it changes,
    /// the page is built again.
    pub async fn public_record(&self, slug: &str) -> Result<Option<StatusPageRecord>> {
        Ok(status_pages::get_by_slug(&self.db, slug)
            .await?
            .filter(|p| p.public))
    }

    /// The public page with this slug; `None` when there is none or it is
    /// not public.
    pub async fn public_page(&self, slug: &str) -> Result<Option<PageView>> {
        match self.public_record(slug).await? {
            Some(page) => Ok(Some(self.page_view(&page, Utc::now()).await?)),
            None => Ok(None),
        }
    }

    /// `page` as it shows at `now`: all its URLs read together, one
    /// statement per kind of row (URLs, incidents, day buckets, the week's
    /// hour sums, the last day's hour buckets with their sketches).
    pub async fn page_view(&self, page: &StatusPageRecord, now: DateTime<Utc>) -> Result<PageView> {
        let (urls, incidents) = self.url_views(page, &page.url_ids, now).await?;
        let labels: HashMap<i64, &str> = urls.iter().map(|u| (u.id, u.label.as_str())).collect();
        let mut open = Vec::new();
        let mut resolved = Vec::new();
        for incident in incidents {
            let Some(label) = labels.get(&incident.url_id) else {
                continue;
            };
            let shown = IncidentView {
                label: (*label).to_owned(),
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
        open.sort_by_key(|i| std::cmp::Reverse(i.opened_at));
        resolved.sort_by_key(|i| std::cmp::Reverse(i.resolved_at));
        resolved.truncate(RESOLVED_SHOWN);
        Ok(PageView {
            title: if page.title.is_empty() {
                page.slug.as_str().to_owned()
            } else {
                page.title.clone()
            },
            slug: page.slug.as_str().to_owned(),
            urls,
            open,
            resolved,
        })
    }

    /// One URL of the public page with this slug; `None` when there is no
    /// such public page or it does not list the URL.
    pub async fn public_url(&self, slug: &str, url_id: i64) -> Result<Option<UrlView>> {
        let Some(page) = self.public_record(slug).await? else {
            return Ok(None);
        };
        self.url_of(&page, url_id, Utc::now()).await
    }

    /// The URL `url_id` of `page` as it shows at `now`; `None` when the
    /// page does not list it (or it was deleted since the page was read).
    pub async fn url_of(
        &self,
        page: &StatusPageRecord,
        url_id: i64,
        now: DateTime<Utc>,
    ) -> Result<Option<UrlView>> {
        if !page.url_ids.contains(&url_id) {
            return Ok(None);
        }
        let (mut urls, _) = self.url_views(page, &[url_id], now).await?;
        Ok(urls.pop())
    }

    /// The views of `ids` (the page's URLs, or some of them) in the order
    /// given, URLs deleted since left out, and the incidents of those URLs
    /// open at some time over the bars' days, newest first.
    async fn url_views(
        &self,
        page: &StatusPageRecord,
        ids: &[i64],
        now: DateTime<Utc>,
    ) -> Result<(Vec<UrlView>, Vec<IncidentRecord>)> {
        if ids.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let now_ms = now.timestamp_millis();
        let end_ms = now_ms + 1;
        let hour = |ago: Duration| Tier::Hour.bucket_of((now - ago).timestamp_millis());
        let today = Tier::Day.bucket_of(now_ms);
        let first_day = today - (DAYS - 1) * Tier::Day.width_ms();
        let since_first_day = DateTime::from_timestamp_millis(first_day).unwrap_or(now);
        let limit = INCIDENTS_READ.saturating_mul(u64::try_from(ids.len()).unwrap_or(1));
        // The week: the hours of its first, partial day, then whole days
        // (a day bucket is the sum of its hours: the roll pass writes both,
        // and the readers add the statuses not yet rolled to both).
        let week_from = hour(Duration::days(7));
        let week_days = Tier::Day.bucket_of(week_from) + Tier::Day.width_ms();
        // The five reads at once, each on its own pooled connection: the
        // page's ids are its owner's (checked when the page was written); a
        // URL deleted since is left out below, with whatever was read of it.
        let db = &self.db;
        let (found, incidents, days, week, last_day) = tokio::try_join!(
            self.urls.get_many(page.user_id, ids),
            async {
                Ok::<_, Error>(incidents::of_urls_since(db, ids, since_first_day, limit).await?)
            },
            async {
                Ok::<_, Error>(
                    rollups::read_many(db, ids, Tier::Day, first_day, end_ms, false).await?,
                )
            },
            async {
                Ok::<_, Error>(rollups::sums(db, ids, Tier::Hour, week_from, week_days).await?)
            },
            async {
                Ok::<_, Error>(
                    rollups::read_many(
                        db,
                        ids,
                        Tier::Hour,
                        hour(Duration::hours(24)),
                        end_ms,
                        true,
                    )
                    .await?,
                )
            },
        )?;
        let mut found: HashMap<i64, UrlRecord> = found.into_iter().map(|u| (u.id, u)).collect();
        let urls: Vec<UrlRecord> = ids.iter().filter_map(|id| found.remove(id)).collect();
        let week_hours: HashMap<i64, Bucket> = week.into_iter().collect();
        let mut day_rows: HashMap<i64, Vec<(i64, Bucket)>> = HashMap::new();
        for (url_id, start, bucket) in days {
            day_rows.entry(url_id).or_default().push((start, bucket));
        }
        let mut last_24h: HashMap<i64, Bucket> = HashMap::new();
        for (url_id, _, bucket) in &last_day {
            last_24h.entry(*url_id).or_default().merge(bucket);
        }
        let since_month = Tier::Day.bucket_of((now - Duration::days(30)).timestamp_millis());
        let mut incidents_of: HashMap<i64, Vec<&IncidentRecord>> = HashMap::new();
        for incident in &incidents {
            incidents_of
                .entry(incident.url_id)
                .or_default()
                .push(incident);
        }
        let views = urls
            .iter()
            .map(|url| {
                let rows = day_rows.remove(&url.id).unwrap_or_default();
                let its_incidents = incidents_of.remove(&url.id).unwrap_or_default();
                let History {
                    days: day_views,
                    mut week,
                    month,
                    quarter,
                } = history(
                    &rows,
                    &its_incidents,
                    first_day,
                    [week_days, since_month],
                    today,
                );
                if let Some(hours) = week_hours.get(&url.id) {
                    week.merge(hours);
                }
                let day = last_24h.remove(&url.id).unwrap_or_default();
                UrlView {
                    id: url.id,
                    label: label(url),
                    address: page.show_urls.then(|| url.url.clone()),
                    state: url.state,
                    uptime_24h: day.uptime(),
                    uptime_7d: week.uptime(),
                    uptime_30d: month.uptime(),
                    uptime_90d: quarter.uptime(),
                    p95_24h_us: day.latency.quantile(0.95),
                    days: day_views,
                }
            })
            .collect();
        Ok((views, incidents))
    }
}

/// A URL's bars and the uptime over their days.
struct History {
    days: Vec<DayView>,
    /// Merged over the days from the first of `since` on.
    week: Bucket,
    /// Merged over the last 30 days.
    month: Bucket,
    /// Merged over all [`DAYS`].
    quarter: Bucket,
}

/// The day bars from `first_day` to `today` (bucket starts, ms) of one URL
/// from its stored day buckets (in order) and its incidents; `since` are
/// the first days of the week's and the month's whole days.
fn history(
    rows: &[(i64, Bucket)],
    incidents: &[&IncidentRecord],
    first_day: i64,
    [since_week, since_month]: [i64; 2],
    today: i64,
) -> History {
    let mut stored = rows.iter().peekable();
    let (mut week, mut month, mut quarter) =
        (Bucket::default(), Bucket::default(), Bucket::default());
    let mut days = Vec::with_capacity(usize::try_from(DAYS).unwrap_or(0));
    let mut start = first_day;
    while start <= today {
        let end = start + Tier::Day.width_ms();
        let bucket = match stored.peek() {
            Some((at, _)) if *at == start => stored.next().map(|(_, b)| b),
            _ => None,
        };
        if let Some(b) = bucket {
            quarter.merge(b);
            if start >= since_month {
                month.merge(b);
            }
            if start >= since_week {
                week.merge(b);
            }
        }
        let overlapping = incidents
            .iter()
            .filter(|i| {
                i.opened_at.timestamp_millis() < end
                    && i.resolved_at
                        .is_none_or(|at| at.timestamp_millis() >= start)
            })
            .count();
        days.push(DayView {
            date: DateTime::from_timestamp_millis(start).unwrap_or_default(),
            uptime: bucket.and_then(Bucket::uptime),
            incidents: u32::try_from(overlapping).unwrap_or(u32::MAX),
        });
        start = end;
    }
    History {
        days,
        week,
        month,
        quarter,
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
