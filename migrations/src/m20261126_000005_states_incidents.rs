//! What users ask of a URL: is it up, since when, and what went wrong.
//!
//! `urls` gains the user's settings (`name`, `paused`, the two thresholds).
//! The state the flush keeps lives in its own table, `url_states`, one row
//! per URL created by the first flush that touches it: the flush locks these
//! rows for its transaction, and the prober's claims lock `urls` rows; apart,
//! neither waits for the other. `incidents` keeps each run of failures, with
//! a copy of its first failing status (raw statuses are deleted after two
//! days; incidents are not).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Urls {
    Table,
    Id,
    Name,
    Paused,
    FailureThreshold,
    SuccessThreshold,
}

#[derive(DeriveIden)]
enum UrlStates {
    Table,
    UrlId,
    State,
    StateSince,
    LastAppliedMs,
    RunOk,
    RunLen,
    RunStartMs,
    RunFirst,
    OpenIncidentId,
}

#[derive(DeriveIden)]
enum Incidents {
    Table,
    Id,
    UrlId,
    State,
    OpenedAt,
    ResolvedAt,
    FailedProbes,
    FirstStatus,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one column at a time.
        for col in [
            string_null(Urls::Name).to_owned(),
            boolean(Urls::Paused).default(false).to_owned(),
            integer(Urls::FailureThreshold).default(3).to_owned(),
            integer(Urls::SuccessThreshold).default(2).to_owned(),
        ] {
            manager
                .alter_table(Table::alter().table(Urls::Table).add_column(col).to_owned())
                .await?;
        }
        manager
            .create_table(
                Table::create()
                    .table(UrlStates::Table)
                    .col(big_integer(UrlStates::UrlId).primary_key())
                    // The proto's `UrlState` number.
                    .col(small_integer(UrlStates::State))
                    .col(timestamp_with_time_zone_null(UrlStates::StateSince))
                    // The newest due time applied to the state (ms).
                    .col(big_integer_null(UrlStates::LastAppliedMs))
                    // The current run of equal outcomes: success or failure,
                    // its length, its first due time and (failures) its
                    // first status as JSON.
                    .col(boolean(UrlStates::RunOk).default(true))
                    .col(integer(UrlStates::RunLen).default(0))
                    .col(big_integer_null(UrlStates::RunStartMs))
                    .col(text_null(UrlStates::RunFirst))
                    .col(big_integer_null(UrlStates::OpenIncidentId))
                    .foreign_key(
                        ForeignKey::create()
                            .from(UrlStates::Table, UrlStates::UrlId)
                            .to(Urls::Table, Urls::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Incidents::Table)
                    .col(pk_auto(Incidents::Id).big_integer())
                    .col(big_integer(Incidents::UrlId))
                    .col(small_integer(Incidents::State))
                    .col(timestamp_with_time_zone(Incidents::OpenedAt))
                    .col(timestamp_with_time_zone_null(Incidents::ResolvedAt))
                    .col(integer(Incidents::FailedProbes))
                    // The first failing status of the run, as JSON.
                    .col(text(Incidents::FirstStatus))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Incidents::Table, Incidents::UrlId)
                            .to(Urls::Table, Urls::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // ListIncidents of one URL, newest first.
        manager
            .create_index(
                Index::create()
                    .name("incidents_url_id_id_idx")
                    .table(Incidents::Table)
                    .col(Incidents::UrlId)
                    .col(Incidents::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Incidents::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(UrlStates::Table).to_owned())
            .await?;
        for col in [
            Urls::Name,
            Urls::Paused,
            Urls::FailureThreshold,
            Urls::SuccessThreshold,
        ] {
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
