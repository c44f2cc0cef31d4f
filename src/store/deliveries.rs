//! The outbox of notifications: one `deliveries` row per (incident event,
//! matching channel), written by the flush in the transaction that wrote
//! the incident ([`enqueue_postgres`], [`enqueue_sqlite`]), then claimed,
//! sent and settled by the delivery worker of any instance (`deliver`).
//!
//! A channel matches an event when its owner owns the URL, it is for all of
//! the owner's URLs or lists this one, and the incident is DOWN or the
//! channel takes DEGRADED ones too. A resolved event goes only to the
//! channels that got the incident's opened event (so a channel created
//! during an incident hears only of later ones), and an opened event never
//! twice to one channel (an incident turning DOWN sends it to the channels
//! that take DOWN only). Two statements per flush batch, whatever its size.
//!
//! A claim takes due pending rows (Postgres: `FOR UPDATE SKIP LOCKED`;
//! SQLite: under its writer lock) and moves their `next_attempt_at` past the
//! send's timeout: a claim whose instance died is due again then, so every
//! event is sent at least once. A row waits while an older row of the same
//! channel and incident is pending: a channel hears of an incident in order.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement, TransactionTrait};
use sqlx::{Postgres, Sqlite, Transaction};

use super::{channels, numbered};
use crate::domain::{
    ChannelTarget,
    notification::{DeliveryRecord, DeliveryState, EventKind, due_reminder, reminder_json},
    state::UrlState,
};

/// An incident event of a flush batch (`store::outcomes`), for the
/// outbox: which incident, of which URL, in which state, and its body.
pub(super) struct IncidentEvent {
    pub kind: EventKind,
    /// An opened event sent again to channels that had it: a held incident
    /// still failing when its maintenance window ended. Events are made
    /// once per inserted status, so this cannot double a delivery.
    pub again: bool,
    pub incident_id: i64,
    pub url_id: i64,
    pub state: UrlState,
    pub body: String,
    /// The incident as live watchers are told of it.
    pub notice: crate::domain::notification::LiveNotice,
    /// The incident was inserted by this batch (it may be linked to its
    /// URL's parent's incident: `store::outcomes`).
    pub new: bool,
}

/// Postgres: opened events to every matching channel that has not had one
/// for the incident — or, for a DEGRADED incident turned DOWN, not a DOWN
/// one: a channel told of the DEGRADED incident is told it is DOWN now —
/// and, sent `again` (after a maintenance window), to every matching one.
const ENQUEUE_OPENED_POSTGRES: &str = "INSERT INTO deliveries \
      (channel_id, incident_id, event, payload, state, attempts, next_attempt_at, created_at) \
 SELECT c.id, e.incident_id, 'incident.opened', e.body, 1, 0, $5, $5 \
 FROM UNNEST($1::int8[], $2::int8[], $3::bool[], $4::text[], $6::bool[]) WITH ORDINALITY \
      AS e(incident_id, url_id, down, body, again, ord) \
 JOIN urls u ON u.id = e.url_id \
 JOIN channels c ON c.user_id = u.user_id \
 WHERE (e.down OR c.notify_degraded) \
   AND (c.all_urls OR EXISTS (SELECT 1 FROM channel_urls cu WHERE cu.channel_id = c.id AND cu.url_id = e.url_id)) \
   AND (e.again OR NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.incident_id = e.incident_id \
                   AND d.channel_id = c.id AND d.event = 'incident.opened' \
                   AND (NOT e.down OR d.payload::jsonb #>> '{data,incident,state}' = 'DOWN'))) \
 ORDER BY e.ord, c.id";

/// Postgres: resolved events to the channels that had an opened one, once
/// per channel.
const ENQUEUE_RESOLVED_POSTGRES: &str = "INSERT INTO deliveries \
      (channel_id, incident_id, event, payload, state, attempts, next_attempt_at, created_at) \
 SELECT d.channel_id, e.incident_id, 'incident.resolved', e.body, 1, 0, $3, $3 \
 FROM UNNEST($1::int8[], $2::text[]) WITH ORDINALITY AS e(incident_id, body, ord) \
 JOIN deliveries d ON d.incident_id = e.incident_id AND d.event = 'incident.opened' \
 GROUP BY e.ord, e.incident_id, e.body, d.channel_id \
 ORDER BY e.ord, d.channel_id";

/// SQLite: the same, the events read from one JSON parameter.
const ENQUEUE_OPENED_SQLITE: &str = "INSERT INTO deliveries \
      (channel_id, incident_id, event, payload, state, attempts, next_attempt_at, created_at) \
 SELECT c.id, e.value ->> 0, 'incident.opened', e.value ->> 3, 1, 0, ?2, ?2 \
 FROM json_each(?1) e \
 JOIN urls u ON u.id = e.value ->> 1 \
 JOIN channels c ON c.user_id = u.user_id \
 WHERE (e.value ->> 2 OR c.notify_degraded) \
   AND (c.all_urls OR EXISTS (SELECT 1 FROM channel_urls cu WHERE cu.channel_id = c.id AND cu.url_id = e.value ->> 1)) \
   AND (e.value ->> 4 OR NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.incident_id = e.value ->> 0 \
                   AND d.channel_id = c.id AND d.event = 'incident.opened' \
                   AND (NOT (e.value ->> 2) OR d.payload ->> '$.data.incident.state' = 'DOWN'))) \
 ORDER BY e.key, c.id";

const ENQUEUE_RESOLVED_SQLITE: &str = "INSERT INTO deliveries \
      (channel_id, incident_id, event, payload, state, attempts, next_attempt_at, created_at) \
 SELECT d.channel_id, e.value ->> 0, 'incident.resolved', e.value ->> 1, 1, 0, ?2, ?2 \
 FROM json_each(?1) e \
 JOIN deliveries d ON d.incident_id = e.value ->> 0 AND d.event = 'incident.opened' \
 GROUP BY e.key, d.channel_id \
 ORDER BY e.key, d.channel_id";

/// The events to send, opened ones apart; none of an incident in
/// `linked` (part of its parent URL's incident: not sent on its own).
fn split<'a>(
    events: &'a [IncidentEvent],
    linked: &HashSet<i64>,
) -> (Vec<&'a IncidentEvent>, Vec<&'a IncidentEvent>) {
    events
        .iter()
        .filter(|e| !linked.contains(&e.incident_id))
        .partition(|e| e.kind == EventKind::Opened)
}

/// Writes the outbox rows of a batch's events (Postgres flush transaction).
pub(super) async fn enqueue_postgres(
    tx: &mut Transaction<'_, Postgres>,
    events: &[IncidentEvent],
    linked: &HashSet<i64>,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let (opened, resolved) = split(events, linked);
    if !opened.is_empty() {
        sqlx::query(ENQUEUE_OPENED_POSTGRES)
            .bind(opened.iter().map(|e| e.incident_id).collect::<Vec<_>>())
            .bind(opened.iter().map(|e| e.url_id).collect::<Vec<_>>())
            .bind(
                opened
                    .iter()
                    .map(|e| e.state == UrlState::Down)
                    .collect::<Vec<_>>(),
            )
            .bind(opened.iter().map(|e| e.body.clone()).collect::<Vec<_>>())
            .bind(now)
            .bind(opened.iter().map(|e| e.again).collect::<Vec<_>>())
            .execute(&mut **tx)
            .await?;
    }
    if !resolved.is_empty() {
        sqlx::query(ENQUEUE_RESOLVED_POSTGRES)
            .bind(resolved.iter().map(|e| e.incident_id).collect::<Vec<_>>())
            .bind(resolved.iter().map(|e| e.body.clone()).collect::<Vec<_>>())
            .bind(now)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Writes the outbox rows of a batch's events (SQLite flush transaction).
pub(super) async fn enqueue_sqlite(
    tx: &mut Transaction<'_, Sqlite>,
    events: &[IncidentEvent],
    linked: &HashSet<i64>,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let (opened, resolved) = split(events, linked);
    if !opened.is_empty() {
        let json: Vec<_> = opened
            .iter()
            .map(|e| {
                serde_json::json!([
                    e.incident_id,
                    e.url_id,
                    e.state == UrlState::Down,
                    e.body,
                    e.again
                ])
            })
            .collect();
        sqlx::query(ENQUEUE_OPENED_SQLITE)
            .bind(serde_json::Value::Array(json).to_string())
            .bind(now)
            .execute(&mut **tx)
            .await?;
    }
    if !resolved.is_empty() {
        let json: Vec<_> = resolved
            .iter()
            .map(|e| serde_json::json!([e.incident_id, e.body]))
            .collect();
        sqlx::query(ENQUEUE_RESOLVED_SQLITE)
            .bind(serde_json::Value::Array(json).to_string())
            .bind(now)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// A claimed delivery, with what sending it needs.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: i64,
    pub channel_id: i64,
    pub event: EventKind,
    /// `{type, timestamp, data: {incident}}` as stored.
    pub payload: String,
    /// Attempts so far, this one included.
    pub attempts: u32,
    pub created_at: DateTime<Utc>,
    pub target: ChannelTarget,
    /// The incident's URL: id, URL and name (none for a test).
    pub url: Option<(i64, String, Option<String>)>,
}

/// Due rows, claimed: `next_attempt_at` moved to `lease_until` and
/// `attempts` raised. At most `limit`.
pub async fn claim(
    db: &DatabaseConnection,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<Claimed>, DbErr> {
    let backend = db.get_database_backend();
    let due = "SELECT d.id FROM deliveries d WHERE d.state = 1 AND d.next_attempt_at <= $1 \
         AND NOT EXISTS (SELECT 1 FROM deliveries p WHERE p.channel_id = d.channel_id \
             AND p.incident_id = d.incident_id AND p.state = 1 AND p.id < d.id) \
         ORDER BY d.next_attempt_at, d.id LIMIT $3";
    let sql = format!(
        "UPDATE deliveries SET next_attempt_at = $2, attempts = attempts + 1 \
         WHERE id IN ({due}{}) RETURNING id",
        if backend == DbBackend::Postgres {
            " FOR UPDATE SKIP LOCKED"
        } else {
            ""
        }
    );
    let txn = db.begin().await?;
    let ids: Vec<i64> = txn
        .query_all_raw(Statement::from_sql_and_values(
            backend,
            numbered(backend, &sql),
            [now.into(), lease_until.into(), i64::from(limit).into()],
        ))
        .await?
        .iter()
        .map(|r| r.try_get::<i64>("", "id"))
        .collect::<Result<_, _>>()?;
    let claimed = if ids.is_empty() {
        Vec::new()
    } else {
        let (list, param) = match backend {
            DbBackend::Postgres => ("SELECT * FROM unnest($1::bigint[])", ids.clone().into()),
            _ => (
                "SELECT value FROM json_each(?1)",
                serde_json::to_string(&ids).unwrap_or_default().into(),
            ),
        };
        let rows = txn
            .query_all_raw(Statement::from_sql_and_values(
                backend,
                format!(
                    "SELECT d.id, d.channel_id, d.event, d.payload, d.attempts, d.created_at, \
                        c.kind, c.target, u.id AS url_id, u.url, u.name \
                     FROM deliveries d JOIN channels c ON c.id = d.channel_id \
                     LEFT JOIN incidents i ON i.id = d.incident_id \
                     LEFT JOIN urls u ON u.id = i.url_id \
                     WHERE d.id IN ({list}) ORDER BY d.id"
                ),
                [param],
            ))
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let event: String = r.try_get("", "event")?;
            let url_id: Option<i64> = r.try_get("", "url_id")?;
            out.push(Claimed {
                id: r.try_get("", "id")?,
                channel_id: r.try_get("", "channel_id")?,
                event: EventKind::parse(&event)
                    .ok_or_else(|| DbErr::Custom(format!("stored event {event:?}")))?,
                payload: r.try_get("", "payload")?,
                attempts: u32::try_from(r.try_get::<i32>("", "attempts")?).unwrap_or(0),
                created_at: r.try_get("", "created_at")?,
                target: channels::target_from_stored(
                    r.try_get("", "kind")?,
                    &r.try_get::<String>("", "target")?,
                )?,
                url: match url_id {
                    Some(id) => Some((id, r.try_get("", "url")?, r.try_get("", "name")?)),
                    None => None,
                },
            });
        }
        out
    };
    txn.commit().await?;
    Ok(claimed)
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    Delivered { at: DateTime<Utc> },
    Retry { at: DateTime<Utc>, error: String },
    GaveUp { error: String },
}

/// Records how the attempt of a claimed delivery ended.
pub async fn settle(db: &DatabaseConnection, id: i64, settled: &Settled) -> Result<(), DbErr> {
    let backend = db.get_database_backend();
    let (sql, values): (&str, Vec<sea_orm::Value>) = match settled {
        Settled::Delivered { at } => (
            "UPDATE deliveries SET state = 2, delivered_at = $2, last_error = NULL WHERE id = $1",
            vec![id.into(), (*at).into()],
        ),
        Settled::Retry { at, error } => (
            "UPDATE deliveries SET next_attempt_at = $2, last_error = $3 WHERE id = $1",
            vec![id.into(), (*at).into(), error.clone().into()],
        ),
        Settled::GaveUp { error } => (
            "UPDATE deliveries SET state = 3, last_error = $2 WHERE id = $1",
            vec![id.into(), error.clone().into()],
        ),
    };
    db.execute_raw(Statement::from_sql_and_values(
        backend,
        numbered(backend, sql),
        values,
    ))
    .await?;
    Ok(())
}

const DELIVERY_COLUMNS: &str = "id, channel_id, incident_id, event, state, attempts, last_error, \
     next_attempt_at, created_at, delivered_at, reminder";

fn delivery(row: &sea_orm::QueryResult) -> Result<DeliveryRecord, DbErr> {
    let event: String = row.try_get("", "event")?;
    Ok(DeliveryRecord {
        id: row.try_get("", "id")?,
        channel_id: row.try_get("", "channel_id")?,
        incident_id: row.try_get("", "incident_id")?,
        event: EventKind::parse(&event)
            .ok_or_else(|| DbErr::Custom(format!("stored event {event:?}")))?,
        state: DeliveryState::from_stored(row.try_get("", "state")?),
        attempts: u32::try_from(row.try_get::<i32>("", "attempts")?).unwrap_or(0),
        last_error: row.try_get("", "last_error")?,
        next_attempt_at: row.try_get("", "next_attempt_at")?,
        created_at: row.try_get("", "created_at")?,
        delivered_at: row.try_get("", "delivered_at")?,
        reminder: row
            .try_get::<Option<i32>>("", "reminder")?
            .and_then(|n| u32::try_from(n).ok()),
    })
}

/// Open incidents whose channels take reminders, of URLs not in a
/// maintenance window (state 6: nothing is sent then): per (incident, channel),
/// when the channel was first sent the incident, its interval, the last
/// reminder sent, the incident's state and failed probes now, and the
/// newest opened event the channel got (the reminder's body is made from it).
const REMINDER_CANDIDATES: &str = "SELECT d.incident_id, d.channel_id, min(d.created_at) AS since, \
        c.remind_every_s, i.state, i.failed_probes, \
        (SELECT max(r.reminder) FROM deliveries r \
          WHERE r.incident_id = d.incident_id AND r.channel_id = d.channel_id) AS sent, \
        (SELECT p.payload FROM deliveries p WHERE p.incident_id = d.incident_id \
          AND p.channel_id = d.channel_id AND p.event = 'incident.opened' \
          ORDER BY p.id DESC LIMIT 1) AS opened \
 FROM incidents i \
 JOIN url_states s ON s.url_id = i.url_id \
 JOIN deliveries d ON d.incident_id = i.id AND d.event = 'incident.opened' \
 JOIN channels c ON c.id = d.channel_id \
 WHERE i.resolved_at IS NULL AND c.remind_every_s IS NOT NULL AND s.state <> 6 \
 GROUP BY d.incident_id, d.channel_id, c.remind_every_s, i.state, i.failed_probes";

/// Puts the reminders due at `now` in the outbox (`Channel.remind_every`):
/// for each open incident and each channel that was sent it and takes
/// reminders, the next count once its interval has passed. A reminder is
/// unique per incident, channel and count (an index), so instances doing
/// this at once add it once. Returns how many were added.
pub async fn enqueue_reminders(db: &DatabaseConnection, now: DateTime<Utc>) -> Result<u64, DbErr> {
    let backend = db.get_database_backend();
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            backend,
            REMINDER_CANDIDATES,
            [],
        ))
        .await?;
    let mut added = 0;
    for row in rows {
        let every: i64 = row.try_get("", "remind_every_s")?;
        let sent = row
            .try_get::<Option<i32>>("", "sent")?
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(0);
        let since: DateTime<Utc> = row.try_get("", "since")?;
        let Some(n) = due_reminder(
            since,
            std::time::Duration::from_secs(u64::try_from(every).unwrap_or(u64::MAX)),
            now,
            sent,
        ) else {
            continue;
        };
        let opened: Option<String> = row.try_get("", "opened")?;
        let Some(body) = opened.as_deref().and_then(|opened| {
            reminder_json(
                opened,
                n,
                UrlState::from_stored(row.try_get("", "state").ok()?),
                row.try_get("", "failed_probes").ok()?,
                now,
            )
        }) else {
            continue;
        };
        let incident: i64 = row.try_get("", "incident_id")?;
        let channel: i64 = row.try_get("", "channel_id")?;
        added += u64::from(add_reminder(db, channel, incident, body, now, n).await?);
    }
    Ok(added)
}

/// Adds reminder `n` of `incident` for `channel` if the incident is still
/// open when the row is written (and no instance added it already).
///
/// The candidates were read a moment before: a flush may have resolved the
/// incident since and queued its `incident.resolved`, and a reminder
/// queued behind that would reach the receiver after the resolve. On
/// Postgres the incident's row is share-locked, so a flush resolving it
/// right now is waited for and seen; on SQLite writes take turns.
pub async fn add_reminder(
    db: &DatabaseConnection,
    channel: i64,
    incident: i64,
    body: String,
    now: DateTime<Utc>,
    n: u32,
) -> Result<bool, DbErr> {
    let backend = db.get_database_backend();
    let lock = if backend == DbBackend::Postgres {
        " FOR SHARE"
    } else {
        ""
    };
    let done = db
        .execute_raw(Statement::from_sql_and_values(
            backend,
            numbered(
                backend,
                &format!(
                    "INSERT INTO deliveries (channel_id, incident_id, event, payload, state, \
                        attempts, next_attempt_at, created_at, reminder) \
                     SELECT $1, i.id, 'incident.reminder', $3, 1, 0, $4, $4, $5 \
                     FROM incidents i WHERE i.id = $2 AND i.resolved_at IS NULL{lock} \
                     ON CONFLICT DO NOTHING"
                ),
            ),
            [
                channel.into(),
                incident.into(),
                body.into(),
                now.into(),
                i32::try_from(n).unwrap_or(i32::MAX).into(),
            ],
        ))
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Puts a test event for `channel_id` in the outbox, due now.
pub async fn insert_test(
    db: &DatabaseConnection,
    channel_id: i64,
    payload: String,
    now: DateTime<Utc>,
) -> Result<DeliveryRecord, DbErr> {
    let backend = db.get_database_backend();
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            backend,
            numbered(
                backend,
                &format!(
                    "INSERT INTO deliveries (channel_id, event, payload, state, attempts, \
                        next_attempt_at, created_at) VALUES ($1, 'test', $2, 1, 0, $3, $3) \
                     RETURNING {DELIVERY_COLUMNS}"
                ),
            ),
            [channel_id.into(), payload.into(), now.into()],
        ))
        .await?
        .ok_or(DbErr::RecordNotInserted)?;
    delivery(&row)
}

/// A channel's deliveries, newest first, with ids below `before_id`.
pub async fn page(
    db: &DatabaseConnection,
    channel_id: i64,
    before_id: Option<i64>,
    limit: u64,
) -> Result<Vec<DeliveryRecord>, DbErr> {
    let backend = db.get_database_backend();
    db.query_all_raw(Statement::from_sql_and_values(
        backend,
        numbered(
            backend,
            &format!(
                "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE channel_id = $1 AND id < $2 \
                 ORDER BY id DESC LIMIT $3"
            ),
        ),
        [
            channel_id.into(),
            before_id.unwrap_or(i64::MAX).into(),
            i64::try_from(limit).unwrap_or(i64::MAX).into(),
        ],
    ))
    .await?
    .iter()
    .map(delivery)
    .collect()
}

/// Deliveries not delivered nor given up yet.
pub async fn count_pending(db: &DatabaseConnection) -> Result<i64, DbErr> {
    let backend = db.get_database_backend();
    db.query_one_raw(Statement::from_string(
        backend,
        "SELECT count(*) AS n FROM deliveries WHERE state = 1",
    ))
    .await?
    .map_or(Ok(0), |row| row.try_get("", "n"))
}
