//! Incidents: runs of failing probes that turned a URL down (written by
//! `store::outcomes` in the flush's transaction; read here).

use sea_orm::{Condition, QueryOrder, QuerySelect, entity::prelude::*};

use crate::domain::{
    IncidentRecord, UserId,
    state::{FailedProbe, UrlState},
};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "incidents")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub url_id: i64,
    pub state: i16,
    pub opened_at: DateTimeUtc,
    pub resolved_at: Option<DateTimeUtc>,
    pub failed_probes: i32,
    /// The first failing status of the run, as JSON (`FailedProbe`).
    pub first_status: String,
    /// The parent URL's incident this one is part of (`Url.depends_on`).
    pub parent_incident_id: Option<i64>,
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

impl From<Model> for IncidentRecord {
    fn from(m: Model) -> Self {
        let first_failure = serde_json::from_str(&m.first_status).unwrap_or(FailedProbe {
            due_ms: m.opened_at.timestamp_millis(),
            probed_us: m.opened_at.timestamp_micros(),
            status_code: 0,
            latency_us: 0,
            ..FailedProbe::default()
        });
        Self {
            id: m.id,
            url_id: m.url_id,
            state: UrlState::from_stored(m.state),
            opened_at: m.opened_at,
            resolved_at: m.resolved_at,
            first_failure,
            failed_probes: u32::try_from(m.failed_probes).unwrap_or(0),
            parent_id: m.parent_incident_id,
        }
    }
}

/// One page of a user's incidents, newest first.
#[derive(Debug, Clone)]
pub struct PageQuery {
    pub user: UserId,
    /// Only this URL's.
    pub url_id: Option<i64>,
    /// Only incidents with a smaller id (the previous page's last).
    pub before_id: Option<i64>,
    pub limit: u64,
}

/// The user's incidents (ownership is a join on the user's URLs).
pub async fn page(db: &DatabaseConnection, query: PageQuery) -> Result<Vec<IncidentRecord>, DbErr> {
    let mut select = Entity::find()
        .inner_join(super::urls::Entity)
        .filter(super::urls::Column::UserId.eq(query.user.0));
    if let Some(url_id) = query.url_id {
        select = select.filter(Column::UrlId.eq(url_id));
    }
    if let Some(id) = query.before_id {
        select = select.filter(Column::Id.lt(id));
    }
    Ok(select
        .order_by_desc(Column::Id)
        .limit(query.limit)
        .all(db)
        .await?
        .into_iter()
        .map(IncidentRecord::from)
        .collect())
}

/// The incidents of these URLs that were open at some time since `since`
/// (open ones, and those resolved since), newest first, at most `limit`.
/// The caller has checked whose URLs these are.
pub async fn of_urls_since(
    db: &DatabaseConnection,
    url_ids: &[i64],
    since: DateTimeUtc,
    limit: u64,
) -> Result<Vec<IncidentRecord>, DbErr> {
    Ok(Entity::find()
        .filter(Column::UrlId.is_in(url_ids.iter().copied()))
        .filter(
            Condition::any()
                .add(Column::ResolvedAt.is_null())
                .add(Column::ResolvedAt.gte(since)),
        )
        .order_by_desc(Column::Id)
        .limit(limit)
        .all(db)
        .await?
        .into_iter()
        .map(IncidentRecord::from)
        .collect())
}
