//! The latest TLS certificate `notAfter` each URL's probes saw
//! (`Url.tls_not_after`), kept on its `url_states` row by the flush.
//!
//! Called inside the flush's transaction with the rows it really inserted,
//! after their URLs' state rows are locked: one statement for the batch,
//! none when no inserted probe was https. A row is only moved forward: a
//! probe older than the one whose certificate is stored (a late batch from
//! another flusher) does not replace it.

use std::collections::BTreeMap;

use sqlx::{Postgres, Sqlite, Transaction};

use chrono::{DateTime, Utc};

use super::statuses::sqlite_timestamp_text;
use crate::domain::state::Outcome;

fn ms_to_time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// Each URL's newest inserted probe with a certificate: (URL, notAfter ms, due ms).
fn latest(per_url: &BTreeMap<i64, Vec<Outcome>>) -> Vec<(i64, i64, i64)> {
    per_url
        .iter()
        .filter_map(|(url_id, outcomes)| {
            outcomes
                .iter()
                .rev()
                .find_map(|o| o.probe.tls_not_after_ms.map(|t| (*url_id, t, o.due_ms)))
        })
        .collect()
}

/// Postgres: arrays of the URLs, notAfters and due times.
pub(super) async fn record_postgres(
    tx: &mut Transaction<'_, Postgres>,
    per_url: &BTreeMap<i64, Vec<Outcome>>,
) -> anyhow::Result<()> {
    let seen = latest(per_url);
    if seen.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "UPDATE url_states s SET tls_not_after = v.not_after, tls_seen_ms = v.due_ms \
         FROM UNNEST($1::int8[], $2::timestamptz[], $3::int8[]) AS v(url_id, not_after, due_ms) \
         WHERE s.url_id = v.url_id AND (s.tls_seen_ms IS NULL OR s.tls_seen_ms < v.due_ms)",
    )
    .bind(seen.iter().map(|s| s.0).collect::<Vec<_>>())
    .bind(seen.iter().map(|s| ms_to_time(s.1)).collect::<Vec<_>>())
    .bind(seen.iter().map(|s| s.2).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// SQLite: the same, as one JSON parameter.
pub(super) async fn record_sqlite(
    tx: &mut Transaction<'_, Sqlite>,
    per_url: &BTreeMap<i64, Vec<Outcome>>,
) -> anyhow::Result<()> {
    let seen = latest(per_url);
    if seen.is_empty() {
        return Ok(());
    }
    let json: Vec<_> = seen
        .iter()
        .map(|(url_id, t, due)| {
            serde_json::json!([url_id, sqlite_timestamp_text(ms_to_time(*t)), due])
        })
        .collect();
    sqlx::query(
        "UPDATE url_states SET tls_not_after = v.value ->> 1, tls_seen_ms = v.value ->> 2 \
         FROM json_each(?1) AS v \
         WHERE url_states.url_id = v.value ->> 0 \
           AND (url_states.tls_seen_ms IS NULL OR url_states.tls_seen_ms < v.value ->> 2)",
    )
    .bind(serde_json::Value::Array(json).to_string())
    .execute(&mut **tx)
    .await?;
    Ok(())
}
