//! Live events: what WatchEvents streams, kept in a bounded ring.
//!
//! The prober's results are published here as they are pushed to the buffer
//! ([`LiveBuffer`]), each with the next sequence number. A watcher reads the
//! ring from the position after its last event and is woken when more come.
//! The ring keeps the last `retained` events: a resume token older than
//! that, or minted by another run of the process (its `epoch` differs), is
//! out of range. Nothing here touches the database, so the stream keeps
//! going when the database is down.
//!
//! A resume token is `<epoch>.<sequence>`: the epoch is random per process
//! start, the sequence counts from 1.

use std::{collections::VecDeque, fmt, sync::Arc};

use tokio::sync::watch;

use crate::{
    buffer::{Batch, BatchTrigger, Buffer},
    domain::ProbeResult,
};

/// What the ring keeps.
#[derive(Debug, Clone)]
pub enum LiveEvent {
    Status(Arc<ProbeResult>),
}

impl LiveEvent {
    pub fn url_id(&self) -> i64 {
        match self {
            Self::Status(r) => r.url_id,
        }
    }
}

/// A position in the ring, as a client holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub epoch: u32,
    pub seq: u64,
}

impl Position {
    pub fn token(self) -> String {
        format!("{:08x}.{}", self.epoch, self.seq)
    }

    /// None when `token` is not one this service writes.
    pub fn parse(token: &str) -> Option<Self> {
        let (epoch, seq) = token.split_once('.')?;
        if epoch.len() != 8 {
            return None;
        }
        Some(Self {
            epoch: u32::from_str_radix(epoch, 16).ok()?,
            seq: seq.parse().ok()?,
        })
    }
}

/// Why a watcher cannot go on from where it asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gone {
    /// Events after the position were dropped from the ring, or the
    /// position is from another run of the process.
    OutOfRange,
}

struct Ring {
    /// (sequence, event), oldest first.
    events: VecDeque<(u64, LiveEvent)>,
    /// The last sequence handed out (0: none yet).
    last: u64,
}

/// The ring and the watchers' wake-up.
pub struct Hub {
    epoch: u32,
    retained: usize,
    ring: std::sync::Mutex<Ring>,
    /// The last sequence published; watchers wait for it to change.
    latest: watch::Sender<u64>,
}

impl fmt::Debug for Hub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hub")
            .field("epoch", &self.epoch)
            .field("retained", &self.retained)
            .finish_non_exhaustive()
    }
}

impl Hub {
    pub fn new(retained: usize) -> Self {
        Self {
            epoch: rand::random(),
            retained: retained.max(1),
            ring: std::sync::Mutex::new(Ring {
                events: VecDeque::new(),
                last: 0,
            }),
            latest: watch::channel(0).0,
        }
    }

    fn ring(&self) -> std::sync::MutexGuard<'_, Ring> {
        self.ring
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds an event; the oldest goes when the ring is full.
    pub fn publish(&self, event: LiveEvent) {
        let seq = {
            let mut ring = self.ring();
            ring.last += 1;
            let seq = ring.last;
            if ring.events.len() == self.retained {
                ring.events.pop_front();
            }
            ring.events.push_back((seq, event));
            seq
        };
        self.latest.send_replace(seq);
    }

    /// The position of the newest event (where a new watcher starts).
    pub fn now(&self) -> Position {
        Position {
            epoch: self.epoch,
            seq: self.ring().last,
        }
    }

    /// Checks that a watcher can go on from `from`.
    pub fn check(&self, from: Position) -> Result<(), Gone> {
        let ring = self.ring();
        let oldest = ring.events.front().map_or(ring.last + 1, |(s, _)| *s);
        if from.epoch != self.epoch || from.seq > ring.last || from.seq + 1 < oldest {
            return Err(Gone::OutOfRange);
        }
        Ok(())
    }

    /// Up to `max` events after `from`, oldest first.
    pub fn after(&self, from: Position, max: usize) -> Result<Vec<(u64, LiveEvent)>, Gone> {
        let ring = self.ring();
        let oldest = ring.events.front().map_or(ring.last + 1, |(s, _)| *s);
        if from.epoch != self.epoch || from.seq + 1 < oldest {
            return Err(Gone::OutOfRange);
        }
        let skip = usize::try_from((from.seq + 1).saturating_sub(oldest)).unwrap_or(usize::MAX);
        Ok(ring.events.iter().skip(skip).take(max).cloned().collect())
    }

    /// A receiver that changes when an event is published.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.latest.subscribe()
    }

    pub fn epoch(&self) -> u32 {
        self.epoch
    }
}

/// The buffer, publishing each result pushed to it.
#[derive(Debug)]
pub struct LiveBuffer {
    inner: Arc<dyn Buffer>,
    hub: Arc<Hub>,
}

impl LiveBuffer {
    pub fn new(inner: Arc<dyn Buffer>, hub: Arc<Hub>) -> Self {
        Self { inner, hub }
    }
}

#[tonic::async_trait]
impl Buffer for LiveBuffer {
    async fn push(&self, result: ProbeResult) {
        self.hub
            .publish(LiveEvent::Status(Arc::new(result.clone())));
        self.inner.push(result).await;
    }

    async fn read(&self, max: usize) -> anyhow::Result<Batch> {
        self.inner.read(max).await
    }

    async fn ack(&self, batch: Batch) -> anyhow::Result<()> {
        self.inner.ack(batch).await
    }

    async fn backlog(&self) -> anyhow::Result<u64> {
        self.inner.backlog().await
    }

    async fn retry_local(&self) -> usize {
        self.inner.retry_local().await
    }

    fn batch_ready(&self) -> &BatchTrigger {
        self.inner.batch_ready()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(url_id: i64, due_ms: i64) -> LiveEvent {
        LiveEvent::Status(Arc::new(ProbeResult {
            url_id,
            due_ms,
            started_us: due_ms * 1000,
            status_code: 200,
            latency_us: 1000,
            error_kind: None,
            error_message: None,
            verdict: None,
            failed_assertions: Vec::new(),
            tls_not_after_ms: None,
        }))
    }

    fn seqs(events: &[(u64, LiveEvent)]) -> Vec<u64> {
        events.iter().map(|(s, _)| *s).collect()
    }

    #[test]
    fn tokens_round_trip_and_others_are_refused() {
        let p = Position {
            epoch: 0xdead_beef,
            seq: 42,
        };
        assert_eq!(p.token(), "deadbeef.42");
        assert_eq!(Position::parse(&p.token()), Some(p));
        for bad in [
            "",
            "42",
            "xyz.1",
            "deadbeef.",
            "deadbeef.-1",
            "beef.1",
            "deadbeef.1.2",
        ] {
            assert_eq!(Position::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_watcher_gets_every_event_after_its_position_once_while_retained() {
        let hub = Hub::new(3);
        let start = hub.now();
        assert_eq!(start.seq, 0);
        assert!(hub.after(start, 10).unwrap().is_empty());
        for i in 1..=3 {
            hub.publish(result(1, i));
        }
        assert_eq!(seqs(&hub.after(start, 10).unwrap()), [1, 2, 3]);
        assert_eq!(seqs(&hub.after(start, 2).unwrap()), [1, 2]);
        let at2 = Position { seq: 2, ..start };
        assert_eq!(seqs(&hub.after(at2, 10).unwrap()), [3]);
        // A fourth event pushes the first out: from 0 is gone, from 1 is not.
        hub.publish(result(1, 4));
        assert_eq!(hub.after(start, 10).unwrap_err(), Gone::OutOfRange);
        assert_eq!(hub.check(start), Err(Gone::OutOfRange));
        let at1 = Position { seq: 1, ..start };
        assert_eq!(seqs(&hub.after(at1, 10).unwrap()), [2, 3, 4]);
        assert_eq!(hub.check(at1), Ok(()));
        // Another run's token, or one from the future.
        let other = Position {
            epoch: start.epoch.wrapping_add(1),
            seq: 3,
        };
        assert_eq!(hub.check(other), Err(Gone::OutOfRange));
        assert_eq!(
            hub.check(Position { seq: 99, ..start }),
            Err(Gone::OutOfRange)
        );
    }
}
