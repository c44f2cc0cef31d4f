//! Uptime and latency over a time range, from the rollup tiers (hour and
//! day buckets stored; minute buckets built from the raw statuses, which
//! are kept as long).
//!
//! A request names a range and optionally a granularity; unset, the finest
//! tier that keeps the range and covers it with at most 1,000 buckets is
//! used; a range reaching past what the asked tier keeps starts at its
//! oldest bucket. Every bucket of the range is returned, empty ones included, with
//! the slots the URL's schedule expected in it (`domain::rollup::
//! expected_slots`), so missed probes show as missed, never as down. The
//! total merges the buckets.

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use sea_orm::DatabaseConnection;

use super::UrlService;
use crate::{
    domain::{
        UserId,
        rollup::{Bucket, Tier, expected_slots},
    },
    error::{Error, Result},
    store::{rollups, statuses},
};

/// Most buckets one response may hold.
pub const MAX_BUCKETS: i64 = 10_000;
/// Most buckets when the granularity is chosen by the server.
pub const AUTO_BUCKETS: i64 = 1_000;

/// The request, as a transport decoded it.
#[derive(Debug, Clone, Default)]
pub struct StatsQuery {
    pub url_id: i64,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
    pub granularity: Option<Tier>,
}

/// One bucket (or the total): what was expected, and what was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsRow {
    pub start: DateTime<Utc>,
    pub expected: u64,
    pub bucket: Bucket,
}

impl StatsRow {
    /// Expected probes with no stored result.
    pub fn missed(&self) -> u64 {
        self.expected.saturating_sub(self.bucket.probed())
    }
}

#[derive(Debug)]
pub struct Stats {
    pub tier: Tier,
    pub buckets: Vec<StatsRow>,
    pub total: StatsRow,
}

#[derive(Debug)]
pub struct StatsService {
    db: DatabaseConnection,
    urls: Arc<UrlService>,
    /// How long each tier is kept.
    kept: [(Tier, Duration); 3],
    /// Slots due this recently are not expected yet: their results may still
    /// be in flight or in the buffer.
    settle: Duration,
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn tier_name(tier: Tier) -> &'static str {
    match tier {
        Tier::Minute => "MINUTE",
        Tier::Hour => "HOUR",
        Tier::Day => "DAY",
    }
}

impl StatsService {
    pub fn new(
        db: DatabaseConnection,
        urls: Arc<UrlService>,
        kept: [(Tier, Duration); 3],
        settle: Duration,
    ) -> Self {
        Self {
            db,
            urls,
            kept,
            settle,
        }
    }

    fn kept_ms(&self, tier: Tier) -> i64 {
        self.kept
            .iter()
            .find(|(t, _)| *t == tier)
            .map_or(0, |(_, d)| millis(*d))
    }

    /// The oldest bucket `tier` still keeps.
    fn horizon(&self, tier: Tier, now: i64) -> i64 {
        tier.bucket_of(now - self.kept_ms(tier))
    }

    /// The granularity: the one asked for, if it keeps part of the range
    /// and the range fits; else the finest that keeps all of it and fits.
    fn tier(&self, asked: Option<Tier>, start: i64, end: i64, now: i64) -> Result<Tier> {
        let buckets = |t: Tier| {
            let first = t.bucket_of(start).max(self.horizon(t, now));
            (end - first + t.width_ms() - 1) / t.width_ms()
        };
        let keeps = |t: Tier| start >= self.horizon(t, now);
        if let Some(t) = asked {
            if end <= self.horizon(t, now) {
                return Err(Error::invalid(
                    "start_time",
                    format!(
                        "{} buckets are kept for {}; ask for a later start or a coarser granularity",
                        tier_name(t),
                        humantime::format_duration(Duration::from_millis(
                            u64::try_from(self.kept_ms(t)).unwrap_or(0)
                        ))
                    ),
                ));
            }
            if buckets(t) > MAX_BUCKETS {
                return Err(Error::invalid(
                    "granularity",
                    format!(
                        "{} buckets over this range would be {}, more than {MAX_BUCKETS}; \
                         ask for a shorter range or a coarser granularity",
                        tier_name(t),
                        buckets(t)
                    ),
                ));
            }
            return Ok(t);
        }
        Tier::ALL
            .into_iter()
            .find(|t| keeps(*t) && buckets(*t) <= AUTO_BUCKETS)
            .or_else(|| Tier::ALL.into_iter().rev().find(|t| keeps(*t)))
            .ok_or_else(|| {
                Error::invalid(
                    "start_time",
                    format!(
                        "history is kept for {}; ask for a later start",
                        humantime::format_duration(Duration::from_millis(
                            u64::try_from(self.kept_ms(Tier::Day)).unwrap_or(0)
                        ))
                    ),
                )
            })
    }

    pub async fn get(&self, user: UserId, query: StatsQuery) -> Result<Stats> {
        // NOT_FOUND for another user's URL; INVALID_ARGUMENT for an id ≤ 0.
        let url = self.urls.get(user, "url_id", query.url_id).await?;
        let now = Utc::now();
        let end = query.end.map_or(now, |e| e.min(now));
        let start = query
            .start
            .unwrap_or_else(|| end - chrono::Duration::hours(24));
        if start >= end {
            return Err(Error::invalid(
                "start_time",
                "must be before end_time (and before now)",
            ));
        }
        let (start_ms, end_ms, now_ms) = (
            start.timestamp_millis(),
            end.timestamp_millis(),
            now.timestamp_millis(),
        );
        let tier = self.tier(query.granularity, start_ms, end_ms, now_ms)?;
        // A range reaching past what the tier keeps starts at its oldest
        // bucket ("the last 48 hours" in minutes keeps working as time passes).
        let first = tier.bucket_of(start_ms).max(self.horizon(tier, now_ms));
        let stored = if tier == Tier::Minute {
            // Minute buckets from the raw statuses (kept as long as they are).
            let mut minutes: std::collections::BTreeMap<i64, Bucket> =
                std::collections::BTreeMap::new();
            for (due, code, latency, verdict) in
                statuses::due_between(&self.db, url.id, first, end_ms).await?
            {
                minutes.entry(tier.bucket_of(due)).or_default().add(
                    verdict,
                    (code > 0).then(|| u64::try_from(latency).unwrap_or(0)),
                );
            }
            minutes.into_iter().collect()
        } else {
            rollups::read(&self.db, url.id, tier, first, end_ms).await?
        };
        let spans = rollups::schedule(&self.db, url.id).await?;
        let created_ms = url.created_at.timestamp_millis();
        let settled = now_ms - millis(self.settle);
        let mut stored = stored.into_iter().peekable();
        let mut buckets = Vec::new();
        let mut total = StatsRow {
            start: DateTime::from_timestamp_millis(first).unwrap_or_default(),
            expected: 0,
            bucket: Bucket::default(),
        };
        let mut b = first;
        while b < end_ms {
            let next = b + tier.width_ms();
            let bucket = match stored.peek() {
                Some((at, _)) if *at == b => stored.next().map(|(_, bucket)| bucket),
                _ => None,
            }
            .unwrap_or_default();
            let row = StatsRow {
                start: DateTime::from_timestamp_millis(b).unwrap_or_default(),
                expected: expected_slots(created_ms, &spans, b, next.min(settled)),
                bucket,
            };
            total.expected += row.expected;
            total.bucket.merge(&row.bucket);
            buckets.push(row);
            b = next;
        }
        Ok(Stats {
            tier,
            buckets,
            total,
        })
    }
}
