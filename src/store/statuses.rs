//! What probes found. `(url_id, due_at)` is unique, so a batch written twice
//! adds nothing; `error_kind` holds the proto `ErrorKind` number.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "statuses")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub url_id: i64,
    pub due_at: DateTimeUtc,
    pub probed_at: DateTimeUtc,
    pub status_code: i32,
    pub latency_micros: i64,
    pub error_kind: Option<i16>,
    pub error_message: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::urls::Entity",
        from = "Column::UrlId",
        to = "super::urls::Column::Id",
        on_delete = "Cascade"
    )]
    Url,
}

impl Related<super::urls::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Url.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
