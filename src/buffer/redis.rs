//! The Redis buffer: a stream with a consumer group.
//!
//! Probes `XADD` results to `<prefix>:results`. The flush task of each
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

use super::{Batch, BatchTrigger, Buffer, Receipt};
use crate::domain::ProbeResult;

const GROUP: &str = "flushers";
const FIELD: &str = "r";

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

    async fn xadd(&self, result: &ProbeResult) -> anyhow::Result<()> {
        let json = serde_json::to_string(result)?;
        let _: String = self
            .opts()
            .xadd(&self.key, false, None, "*", vec![(FIELD, json)])
            .await?;
        Ok(())
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

    fn decode(entries: Vec<XReadValue<String, String, String>>) -> (Vec<ProbeResult>, Vec<String>) {
        let mut results = Vec::with_capacity(entries.len());
        let mut ids = Vec::with_capacity(entries.len());
        for (id, fields) in entries {
            // Not ours or corrupt: acknowledged anyway, so it does not block the stream.
            if let Some(Ok(r)) = fields
                .get(FIELD)
                .map(|v| serde_json::from_str::<ProbeResult>(v))
            {
                results.push(r);
            } else {
                tracing::error!(%id, "skipping an unreadable stream entry");
            }
            ids.push(id);
        }
        (results, ids)
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
        let backed_up = !self.local.lock().expect("local queue poisoned").is_empty();
        if backed_up {
            // Keep order simple: while anything waits locally, queue behind it.
            self.keep_locally(result);
            self.retry_local().await;
        } else if let Err(e) = self.xadd(&result).await {
            tracing::warn!(
                error = format!("{e:#}"),
                "Redis unreachable: keeping the result locally"
            );
            self.keep_locally(result);
        }
        self.trigger.pushed();
    }

    async fn retry_local(&self) -> usize {
        let mut moved = 0;
        loop {
            let next = self
                .local
                .lock()
                .expect("local queue poisoned")
                .front()
                .cloned();
            let Some(result) = next else { break };
            if self.xadd(&result).await.is_err() {
                break;
            }
            self.local.lock().expect("local queue poisoned").pop_front();
            moved += 1;
        }
        if moved > 0 {
            tracing::info!(moved, "moved locally kept results to Redis");
        }
        moved
    }

    async fn read(&self, max: usize) -> anyhow::Result<Batch> {
        let pending = match self.read_group(max, "0").await {
            Ok(p) => p,
            Err(e) if format!("{e:#}").contains("NOGROUP") => {
                self.ensure_group().await?;
                Vec::new()
            }
            Err(e) => return Err(e),
        };
        let entries = if pending.is_empty() {
            let idle = u64::try_from(self.claim_idle.as_millis()).unwrap_or(u64::MAX);
            let (_, claimed): (String, Vec<XReadValue<String, String, String>>) = self
                .opts()
                .xautoclaim_values(
                    &self.key,
                    GROUP,
                    &self.consumer,
                    idle,
                    "0-0",
                    Some(max as u64),
                    false,
                )
                .await?;
            if claimed.is_empty() {
                self.read_group(max, ">").await?
            } else {
                tracing::info!(
                    count = claimed.len(),
                    "took over results another instance left pending"
                );
                claimed
            }
        } else {
            pending
        };
        let (results, ids) = Self::decode(entries);
        Ok(Batch {
            results,
            receipt: Receipt::Ids(ids),
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
        let len: u64 = self.opts().xlen(&self.key).await?;
        Ok(len + self.local.lock().expect("local queue poisoned").len() as u64)
    }

    fn batch_ready(&self) -> &BatchTrigger {
        &self.trigger
    }
}
