//! Live events shared by every instance through Redis: a stream
//! `<prefix>:events`, capped near `retained` events (`MAXLEN ~`), apart
//! from the results stream (whose entries go once they are stored).
//!
//! Every instance `XADD`s the results its prober makes, packed up to
//! [`PACK`] to an entry, and reads the stream into its own ring
//! ([`Hub::shared`]) with `XREAD BLOCK`: all rings hold the same events
//! under the same keys (entry id and place, see [`STRIDE`]), so a resume
//! token is good on any instance. The blocking read has a connection of
//! its own: fred holds every other command of a client while one of its
//! blocking commands is in flight, so on a shared connection each publish
//! waited for the read to end (up to its second), and a flush publishing a
//! batch's notices one after another stalled for minutes. At start-up an
//! instance fills its ring with about the newest `retained` events. While
//! Redis is unreachable, nothing is published or read (the results
//! themselves wait in the buffer's local queue); events of that time are
//! not streamed.

use std::{collections::HashMap, sync::Arc, time::Duration};

use anyhow::Context;
use fred::prelude::*;
use tokio_util::sync::CancellationToken;

use super::{Hub, Key, LiveEvent};
use crate::{
    buffer::group::{GroupCommit, PACK, PerEntry, count_of},
    domain::{ProbeResult, notification::LiveNotice},
    telemetry::OutageLog,
};

/// The field of a result (a `ProbeResult`, JSON): entries of one event,
/// written before events were packed; still read.
const FIELD: &str = "r";

/// The field of a notice (a `LiveNotice`, JSON), as `FIELD`.
const NOTICE: &str = "n";

/// A JSON array of events, each `{"r": result}` or `{"n": notice}`.
const PACKED: &str = "b";

/// How many events `PACKED` holds: counted without decoding.
const COUNT: &str = "c";

/// An event's key is its entry's id with the sequence part times `STRIDE`
/// plus the event's place in the entry: entry `1764180000000-2`'s third
/// event is `1764180000000-2002`. Above [`PACK`], so keys never collide.
const STRIDE: u64 = 1000;

/// Most entries one read takes.
const READ_AT_ONCE: u64 = 500;

/// Entries per page of the start-up fill.
const FILL_PAGE: u64 = 256;

/// How long one `XREAD` waits for new entries.
const BLOCK: Duration = Duration::from_secs(1);

/// Publishes to and reads from the shared events stream.
#[derive(Debug)]
pub struct RedisFeed {
    /// Publishes and fills the ring at start-up.
    client: Client,
    /// Only for the blocking `XREAD`.
    reader: Client,
    key: String,
    retained: usize,
    block: Duration,
    /// Events published and waiting for this instance's next `XADD`.
    pending: GroupCommit<LiveEvent>,
    /// Events per entry lately: the stream is capped near `retained`
    /// events, so near `retained / per_entry` entries.
    per_entry: PerEntry,
}

/// An event as an entry's array holds it.
#[derive(serde::Serialize)]
enum Packed<'a> {
    #[serde(rename = "r")]
    Status(&'a ProbeResult),
    #[serde(rename = "n")]
    Notice(&'a LiveNotice),
}

#[derive(serde::Deserialize)]
enum Unpacked {
    #[serde(rename = "r")]
    Status(ProbeResult),
    #[serde(rename = "n")]
    Notice(LiveNotice),
}

impl From<Unpacked> for LiveEvent {
    fn from(event: Unpacked) -> Self {
        match event {
            Unpacked::Status(r) => Self::Status(Arc::new(r)),
            Unpacked::Notice(n) => Self::Notice(Arc::new(n)),
        }
    }
}

type Entry = (String, HashMap<String, String>);

impl RedisFeed {
    /// Connects (without waiting: an outage is handled like any other).
    pub fn connect(url: &str, prefix: &str, retained: usize) -> anyhow::Result<Self> {
        let config = Config::from_url(url).context("parsing REDIS_URL")?;
        let client = Builder::from_config(config)
            .with_connection_config(|c| {
                c.connection_timeout = Duration::from_secs(2);
                c.internal_command_timeout = Duration::from_secs(2);
                c.max_command_attempts = 1;
            })
            // For publishes and the fill; the blocking read sets its own
            // (three times its `BLOCK`).
            .with_performance_config(|p| p.default_command_timeout = BLOCK * 3)
            .set_policy(ReconnectPolicy::new_exponential(0, 100, 2_000, 2))
            .build()
            .context("building the Redis client for live events")?;
        let reader = client.clone_new();
        client.connect();
        reader.connect();
        Ok(Self {
            client,
            reader,
            key: format!("{prefix}:events"),
            retained,
            block: BLOCK,
            pending: GroupCommit::default(),
            per_entry: PerEntry::default(),
        })
    }

    /// How long one `XREAD` waits for new entries (default 1 s; its client's
    /// command timeout is three times as long).
    #[must_use]
    pub fn block_for(mut self, block: Duration) -> Self {
        self.block = block;
        self
    }

    /// `MAXLEN ~` for about `retained` events at the recent packing.
    fn cap(&self) -> (&'static str, &'static str, i64) {
        let entries = self.retained.div_ceil(self.per_entry.get());
        ("MAXLEN", "~", i64::try_from(entries).unwrap_or(i64::MAX))
    }

    /// Adds an event to the stream. Events published while this instance's
    /// previous `XADD` is in flight wait for it and go together, up to
    /// [`PACK`] to an entry. A failure is logged and the events lost (a
    /// result itself is kept by the buffer).
    pub async fn publish(&self, event: LiveEvent) {
        self.pending.submit([event], |all| self.write(all)).await;
    }

    /// Adds events to the stream in order, as [`Self::publish`].
    pub async fn publish_all(&self, events: Vec<LiveEvent>) {
        if events.is_empty() {
            return;
        }
        self.pending.submit(events, |all| self.write(all)).await;
    }

    /// One entry per [`PACK`] events, the entries pipelined on the one
    /// connection.
    async fn write(&self, events: Vec<LiveEvent>) {
        let added =
            futures_util::future::join_all(events.chunks(PACK).map(|pack| self.xadd(pack))).await;
        if let Some(Err(e)) = added.iter().find(|r| r.is_err()) {
            tracing::debug!(error = %e, "live events not published");
        }
    }

    async fn xadd(&self, events: &[LiveEvent]) -> anyhow::Result<()> {
        let packed: Vec<Packed<'_>> = events
            .iter()
            .map(|e| match e {
                LiveEvent::Status(r) => Packed::Status(r),
                LiveEvent::Notice(n) => Packed::Notice(n),
            })
            .collect();
        let json = serde_json::to_string(&packed)?;
        let _: String = self
            .client
            .xadd(
                &self.key,
                false,
                self.cap(),
                "*",
                vec![(COUNT, events.len().to_string()), (PACKED, json)],
            )
            .await?;
        self.per_entry.saw(events.len(), 1);
        Ok(())
    }

    /// The events of one entry, oldest first (an unreadable one: none).
    fn events_of(fields: &HashMap<String, String>) -> Vec<LiveEvent> {
        if let Some(json) = fields.get(PACKED) {
            return serde_json::from_str::<Vec<Unpacked>>(json)
                .map(|events| events.into_iter().map(LiveEvent::from).collect())
                .unwrap_or_default();
        }
        let event = if let Some(json) = fields.get(FIELD) {
            serde_json::from_str::<ProbeResult>(json)
                .ok()
                .map(|r| LiveEvent::Status(Arc::new(r)))
        } else {
            fields
                .get(NOTICE)
                .and_then(|json| serde_json::from_str::<LiveNotice>(json).ok())
                .map(|n| LiveEvent::Notice(Arc::new(n)))
        };
        event.into_iter().collect()
    }

    /// Puts the entries' events in the ring under their keys (see
    /// [`STRIDE`]); returns the last entry's id, where a read goes on.
    fn decode(hub: &Hub, entries: Vec<Entry>) -> Option<Key> {
        let mut last = None;
        for (id, fields) in entries {
            let Some(entry) = Key::parse_redis_id(&id) else {
                continue;
            };
            last = Some(entry);
            let first = entry.1.saturating_mul(STRIDE);
            for (place, event) in (0..STRIDE).zip(Self::events_of(&fields)) {
                hub.publish_at(Key(entry.0, first + place), event);
            }
        }
        last
    }

    /// Fills the ring with the newest `retained` events or so; returns the
    /// entry id where to read on.
    async fn fill(&self, hub: &Hub) -> anyhow::Result<Key> {
        let mut newest: Vec<Entry> = Vec::new();
        let mut events = 0;
        let mut end = "+".to_owned();
        while events < self.retained {
            let page: Vec<Entry> = self
                .client
                .xrevrange_values(&self.key, &end, "-", Some(FILL_PAGE))
                .await?;
            let Some((oldest, _)) = page.last() else {
                break;
            };
            // Exclusive: the next page ends before this one's oldest.
            end = format!("({oldest}");
            events += page.iter().map(|(_, f)| count_of(f, COUNT)).sum::<usize>();
            let full = page.len() as u64 == FILL_PAGE;
            newest.extend(page);
            if !full {
                break;
            }
        }
        newest.reverse();
        let first = newest
            .first()
            .and_then(|(id, _)| Key::parse_redis_id(id))
            .map(|k| Key(k.0, k.1.saturating_mul(STRIDE)));
        // Everything before the first event kept is not kept here.
        let floor = first.map_or(Key(now_ms(), 0), |k| {
            if k.1 > 0 {
                Key(k.0, k.1 - 1)
            } else {
                Key(k.0.saturating_sub(1), u64::MAX)
            }
        });
        hub.start_after(floor);
        Ok(Self::decode(hub, newest).unwrap_or(Key(floor.0, 0)))
    }

    /// Reads the stream into `hub` until `shutdown`.
    pub async fn run(self: Arc<Self>, hub: Arc<Hub>, shutdown: CancellationToken) {
        let mut outage = OutageLog::new("live events");
        let mut from = None;
        loop {
            let step = async {
                let at = match from {
                    Some(at) => at,
                    None => self.fill(&hub).await?,
                };
                let id = format!("{}-{}", at.0, at.1);
                let reply: fred::types::Value = self
                    .reader
                    .with_options(&Options {
                        timeout: Some(self.block * 3),
                        ..Options::default()
                    })
                    .xread(
                        Some(READ_AT_ONCE),
                        Some(u64::try_from(self.block.as_millis()).unwrap_or(1000)),
                        &self.key,
                        id,
                    )
                    .await?;
                anyhow::Ok(Self::decode(&hub, entries_read(reply)?).unwrap_or(at))
            };
            let result = tokio::select! {
                () = shutdown.cancelled() => return,
                r = step => r,
            };
            outage.record(
                &result
                    .as_ref()
                    .map(|_| ())
                    .map_err(|e| anyhow::anyhow!("{e:#}")),
            );
            match result {
                Ok(at) => from = Some(at),
                Err(_) => {
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
    }
}

/// The entries of an `XREAD` reply. A read that waited its whole `BLOCK`
/// for nothing is a null reply, which fred's `xread_map` refuses ("Cannot
/// convert to map"): that read failed, and at start-up the next one filled
/// the ring again from an empty stream, moving its start past watchers
/// that had just begun (they were told their place was gone).
fn entries_read(reply: fred::types::Value) -> Result<Vec<Entry>, Error> {
    if reply.is_null() {
        return Ok(Vec::new());
    }
    let read: fred::types::streams::XReadResponse<String, String, String, String> =
        reply.into_xread_response()?;
    Ok(read.into_values().flatten().collect())
}

fn now_ms() -> u64 {
    u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use fred::types::Value;

    use super::entries_read;

    fn s(x: &str) -> Value {
        Value::String(x.into())
    }

    #[test]
    fn a_read_that_timed_out_has_no_entries_and_others_have_theirs() {
        assert!(entries_read(Value::Null).unwrap().is_empty());
        let entry = |id: &str| Value::Array(vec![s(id), Value::Array(vec![s("r"), s("{}")])]);
        let reply = Value::Array(vec![Value::Array(vec![
            s("prefix:events"),
            Value::Array(vec![entry("1-0"), entry("1-1")]),
        ])]);
        let entries = entries_read(reply).unwrap();
        let ids: Vec<&str> = entries.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["1-0", "1-1"]);
        assert_eq!(entries[0].1.get("r").map(String::as_str), Some("{}"));
    }
}
