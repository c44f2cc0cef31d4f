//! A URL's next and last claimed due times move from `urls` to a narrow
//! table of their own, `url_schedules` (one row per URL, dropped with it),
//! beside copies of its grid: its period in ms and its phase. AddUrl and
//! UpdateUrl write the copies with `urls` in one transaction. A claim then
//! does its grid arithmetic on one row version: one that UpdateUrl changes
//! between the claim's snapshot and its row lock is read again whole.
//!
//! Every due time is a claim or a skip: an update of the row that holds
//! `next_due_ms`. On `urls` that row is wide (the URL, its name, its
//! assertions) and, since `next_due_ms` is indexed, no update of it is HOT:
//! each one wrote a new version of the whole row and an entry in each of
//! the four indexes of `urls`. On Postgres, a claim of 500 rows at a time
//! on 20,000 URLs (pgbench, one client, alternated, after a VACUUM each)
//! ran 114–136 times a second on `urls` and 179–191 on `url_schedules`,
//! and wrote 530–554 bytes of WAL per claimed URL against 322–325. The
//! claim reads the URL and its assertions from `urls` by primary key.
//!
//! Upgrade a fleet by stopping the old instances before a new one
//! migrates: an old instance's claim names the dropped columns and fails.

use sea_orm_migration::{prelude::*, sea_orm::DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite: an INTEGER PRIMARY KEY is the rowid itself (no second
        // b-tree for the key).
        let key = match manager.get_database_backend() {
            DbBackend::Postgres => "BIGINT",
            _ => "INTEGER",
        };
        run(
            manager,
            &[
                &format!(
                    "CREATE TABLE url_schedules (
                       url_id {key} PRIMARY KEY REFERENCES urls (id) ON DELETE CASCADE,
                       next_due_ms BIGINT NOT NULL,
                       last_due_ms BIGINT,
                       period_ms BIGINT NOT NULL,
                       phase_ms BIGINT NOT NULL)"
                ),
                "INSERT INTO url_schedules (url_id, next_due_ms, last_due_ms, period_ms, phase_ms)
                 SELECT id, next_due_ms, last_due_ms, CAST(period_seconds AS BIGINT) * 1000, phase_ms
                 FROM urls",
                // The claim: URLs whose next due time has come.
                "CREATE INDEX url_schedules_next_due_ms_idx ON url_schedules (next_due_ms)",
                "DROP INDEX urls_next_due_ms_idx",
                "ALTER TABLE urls DROP COLUMN next_due_ms",
                "ALTER TABLE urls DROP COLUMN last_due_ms",
            ],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(
            manager,
            &[
                "ALTER TABLE urls ADD COLUMN next_due_ms BIGINT NOT NULL DEFAULT 0",
                "ALTER TABLE urls ADD COLUMN last_due_ms BIGINT",
                "UPDATE urls SET
                   next_due_ms = (SELECT next_due_ms FROM url_schedules WHERE url_id = urls.id),
                   last_due_ms = (SELECT last_due_ms FROM url_schedules WHERE url_id = urls.id)
                 WHERE id IN (SELECT url_id FROM url_schedules)",
                "CREATE INDEX urls_next_due_ms_idx ON urls (next_due_ms)",
                "DROP TABLE url_schedules",
            ],
        )
        .await
    }
}

/// Runs `statements` in order (on either backend).
async fn run(manager: &SchemaManager<'_>, statements: &[&str]) -> Result<(), DbErr> {
    for sql in statements {
        manager.get_connection().execute_unprepared(sql).await?;
    }
    Ok(())
}
