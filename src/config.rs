//! Settings: one struct, read from flags and environment, validated before
//! anything binds.
//!
//! Each module's settings are a group of their own ([`AuthSettings`],
//! [`UrlSettings`], [`ProberSettings`], [`FlushSettings`],
//! [`BufferSettings`], [`ConnectionSettings`], [`CorsSettings`]), defined and validated beside the code they set and
//! flattened here: flags and environment variables keep their names, and
//! `App::build` hands each group to its module as it is. Every field shows
//! up in `monitor --help`. A bad setting stops start-up with a message
//! naming it. Secrets (the token key, database and Redis URLs, which may
//! carry passwords) never have their values printed by `--help`.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{CommandFactory, FromArgMatches, Parser};

use crate::error::check_setting;
pub use crate::{
    api::{connections::ConnectionSettings, grpc_web::CorsSettings},
    auth::AuthSettings,
    buffer::BufferSettings,
    deliver::DeliverySettings,
    error::SettingsError,
    flush::FlushSettings,
    prober::ProberSettings,
    service::{
        ChannelSettings, UrlSettings, events::EventSettings, status_pages::StatusPageSettings,
    },
    telemetry::LogFormat,
};

/// The monitor server: watches HTTP endpoints for many users.
#[derive(Debug, Clone, Parser)]
#[command(name = "monitor", version, about, long_about = None)]
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

    /// Largest number of pooled database connections.
    #[arg(long, env = "MONITOR_DB_MAX_CONNECTIONS", default_value_t = 16)]
    pub db_max_connections: u32,

    /// Redis for the probe-result buffer (`redis://host:6379`). Unset means
    /// an in-process buffer.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,

    /// Log format.
    #[arg(long, env = "MONITOR_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,

    /// How often the database is checked for the health service.
    #[arg(long, env = "MONITOR_HEALTH_INTERVAL", default_value = "5s", value_parser = humantime::parse_duration)]
    pub health_interval: Duration,

    /// How long in-flight requests may take to finish after SIGINT/SIGTERM.
    #[arg(long, env = "MONITOR_SHUTDOWN_GRACE", default_value = "10s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,

    #[command(flatten)]
    pub connections: ConnectionSettings,

    #[command(flatten)]
    pub cors: CorsSettings,

    #[command(flatten)]
    pub auth: AuthSettings,

    #[command(flatten)]
    pub urls: UrlSettings,

    #[command(flatten)]
    pub channels: ChannelSettings,

    #[command(flatten)]
    pub delivery: DeliverySettings,

    #[command(flatten)]
    pub events: EventSettings,

    #[command(flatten)]
    pub status_pages: StatusPageSettings,

    #[command(flatten)]
    pub prober: ProberSettings,

    #[command(flatten)]
    pub flush: FlushSettings,

    #[command(flatten)]
    pub buffer: BufferSettings,
}

/// Which database the settings select.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseKind {
    Sqlite,
    Postgres,
}

impl Settings {
    /// The settings the binary would get with no flags (defaults, then the
    /// environment), with the given data directory.
    pub fn defaults(data_dir: impl Into<PathBuf>) -> Self {
        let mut settings = Self::parse_from(["monitor"]);
        settings.data_dir = data_dir.into();
        settings
    }

    /// The defaults alone, whatever the environment holds (`MONITOR_*`
    /// variables in a developer's shell must not leak into tests), with the
    /// given data directory.
    pub fn for_tests(data_dir: impl Into<PathBuf>) -> Self {
        let command = Self::command().mut_args(|arg| arg.env(None));
        let matches = command.get_matches_from(["monitor"]);
        let mut settings =
            Self::from_arg_matches(&matches).expect("the defaults are valid settings");
        settings.data_dir = data_dir.into();
        settings
    }

    /// Parses the process's flags and environment. On a bad value clap's
    /// message names the flag (`--token-ttl <TOKEN_TTL>`); the error
    /// returned also names its environment variable (`MONITOR_TOKEN_TTL`),
    /// since that is where most deployments set it.
    pub fn try_parse_with_env_names<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let command = Self::command();
        let matches = command
            .clone()
            .try_get_matches_from(args)
            .map_err(|e| name_env_in_error(&command, e))?;
        Self::from_arg_matches(&matches).map_err(|e| name_env_in_error(&command, e))
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
    pub fn validate(&self) -> Result<(), SettingsError> {
        if let Some(url) = &self.database_url {
            let known = ["postgres://", "postgresql://", "sqlite:"];
            check_setting(
                known.iter().any(|p| url.starts_with(p)),
                "DATABASE_URL",
                "must start with postgres://, postgresql:// or sqlite:",
            )?;
        }
        if let Some(url) = &self.redis_url {
            check_setting(
                url.starts_with("redis://") || url.starts_with("rediss://"),
                "REDIS_URL",
                "must start with redis:// or rediss://",
            )?;
        }
        check_setting(
            (1024..=16 * 1024 * 1024).contains(&self.http_max_body),
            "MONITOR_HTTP_MAX_BODY",
            "must be between 1024 and 16777216 bytes",
        )?;
        self.connections.validate()?;
        self.cors.validate()?;
        self.auth.validate()?;
        check_setting(
            self.auth.token_key.is_some() || self.database_kind() == DatabaseKind::Sqlite,
            "MONITOR_TOKEN_KEY",
            "is required with a Postgres DATABASE_URL, so that every instance \
             signs tokens with the same key; generate one with `openssl rand -hex 32`",
        )?;
        self.urls.validate()?;
        self.channels.validate()?;
        self.delivery.validate()?;
        self.events.validate()?;
        self.status_pages.validate()?;
        check_setting(
            self.db_max_connections > 0,
            "MONITOR_DB_MAX_CONNECTIONS",
            "must be at least 1",
        )?;
        self.prober.validate()?;
        self.flush.validate()?;
        self.buffer.validate()?;
        check_setting(
            self.health_interval >= Duration::from_millis(100),
            "MONITOR_HEALTH_INTERVAL",
            "must be at least 100ms",
        )
    }
}

/// Adds the environment variable of the argument a clap error is about to
/// its message: `'--token-ttl <TOKEN_TTL>'` becomes
/// `'--token-ttl <TOKEN_TTL>' (environment variable MONITOR_TOKEN_TTL)`.
fn name_env_in_error(command: &clap::Command, error: clap::Error) -> clap::Error {
    use clap::error::{ContextKind, ContextValue};
    let Some(ContextValue::String(shown)) = error.get(ContextKind::InvalidArg) else {
        return error;
    };
    let shown = shown.clone();
    let env = command.get_arguments().find_map(|arg| {
        let long = arg.get_long()?;
        let flag = format!("--{long}");
        let rest = shown.strip_prefix(&flag)?;
        (rest.is_empty() || rest.starts_with([' ', '=']))
            .then(|| arg.get_env())
            .flatten()
    });
    let Some(env) = env else { return error };
    let env = env.to_string_lossy();
    let kind = error.kind();
    let text = error.render().to_string().replacen(
        &format!("'{shown}'"),
        &format!("'{shown}' (environment variable {env})"),
        1,
    );
    let text = text.strip_prefix("error: ").unwrap_or(&text);
    clap::Error::raw(kind, text)
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
        assert_eq!(s.urls.min_period, Duration::from_secs(10));
        assert_eq!(s.urls.max_period, Duration::from_secs(6000));
    }

    #[test]
    fn every_flag_keeps_its_name_under_its_group() {
        let s = parse(&[
            "--schedule-tick",
            "50ms",
            "--probe-timeout",
            "2s",
            "--flush-batch",
            "7",
            "--login-lockout",
            "2m",
            "--min-period",
            "20s",
            "--redis-prefix",
            "x",
            "--allow-private-targets",
            "true",
            "--prober",
            "false",
        ]);
        assert_eq!(s.prober.tick, Some(Duration::from_millis(50)));
        assert_eq!(s.prober.probe.timeout, Duration::from_secs(2));
        assert!(s.prober.probe.allow_private_targets && !s.prober.enabled);
        assert_eq!(s.flush.batch, 7);
        assert_eq!(s.auth.login.period, Duration::from_secs(120));
        assert_eq!(s.urls.min_period, Duration::from_secs(20));
        assert_eq!(s.buffer.redis_prefix, "x");
    }

    #[test]
    fn a_bad_value_names_the_environment_variable_too() {
        let err =
            Settings::try_parse_with_env_names(["monitor", "--token-ttl", "soon"]).unwrap_err();
        let text = err.render().to_string();
        assert!(text.contains("--token-ttl"), "{text}");
        assert!(text.contains("MONITOR_TOKEN_TTL"), "{text}");
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn booleans_take_true_false_1_0_yes_no() {
        for (word, want) in [
            ("true", true),
            ("1", true),
            ("yes", true),
            ("YES", true),
            ("false", false),
            ("0", false),
            ("no", false),
        ] {
            let s = parse(&["--allow-private-targets", word, "--prober", word]);
            assert_eq!(
                (s.prober.probe.allow_private_targets, s.prober.enabled),
                (want, want),
                "{word}"
            );
        }
        let err = Settings::try_parse_with_env_names(["monitor", "--prober", "maybe"]).unwrap_err();
        assert!(
            err.render().to_string().contains("MONITOR_PROBER"),
            "{}",
            err.render()
        );
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

    #[test]
    fn extra_roots_must_be_readable_pem_certificates() {
        let dir = std::env::temp_dir().join(format!("monitor-roots-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let not_pem = dir.join("not.pem");
        std::fs::write(&not_pem, "not a certificate").unwrap();
        for bad in ["/nonexistent/ca.pem", not_pem.to_str().unwrap()] {
            let err = parse(&["--probe-extra-roots", bad]).validate().unwrap_err();
            assert_eq!(err.name, "MONITOR_PROBE_EXTRA_ROOTS");
            assert!(err.reason.starts_with(bad), "{err}");
        }
        let s = parse(&["--probe-extra-roots", "a.pem,b.pem"]);
        assert_eq!(s.prober.probe.extra_roots.len(), 2, "comma-separated");
        std::fs::remove_dir_all(dir).ok();
    }
}
