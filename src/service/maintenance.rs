//! Adding, listing and deleting a user's maintenance windows
//! (`domain::maintenance`). Like channels, a window belongs to one user:
//! every query filters by the caller's id, so another user's window is
//! indistinguishable from one that does not exist. The flush reads windows
//! itself (`store::outcomes`), once per batch.

use chrono::Utc;
use sea_orm::DatabaseConnection;

use crate::{
    domain::{
        UserId,
        maintenance::{MAX_WINDOWS_PER_USER, MaintenanceWindow, NewWindow},
        truncate_to_micros,
    },
    error::{Error, Result},
    store::maintenance::{self, Refused},
};

#[derive(Debug)]
pub struct MaintenanceService {
    db: DatabaseConnection,
}

impl MaintenanceService {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }

    /// Adds a window for `user`; its URLs must be the user's.
    pub async fn create(&self, user: UserId, new: NewWindow) -> Result<MaintenanceWindow> {
        let now = truncate_to_micros(Utc::now());
        match maintenance::insert_within_limit(&self.db, user, &new, now, MAX_WINDOWS_PER_USER)
            .await?
        {
            Ok(window) => {
                tracing::info!(
                    user_id = user.0,
                    window_id = window.id,
                    "maintenance window added"
                );
                Ok(window)
            }
            Err(Refused::Quota) => Err(Error::ResourceExhausted(format!(
                "you have {MAX_WINDOWS_PER_USER} maintenance windows, the most allowed; \
                 delete one first"
            ))),
            Err(Refused::UnknownUrl(id)) => {
                Err(Error::NotFound(format!("you have no URL with id {id}")))
            }
        }
    }

    /// The user's windows, oldest first.
    pub async fn list(&self, user: UserId) -> Result<Vec<MaintenanceWindow>> {
        Ok(maintenance::list_for_user(&self.db, user).await?)
    }

    /// Deletes the user's window `id`.
    pub async fn delete(&self, user: UserId, id: i64) -> Result<()> {
        if maintenance::delete_for_user(&self.db, user, id).await? {
            tracing::info!(
                user_id = user.0,
                window_id = id,
                "maintenance window deleted"
            );
            Ok(())
        } else {
            Err(Error::NotFound(format!(
                "you have no maintenance window with id {id}"
            )))
        }
    }
}
