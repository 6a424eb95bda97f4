//! `campaigns`: one template sent to an audience of contacts over one channel account.
use sea_orm::entity::prelude::*;

use crate::domain::{CampaignId, ChannelId, MediaId, UserId};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "campaigns")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: CampaignId,
    pub owner_id: UserId,
    pub name: String,
    pub channel_id: ChannelId,
    /// The template the body came from (a copy is kept in `body`: editing the template later
    /// does not change a campaign already created).
    pub template_id: Option<String>,
    /// Jinja body rendered per contact.
    pub body: String,
    /// WhatsApp approved template, JSON `{name, language, params: [jinja…]}`.
    pub provider_template: Option<String>,
    pub media_id: Option<MediaId>,
    /// JSON `{groups: [...], contact_ids: [...]}`.
    pub audience: String,
    pub scheduled_at: Option<DateTimeUtc>,
    /// JSON `{start: "HH:MM", end: "HH:MM", utc_offset_minutes}`.
    pub send_window: Option<String>,
    /// `draft`, `preparing`, `scheduled`, `running`, `paused`, `completed`, `cancelled`.
    pub status: String,
    pub status_detail: Option<String>,
    pub total: i64,
    pub pending: i64,
    pub queued: i64,
    pub sent: i64,
    pub delivered: i64,
    pub read: i64,
    pub failed: i64,
    pub skipped: i64,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub started_at: Option<DateTimeUtc>,
    pub finished_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
