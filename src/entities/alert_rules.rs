//! `alert_rules`: events matching a rule are forwarded as alerts, rate limited per rule.
use sea_orm::entity::prelude::*;

use crate::domain::{ChannelId, IntegrationId, UserId};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "alert_rules")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub owner_id: UserId,
    pub name: String,
    pub service: Option<String>,
    /// JSON object: metadata path (`level`, `order.region`) → value it must equal.
    pub conditions: String,
    pub integration_id: Option<IntegrationId>,
    pub channel_id: Option<ChannelId>,
    pub chat_id: Option<String>,
    pub max_per_minute: i32,
    pub enabled: bool,
    pub fired_count: i64,
    pub suppressed_count: i64,
    pub last_fired_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
