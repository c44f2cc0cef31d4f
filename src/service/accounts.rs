//! Registration and login.

use std::{net::IpAddr, sync::Arc};

use chrono::Utc;
use sea_orm::DatabaseConnection;

use crate::{
    auth::{
        TokenKeys,
        limit::{LoginLimitSettings, LoginLimits},
        password,
        token::IssuedToken,
    },
    domain::{Account, Email, Password, truncate_to_micros},
    error::{Error, Result},
    store::{self, users},
};

#[derive(Debug)]
pub struct AccountService {
    db: DatabaseConnection,
    keys: Arc<TokenKeys>,
    limits: LoginLimits,
}

const BAD_CREDENTIALS: &str = "wrong email or password";

impl AccountService {
    pub fn new(db: DatabaseConnection, keys: Arc<TokenKeys>, limits: LoginLimitSettings) -> Self {
        Self {
            db,
            keys,
            limits: LoginLimits::new(limits),
        }
    }

    /// Creates an account; the password is stored only as an argon2id hash.
    /// Registrations are limited per peer address (each costs a hash and
    /// tells whether an email is taken): past the limit RESOURCE_EXHAUSTED.
    pub async fn register(
        &self,
        email: Email,
        password: Password,
        peer: Option<IpAddr>,
    ) -> Result<Account> {
        self.limits.register(peer)?;
        // Cheap check first, so a taken email costs no hashing; the unique
        // index still decides a race between two registrations.
        if users::email_taken(&self.db, &email).await? {
            return Err(already_registered());
        }
        let hash = password::hash(password).await.map_err(Error::Internal)?;
        let created_at = truncate_to_micros(Utc::now());
        match users::insert(&self.db, &email, hash, created_at).await {
            Ok(account) => {
                tracing::info!(user_id = account.id.0, "user registered");
                Ok(account)
            }
            Err(e) if store::is_unique_violation(&e) => Err(already_registered()),
            Err(e) => Err(e.into()),
        }
    }

    /// Checks credentials and issues a token. An unknown email and a wrong
    /// password get the same answer after the same amount of hashing. A
    /// locked account or peer (too many failures, see [`LoginLimits`]) is
    /// refused before any hashing.
    pub async fn login(
        &self,
        email: Email,
        password: Password,
        peer: Option<IpAddr>,
    ) -> Result<IssuedToken> {
        self.limits.check(email.as_str(), peer)?;
        let user = users::credentials(&self.db, &email).await?;
        let stored = user.as_ref().map(|u| u.password_hash.clone());
        let ok = password::verify(password, stored)
            .await
            .map_err(Error::Internal)?;
        match user {
            Some(user) if ok => self.keys.issue(user.id),
            _ => Err(self.limits.failed(
                email.as_str(),
                peer,
                Error::Unauthenticated(BAD_CREDENTIALS.into()),
            )),
        }
    }

    /// Forgets failure counts that have expired (call now and then).
    pub fn prune_limits(&self) {
        self.limits.prune();
    }
}

fn already_registered() -> Error {
    Error::AlreadyExists("an account with this email already exists; log in instead".into())
}
