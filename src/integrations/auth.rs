//! Who calls the alerts API: an integration token (JWT) or an owner's API key.
use actix_web::HttpRequest;

use super::{Status, repo, repo::IntegrationRow, tokens::Claims};
use crate::{
    auth::{self, Caller},
    error::ApiError,
    state::AppState,
};

/// A verified integration token and the integration it belongs to.
#[derive(Debug, Clone)]
pub struct TokenCaller {
    /// Its claims.
    pub claims: Claims,
    /// Its integration (never revoked here).
    pub integration: IntegrationRow,
}

impl TokenCaller {
    /// 403 unless the token carries `scope`.
    pub fn require(&self, scope: &str) -> Result<(), ApiError> {
        if self.claims.has_scope(scope) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(
                "insufficient-scope",
                format!("this token lacks the `{scope}` scope"),
            ))
        }
    }
}

/// The caller of an alerts API route.
#[derive(Debug, Clone)]
pub enum AlertCaller {
    /// An integration token.
    Token(Box<TokenCaller>),
    /// An owner's API key (`prg_…`).
    ApiKey(Caller),
}

fn bearer(req: &HttpRequest) -> Result<&str, ApiError> {
    req.headers()
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

/// Resolves the bearer credentials of `req`. Integration tokens must be signed by this server,
/// unexpired by the server's clock, not revoked, and belong to a live integration.
pub async fn authenticate(req: &HttpRequest, state: &AppState) -> Result<AlertCaller, ApiError> {
    let token = bearer(req)?;
    if token.starts_with("prg_") {
        return auth::repo::authenticate(&state.db, token)
            .await?
            .map(AlertCaller::ApiKey)
            .ok_or(ApiError::InvalidCredentials);
    }
    let invalid =
        || ApiError::Unauthorized("invalid-token", "not a token issued by this server".into());
    let revoked = || {
        ApiError::Unauthorized(
            "token-revoked",
            "this token or its integration was revoked".into(),
        )
    };
    let claims = state.tokens.verify(token).ok_or_else(invalid)?;
    if claims
        .expires_at()
        .is_some_and(|exp| exp <= state.clock.now())
    {
        return Err(ApiError::Unauthorized(
            "token-expired",
            "this token has expired; issue a new one".into(),
        ));
    }
    let row = repo::find_token(&state.db, &claims.id_hash())
        .await?
        .filter(|row| row.integration_id == claims.sub)
        .ok_or_else(invalid)?;
    if row.revoked_at.is_some() {
        return Err(revoked());
    }
    let integration = repo::find(&state.db, &claims.sub)
        .await?
        .filter(|i| i.status != Status::Revoked.as_str())
        .ok_or_else(revoked)?;
    Ok(AlertCaller::Token(Box::new(TokenCaller {
        claims,
        integration,
    })))
}
