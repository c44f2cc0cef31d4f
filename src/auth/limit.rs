//! Limits on failed logins (per account, per peer address, per account and
//! peer) and on registrations per peer address.
//!
//! Each failure takes a cell from three buckets (governor's GCRA: `burst`
//! failures at once, one more every `period`): the peer's, the (account,
//! peer) pair's and the account's. When a bucket is empty its key is locked
//! until the bucket refills, and logins it covers are refused with
//! RESOURCE_EXHAUSTED and the time to wait, before any password work.
//!
//! A locked *account* does not lock its owner out: it refuses only peers
//! that failed on that account recently (within the time a pair's bucket
//! takes to refill). A peer with no recent failure on it — the owner at
//! their usual address — still gets its password checked. So an attacker
//! cycling through addresses gets one guess per fresh address while the
//! account is under attack, each one a full argon2 hash, while the owner
//! logs in (OWASP's authentication cheat sheet weighs these trade-offs).
//! Successful logins take nothing. Keys are pruned as their buckets refill.
//!
//! Registrations take a cell from the peer's registration bucket before
//! any hashing (each costs an argon2 hash, and answers whether an email is
//! taken).

use std::{
    collections::HashMap,
    hash::Hash,
    net::IpAddr,
    num::NonZeroU32,
    sync::Mutex,
    time::{Duration, Instant},
};

use governor::{
    DefaultKeyedRateLimiter, Quota,
    clock::{Clock, DefaultClock},
};

use crate::error::Error;

/// The limits: a burst of failures is answered UNAUTHENTICATED; the next
/// one locks.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct LoginLimitSettings {
    /// Failed logins one account may have in a burst before it is locked.
    #[arg(
        long = "login-max-failures",
        env = "MONITOR_LOGIN_MAX_FAILURES",
        default_value_t = 5
    )]
    pub per_account: u32,
    /// Failed logins one peer address may have in a burst before it is locked.
    #[arg(
        long = "login-max-failures-per-peer",
        env = "MONITOR_LOGIN_MAX_FAILURES_PER_PEER",
        default_value_t = 20
    )]
    pub per_peer: u32,
    /// Once a burst is spent, one more failed login is allowed per this
    /// period (so a lock lasts about this long).
    #[arg(long = "login-lockout", env = "MONITOR_LOGIN_LOCKOUT", default_value = "1m", value_parser = humantime::parse_duration)]
    pub period: Duration,

    /// Registrations one peer address may make in a burst; then one more
    /// per MONITOR_LOGIN_LOCKOUT.
    #[arg(
        long = "register-per-peer",
        env = "MONITOR_REGISTER_PER_PEER",
        default_value_t = 10
    )]
    pub register_per_peer: u32,
}

impl LoginLimitSettings {
    pub fn validate(&self) -> Result<(), crate::error::SettingsError> {
        crate::error::check_setting(
            self.per_account > 0 && self.per_peer > 0,
            "MONITOR_LOGIN_MAX_FAILURES",
            "and MONITOR_LOGIN_MAX_FAILURES_PER_PEER must be at least 1",
        )?;
        crate::error::check_setting(
            self.register_per_peer > 0,
            "MONITOR_REGISTER_PER_PEER",
            "must be at least 1",
        )
    }
}

#[derive(Debug)]
struct Keyed<K: Hash + Eq + Clone> {
    limiter: DefaultKeyedRateLimiter<K>,
    locked: Mutex<HashMap<K, Instant>>,
}

impl<K: Hash + Eq + Clone> Keyed<K> {
    fn new(burst: u32, period: Duration) -> Self {
        let burst = NonZeroU32::new(burst.max(1)).expect("at least one");
        let quota = Quota::with_period(period.max(Duration::from_millis(1)))
            .expect("a positive period")
            .allow_burst(burst);
        Self {
            limiter: governor::RateLimiter::keyed(quota),
            locked: Mutex::new(HashMap::new()),
        }
    }

    /// How long `key` is still locked, if it is.
    fn locked_for(&self, key: &K) -> Option<Duration> {
        let mut locked = self.locked.lock().expect("lock poisoned");
        let until = *locked.get(key)?;
        let now = Instant::now();
        if until <= now {
            locked.remove(key);
            return None;
        }
        Some(until - now)
    }

    /// Records a failure; when the bucket is empty, locks the key and
    /// returns for how long.
    fn failed(&self, key: &K) -> Option<Duration> {
        let not_until = self.limiter.check_key(key).err()?;
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        self.locked
            .lock()
            .expect("lock poisoned")
            .insert(key.clone(), Instant::now() + wait);
        Some(wait)
    }

    fn prune(&self) {
        self.limiter.retain_recent();
        let now = Instant::now();
        self.locked
            .lock()
            .expect("lock poisoned")
            .retain(|_, until| *until > now);
    }
}

fn too_many(wait: Duration) -> Error {
    // Whole seconds, rounded up: a client that waits this long gets in.
    Error::TooManyAttempts {
        retry_after: Duration::from_secs(wait.as_secs() + 1),
    }
}

type Pair = (String, IpAddr);

#[derive(Debug)]
pub struct LoginLimits {
    accounts: Keyed<String>,
    pairs: Keyed<Pair>,
    peers: Keyed<IpAddr>,
    registrations: Keyed<IpAddr>,
    /// When each (account, peer) last failed.
    recent: Mutex<HashMap<Pair, Instant>>,
    /// How long a failure counts as recent: a full refill of a pair's bucket.
    recent_for: Duration,
}

impl LoginLimits {
    pub fn new(s: LoginLimitSettings) -> Self {
        Self {
            accounts: Keyed::new(s.per_account, s.period),
            pairs: Keyed::new(s.per_account, s.period),
            peers: Keyed::new(s.per_peer, s.period),
            registrations: Keyed::new(s.register_per_peer, s.period),
            recent: Mutex::new(HashMap::new()),
            recent_for: s.period.saturating_mul(s.per_account.max(1)),
        }
    }

    /// Whether this peer failed on this account recently.
    fn failed_recently(&self, pair: &Pair) -> bool {
        self.recent
            .lock()
            .expect("lock poisoned")
            .get(pair)
            .is_some_and(|at| at.elapsed() < self.recent_for)
    }

    /// Refuses a login attempt from a locked peer or pair, or for a locked
    /// account from a peer that failed on it recently (or an unknown peer).
    pub fn check(&self, account: &str, peer: Option<IpAddr>) -> Result<(), Error> {
        let account_lock = self.accounts.locked_for(&account.to_owned());
        let wait = match peer {
            None => account_lock,
            Some(p) => {
                let pair = (account.to_owned(), p);
                let account_lock = account_lock.filter(|_| self.failed_recently(&pair));
                [
                    self.peers.locked_for(&p),
                    self.pairs.locked_for(&pair),
                    account_lock,
                ]
                .into_iter()
                .flatten()
                .max()
            }
        };
        wait.map_or(Ok(()), |wait| Err(too_many(wait)))
    }

    /// Records a failed attempt: the error to answer with, RESOURCE_EXHAUSTED
    /// when this failure spent the last of a burst that now covers this
    /// peer, else `otherwise`.
    pub fn failed(&self, account: &str, peer: Option<IpAddr>, otherwise: Error) -> Error {
        // A guess that was checked against a locked account (from a peer
        // with no recent failure on it) is answered as the guess it was;
        // only the failure that locks the account says so.
        let account = account.to_owned();
        let was_locked = self.accounts.locked_for(&account).is_some();
        let account_wait = self.accounts.failed(&account).filter(|_| !was_locked);
        let wait = match peer {
            None => account_wait,
            Some(p) => {
                let pair = (account, p);
                self.recent
                    .lock()
                    .expect("lock poisoned")
                    .insert(pair.clone(), Instant::now());
                [
                    account_wait,
                    self.peers.failed(&p),
                    self.pairs.failed(&pair),
                ]
                .into_iter()
                .flatten()
                .max()
            }
        };
        wait.map_or(otherwise, too_many)
    }

    /// Takes a registration from the peer's allowance, or refuses it.
    pub fn register(&self, peer: Option<IpAddr>) -> Result<(), Error> {
        let Some(p) = peer else { return Ok(()) };
        if let Some(wait) = self.registrations.locked_for(&p) {
            return Err(too_many(wait));
        }
        // An empty bucket refuses this one and locks the peer.
        self.registrations
            .failed(&p)
            .map_or(Ok(()), |wait| Err(too_many(wait)))
    }

    /// Forgets keys whose buckets have refilled (call now and then).
    pub fn prune(&self) {
        self.accounts.prune();
        self.pairs.prune();
        self.peers.prune();
        self.registrations.prune();
        let recent_for = self.recent_for;
        self.recent
            .lock()
            .expect("lock poisoned")
            .retain(|_, at| at.elapsed() < recent_for);
    }
}

/// The client's address, as the transport saw it (set on a request's
/// extensions by the JSON side; gRPC has `remote_addr`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer(pub IpAddr);
