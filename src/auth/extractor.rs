//! `Caller`: the authenticated owner behind `Authorization: Bearer <api key>`.
use std::future::{Ready, ready};

use actix_web::{
    FromRequest, HttpMessage, HttpRequest,
    body::MessageBody,
    dev::{Payload, ServiceRequest, ServiceResponse},
    middleware::Next,
    web,
};

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
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(
            req.extensions()
                .get::<Caller>()
                .cloned()
                .ok_or(ApiError::MissingCredentials),
        )
    }
}

/// The token of an `Authorization: Bearer <token>` header; 401 `missing-credentials` without one.
pub fn bearer_token(headers: &actix_web::http::header::HeaderMap) -> Result<&str, ApiError> {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(ApiError::MissingCredentials)
}

/// Middleware for `/api/v1`: resolves the bearer key before any body is read, so a request
/// without valid credentials gets 401 whatever else is wrong with it.
pub async fn require_api_key(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let state = req
        .app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| ApiError::Unexpected(anyhow::anyhow!("AppState missing")))?;
    let token = bearer_token(req.headers())?.to_owned();
    let caller = repo::authenticate(&state.db, &token)
        .await
        .map_err(ApiError::from)?
        .ok_or(ApiError::InvalidCredentials)?;
    // A viewer reads; anything that could change state is refused before any handler runs.
    if caller.role == "viewer"
        && !matches!(
            *req.method(),
            actix_web::http::Method::GET | actix_web::http::Method::HEAD
        )
    {
        return Err(ApiError::Forbidden(
            "read-only-role",
            "this API key's user is a viewer: it can read but not change anything".into(),
        )
        .into());
    }
    req.extensions_mut().insert(caller);
    next.call(req).await
}
