//! The events feature's errors (ingestion, queries, alert rules); each has one stable code
//! and one status.
use actix_web::http::StatusCode;

use crate::domain::{ChannelId, IntegrationId};
use crate::error::{ApiError, FieldError};

/// What an events or alert-rule request can come to, short of success.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// Fields failed validation.
    #[error("{} invalid field(s)", .0.len())]
    Invalid(Vec<FieldError>),
    /// A query parameter is out of range or contradicts another.
    #[error("{0}")]
    InvalidQuery(String),
    /// A cursor this server did not give.
    #[error("cursor is not one this server gave")]
    InvalidCursor,
    /// The ingestion buffer is full (429 with `Retry-After: 1`).
    #[error("{0} events are waiting to be written; slow down and retry")]
    BufferFull(u32),
    /// Storage failed repeatedly and the breaker is open (503).
    #[error("event storage failed repeatedly and is resting; nothing was kept, retry later")]
    CircuitOpen(u64),
    /// The write failed (503); nothing was kept.
    #[error("the events could not be stored; nothing was kept, retry later")]
    StorageUnavailable,
    /// No such rule (or another owner's).
    #[error("no alert rule `{0}`")]
    RuleNotFound(String),
    /// The rule's integration is not the caller's.
    #[error("no integration `{0}`")]
    IntegrationNotFound(IntegrationId),
    /// The rule's channel is not the caller's.
    #[error("no channel account `{0}`")]
    ChannelNotFound(ChannelId),
    /// The database failed.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<sea_orm::DbErr> for EventError {
    fn from(e: sea_orm::DbErr) -> Self {
        Self::Unexpected(e.into())
    }
}

impl From<EventError> for ApiError {
    fn from(e: EventError) -> Self {
        let why = e.to_string();
        match e {
            EventError::Invalid(fields) => ApiError::Invalid(fields),
            EventError::InvalidQuery(_) => ApiError::BadRequest("invalid-query", why),
            EventError::InvalidCursor => ApiError::BadRequest("invalid-cursor", why),
            EventError::BufferFull(_) => ApiError::Limited {
                status: StatusCode::TOO_MANY_REQUESTS,
                code: "buffer-full",
                message: why,
                retry_after: 1,
                resets_at: None,
            },
            EventError::CircuitOpen(retry_after) => {
                ApiError::unavailable("circuit-open", why, retry_after)
            }
            EventError::StorageUnavailable => ApiError::unavailable("storage-unavailable", why, 5),
            EventError::RuleNotFound(_) => ApiError::NotFound("rule-not-found", why),
            EventError::IntegrationNotFound(_) => ApiError::NotFound("integration-not-found", why),
            EventError::ChannelNotFound(_) => ApiError::NotFound("channel-not-found", why),
            EventError::Unexpected(e) => ApiError::Unexpected(e),
        }
    }
}
