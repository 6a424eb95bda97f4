//! `signal_profiles`: a user's trading webhook: token hashes, quota use, delivery target.
use sea_orm::entity::prelude::*;

use crate::domain::{ChannelId, UserId};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "signal_profiles")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: UserId,
    /// SHA-256 of the webhook token (none until the first one is issued).
    pub token_hash: Option<String>,
    /// The token before the last rotation, valid until `previous_valid_until`.
    pub previous_token_hash: Option<String>,
    pub previous_valid_until: Option<DateTimeUtc>,
    pub webhook_enabled: bool,
    pub webhook_last_used: Option<DateTimeUtc>,
    /// Signals taken from the plan's quota since the period began.
    pub signals_used: i32,
    /// When the period ends and `signals_used` starts again from zero.
    pub quota_reset_at: DateTimeUtc,
    /// Comma-separated IPs and CIDR blocks allowed to post (none: any).
    pub allowed_ips: Option<String>,
    /// Where parsed signals are delivered: one of the owner's channels and a recipient on it.
    pub channel_id: Option<ChannelId>,
    pub recipient: Option<String>,
    /// Per-user message template (minijinja); the default when none.
    pub template: Option<String>,
    pub default_chart_id: Option<String>,
    /// The user's TradingView session cookies (JSON `{name: value}`), encrypted; sent only to
    /// the chart's host.
    pub tradingview_cookies: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
