//! Users, their monitored URLs, and the statuses probes record.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    Email,
    PasswordHash,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Urls {
    Table,
    Id,
    UserId,
    Url,
    PeriodSeconds,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Statuses {
    Table,
    Id,
    UrlId,
    DueAt,
    ProbedAt,
    StatusCode,
    LatencyMicros,
    ErrorKind,
    ErrorMessage,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .col(big_pk_auto(Users::Id))
                    // Stored trimmed and lower-cased, so uniqueness is case-insensitive.
                    .col(string_len_uniq(Users::Email, 320))
                    .col(text(Users::PasswordHash))
                    .col(timestamp_with_time_zone(Users::CreatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Urls::Table)
                    .col(big_pk_auto(Urls::Id))
                    .col(big_integer(Urls::UserId))
                    .col(string_len(Urls::Url, 2048))
                    .col(integer(Urls::PeriodSeconds))
                    .col(timestamp_with_time_zone(Urls::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Urls::Table, Urls::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // One user monitors a URL once; also serves "the caller's URLs".
        manager
            .create_index(
                Index::create()
                    .name("urls_user_id_url_key")
                    .table(Urls::Table)
                    .col(Urls::UserId)
                    .col(Urls::Url)
                    .unique()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Statuses::Table)
                    .col(big_pk_auto(Statuses::Id))
                    .col(big_integer(Statuses::UrlId))
                    .col(timestamp_with_time_zone(Statuses::DueAt))
                    .col(timestamp_with_time_zone(Statuses::ProbedAt))
                    .col(integer(Statuses::StatusCode))
                    .col(big_integer(Statuses::LatencyMicros))
                    .col(small_integer_null(Statuses::ErrorKind))
                    .col(text_null(Statuses::ErrorMessage))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Statuses::Table, Statuses::UrlId)
                            .to(Urls::Table, Urls::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // A probe is recorded once per due time: a batch flushed twice adds nothing.
        manager
            .create_index(
                Index::create()
                    .name("statuses_url_id_due_at_key")
                    .table(Statuses::Table)
                    .col(Statuses::UrlId)
                    .col(Statuses::DueAt)
                    .unique()
                    .to_owned(),
            )
            .await?;
        // ListStatuses: one URL's statuses, newest first, by probe time.
        manager
            .create_index(
                Index::create()
                    .name("statuses_url_id_probed_at_idx")
                    .table(Statuses::Table)
                    .col(Statuses::UrlId)
                    .col(Statuses::ProbedAt)
                    .col(Statuses::Id)
                    .to_owned(),
            )
            .await?;
        // Retention: delete the oldest statuses in bounded batches.
        manager
            .create_index(
                Index::create()
                    .name("statuses_probed_at_idx")
                    .table(Statuses::Table)
                    .col(Statuses::ProbedAt)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Statuses::Table.into_iden(),
            Urls::Table.into_iden(),
            Users::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
