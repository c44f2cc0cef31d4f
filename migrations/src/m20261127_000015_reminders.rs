//! Reminders (`Channel.remind_every`): a channel's interval
//! (`channels.remind_every_s`, NULL: off), and each reminder delivery's
//! count (`deliveries.reminder`), unique per incident and channel so that
//! two instances cannot send one reminder twice (NULLs, every other
//! delivery, never collide). Open incidents are found by `resolved_at`.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Channels {
    Table,
    RemindEveryS,
}

#[derive(DeriveIden)]
enum Deliveries {
    Table,
    IncidentId,
    ChannelId,
    Reminder,
}

#[derive(DeriveIden)]
enum Incidents {
    Table,
    ResolvedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Channels::Table)
                    .add_column(big_integer_null(Channels::RemindEveryS))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Deliveries::Table)
                    .add_column(integer_null(Deliveries::Reminder))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("deliveries_reminder_once_idx")
                    .table(Deliveries::Table)
                    .col(Deliveries::IncidentId)
                    .col(Deliveries::ChannelId)
                    .col(Deliveries::Reminder)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("incidents_resolved_at_idx")
                    .table(Incidents::Table)
                    .col(Incidents::ResolvedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (name, table) in [
            ("incidents_resolved_at_idx", Incidents::Table.into_iden()),
            (
                "deliveries_reminder_once_idx",
                Deliveries::Table.into_iden(),
            ),
        ] {
            manager
                .drop_index(Index::drop().name(name).table(table).to_owned())
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(Deliveries::Table)
                    .drop_column(Deliveries::Reminder)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Channels::Table)
                    .drop_column(Channels::RemindEveryS)
                    .to_owned(),
            )
            .await
    }
}
