//! `users`: people and machines that own data.
use sea_orm::entity::prelude::*;

use crate::domain::UserId;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "users")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: UserId,
    pub subject: Option<String>,
    pub name: String,
    pub role: String,
    pub created_at: DateTimeUtc,
    pub plan: Option<String>,
    pub email: Option<String>,
    /// argon2 PHC string; only the local admin has one.
    pub password_hash: Option<String>,
    pub last_login_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
