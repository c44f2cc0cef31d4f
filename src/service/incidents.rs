//! Reading a user's incidents, newest first, in pages (keyset on the id).

use std::sync::Arc;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use sea_orm::DatabaseConnection;

use super::{UrlService, statuses::page_size};
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

/// `i:<url_id>:<last id>`: the URL filter is part of the token, so a token
/// is only good for the query that gave it.
fn encode(url_id: i64, id: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("i:{url_id}:{id}"))
}

fn decode(token: &str) -> Option<(i64, i64)> {
    let raw = String::from_utf8(URL_SAFE_NO_PAD.decode(token).ok()?).ok()?;
    let mut parts = raw
        .strip_prefix("i:")?
        .splitn(2, ':')
        .map(str::parse::<i64>);
    Some((parts.next()?.ok()?, parts.next()?.ok()?))
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
        let before_id = if query.page_token.is_empty() {
            None
        } else {
            let (_, id) = decode(&query.page_token)
                .filter(|(url_id, _)| *url_id == query.url_id)
                .ok_or_else(|| {
                    Error::invalid(
                        "page_token",
                        "is not a token this server gave for this query; start again without it",
                    )
                })?;
            Some(id)
        };
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
            Some(last) if more => encode(query.url_id, last.id),
            _ => String::new(),
        };
        Ok(IncidentPage {
            incidents: rows,
            next_page_token,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_garbage_is_refused() {
        assert_eq!(decode(&encode(7, 42)), Some((7, 42)));
        assert_eq!(decode(&encode(0, 1)), Some((0, 1)));
        assert_eq!(decode("not-a-token"), None);
        assert_eq!(decode(&URL_SAFE_NO_PAD.encode("7:42")), None);
    }
}
