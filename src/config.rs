//! Settings: one struct, read from flags and environment, validated before
//! anything binds.
//!
//! Every field is documented here and shows up in `monitor --help`. A bad
//! setting stops start-up with a message naming it. Secrets (the token key,
//! database and Redis URLs, which may carry passwords) never have their
//! values printed by `--help`.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Parser, ValueEnum};

/// Longest period the product allows between two probes of one URL.
pub const MAX_PERIOD_LIMIT: Duration = Duration::from_secs(100 * 60);

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable, coloured when the output is a terminal.
    Pretty,
    /// One JSON object per line, for log shippers.
    Json,
}

/// The monitor server: watches HTTP endpoints for many users.
#[derive(Debug, Clone, Parser)]
#[command(name = "monitor", version, about, long_about = None)]
#[allow(clippy::struct_excessive_bools)]
pub struct Settings {
    /// Address the gRPC API listens on (port 0 picks a free port).
    #[arg(long, env = "MONITOR_GRPC_ADDR", default_value = "127.0.0.1:50051")]
    pub grpc_addr: SocketAddr,

    /// Address the HTTP side (JSON gateway, metrics, health) listens on.
    #[arg(long, env = "MONITOR_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,

    /// Largest JSON request body the HTTP side accepts, in bytes (413 above).
    #[arg(long, env = "MONITOR_HTTP_MAX_BODY", default_value_t = 64 * 1024)]
    pub http_max_body: usize,

    /// Directory for the embedded database and the generated token key.
    #[arg(long, env = "MONITOR_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Database to use: `postgres://user:pass@host/db` in production. Unset
    /// means an SQLite file `monitor.db` under the data directory.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Redis for the probe-result buffer (`redis://host:6379`). Unset means
    /// an in-process buffer.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,

    /// Key for signing tokens: 32 random bytes as 64 hex characters, shared by
    /// every instance of a deployment. Required with Postgres; the embedded
    /// default generates one and keeps it in the data directory.
    #[arg(long, env = "MONITOR_TOKEN_KEY", hide_env_values = true)]
    pub token_key: Option<String>,

    /// The previous token key, during a key rotation: tokens it signed are
    /// still accepted (they expire within MONITOR_TOKEN_TTL), new ones are
    /// signed with MONITOR_TOKEN_KEY. Remove it one TTL after rotating.
    #[arg(long, env = "MONITOR_TOKEN_KEY_PREVIOUS", hide_env_values = true)]
    pub token_key_previous: Option<String>,

    /// Failed logins one account may have in a burst before it is locked.
    #[arg(long, env = "MONITOR_LOGIN_MAX_FAILURES", default_value_t = 5)]
    pub login_max_failures: u32,

    /// Failed logins one peer address may have in a burst before it is locked.
    #[arg(
        long,
        env = "MONITOR_LOGIN_MAX_FAILURES_PER_PEER",
        default_value_t = 20
    )]
    pub login_max_failures_per_peer: u32,

    /// Once a burst is spent, one more failed login is allowed per this
    /// period (so a lock lasts about this long).
    #[arg(long, env = "MONITOR_LOGIN_LOCKOUT", default_value = "1m", value_parser = humantime::parse_duration)]
    pub login_lockout: Duration,

    /// How long a login token stays valid (e.g. `1h`, `30m`).
    #[arg(long, env = "MONITOR_TOKEN_TTL", default_value = "1h", value_parser = humantime::parse_duration)]
    pub token_ttl: Duration,

    /// Log format.
    #[arg(long, env = "MONITOR_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,

    /// Probe private, loopback and link-local addresses too. Off by default:
    /// turn on only for tests and local demos.
    #[arg(long, env = "MONITOR_ALLOW_PRIVATE_TARGETS", default_value_t = false, action = clap::ArgAction::Set)]
    pub allow_private_targets: bool,

    /// Shortest period a user may ask for.
    #[arg(long, env = "MONITOR_MIN_PERIOD", default_value = "10s", value_parser = humantime::parse_duration)]
    pub min_period: Duration,

    /// Longest period a user may ask for (100 minutes at most).
    #[arg(long, env = "MONITOR_MAX_PERIOD", default_value = "100m", value_parser = humantime::parse_duration)]
    pub max_period: Duration,

    /// How many URLs one user may monitor.
    #[arg(long, env = "MONITOR_MAX_URLS_PER_USER", default_value_t = 1000)]
    pub max_urls_per_user: u32,

    /// Largest number of pooled database connections.
    #[arg(long, env = "MONITOR_DB_MAX_CONNECTIONS", default_value_t = 16)]
    pub db_max_connections: u32,

    /// How often the database is checked for the health service.
    #[arg(long, env = "MONITOR_HEALTH_INTERVAL", default_value = "5s", value_parser = humantime::parse_duration)]
    pub health_interval: Duration,

    /// Run the prober and flush tasks in this instance (off: API only).
    #[arg(long, env = "MONITOR_PROBER", default_value_t = true, action = clap::ArgAction::Set)]
    pub prober: bool,

    /// Probe timeout: DNS, connect, TLS and the whole response.
    #[arg(long, env = "MONITOR_PROBE_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub probe_timeout: Duration,

    /// Most of a response body a probe reads, in KiB; the rest is dropped.
    #[arg(long, env = "MONITOR_PROBE_MAX_BODY_KIB", default_value_t = 64)]
    pub probe_max_body_kib: usize,

    /// Redirects a probe follows (0: the 3xx is the status).
    #[arg(long, env = "MONITOR_PROBE_FOLLOW_REDIRECTS", default_value_t = 0)]
    pub probe_follow_redirects: usize,

    /// Probes running at once in this instance.
    #[arg(long, env = "MONITOR_PROBE_CONCURRENCY", default_value_t = 512)]
    pub probe_concurrency: usize,

    /// Probes running at once against one host.
    #[arg(long, env = "MONITOR_PROBE_PER_HOST", default_value_t = 16)]
    pub probe_per_host: usize,

    /// How often the scheduler claims due URLs.
    #[arg(long, env = "MONITOR_SCHEDULE_TICK", default_value = "200ms", value_parser = humantime::parse_duration)]
    pub schedule_tick: Duration,

    /// A due time missed by more than this (the service was down) is skipped.
    #[arg(long, env = "MONITOR_SCHEDULE_MAX_LATENESS", default_value = "5s", value_parser = humantime::parse_duration)]
    pub schedule_max_lateness: Duration,

    /// Flush results to the database at least this often (100m at most).
    #[arg(long, env = "MONITOR_FLUSH_INTERVAL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub flush_interval: Duration,

    /// Results per flush batch; a full batch flushes at once.
    #[arg(long, env = "MONITOR_FLUSH_BATCH", default_value_t = 20_000)]
    pub flush_batch: usize,

    /// Statuses older than this are deleted.
    #[arg(long, env = "MONITOR_RETENTION", default_value = "2days", value_parser = humantime::parse_duration)]
    pub retention: Duration,

    /// How often retention runs.
    #[arg(long, env = "MONITOR_RETENTION_INTERVAL", default_value = "1m", value_parser = humantime::parse_duration)]
    pub retention_interval: Duration,

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

    /// How long in-flight requests may take to finish after SIGINT/SIGTERM.
    #[arg(long, env = "MONITOR_SHUTDOWN_GRACE", default_value = "10s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,
}

/// A setting that cannot be used, with its name and what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("invalid setting {name}: {reason}")]
pub struct SettingsError {
    pub name: &'static str,
    pub reason: String,
}

fn invalid(name: &'static str, reason: impl Into<String>) -> SettingsError {
    SettingsError {
        name,
        reason: reason.into(),
    }
}

/// Which database the settings select.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseKind {
    Sqlite,
    Postgres,
}

impl Settings {
    /// The settings the binary would get with no flags (defaults, then the
    /// environment), with the given data directory: what tests and embedders
    /// start from before overriding fields.
    pub fn defaults(data_dir: impl Into<PathBuf>) -> Self {
        let mut settings = Self::parse_from(["monitor"]);
        settings.data_dir = data_dir.into();
        settings
    }

    /// Which database is selected.
    pub fn database_kind(&self) -> DatabaseKind {
        match self.database_url.as_deref() {
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                DatabaseKind::Postgres
            }
            _ => DatabaseKind::Sqlite,
        }
    }

    /// The database URL, with the embedded default filled in.
    pub fn effective_database_url(&self) -> String {
        self.database_url.clone().unwrap_or_else(|| {
            format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("monitor.db").display()
            )
        })
    }

    /// Checks every setting against the others; the first problem is returned.
    #[allow(clippy::too_many_lines)] // a flat list of independent checks
    pub fn validate(&self) -> Result<(), SettingsError> {
        if let Some(url) = &self.database_url {
            let known = ["postgres://", "postgresql://", "sqlite:"];
            if !known.iter().any(|p| url.starts_with(p)) {
                return Err(invalid(
                    "DATABASE_URL",
                    "must start with postgres://, postgresql:// or sqlite:",
                ));
            }
        }
        if let Some(url) = &self.redis_url
            && !(url.starts_with("redis://") || url.starts_with("rediss://"))
        {
            return Err(invalid(
                "REDIS_URL",
                "must start with redis:// or rediss://",
            ));
        }
        if !(1024..=16 * 1024 * 1024).contains(&self.http_max_body) {
            return Err(invalid(
                "MONITOR_HTTP_MAX_BODY",
                "must be between 1024 and 16777216 bytes",
            ));
        }
        if let Some(key) = &self.token_key_previous {
            parse_token_key(key).map_err(|_| {
                invalid(
                    "MONITOR_TOKEN_KEY_PREVIOUS",
                    "must be 64 hex characters (32 bytes)",
                )
            })?;
        }
        if self.login_max_failures == 0 || self.login_max_failures_per_peer == 0 {
            return Err(invalid(
                "MONITOR_LOGIN_MAX_FAILURES",
                "and MONITOR_LOGIN_MAX_FAILURES_PER_PEER must be at least 1",
            ));
        }
        match &self.token_key {
            Some(key) => {
                parse_token_key(key)?;
            }
            None if self.database_kind() == DatabaseKind::Postgres => {
                return Err(invalid(
                    "MONITOR_TOKEN_KEY",
                    "is required with a Postgres DATABASE_URL, so that every instance \
                     signs tokens with the same key; generate one with `openssl rand -hex 32`",
                ));
            }
            None => {}
        }
        if self.token_ttl < Duration::from_secs(1) {
            return Err(invalid("MONITOR_TOKEN_TTL", "must be at least 1s"));
        }
        if self.min_period < Duration::from_secs(1) || self.min_period.subsec_nanos() != 0 {
            return Err(invalid(
                "MONITOR_MIN_PERIOD",
                "must be a whole number of seconds, at least 1s",
            ));
        }
        if self.max_period.subsec_nanos() != 0 || self.max_period > MAX_PERIOD_LIMIT {
            return Err(invalid(
                "MONITOR_MAX_PERIOD",
                "must be a whole number of seconds, at most 100m",
            ));
        }
        if self.min_period > self.max_period {
            return Err(invalid(
                "MONITOR_MIN_PERIOD",
                format!(
                    "{} is longer than MONITOR_MAX_PERIOD ({})",
                    humantime::format_duration(self.min_period),
                    humantime::format_duration(self.max_period)
                ),
            ));
        }
        if self.max_urls_per_user == 0 {
            return Err(invalid("MONITOR_MAX_URLS_PER_USER", "must be at least 1"));
        }
        if self.db_max_connections == 0 {
            return Err(invalid("MONITOR_DB_MAX_CONNECTIONS", "must be at least 1"));
        }
        if self.probe_timeout < Duration::from_millis(100) {
            return Err(invalid("MONITOR_PROBE_TIMEOUT", "must be at least 100ms"));
        }
        if self.probe_max_body_kib == 0 {
            return Err(invalid("MONITOR_PROBE_MAX_BODY_KIB", "must be at least 1"));
        }
        if self.probe_follow_redirects > 20 {
            return Err(invalid(
                "MONITOR_PROBE_FOLLOW_REDIRECTS",
                "must be at most 20",
            ));
        }
        if self.probe_concurrency == 0 {
            return Err(invalid("MONITOR_PROBE_CONCURRENCY", "must be at least 1"));
        }
        if self.probe_per_host == 0 {
            return Err(invalid("MONITOR_PROBE_PER_HOST", "must be at least 1"));
        }
        if self.schedule_tick < Duration::from_millis(10)
            || self.schedule_tick > Duration::from_secs(1)
        {
            return Err(invalid(
                "MONITOR_SCHEDULE_TICK",
                "must be between 10ms and 1s",
            ));
        }
        if self.schedule_max_lateness < Duration::from_secs(1) {
            return Err(invalid(
                "MONITOR_SCHEDULE_MAX_LATENESS",
                "must be at least 1s",
            ));
        }
        if self.flush_interval < Duration::from_millis(10) || self.flush_interval > MAX_PERIOD_LIMIT
        {
            return Err(invalid(
                "MONITOR_FLUSH_INTERVAL",
                "must be between 10ms and 100m",
            ));
        }
        if self.flush_batch == 0 || self.flush_batch > 100_000 {
            return Err(invalid(
                "MONITOR_FLUSH_BATCH",
                "must be between 1 and 100000",
            ));
        }
        if self.retention < Duration::from_secs(60) {
            return Err(invalid("MONITOR_RETENTION", "must be at least 1m"));
        }
        if self.retention_interval < Duration::from_secs(1) {
            return Err(invalid("MONITOR_RETENTION_INTERVAL", "must be at least 1s"));
        }
        if self.local_queue_capacity == 0 {
            return Err(invalid(
                "MONITOR_LOCAL_QUEUE_CAPACITY",
                "must be at least 1",
            ));
        }
        if self.redis_prefix.is_empty() || self.redis_prefix.contains(char::is_whitespace) {
            return Err(invalid(
                "MONITOR_REDIS_PREFIX",
                "must be non-empty, without spaces",
            ));
        }
        if self.health_interval < Duration::from_millis(100) {
            return Err(invalid("MONITOR_HEALTH_INTERVAL", "must be at least 100ms"));
        }
        Ok(())
    }
}

/// Decodes a token key given as 64 hex characters.
pub fn parse_token_key(hex_key: &str) -> Result<[u8; 32], SettingsError> {
    let bytes = hex::decode(hex_key.trim()).map_err(|_| {
        invalid(
            "MONITOR_TOKEN_KEY",
            "must be 64 hex characters (32 bytes); generate one with `openssl rand -hex 32`",
        )
    })?;
    bytes.try_into().map_err(|_| {
        invalid(
            "MONITOR_TOKEN_KEY",
            "must be 64 hex characters (32 bytes); generate one with `openssl rand -hex 32`",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Settings {
        Settings::try_parse_from(std::iter::once("monitor").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn defaults_are_valid_and_embedded() {
        let s = parse(&[]);
        s.validate().unwrap();
        assert_eq!(s.database_kind(), DatabaseKind::Sqlite);
        assert_eq!(s.grpc_addr.to_string(), "127.0.0.1:50051");
        assert_eq!(s.min_period, Duration::from_secs(10));
        assert_eq!(s.max_period, Duration::from_secs(6000));
    }

    #[test]
    fn postgres_without_token_key_names_the_setting() {
        let s = parse(&["--database-url", "postgres://localhost/x"]);
        let err = s.validate().unwrap_err();
        assert_eq!(err.name, "MONITOR_TOKEN_KEY");
    }

    #[test]
    fn short_token_key_is_rejected() {
        let s = parse(&["--token-key", "abcd"]);
        assert_eq!(s.validate().unwrap_err().name, "MONITOR_TOKEN_KEY");
    }

    #[test]
    fn max_period_above_100_minutes_is_rejected() {
        let s = parse(&["--max-period", "101m"]);
        assert_eq!(s.validate().unwrap_err().name, "MONITOR_MAX_PERIOD");
    }

    #[test]
    fn min_above_max_is_rejected() {
        let s = parse(&["--min-period", "10m", "--max-period", "5m"]);
        assert_eq!(s.validate().unwrap_err().name, "MONITOR_MIN_PERIOD");
    }

    #[test]
    fn unknown_database_scheme_is_rejected() {
        let s = parse(&["--database-url", "mysql://x"]);
        assert_eq!(s.validate().unwrap_err().name, "DATABASE_URL");
    }
}
