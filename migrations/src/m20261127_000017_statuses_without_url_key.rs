//! Raw statuses without a foreign key to `urls` (Postgres).
//!
//! The key's check ran once per inserted status and took a `FOR KEY SHARE`
//! lock on the URL's row for the rest of the flush's transaction: ~40% of
//! the Postgres time of inserting a 20,000-row batch (130–150 ms with it,
//! 80–88 ms without, psql on the bench's machine), and the prober's claims
//! (`FOR UPDATE SKIP LOCKED`, since `FOR NO KEY UPDATE`) skipped every URL
//! of a batch being written. The flush already drops results of deleted
//! URLs before writing (`store::urls::owners_of_ids`), a URL deleted in
//! between still fails the batch's state write (`url_states` keeps its
//! key), and DeleteUrl now deletes the URL's statuses itself. SQLite keeps
//! its key: it cannot drop one without rebuilding the table, and its check
//! takes no lock.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Runs `sql` on Postgres only (also migration 19's).
pub(crate) async fn on_postgres(manager: &SchemaManager<'_>, sql: &str) -> Result<(), DbErr> {
    if manager.get_database_backend() != sea_orm_migration::sea_orm::DbBackend::Postgres {
        return Ok(());
    }
    manager
        .get_connection()
        .execute_unprepared(sql)
        .await
        .map(|_| ())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        on_postgres(
            manager,
            "ALTER TABLE statuses DROP CONSTRAINT IF EXISTS statuses_url_id_fkey",
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        on_postgres(
            manager,
            "DELETE FROM statuses WHERE url_id NOT IN (SELECT id FROM urls); \
             ALTER TABLE statuses ADD CONSTRAINT statuses_url_id_fkey \
             FOREIGN KEY (url_id) REFERENCES urls(id) ON DELETE CASCADE",
        )
        .await
    }
}
