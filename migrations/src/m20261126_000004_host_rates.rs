//! How often each user's URLs probe each host, kept per (user, host).
//!
//! AddUrl refuses a URL that would make one account's probes of one host
//! exceed a rate (`MONITOR_MAX_HOST_RATE`), so one account cannot aim the
//! service at a third party. The rate is the sum over the user's URLs on the
//! host of one probe per period, in millionths of a probe per second
//! (`1_000_000 / period_seconds`, rounded down). It is raised with the
//! insert and lowered with the delete, on the row of this table, so the check
//! costs the same at any count and holds under concurrent adds.

use std::collections::HashMap;

use sea_orm_migration::{
    prelude::*,
    schema::*,
    sea_orm::{ConnectionTrait, Statement},
};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum HostRates {
    Table,
    UserId,
    Host,
    RateMicros,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

/// The key a URL's host is counted under: the host as the WHATWG parser
/// normalizes it, without a trailing dot. The same rule as the server's
/// `TargetUrl::host_key` (this crate cannot depend on the server's).
fn host_key(url: &str) -> Option<String> {
    let url = url::Url::parse(url).ok()?;
    let host = url.host_str()?;
    Some(host.strip_suffix('.').unwrap_or(host).to_owned())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(HostRates::Table)
                    .col(big_integer(HostRates::UserId))
                    .col(string(HostRates::Host))
                    .col(big_integer(HostRates::RateMicros))
                    .primary_key(Index::create().col(HostRates::UserId).col(HostRates::Host))
                    .foreign_key(
                        ForeignKey::create()
                            .from(HostRates::Table, HostRates::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // Existing URLs: sum their rates per (user, host).
        let db = manager.get_connection();
        let backend = db.get_database_backend();
        let rows = db
            .query_all_raw(Statement::from_string(
                backend,
                "SELECT user_id, url, period_seconds FROM urls",
            ))
            .await?;
        let mut rates: HashMap<(i64, String), i64> = HashMap::new();
        for row in rows {
            let user: i64 = row.try_get("", "user_id")?;
            let url: String = row.try_get("", "url")?;
            let period: i32 = row.try_get("", "period_seconds")?;
            if let Some(host) = host_key(&url) {
                *rates.entry((user, host)).or_default() +=
                    1_000_000 / i64::from(Ord::max(period, 1));
            }
        }
        let rates: Vec<_> = rates.into_iter().collect();
        for chunk in rates.chunks(1_000) {
            let mut insert = Query::insert()
                .into_table(HostRates::Table)
                .columns([HostRates::UserId, HostRates::Host, HostRates::RateMicros])
                .to_owned();
            for ((user, host), rate) in chunk {
                insert.values_panic([(*user).into(), host.clone().into(), (*rate).into()]);
            }
            manager.exec_stmt(insert).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(HostRates::Table).to_owned())
            .await
    }
}
