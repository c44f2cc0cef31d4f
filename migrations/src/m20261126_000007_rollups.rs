//! Uptime and latency history in tiers (minute, hour, day buckets), kept
//! past raw retention. One row per (URL, tier, bucket start): counts of the
//! probes due in the bucket by outcome, the slowest response, and a
//! latency sketch (`domain::sketch`, a few bytes per distinct latency bin).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Rollups {
    Table,
    UrlId,
    Tier,
    BucketMs,
    Up,
    Degraded,
    Down,
    LatencyMaxUs,
    Sketch,
}

#[derive(DeriveIden)]
enum Urls {
    Table,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Rollups::Table)
                    .col(big_integer(Rollups::UrlId))
                    .col(small_integer(Rollups::Tier))
                    .col(big_integer(Rollups::BucketMs))
                    .col(integer(Rollups::Up))
                    .col(integer(Rollups::Degraded))
                    .col(integer(Rollups::Down))
                    .col(big_integer_null(Rollups::LatencyMaxUs))
                    .col(binary(Rollups::Sketch))
                    // Reads are one URL's buckets of one tier in a range.
                    .primary_key(
                        Index::create()
                            .col(Rollups::UrlId)
                            .col(Rollups::Tier)
                            .col(Rollups::BucketMs),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(Rollups::Table, Rollups::UrlId)
                            .to(Urls::Table, Urls::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // Pruning a tier past its horizon.
        manager
            .create_index(
                Index::create()
                    .name("rollups_tier_bucket_ms_idx")
                    .table(Rollups::Table)
                    .col(Rollups::Tier)
                    .col(Rollups::BucketMs)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Rollups::Table).to_owned())
            .await
    }
}
