//! One row that readiness writes to, to prove the database takes writes.
//!
//! A database can answer reads and refuse writes (a read-only SQLite file,
//! a Postgres replica or `default_transaction_read_only`); a ping then says
//! "ready" while every Register and AddUrl fails. The health check updates
//! this row instead.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum HealthCheck {
    Table,
    Id,
    CheckedMs,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(HealthCheck::Table)
                    .if_not_exists()
                    .col(integer(HealthCheck::Id).primary_key())
                    .col(big_integer(HealthCheck::CheckedMs).default(0))
                    .to_owned(),
            )
            .await?;
        manager
            .exec_stmt(
                Query::insert()
                    .into_table(HealthCheck::Table)
                    .columns([HealthCheck::Id, HealthCheck::CheckedMs])
                    .values_panic([1.into(), 0.into()])
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(HealthCheck::Table).to_owned())
            .await
    }
}
