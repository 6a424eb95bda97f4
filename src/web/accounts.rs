//! `/channels`: register an account of any kind (its adapter checks and stores the credentials,
//! encrypted), list, show, delete. The HTTP face of the delivery core's accounts: it lives here,
//! not in `channels/`, so the core imports no feature (auth, state).
use actix_web::{HttpResponse, delete, get, post, web};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::page::{Page, PageQuery};
use crate::{
    auth::Caller,
    channels::{
        AccountSpec, Register, Unregister,
        adapter::{Adapters, LimitsInput, SetupError},
        repo::{self, ChannelRow, NewChannel},
    },
    config::Settings,
    domain::ChannelId,
    error::ApiError,
    state::AppState,
};

/// Mounts the channel routes.
pub fn configure(cfg: &mut crate::mount::Routes) {
    cfg.service(create_channel)
        .service(list_channels)
        .service(get_channel)
        .service(delete_channel);
}

/// `POST /channels`: the common fields; the rest belong to the kind's adapter, which refuses
/// the ones it does not know.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = NewChannel)]
struct CreateChannel {
    /// The account's kind: `telegram`, `whatsapp`, `webhook`.
    kind: String,
    /// 1 to 100 characters.
    name: String,
    /// Pacing overrides; unset fields use the server's defaults.
    limits: Option<LimitsInput>,
    /// The kind's own fields: Telegram `bot_token`; WhatsApp `phone_number_id`,
    /// `access_token`, `app_secret`, optional `verify_token`; webhook `url`, `secret`, … (see
    /// docs/api.md). Only admins may set `allow_private_network`.
    #[serde(flatten)]
    fields: Map<String, Value>,
}

/// A channel account (never its credentials).
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Channel)]
struct ChannelView {
    id: ChannelId,
    /// `telegram`, `whatsapp`, `webhook`.
    kind: String,
    name: String,
    /// A display handle (`@bot_username`).
    username: Option<String>,
    /// The provider's id of the account (bot id, phone number id).
    external_id: Option<String>,
    /// `active`, `unauthorized` (the provider rejected its credentials) or `error`.
    status: String,
    status_detail: Option<String>,
    /// The account's pacing in effect; null for a kind this server no longer runs.
    limits: Option<PacingView>,
    /// Where the provider calls back (WhatsApp: the callback path to configure in Meta's app,
    /// under this server's public URL).
    #[serde(skip_serializing_if = "Option::is_none")]
    webhook_path: Option<String>,
    /// Fields shown only in the answer that created the account (WhatsApp's verify token).
    #[serde(flatten)]
    reveal: Map<String, Value>,
    created_at: chrono::DateTime<chrono::Utc>,
}

/// A channel account's pacing in effect.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = ChannelPacing)]
struct PacingView {
    per_second: u32,
    burst: u32,
    recipient_interval_ms: u128,
    per_group_per_minute: u32,
    /// Sends in any 24 hours, when capped.
    #[serde(skip_serializing_if = "Option::is_none")]
    per_day: Option<u32>,
    /// WhatsApp Web: the least and most milliseconds between two sends of the number.
    #[serde(skip_serializing_if = "Option::is_none")]
    gap_ms: Option<[u64; 2]>,
}

fn view(row: ChannelRow, adapters: &Adapters, settings: &Settings) -> ChannelView {
    let adapter = adapters.get(&row.kind);
    let limits = adapter.map(|a| a.limits(&repo::stored_limits(&row), settings));
    ChannelView {
        webhook_path: adapter.and_then(|a| a.webhook_path(&row.id)),
        reveal: Map::new(),
        id: row.id,
        kind: row.kind,
        name: row.name,
        username: row.username,
        external_id: row.external_id,
        status: row.status,
        status_detail: row.status_detail,
        limits: limits.map(|limits| PacingView {
            per_second: limits.account_per_sec,
            burst: limits.account_burst,
            recipient_interval_ms: limits.recipient_interval.as_millis(),
            per_group_per_minute: limits.group_per_min,
            per_day: (limits.daily_cap > 0).then_some(limits.daily_cap),
            gap_ms: limits
                .gap
                .map(|(lo, hi)| [lo.as_millis() as u64, hi.as_millis() as u64]),
        }),
        created_at: row.created_at,
    }
}

/// Register a channel account of any kind.
///
/// Its adapter checks the credentials with the provider and stores them encrypted. The answer
/// that creates it is the only one to show fields such as WhatsApp's generated `verify_token`.
#[utoipa::path(
    tag = "channels",
    responses(
        (status = 201, description = "The account, with the fields shown only once", body = ChannelView),
        (status = 400, description = "`invalid-json`, `unsupported-media-type`"),
        (status = 403, description = "`admin-only`: `allow_private_network` needs an admin"),
        (status = 413, description = "`payload-too-large`"),
        (status = 422, description = "`unsupported-channel-kind`, `invalid-name`, `invalid-limits`, `invalid-body`, `invalid-channel-fields`, the kind's own (`invalid-bot-token`, `bot-token-rejected`, `invalid-phone-number-id`, `invalid-access-token`, `invalid-app-secret`, `invalid-verify-token`, `invalid-webhook-url`, `webhook-url-forbidden`, `invalid-webhook-secret`, …)"),
        (status = 502, description = "`provider-unreachable`"),
    )
)]
#[post("/channels")]
async fn create_channel(
    caller: Caller,
    body: web::Json<CreateChannel>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let adapter = state.adapters.get(&body.kind).cloned().ok_or_else(|| {
        ApiError::Unprocessable(
            "unsupported-channel-kind",
            format!(
                "kind `{}` is not supported; use one of: {}",
                body.kind,
                state.adapters.kinds().join(", ")
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
        limits.per_day,
    ]
    .contains(&Some(0))
        || limits.per_recipient_interval_secs == Some(0)
    {
        return Err(ApiError::Unprocessable(
            "invalid-limits",
            "limits must be at least 1".into(),
        ));
    }
    let gap_ok = |v: Option<f64>| v.is_none_or(|g| g.is_finite() && (0.0..=86_400.0).contains(&g));
    if !gap_ok(limits.min_gap_secs)
        || !gap_ok(limits.max_gap_secs)
        || matches!((limits.min_gap_secs, limits.max_gap_secs), (Some(lo), Some(hi)) if lo > hi)
    {
        return Err(ApiError::Unprocessable(
            "invalid-limits",
            "min_gap_secs and max_gap_secs are seconds from 0 to 86400, min at most max".into(),
        ));
    }
    // Reaching into the server's own network (SSRF's door) is the operator's call, not a user's.
    if body.fields.get("allow_private_network") == Some(&Value::Bool(true)) && !caller.is_admin() {
        return Err(ApiError::Forbidden(
            "admin-only",
            "only admins can create a channel with allow_private_network".into(),
        ));
    }
    let account = adapter.setup(body.fields).await.map_err(|e| match e {
        SetupError::Invalid(code, why) => ApiError::Unprocessable(code, why),
        SetupError::Unreachable(why) => ApiError::BadGateway("provider-unreachable", why),
    })?;
    let row = repo::insert(
        &state.db,
        NewChannel {
            owner_id: &caller.user_id,
            kind: adapter.kind(),
            name,
            credentials: state.cipher.encrypt(&account.credentials)?,
            external_id: account.external_id,
            username: account.username,
            limits: Some(serde_json::to_string(&limits).map_err(anyhow::Error::from)?),
        },
    )
    .await?;
    state
        .registry
        .send(Register(AccountSpec {
            id: row.id.clone(),
            kind: adapter.kind(),
            connection: account.connection,
            limits: adapter.limits(&limits, &state.settings),
        }))
        .await
        .map_err(|e| ApiError::Unexpected(e.into()))?;
    tracing::info!(channel_id = %row.id, kind = adapter.kind(), "channel account registered");
    let mut out = view(row, &state.adapters, &state.settings);
    out.reveal = account.reveal;
    Ok(HttpResponse::Created().json(out))
}

/// List the caller's channel accounts.
#[utoipa::path(
    tag = "channels",
    params(PageQuery),
    responses(
        (status = 200, description = "One page of channel accounts", body = Page<ChannelView>),
        (status = 400, description = "`invalid-cursor`, `validation-failed`, `invalid-query`"),
    )
)]
#[get("/channels")]
async fn list_channels(
    caller: Caller,
    query: web::Query<PageQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let rows = repo::page_for(&state.db, &caller.user_id, &query.request()?).await?;
    Ok(HttpResponse::Ok().json(rows.map(|r| view(r, &state.adapters, &state.settings))))
}

/// One channel account.
#[utoipa::path(
    tag = "channels",
    params(ChannelId),
    responses(
        (status = 200, description = "The channel account", body = ChannelView),
        (status = 404, description = "`channel-not-found`"),
    )
)]
#[get("/channels/{id}")]
async fn get_channel(
    caller: Caller,
    path: web::Path<ChannelId>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let row = repo::find_visible(&state.db, &path, |o| caller.can_access(o))
        .await?
        .ok_or_else(not_found)?;
    Ok(HttpResponse::Ok().json(view(row, &state.adapters, &state.settings)))
}

/// Delete a channel account: its actor stops and it sends nothing more.
#[utoipa::path(
    tag = "channels",
    params(ChannelId),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "`channel-not-found`"),
    )
)]
#[delete("/channels/{id}")]
async fn delete_channel(
    caller: Caller,
    path: web::Path<ChannelId>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let row = repo::find_visible(&state.db, &path, |o| caller.can_access(o))
        .await?
        .ok_or_else(not_found)?;
    repo::delete(&state.db, &row.id).await?;
    state.channel_rows.clear();
    state.web_sessions.remove(&row.id);
    let _ = state.registry.send(Unregister(row.id)).await;
    Ok(HttpResponse::NoContent().finish())
}

fn not_found() -> ApiError {
    ApiError::NotFound("channel-not-found", "no such channel account".into())
}
