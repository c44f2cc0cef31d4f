//! Notifications: a user's channels (where incident events go) and the
//! outbox of deliveries (one row per event and channel, written by the
//! flush in the transaction that opened or resolved the incident).
//!
//! `channels.target` holds the kind's settings as JSON (the webhook's URL
//! and secret...). A channel for some URLs only has `all_urls` false and
//! its URLs in `channel_urls`; deleting a URL drops it from there, never
//! turning such a channel into one for all URLs.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Urls {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Incidents {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Channels {
    Table,
    Id,
    UserId,
    Name,
    Kind,
    Target,
    AllUrls,
    NotifyDegraded,
    CreatedAt,
}

#[derive(DeriveIden)]
enum ChannelUrls {
    Table,
    ChannelId,
    UrlId,
}

#[derive(DeriveIden)]
enum Deliveries {
    Table,
    Id,
    ChannelId,
    IncidentId,
    Event,
    Payload,
    State,
    Attempts,
    LastError,
    NextAttemptAt,
    CreatedAt,
    DeliveredAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Channels::Table)
                    .col(pk_auto(Channels::Id).big_integer())
                    .col(big_integer(Channels::UserId))
                    .col(string(Channels::Name))
                    // 1 webhook, 2 slack, 3 email, 4 pagerduty.
                    .col(small_integer(Channels::Kind))
                    .col(text(Channels::Target))
                    .col(boolean(Channels::AllUrls))
                    .col(boolean(Channels::NotifyDegraded).default(false))
                    .col(timestamp_with_time_zone(Channels::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Channels::Table, Channels::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("channels_user_id_idx")
                    .table(Channels::Table)
                    .col(Channels::UserId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ChannelUrls::Table)
                    .col(big_integer(ChannelUrls::ChannelId))
                    .col(big_integer(ChannelUrls::UrlId))
                    .primary_key(
                        Index::create()
                            .col(ChannelUrls::ChannelId)
                            .col(ChannelUrls::UrlId),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(ChannelUrls::Table, ChannelUrls::ChannelId)
                            .to(Channels::Table, Channels::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(ChannelUrls::Table, ChannelUrls::UrlId)
                            .to(Urls::Table, Urls::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // The flush finds a URL's channels by the URL.
        manager
            .create_index(
                Index::create()
                    .name("channel_urls_url_id_idx")
                    .table(ChannelUrls::Table)
                    .col(ChannelUrls::UrlId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Deliveries::Table)
                    .col(pk_auto(Deliveries::Id).big_integer())
                    .col(big_integer(Deliveries::ChannelId))
                    // None for a test delivery.
                    .col(big_integer_null(Deliveries::IncidentId))
                    // incident.opened, incident.resolved or test.
                    .col(string(Deliveries::Event))
                    .col(text(Deliveries::Payload))
                    // 1 pending, 2 delivered, 3 gave up.
                    .col(small_integer(Deliveries::State))
                    .col(integer(Deliveries::Attempts).default(0))
                    .col(text_null(Deliveries::LastError))
                    .col(timestamp_with_time_zone(Deliveries::NextAttemptAt))
                    .col(timestamp_with_time_zone(Deliveries::CreatedAt))
                    .col(timestamp_with_time_zone_null(Deliveries::DeliveredAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Deliveries::Table, Deliveries::ChannelId)
                            .to(Channels::Table, Channels::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(Deliveries::Table, Deliveries::IncidentId)
                            .to(Incidents::Table, Incidents::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // ListDeliveries of one channel, newest first.
        manager
            .create_index(
                Index::create()
                    .name("deliveries_channel_id_id_idx")
                    .table(Deliveries::Table)
                    .col(Deliveries::ChannelId)
                    .col(Deliveries::Id)
                    .to_owned(),
            )
            .await?;
        // The flush's outbox statements and the claim's order per incident.
        manager
            .create_index(
                Index::create()
                    .name("deliveries_incident_id_channel_id_idx")
                    .table(Deliveries::Table)
                    .col(Deliveries::IncidentId)
                    .col(Deliveries::ChannelId)
                    .to_owned(),
            )
            .await?;
        // The worker's claim: pending rows by due time.
        manager
            .create_index(
                Index::create()
                    .name("deliveries_state_next_attempt_at_idx")
                    .table(Deliveries::Table)
                    .col(Deliveries::State)
                    .col(Deliveries::NextAttemptAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Deliveries::Table.into_iden(),
            ChannelUrls::Table.into_iden(),
            Channels::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
