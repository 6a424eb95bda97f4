//! `channel_accounts`: a Telegram bot or WhatsApp number, with encrypted credentials.
use sea_orm::entity::prelude::*;

use crate::domain::{ChannelId, UserId};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "channel_accounts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: ChannelId,
    pub owner_id: UserId,
    pub kind: String,
    pub name: String,
    pub credentials: String,
    pub external_id: Option<String>,
    pub username: Option<String>,
    pub limits: Option<String>,
    pub status: String,
    pub status_detail: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub update_offset: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
