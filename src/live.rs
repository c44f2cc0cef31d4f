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

pub mod redis;

use std::{collections::VecDeque, fmt, sync::Arc};

use tokio::sync::watch;

use crate::{
    buffer::{Batch, BatchTrigger, Buffer},
    domain::{ProbeResult, notification::LiveNotice},
};

/// What the ring keeps.
#[derive(Debug, Clone)]
pub enum LiveEvent {
    /// A probe's result, as it ended.
    Status(Arc<ProbeResult>),
    /// A state change or an incident event, once its flush committed.
    Notice(Arc<LiveNotice>),
}

impl LiveEvent {
    pub fn url_id(&self) -> i64 {
        match self {
            Self::Status(r) => r.url_id,
            Self::Notice(n) => n.url_id(),
        }
    }
}

/// A position in the ring: a local sequence number `(0, n)`, or a Redis
/// stream entry id `(ms, n)` when the events are shared through Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Key(pub u64, pub u64);

impl Key {
    /// A Redis stream entry id, `<ms>-<n>`.
    pub fn parse_redis_id(id: &str) -> Option<Self> {
        let (ms, n) = id.split_once('-')?;
        Some(Self(ms.parse().ok()?, n.parse().ok()?))
    }
}

/// Why a resume token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gone {
    /// Not a token this service writes.
    Malformed,
    /// Events after it were dropped from the ring, or it is from another
    /// run of the process.
    OutOfRange,
}

/// Where the ring's events come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// This process's results, numbered here; tokens `<epoch>.<n>`.
    Local { epoch: u32 },
    /// The shared Redis stream, numbered by Redis; tokens `<ms>-<n>`,
    /// good on every instance.
    Shared,
}

struct Ring {
    /// (key, event), oldest first.
    events: VecDeque<(Key, LiveEvent)>,
    /// Every event after it is in `events` (or still to come).
    floor: Key,
    /// The newest key.
    last: Key,
}

/// The ring and the watchers' wake-up.
pub struct Hub {
    mode: Mode,
    retained: usize,
    ring: std::sync::Mutex<Ring>,
    /// Bumped at every publish; watchers wait for it to change.
    latest: watch::Sender<u64>,
}

impl fmt::Debug for Hub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hub")
            .field("mode", &self.mode)
            .field("retained", &self.retained)
            .finish_non_exhaustive()
    }
}

impl Hub {
    /// A ring of this process's results.
    pub fn local(retained: usize) -> Self {
        Self::with_mode(
            Mode::Local {
                epoch: rand::random(),
            },
            retained,
        )
    }

    /// A ring fed from the shared Redis stream ([`redis::RedisFeed`]).
    pub fn shared(retained: usize) -> Self {
        Self::with_mode(Mode::Shared, retained)
    }

    fn with_mode(mode: Mode, retained: usize) -> Self {
        Self {
            mode,
            retained: retained.max(1),
            ring: std::sync::Mutex::new(Ring {
                events: VecDeque::new(),
                floor: Key::default(),
                last: Key::default(),
            }),
            latest: watch::channel(0).0,
        }
    }

    pub fn is_shared(&self) -> bool {
        self.mode == Mode::Shared
    }

    fn ring(&self) -> std::sync::MutexGuard<'_, Ring> {
        self.ring
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds an event of this process, numbered next.
    pub fn publish(&self, event: LiveEvent) {
        let mut ring = self.ring();
        let key = Key(0, ring.last.1 + 1);
        self.push(&mut ring, key, event);
    }

    /// Adds an event read from the shared stream; one not newer than the
    /// newest is a repeat and is dropped.
    pub fn publish_at(&self, key: Key, event: LiveEvent) {
        let mut ring = self.ring();
        if key > ring.last {
            self.push(&mut ring, key, event);
        }
    }

    /// Marks everything up to `key` as not kept (the shared stream's start
    /// when this instance began to read it).
    pub fn start_after(&self, key: Key) {
        let mut ring = self.ring();
        if ring.events.is_empty() && key > ring.last {
            ring.floor = key;
            ring.last = key;
        }
    }

    fn push(&self, ring: &mut Ring, key: Key, event: LiveEvent) {
        if ring.events.len() == self.retained
            && let Some((gone, _)) = ring.events.pop_front()
        {
            ring.floor = gone;
        }
        ring.events.push_back((key, event));
        ring.last = key;
        self.latest.send_modify(|n| *n += 1);
    }

    /// The position of the newest event (where a new watcher starts).
    pub fn now(&self) -> Key {
        self.ring().last
    }

    /// The token a client holds for `key`.
    pub fn token(&self, key: Key) -> String {
        match self.mode {
            Mode::Local { epoch } => format!("{epoch:08x}.{}", key.1),
            Mode::Shared => format!("{}-{}", key.0, key.1),
        }
    }

    /// The position a token names, if a watcher can go on from it.
    pub fn resume(&self, token: &str) -> Result<Key, Gone> {
        let key = match self.mode {
            Mode::Local { epoch } => {
                let (e, n) = token.split_once('.').ok_or(Gone::Malformed)?;
                if e.len() != 8 {
                    return Err(Gone::Malformed);
                }
                let e = u32::from_str_radix(e, 16).map_err(|_| Gone::Malformed)?;
                let n: u64 = n.parse().map_err(|_| Gone::Malformed)?;
                if e != epoch {
                    return Err(Gone::OutOfRange);
                }
                Key(0, n)
            }
            Mode::Shared => Key::parse_redis_id(token).ok_or(Gone::Malformed)?,
        };
        let ring = self.ring();
        // Shared: a token newer than this instance has read is another
        // instance's, a moment ahead: the events after it are still to come.
        if key < ring.floor || (!self.is_shared() && key > ring.last) {
            return Err(Gone::OutOfRange);
        }
        Ok(key)
    }

    /// Up to `max` events after `from`, oldest first.
    pub fn after(&self, from: Key, max: usize) -> Result<Vec<(Key, LiveEvent)>, Gone> {
        let ring = self.ring();
        // A shared ring's watcher that began before the feed's first read
        // began "from now on": from where the feed began.
        let from = if self.is_shared() && from == Key::default() {
            ring.floor
        } else {
            from
        };
        if from < ring.floor {
            return Err(Gone::OutOfRange);
        }
        let skip = ring.events.partition_point(|(k, _)| *k <= from);
        Ok(ring.events.iter().skip(skip).take(max).cloned().collect())
    }

    /// A receiver that changes when an event is published.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.latest.subscribe()
    }
}

/// Where live events are published: the prober's results (through
/// [`LiveBuffer`]) and the flush's notices.
#[derive(Debug, Clone)]
pub enum Publisher {
    /// To this process's ring.
    Local(Arc<Hub>),
    /// To the shared Redis stream, which every instance's feed reads into
    /// its ring.
    Shared(Arc<redis::RedisFeed>),
}

/// The buffer, publishing each result pushed to it.
#[derive(Debug)]
pub struct LiveBuffer {
    inner: Arc<dyn Buffer>,
    publish: Publisher,
}

impl Publisher {
    pub async fn publish(&self, event: LiveEvent) {
        match self {
            Self::Local(hub) => hub.publish(event),
            Self::Shared(feed) => feed.publish(event).await,
        }
    }

    /// Publishes `events` in order; to Redis packed, as [`redis::RedisFeed::publish`].
    pub async fn publish_all(&self, events: Vec<LiveEvent>) {
        match self {
            Self::Local(hub) => events.into_iter().for_each(|e| hub.publish(e)),
            Self::Shared(feed) => feed.publish_all(events).await,
        }
    }
}

impl LiveBuffer {
    pub fn new(inner: Arc<dyn Buffer>, publish: Publisher) -> Self {
        Self { inner, publish }
    }
}

#[tonic::async_trait]
impl Buffer for LiveBuffer {
    async fn push(&self, result: ProbeResult) {
        // With Redis, two round trips (the live stream's and the buffer's)
        // at once: the one that fails does not hold up the other.
        let event = LiveEvent::Status(Arc::new(result.clone()));
        tokio::join!(self.publish.publish(event), self.inner.push(result));
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

    fn keys(events: &[(Key, LiveEvent)]) -> Vec<u64> {
        events.iter().map(|(k, _)| k.1).collect()
    }

    #[test]
    fn local_tokens_round_trip_and_others_are_refused() {
        let hub = Hub::local(10);
        hub.publish(result(1, 1));
        let token = hub.token(hub.now());
        assert_eq!(hub.resume(&token), Ok(Key(0, 1)));
        for bad in ["", "42", "xyz.1", "1-2", "beef.1", "deadbeefx.1"] {
            assert_eq!(hub.resume(bad), Err(Gone::Malformed), "{bad:?}");
        }
        let (epoch, _) = token.split_once('.').unwrap();
        let other = u32::from_str_radix(epoch, 16).unwrap() ^ 1;
        assert_eq!(hub.resume(&format!("{other:08x}.1")), Err(Gone::OutOfRange));
        // One from the future is not this run's.
        assert_eq!(hub.resume(&format!("{epoch}.99")), Err(Gone::OutOfRange));
    }

    #[test]
    fn a_watcher_gets_every_event_after_its_position_once_while_retained() {
        let hub = Hub::local(3);
        let start = hub.now();
        assert!(hub.after(start, 10).unwrap().is_empty());
        for i in 1..=3 {
            hub.publish(result(1, i));
        }
        assert_eq!(keys(&hub.after(start, 10).unwrap()), [1, 2, 3]);
        assert_eq!(keys(&hub.after(start, 2).unwrap()), [1, 2]);
        assert_eq!(keys(&hub.after(Key(0, 2), 10).unwrap()), [3]);
        // A fourth event pushes the first out: from 0 is gone, from 1 is not.
        hub.publish(result(1, 4));
        assert_eq!(hub.after(start, 10).unwrap_err(), Gone::OutOfRange);
        assert_eq!(keys(&hub.after(Key(0, 1), 10).unwrap()), [2, 3, 4]);
        let token = hub.token(Key(0, 1));
        assert_eq!(hub.resume(&token), Ok(Key(0, 1)));
        assert_eq!(hub.resume(&hub.token(start)), Err(Gone::OutOfRange));
    }

    #[test]
    fn a_shared_ring_takes_redis_ids_skips_repeats_and_honours_tokens_from_ahead() {
        let hub = Hub::shared(3);
        hub.start_after(Key(100, 0));
        assert_eq!(hub.resume("99-5"), Err(Gone::OutOfRange), "before it began");
        assert_eq!(hub.resume("100-0"), Ok(Key(100, 0)));
        hub.publish_at(Key(101, 0), result(1, 1));
        hub.publish_at(Key(101, 0), result(1, 1));
        hub.publish_at(Key(101, 1), result(1, 2));
        assert_eq!(hub.token(hub.now()), "101-1");
        assert_eq!(
            hub.after(Key(100, 0), 10).unwrap().len(),
            2,
            "the repeat dropped"
        );
        // Another instance is a moment ahead: its token is good here.
        assert_eq!(hub.resume("102-0"), Ok(Key(102, 0)));
        hub.publish_at(Key(102, 0), result(1, 3));
        hub.publish_at(Key(103, 0), result(1, 4));
        assert_eq!(hub.after(Key(102, 0), 10).unwrap().len(), 1);
        assert_eq!(hub.resume("1-x"), Err(Gone::Malformed));
    }
}
