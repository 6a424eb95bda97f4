//! `integrations`: a Telegram chat linked to one bot, with scoped tokens and a daily quota.
use sea_orm::entity::prelude::*;

use crate::domain::{ChannelId, IntegrationId, UserId};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "integrations")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: IntegrationId,
    pub owner_id: UserId,
    pub channel_id: ChannelId,
    pub name: String,
    pub chat_id: Option<String>,
    pub status: String,
    pub status_detail: Option<String>,
    pub scopes: String,
    pub daily_quota: i32,
    pub used_today: i32,
    pub quota_day: Option<String>,
    pub link_code_hash: Option<String>,
    pub link_expires_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
