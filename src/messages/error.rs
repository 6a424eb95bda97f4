//! The messages feature's errors; each has one stable code and one status.
use crate::domain::{ChannelId, MediaId};
use crate::error::ApiError;

/// What a send or a status request can come to, short of success.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    /// No such message (or another owner's).
    #[error("no such message")]
    NotFound,
    /// `channel_id` is not one of the caller's accounts.
    #[error("no channel account `{0}`")]
    ChannelNotFound(ChannelId),
    /// The account's kind is not registered on this server.
    #[error("channel `{0}` is of an unknown kind")]
    UnknownKind(ChannelId),
    /// The recipient is not an address of the channel.
    #[error("{0}")]
    InvalidRecipient(String),
    /// No text and no media.
    #[error("text is required when no media_id is given")]
    TextEmpty,
    /// Text over the provider's limit.
    #[error("text has {0} characters; Telegram takes at most {1}")]
    TextTooLong(usize, usize),
    /// Caption over the provider's limit.
    #[error("with media, text is a caption of at most {1} characters; it has {0}")]
    CaptionTooLong(usize, usize),
    /// A parse mode no channel knows.
    #[error("parse_mode must be one of {0}")]
    InvalidParseMode(String),
    /// `media_id` is not one of the caller's files.
    #[error("no media `{0}`")]
    MediaNotFound(MediaId),
    /// The `Idempotency-Key` came before with another body.
    #[error("this Idempotency-Key was already used with a different request body")]
    KeyReused,
    /// The database or the queue failed.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<sea_orm::DbErr> for MessageError {
    fn from(e: sea_orm::DbErr) -> Self {
        Self::Unexpected(e.into())
    }
}

impl From<MessageError> for ApiError {
    fn from(e: MessageError) -> Self {
        let why = e.to_string();
        match e {
            MessageError::NotFound => ApiError::NotFound("message-not-found", why),
            MessageError::ChannelNotFound(_) => ApiError::NotFound("channel-not-found", why),
            MessageError::UnknownKind(_) => {
                ApiError::Unprocessable("unsupported-channel-kind", why)
            }
            MessageError::InvalidRecipient(_) => ApiError::Unprocessable("invalid-recipient", why),
            MessageError::TextEmpty => ApiError::Unprocessable("text-empty", why),
            MessageError::TextTooLong(..) => ApiError::Unprocessable("text-too-long", why),
            MessageError::CaptionTooLong(..) => ApiError::Unprocessable("caption-too-long", why),
            MessageError::InvalidParseMode(_) => ApiError::Unprocessable("invalid-parse-mode", why),
            MessageError::MediaNotFound(_) => ApiError::NotFound("media-not-found", why),
            MessageError::KeyReused => ApiError::Conflict("idempotency-key-reused", why),
            MessageError::Unexpected(e) => ApiError::Unexpected(e),
        }
    }
}
