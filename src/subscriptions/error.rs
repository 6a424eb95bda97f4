//! The subscriptions feature's errors; each has one stable code and one status.
use crate::error::ApiError;

/// What a subscription request can come to, short of success.
#[derive(Debug, thiserror::Error)]
pub enum SubscriptionError {
    /// No such subscription (or another owner's).
    #[error("no such subscription")]
    NotFound,
    /// `channel_id` is not one of the caller's webhook channels.
    #[error("channel_id must be one of your webhook channels")]
    NotAWebhookChannel,
    /// An event name the server does not know.
    #[error("unknown event `{0}`; use any of sent, delivered, read, failed, skipped")]
    UnknownEvent(String),
    /// `source_channel_id` is not one of the caller's channels.
    #[error("source_channel_id is not one of your channels")]
    UnknownSource,
    /// Too many ids to replay at once.
    #[error("replay at most {0} ids at a time")]
    TooMany(usize),
    /// The database or the queue failed.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<sea_orm::DbErr> for SubscriptionError {
    fn from(e: sea_orm::DbErr) -> Self {
        Self::Unexpected(e.into())
    }
}

impl From<SubscriptionError> for ApiError {
    fn from(e: SubscriptionError) -> Self {
        let why = e.to_string();
        match e {
            SubscriptionError::NotFound => ApiError::NotFound("subscription-not-found", why),
            SubscriptionError::NotAWebhookChannel => {
                ApiError::Unprocessable("not-a-webhook-channel", why)
            }
            SubscriptionError::UnknownEvent(_) => ApiError::Unprocessable("unknown-event", why),
            SubscriptionError::UnknownSource => ApiError::NotFound("channel-not-found", why),
            SubscriptionError::TooMany(_) => ApiError::Unprocessable("too-many-ids", why),
            SubscriptionError::Unexpected(e) => ApiError::Unexpected(e),
        }
    }
}
