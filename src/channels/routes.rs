//! `/channels`: register a Telegram bot (token checked with `getMe`, stored encrypted), list, show, delete.
use actix_web::{HttpResponse, web};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::{
    AccountSpec, ChannelError, PacingLimits, Register, Unregister,
    repo::{self, ChannelRow, NewChannel},
};
use crate::{
    auth::Caller, config::Settings, domain::ChannelKind, error::ApiError, state::AppState,
};

/// Mounts the channel routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/channels", web::post().to(create_channel))
        .route("/channels", web::get().to(list_channels))
        .route("/channels/{id}", web::get().to(get_channel))
        .route("/channels/{id}", web::delete().to(delete_channel));
}

/// Pacing overrides for one account; unset fields use the server defaults.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsInput {
    /// Sends per second for the account.
    pub per_second: Option<u32>,
    /// Burst above `per_second`.
    pub burst: Option<u32>,
    /// Sends per second to one private chat.
    pub per_chat_per_second: Option<u32>,
    /// Sends per minute to one group.
    pub per_group_per_minute: Option<u32>,
}

impl LimitsInput {
    /// Resolves against the server defaults.
    pub fn resolve(&self, s: &Settings) -> PacingLimits {
        PacingLimits {
            account_per_sec: self.per_second.unwrap_or(s.telegram.bot_rate_per_sec),
            account_burst: self.burst.unwrap_or(s.telegram.bot_burst),
            private_per_sec: self
                .per_chat_per_second
                .unwrap_or(s.telegram.chat_rate_per_sec),
            group_per_min: self
                .per_group_per_minute
                .unwrap_or(s.telegram.group_rate_per_min),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateChannel {
    kind: String,
    name: String,
    bot_token: Option<String>,
    limits: Option<LimitsInput>,
}

#[derive(Serialize)]
struct ChannelView {
    id: String,
    kind: String,
    name: String,
    username: Option<String>,
    external_id: Option<String>,
    status: String,
    status_detail: Option<String>,
    limits: PacingView,
    created_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Serialize)]
struct PacingView {
    per_second: u32,
    burst: u32,
    per_chat_per_second: u32,
    per_group_per_minute: u32,
}

fn view(row: ChannelRow, settings: &Settings) -> ChannelView {
    let limits = stored_limits(&row).resolve(settings);
    ChannelView {
        id: row.id,
        kind: row.kind,
        name: row.name,
        username: row.username,
        external_id: row.external_id,
        status: row.status,
        status_detail: row.status_detail,
        limits: PacingView {
            per_second: limits.account_per_sec,
            burst: limits.account_burst,
            per_chat_per_second: limits.private_per_sec,
            per_group_per_minute: limits.group_per_min,
        },
        created_at: row.created_at,
    }
}

/// The overrides stored with an account (none if absent or unreadable).
pub fn stored_limits(row: &ChannelRow) -> LimitsInput {
    row.limits
        .as_deref()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_default()
}

fn valid_bot_token(t: &str) -> bool {
    let Some((id, secret)) = t.split_once(':') else {
        return false;
    };
    !id.is_empty()
        && id.bytes().all(|b| b.is_ascii_digit())
        && (20..=100).contains(&secret.len())
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

async fn create_channel(
    caller: Caller,
    body: web::Json<CreateChannel>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let kind = ChannelKind::parse(&body.kind).ok_or_else(|| {
        ApiError::Unprocessable(
            "unsupported-channel-kind",
            format!("kind `{}` is not supported; use `telegram`", body.kind),
        )
    })?;
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ApiError::Unprocessable(
            "invalid-name",
            "name must be 1 to 100 characters".into(),
        ));
    }
    let limits = body.limits.unwrap_or_default();
    if [
        limits.per_second,
        limits.burst,
        limits.per_chat_per_second,
        limits.per_group_per_minute,
    ]
    .contains(&Some(0))
    {
        return Err(ApiError::Unprocessable(
            "invalid-limits",
            "limits must be at least 1".into(),
        ));
    }
    let ChannelKind::Telegram = kind;
    let token = body.bot_token.unwrap_or_default();
    if !valid_bot_token(&token) {
        return Err(ApiError::Unprocessable(
            "invalid-bot-token",
            "bot_token must look like `123456:ABC…` as given by @BotFather".into(),
        ));
    }
    let bot = state.telegram.get_me(&token).await.map_err(|e| match e {
        ChannelError::Unauthorized { .. } | ChannelError::Permanent { .. } => {
            ApiError::Unprocessable(
                "bot-token-rejected",
                "Telegram rejected the bot token (getMe failed)".into(),
            )
        }
        other => ApiError::BadGateway(
            "provider-unreachable",
            format!("could not check the token with Telegram: {other}"),
        ),
    })?;
    let row = repo::insert(
        &state.db,
        NewChannel {
            owner_id: &caller.user_id,
            kind: kind.as_str(),
            name,
            credentials: state.cipher.encrypt(&token)?,
            external_id: Some(bot.id.to_string()),
            username: bot.username,
            limits: Some(serde_json::to_string(&limits).map_err(anyhow::Error::from)?),
        },
    )
    .await?;
    state
        .registry
        .send(Register(AccountSpec {
            id: row.id.clone(),
            token: SecretString::from(token),
            limits: limits.resolve(&state.settings),
        }))
        .await
        .map_err(|e| ApiError::Unexpected(e.into()))?;
    tracing::info!(channel_id = %row.id, kind = kind.as_str(), "channel account registered");
    Ok(HttpResponse::Created().json(view(row, &state.settings)))
}

async fn list_channels(
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let rows = repo::list_for(&state.db, &caller.user_id).await?;
    let items: Vec<_> = rows.into_iter().map(|r| view(r, &state.settings)).collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "items": items })))
}

async fn get_channel(
    caller: Caller,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let row = repo::find_visible(&state.db, &caller, &path)
        .await?
        .ok_or_else(not_found)?;
    Ok(HttpResponse::Ok().json(view(row, &state.settings)))
}

async fn delete_channel(
    caller: Caller,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let row = repo::find_visible(&state.db, &caller, &path)
        .await?
        .ok_or_else(not_found)?;
    repo::delete(&state.db, &row.id).await?;
    let _ = state.registry.send(Unregister(row.id)).await;
    Ok(HttpResponse::NoContent().finish())
}

fn not_found() -> ApiError {
    ApiError::NotFound("channel-not-found", "no such channel account".into())
}

#[cfg(test)]
mod tests {
    use super::valid_bot_token;

    #[test]
    fn bot_token_shape() {
        assert!(valid_bot_token("123456:ABCdefGhIJKlmNoPQRsTUVwxyZ0123456"));
        assert!(!valid_bot_token("nope"));
        assert!(!valid_bot_token(":ABCdefGhIJKlmNoPQRsTUVwxyZ"));
        assert!(!valid_bot_token("12a:ABCdefGhIJKlmNoPQRsTUVwxyZ"));
    }
}
