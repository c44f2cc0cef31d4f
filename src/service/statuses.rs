//! Reading back what probes recorded, newest first, in pages.
//!
//! Pages are cut by keyset (due time, unique per URL), not by offset, so a
//! page costs the same however deep it is and new statuses never shift
//! later pages. The page token is opaque to clients; it carries the URL id
//! so a token cannot be replayed against another URL, and a version letter
//! so a token from before a change of order is refused, not misread.

use std::sync::Arc;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use sea_orm::DatabaseConnection;

use super::UrlService;
use crate::{
    domain::{StatusRecord, UserId},
    error::{Error, Result},
    store::statuses,
};

pub const DEFAULT_PAGE_SIZE: u64 = 100;
pub const MAX_PAGE_SIZE: i32 = 1000;

/// The request, as a transport decoded it.
#[derive(Debug, Clone, Default)]
pub struct StatusQuery {
    pub url_id: i64,
    pub page_size: i32,
    pub page_token: String,
    pub start_time: Option<DateTime<Utc>>,
    pub end_time: Option<DateTime<Utc>>,
}

#[derive(Debug)]
pub struct StatusPage {
    pub statuses: Vec<StatusRecord>,
    pub next_page_token: String,
}

#[derive(Debug)]
pub struct StatusService {
    db: DatabaseConnection,
    urls: Arc<UrlService>,
}

/// Where the previous page ended.
#[derive(Debug, PartialEq, Eq)]
struct Cursor {
    url_id: i64,
    due_at_micros: i64,
}

impl Cursor {
    fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("d:{}:{}", self.url_id, self.due_at_micros))
    }

    fn decode(token: &str) -> Option<Self> {
        let raw = String::from_utf8(URL_SAFE_NO_PAD.decode(token).ok()?).ok()?;
        let mut parts = raw
            .strip_prefix("d:")?
            .splitn(2, ':')
            .map(str::parse::<i64>);
        Some(Self {
            url_id: parts.next()?.ok()?,
            due_at_micros: parts.next()?.ok()?,
        })
    }
}

/// A request's `page_size`: 0 means the default; past the maximum is
/// INVALID_ARGUMENT.
pub(super) fn page_size(n: i32) -> Result<u64> {
    match n {
        0 => Ok(DEFAULT_PAGE_SIZE),
        n if (1..=MAX_PAGE_SIZE).contains(&n) => u64::try_from(n).map_err(Error::internal),
        _ => Err(Error::invalid(
            "page_size",
            format!("must be between 0 and {MAX_PAGE_SIZE} (0 means {DEFAULT_PAGE_SIZE})"),
        )),
    }
}

impl StatusService {
    pub fn new(db: DatabaseConnection, urls: Arc<UrlService>) -> Self {
        Self { db, urls }
    }

    pub async fn list(&self, user: UserId, query: StatusQuery) -> Result<StatusPage> {
        let page_size = page_size(query.page_size)?;
        let (start, end) = (query.start_time, query.end_time);
        if let (Some(s), Some(e)) = (start, end)
            && s >= e
        {
            return Err(Error::invalid("start_time", "must be before end_time"));
        }
        let cursor = if query.page_token.is_empty() {
            None
        } else {
            let c = Cursor::decode(&query.page_token)
                .filter(|c| c.url_id == query.url_id)
                .ok_or_else(|| {
                    Error::invalid(
                        "page_token",
                        "is not a token this server gave for this URL; start again without it",
                    )
                })?;
            Some(
                DateTime::<Utc>::from_timestamp_micros(c.due_at_micros)
                    .ok_or_else(|| Error::invalid("page_token", "is corrupt"))?,
            )
        };

        super::urls::check_id("url_id", query.url_id)?;
        // Ownership is part of the query (a join on the caller's URLs), so a
        // page costs one round trip; only an empty page needs the check
        // below, to tell another user's URL (NOT_FOUND) from a quiet one.
        let mut rows = statuses::page(
            &self.db,
            statuses::PageQuery {
                user,
                url_id: query.url_id,
                start,
                end,
                before: cursor,
                limit: page_size + 1,
                now: Utc::now(),
            },
        )
        .await?;
        if rows.is_empty() {
            self.urls.get(user, "url_id", query.url_id).await?;
        }
        let more = rows.len() as u64 > page_size;
        rows.truncate(usize::try_from(page_size).map_err(Error::internal)?);
        let next_page_token = match rows.last() {
            Some(last) if more => Cursor {
                url_id: query.url_id,
                due_at_micros: last.due_at.timestamp_micros(),
            }
            .encode(),
            _ => String::new(),
        };
        Ok(StatusPage {
            statuses: rows,
            next_page_token,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_rejects_garbage() {
        let c = Cursor {
            url_id: 7,
            due_at_micros: 1_700_000_000_123_456,
        };
        assert_eq!(Cursor::decode(&c.encode()), Some(c));
        for bad in [
            "",
            "!!!",
            "bm90IGEgY3Vyc29y",
            &URL_SAFE_NO_PAD.encode("1:2"),
            // A token from before pages were cut by due time.
            &URL_SAFE_NO_PAD.encode("7:1700000000123456:99"),
        ] {
            assert_eq!(Cursor::decode(bad), None, "{bad:?}");
        }
    }
}
