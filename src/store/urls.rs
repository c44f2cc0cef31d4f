//! Monitored URLs; `(user_id, url)` is unique.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "urls")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub user_id: i64,
    pub url: String,
    pub period_seconds: i32,
    pub created_at: DateTimeUtc,
    /// Fixes the grid of due times: `phase_ms + k * period` (ms since the epoch).
    pub phase_ms: i64,
    /// The next due time no prober has claimed yet.
    pub next_due_ms: i64,
    /// The due time claimed last.
    pub last_due_ms: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::users::Entity",
        from = "Column::UserId",
        to = "super::users::Column::Id",
        on_delete = "Cascade"
    )]
    User,
    #[sea_orm(has_many = "super::statuses::Entity")]
    Statuses,
}

impl Related<super::users::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::User.def()
    }
}

impl Related<super::statuses::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Statuses.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}

/// Which of `ids` are URLs that still exist. One statement text whatever the
/// number of ids (an array on Postgres, a JSON array on SQLite).
pub async fn existing_ids(
    db: &sea_orm::DatabaseConnection,
    ids: &[i64],
) -> Result<std::collections::HashSet<i64>, DbErr> {
    use sea_orm::{ConnectionTrait, DbBackend, Statement};
    let statement = match db.get_database_backend() {
        DbBackend::Postgres => Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT id FROM urls WHERE id = ANY($1)",
            [ids.to_vec().into()],
        ),
        backend => Statement::from_sql_and_values(
            backend,
            "SELECT id FROM urls WHERE id IN (SELECT value FROM json_each(?1))",
            [serde_json::to_string(ids).unwrap_or_default().into()],
        ),
    };
    db.query_all_raw(statement)
        .await?
        .iter()
        .map(|row| row.try_get::<i64>("", "id"))
        .collect()
}
