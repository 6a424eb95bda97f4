//! `/channels`: register a Telegram bot (token checked with `getMe`, stored encrypted), list, show, delete.
use std::{sync::Arc, time::Duration};

use actix_web::{HttpResponse, web};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::{
    AccountSpec, ChannelError, Credentials, PacingLimits, Register, Unregister,
    repo::{self, ChannelRow, NewChannel},
    whatsapp::WaCredentials,
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
    /// Seconds between two messages to one WhatsApp recipient.
    pub per_recipient_interval_secs: Option<u64>,
}

/// WhatsApp's per-recipient margin: Meta's pair rate is approximate ("about 1 per 6 s"), so it
/// gets more room than `delivery.recipient_margin_ms` alone.
pub const PAIR_RATE_MARGIN: Duration = Duration::from_millis(250);

impl LimitsInput {
    /// Resolves against the server defaults for `kind`.
    pub fn resolve(&self, kind: ChannelKind, s: &Settings) -> PacingLimits {
        let margin = Duration::from_millis(s.delivery.pacing_margin_ms);
        let recipient_margin = Duration::from_millis(s.delivery.recipient_margin_ms);
        match kind {
            ChannelKind::Telegram => PacingLimits {
                account_per_sec: self.per_second.unwrap_or(s.telegram.bot_rate_per_sec),
                account_burst: self.burst.unwrap_or(s.telegram.bot_burst),
                recipient_interval: Duration::from_secs(1)
                    / self
                        .per_chat_per_second
                        .unwrap_or(s.telegram.chat_rate_per_sec)
                        .max(1),
                group_per_min: self
                    .per_group_per_minute
                    .unwrap_or(s.telegram.group_rate_per_min),
                margin,
                recipient_margin,
            },
            ChannelKind::WhatsappCloud => PacingLimits {
                account_per_sec: self.per_second.unwrap_or(s.whatsapp.number_rate_per_sec),
                account_burst: self.burst.unwrap_or(s.whatsapp.number_burst),
                recipient_interval: Duration::from_secs(
                    self.per_recipient_interval_secs
                        .unwrap_or(s.whatsapp.recipient_interval_secs),
                ),
                group_per_min: 1,
                margin,
                recipient_margin: recipient_margin.max(PAIR_RATE_MARGIN),
            },
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateChannel {
    kind: String,
    name: String,
    bot_token: Option<String>,
    phone_number_id: Option<String>,
    access_token: Option<String>,
    app_secret: Option<String>,
    verify_token: Option<String>,
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
    /// WhatsApp: the callback path to configure in Meta's app (under this server's public URL).
    #[serde(skip_serializing_if = "Option::is_none")]
    webhook_path: Option<String>,
    /// WhatsApp: the verify token, shown only in the answer that created the account.
    #[serde(skip_serializing_if = "Option::is_none")]
    verify_token: Option<String>,
    created_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Serialize)]
struct PacingView {
    per_second: u32,
    burst: u32,
    recipient_interval_ms: u128,
    per_group_per_minute: u32,
}

/// The kind stored on a row (rows are written by us, so an unknown kind is a bug: Telegram).
pub fn kind_of(row: &ChannelRow) -> ChannelKind {
    ChannelKind::parse(&row.kind).unwrap_or(ChannelKind::Telegram)
}

fn view(row: ChannelRow, settings: &Settings) -> ChannelView {
    let kind = kind_of(&row);
    let limits = stored_limits(&row).resolve(kind, settings);
    ChannelView {
        webhook_path: (kind == ChannelKind::WhatsappCloud)
            .then(|| format!("/whatsapp/webhook/{}", row.id)),
        verify_token: None,
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
            recipient_interval_ms: limits.recipient_interval.as_millis(),
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
            format!(
                "kind `{}` is not supported; use `telegram` or `whatsapp_cloud`",
                body.kind
            ),
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
        || limits.per_recipient_interval_secs == Some(0)
    {
        return Err(ApiError::Unprocessable(
            "invalid-limits",
            "limits must be at least 1".into(),
        ));
    }
    let (credentials, plaintext, external_id, username, verify_token) = match kind {
        ChannelKind::Telegram => {
            let token = body.bot_token.unwrap_or_default();
            let bot = check_bot_token(&state, &token).await?;
            (
                Credentials::Telegram(SecretString::from(token.clone())),
                token,
                Some(bot.id.to_string()),
                bot.username,
                None,
            )
        }
        ChannelKind::WhatsappCloud => {
            let creds = whatsapp_credentials(
                body.phone_number_id,
                body.access_token,
                body.app_secret,
                body.verify_token,
            )?;
            let plaintext = creds.to_json();
            let verify = creds.verify_token.expose_secret().to_owned();
            let id = creds.phone_number_id.clone();
            (
                Credentials::WhatsApp(Arc::new(creds)),
                plaintext,
                Some(id),
                None,
                Some(verify),
            )
        }
    };
    let row = repo::insert(
        &state.db,
        NewChannel {
            owner_id: &caller.user_id,
            kind: kind.as_str(),
            name,
            credentials: state.cipher.encrypt(&plaintext)?,
            external_id,
            username,
            limits: Some(serde_json::to_string(&limits).map_err(anyhow::Error::from)?),
        },
    )
    .await?;
    state
        .registry
        .send(Register(AccountSpec {
            id: row.id.clone(),
            credentials,
            limits: limits.resolve(kind, &state.settings),
        }))
        .await
        .map_err(|e| ApiError::Unexpected(e.into()))?;
    tracing::info!(channel_id = %row.id, kind = kind.as_str(), "channel account registered");
    let mut out = view(row, &state.settings);
    out.verify_token = verify_token;
    Ok(HttpResponse::Created().json(out))
}

async fn check_bot_token(
    state: &AppState,
    token: &str,
) -> Result<crate::channels::telegram::BotUser, ApiError> {
    if !valid_bot_token(token) {
        return Err(ApiError::Unprocessable(
            "invalid-bot-token",
            "bot_token must look like `123456:ABC…` as given by @BotFather".into(),
        ));
    }
    state.telegram.get_me(token).await.map_err(|e| match e {
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
    })
}

/// Validates a Cloud API number's fields; a missing verify token is generated.
fn whatsapp_credentials(
    phone_number_id: Option<String>,
    access_token: Option<String>,
    app_secret: Option<String>,
    verify_token: Option<String>,
) -> Result<WaCredentials, ApiError> {
    let invalid = |code: &'static str, why: &str| Err(ApiError::Unprocessable(code, why.into()));
    let phone_number_id = phone_number_id.unwrap_or_default();
    if phone_number_id.is_empty()
        || phone_number_id.len() > 32
        || !phone_number_id.bytes().all(|b| b.is_ascii_digit())
    {
        return invalid(
            "invalid-phone-number-id",
            "phone_number_id must be the numeric id Meta shows for the number",
        );
    }
    let printable =
        |s: &str| !s.is_empty() && s.len() <= 1024 && s.bytes().all(|b| b.is_ascii_graphic());
    let access_token = access_token.unwrap_or_default();
    if !printable(&access_token) {
        return invalid(
            "invalid-access-token",
            "access_token is required (a system-user token)",
        );
    }
    let app_secret = app_secret.unwrap_or_default();
    if !printable(&app_secret) {
        return invalid(
            "invalid-app-secret",
            "app_secret is required (it signs webhook calls)",
        );
    }
    let verify_token = match verify_token {
        Some(t) if printable(&t) => t,
        Some(_) => {
            return invalid(
                "invalid-verify-token",
                "verify_token must be printable ASCII",
            );
        }
        None => crate::crypto::random_urlsafe(24),
    };
    Ok(WaCredentials {
        phone_number_id,
        access_token: access_token.into(),
        app_secret: app_secret.into(),
        verify_token: verify_token.into(),
    })
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
