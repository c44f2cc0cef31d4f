//! Dependencies (`Url.depends_on`): a URL's parent (`urls.depends_on`,
//! another URL of the same user; NULL: none), and the parent's incident a
//! URL's incident is part of (`incidents.parent_incident_id`), whose events
//! are then not sent on their own. No foreign key (SQLite cannot add one to
//! a table): deleting a URL clears its children's `depends_on` itself.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Urls {
    Table,
    DependsOn,
}

#[derive(DeriveIden)]
enum Incidents {
    Table,
    ParentIncidentId,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Urls::Table)
                    .add_column(big_integer_null(Urls::DependsOn))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("urls_depends_on_idx")
                    .table(Urls::Table)
                    .col(Urls::DependsOn)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Incidents::Table)
                    .add_column(big_integer_null(Incidents::ParentIncidentId))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Incidents::Table)
                    .drop_column(Incidents::ParentIncidentId)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name("urls_depends_on_idx")
                    .table(Urls::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Urls::Table)
                    .drop_column(Urls::DependsOn)
                    .to_owned(),
            )
            .await
    }
}
