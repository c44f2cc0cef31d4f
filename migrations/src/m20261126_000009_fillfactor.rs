//! A state row for every URL, and room on each page for the flush's
//! updates (Postgres).
//!
//! AddUrl now creates a URL's `url_states` row with the URL, so the flush
//! only locks and updates state rows; URLs added before this migration get
//! theirs here.
//!
//! Every flush batch rewrites the state row of each URL it touches and the
//! open hour and day rollup buckets. With full pages (the default fillfactor,
//! 100) each new row version lands on another page and adds an entry to
//! every index of the table; with free room on the page Postgres updates in
//! place (a HOT update: no index entries, the old version pruned on the
//! page). None of the updated columns is indexed, so free room is all HOT
//! needs. SQLite has no such setting: nothing to do there.
//!
//! A storage parameter has no sea-query builder, so this one is raw SQL,
//! Postgres only.

use sea_orm_migration::{prelude::*, sea_orm::DbBackend};

#[derive(DeriveIden)]
enum Urls {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum UrlStates {
    Table,
    UrlId,
    State,
}

/// `UrlState::Pending`'s stored number.
const PENDING: i16 = 1;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let stateless = Query::select()
            .column(Urls::Id)
            .expr(Expr::val(PENDING))
            .from(Urls::Table)
            .and_where(
                Expr::col(Urls::Id).not_in_subquery(
                    Query::select()
                        .column(UrlStates::UrlId)
                        .from(UrlStates::Table)
                        .to_owned(),
                ),
            )
            .to_owned();
        manager
            .exec_stmt(
                Query::insert()
                    .into_table(UrlStates::Table)
                    .columns([UrlStates::UrlId, UrlStates::State])
                    .select_from(stateless)
                    .map_err(|e| DbErr::Migration(e.to_string()))?
                    .to_owned(),
            )
            .await?;
        postgres_only(
            manager,
            &[
                "ALTER TABLE url_states SET (fillfactor = 50)",
                "ALTER TABLE rollups SET (fillfactor = 70)",
            ],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        postgres_only(
            manager,
            &[
                "ALTER TABLE url_states RESET (fillfactor)",
                "ALTER TABLE rollups RESET (fillfactor)",
            ],
        )
        .await
    }
}

/// Runs `statements` on Postgres; nothing on SQLite.
async fn postgres_only(manager: &SchemaManager<'_>, statements: &[&str]) -> Result<(), DbErr> {
    if manager.get_database_backend() == DbBackend::Postgres {
        for sql in statements {
            manager.get_connection().execute_unprepared(sql).await?;
        }
    }
    Ok(())
}
