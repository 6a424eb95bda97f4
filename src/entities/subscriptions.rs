//! `subscriptions`: an owner's message status events posted to one of their webhook channels.
use sea_orm::entity::prelude::*;

use crate::domain::{ChannelId, UserId};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "subscriptions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub owner_id: UserId,
    /// The webhook channel the events are posted through.
    pub channel_id: ChannelId,
    /// Comma-separated event names (`sent,delivered,read,failed,skipped`).
    pub events: String,
    /// Only messages sent on this channel, when set.
    pub source_channel_id: Option<ChannelId>,
    /// The last sequence number given to an event.
    pub sequence: i64,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
