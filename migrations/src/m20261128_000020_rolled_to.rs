//! Rollups built from the raw statuses once per interval, not merged per
//! flush batch.
//!
//! `url_states.rolled_to_ms` is the due time up to which a URL's statuses
//! are in its hour and day rollup buckets: statuses due before it are
//! counted there, statuses due at or after it are read from the raw table
//! (they are kept two days) and added to the buckets by the readers, until
//! the roll pass (`store::rollups::roll`) adds them and moves the mark on.
//!
//! Every status stored before this migration was merged into the rollups
//! by the flush that stored it, so existing rows get the migration's own
//! time; a status stored later for an earlier due time is merged by the
//! flush as before. New rows start at 0: nothing of them is rolled yet.
//!
//! Upgrade a fleet by stopping the old instances' flushers before a new
//! instance migrates: an old flusher merges every status it stores, and a
//! status it stores after this migration, due after the mark, would be
//! counted again by the roll pass.

use sea_orm_migration::prelude::*;

#[derive(DeriveIden)]
enum UrlStates {
    Table,
    RolledToMs,
}

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(UrlStates::Table)
                    .add_column(
                        ColumnDef::new(UrlStates::RolledToMs)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .to_owned(),
            )
            .await?;
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| {
                <i64 as TryFrom<u128>>::try_from(d.as_millis()).unwrap_or(i64::MAX)
            });
        manager
            .exec_stmt(
                Query::update()
                    .table(UrlStates::Table)
                    .value(UrlStates::RolledToMs, now_ms)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(UrlStates::Table)
                    .drop_column(UrlStates::RolledToMs)
                    .to_owned(),
            )
            .await
    }
}
