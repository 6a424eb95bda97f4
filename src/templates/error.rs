//! The templates feature's errors; each has one stable code and one status.
use crate::domain::ContactId;
use crate::error::{ApiError, FieldError};

/// What a template request can come to, short of success.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// No such template (or another owner's).
    #[error("no template `{0}`")]
    NotFound(String),
    /// Fields failed validation.
    #[error("{} invalid field(s)", .0.len())]
    Invalid(Vec<FieldError>),
    /// The contact to preview for is not the template owner's.
    #[error("no contact `{0}`")]
    ContactNotFound(ContactId),
    /// The stored body no longer parses.
    #[error("{0}")]
    Unparsable(String),
    /// The contact lacks variables the template needs.
    #[error("contact {contact_id} has no value for: {}", .lacking.join(", "))]
    MissingVariables {
        /// The contact previewed.
        contact_id: ContactId,
        /// The variables it lacks.
        lacking: Vec<String>,
    },
    /// The template failed to render for another reason.
    #[error("{0}")]
    RenderFailed(String),
    /// The database failed.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<sea_orm::DbErr> for TemplateError {
    fn from(e: sea_orm::DbErr) -> Self {
        Self::Unexpected(e.into())
    }
}

impl From<TemplateError> for ApiError {
    fn from(e: TemplateError) -> Self {
        let why = e.to_string();
        match e {
            TemplateError::NotFound(_) => ApiError::NotFound("template-not-found", why),
            TemplateError::Invalid(fields) => ApiError::Invalid(fields),
            TemplateError::ContactNotFound(_) => ApiError::NotFound("contact-not-found", why),
            TemplateError::Unparsable(_) => ApiError::Unprocessable("invalid-template", why),
            TemplateError::MissingVariables { .. } => {
                ApiError::Unprocessable("missing-variables", why)
            }
            TemplateError::RenderFailed(_) => ApiError::Unprocessable("render-failed", why),
            TemplateError::Unexpected(e) => ApiError::Unexpected(e),
        }
    }
}
