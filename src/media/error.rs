//! The media feature's errors; each has one stable code and one status.
use crate::error::ApiError;

/// What a media request can come to, short of success.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// No such media (or another owner's).
    #[error("no such media")]
    NotFound,
    /// The row exists but the store has no file.
    #[error("the file is missing from the media store")]
    FileMissing,
    /// `?channel=` names no channel kind.
    #[error("channel must be one of: {0}")]
    UnknownChannel(String),
    /// The filename is not a plain name.
    #[error("filename must be a plain name up to 255 bytes")]
    InvalidFilename,
    /// The channel does not take this type.
    #[error("{0}")]
    UnsupportedForChannel(String),
    /// Nothing was uploaded.
    #[error("the file is empty")]
    Empty,
    /// The first bytes contradict the declared type.
    #[error("the file's contents are not {0}")]
    ContentMismatch(String),
    /// Over `media.max_upload_bytes`, or over the channel's limit for the type.
    #[error("the file is larger than {limit} bytes ({})", match .channel {
        Some(kind) => format!("{kind}'s limit for this type"),
        None => "media.max_upload_bytes".to_owned(),
    })]
    TooLarge {
        /// The limit.
        limit: u64,
        /// The channel kind whose limit it is, if not the server's.
        channel: Option<String>,
    },
    /// The upload stream broke.
    #[error("{0}")]
    Body(String),
    /// A template, unfinished campaign or unsent message still attaches it.
    #[error(
        "still used by {templates} templates, {campaigns} unfinished campaigns and {unsent} unsent messages"
    )]
    InUse {
        /// Templates.
        templates: u64,
        /// Campaigns.
        campaigns: u64,
        /// Messages.
        unsent: u64,
    },
    /// A signed link that is expired or forged.
    #[error("the link is expired or its signature does not match")]
    InvalidLink,
    /// The store did not answer (logged; the client is told to retry).
    #[error("the media store did not answer; try again shortly")]
    StoreUnavailable(anyhow::Error),
    /// The database failed.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<sea_orm::DbErr> for MediaError {
    fn from(e: sea_orm::DbErr) -> Self {
        Self::Unexpected(e.into())
    }
}

impl From<MediaError> for ApiError {
    fn from(e: MediaError) -> Self {
        let why = e.to_string();
        match e {
            MediaError::NotFound => ApiError::NotFound("media-not-found", why),
            MediaError::FileMissing => ApiError::NotFound("media-file-missing", why),
            MediaError::UnknownChannel(_) => ApiError::BadRequest("invalid-query", why),
            MediaError::InvalidFilename => ApiError::Unprocessable("invalid-filename", why),
            MediaError::UnsupportedForChannel(_) => {
                ApiError::Unprocessable("unsupported-media-type-for-channel", why)
            }
            MediaError::Empty => ApiError::Unprocessable("empty-upload", why),
            MediaError::ContentMismatch(_) => ApiError::Unprocessable("content-type-mismatch", why),
            MediaError::TooLarge { .. } => ApiError::PayloadTooLarge(why),
            MediaError::Body(_) => ApiError::BadRequest("invalid-body-stream", why),
            MediaError::InUse { .. } => ApiError::Conflict("media-in-use", why),
            MediaError::InvalidLink => ApiError::Forbidden("invalid-link", why),
            MediaError::StoreUnavailable(e) => {
                tracing::error!(error = %format!("{e:#}"), "media store failed");
                ApiError::unavailable("media-store-unavailable", why, 5)
            }
            MediaError::Unexpected(e) => ApiError::Unexpected(e),
        }
    }
}
