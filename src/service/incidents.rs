//! Reading a user's incidents, newest first, in pages (keyset on the id).

use std::sync::Arc;

use sea_orm::DatabaseConnection;

use super::{UrlService, page_token, statuses::page_size};
use crate::{
    domain::{IncidentRecord, UserId},
    error::{Error, Result},
    store::incidents,
};

/// The request, as a transport decoded it.
#[derive(Debug, Clone, Default)]
pub struct IncidentQuery {
    /// 0: all of the caller's URLs.
    pub url_id: i64,
    pub page_size: i32,
    pub page_token: String,
}

#[derive(Debug)]
pub struct IncidentPage {
    pub incidents: Vec<IncidentRecord>,
    pub next_page_token: String,
}

#[derive(Debug)]
pub struct IncidentService {
    db: DatabaseConnection,
    urls: Arc<UrlService>,
}

impl IncidentService {
    pub fn new(db: DatabaseConnection, urls: Arc<UrlService>) -> Self {
        Self { db, urls }
    }

    pub async fn list(&self, user: UserId, query: IncidentQuery) -> Result<IncidentPage> {
        let limit = page_size(query.page_size)?;
        if query.url_id < 0 {
            return Err(Error::invalid(
                "url_id",
                "must be a URL id, or 0 for all of your URLs",
            ));
        }
        let before_id = page_token::before_id("i", query.url_id, &query.page_token)?;
        let url_id = (query.url_id != 0).then_some(query.url_id);
        if let Some(id) = url_id {
            // NOT_FOUND for another user's URL, as for a missing one.
            self.urls.get(user, "url_id", id).await?;
        }
        let mut rows = incidents::page(
            &self.db,
            incidents::PageQuery {
                user,
                url_id,
                before_id,
                limit: limit + 1,
            },
        )
        .await?;
        let more = rows.len() as u64 > limit;
        rows.truncate(usize::try_from(limit).map_err(Error::internal)?);
        let next_page_token = match rows.last() {
            Some(last) if more => page_token::encode("i", query.url_id, last.id),
            _ => String::new(),
        };
        Ok(IncidentPage {
            incidents: rows,
            next_page_token,
        })
    }
}
