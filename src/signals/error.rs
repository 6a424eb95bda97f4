//! The signals feature's errors; each has one stable code and one status.
use actix_web::http::StatusCode;
use chrono::{DateTime, Utc};

use crate::error::{ApiError, FieldError};

/// What a signals request can come to, short of success.
#[derive(Debug, thiserror::Error)]
pub enum SignalError {
    /// Unknown, rotated-out or disabled webhook token (one answer for all three).
    #[error("no such webhook")]
    UnknownWebhook,
    /// The profile's IP allow-list does not hold the client's address.
    #[error("this webhook accepts alerts only from its allowed addresses")]
    IpNotAllowed,
    /// The plan's signals for this period are used up.
    #[error("the {plan} plan's {quota} signals for this period are used up")]
    QuotaExceeded {
        plan: String,
        quota: u32,
        resets_at: DateTime<Utc>,
    },
    /// No such signal (or another owner's).
    #[error("no such signal")]
    NotFound,
    /// No such user (or another owner's).
    #[error("no such user")]
    UserNotFound,
    /// A plan the server does not define.
    #[error("unknown plan `{0}`; define it under signals.plans")]
    UnknownPlan(String),
    /// Fields failed validation.
    #[error("invalid fields")]
    Invalid(Vec<FieldError>),
    /// The database failed.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<sea_orm::DbErr> for SignalError {
    fn from(e: sea_orm::DbErr) -> Self {
        Self::Unexpected(e.into())
    }
}

impl From<SignalError> for ApiError {
    fn from(e: SignalError) -> Self {
        let why = e.to_string();
        match e {
            SignalError::UnknownWebhook => ApiError::NotFound("webhook-not-found", why),
            SignalError::IpNotAllowed => ApiError::Forbidden("ip-not-allowed", why),
            SignalError::QuotaExceeded { resets_at, .. } => ApiError::Limited {
                status: StatusCode::TOO_MANY_REQUESTS,
                code: "quota-exceeded",
                message: why,
                retry_after: u64::try_from((resets_at - Utc::now()).num_seconds().max(1))
                    .unwrap_or(1),
                resets_at: Some(resets_at),
            },
            SignalError::NotFound => ApiError::NotFound("signal-not-found", why),
            SignalError::UserNotFound => ApiError::NotFound("user-not-found", why),
            SignalError::UnknownPlan(_) => ApiError::Unprocessable("unknown-plan", why),
            SignalError::Invalid(fields) => ApiError::Invalid(fields),
            SignalError::Unexpected(e) => ApiError::Unexpected(e),
        }
    }
}
