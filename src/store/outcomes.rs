//! One flush batch, in one transaction: its statuses, and what they change
//! in each URL's state and incidents.
//!
//! 0. Before the transaction, the batch is judged against its owners'
//!    maintenance windows (the instance's `WindowCache`: one version read
//!    per batch, the windows read and expanded again only when they changed
//!    or the batch is past the expanded horizon); a row inside one gets the
//!    verdict `MAINTENANCE` (`domain::maintenance`), which holds
//!    the state machine and counts apart in rollups.
//! 1. The statuses are inserted `ON CONFLICT (url_id, due_at) DO NOTHING
//!    RETURNING` their keys: only rows really inserted go on, so a batch
//!    delivered twice changes nothing the second time. (On Postgres the
//!    partitions of the batch's days are made sure of first, outside the
//!    transaction: `store::statuses::ensure_days`.)
//! 2. The touched URLs' `url_states` rows (AddUrl creates them) are locked
//!    in `url_id` order (Postgres `FOR UPDATE`; SQLite's writer lock is
//!    already held), so two flushers never apply one URL's results in two
//!    interleaved orders and never deadlock.
//! 3. An inserted row due before its URL's roll mark (stored late, after
//!    the roll pass went by) is added to its URL's hour and day buckets
//!    (`store::rollups`: one read and one upsert for the batch); the rest
//!    are left to the roll pass, which reads them from the statuses.
//! 4. Each URL's new results, in due-time order, go through
//!    [`Tracker::apply`] (the domain's state machine).
//! 5. Incidents opened are inserted, the open ones updated, the changed
//!    states written back in one statement; then the transaction commits.
//!
//! The batch is acknowledged in the buffer only after the commit, so a crash
//! anywhere before it leaves the batch to be read again, and step 1 makes
//! that harmless.
//!
//! Batch statements have one text whatever the batch: each distinct text is
//! prepared and cached per pooled connection (by sqlx, and on SQLite in this
//! process's memory), so a text that grew with the batch (a multi-row VALUES
//! list) would leave a large prepared statement behind for every batch size
//! met. Postgres binds whole columns as arrays (`UNNEST`); SQLite reads the
//! batch from one JSON parameter (`json_each`). A flush batch is at most
//! `MONITOR_FLUSH_BATCH` (100,000) rows, one statement.

use std::collections::{BTreeMap, HashMap, HashSet};

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use sea_orm::{DatabaseConnection, DbBackend};
use sqlx::{Postgres, Sqlite, Transaction};

use crate::domain::{
    ProbeResult,
    maintenance::{WindowCache, WindowsVersion},
    notification::{EventKind, IncidentView, LiveNotice},
    state::{Applied, FailedProbe, Outcome, Thresholds, Tracker, UrlState},
    verdict::Verdict,
};

use super::{
    deliveries::IncidentEvent,
    statuses::{Narrow, failed_json, sqlite_timestamp_text},
};

/// What writing one batch did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Written {
    /// Statuses inserted (the others were stored already).
    pub inserted: u64,
    pub incidents_opened: u64,
    pub incidents_resolved: u64,
    /// For live watchers, once committed: state changes, then incident
    /// events, in URL order.
    pub notices: Vec<LiveNotice>,
}

/// The batch's notices: each URL whose state changed (from `before`), then
/// each incident event.
fn notices(
    before: &HashMap<i64, UrlState>,
    changes: &Changes,
    events: &[IncidentEvent],
) -> Vec<LiveNotice> {
    let mut out: Vec<LiveNotice> = changes
        .trackers
        .iter()
        .filter_map(|(url_id, t)| {
            let from = *before.get(url_id)?;
            (from != t.state).then(|| LiveNotice::StateChange {
                url_id: *url_id,
                from: from as i16,
                to: t.state as i16,
                at_ms: t.state_since_ms.unwrap_or_default(),
            })
        })
        .collect();
    out.extend(events.iter().map(|e| e.notice.clone()));
    out
}

/// Each locked URL's state before the batch.
fn states_before(locked: &[Locked]) -> HashMap<i64, UrlState> {
    locked.iter().map(|l| (l.url_id, l.tracker.state)).collect()
}

/// A URL's state row with its thresholds, as locked.
struct Locked {
    url_id: i64,
    tracker: Tracker,
    thresholds: Thresholds,
}

fn timestamp(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or_default()
}

pub(super) fn ms_to_time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// Writes `rows` (every URL id must exist) and applies the inserted ones
/// to their URLs' states, in one transaction: [`write_judged`] with the
/// rows' owners read here and a window cache of its own (what a newly
/// started instance has).
pub async fn write_batch(
    db: &DatabaseConnection,
    rows: &[&ProbeResult],
) -> anyhow::Result<Written> {
    let mut ids: Vec<i64> = rows.iter().map(|r| r.url_id).collect();
    ids.sort_unstable();
    ids.dedup();
    let owners = super::urls::owners_of_ids(db, &ids).await?;
    write_judged(db, rows, &owners, &WindowCache::default()).await
}

/// What the flush calls: [`write_batch`] with `owners` (every row's URL id
/// to its owner, read with the check that the URLs still exist) and
/// `windows`, the instance's window cache kept from batch to batch.
#[allow(clippy::implicit_hasher)] // the map `store::urls::owners_of_ids` returns
pub async fn write_judged(
    db: &DatabaseConnection,
    rows: &[&ProbeResult],
    owners: &HashMap<i64, i64>,
    windows: &WindowCache,
) -> anyhow::Result<Written> {
    write(db, rows, Derive::All(owners, windows)).await
}

/// Only step 1: the statuses, nothing derived from them. What the flush
/// did before states and rollups: `bench/flush.rs` measures
/// [`write_batch`] against it.
pub async fn write_statuses_only(
    db: &DatabaseConnection,
    rows: &[&ProbeResult],
) -> anyhow::Result<Written> {
    write(db, rows, Derive::Nothing).await
}

/// Whether a write goes on past the statuses.
#[derive(Debug, Clone, Copy)]
enum Derive<'a> {
    /// With the rows' owners and the instance's window cache.
    All(&'a HashMap<i64, i64>, &'a WindowCache),
    Nothing,
}

impl Derive<'_> {
    fn all(self) -> bool {
        matches!(self, Derive::All(..))
    }
}

async fn write(
    db: &DatabaseConnection,
    rows: &[&ProbeResult],
    derive: Derive<'_>,
) -> anyhow::Result<Written> {
    if rows.is_empty() {
        return Ok(Written::default());
    }
    // One order for every flusher: two batches holding some of the same
    // results (a redelivery while the first reader is still writing) then
    // wait for each other's unique keys in turn instead of deadlocking.
    let mut sorted = rows.to_vec();
    sorted.sort_unstable_by_key(|r| (r.url_id, r.due_ms));
    let judged = match derive {
        Derive::All(owners, windows) => in_windows(db, &sorted, owners, windows).await?,
        Derive::Nothing => None,
    };
    let judged_refs: Vec<&ProbeResult>;
    let rows = match &judged {
        Some(judged) => {
            judged_refs = judged.iter().collect();
            judged_refs.as_slice()
        }
        None => sorted.as_slice(),
    };
    if db.get_database_backend() == DbBackend::Postgres {
        // The batch's days' partitions, before its transaction (one round
        // trip; a missing one is created, which locks the table briefly).
        super::statuses::ensure_days(db, &super::statuses::days_of(rows)).await?;
        let mut tx = db.get_postgres_connection_pool().begin().await?;
        let written = postgres::write(&mut tx, rows, derive).await?;
        tx.commit().await?;
        Ok(written)
    } else {
        // IMMEDIATE: take the writer lock first, so the state rows read
        // below cannot change before this transaction writes them.
        let pool = db.get_sqlite_connection_pool();
        let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
        let written = sqlite::write(&mut tx, rows, derive).await?;
        tx.commit().await?;
        Ok(written)
    }
}

/// The batch (sorted) with each row due inside one of its owner's
/// maintenance windows judged `MAINTENANCE`; `None` when no row is. One
/// small read of the owners' window versions; the windows themselves are
/// read (and expanded) only when `cache` does not hold them as they are.
async fn in_windows(
    db: &DatabaseConnection,
    rows: &[&ProbeResult],
    owners: &HashMap<i64, i64>,
    cache: &WindowCache,
) -> anyhow::Result<Option<Vec<ProbeResult>>> {
    let batch_owners: HashSet<i64> = rows
        .iter()
        .filter_map(|r| owners.get(&r.url_id).copied())
        .collect();
    let list: Vec<i64> = batch_owners.iter().copied().collect();
    let versions: HashMap<i64, WindowsVersion> = crate::store::maintenance::versions(db, &list)
        .await
        .context("reading the batch's maintenance window versions")?;
    if versions.is_empty() {
        cache.forget(&batch_owners, &versions);
        return Ok(None);
    }
    let stale = cache.stale(&versions);
    let loaded = crate::store::maintenance::for_owners(db, &stale)
        .await
        .context("reading the batch's maintenance windows")?;
    let keyed: Vec<(i64, i64, i64)> = rows
        .iter()
        .map(|r| {
            (
                owners.get(&r.url_id).copied().unwrap_or(-1),
                r.url_id,
                r.due_ms,
            )
        })
        .collect();
    let covered = cache.covered(&batch_owners, &versions, loaded, &keyed);
    if !covered.iter().any(|c| *c) {
        return Ok(None);
    }
    Ok(Some(
        rows.iter()
            .zip(covered)
            .map(|(r, covered)| {
                let mut r = (*r).clone();
                if covered {
                    r.verdict = Some(Verdict::Maintenance);
                }
                r
            })
            .collect(),
    ))
}

/// The inserted rows' outcomes per URL, in due-time order.
fn outcomes_by_url(
    rows: &[&ProbeResult],
    inserted: Vec<(i64, DateTime<Utc>)>,
) -> BTreeMap<i64, Vec<Outcome>> {
    let by_key: HashMap<(i64, i64), &ProbeResult> =
        rows.iter().map(|r| ((r.url_id, r.due_ms), *r)).collect();
    let mut per_url: BTreeMap<i64, Vec<Outcome>> = BTreeMap::new();
    for (url_id, due_at) in inserted {
        let due_ms = due_at.timestamp_millis();
        let Some(r) = by_key.get(&(url_id, due_ms)) else {
            continue;
        };
        per_url.entry(url_id).or_default().push(Outcome {
            due_ms,
            verdict: r.verdict(),
            probe: FailedProbe::of(r),
        });
    }
    for outcomes in per_url.values_mut() {
        outcomes.sort_by_key(|o| o.due_ms);
    }
    per_url
}

/// A state row as stored, read into a tracker.
#[allow(clippy::too_many_arguments)]
pub(super) fn tracker_from_row(
    state: i16,
    state_since: Option<DateTime<Utc>>,
    last_applied_ms: Option<i64>,
    run_ok: bool,
    run_len: i32,
    run_start_ms: Option<i64>,
    run_first: Option<&str>,
    open_incident: Option<i64>,
    (down_run, down_run_start_ms, incident_state): (i32, Option<i64>, Option<i16>),
) -> Tracker {
    Tracker {
        state: UrlState::from_stored(state),
        state_since_ms: state_since.map(|t| t.timestamp_millis()),
        last_applied_ms,
        run_ok,
        run_len: u32::try_from(run_len).unwrap_or(0),
        run_start_ms,
        run_first: run_first.and_then(|j| serde_json::from_str(j).ok()),
        down_run,
        down_run_start_ms,
        open_incident,
        incident_state: incident_state.map(UrlState::from_stored),
    }
}

fn thresholds(failure: i32, success: i32) -> Thresholds {
    Thresholds {
        failure: u32::try_from(failure).unwrap_or(1),
        success: u32::try_from(success).unwrap_or(1),
    }
}

/// What applying a batch changed: the trackers to write back, and the URLs
/// whose incidents opened or changed.
struct Changes {
    trackers: Vec<(i64, Tracker)>,
    incidents: Vec<(i64, Applied)>,
}

fn apply_all(locked: Vec<Locked>, mut per_url: BTreeMap<i64, Vec<Outcome>>) -> Changes {
    let mut changes = Changes {
        trackers: Vec::new(),
        incidents: Vec::new(),
    };
    for mut l in locked {
        let outcomes = per_url.remove(&l.url_id).unwrap_or_default();
        let applied = l.tracker.apply(l.thresholds, &outcomes);
        if applied.changed {
            changes.trackers.push((l.url_id, l.tracker));
        }
        if !applied.opened.is_empty() || applied.open_change.is_some() {
            changes.incidents.push((l.url_id, applied));
        }
    }
    changes
}

/// The JSON kept for an incident's first failing status.
pub(super) fn first_json(first: &FailedProbe) -> String {
    serde_json::to_string(first).unwrap_or_default()
}

/// A state row as `SELECT`ed by both backends, with the URL's thresholds.
type StateRow = (
    i64,
    i16,
    Option<DateTime<Utc>>,
    Option<i64>,
    bool,
    i32,
    Option<i64>,
    Option<String>,
    Option<i64>,
    i32,
    i32,
    i32,
    Option<i64>,
    Option<i16>,
    i64,
);

/// Each locked URL's roll mark (`store::rollups`).
fn marks(rows: &[StateRow]) -> HashMap<i64, i64> {
    rows.iter().map(|r| (r.0, r.14)).collect()
}

fn locked(rows: Vec<StateRow>) -> Vec<Locked> {
    rows.into_iter()
        .map(|r| Locked {
            url_id: r.0,
            tracker: tracker_from_row(
                r.1,
                r.2,
                r.3,
                r.4,
                r.5,
                r.6,
                r.7.as_deref(),
                r.8,
                (r.11, r.12, r.13),
            ),
            thresholds: thresholds(r.9, r.10),
        })
        .collect()
}

fn count(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// The incident statements, numbered `$n` (Postgres) or `?n` (SQLite).
struct IncidentSql {
    update_open: String,
    insert: String,
}

impl IncidentSql {
    fn new(placeholder: char) -> Self {
        let p = |sql: &str| sql.replace('$', &placeholder.to_string());
        Self {
            // The id still stored is the incident open before this batch.
            update_open: p("UPDATE incidents SET failed_probes = failed_probes + $2, \
                 resolved_at = COALESCE($3, resolved_at), state = COALESCE($4, state) \
                 WHERE id = (SELECT open_incident_id FROM url_states WHERE url_id = $1) \
                 RETURNING id, state, opened_at, failed_probes, first_status"),
            insert: p(
                "INSERT INTO incidents (url_id, state, opened_at, resolved_at, failed_probes, first_status) \
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            ),
        }
    }
}

/// The events of an incident updated by this batch (`update_open`'s row):
/// resolved, or turned DOWN (an opened event in state DOWN: for the
/// channels that take DOWN only, and for those told of it as DEGRADED; the
/// outbox skips channels that had a DOWN one).
fn events_of_update(
    url_id: i64,
    change: &crate::domain::state::OpenIncidentChange,
    row: (i64, i16, DateTime<Utc>, i32, String),
) -> Vec<IncidentEvent> {
    let (id, state, opened_at, failed, first) = row;
    let state = UrlState::from_stored(state);
    let first: FailedProbe = serde_json::from_str(&first).unwrap_or_default();
    let view = IncidentView::new(
        id,
        url_id,
        state,
        (opened_at, change.resolved_ms.map(ms_to_time)),
        u32::try_from(failed).unwrap_or(0),
        &first,
    );
    let kinds = match (change.resolved_ms, change.state) {
        (Some(_), _) => vec![EventKind::Resolved],
        (None, Some(UrlState::Down)) => vec![EventKind::Opened],
        // A maintenance window held it and its URL still fails: page again.
        (None, _) if change.renotify => vec![EventKind::Opened],
        _ => Vec::new(),
    };
    let notice = LiveNotice::Incident {
        url_id,
        id,
        state: state as i16,
        opened_ms: opened_at.timestamp_millis(),
        resolved_ms: change.resolved_ms,
        failed_probes: u32::try_from(failed).unwrap_or(0),
        first,
    };
    kinds
        .into_iter()
        .map(|kind| IncidentEvent {
            kind,
            again: change.renotify && change.state.is_none(),
            incident_id: id,
            url_id,
            state,
            body: view.event_json(kind),
            notice: notice.clone(),
            new: false,
        })
        .collect()
}

/// The events of an incident this batch inserted: opened, and resolved if
/// it was resolved in the batch too.
fn events_of_new(
    url_id: i64,
    id: i64,
    new: &crate::domain::state::NewIncident,
) -> Vec<IncidentEvent> {
    let view = IncidentView::new(
        id,
        url_id,
        new.state,
        (ms_to_time(new.opened_ms), new.resolved_ms.map(ms_to_time)),
        new.failed_probes,
        &new.first,
    );
    let notice = LiveNotice::Incident {
        url_id,
        id,
        state: new.state as i16,
        opened_ms: new.opened_ms,
        resolved_ms: new.resolved_ms,
        failed_probes: new.failed_probes,
        first: new.first.clone(),
    };
    std::iter::once(EventKind::Opened)
        .chain(new.resolved_ms.map(|_| EventKind::Resolved))
        .map(|kind| IncidentEvent {
            kind,
            again: false,
            incident_id: id,
            url_id,
            state: new.state,
            body: view.event_json(kind),
            notice: notice.clone(),
            new: true,
        })
        .collect()
}

/// Links the incidents this batch opened, of URLs whose parent
/// (`urls.depends_on`) is DOWN (after this batch: the states are written
/// first), to the parent's open incident; then answers which of the
/// batch's incidents are so linked, now or before (their events are not
/// sent). Two statements, only for a batch with incident events.
const LINK_TO_PARENTS: &str = "UPDATE incidents SET parent_incident_id = \
     (SELECT p.open_incident_id FROM urls c JOIN url_states p ON p.url_id = c.depends_on \
      WHERE c.id = incidents.url_id AND p.state = 4) \
     WHERE id IN (IDS) AND parent_incident_id IS NULL";

/// The batch's incidents that are part of a parent's.
const LINKED: &str =
    "SELECT id FROM incidents WHERE id IN (IDS) AND parent_incident_id IS NOT NULL";

/// The incident ids of `events` (`new` ones only, or all).
fn incident_ids(events: &[IncidentEvent], only_new: bool) -> Vec<i64> {
    let mut ids: Vec<i64> = events
        .iter()
        .filter(|e| e.new || !only_new)
        .map(|e| e.incident_id)
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Writes the incidents that `changes` opened and changed, on either
/// backend's transaction (the statements are the same but for their
/// placeholders); the id of an incident left open goes to its tracker.
/// Evaluates to the batch's incident events, in order.
macro_rules! write_incidents {
    ($tx:expr, $changes:expr, $written:expr, $sql:expr) => {{
        let sql: &IncidentSql = $sql;
        let mut events: Vec<IncidentEvent> = Vec::new();
        for (url_id, applied) in &$changes.incidents {
            if let Some(change) = &applied.open_change {
                let row: Option<(i64, i16, DateTime<Utc>, i32, String)> =
                    sqlx::query_as(sqlx::AssertSqlSafe(sql.update_open.clone()))
                        .bind(url_id)
                        .bind(count(change.more_failed_probes))
                        .bind(change.resolved_ms.map(ms_to_time))
                        .bind(change.state.map(|s| s as i16))
                        .fetch_optional(&mut **$tx)
                        .await?;
                if let Some(row) = row {
                    events.extend(events_of_update(*url_id, change, row));
                }
                $written.incidents_resolved += u64::from(change.resolved_ms.is_some());
            }
            let mut still_open = None;
            for new in &applied.opened {
                let (id,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(sql.insert.clone()))
                    .bind(url_id)
                    .bind(new.state as i16)
                    .bind(ms_to_time(new.opened_ms))
                    .bind(new.resolved_ms.map(ms_to_time))
                    .bind(count(new.failed_probes))
                    .bind(first_json(&new.first))
                    .fetch_one(&mut **$tx)
                    .await?;
                $written.incidents_opened += 1;
                $written.incidents_resolved += u64::from(new.resolved_ms.is_some());
                events.extend(events_of_new(*url_id, id, new));
                still_open = new.resolved_ms.is_none().then_some(id);
            }
            if let Some(id) = still_open
                && let Some((_, t)) = $changes.trackers.iter_mut().find(|(u, _)| u == url_id)
            {
                t.open_incident = Some(id);
            }
        }
        events
    }};
}

/// The columns of `url_states` the flush writes, in order.
const STATE_COLUMNS: &str = "url_id, state, state_since, last_applied_ms, run_ok, run_len, \
                             run_start_ms, run_first, open_incident_id, down_run, down_run_start_ms, \
                             incident_state";

/// The `SELECT … FOR UPDATE` of the state rows, less its `WHERE`.
const SELECT_STATES: &str = "SELECT s.url_id, s.state, s.state_since, s.last_applied_ms, s.run_ok, \
     s.run_len, s.run_start_ms, s.run_first, s.open_incident_id, u.failure_threshold, \
     u.success_threshold, s.down_run, s.down_run_start_ms, s.incident_state, s.rolled_to_ms \
     FROM url_states s JOIN urls u ON u.id = s.url_id";

mod postgres {
    use super::{
        Changes, DateTime, Derive, HashSet, IncidentEvent, IncidentSql, LINK_TO_PARENTS, LINKED,
        Narrow, Postgres, ProbeResult, SELECT_STATES, STATE_COLUMNS, StateRow, Transaction, Utc,
        Written, apply_all, count, events_of_new, events_of_update, failed_json, first_json,
        incident_ids, locked, marks, ms_to_time, notices, outcomes_by_url, states_before,
        timestamp,
    };

    pub(super) async fn write(
        tx: &mut Transaction<'_, Postgres>,
        rows: &[&ProbeResult],
        derive: Derive<'_>,
    ) -> anyhow::Result<Written> {
        // Plan each statement for its arrays: a cached generic plan does not
        // know how many keys a batch holds and joined them to whole tables.
        sqlx::query("SET LOCAL plan_cache_mode = force_custom_plan")
            .execute(&mut **tx)
            .await?;
        let narrow: Vec<Narrow> = rows.iter().map(|r| Narrow::of(r)).collect();
        // A status of a packed day (migration 19) is checked against the
        // packed row: a redelivery of it must not be stored or counted
        // again. Rows of later days skip the check.
        let inserted: Vec<(i64, DateTime<Utc>)> = sqlx::query_as(
            "INSERT INTO statuses (url_id, due_at, probed_after_us, latency_micros, status_code, verdict, \
                                   tls_remaining_s, error_kind, error_message, failed_assertions) \
             SELECT * FROM UNNEST($1::int8[], $2::timestamptz[], $3::int4[], $4::int4[], $5::int2[], $6::int2[], \
                                  $7::int4[], $8::int2[], $9::text[], $10::text[]) \
                 AS r(url_id, due_at, probed_after_us, latency_micros, status_code, verdict, tls_remaining_s, \
                      error_kind, error_message, failed_assertions) \
             WHERE r.due_at >= (SELECT coalesce((max(day) + 1)::timestamp AT TIME ZONE 'UTC', '-infinity') \
                                FROM statuses_packed_days) \
                OR NOT EXISTS (SELECT 1 FROM statuses_packed p \
                               WHERE p.url_id = r.url_id AND p.day = (r.due_at AT TIME ZONE 'UTC')::date \
                                 AND (extract(epoch FROM r.due_at - (p.day::timestamp AT TIME ZONE 'UTC')) * 1000)::int4 \
                                     = ANY (p.due_ms)) \
             ON CONFLICT (url_id, due_at) DO NOTHING \
             RETURNING url_id, due_at",
        )
        .bind(rows.iter().map(|r| r.url_id).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| timestamp(r.due_ms * 1000)).collect::<Vec<_>>())
        .bind(narrow.iter().map(|n| n.probed_after_us).collect::<Vec<_>>())
        .bind(narrow.iter().map(|n| n.latency_micros).collect::<Vec<_>>())
        .bind(narrow.iter().map(|n| n.status_code).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.verdict().stored()).collect::<Vec<_>>())
        .bind(narrow.iter().map(|n| n.tls_remaining_s).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.error_kind).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.error_message.clone()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| failed_json(&r.failed_assertions)).collect::<Vec<_>>())
        .fetch_all(&mut **tx)
        .await?;
        let mut written = Written {
            inserted: inserted.len() as u64,
            ..Written::default()
        };
        if inserted.is_empty() || !derive.all() {
            return Ok(written);
        }
        let per_url = outcomes_by_url(rows, inserted);
        let ids: Vec<i64> = per_url.keys().copied().collect();
        let mut rows = lock_states(tx, &ids).await?;
        if rows.len() < ids.len() {
            // AddUrl creates a URL's state row (migration 9 those of older
            // URLs); a URL inserted behind the service's back (a bench, a
            // restore) gets its row here, the one time. (Locked after the
            // others, out of id order: two flushers creating rows for the
            // same such URLs could deadlock, and Postgres would then fail
            // one batch, to be written again; the service never gets here.)
            let missing: Vec<i64> = {
                let have: std::collections::HashSet<i64> = rows.iter().map(|r| r.0).collect();
                ids.iter()
                    .copied()
                    .filter(|id| !have.contains(id))
                    .collect()
            };
            sqlx::query(
                "INSERT INTO url_states (url_id, state) SELECT id, 1 FROM UNNEST($1::int8[]) AS t(id) \
                 ON CONFLICT (url_id) DO NOTHING",
            )
            .bind(&missing)
            .execute(&mut **tx)
            .await?;
            rows.extend(lock_states(tx, &missing).await?);
            rows.sort_unstable_by_key(|r| r.0);
        }
        crate::store::rollups::merge_postgres(
            tx,
            crate::store::rollups::deltas(&per_url, &marks(&rows)),
        )
        .await?;
        crate::store::certificates::record_postgres(tx, &per_url).await?;
        let locked = locked(rows);
        let before = states_before(&locked);
        let mut changes = apply_all(locked, per_url);
        let events = write_incidents!(tx, changes, written, &IncidentSql::new('$'));
        write_states(tx, &changes).await?;
        let linked = link_to_parents(tx, &events).await?;
        crate::store::deliveries::enqueue_postgres(tx, &events, &linked, Utc::now()).await?;
        written.notices = notices(&before, &changes, &events);
        Ok(written)
    }

    /// [`super::LINK_TO_PARENTS`], then [`super::LINKED`].
    async fn link_to_parents(
        tx: &mut Transaction<'_, Postgres>,
        events: &[IncidentEvent],
    ) -> anyhow::Result<HashSet<i64>> {
        if events.is_empty() {
            return Ok(HashSet::new());
        }
        let new = incident_ids(events, true);
        if !new.is_empty() {
            sqlx::query(sqlx::AssertSqlSafe(
                LINK_TO_PARENTS.replace("IDS", "SELECT unnest($1::int8[])"),
            ))
            .bind(&new)
            .execute(&mut **tx)
            .await?;
        }
        let linked: Vec<(i64,)> = sqlx::query_as(sqlx::AssertSqlSafe(
            LINKED.replace("IDS", "SELECT unnest($1::int8[])"),
        ))
        .bind(incident_ids(events, false))
        .fetch_all(&mut **tx)
        .await?;
        Ok(linked.into_iter().map(|(id,)| id).collect())
    }

    /// Locks the state rows of `ids` (sorted: concurrent flushers lock in
    /// one order) and reads them with their URLs' thresholds. Rows not yet
    /// created are missing from the answer.
    async fn lock_states(
        tx: &mut Transaction<'_, Postgres>,
        ids: &[i64],
    ) -> anyhow::Result<Vec<StateRow>> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{SELECT_STATES} WHERE s.url_id = ANY($1) ORDER BY s.url_id FOR UPDATE OF s"
        )))
        .bind(ids)
        .fetch_all(&mut **tx)
        .await?)
    }

    async fn write_states(
        tx: &mut Transaction<'_, Postgres>,
        changes: &Changes,
    ) -> anyhow::Result<()> {
        let t = &changes.trackers;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE url_states s SET state = v.state, state_since = v.state_since, \
                last_applied_ms = v.last_applied_ms, run_ok = v.run_ok, run_len = v.run_len, \
                run_start_ms = v.run_start_ms, run_first = v.run_first, open_incident_id = v.open_incident_id, \
                down_run = v.down_run, down_run_start_ms = v.down_run_start_ms, incident_state = v.incident_state \
             FROM UNNEST($1::int8[], $2::int2[], $3::timestamptz[], $4::int8[], $5::bool[], $6::int4[], \
                         $7::int8[], $8::text[], $9::int8[], $10::int4[], $11::int8[], $12::int2[]) \
                  AS v({STATE_COLUMNS}) \
             WHERE s.url_id = v.url_id"
        )))
        .bind(t.iter().map(|(id, _)| *id).collect::<Vec<_>>())
        .bind(t.iter().map(|(_, t)| t.state as i16).collect::<Vec<_>>())
        .bind(t.iter().map(|(_, t)| t.state_since_ms.map(ms_to_time)).collect::<Vec<_>>())
        .bind(t.iter().map(|(_, t)| t.last_applied_ms).collect::<Vec<_>>())
        .bind(t.iter().map(|(_, t)| t.run_ok).collect::<Vec<_>>())
        .bind(t.iter().map(|(_, t)| count(t.run_len)).collect::<Vec<_>>())
        .bind(t.iter().map(|(_, t)| t.run_start_ms).collect::<Vec<_>>())
        .bind(t.iter().map(|(_, t)| t.run_first.as_ref().map(first_json)).collect::<Vec<_>>())
        .bind(t.iter().map(|(_, t)| t.open_incident).collect::<Vec<_>>())
        .bind(t.iter().map(|(_, t)| t.down_run).collect::<Vec<_>>())
        .bind(t.iter().map(|(_, t)| t.down_run_start_ms).collect::<Vec<_>>())
        .bind(t.iter().map(|(_, t)| t.incident_state.map(|s| s as i16)).collect::<Vec<_>>())
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}

mod sqlite {
    use super::{
        Changes, DateTime, Derive, HashSet, IncidentEvent, IncidentSql, LINK_TO_PARENTS, LINKED,
        Narrow, ProbeResult, SELECT_STATES, STATE_COLUMNS, Sqlite, StateRow, Transaction, Utc,
        Written, apply_all, count, events_of_new, events_of_update, failed_json, first_json,
        incident_ids, locked, marks, ms_to_time, notices, outcomes_by_url, sqlite_timestamp_text,
        states_before, timestamp,
    };

    pub(super) async fn write(
        tx: &mut Transaction<'_, Sqlite>,
        rows: &[&ProbeResult],
        derive: Derive<'_>,
    ) -> anyhow::Result<Written> {
        let json = serde_json::Value::Array(
            rows.iter()
                .map(|r| {
                    let n = Narrow::of(r);
                    serde_json::json!([
                        r.url_id,
                        sqlite_timestamp_text(timestamp(r.due_ms * 1000)),
                        n.probed_after_us,
                        n.latency_micros,
                        n.status_code,
                        r.verdict().stored(),
                        n.tls_remaining_s,
                        r.error_kind,
                        r.error_message,
                        failed_json(&r.failed_assertions),
                    ])
                })
                .collect(),
        );
        // `WHERE true` keeps SQLite from reading ON CONFLICT as a join clause.
        let inserted: Vec<(i64, DateTime<Utc>)> = sqlx::query_as(
            "INSERT INTO statuses (url_id, due_at, probed_after_us, latency_micros, status_code, verdict, \
                                   tls_remaining_s, error_kind, error_message, failed_assertions) \
             SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, value ->> 6, \
                    value ->> 7, value ->> 8, value ->> 9 \
             FROM json_each(?1) WHERE true \
             ON CONFLICT (url_id, due_at) DO NOTHING \
             RETURNING url_id, due_at",
        )
        .bind(json.to_string())
        .fetch_all(&mut **tx)
        .await?;
        let mut written = Written {
            inserted: inserted.len() as u64,
            ..Written::default()
        };
        if inserted.is_empty() || !derive.all() {
            return Ok(written);
        }
        let per_url = outcomes_by_url(rows, inserted);
        let ids = serde_json::to_string(&per_url.keys().collect::<Vec<_>>())?;
        // The transaction began IMMEDIATE: these rows are this writer's.
        let select = format!(
            "{SELECT_STATES} WHERE s.url_id IN (SELECT value FROM json_each(?1)) ORDER BY s.url_id"
        );
        let mut rows: Vec<StateRow> = sqlx::query_as(sqlx::AssertSqlSafe(select.clone()))
            .bind(&ids)
            .fetch_all(&mut **tx)
            .await?;
        if rows.len() < per_url.len() {
            // A URL inserted behind the service's back (AddUrl creates the
            // row): create its state row, the one time.
            sqlx::query(
                "INSERT INTO url_states (url_id, state) SELECT value, 1 FROM json_each(?1) WHERE true \
                 ON CONFLICT (url_id) DO NOTHING",
            )
            .bind(&ids)
            .execute(&mut **tx)
            .await?;
            rows = sqlx::query_as(sqlx::AssertSqlSafe(select))
                .bind(&ids)
                .fetch_all(&mut **tx)
                .await?;
        }
        crate::store::rollups::merge_sqlite(
            tx,
            crate::store::rollups::deltas(&per_url, &marks(&rows)),
        )
        .await?;
        crate::store::certificates::record_sqlite(tx, &per_url).await?;
        let locked = locked(rows);
        let before = states_before(&locked);
        let mut changes = apply_all(locked, per_url);
        let events = write_incidents!(tx, changes, written, &IncidentSql::new('?'));
        write_states(tx, &changes).await?;
        let linked = link_to_parents(tx, &events).await?;
        crate::store::deliveries::enqueue_sqlite(tx, &events, &linked, Utc::now()).await?;
        written.notices = notices(&before, &changes, &events);
        Ok(written)
    }

    /// [`super::LINK_TO_PARENTS`], then [`super::LINKED`].
    async fn link_to_parents(
        tx: &mut Transaction<'_, Sqlite>,
        events: &[IncidentEvent],
    ) -> anyhow::Result<HashSet<i64>> {
        if events.is_empty() {
            return Ok(HashSet::new());
        }
        let ids = "SELECT value FROM json_each(?1)";
        let new = incident_ids(events, true);
        if !new.is_empty() {
            sqlx::query(sqlx::AssertSqlSafe(LINK_TO_PARENTS.replace("IDS", ids)))
                .bind(serde_json::to_string(&new)?)
                .execute(&mut **tx)
                .await?;
        }
        let linked: Vec<(i64,)> = sqlx::query_as(sqlx::AssertSqlSafe(LINKED.replace("IDS", ids)))
            .bind(serde_json::to_string(&incident_ids(events, false))?)
            .fetch_all(&mut **tx)
            .await?;
        Ok(linked.into_iter().map(|(id,)| id).collect())
    }

    async fn write_states(
        tx: &mut Transaction<'_, Sqlite>,
        changes: &Changes,
    ) -> anyhow::Result<()> {
        let states = serde_json::Value::Array(
            changes
                .trackers
                .iter()
                .map(|(id, t)| {
                    serde_json::json!([
                        id,
                        t.state as i16,
                        t.state_since_ms
                            .map(|ms| sqlite_timestamp_text(ms_to_time(ms))),
                        t.last_applied_ms,
                        t.run_ok,
                        t.run_len,
                        t.run_start_ms,
                        t.run_first.as_ref().map(first_json),
                        t.open_incident,
                        t.down_run,
                        t.down_run_start_ms,
                        t.incident_state.map(|s| s as i16),
                    ])
                })
                .collect(),
        );
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO url_states ({STATE_COLUMNS}) \
             SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, \
                    value ->> 6, value ->> 7, value ->> 8, value ->> 9, value ->> 10, value ->> 11 \
             FROM json_each(?1) WHERE true \
             ON CONFLICT (url_id) DO UPDATE SET state = excluded.state, state_since = excluded.state_since, \
                last_applied_ms = excluded.last_applied_ms, run_ok = excluded.run_ok, run_len = excluded.run_len, \
                run_start_ms = excluded.run_start_ms, run_first = excluded.run_first, \
                open_incident_id = excluded.open_incident_id, down_run = excluded.down_run, \
                down_run_start_ms = excluded.down_run_start_ms, incident_state = excluded.incident_state"
        )))
        .bind(states.to_string())
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}
