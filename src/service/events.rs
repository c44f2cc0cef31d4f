//! WatchEvents: a user's live events, from the ring of [`crate::live`].
//!
//! Each watcher is a task that reads the ring after its position, keeps the
//! events of the caller's URLs, and puts them in a bounded queue for its
//! stream. A full queue (a client that does not read) ends the stream with
//! RESOURCE_EXHAUSTED at once, dropping what was queued: a watcher never
//! holds more than `queue` events. An idle stream gets a bookmark (a fresh
//! resume token) every `bookmark_every`. Watchers per user are limited.

use std::{
    collections::HashMap,
    pin::Pin,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures_util::Stream;
use sea_orm::DatabaseConnection;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::urls::UrlService;
use crate::{
    domain::{ProbeResult, UserId, notification::LiveNotice},
    error::{Error, Result, SettingsError, check_setting},
    live::{Gone, Hub, Key, LiveEvent},
    store::urls,
};

/// How live events are kept and watched.
#[derive(Debug, Clone, clap::Args)]
pub struct EventSettings {
    /// Live events one instance keeps for resuming watchers.
    #[arg(long, env = "MONITOR_EVENTS_RETAINED", default_value_t = 10_000)]
    pub events_retained: usize,

    /// WatchEvents streams one user may have open at once (per instance).
    #[arg(long, env = "MONITOR_WATCHERS_PER_USER", default_value_t = 10)]
    pub watchers_per_user: u32,

    /// Events a watcher may have waiting for its client before its stream
    /// is ended (RESOURCE_EXHAUSTED: resume with the last token).
    #[arg(long, env = "MONITOR_WATCH_QUEUE", default_value_t = 256)]
    pub watch_queue: usize,

    /// How often an idle stream gets a bookmark.
    #[arg(long, env = "MONITOR_WATCH_BOOKMARK", default_value = "30s", value_parser = humantime::parse_duration)]
    pub watch_bookmark: Duration,
}

impl EventSettings {
    pub fn validate(&self) -> Result<(), SettingsError> {
        check_setting(
            (100..=10_000_000).contains(&self.events_retained),
            "MONITOR_EVENTS_RETAINED",
            "must be between 100 and 10000000",
        )?;
        check_setting(
            self.watchers_per_user >= 1,
            "MONITOR_WATCHERS_PER_USER",
            "must be at least 1",
        )?;
        check_setting(
            (1..=100_000).contains(&self.watch_queue),
            "MONITOR_WATCH_QUEUE",
            "must be between 1 and 100000",
        )?;
        check_setting(
            self.watch_bookmark >= Duration::from_millis(10),
            "MONITOR_WATCH_BOOKMARK",
            "must be at least 10ms",
        )
    }
}

/// What a watcher is sent.
#[derive(Debug, Clone)]
pub enum Item {
    Status(Arc<ProbeResult>),
    /// A state change or an incident event.
    Notice(Arc<LiveNotice>),
    Bookmark,
}

/// One event of a stream, with the token to resume after it.
#[derive(Debug, Clone)]
pub struct Watched {
    pub resume_token: String,
    pub item: Item,
}

pub type EventStream = Pin<Box<dyn Stream<Item = Result<Watched>> + Send>>;

/// Most events a watcher takes from the ring at once.
const READ_AT_ONCE: usize = 256;

/// Most URL owners a watcher remembers (then it forgets them all).
const OWNERS_REMEMBERED: usize = 100_000;

#[derive(Debug)]
pub struct EventService {
    db: DatabaseConnection,
    urls: Arc<UrlService>,
    hub: Arc<Hub>,
    settings: EventSettings,
    watchers: Arc<Mutex<HashMap<UserId, u32>>>,
    shutdown: CancellationToken,
}

/// A watcher's place in its user's count; given back when dropped.
struct Permit {
    user: UserId,
    watchers: Arc<Mutex<HashMap<UserId, u32>>>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut watchers = self
            .watchers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = watchers.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                watchers.remove(&self.user);
            }
        }
    }
}

impl EventService {
    pub fn new(
        db: DatabaseConnection,
        urls: Arc<UrlService>,
        hub: Arc<Hub>,
        settings: EventSettings,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            db,
            urls,
            hub,
            settings,
            watchers: Arc::default(),
            shutdown,
        }
    }

    fn permit(&self, user: UserId) -> Result<Permit> {
        let mut watchers = self
            .watchers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = watchers.entry(user).or_insert(0);
        if *n >= self.settings.watchers_per_user {
            return Err(Error::ResourceExhausted(format!(
                "you have {} event streams open, the most allowed; close one first",
                self.settings.watchers_per_user
            )));
        }
        *n += 1;
        Ok(Permit {
            user,
            watchers: self.watchers.clone(),
        })
    }

    /// The user's live events (of `url_id`, or of all their URLs when 0),
    /// after `resume_token` (empty: from now on).
    pub async fn watch(
        &self,
        user: UserId,
        url_id: i64,
        resume_token: &str,
    ) -> Result<EventStream> {
        if url_id < 0 {
            return Err(Error::invalid("url_id", "must be a URL id, or 0 for all"));
        }
        if url_id > 0 {
            self.urls.get(user, "url_id", url_id).await?;
        }
        let from = if resume_token.is_empty() {
            self.hub.now()
        } else {
            self.hub.resume(resume_token).map_err(gone)?
        };
        let permit = self.permit(user)?;
        let (tx, rx) = mpsc::channel(self.settings.watch_queue);
        let (end_tx, end_rx) = oneshot::channel();
        let watcher = Watcher {
            hub: self.hub.clone(),
            db: self.db.clone(),
            user,
            url_id,
            owners: HashMap::new(),
            bookmark_every: self.settings.watch_bookmark,
            tx,
            end: Some(end_tx),
        };
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let _permit = permit;
            watcher.run(from, shutdown).await;
        });
        Ok(Box::pin(stream(rx, end_rx)))
    }
}

fn gone(why: Gone) -> Error {
    match why {
        Gone::Malformed => Error::invalid(
            "resume_token",
            "is not a resume token of this service (use an event's resume_token)",
        ),
        Gone::OutOfRange => Error::OutOfRange(
            "resume_token: this server no longer has the events after it (too old, or from \
             before a restart); list what you need, then watch again without a token"
                .into(),
        ),
    }
}

/// The queue's events, ended at once by an error from the watcher.
fn stream(
    rx: mpsc::Receiver<Watched>,
    end: oneshot::Receiver<Error>,
) -> impl Stream<Item = Result<Watched>> + Send {
    futures_util::stream::unfold(
        (rx, Some(end), false),
        |(mut rx, mut end, done)| async move {
            if done {
                return None;
            }
            loop {
                let item = match end.as_mut() {
                    Some(e) => tokio::select! {
                        biased;
                        ended = e => {
                            if let Ok(error) = ended {
                                return Some((Err(error), (rx, None, true)));
                            }
                            // The watcher ended without an error: the queue decides.
                            end = None;
                            continue;
                        }
                        item = rx.recv() => item,
                    },
                    None => rx.recv().await,
                };
                return item.map(|w| (Ok(w), (rx, end, false)));
            }
        },
    )
}

struct Watcher {
    hub: Arc<Hub>,
    db: DatabaseConnection,
    user: UserId,
    url_id: i64,
    /// URL id -> whether the user owns it.
    owners: HashMap<i64, bool>,
    bookmark_every: Duration,
    tx: mpsc::Sender<Watched>,
    end: Option<oneshot::Sender<Error>>,
}

/// Whether to go on after sending.
enum Sent {
    Ok,
    Stop,
}

impl Watcher {
    async fn run(mut self, mut at: Key, shutdown: CancellationToken) {
        let mut latest = self.hub.subscribe();
        let mut quiet_since = tokio::time::Instant::now();
        loop {
            latest.borrow_and_update();
            let events = match self.hub.after(at, READ_AT_ONCE) {
                Ok(events) => events,
                Err(why) => {
                    self.stop(gone(why));
                    return;
                }
            };
            let full = events.len() == READ_AT_ONCE;
            for (key, event) in events {
                at = key;
                if !self.wanted(&event).await {
                    continue;
                }
                let item = match event {
                    LiveEvent::Status(result) => Item::Status(result),
                    LiveEvent::Notice(notice) => Item::Notice(notice),
                };
                if let Sent::Stop = self.send(at, item) {
                    return;
                }
                quiet_since = tokio::time::Instant::now();
            }
            if full {
                continue;
            }
            tokio::select! {
                changed = latest.changed() => if changed.is_err() { return },
                () = tokio::time::sleep_until(quiet_since + self.bookmark_every) => {
                    // Nothing read yet: from where the ring is now (a
                    // shared ring's feed may have begun after this watcher).
                    if at == Key::default() {
                        at = self.hub.now();
                    }
                    if let Sent::Stop = self.send(at, Item::Bookmark) {
                        return;
                    }
                    quiet_since = tokio::time::Instant::now();
                }
                () = self.tx.closed() => return,
                () = shutdown.cancelled() => return,
            }
        }
    }

    fn send(&mut self, at: Key, item: Item) -> Sent {
        let watched = Watched {
            resume_token: self.hub.token(at),
            item,
        };
        match self.tx.try_send(watched) {
            Ok(()) => Sent::Ok,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.stop(Error::ResourceExhausted(
                    "events came faster than you read them; watch again with the last \
                     resume_token you got"
                        .into(),
                ));
                Sent::Stop
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Sent::Stop,
        }
    }

    fn stop(&mut self, error: Error) {
        if let Some(end) = self.end.take() {
            let _ = end.send(error);
        }
    }

    /// Whether the event is of a URL this watcher wants.
    async fn wanted(&mut self, event: &LiveEvent) -> bool {
        let id = event.url_id();
        if self.url_id != 0 {
            return id == self.url_id;
        }
        if let Some(known) = self.owners.get(&id) {
            return *known;
        }
        match urls::owner_of(&self.db, id).await {
            Ok(owner) => {
                if self.owners.len() >= OWNERS_REMEMBERED {
                    self.owners.clear();
                }
                let mine = owner == Some(self.user);
                self.owners.insert(id, mine);
                mine
            }
            // The database is down: the event is not sent (it cannot be
            // known to be the user's), and the question is asked again.
            Err(_) => false,
        }
    }
}
