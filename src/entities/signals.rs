//! `signals`: what trading indicators posted, parsed, or raw with the reason it was not.
use sea_orm::entity::prelude::*;

use crate::domain::{MediaId, MessageId, UserId};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "signals")]
pub struct Model {
    /// UUIDv7: ordered by arrival.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub owner_id: UserId,
    /// The body as posted.
    pub raw: String,
    /// Why it could not be read (`no-ticker`, …); none when parsed.
    pub parse_error: Option<String>,
    pub ticker: Option<String>,
    pub exchange: Option<String>,
    pub symbol: Option<String>,
    pub price: Option<f64>,
    pub signal_type: Option<String>,
    pub indicator: Option<String>,
    pub timeframe: Option<String>,
    pub chart_id: Option<String>,
    /// `pending`, `processing`, `completed`, `failed` or `skipped` (no chart to capture).
    pub screenshot_status: String,
    /// The captured chart, in the media library (owned by the signal's owner).
    pub screenshot_media_id: Option<MediaId>,
    pub screenshot_error: Option<String>,
    /// Captures tried so far.
    pub snapshot_attempts: i32,
    /// When the next try may start (after a failed one).
    pub snapshot_due_at: Option<DateTimeUtc>,
    /// `pending`, `win`, `loss` or `skip`.
    pub result: String,
    pub profit_loss: Option<f64>,
    pub notes: Option<String>,
    /// SHA-256 of the chart id and the body: the same alert twice within the window is one.
    pub payload_hash: String,
    pub dedup_slot: i64,
    /// The owner's plan priority when it arrived (1 first).
    pub priority: i16,
    /// The message that delivers it.
    pub message_id: Option<MessageId>,
    pub received_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
