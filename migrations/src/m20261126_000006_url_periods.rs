//! Each URL's schedule over time: from `since_ms` on, it was probed every
//! `period_seconds` on the grid `phase_ms + k * period` unless `paused`.
//! AddUrl writes the first row; UpdateUrl adds one when the period or the
//! pause changes. GetUrlStats counts the slots a bucket expected from these
//! rows, so a change of period or a pause never shows as missed probes.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum UrlPeriods {
    Table,
    UrlId,
    SinceMs,
    PeriodSeconds,
    PhaseMs,
    Paused,
}

#[derive(DeriveIden)]
enum Urls {
    Table,
    Id,
    PeriodSeconds,
    PhaseMs,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(UrlPeriods::Table)
                    .col(big_integer(UrlPeriods::UrlId))
                    .col(big_integer(UrlPeriods::SinceMs))
                    .col(integer(UrlPeriods::PeriodSeconds))
                    .col(big_integer(UrlPeriods::PhaseMs))
                    .col(boolean(UrlPeriods::Paused).default(false))
                    .primary_key(
                        Index::create()
                            .col(UrlPeriods::UrlId)
                            .col(UrlPeriods::SinceMs),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(UrlPeriods::Table, UrlPeriods::UrlId)
                            .to(Urls::Table, Urls::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // Existing URLs: their schedule as it is, from the beginning.
        let existing = Query::select()
            .column(Urls::Id)
            .expr(Expr::val(0_i64))
            .column(Urls::PeriodSeconds)
            .column(Urls::PhaseMs)
            .expr(Expr::val(false))
            .from(Urls::Table)
            .to_owned();
        manager
            .exec_stmt(
                Query::insert()
                    .into_table(UrlPeriods::Table)
                    .columns([
                        UrlPeriods::UrlId,
                        UrlPeriods::SinceMs,
                        UrlPeriods::PeriodSeconds,
                        UrlPeriods::PhaseMs,
                        UrlPeriods::Paused,
                    ])
                    .select_from(existing)
                    .map_err(|e| DbErr::Migration(e.to_string()))?
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(UrlPeriods::Table).to_owned())
            .await
    }
}
