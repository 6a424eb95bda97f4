//! The contacts feature's errors; each has one stable code and one status.
use crate::error::{ApiError, FieldError};

/// What a contacts request can come to, short of success.
#[derive(Debug, thiserror::Error)]
pub enum ContactError {
    /// No such contact (or another owner's).
    #[error("no contact `{0}`")]
    NotFound(String),
    /// No such import (or another owner's).
    #[error("no import `{0}`")]
    ImportNotFound(String),
    /// Fields failed validation.
    #[error("{} invalid field(s)", .0.len())]
    Invalid(Vec<FieldError>),
    /// Another of the owner's contacts has this phone.
    #[error("{0}")]
    Exists(String),
    /// The upload is not sent as a CSV body.
    #[error("send the CSV file itself as the body with Content-Type: text/csv")]
    UnsupportedMediaType,
    /// The filename is not a plain name.
    #[error("filename must be a plain name up to 255 bytes")]
    InvalidFilename,
    /// Over `contacts.max_import_bytes`.
    #[error("imports are limited to {0} bytes (contacts.max_import_bytes)")]
    TooLarge(u64),
    /// The upload stream broke.
    #[error("{0}")]
    Body(String),
    /// Nothing was uploaded.
    #[error("the request body is empty")]
    Empty,
    /// The file's header cannot be read as contacts.
    #[error("{0}")]
    InvalidCsv(String),
    /// The database or the disk failed.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<sea_orm::DbErr> for ContactError {
    fn from(e: sea_orm::DbErr) -> Self {
        Self::Unexpected(e.into())
    }
}

impl From<std::io::Error> for ContactError {
    fn from(e: std::io::Error) -> Self {
        Self::Unexpected(e.into())
    }
}

impl From<ContactError> for ApiError {
    fn from(e: ContactError) -> Self {
        let why = e.to_string();
        match e {
            ContactError::NotFound(_) => ApiError::NotFound("contact-not-found", why),
            ContactError::ImportNotFound(_) => ApiError::NotFound("import-not-found", why),
            ContactError::Invalid(fields) => ApiError::Invalid(fields),
            ContactError::Exists(_) => ApiError::Conflict("contact-exists", why),
            ContactError::UnsupportedMediaType => {
                ApiError::BadRequest("unsupported-media-type", why)
            }
            ContactError::InvalidFilename => ApiError::Unprocessable("invalid-filename", why),
            ContactError::TooLarge(_) => ApiError::PayloadTooLarge(why),
            ContactError::Body(_) => ApiError::BadRequest("invalid-body-stream", why),
            ContactError::Empty => ApiError::Unprocessable("empty-upload", why),
            ContactError::InvalidCsv(_) => ApiError::Unprocessable("invalid-csv", why),
            ContactError::Unexpected(e) => ApiError::Unexpected(e),
        }
    }
}
