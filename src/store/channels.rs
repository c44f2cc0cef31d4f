//! Notification channels and the URLs each is limited to.
//!
//! A channel's target is stored as its kind's number and a JSON object of
//! its settings (a webhook's URL and secret, a Slack webhook's URL, an email's
//! recipient, a PagerDuty routing key and events URL). `all_urls` marks a channel
//! for every URL of its owner; otherwise its URLs are rows of
//! `channel_urls`, which go when the URL goes.

use chrono::{DateTime, Utc};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbErr, QueryResult, Statement,
};
use serde::{Deserialize, Serialize};

use super::numbered;
use crate::domain::{
    ChannelRecord, ChannelTarget, Email, NewChannel, RoutingKey, SlackWebhook, TargetUrl, UserId,
    WebhookSecret,
};

/// The stored settings of a channel, by kind: a JSON object without a
/// tag (the kind is its own column).
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum StoredTarget {
    Webhook {
        url: String,
        secret: String,
    },
    Slack {
        webhook_url: String,
    },
    Email {
        to: String,
    },
    PagerDuty {
        routing_key: String,
        events_url: String,
    },
}

fn target_json(target: &ChannelTarget) -> String {
    let stored = match target {
        ChannelTarget::Webhook { url, secret } => StoredTarget::Webhook {
            url: url.as_str().to_owned(),
            secret: secret.expose().to_owned(),
        },
        ChannelTarget::Slack { webhook } => StoredTarget::Slack {
            webhook_url: webhook.url().as_str().to_owned(),
        },
        ChannelTarget::Email { to } => StoredTarget::Email {
            to: to.as_str().to_owned(),
        },
        ChannelTarget::PagerDuty {
            routing_key,
            events_url,
        } => StoredTarget::PagerDuty {
            routing_key: routing_key.expose().to_owned(),
            events_url: events_url.as_str().to_owned(),
        },
    };
    serde_json::to_string(&stored).unwrap_or_default()
}

pub(super) fn target_from_stored(kind: i16, json: &str) -> Result<ChannelTarget, DbErr> {
    let bad = |why: String| DbErr::Custom(format!("stored channel target: {why}"));
    let url = |raw: &str| TargetUrl::parse("url", raw).map_err(|e| bad(e.to_string()));
    let stored: StoredTarget = serde_json::from_str(json).map_err(|e| bad(e.to_string()))?;
    match (kind, stored) {
        (1, StoredTarget::Webhook { url: u, secret }) => Ok(ChannelTarget::Webhook {
            url: url(&u)?,
            secret: WebhookSecret::from_stored(secret),
        }),
        (2, StoredTarget::Slack { webhook_url }) => Ok(ChannelTarget::Slack {
            webhook: SlackWebhook::new(url(&webhook_url)?),
        }),
        (3, StoredTarget::Email { to }) => Ok(ChannelTarget::Email {
            to: Email::parse("to", &to).map_err(|e| bad(e.to_string()))?,
        }),
        (
            4,
            StoredTarget::PagerDuty {
                routing_key,
                events_url,
            },
        ) => Ok(ChannelTarget::PagerDuty {
            routing_key: RoutingKey::parse("routing_key", &routing_key)
                .map_err(|e| bad(e.to_string()))?,
            events_url: url(&events_url)?,
        }),
        (kind, _) => Err(bad(format!("kind {kind} does not match its settings"))),
    }
}

/// Why a channel was not added.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// The user has `max` channels already.
    Quota,
    /// This URL id is not one of the user's URLs.
    UnknownUrl(i64),
}

/// The id list bound as one parameter: an array on Postgres, a JSON array on
/// SQLite (read with `json_each`).
fn id_list(backend: sea_orm::DbBackend, ids: &[i64]) -> sea_orm::Value {
    match backend {
        sea_orm::DbBackend::Postgres => ids.to_vec().into(),
        _ => serde_json::to_string(ids).unwrap_or_default().into(),
    }
}

/// `ids` as a set to select from, for the backend at hand (parameter `$n`).
fn ids_in(backend: sea_orm::DbBackend, n: u8) -> String {
    match backend {
        sea_orm::DbBackend::Postgres => format!("unnest(${n}::bigint[])"),
        _ => format!("(SELECT value FROM json_each(${n}))"),
    }
}

/// Adds a channel for `user` unless the user has `max` channels already or
/// a URL of `new.url_ids` is not the user's. One transaction, which first
/// takes the user's row (Postgres) or the write lock (SQLite), so two
/// concurrent adds cannot both pass the quota.
pub async fn insert_within_limit(
    db: &DatabaseConnection,
    user: UserId,
    new: &NewChannel,
    created_at: DateTime<Utc>,
    max: u32,
) -> Result<Result<ChannelRecord, Refused>, DbErr> {
    let backend = db.get_database_backend();
    let sql = |pg: &str| numbered(backend, pg);
    let (txn, count) = super::begin_counting(db, user, "channels").await?;
    if count >= i64::from(max) {
        txn.rollback().await?;
        return Ok(Err(Refused::Quota));
    }
    if let Some(missing) = unowned_url(&txn, user, &new.url_ids).await? {
        txn.rollback().await?;
        return Ok(Err(Refused::UnknownUrl(missing)));
    }
    let row = txn
        .query_one_raw(Statement::from_sql_and_values(
            backend,
            sql(
                "INSERT INTO channels (user_id, name, kind, target, all_urls, notify_degraded, \
                 remind_every_s, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
            ),
            [
                user.0.into(),
                new.name.clone().into(),
                new.target.kind().into(),
                target_json(&new.target).into(),
                new.url_ids.is_empty().into(),
                new.notify_degraded.into(),
                seconds(new.remind_every).into(),
                created_at.into(),
            ],
        ))
        .await?
        .ok_or_else(|| DbErr::RecordNotInserted)?;
    let id: i64 = row.try_get("", "id")?;
    link_urls(&txn, id, &new.url_ids).await?;
    txn.commit().await?;
    Ok(Ok(ChannelRecord {
        id,
        user_id: user,
        name: new.name.clone(),
        target: new.target.clone(),
        url_ids: new.url_ids.clone(),
        notify_degraded: new.notify_degraded,
        remind_every: new.remind_every,
        created_at,
    }))
}

/// A reminder interval as stored: whole seconds, NULL for none.
fn seconds(every: Option<std::time::Duration>) -> Option<i64> {
    every.map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The first of `ids` that is not one of the user's URLs.
async fn unowned_url(
    txn: &DatabaseTransaction,
    user: UserId,
    ids: &[i64],
) -> Result<Option<i64>, DbErr> {
    if ids.is_empty() {
        return Ok(None);
    }
    let backend = txn.get_database_backend();
    let owned: Vec<i64> = txn
        .query_all_raw(Statement::from_sql_and_values(
            backend,
            numbered(
                backend,
                &format!(
                    "SELECT id FROM urls WHERE user_id = $1 AND id IN (SELECT * FROM {})",
                    ids_in(backend, 2)
                ),
            ),
            [user.0.into(), id_list(backend, ids)],
        ))
        .await?
        .iter()
        .map(|row| row.try_get::<i64>("", "id"))
        .collect::<Result<_, _>>()?;
    Ok(ids.iter().find(|id| !owned.contains(id)).copied())
}

/// Links channel `id` to `ids` (none: the channel is for all URLs).
async fn link_urls(txn: &DatabaseTransaction, id: i64, ids: &[i64]) -> Result<(), DbErr> {
    if ids.is_empty() {
        return Ok(());
    }
    let backend = txn.get_database_backend();
    txn.execute_raw(Statement::from_sql_and_values(
        backend,
        numbered(
            backend,
            &format!(
                "INSERT INTO channel_urls (channel_id, url_id) SELECT $1, * FROM {}",
                ids_in(backend, 2)
            ),
        ),
        [id.into(), id_list(backend, ids)],
    ))
    .await?;
    Ok(())
}

/// Writes `channel` (the user's, by its id) as it now is: its name, target,
/// URLs and `notify_degraded`, in one transaction. `Ok(false)`: the user
/// has no such channel (any more).
pub async fn update_for_user(
    db: &DatabaseConnection,
    channel: &ChannelRecord,
) -> Result<Result<bool, Refused>, DbErr> {
    let backend = db.get_database_backend();
    let user = channel.user_id;
    let txn = super::begin_write(db).await?;
    if let Some(missing) = unowned_url(&txn, user, &channel.url_ids).await? {
        txn.rollback().await?;
        return Ok(Err(Refused::UnknownUrl(missing)));
    }
    let done = txn
        .execute_raw(Statement::from_sql_and_values(
            backend,
            numbered(
                backend,
                "UPDATE channels SET name = $1, kind = $2, target = $3, all_urls = $4, \
                 notify_degraded = $5, remind_every_s = $6 WHERE id = $7 AND user_id = $8",
            ),
            [
                channel.name.clone().into(),
                channel.target.kind().into(),
                target_json(&channel.target).into(),
                channel.url_ids.is_empty().into(),
                channel.notify_degraded.into(),
                seconds(channel.remind_every).into(),
                channel.id.into(),
                user.0.into(),
            ],
        ))
        .await?;
    if done.rows_affected() != 1 {
        txn.rollback().await?;
        return Ok(Ok(false));
    }
    txn.execute_raw(Statement::from_sql_and_values(
        backend,
        numbered(backend, "DELETE FROM channel_urls WHERE channel_id = $1"),
        [channel.id.into()],
    ))
    .await?;
    link_urls(&txn, channel.id, &channel.url_ids).await?;
    txn.commit().await?;
    Ok(Ok(true))
}

const COLUMNS: &str =
    "id, user_id, name, kind, target, all_urls, notify_degraded, remind_every_s, created_at";

fn record(row: &QueryResult, url_ids: Vec<i64>) -> Result<ChannelRecord, DbErr> {
    Ok(ChannelRecord {
        id: row.try_get("", "id")?,
        user_id: UserId(row.try_get("", "user_id")?),
        name: row.try_get("", "name")?,
        target: target_from_stored(
            row.try_get("", "kind")?,
            &row.try_get::<String>("", "target")?,
        )?,
        url_ids,
        notify_degraded: row.try_get("", "notify_degraded")?,
        remind_every: row
            .try_get::<Option<i64>>("", "remind_every_s")?
            .and_then(|s| u64::try_from(s).ok())
            .map(std::time::Duration::from_secs),
        created_at: row.try_get("", "created_at")?,
    })
}

/// The channels of `rows` with their URL ids (one query for all).
async fn with_url_ids(
    db: &impl ConnectionTrait,
    rows: Vec<QueryResult>,
) -> Result<Vec<ChannelRecord>, DbErr> {
    let backend = db.get_database_backend();
    let ids: Vec<i64> = rows
        .iter()
        .map(|row| row.try_get::<i64>("", "id"))
        .collect::<Result<_, _>>()?;
    let mut links: Vec<(i64, i64)> = Vec::new();
    if !ids.is_empty() {
        for row in db
            .query_all_raw(Statement::from_sql_and_values(
                backend,
                numbered(
                    backend,
                    &format!(
                        "SELECT channel_id, url_id FROM channel_urls \
                         WHERE channel_id IN (SELECT * FROM {}) ORDER BY channel_id, url_id",
                        ids_in(backend, 1)
                    ),
                ),
                [id_list(backend, &ids)],
            ))
            .await?
        {
            links.push((row.try_get("", "channel_id")?, row.try_get("", "url_id")?));
        }
    }
    rows.iter()
        .map(|row| {
            let id: i64 = row.try_get("", "id")?;
            let url_ids = links
                .iter()
                .filter(|(channel, _)| *channel == id)
                .map(|(_, url)| *url)
                .collect();
            record(row, url_ids)
        })
        .collect()
}

/// The channels matching `filter` (a condition on `channels`, with
/// Postgres' parameter numbers), by id.
async fn select(
    db: &DatabaseConnection,
    filter: &str,
    values: Vec<sea_orm::Value>,
) -> Result<Vec<ChannelRecord>, DbErr> {
    let backend = db.get_database_backend();
    let sql = format!("SELECT {COLUMNS} FROM channels WHERE {filter} ORDER BY id");
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            backend,
            numbered(backend, &sql),
            values,
        ))
        .await?;
    with_url_ids(db, rows).await
}

/// The user's channels, oldest first.
pub async fn list_for_user(
    db: &DatabaseConnection,
    user: UserId,
) -> Result<Vec<ChannelRecord>, DbErr> {
    select(db, "user_id = $1", vec![user.0.into()]).await
}

/// The user's channel with this id, if there is one.
pub async fn get_for_user(
    db: &DatabaseConnection,
    user: UserId,
    id: i64,
) -> Result<Option<ChannelRecord>, DbErr> {
    Ok(select(
        db,
        "id = $1 AND user_id = $2",
        vec![id.into(), user.0.into()],
    )
    .await?
    .pop())
}

/// Deletes the user's channel (its URL links and deliveries go with it).
/// `false`: the user has no such channel.
pub async fn delete_for_user(
    db: &DatabaseConnection,
    user: UserId,
    id: i64,
) -> Result<bool, DbErr> {
    super::delete_owned(db, "channels", user, id).await
}
