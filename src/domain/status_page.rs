//! A user's public status page: its slug (the address `/status/{slug}`),
//! its title and the URLs it lists.

use chrono::{DateTime, Utc};

use super::UserId;
use crate::error::Error;

/// Most URLs one page lists.
pub const MAX_PAGE_URLS: usize = 100;
/// Longest title, in characters.
pub const MAX_TITLE_CHARS: usize = 200;

/// A page's address: 3 to 40 of `a-z`, `0-9` and `-`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slug(String);

impl Slug {
    pub fn parse(field: &'static str, raw: &str) -> Result<Self, Error> {
        let ok_chars = raw
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !(3..=40).contains(&raw.len()) || !ok_chars {
            return Err(Error::invalid(
                field,
                "must be 3 to 40 characters of a-z, 0-9 and \"-\"",
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    /// A stored slug (checked when it was written).
    pub fn from_stored(s: String) -> Self {
        Self(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A page's title: at most [`MAX_TITLE_CHARS`] characters, no control
/// characters (empty: the slug is shown).
pub fn parse_title(field: &'static str, raw: &str) -> Result<String, Error> {
    let title = raw.trim();
    if title.chars().count() > MAX_TITLE_CHARS || title.chars().any(char::is_control) {
        return Err(Error::invalid(
            field,
            format!("must be at most {MAX_TITLE_CHARS} characters, without control characters"),
        ));
    }
    Ok(title.to_owned())
}

/// The URL ids of a page: at most [`MAX_PAGE_URLS`], positive, no repeats.
pub fn parse_url_ids(field: &'static str, ids: &[i64]) -> Result<Vec<i64>, Error> {
    if ids.len() > MAX_PAGE_URLS {
        return Err(Error::invalid(
            field,
            format!("a page lists at most {MAX_PAGE_URLS} URLs"),
        ));
    }
    for (i, id) in ids.iter().enumerate() {
        if *id <= 0 {
            return Err(Error::invalid(field, format!("{id} is not a URL id")));
        }
        if ids[..i].contains(id) {
            return Err(Error::invalid(field, format!("URL {id} is listed twice")));
        }
    }
    Ok(ids.to_vec())
}

/// A stored status page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusPageRecord {
    pub user_id: UserId,
    pub slug: Slug,
    pub title: String,
    pub url_ids: Vec<i64>,
    pub public: bool,
    pub show_urls: bool,
    pub updated_at: DateTime<Utc>,
}

/// What UpdateStatusPage changes: `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct StatusPageUpdate {
    pub slug: Option<Slug>,
    pub title: Option<String>,
    pub url_ids: Option<Vec<i64>>,
    pub public: Option<bool>,
    pub show_urls: Option<bool>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_three_to_forty_of_lowercase_digits_and_dashes() {
        assert!(Slug::parse("slug", "acme-status-2").is_ok());
        for bad in [
            "ab",
            "Acme",
            "acme status",
            "acme_x",
            "é-page",
            &"a".repeat(41),
        ] {
            assert!(Slug::parse("slug", bad).is_err(), "{bad}");
        }
        assert!(Slug::parse("slug", &"a".repeat(40)).is_ok());
    }

    #[test]
    fn url_ids_are_positive_and_unrepeated() {
        assert!(parse_url_ids("url_ids", &[1, 2]).is_ok());
        assert!(parse_url_ids("url_ids", &[1, 1]).is_err());
        assert!(parse_url_ids("url_ids", &[0]).is_err());
    }
}
