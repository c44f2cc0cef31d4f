//! Assertions (issue 15): what a URL's probes must find, their verdicts,
//! and the certificate each https probe saw.
//!
//! - `urls.assertions`: the URL's assertions as JSON text (`NULL`: none, so
//!   the prober's claim of a URL without assertions reads one `NULL` more).
//! - `statuses`: each probe's verdict (the `UrlState` number of UP, DEGRADED
//!   or DOWN; `NULL` in rows from before, judged by the default rule), its
//!   failed assertions as JSON text (`NULL`: none) and its certificate's
//!   `notAfter`.
//! - `url_states`: the run of DOWN probes (or of probes that were not DOWN)
//!   the state machine counts beside the run of UP probes, the state an open
//!   incident holds the URL in (what a resume goes back to), and the latest
//!   certificate `notAfter` seen with the due time of the probe that saw it.
//!
//! Every column is nullable or has a constant default: adding them rewrites
//! no table.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Urls {
    Table,
    Assertions,
}

#[derive(DeriveIden)]
enum Statuses {
    Table,
    Verdict,
    FailedAssertions,
    TlsNotAfter,
}

#[derive(DeriveIden)]
enum UrlStates {
    Table,
    DownRun,
    DownRunStartMs,
    IncidentState,
    TlsNotAfter,
    TlsSeenMs,
}

/// Each table's new columns, one per statement (SQLite alters one at a time).
fn columns() -> Vec<(DynIden, ColumnDef)> {
    vec![
        (Urls::Table.into_iden(), text_null(Urls::Assertions)),
        (
            Statuses::Table.into_iden(),
            small_integer_null(Statuses::Verdict),
        ),
        (
            Statuses::Table.into_iden(),
            text_null(Statuses::FailedAssertions),
        ),
        (
            Statuses::Table.into_iden(),
            timestamp_with_time_zone_null(Statuses::TlsNotAfter),
        ),
        (
            UrlStates::Table.into_iden(),
            integer(UrlStates::DownRun).default(0).to_owned(),
        ),
        (
            UrlStates::Table.into_iden(),
            big_integer_null(UrlStates::DownRunStartMs),
        ),
        (
            UrlStates::Table.into_iden(),
            small_integer_null(UrlStates::IncidentState),
        ),
        (
            UrlStates::Table.into_iden(),
            timestamp_with_time_zone_null(UrlStates::TlsNotAfter),
        ),
        (
            UrlStates::Table.into_iden(),
            big_integer_null(UrlStates::TlsSeenMs),
        ),
    ]
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (table, mut col) in columns() {
            manager
                .alter_table(Table::alter().table(table).add_column(&mut col).to_owned())
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (table, col) in columns().into_iter().rev() {
            manager
                .alter_table(
                    Table::alter()
                        .table(table)
                        .drop_column(col.get_column_name())
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
