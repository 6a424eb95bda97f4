//! `Caller`: the authenticated owner behind `Authorization: Bearer <api key>`.
use std::{future::Future, pin::Pin};

use actix_web::{FromRequest, HttpRequest, dev::Payload, web};

use super::repo;
use crate::{error::ApiError, state::AppState};

/// The owner a request acts for.
#[derive(Debug, Clone)]
pub struct Caller {
    /// `users.id`.
    pub user_id: String,
    /// `admin`, `operator` or `viewer`.
    pub role: String,
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let token = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(|t| t.trim().to_owned());
        Box::pin(async move {
            let state =
                state.ok_or_else(|| ApiError::Unexpected(anyhow::anyhow!("AppState missing")))?;
            let token = token
                .filter(|t| !t.is_empty())
                .ok_or(ApiError::MissingCredentials)?;
            repo::authenticate(&state.db, &token)
                .await?
                .ok_or(ApiError::InvalidCredentials)
        })
    }
}
