//! Registration and login.

use std::{net::IpAddr, sync::Arc};

use chrono::Utc;
use sea_orm::{ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, Set};

use super::time;
use crate::{
    auth::{
        TokenKeys,
        limit::{LoginLimitSettings, LoginLimits},
        password,
        token::IssuedToken,
    },
    domain::{Email, Password, UserId},
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
    pub async fn register(&self, email: &str, password: String) -> Result<users::Model> {
        let email = Email::parse("email", email)?;
        let password = Password::parse("password", password)?;
        // Cheap check first, so a taken email costs no hashing; the unique
        // index still decides a race between two registrations.
        if self.find_by_email(&email).await?.is_some() {
            return Err(already_registered());
        }
        let hash = password::hash(password).await.map_err(Error::Internal)?;
        let user = users::ActiveModel {
            email: Set(email.as_str().to_owned()),
            password_hash: Set(hash),
            created_at: Set(time::truncate_to_micros(Utc::now())),
            ..Default::default()
        };
        match user.insert(&self.db).await {
            Ok(model) => {
                tracing::info!(user_id = model.id, "user registered");
                Ok(model)
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
        email: &str,
        password: String,
        peer: Option<IpAddr>,
    ) -> Result<IssuedToken> {
        let email = Email::parse("email", email)?;
        let password = Password::parse("password", password)?;
        self.limits.check(email.as_str(), peer)?;
        let user = self.find_by_email(&email).await?;
        let stored = user.as_ref().map(|u| u.password_hash.clone());
        let ok = password::verify(password, stored)
            .await
            .map_err(Error::Internal)?;
        match user {
            Some(user) if ok => self.keys.issue(UserId(user.id)),
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

    async fn find_by_email(&self, email: &Email) -> Result<Option<users::Model>> {
        Ok(users::Entity::find()
            .filter(users::Column::Email.eq(email.as_str()))
            .one(&self.db)
            .await?)
    }
}

fn already_registered() -> Error {
    Error::AlreadyExists("an account with this email already exists; log in instead".into())
}
