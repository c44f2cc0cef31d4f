//! Limits on failed logins, per account and per peer address.
//!
//! Each failure takes a cell from the account's and the peer's bucket
//! (governor's GCRA: `burst` failures at once, one more every `period`).
//! When a bucket is empty the key is locked until the bucket refills: further
//! logins for it are refused with RESOURCE_EXHAUSTED and the time to wait,
//! before any password work, so a brute force costs the server nothing.
//! Successful logins take nothing. Keys are pruned as their buckets refill.

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
}

impl LoginLimitSettings {
    pub fn validate(&self) -> Result<(), crate::error::SettingsError> {
        crate::error::check_setting(
            self.per_account > 0 && self.per_peer > 0,
            "MONITOR_LOGIN_MAX_FAILURES",
            "and MONITOR_LOGIN_MAX_FAILURES_PER_PEER must be at least 1",
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

#[derive(Debug)]
pub struct LoginLimits {
    accounts: Keyed<String>,
    peers: Keyed<IpAddr>,
}

impl LoginLimits {
    pub fn new(s: LoginLimitSettings) -> Self {
        Self {
            accounts: Keyed::new(s.per_account, s.period),
            peers: Keyed::new(s.per_peer, s.period),
        }
    }

    /// Refuses a login attempt for a locked account or peer.
    pub fn check(&self, account: &str, peer: Option<IpAddr>) -> Result<(), Error> {
        let wait = self
            .accounts
            .locked_for(&account.to_owned())
            .into_iter()
            .chain(peer.and_then(|p| self.peers.locked_for(&p)))
            .max();
        wait.map_or(Ok(()), |wait| Err(too_many(wait)))
    }

    /// Records a failed attempt: the error to answer with, RESOURCE_EXHAUSTED
    /// when this failure spent the last of a burst, else `otherwise`.
    pub fn failed(&self, account: &str, peer: Option<IpAddr>, otherwise: Error) -> Error {
        let account_wait = self.accounts.failed(&account.to_owned());
        let peer_wait = peer.and_then(|p| self.peers.failed(&p));
        account_wait.max(peer_wait).map_or(otherwise, too_many)
    }

    /// Forgets keys whose buckets have refilled (call now and then).
    pub fn prune(&self) {
        self.accounts.prune();
        self.peers.prune();
    }
}

/// The client's address, as the transport saw it (set on a request's
/// extensions by the JSON side; gRPC has `remote_addr`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer(pub IpAddr);
