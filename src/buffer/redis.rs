//! The Redis buffer: a stream with a consumer group.
//!
//! Probes `XADD` results to `<prefix>:results`, packed: results pushed
//! while this instance's previous `XADD` is in flight wait for it and then
//! go together, up to [`PACK`] to one stream entry (a group commit: each
//! push still returns only once its result is in Redis or kept locally).
//! Under load one command carries tens of results, so Redis, and this
//! process's side of the connection, spend per entry what they spent per
//! result. The flush task of each
//! instance reads with `XREADGROUP` as its own consumer, stores the batch,
//! then `XACK`s and `XDEL`s it. Entries read but never acknowledged (the
//! database was down, or the instance died mid-flush) stay pending: the same
//! instance reads its own pending entries first, and entries idle longer than
//! `claim_idle` under another consumer are taken over with `XAUTOCLAIM`.
//!
//! While Redis is unreachable, results wait in a bounded local queue and are
//! moved to the stream once it is back. A command that timed out may still
//! have reached Redis, so an entry can arrive twice; the store's unique
//! `(url_id, due_at)` drops the second.

use std::{collections::VecDeque, sync::Mutex, time::Duration};

use anyhow::Context;
use fred::{
    prelude::*,
    types::streams::{XReadResponse, XReadValue},
};

use super::{
    Batch, BatchTrigger, Buffer, Receipt,
    group::{GroupCommit, PACK, PerEntry, count_of},
};
use crate::domain::ProbeResult;

const GROUP: &str = "flushers";
/// One result (entries written before results were packed; still read).
const FIELD: &str = "r";
/// A JSON array of results.
const PACKED: &str = "b";
/// How many results `PACKED` holds: counted without decoding.
const COUNT: &str = "n";

#[derive(Debug)]
pub struct RedisBuffer {
    client: Client,
    key: String,
    consumer: String,
    claim_idle: Duration,
    local: Mutex<VecDeque<ProbeResult>>,
    local_capacity: usize,
    trigger: BatchTrigger,
    command_timeout: Duration,
    /// Results pushed and waiting for the next `XADD` of this instance.
    pushes: GroupCommit<ProbeResult>,
    /// Results per stream entry lately, written or read here: how many
    /// entries a read asks for, and the backlog's estimate.
    per_entry: PerEntry,
}

impl RedisBuffer {
    /// Connects (without waiting for Redis to be up: an outage at start-up
    /// is handled like any other) and creates the consumer group.
    pub async fn connect(
        url: &str,
        prefix: &str,
        consumer: String,
        local_capacity: usize,
        batch_size: usize,
    ) -> anyhow::Result<Self> {
        let config = Config::from_url(url).context("parsing REDIS_URL")?;
        let command_timeout = Duration::from_secs(2);
        let client = Builder::from_config(config)
            .with_connection_config(|c| {
                c.connection_timeout = Duration::from_secs(2);
                c.internal_command_timeout = Duration::from_secs(2);
                c.max_command_attempts = 1;
            })
            .with_performance_config(|p| p.default_command_timeout = command_timeout)
            .set_policy(ReconnectPolicy::new_exponential(0, 100, 2_000, 2))
            .build()
            .context("building the Redis client")?;
        client.connect();
        let buffer = Self {
            client,
            key: format!("{prefix}:results"),
            consumer,
            claim_idle: Duration::from_secs(30),
            local: Mutex::new(VecDeque::new()),
            local_capacity,
            trigger: BatchTrigger::new(batch_size),
            command_timeout,
            pushes: GroupCommit::default(),
            per_entry: PerEntry::default(),
        };
        if let Ok(Ok(())) =
            tokio::time::timeout(Duration::from_secs(5), buffer.client.wait_for_connect()).await
        {
            buffer.ensure_group().await?;
        } else {
            tracing::error!(
                "Redis unreachable at start-up: results are kept locally until it is back"
            );
        }
        Ok(buffer)
    }

    async fn ensure_group(&self) -> anyhow::Result<()> {
        let created: Result<(), Error> =
            self.client.xgroup_create(&self.key, GROUP, "0", true).await;
        match created {
            Ok(()) => Ok(()),
            Err(e) if e.details().contains("BUSYGROUP") => Ok(()),
            Err(e) => Err(e).context("creating the Redis consumer group"),
        }
    }

    fn opts(&self) -> fred::clients::WithOptions<Client> {
        self.client.with_options(&Options {
            fail_fast: true,
            timeout: Some(self.command_timeout),
            max_attempts: Some(1),
            ..Options::default()
        })
    }

    /// One stream entry holding `results` (at most [`PACK`]).
    async fn xadd(&self, results: &[ProbeResult]) -> anyhow::Result<()> {
        let json = serde_json::to_string(results)?;
        let _: String = self
            .opts()
            .xadd(
                &self.key,
                false,
                None,
                "*",
                vec![(COUNT, results.len().to_string()), (PACKED, json)],
            )
            .await?;
        self.per_entry.saw(results.len(), 1);
        Ok(())
    }

    /// Writes what was queued, [`PACK`] to an entry, the entries pipelined
    /// on the one connection; what fails is kept locally.
    async fn write(&self, results: Vec<ProbeResult>) {
        let backed_up = !self.local.lock().expect("local queue poisoned").is_empty();
        if backed_up {
            // Keep order simple: while anything waits locally, queue behind it.
            for r in results {
                self.keep_locally(r);
            }
            self.move_local().await;
            return;
        }
        let packs: Vec<&[ProbeResult]> = results.chunks(PACK).collect();
        let written = futures_util::future::join_all(packs.iter().map(|p| self.xadd(p))).await;
        for (pack, outcome) in packs.into_iter().zip(written) {
            if let Err(e) = outcome {
                tracing::warn!(
                    error = format!("{e:#}"),
                    results = pack.len(),
                    "Redis unreachable: keeping the results locally"
                );
                for r in pack {
                    self.keep_locally(r.clone());
                }
            }
        }
    }

    fn keep_locally(&self, result: ProbeResult) {
        let mut local = self.local.lock().expect("local queue poisoned");
        if local.len() >= self.local_capacity {
            local.pop_front();
            tracing::error!(
                capacity = self.local_capacity,
                "local queue full while Redis is down: dropped the oldest result"
            );
        }
        local.push_back(result);
    }

    /// The results of `entries` (`holding` of them, by their counts) and
    /// the entries' ids.
    fn decode(
        entries: Vec<XReadValue<String, String, String>>,
        holding: usize,
    ) -> (Vec<ProbeResult>, Vec<String>) {
        let mut results = Vec::with_capacity(holding);
        let mut ids = Vec::with_capacity(entries.len());
        for (id, fields) in entries {
            // Not ours or corrupt: acknowledged anyway, so it does not block the stream.
            let decoded = if let Some(packed) = fields.get(PACKED) {
                serde_json::from_str::<Vec<ProbeResult>>(packed).ok()
            } else {
                fields
                    .get(FIELD)
                    .and_then(|v| serde_json::from_str::<ProbeResult>(v).ok())
                    .map(|r| vec![r])
            };
            if let Some(rs) = decoded {
                results.extend(rs);
            } else {
                tracing::error!(%id, "skipping an unreadable stream entry");
            }
            ids.push(id);
        }
        (results, ids)
    }

    /// Moves locally kept results to the stream, [`PACK`] at a time, until
    /// one fails. Only with the writer held: one mover at a time.
    async fn move_local(&self) -> usize {
        let mut moved = 0;
        loop {
            let next: Vec<ProbeResult> = self
                .local
                .lock()
                .expect("local queue poisoned")
                .iter()
                .take(PACK)
                .cloned()
                .collect();
            if next.is_empty() || self.xadd(&next).await.is_err() {
                break;
            }
            // Only the writer's holder moves from the front; others only
            // add at the back: the front is still `next`.
            let mut local = self.local.lock().expect("local queue poisoned");
            let n = next.len().min(local.len());
            local.drain(..n);
            moved += n;
        }
        if moved > 0 {
            tracing::info!(moved, "moved locally kept results to Redis");
        }
        moved
    }

    async fn read_group(
        &self,
        max: usize,
        from: &str,
    ) -> anyhow::Result<Vec<XReadValue<String, String, String>>> {
        // Nil when there is nothing to read: no map to convert.
        let value: Value = self
            .opts()
            .xreadgroup(
                GROUP,
                &self.consumer,
                Some(max as u64),
                None,
                false,
                &self.key,
                from,
            )
            .await?;
        if value.is_null() {
            return Ok(Vec::new());
        }
        let resp: XReadResponse<String, String, String, String> = value.into_xread_response()?;
        Ok(resp.into_values().next().unwrap_or_default())
    }
}

#[tonic::async_trait]
impl Buffer for RedisBuffer {
    async fn push(&self, result: ProbeResult) {
        self.pushes
            .submit([result], |queued| self.write(queued))
            .await;
        self.trigger.pushed();
    }

    async fn retry_local(&self) -> usize {
        let _writer = self.pushes.exclusive().await;
        self.move_local().await
    }

    async fn read(&self, max: usize) -> anyhow::Result<Batch> {
        let max = max.max(1);
        // Entries for `max` results at the recent packing; a stale estimate
        // (one result each, then a backlog of full entries) reads at most
        // eight batches' worth.
        let count = max
            .div_ceil(self.per_entry.get())
            .min((8 * max).div_ceil(PACK).max(256));
        let pending = match self.read_group(count, "0").await {
            Ok(p) => p,
            Err(e) if format!("{e:#}").contains("NOGROUP") => {
                self.ensure_group().await?;
                Vec::new()
            }
            Err(e) => return Err(e),
        };
        let (mut entries, old) = if pending.is_empty() {
            let idle = u64::try_from(self.claim_idle.as_millis()).unwrap_or(u64::MAX);
            let (_, claimed): (String, Vec<XReadValue<String, String, String>>) = self
                .opts()
                .xautoclaim_values(
                    &self.key,
                    GROUP,
                    &self.consumer,
                    idle,
                    "0-0",
                    Some(count as u64),
                    false,
                )
                .await?;
            if claimed.is_empty() {
                (self.read_group(count, ">").await?, false)
            } else {
                tracing::info!(
                    entries = claimed.len(),
                    "took over results another instance left pending"
                );
                (claimed, true)
            }
        } else {
            (pending, true)
        };
        let counts: Vec<usize> = entries.iter().map(|(_, f)| count_of(f, COUNT)).collect();
        self.per_entry.saw(counts.iter().sum(), counts.len());
        // Whole entries up to `max` results (at least one); the rest stay
        // pending to this consumer and come first in the next read.
        let mut take = 0;
        let mut results = 0;
        while take < counts.len() && (take == 0 || results + counts[take] <= max) {
            results += counts[take];
            take += 1;
        }
        let full = entries.len() >= count || take < entries.len();
        entries.truncate(take);
        let (results, ids) = Self::decode(entries, results);
        Ok(Batch {
            results,
            receipt: Receipt::Ids(ids),
            // Pending or taken-over entries came first: new ones may wait.
            more: full || old,
        })
    }

    async fn ack(&self, batch: Batch) -> anyhow::Result<()> {
        if let Receipt::Ids(ids) = batch.receipt
            && !ids.is_empty()
        {
            let _: u64 = self.opts().xack(&self.key, GROUP, ids.clone()).await?;
            let _: u64 = self.opts().xdel(&self.key, ids).await?;
        }
        Ok(())
    }

    async fn backlog(&self) -> anyhow::Result<u64> {
        let entries: u64 = self.opts().xlen(&self.key).await?;
        let per_entry = self.per_entry.get() as u64;
        let local = self.local.lock().expect("local queue poisoned").len() as u64;
        Ok(entries.saturating_mul(per_entry) + local)
    }

    fn batch_ready(&self) -> &BatchTrigger {
        &self.trigger
    }
}
