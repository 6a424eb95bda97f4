//! Alerts API: integrations link a Telegram chat to a bot; scoped tokens send alerts to that
//! chat through the normal delivery pipeline, within a daily quota (drop-in for Pingui Alert).
//!
//! Lifecycle: `pending` (created, waiting for its chat) → `active` (linked) ⇄ `paused` (`/stop`
//! in the chat, or the bot blocked) → `revoked` (final; every token stops working).
mod auth;
mod bot;
pub mod legacy;
mod listener;
pub mod repo;
mod routes;
mod status;
pub mod token_cache;
pub mod tokens;

use chrono::{DateTime, Duration, Utc};

pub use auth::{AlertCaller, authenticate};
pub(crate) use bot::parse_command as bot_command;
pub use bot::{BotUpdates, telegram_webhook};
pub use listener::{AlertQuotas, IntegrationsListener};
pub use routes::{create_integration, resolve_channel};
pub use status::{PAUSED_BOT_BLOCKED, PAUSED_IN_CHAT, Status};
pub use token_cache::{TokenCache, TokenCaller};

/// Purpose string of the key Telegram webhook secrets are derived from.
pub const WEBHOOK_KEY_PURPOSE: &str = "telegram-webhook/v1";
pub use routes::configure;

use crate::{
    crypto,
    domain::{IntegrationId, UserId},
    error::ApiError,
    state::AppState,
};

/// A deep link that binds the chat that opens it to an integration.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct DeepLink {
    /// `https://t.me/<bot>?start=<code>`.
    pub url: String,
    /// When the code stops working.
    pub expires_at: DateTime<Utc>,
}

/// A fresh one-time link code for `bot_username`: the link, the hash to store, and its expiry.
pub fn new_link(bot_username: &str, ttl_secs: u64, now: DateTime<Utc>) -> (DeepLink, String) {
    // 24 random bytes → 32 base64url characters: within Telegram's 64 `A-Za-z0-9_-`.
    let code = crypto::random_urlsafe(24);
    let hash = crypto::hash_token(&code);
    // Settings validation bounds the lifetime, so this cannot overflow.
    let expires_at = now + Duration::seconds(i64::try_from(ttl_secs).unwrap_or(3600));
    let url = format!("https://t.me/{bot_username}?start={code}");
    (DeepLink { url, expires_at }, hash)
}

/// A token handed to a client once.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct IssuedToken {
    /// The JWT; only its `jti` hash is stored.
    pub token: String,
    /// Space-separated scopes.
    pub scope: String,
    /// When it stops working (`null`: never).
    pub expires_at: Option<DateTime<Utc>>,
}

/// Signs a token for `integration_id` and records the hash of its id.
pub async fn issue_token(
    state: &AppState,
    integration_id: &IntegrationId,
    kind: &str,
    scopes: &str,
    ttl: Option<Duration>,
) -> Result<IssuedToken, ApiError> {
    issue_token_in(&state.db, state, integration_id, kind, scopes, ttl).await
}

/// [`issue_token`] inside the caller's transaction.
pub async fn issue_token_in(
    db: &impl sea_orm::ConnectionTrait,
    state: &AppState,
    integration_id: &IntegrationId,
    kind: &str,
    scopes: &str,
    ttl: Option<Duration>,
) -> Result<IssuedToken, ApiError> {
    let now = state.clock.now();
    let claims = tokens::Claims::new(integration_id, kind, scopes, now, ttl);
    let token = state.tokens.sign(&claims)?;
    let expires_at = claims.expires_at();
    repo::insert_token(
        db,
        &claims.id_hash(),
        integration_id,
        kind,
        scopes,
        expires_at,
        now,
    )
    .await?;
    Ok(IssuedToken {
        token,
        scope: scopes.to_owned(),
        expires_at,
    })
}

/// Lifetime of a new access token (`alerts.token_ttl_days`; 0 = never expires).
pub fn access_ttl(state: &AppState) -> Option<Duration> {
    match state.settings.alerts.token_ttl_days {
        0 => None,
        days => Some(Duration::days(i64::try_from(days).unwrap_or(365))),
    }
}

/// The daily quota an owner's new integrations get, from the owner's plan.
pub async fn plan_quota(state: &AppState, owner_id: &UserId) -> Result<i32, ApiError> {
    let plan = crate::auth::repo::find_user(&state.db, owner_id)
        .await?
        .and_then(|u| u.plan);
    Ok(i32::try_from(state.settings.plan_quota(plan.as_deref())).unwrap_or(i32::MAX))
}

/// What is left of today's quota.
pub fn remaining(i: &repo::IntegrationRow, state: &AppState) -> i32 {
    let today = state.clock.today().to_string();
    if i.quota_day.as_deref() == Some(today.as_str()) {
        (i.daily_quota - i.used_today).max(0)
    } else {
        i.daily_quota
    }
}

/// Revokes an integration and its tokens in one transaction.
pub async fn revoke_integration(state: &AppState, id: &IntegrationId) -> Result<(), ApiError> {
    let txn = sea_orm::TransactionTrait::begin(&state.db).await?;
    repo::revoke(&txn, id, state.clock.now()).await?;
    txn.commit().await?;
    state.token_cache.clear();
    tracing::info!(integration_id = %id, "integration revoked");
    Ok(())
}
