//! Maintenance windows (`domain::maintenance`): a user's windows, and the
//! rollups' count of probes made inside one (`rollups.maintenance`: neither
//! up nor down, and not missed).
//!
//! A window's URLs are a JSON array of ids in `url_ids` (`[]`: all of the
//! owner's URLs); the flush reads every window of the owners a batch
//! touches, by `user_id`, and never looks a window up by URL. Times are ms
//! since the epoch; a recurring window has `rrule` and `duration_ms` and no
//! `end_ms`.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum MaintenanceWindows {
    Table,
    Id,
    UserId,
    UrlIds,
    StartMs,
    EndMs,
    Rrule,
    DurationMs,
    TimeZone,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Rollups {
    Table,
    Maintenance,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(MaintenanceWindows::Table)
                    .col(pk_auto(MaintenanceWindows::Id).big_integer())
                    .col(big_integer(MaintenanceWindows::UserId))
                    .col(text(MaintenanceWindows::UrlIds))
                    .col(big_integer(MaintenanceWindows::StartMs))
                    .col(big_integer_null(MaintenanceWindows::EndMs))
                    .col(text_null(MaintenanceWindows::Rrule))
                    .col(big_integer_null(MaintenanceWindows::DurationMs))
                    .col(string(MaintenanceWindows::TimeZone))
                    .col(timestamp_with_time_zone(MaintenanceWindows::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(MaintenanceWindows::Table, MaintenanceWindows::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("maintenance_windows_user_id_idx")
                    .table(MaintenanceWindows::Table)
                    .col(MaintenanceWindows::UserId)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Rollups::Table)
                    .add_column(integer(Rollups::Maintenance).default(0))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Rollups::Table)
                    .drop_column(Rollups::Maintenance)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(MaintenanceWindows::Table).to_owned())
            .await
    }
}
