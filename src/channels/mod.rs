//! Channel accounts: the supervised actors that own each bot/number, pace its sends and talk to the provider.
mod account;
pub mod adapter;
mod error;
mod registry;
pub mod repo;
mod running;
pub mod sync;
pub mod telegram;
pub mod updates;
pub mod webhook;
pub mod whatsapp;
pub mod whatsapp_web;

use crate::domain::MessageId;
use bytes::Bytes;

pub use crate::pacing::{Pacer, PacingLimits};
pub use account::{AccountActor, AccountSnapshot, Crash, Retire};
pub use adapter::{Adapters, Address, ChannelAdapter};
pub use error::ChannelError;
pub use registry::{
    AccountSpec, ChannelRegistry, EnableUpdates, Lookup, Register, Snapshot, StopAll, Unregister,
};
pub use running::{Running, Sender};
pub use updates::{UpdateSink, UpdatesConfig};

/// What an adapter sends: recipient, text (caption with media) and optional media bytes.
#[derive(Debug, Clone)]
pub struct OutboundMessage {
    /// The ledger's message id (kinds that pass one on, for the receiver's deduplication).
    pub id: Option<MessageId>,
    /// Chat id / username (Telegram), E.164 phone (WhatsApp).
    pub recipient: String,
    /// Text, or caption when `media` is set.
    pub text: String,
    /// Telegram parse mode.
    pub parse_mode: Option<String>,
    /// Attached file.
    pub media: Option<MediaPayload>,
    /// A WhatsApp approved template to send instead of the text.
    pub template: Option<ProviderTemplate>,
}

/// A WhatsApp approved template with its body parameters, in order (CHANNELS.md [W-TPL]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ProviderTemplate {
    /// Template name as approved by Meta.
    pub name: String,
    /// Language code, e.g. `es` or `en_US`.
    pub language: String,
    /// Body parameters (`{{1}}`, `{{2}}`, …) in order.
    #[serde(default)]
    pub params: Vec<String>,
}

/// A file to upload with the message.
#[derive(Debug, Clone)]
pub struct MediaPayload {
    /// Our media id (adapters cache provider-side uploads by it).
    pub key: String,
    /// File contents.
    pub bytes: Bytes,
    /// MIME type; `image/*` goes as a photo, anything else as a document.
    pub content_type: String,
    /// Name shown to the recipient.
    pub filename: String,
    /// A URL the provider can fetch the file from (WhatsApp `send_media_as = "link"`).
    pub link: Option<String>,
}

/// The provider's acknowledgement of a send.
#[derive(Debug, Clone)]
pub struct Receipt {
    /// The provider's id for the message (Telegram `message_id`).
    pub provider_message_id: String,
}

/// The pacing limits of a stored account: its overrides over its kind's defaults (`None` for a
/// kind this server does not know).
pub fn account_limits(
    adapters: &Adapters,
    row: &repo::ChannelRow,
    settings: &crate::config::Settings,
) -> Option<PacingLimits> {
    adapters
        .get(&row.kind)
        .map(|a| a.limits(&repo::stored_limits(row), settings))
}
