//! A group commit: items submitted while the previous write is in flight
//! wait for it and are then written together, by whichever submitter takes
//! the writer next. Each submit returns once its item was written (or its
//! write failed and was handled by the writer), so callers keep the
//! back-pressure of one round trip, and a Redis command carries as many
//! items as arrived during the last one.

use std::{
    collections::HashMap,
    future::Future,
    hash::BuildHasher,
    sync::{
        Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

/// Items in one Redis stream entry at most (the results buffer's and the
/// live stream's).
pub const PACK: usize = 128;

/// How many items an entry holds, from its count `field` alone (an entry
/// without one holds one item).
pub fn count_of<S: BuildHasher>(fields: &HashMap<String, String, S>, field: &str) -> usize {
    fields
        .get(field)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
        .max(1)
}

#[derive(Debug)]
pub struct GroupCommit<T> {
    /// Submitted, waiting for the next write.
    queued: Mutex<Vec<T>>,
    /// Held by the submitter that writes what is queued.
    writer: tokio::sync::Mutex<()>,
}

impl<T> Default for GroupCommit<T> {
    fn default() -> Self {
        Self {
            queued: Mutex::new(Vec::new()),
            writer: tokio::sync::Mutex::new(()),
        }
    }
}

impl<T> GroupCommit<T> {
    /// Queues `items` and returns once a `write` (this call's or an earlier
    /// submitter's) took them. `write` gets everything queued, oldest first.
    pub async fn submit<F, Fut>(&self, items: impl IntoIterator<Item = T>, write: F)
    where
        F: FnOnce(Vec<T>) -> Fut,
        Fut: Future<Output = ()>,
    {
        self.queue().extend(items);
        // When this call holds the writer, its items are either still queued
        // (taken below) or were taken, and written, by a holder before.
        let _writer = self.writer.lock().await;
        let queued = std::mem::take(&mut *self.queue());
        if !queued.is_empty() {
            write(queued).await;
        }
    }

    /// The writer alone, for work that must not overlap a write.
    pub async fn exclusive(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.writer.lock().await
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Vec<T>> {
        self.queued
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Items per written entry lately (at least 1): a moving average, an
/// eighth per observation, kept eightfold so that it settles on the items
/// per entry in either direction (an integer average of its own would
/// stop short).
#[derive(Debug)]
pub struct PerEntry(AtomicUsize);

impl Default for PerEntry {
    fn default() -> Self {
        Self(AtomicUsize::new(8))
    }
}

impl PerEntry {
    /// Folds `items` in `entries` into the average.
    pub fn saw(&self, items: usize, entries: usize) {
        if entries == 0 {
            return;
        }
        let sample = items.div_ceil(entries);
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |eight| {
                Some(eight - eight / 8 + sample)
            });
    }

    pub fn get(&self) -> usize {
        (self.0.load(Ordering::Relaxed) / 8).max(1)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    };

    use super::GroupCommit;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_item_is_written_once_in_fewer_writes_than_items() {
        let group = Arc::new(GroupCommit::default());
        let written = Arc::new(Mutex::new(Vec::new()));
        let writes = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..500)
            .map(|i| {
                let (group, written, writes) = (group.clone(), written.clone(), writes.clone());
                tokio::spawn(async move {
                    group
                        .submit([i], |items| {
                            let written = written.clone();
                            async move {
                                writes.fetch_add(1, Ordering::Relaxed);
                                tokio::task::yield_now().await;
                                written.lock().unwrap().extend(items);
                            }
                        })
                        .await;
                    // Returned: its item is written.
                    assert!(written.lock().unwrap().contains(&i));
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let mut all = written.lock().unwrap().clone();
        all.sort_unstable();
        assert_eq!(all, (0..500).collect::<Vec<_>>());
        assert!(writes.load(Ordering::Relaxed) <= 500);
    }

    #[test]
    fn the_average_follows_what_entries_hold_and_stays_at_least_one() {
        let per = super::PerEntry::default();
        assert_eq!(per.get(), 1);
        per.saw(10, 0);
        assert_eq!(per.get(), 1, "no entries: nothing to learn");
        for _ in 0..80 {
            per.saw(128, 1);
        }
        assert_eq!(per.get(), 128);
        for _ in 0..80 {
            per.saw(1, 1);
        }
        assert_eq!(per.get(), 1);
    }
}
