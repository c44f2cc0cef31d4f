//! Accounts. `email` is stored trimmed and lower-cased and is unique.

use sea_orm::entity::prelude::*;

use crate::domain::{Account, Credentials, Email, UserId};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "users")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    #[sea_orm(unique)]
    pub email: String,
    pub password_hash: String,
    pub created_at: DateTimeUtc,
    // `url_count`, AddUrl's quota counter, is a column of this table but not
    // of this model: only the URL service's own statements touch it, and an
    // account read (Register, Login) never depends on it.
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

impl From<Model> for Account {
    fn from(m: Model) -> Self {
        Self {
            id: UserId(m.id),
            email: m.email,
        }
    }
}

/// Creates an account. A taken email is a unique violation
/// ([`super::is_unique_violation`]).
pub async fn insert(
    db: &DatabaseConnection,
    email: &Email,
    password_hash: String,
    created_at: DateTimeUtc,
) -> Result<Account, DbErr> {
    let user = ActiveModel {
        email: sea_orm::Set(email.as_str().to_owned()),
        password_hash: sea_orm::Set(password_hash),
        created_at: sea_orm::Set(created_at),
        ..Default::default()
    };
    Ok(user.insert(db).await?.into())
}

/// The id and password hash of the account with this email, if any.
pub async fn credentials(
    db: &DatabaseConnection,
    email: &Email,
) -> Result<Option<Credentials>, DbErr> {
    Ok(Entity::find()
        .filter(Column::Email.eq(email.as_str()))
        .one(db)
        .await?
        .map(|m| Credentials {
            id: UserId(m.id),
            password_hash: m.password_hash,
        }))
}

/// Whether an account with this email exists.
pub async fn email_taken(db: &DatabaseConnection, email: &Email) -> Result<bool, DbErr> {
    Ok(Entity::find()
        .filter(Column::Email.eq(email.as_str()))
        .count(db)
        .await?
        > 0)
}

/// Whether the account exists.
pub async fn exists(db: &DatabaseConnection, id: UserId) -> Result<bool, DbErr> {
    Ok(Entity::find_by_id(id.0).count(db).await? > 0)
}
