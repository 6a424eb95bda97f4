//! `audit_log`: who changed what, when, from where.
use sea_orm::entity::prelude::*;

use crate::domain::UserId;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_log")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub at: DateTimeUtc,
    pub actor_id: Option<UserId>,
    /// `api_key`, `session`, `bearer` or `anonymous`.
    pub actor_kind: String,
    /// Method and route pattern, e.g. `DELETE /api/v1/channels/{id}`.
    pub action: String,
    /// The route's path parameters as JSON, e.g. `{"id":"…"}`.
    pub target: Option<String>,
    pub status: i32,
    pub ip: Option<String>,
    pub request_id: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
