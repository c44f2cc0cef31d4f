//! Authentication: password hashing, tokens, and the layer that checks them.
//!
//! Passwords are kept only as argon2id hashes and hashed off the async
//! runtime. Tokens are PASETO v4.local (encrypted and authenticated) with an
//! expiry. The layer verifies the token once per request and hands the
//! handlers a typed [`crate::domain::UserId`].

pub mod layer;
pub mod limit;
pub mod password;
pub mod token;

pub use layer::AuthLayer;
pub use token::TokenKeys;

use std::time::Duration;

use crate::error::{SettingsError, check_setting};

/// Token and login settings.
#[derive(Debug, Clone, clap::Args)]
pub struct AuthSettings {
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

    /// How long a login token stays valid (e.g. `1h`, `30m`).
    #[arg(long, env = "MONITOR_TOKEN_TTL", default_value = "1h", value_parser = humantime::parse_duration)]
    pub token_ttl: Duration,

    #[command(flatten)]
    pub login: limit::LoginLimitSettings,
}

impl AuthSettings {
    /// Checks these settings; whether a key is required (Postgres) is the
    /// top-level settings' check.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if let Some(key) = &self.token_key_previous {
            parse_token_key(key).map_err(|_| {
                SettingsError::new(
                    "MONITOR_TOKEN_KEY_PREVIOUS",
                    "must be 64 hex characters (32 bytes)",
                )
            })?;
        }
        self.login.validate()?;
        if let Some(key) = &self.token_key {
            parse_token_key(key)?;
        }
        check_setting(
            self.token_ttl >= Duration::from_secs(1),
            "MONITOR_TOKEN_TTL",
            "must be at least 1s",
        )
    }
}

/// Decodes a token key given as 64 hex characters.
pub fn parse_token_key(hex_key: &str) -> Result<[u8; 32], SettingsError> {
    let invalid = || {
        SettingsError::new(
            "MONITOR_TOKEN_KEY",
            "must be 64 hex characters (32 bytes); generate one with `openssl rand -hex 32`",
        )
    };
    let bytes = hex::decode(hex_key.trim()).map_err(|_| invalid())?;
    bytes.try_into().map_err(|_| invalid())
}
