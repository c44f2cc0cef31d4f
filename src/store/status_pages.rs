//! Status pages (one per user) and the URLs each lists, in order.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, QueryResult, Statement};

use super::{is_unique_violation, numbered};
use crate::domain::{
    UserId,
    status_page::{Slug, StatusPageRecord},
};

/// Why a page was not written.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// Another user's page has this slug.
    SlugTaken,
    /// This URL id is not one of the user's URLs.
    UnknownUrl(i64),
}

/// The page's values as they are to be stored.
#[derive(Debug)]
pub struct PageRow<'a> {
    pub slug: &'a Slug,
    pub title: &'a str,
    pub url_ids: &'a [i64],
    pub public: bool,
    pub show_urls: bool,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, user_id, slug, title, public, show_urls, updated_at";

/// The page's URL ids in its order, as one comma-separated column: the
/// page and its list are one statement, so a lookup by slug costs the same
/// whether the page is missing, private or public.
fn url_list(backend: DbBackend) -> &'static str {
    match backend {
        DbBackend::Postgres => {
            "(SELECT COALESCE(string_agg(url_id::text, ',' ORDER BY position), '') \
             FROM status_page_urls WHERE page_id = status_pages.id) AS url_list"
        }
        _ => {
            "(SELECT COALESCE(group_concat(url_id, ',' ORDER BY position), '') \
             FROM status_page_urls WHERE page_id = status_pages.id) AS url_list"
        }
    }
}

fn record(row: &QueryResult) -> Result<StatusPageRecord, DbErr> {
    let list: String = row.try_get("", "url_list")?;
    let url_ids = list
        .split(',')
        .filter(|id| !id.is_empty())
        .map(|id| {
            id.parse::<i64>()
                .map_err(|e| DbErr::Type(format!("status_page_urls.url_id {id:?}: {e}")))
        })
        .collect::<Result<_, _>>()?;
    Ok(StatusPageRecord {
        user_id: UserId(row.try_get("", "user_id")?),
        slug: Slug::from_stored(row.try_get("", "slug")?),
        title: row.try_get("", "title")?,
        url_ids,
        public: row.try_get("", "public")?,
        show_urls: row.try_get("", "show_urls")?,
        updated_at: row.try_get("", "updated_at")?,
    })
}

async fn select_one(
    db: &impl ConnectionTrait,
    filter: &str,
    value: sea_orm::Value,
) -> Result<Option<StatusPageRecord>, DbErr> {
    let backend = db.get_database_backend();
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            backend,
            numbered(
                backend,
                &format!(
                    "SELECT {COLUMNS}, {} FROM status_pages WHERE {filter}",
                    url_list(backend)
                ),
            ),
            [value],
        ))
        .await?;
    row.as_ref().map(record).transpose()
}

/// The user's page, if the user has one.
pub async fn get_for_user(
    db: &DatabaseConnection,
    user: UserId,
) -> Result<Option<StatusPageRecord>, DbErr> {
    select_one(db, "user_id = $1", user.0.into()).await
}

/// The page with this slug, public or not.
pub async fn get_by_slug(
    db: &DatabaseConnection,
    slug: &str,
) -> Result<Option<StatusPageRecord>, DbErr> {
    select_one(db, "slug = $1", slug.into()).await
}

/// Creates or replaces the user's page, in one transaction: refused, with
/// nothing written, when a URL is not the user's or the slug is another
/// user's.
pub async fn upsert(
    db: &DatabaseConnection,
    user: UserId,
    page: &PageRow<'_>,
) -> Result<Result<StatusPageRecord, Refused>, DbErr> {
    let backend = db.get_database_backend();
    let sql = |pg: &str| numbered(backend, pg);
    let txn = super::begin_write(db).await?;
    for id in page.url_ids {
        let owned = txn
            .query_one_raw(Statement::from_sql_and_values(
                backend,
                sql("SELECT id FROM urls WHERE id = $1 AND user_id = $2"),
                [(*id).into(), user.0.into()],
            ))
            .await?;
        if owned.is_none() {
            txn.rollback().await?;
            return Ok(Err(Refused::UnknownUrl(*id)));
        }
    }
    let taken = txn
        .query_one_raw(Statement::from_sql_and_values(
            backend,
            sql("SELECT id FROM status_pages WHERE slug = $1 AND user_id <> $2"),
            [page.slug.as_str().into(), user.0.into()],
        ))
        .await?;
    if taken.is_some() {
        txn.rollback().await?;
        return Ok(Err(Refused::SlugTaken));
    }
    let written = txn
        .query_one_raw(Statement::from_sql_and_values(
            backend,
            sql(
                "INSERT INTO status_pages (user_id, slug, title, public, show_urls, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (user_id) DO UPDATE SET slug = excluded.slug, title = excluded.title, \
                 public = excluded.public, show_urls = excluded.show_urls, \
                 updated_at = excluded.updated_at RETURNING id",
            ),
            [
                user.0.into(),
                page.slug.as_str().into(),
                page.title.into(),
                page.public.into(),
                page.show_urls.into(),
                page.updated_at.into(),
            ],
        ))
        .await;
    let id: i64 = match written {
        Ok(Some(row)) => row.try_get("", "id")?,
        Ok(None) => return Err(DbErr::RecordNotInserted),
        // Another user took the slug since the check above.
        Err(e) if is_unique_violation(&e) => {
            txn.rollback().await?;
            return Ok(Err(Refused::SlugTaken));
        }
        Err(e) => return Err(e),
    };
    txn.execute_raw(Statement::from_sql_and_values(
        backend,
        sql("DELETE FROM status_page_urls WHERE page_id = $1"),
        [id.into()],
    ))
    .await?;
    for (position, url_id) in (0_i32..).zip(page.url_ids) {
        txn.execute_raw(Statement::from_sql_and_values(
            backend,
            sql("INSERT INTO status_page_urls (page_id, url_id, position) VALUES ($1, $2, $3)"),
            [id.into(), (*url_id).into(), position.into()],
        ))
        .await?;
    }
    txn.commit().await?;
    Ok(Ok(StatusPageRecord {
        user_id: user,
        slug: page.slug.clone(),
        title: page.title.to_owned(),
        url_ids: page.url_ids.to_vec(),
        public: page.public,
        show_urls: page.show_urls,
        updated_at: page.updated_at,
    }))
}
