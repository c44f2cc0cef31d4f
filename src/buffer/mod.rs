//! The buffer between the prober and the store.
//!
//! Probes push results here; the flush task reads batches, writes them to the
//! database and only then acknowledges them, so a crash between read and
//! write loses nothing (the batch is read again, and the store's unique
//! `(url_id, due_at)` makes a second write add nothing). Two
//! implementations: Redis (shared by all instances, survives restarts) and
//! in-process (the embedded default).

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

/// A batch read from the buffer, to be acknowledged once stored.
#[derive(Debug, Default)]
pub struct Batch {
    pub results: Vec<ProbeResult>,
    pub(crate) receipt: Receipt,
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

    /// Results waiting to be flushed.
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
