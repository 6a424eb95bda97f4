//! Who calls the alerts API: an integration token (JWT) or an owner's API key.

use actix_web::HttpRequest;

use super::{Status, legacy, repo, token_cache::TokenCaller};
use crate::{
    auth::{self, Caller},
    crypto,
    error::ApiError,
    state::AppState,
};

/// The caller of an alerts API route.
#[derive(Debug, Clone)]
pub enum AlertCaller {
    /// An integration token.
    Token(Box<TokenCaller>),
    /// An owner's API key (`prg_…`).
    ApiKey(Caller),
}

/// Resolves the bearer credentials of `req`. Integration tokens must be signed by this server,
/// unexpired by the server's clock, not revoked, and belong to a live integration.
pub async fn authenticate(req: &HttpRequest, state: &AppState) -> Result<AlertCaller, ApiError> {
    let token = auth::bearer_token(req.headers())?;
    if token.starts_with("prg_") {
        let caller = auth::extractor::api_key(state, token).await?;
        caller.name_in_audit(req);
        if auth::extractor::is_mutating(req.method()) {
            caller.ensure_can_write()?;
        }
        return Ok(AlertCaller::ApiKey(caller));
    }
    let invalid =
        || ApiError::Unauthorized("invalid-token", "not a token issued by this server".into());
    let revoked = || {
        ApiError::Unauthorized(
            "token-revoked",
            "this token or its integration was revoked".into(),
        )
    };
    let Some(claims) = state.tokens.verify(token) else {
        // Not ours: perhaps a token Pingui issued for an integration imported from it.
        let id_hash = crypto::hash_token(token);
        if let Some(cached) = state.token_cache.get(&id_hash) {
            return Ok(token_caller(req, cached));
        }
        let caller = legacy::authenticate(state, token)
            .await?
            .ok_or_else(invalid)?;
        if caller.integration.status == Status::Active.as_str() {
            state.token_cache.put(id_hash, &caller);
        }
        return Ok(token_caller(req, caller));
    };
    if claims
        .expires_at()
        .is_some_and(|exp| exp <= state.clock.now())
    {
        return Err(ApiError::Unauthorized(
            "token-expired",
            "this token has expired; issue a new one".into(),
        ));
    }
    let id_hash = claims.id_hash();
    if let Some(cached) = state.token_cache.get(&id_hash) {
        return Ok(token_caller(req, cached));
    }
    let row = repo::find_token(&state.db, &id_hash)
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
    let caller = TokenCaller {
        claims,
        integration,
    };
    if caller.integration.status == Status::Active.as_str() {
        state.token_cache.put(id_hash, &caller);
    }
    Ok(token_caller(req, caller))
}

/// An integration token acts for its integration's owner (as the audit log records it).
fn token_caller(req: &HttpRequest, caller: TokenCaller) -> AlertCaller {
    auth::Caller {
        user_id: caller.integration.owner_id.clone(),
        role: auth::Role::Operator,
        via: auth::Via::IntegrationToken,
    }
    .name_in_audit(req);
    AlertCaller::Token(Box::new(caller))
}
