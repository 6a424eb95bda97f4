//! `messages`: the outbox; one row per delivery, whatever produced it.
use sea_orm::entity::prelude::*;

use crate::domain::{CampaignId, ChannelId, ContactId, IntegrationId, MediaId, MessageId, UserId};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "messages")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: MessageId,
    pub owner_id: UserId,
    pub channel_id: ChannelId,
    pub recipient: String,
    pub body: String,
    pub parse_mode: Option<String>,
    pub media_id: Option<MediaId>,
    pub idempotency_key: Option<String>,
    pub request_hash: Option<String>,
    pub status: String,
    pub attempts: i32,
    pub provider_message_id: Option<String>,
    pub last_error_code: Option<String>,
    pub last_error: Option<String>,
    pub next_attempt_at: DateTimeUtc,
    pub locked_until: Option<DateTimeUtc>,
    pub locked_by: Option<String>,
    pub enqueued_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub sent_at: Option<DateTimeUtc>,
    pub integration_id: Option<IntegrationId>,
    /// The campaign this message belongs to (one per campaign and contact).
    pub campaign_id: Option<CampaignId>,
    /// The contact it goes to (campaigns).
    pub contact_id: Option<ContactId>,
    /// WhatsApp approved template to send instead of `body`: JSON `{name, language, params}`.
    pub provider_template: Option<String>,
    /// When the provider reported it delivered (status webhook).
    pub delivered_at: Option<DateTimeUtc>,
    /// When the provider reported it read (status webhook).
    pub read_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
