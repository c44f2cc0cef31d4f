//! The buffer between the prober and the store.
//!
//! Probes push results here; the flush task reads batches, writes them to the
//! database and only then acknowledges them, so a crash between read and
//! write loses nothing (the batch is read again, and the store's unique
//! `(url_id, due_at)` makes a second write add nothing). Two
//! implementations: Redis (shared by all instances, survives restarts) and
//! in-process (the embedded default).

pub mod group;
pub mod memory;
pub mod redis;

use std::{
    fmt,
    sync::atomic::{AtomicUsize, Ordering},
};

use tokio::sync::Notify;

use crate::domain::ProbeResult;

pub use memory::MemoryBuffer;
pub use redis::RedisBuffer;

/// Where results wait between probe and store.
#[derive(Debug, Clone, clap::Args)]
pub struct BufferSettings {
    /// Results kept in process while Redis is unreachable (or, without Redis,
    /// waiting for the flush); past this the oldest are dropped.
    #[arg(long, env = "MONITOR_LOCAL_QUEUE_CAPACITY", default_value_t = 200_000)]
    pub local_queue_capacity: usize,

    /// Prefix of this deployment's Redis keys.
    #[arg(long, env = "MONITOR_REDIS_PREFIX", default_value = "monitor")]
    pub redis_prefix: String,

    /// This instance's name as a Redis consumer (default: host name, pid and a random suffix).
    #[arg(long, env = "MONITOR_INSTANCE_ID")]
    pub instance_id: Option<String>,
}

impl BufferSettings {
    pub fn validate(&self) -> Result<(), crate::error::SettingsError> {
        use crate::error::check_setting;
        check_setting(
            self.local_queue_capacity > 0,
            "MONITOR_LOCAL_QUEUE_CAPACITY",
            "must be at least 1",
        )?;
        check_setting(
            !self.redis_prefix.is_empty() && !self.redis_prefix.contains(char::is_whitespace),
            "MONITOR_REDIS_PREFIX",
            "must be non-empty, without spaces",
        )
    }

    /// This instance's consumer name.
    pub fn consumer(&self) -> String {
        self.instance_id.clone().unwrap_or_else(|| {
            let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "monitor".into());
            format!(
                "{host}-{}-{:08x}",
                std::process::id(),
                rand::random::<u32>()
            )
        })
    }
}

/// A batch read from the buffer, to be acknowledged once stored.
#[derive(Debug, Default)]
pub struct Batch {
    pub results: Vec<ProbeResult>,
    pub(crate) receipt: Receipt,
    /// The read stopped at a limit: more may be waiting already.
    pub more: bool,
}

#[derive(Debug, Default)]
pub(crate) enum Receipt {
    #[default]
    None,
    /// The in-process buffer: how many results from the front.
    Front(usize),
    /// Redis stream entry ids.
    Ids(Vec<String>),
}

#[tonic::async_trait]
pub trait Buffer: Send + Sync + fmt::Debug {
    /// Keeps a result until it is flushed. Never fails: what cannot be stored
    /// now is kept locally (bounded) and retried.
    async fn push(&self, result: ProbeResult);

    /// The next results to flush, oldest first; they stay until acknowledged.
    async fn read(&self, max: usize) -> anyhow::Result<Batch>;

    /// Removes a batch that has been stored.
    async fn ack(&self, batch: Batch) -> anyhow::Result<()>;

    /// Results waiting to be flushed (Redis: an estimate, its stream's
    /// entries times the results per entry this instance saw lately).
    async fn backlog(&self) -> anyhow::Result<u64>;

    /// Moves results kept locally during an outage to the shared buffer.
    async fn retry_local(&self) -> usize {
        0
    }

    /// Wakes when enough results arrived for a full batch.
    fn batch_ready(&self) -> &BatchTrigger;
}

/// Signals the flush task when `size` results were pushed since the last flush.
#[derive(Debug)]
pub struct BatchTrigger {
    size: usize,
    pushed: AtomicUsize,
    notify: Notify,
}

impl BatchTrigger {
    pub fn new(size: usize) -> Self {
        Self {
            size: size.max(1),
            pushed: AtomicUsize::new(0),
            notify: Notify::new(),
        }
    }

    pub fn pushed(&self) {
        if self.pushed.fetch_add(1, Ordering::Relaxed) + 1 >= self.size {
            self.pushed.store(0, Ordering::Relaxed);
            self.notify.notify_one();
        }
    }

    pub async fn wait(&self) {
        self.notify.notified().await;
    }
}
