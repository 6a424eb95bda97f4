//! `media`: uploaded files, stored by key in the media store.
use sea_orm::entity::prelude::*;

use crate::domain::{MediaId, UserId};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "media")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: MediaId,
    pub owner_id: UserId,
    pub storage_key: String,
    pub content_type: String,
    pub filename: Option<String>,
    pub size: i64,
    pub sha256: String,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
