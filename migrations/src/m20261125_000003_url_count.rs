//! How many URLs each user monitors, kept on the user's row.
//!
//! AddUrl enforces the per-user quota by bumping this counter in the same
//! statement (Postgres) or transaction (SQLite) as the insert, instead of
//! counting the user's URLs under a lock: the check then costs the same at
//! the 10th URL as at the 10,000th, and holds the user's row only for that
//! one statement.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    UrlCount,
}

#[derive(DeriveIden)]
enum Urls {
    Table,
    UserId,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Users::Table)
                    .add_column(integer(Users::UrlCount).default(0))
                    .to_owned(),
            )
            .await?;
        // Existing users: count what they monitor now.
        let count = Query::select()
            .expr(Expr::col((Urls::Table, Urls::UserId)).count())
            .from(Urls::Table)
            .and_where(Expr::col((Urls::Table, Urls::UserId)).equals((Users::Table, Users::Id)))
            .to_owned();
        manager
            .exec_stmt(
                Query::update()
                    .table(Users::Table)
                    .value(
                        Users::UrlCount,
                        SimpleExpr::SubQuery(None, Box::new(count.into_sub_query_statement())),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Users::Table)
                    .drop_column(Users::UrlCount)
                    .to_owned(),
            )
            .await
    }
}
