//! The in-process buffer of the embedded default: a bounded queue in memory.
//! Results not yet flushed are lost if the process dies (the flush interval
//! bounds how many); use Redis where that matters.

use std::{collections::VecDeque, sync::Mutex};

use super::{Batch, BatchTrigger, Buffer, Receipt};
use crate::domain::ProbeResult;

#[derive(Debug)]
pub struct MemoryBuffer {
    queue: Mutex<VecDeque<ProbeResult>>,
    capacity: usize,
    trigger: BatchTrigger,
}

impl MemoryBuffer {
    pub fn new(capacity: usize, batch_size: usize) -> Self {
        Self {
            queue: Mutex::new(VecDeque::new()),
            capacity,
            trigger: BatchTrigger::new(batch_size),
        }
    }
}

#[tonic::async_trait]
impl Buffer for MemoryBuffer {
    async fn push(&self, result: ProbeResult) {
        {
            let mut q = self.queue.lock().expect("buffer poisoned");
            if q.len() >= self.capacity {
                q.pop_front();
                tracing::error!(
                    capacity = self.capacity,
                    "buffer full: dropped the oldest result"
                );
            }
            q.push_back(result);
        }
        self.trigger.pushed();
    }

    async fn read(&self, max: usize) -> anyhow::Result<Batch> {
        let q = self.queue.lock().expect("buffer poisoned");
        let results: Vec<_> = q.iter().take(max).cloned().collect();
        let n = results.len();
        Ok(Batch {
            results,
            receipt: Receipt::Front(n),
            more: n > 0 && n == max,
        })
    }

    async fn ack(&self, batch: Batch) -> anyhow::Result<()> {
        if let Receipt::Front(n) = batch.receipt {
            // Only the flush task removes, so the front is still this batch.
            let mut q = self.queue.lock().expect("buffer poisoned");
            let n = n.min(q.len());
            q.drain(..n);
        }
        Ok(())
    }

    async fn backlog(&self) -> anyhow::Result<u64> {
        Ok(self.queue.lock().expect("buffer poisoned").len() as u64)
    }

    fn batch_ready(&self) -> &BatchTrigger {
        &self.trigger
    }
}
