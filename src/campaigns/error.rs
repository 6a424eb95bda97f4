//! The campaigns feature's errors; each has one stable code and one status.
use actix_web::HttpResponse;
use serde_json::{Value, json};

use crate::domain::CampaignId;
use crate::error::ApiError;

/// What a campaign request can come to, short of success.
#[derive(Debug, thiserror::Error)]
pub enum CampaignError {
    /// A field breaks a rule (422 with `code`).
    #[error("{1}")]
    Invalid(&'static str, String),
    /// The campaign, or something it names, does not exist for the caller (404 with `code`).
    #[error("{1}")]
    NotFound(&'static str, String),
    /// The campaign is not in a state that allows this (409 with `code`).
    #[error("{1}")]
    Conflict(&'static str, String),
    /// Contacts lack a variable the message uses (422 `missing-variables`, with the list).
    #[error(
        "{affected} contact(s) lack a variable the message uses; fill them in or start with skip_missing"
    )]
    MissingVariables {
        /// The draft that was not started.
        campaign_id: CampaignId,
        /// How many contacts lack one.
        affected: u64,
        /// The first of them, with what they lack.
        contacts: Vec<Value>,
    },
    /// The database failed.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<sea_orm::DbErr> for CampaignError {
    fn from(e: sea_orm::DbErr) -> Self {
        Self::Unexpected(e.into())
    }
}

impl CampaignError {
    /// The HTTP answer: the missing-variables refusal carries its list; the rest are the
    /// server's usual errors.
    pub fn respond(self) -> Result<HttpResponse, ApiError> {
        match self {
            CampaignError::MissingVariables {
                campaign_id,
                affected,
                contacts,
            } => {
                let message = format!(
                    "{affected} contact(s) lack a variable the message uses; fill them in or start with skip_missing"
                );
                // Problem details like every error, with the list as extension members.
                let body = json!({
                    "type": "urn:pregonero:problem:missing-variables",
                    "title": "Unprocessable Entity",
                    "status": 422,
                    "detail": message,
                    "error": "missing-variables",
                    "message": message,
                    "contacts_missing_variables": affected,
                    "contacts": contacts,
                    "campaign_id": campaign_id,
                });
                Ok(HttpResponse::UnprocessableEntity()
                    .content_type(crate::error::PROBLEM_JSON)
                    .body(body.to_string()))
            }
            other => Err(other.into()),
        }
    }
}

impl From<CampaignError> for ApiError {
    fn from(e: CampaignError) -> Self {
        match e {
            CampaignError::Invalid(code, why) => ApiError::Unprocessable(code, why),
            CampaignError::NotFound(code, why) => ApiError::NotFound(code, why),
            CampaignError::Conflict(code, why) => ApiError::Conflict(code, why),
            e @ CampaignError::MissingVariables { .. } => {
                ApiError::Unprocessable("missing-variables", e.to_string())
            }
            CampaignError::Unexpected(e) => ApiError::Unexpected(e),
        }
    }
}
