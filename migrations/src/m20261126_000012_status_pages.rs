//! Status pages: one per user (`status_pages.user_id` unique), found by its
//! slug (unique across users), and the URLs it lists in `status_page_urls`
//! with their position. Deleting a URL drops it from the page.

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
enum StatusPages {
    Table,
    Id,
    UserId,
    Slug,
    Title,
    Public,
    ShowUrls,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum StatusPageUrls {
    Table,
    PageId,
    UrlId,
    Position,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(StatusPages::Table)
                    .col(pk_auto(StatusPages::Id).big_integer())
                    .col(big_integer(StatusPages::UserId).unique_key())
                    .col(string(StatusPages::Slug).unique_key())
                    .col(string(StatusPages::Title))
                    .col(boolean(StatusPages::Public).default(false))
                    .col(boolean(StatusPages::ShowUrls).default(false))
                    .col(timestamp_with_time_zone(StatusPages::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(StatusPages::Table, StatusPages::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(StatusPageUrls::Table)
                    .col(big_integer(StatusPageUrls::PageId))
                    .col(big_integer(StatusPageUrls::UrlId))
                    .col(integer(StatusPageUrls::Position))
                    .primary_key(
                        Index::create()
                            .col(StatusPageUrls::PageId)
                            .col(StatusPageUrls::UrlId),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(StatusPageUrls::Table, StatusPageUrls::PageId)
                            .to(StatusPages::Table, StatusPages::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(StatusPageUrls::Table, StatusPageUrls::UrlId)
                            .to(Urls::Table, Urls::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // Deleting a URL finds its page rows by the URL.
        manager
            .create_index(
                Index::create()
                    .name("status_page_urls_url_id_idx")
                    .table(StatusPageUrls::Table)
                    .col(StatusPageUrls::UrlId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(StatusPageUrls::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(StatusPages::Table).to_owned())
            .await
    }
}
