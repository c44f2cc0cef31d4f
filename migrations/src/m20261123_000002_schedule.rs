//! Schedule state on each URL, shared by every instance.
//!
//! `phase_ms` fixes the URL's grid of due times (`phase_ms + k * period`, in
//! milliseconds since the Unix epoch); `next_due_ms` is the next due time not
//! yet claimed by any prober; `last_due_ms` the one claimed last.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Urls {
    Table,
    PhaseMs,
    NextDueMs,
    LastDueMs,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one column at a time.
        for col in [
            big_integer(Urls::PhaseMs).default(0).to_owned(),
            big_integer(Urls::NextDueMs).default(0).to_owned(),
            big_integer_null(Urls::LastDueMs).to_owned(),
        ] {
            manager
                .alter_table(Table::alter().table(Urls::Table).add_column(col).to_owned())
                .await?;
        }
        // The scheduler's claim: URLs whose next due time has come.
        manager
            .create_index(
                Index::create()
                    .name("urls_next_due_ms_idx")
                    .table(Urls::Table)
                    .col(Urls::NextDueMs)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("urls_next_due_ms_idx")
                    .table(Urls::Table)
                    .to_owned(),
            )
            .await?;
        for col in [Urls::PhaseMs, Urls::NextDueMs, Urls::LastDueMs] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Urls::Table)
                        .drop_column(col)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
