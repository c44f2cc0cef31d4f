//! Maintenance windows: when a user's URLs (some, or all of them) are
//! probed but judged by no one. A window is one stretch (`start`..`end`) or
//! a recurrence: an RFC 5545 RRULE (a subset: `FREQ=DAILY` or `WEEKLY`, with
//! `BYDAY`, `BYHOUR`, `INTERVAL` and `UNTIL`) whose occurrences start at
//! `start`'s time of day in `time_zone` and last `duration`.
//!
//! The flush judges a batch with a [`WindowCache`] kept per instance: each
//! owner's windows are read once, and again only when the owner's
//! [`WindowsVersion`] (one small aggregate per batch) says they changed;
//! they are expanded over a horizon of a few hours ([`WindowIndex::build`]:
//! O(windows + occurrences in the range)) and expanded again only when a
//! batch falls outside it; then each row is one binary search. A recurrence
//! is expanded from an anchor moved forward by whole periods to just before
//! the range, so an old window costs no more than a new one.

use std::{
    collections::{HashMap, HashSet},
    str::FromStr,
    sync::Mutex,
};

use chrono::{DateTime, Days, NaiveDateTime, TimeZone, Utc};
use rrule::{Frequency, NWeekday, RRule, Tz, Unvalidated};

/// The longest a window (one stretch, or one occurrence) may last.
pub const MAX_DURATION_MS: i64 = 7 * 24 * 3_600_000;

/// How many windows one user may keep.
pub const MAX_WINDOWS_PER_USER: u64 = 100;

/// What the RRULE subset allows, as error messages say it.
pub const RRULE_SUBSET: &str = "FREQ=DAILY or FREQ=WEEKLY, with optional BYDAY (weekdays without \
                                ordinals, e.g. MO,TU), BYHOUR (0-23), INTERVAL and UNTIL";

/// A bad field of a window, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct WindowError {
    pub field: &'static str,
    pub message: String,
}

fn bad(field: &'static str, message: impl Into<String>) -> WindowError {
    WindowError {
        field,
        message: message.into(),
    }
}

/// When a window applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WindowSchedule {
    /// From `start_ms` (inclusive) to `end_ms` (exclusive).
    Once { start_ms: i64, end_ms: i64 },
    /// Occurrences of `rrule` from `start_ms` on, each `duration_ms` long.
    Recurring {
        start_ms: i64,
        rrule: String,
        duration_ms: i64,
    },
}

/// A window as its owner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaintenanceWindow {
    pub id: i64,
    pub user_id: i64,
    /// Empty: all of the owner's URLs (those added later too).
    pub url_ids: Vec<i64>,
    pub schedule: WindowSchedule,
    /// An IANA name (`Europe/Paris`, `UTC`): the recurrence's wall clock.
    pub time_zone: String,
    pub created_ms: i64,
}

/// A window to create, parsed: every field checked but the URLs' owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewWindow {
    pub url_ids: Vec<i64>,
    pub schedule: WindowSchedule,
    pub time_zone: String,
}

impl NewWindow {
    /// Parses a window: `end_ms` for one stretch, or `rrule` with
    /// `duration_ms` for a recurrence (not both); `time_zone` empty is UTC.
    pub fn parse(
        mut url_ids: Vec<i64>,
        start_ms: Option<i64>,
        end_ms: Option<i64>,
        rrule: &str,
        duration_ms: Option<i64>,
        time_zone: &str,
    ) -> Result<Self, WindowError> {
        let time_zone = if time_zone.trim().is_empty() {
            "UTC".to_owned()
        } else {
            time_zone.trim().to_owned()
        };
        let tz = parse_time_zone(&time_zone)?;
        let start_ms = start_ms.ok_or_else(|| bad("window.start_time", "is required"))?;
        let rrule = rrule.trim();
        let schedule = match (rrule.is_empty(), end_ms, duration_ms) {
            (true, Some(end_ms), None) => {
                if end_ms <= start_ms {
                    return Err(bad("window.end_time", "must be after start"));
                }
                if end_ms - start_ms > MAX_DURATION_MS {
                    return Err(bad("window.end_time", "a window lasts at most 7 days"));
                }
                WindowSchedule::Once { start_ms, end_ms }
            }
            (true, None, _) => {
                return Err(bad(
                    "window.end_time",
                    "is required (or a recurrence with a duration)",
                ));
            }
            (true, Some(_), Some(_)) => {
                return Err(bad("window.duration", "is for a recurrence only"));
            }
            (false, Some(_), _) => {
                return Err(bad(
                    "window.end_time",
                    "a recurring window has a duration, not an end",
                ));
            }
            (false, None, duration) => {
                let duration_ms = duration.unwrap_or(0);
                if duration_ms <= 0 {
                    return Err(bad("window.duration", "is required and must be positive"));
                }
                if duration_ms > MAX_DURATION_MS {
                    return Err(bad("window.duration", "is at most 7 days"));
                }
                let parsed = parse_rrule(rrule)?;
                // Check it builds from its start (UNTIL before the start, ...).
                parsed
                    .build(local(tz, start_ms))
                    .map_err(|e| bad("window.recurrence", e.to_string()))?;
                WindowSchedule::Recurring {
                    start_ms,
                    rrule: rrule.strip_prefix("RRULE:").unwrap_or(rrule).to_owned(),
                    duration_ms,
                }
            }
        };
        url_ids.sort_unstable();
        url_ids.dedup();
        Ok(Self {
            url_ids,
            schedule,
            time_zone,
        })
    }
}

/// An IANA time zone name.
pub fn parse_time_zone(name: &str) -> Result<Tz, WindowError> {
    chrono_tz::Tz::from_str(name).map(Tz::from).map_err(|_| {
        bad(
            "window.time_zone",
            format!("unknown time zone {name:?}; use an IANA name such as Europe/Paris or UTC"),
        )
    })
}

/// An RRULE (with or without its `RRULE:` prefix) within the subset.
fn parse_rrule(text: &str) -> Result<RRule<Unvalidated>, WindowError> {
    let text = text.strip_prefix("RRULE:").unwrap_or(text);
    let outside = || {
        bad(
            "window.recurrence",
            format!("{text:?} is outside the supported subset: {RRULE_SUBSET}"),
        )
    };
    let rule = RRule::<Unvalidated>::from_str(text).map_err(|e| {
        bad(
            "window.recurrence",
            format!("{e}; supported: {RRULE_SUBSET}"),
        )
    })?;
    for part in text.split(';') {
        let key = part.split('=').next().unwrap_or_default().trim();
        if !matches!(key, "FREQ" | "INTERVAL" | "UNTIL" | "BYDAY" | "BYHOUR") {
            return Err(outside());
        }
    }
    if !matches!(rule.get_freq(), Frequency::Daily | Frequency::Weekly)
        || rule
            .get_by_weekday()
            .iter()
            .any(|d| matches!(d, NWeekday::Nth(..)))
    {
        return Err(outside());
    }
    Ok(rule)
}

/// `ms` as a time in `tz`.
fn local(tz: Tz, ms: i64) -> DateTime<Tz> {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .with_timezone(&tz)
}

impl MaintenanceWindow {
    /// The stretches `[from, to)` of this window that overlap `[lo, hi]`.
    pub fn intervals(&self, lo_ms: i64, hi_ms: i64) -> Vec<(i64, i64)> {
        match &self.schedule {
            WindowSchedule::Once { start_ms, end_ms } => {
                if *end_ms > lo_ms && *start_ms <= hi_ms {
                    vec![(*start_ms, *end_ms)]
                } else {
                    Vec::new()
                }
            }
            WindowSchedule::Recurring {
                start_ms,
                rrule,
                duration_ms,
            } => recurring_intervals(
                &self.time_zone,
                *start_ms,
                rrule,
                *duration_ms,
                lo_ms,
                hi_ms,
            ),
        }
    }
}

/// The occurrences overlapping `[lo, hi]`, expanded from an anchor moved
/// forward by whole periods (`INTERVAL` days or weeks, on the local
/// calendar) to at most a period before `lo - duration`.
fn recurring_intervals(
    time_zone: &str,
    start_ms: i64,
    rrule: &str,
    duration_ms: i64,
    lo_ms: i64,
    hi_ms: i64,
) -> Vec<(i64, i64)> {
    let (Ok(tz), Ok(parsed)) = (parse_time_zone(time_zone), parse_rrule(rrule)) else {
        return Vec::new();
    };
    let from_ms = lo_ms - duration_ms;
    if hi_ms < start_ms {
        return Vec::new();
    }
    let start = local(tz, start_ms);
    let period_days = u64::from(parsed.get_interval().max(1))
        * if parsed.get_freq() == Frequency::Weekly {
            7
        } else {
            1
        };
    let gap_days = u64::try_from((from_ms - start_ms) / 86_400_000).unwrap_or(0);
    let skip = gap_days.saturating_sub(period_days) / period_days * period_days;
    let anchor = if skip == 0 {
        start
    } else {
        let naive: NaiveDateTime = start.naive_local() + Days::new(skip);
        match tz.from_local_datetime(&naive).earliest() {
            Some(t) => t,
            None => return Vec::new(),
        }
    };
    let Ok(set) = parsed.build(anchor) else {
        return Vec::new();
    };
    set.after(local(tz, from_ms))
        .before(local(tz, hi_ms))
        .all(u16::MAX)
        .dates
        .into_iter()
        .map(|t| {
            let s = t.timestamp_millis();
            (s, s + duration_ms)
        })
        .filter(|&(s, e)| e > lo_ms && s <= hi_ms && s >= start_ms)
        .collect()
}

/// The windows of a batch's owners, expanded over its due-time range: which
/// rows are in maintenance. Built once per batch.
#[derive(Debug, Default)]
pub struct WindowIndex {
    /// Sorted, merged stretches per URL and per owner (windows on all the
    /// owner's URLs).
    by_url: HashMap<i64, Vec<(i64, i64)>>,
    by_owner: HashMap<i64, Vec<(i64, i64)>>,
}

impl WindowIndex {
    /// Expands `windows` over `[lo, hi]`.
    pub fn build(windows: &[MaintenanceWindow], lo_ms: i64, hi_ms: i64) -> Self {
        let mut index = Self::default();
        for w in windows {
            let stretches = w.intervals(lo_ms, hi_ms);
            if stretches.is_empty() {
                continue;
            }
            if w.url_ids.is_empty() {
                index
                    .by_owner
                    .entry(w.user_id)
                    .or_default()
                    .extend(stretches);
            } else {
                for url_id in &w.url_ids {
                    index
                        .by_url
                        .entry(*url_id)
                        .or_default()
                        .extend(stretches.iter().copied());
                }
            }
        }
        for list in index.by_url.values_mut().chain(index.by_owner.values_mut()) {
            *list = merged(std::mem::take(list));
        }
        index
    }

    pub fn is_empty(&self) -> bool {
        self.by_url.is_empty() && self.by_owner.is_empty()
    }

    /// Whether a probe of `url_id` (owned by `owner`) due at `due_ms` is in
    /// a window.
    pub fn covers(&self, owner: i64, url_id: i64, due_ms: i64) -> bool {
        let within = |list: Option<&Vec<(i64, i64)>>| {
            list.is_some_and(|l| {
                let i = l.partition_point(|&(s, _)| s <= due_ms);
                i > 0 && due_ms < l[i - 1].1
            })
        };
        within(self.by_url.get(&url_id)) || within(self.by_owner.get(&owner))
    }
}

/// One owner's set of windows, as far as a cache needs to know: windows are
/// created and deleted, never changed, and ids are never reused, so the
/// count and the largest id change with every edit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WindowsVersion {
    pub count: i64,
    pub max_id: i64,
}

/// How far past a batch's last due time its owners' windows are expanded,
/// so that the batches after it (due a little later) reuse the expansion.
const HORIZON_MS: i64 = 6 * 3_600_000;

/// Entries unused for this many judged batches are dropped (owners whose
/// URLs are no longer probed, or who were deleted).
const IDLE_BATCHES: u64 = 4_096;

/// Each owner's windows, expanded over a horizon: kept by one instance
/// from batch to batch, so a batch costs one version read, not a read and an
/// expansion of every window of its owners.
#[derive(Debug, Default)]
pub struct WindowCache {
    inner: Mutex<CacheInner>,
}

#[derive(Debug, Default)]
struct CacheInner {
    owners: HashMap<i64, Cached>,
    batches: u64,
}

#[derive(Debug)]
struct Cached {
    version: WindowsVersion,
    windows: Vec<MaintenanceWindow>,
    /// `[from, to]`: the range `index` was expanded over (`None`: not yet).
    expanded: Option<(i64, i64)>,
    index: WindowIndex,
    used: u64,
}

impl WindowCache {
    /// Of the owners in `versions` (those with windows), the ones whose
    /// windows must be read: new to the cache, or changed since.
    pub fn stale(&self, versions: &HashMap<i64, WindowsVersion>) -> Vec<i64> {
        let inner = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut stale: Vec<i64> = versions
            .iter()
            .filter(|(owner, version)| {
                inner
                    .owners
                    .get(owner)
                    .is_none_or(|c| c.version != **version)
            })
            .map(|(owner, _)| *owner)
            .collect();
        stale.sort_unstable();
        stale
    }

    /// Which of `rows` (`(owner, url_id, due_ms)`) are inside a window.
    /// `owners` are the batch's owners, `versions` those of them that have
    /// windows now, `loaded` the windows read for the owners [`Self::stale`]
    /// named (read after `versions`: at worst newer than it, which the next
    /// batch's version read corrects).
    pub fn covered(
        &self,
        owners: &HashSet<i64>,
        versions: &HashMap<i64, WindowsVersion>,
        loaded: Vec<MaintenanceWindow>,
        rows: &[(i64, i64, i64)],
    ) -> Vec<bool> {
        self.forget(owners, versions);
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        inner.batches += 1;
        let now = inner.batches;
        let mut fresh: HashMap<i64, Vec<MaintenanceWindow>> = HashMap::new();
        for w in loaded {
            fresh.entry(w.user_id).or_default().push(w);
        }
        // An owner stale but with nothing read had its windows deleted
        // between the two reads: what is kept (if anything) stays, with its
        // old version, until the next batch reads again.
        for (owner, version) in versions {
            if let Some(windows) = fresh.remove(owner) {
                inner.owners.insert(
                    *owner,
                    Cached {
                        version: *version,
                        windows,
                        expanded: None,
                        index: WindowIndex::default(),
                        used: now,
                    },
                );
            }
        }
        let lo = rows.iter().map(|r| r.2).min().unwrap_or_default();
        let hi = rows.iter().map(|r| r.2).max().unwrap_or_default();
        for owner in versions.keys() {
            if let Some(c) = inner.owners.get_mut(owner) {
                c.used = now;
                if c.expanded.is_none_or(|(from, to)| lo < from || hi > to) {
                    let to = hi.saturating_add(HORIZON_MS);
                    c.index = WindowIndex::build(&c.windows, lo, to);
                    c.expanded = Some((lo, to));
                }
            }
        }
        if now.is_multiple_of(1_024) {
            inner
                .owners
                .retain(|_, c| now.saturating_sub(c.used) < IDLE_BATCHES);
        }
        rows.iter()
            .map(|&(owner, url_id, due_ms)| {
                inner
                    .owners
                    .get(&owner)
                    .is_some_and(|c| c.index.covers(owner, url_id, due_ms))
            })
            .collect()
    }

    /// Forgets the owners of a batch (`owners`) that have no windows now
    /// (absent from `versions`).
    pub fn forget(&self, owners: &HashSet<i64>, versions: &HashMap<i64, WindowsVersion>) {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .owners
            .retain(|owner, _| !owners.contains(owner) || versions.contains_key(owner));
    }

    /// How many owners' windows are kept.
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .owners
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Sorted stretches with overlaps joined.
fn merged(mut list: Vec<(i64, i64)>) -> Vec<(i64, i64)> {
    list.sort_unstable();
    let mut out: Vec<(i64, i64)> = Vec::with_capacity(list.len());
    for (s, e) in list {
        match out.last_mut() {
            Some(open) if s <= open.1 => open.1 = open.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;
    const DAY: i64 = 24 * HOUR;

    fn ms(text: &str) -> i64 {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .timestamp_millis()
    }

    fn recurring(rrule: &str, start: &str, duration_ms: i64, tz: &str) -> MaintenanceWindow {
        let new =
            NewWindow::parse(vec![], Some(ms(start)), None, rrule, Some(duration_ms), tz).unwrap();
        MaintenanceWindow {
            id: 1,
            user_id: 1,
            url_ids: new.url_ids,
            schedule: new.schedule,
            time_zone: new.time_zone,
            created_ms: 0,
        }
    }

    #[test]
    fn a_weekly_window_in_a_time_zone_covers_its_local_hours_across_a_dst_change() {
        // Sundays 02:00–04:00 in Paris; DST starts on 2026-03-29.
        let w = recurring(
            "FREQ=WEEKLY;BYDAY=SU;BYHOUR=2",
            "2025-01-05T02:00:00+01:00",
            2 * HOUR,
            "Europe/Paris",
        );
        let got = w.intervals(ms("2026-03-20T00:00:00Z"), ms("2026-04-06T00:00:00Z"));
        let starts: Vec<i64> = got.iter().map(|i| i.0).collect();
        assert_eq!(
            starts,
            vec![
                ms("2026-03-22T02:00:00+01:00"),
                // 02:00 does not exist on 2026-03-29 in Paris: the
                // occurrence moves to the next valid time, it is not lost.
                ms("2026-03-29T03:00:00+02:00"),
                ms("2026-04-05T02:00:00+02:00"),
            ],
        );
        assert!(got.iter().all(|(s, e)| e - s == 2 * HOUR));
    }

    #[test]
    fn a_daily_window_years_old_expands_only_over_the_range() {
        let w = recurring("FREQ=DAILY;BYHOUR=3", "2016-01-01T03:00:00Z", HOUR, "UTC");
        let lo = ms("2026-06-10T00:00:00Z");
        let got = w.intervals(lo, lo + 2 * DAY);
        assert_eq!(
            got,
            vec![
                (lo + 3 * HOUR, lo + 4 * HOUR),
                (lo + DAY + 3 * HOUR, lo + DAY + 4 * HOUR)
            ]
        );
    }

    #[test]
    fn an_occurrence_begun_before_the_range_still_covers_it() {
        let w = recurring(
            "FREQ=DAILY;BYHOUR=23",
            "2026-01-01T23:00:00Z",
            2 * HOUR,
            "UTC",
        );
        let lo = ms("2026-02-02T00:30:00Z");
        assert_eq!(
            w.intervals(lo, lo + 60_000),
            vec![(lo - 90 * 60_000, lo + 30 * 60_000)]
        );
    }

    #[test]
    fn the_index_covers_a_url_by_its_own_window_or_its_owners() {
        let once = |id: i64, user_id: i64, url_ids: Vec<i64>, s: i64, e: i64| MaintenanceWindow {
            id,
            user_id,
            url_ids,
            schedule: WindowSchedule::Once {
                start_ms: s,
                end_ms: e,
            },
            time_zone: "UTC".into(),
            created_ms: 0,
        };
        let windows = [
            once(1, 1, vec![10], 100, 200),
            once(2, 1, vec![10], 150, 300),
            once(3, 2, vec![], 1_000, 2_000),
            once(4, 1, vec![11], 5_000, 6_000),
        ];
        let index = WindowIndex::build(&windows, 0, 3_000);
        assert!(index.covers(1, 10, 100) && index.covers(1, 10, 299));
        assert!(!index.covers(1, 10, 300) && !index.covers(1, 10, 99));
        assert!(!index.covers(1, 11, 150), "another URL of the same owner");
        assert!(index.covers(2, 20, 1_500) && index.covers(2, 21, 1_000));
        assert!(!index.covers(1, 10, 1_500), "another owner's window");
        assert!(!index.covers(1, 11, 5_500), "outside the range built");
    }

    #[test]
    fn bad_windows_name_their_field() {
        let t = ms("2026-01-01T00:00:00Z");
        let field = |r: Result<NewWindow, WindowError>| r.unwrap_err().field;
        let rec = |rrule: &str, tz: &str, d: Option<i64>| {
            NewWindow::parse(vec![], Some(t), None, rrule, d, tz)
        };
        assert_eq!(
            field(rec("FREQ=DAILY", "Mars/Olympus", Some(HOUR))),
            "window.time_zone"
        );
        let monthly = rec("FREQ=MONTHLY;BYMONTHDAY=1", "UTC", Some(HOUR)).unwrap_err();
        assert_eq!(monthly.field, "window.recurrence");
        assert!(
            monthly.message.contains("FREQ=DAILY or FREQ=WEEKLY"),
            "{monthly}"
        );
        assert_eq!(
            field(rec("FREQ=DAILY;BYMINUTE=5", "UTC", Some(HOUR))),
            "window.recurrence"
        );
        assert_eq!(
            field(rec("FREQ=WEEKLY;BYDAY=1MO", "UTC", Some(HOUR))),
            "window.recurrence"
        );
        assert_eq!(
            field(rec("FREQ=DAILY;COUNT=3", "UTC", Some(HOUR))),
            "window.recurrence"
        );
        assert_eq!(
            field(rec("nonsense", "UTC", Some(HOUR))),
            "window.recurrence"
        );
        assert_eq!(field(rec("FREQ=DAILY", "UTC", Some(0))), "window.duration");
        assert_eq!(field(rec("FREQ=DAILY", "UTC", None)), "window.duration");
        assert_eq!(
            field(rec("FREQ=DAILY", "UTC", Some(8 * DAY))),
            "window.duration"
        );
        let once = |end: Option<i64>| NewWindow::parse(vec![], Some(t), end, "", None, "");
        assert_eq!(field(once(Some(t - 1))), "window.end_time");
        assert_eq!(field(once(None)), "window.end_time");
        assert_eq!(field(once(Some(t + 8 * DAY))), "window.end_time");
        assert_eq!(
            field(NewWindow::parse(vec![], None, Some(t), "", None, "")),
            "window.start_time"
        );
        let ok = once(Some(t + HOUR)).unwrap();
        assert_eq!(ok.time_zone, "UTC");
        let ok = rec(
            "RRULE:FREQ=WEEKLY;BYDAY=MO,TU;BYHOUR=2,3",
            "Asia/Tokyo",
            Some(HOUR),
        );
        assert!(ok.is_ok(), "{ok:?}");
    }

    #[test]
    fn the_cache_reads_windows_again_only_when_they_change_or_the_batch_leaves_the_horizon() {
        let t = ms("2026-06-10T00:00:00Z");
        let mut daily = recurring("FREQ=DAILY;BYHOUR=3", "2026-01-01T03:00:00Z", HOUR, "UTC");
        daily.user_id = 7;
        let v1 = WindowsVersion {
            count: 1,
            max_id: 1,
        };
        let owners: HashSet<i64> = [7, 8].into();
        let versions: HashMap<i64, WindowsVersion> = [(7, v1)].into();
        let cache = WindowCache::default();
        assert_eq!(cache.stale(&versions), vec![7]);
        // URL 1 of owner 7 at 03:30 (inside), URL 2 of owner 8 (no windows).
        let rows = [
            (7, 1, t + 3 * HOUR + HOUR / 2),
            (8, 2, t + 3 * HOUR + HOUR / 2),
        ];
        assert_eq!(
            cache.covered(&owners, &versions, vec![daily.clone()], &rows),
            vec![true, false]
        );
        // Same version: nothing to read, the same answer from what is kept,
        // a day later too (past the horizon: expanded again, not read).
        assert!(cache.stale(&versions).is_empty());
        assert_eq!(
            cache.covered(&owners, &versions, vec![], &[(7, 1, t + DAY + 3 * HOUR)]),
            vec![true]
        );
        assert_eq!(
            cache.covered(&owners, &versions, vec![], &[(7, 1, t + DAY + 5 * HOUR)]),
            vec![false]
        );
        // A window added (a new largest id): read again.
        let mut once = daily.clone();
        once.id = 2;
        once.schedule = WindowSchedule::Once {
            start_ms: t + DAY + 5 * HOUR,
            end_ms: t + DAY + 6 * HOUR,
        };
        let v2: HashMap<i64, WindowsVersion> = [(
            7,
            WindowsVersion {
                count: 2,
                max_id: 2,
            },
        )]
        .into();
        assert_eq!(cache.stale(&v2), vec![7]);
        assert_eq!(
            cache.covered(
                &owners,
                &v2,
                vec![daily, once],
                &[(7, 1, t + DAY + 5 * HOUR)]
            ),
            vec![true]
        );
        // Every window deleted: the owner is forgotten, nothing covered.
        assert_eq!(
            cache.covered(
                &owners,
                &HashMap::new(),
                vec![],
                &[(7, 1, t + DAY + 5 * HOUR)]
            ),
            vec![false]
        );
        assert!(cache.is_empty());
    }
}
