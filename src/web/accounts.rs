//! `/channels`: register an account of any kind (its adapter checks and stores the credentials,
//! encrypted), list, show, delete. The HTTP face of the delivery core's accounts: it lives here,
//! not in `channels/`, so the core imports no feature (auth, state).
use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::page::PageQuery;
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
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/channels", web::post().to(create_channel))
        .route("/channels", web::get().to(list_channels))
        .route("/channels/{id}", web::get().to(get_channel))
        .route("/channels/{id}", web::delete().to(delete_channel));
}

/// `POST /channels`: the common fields; the rest belong to the kind's adapter, which refuses
/// the ones it does not know.
#[derive(Deserialize)]
struct CreateChannel {
    kind: String,
    name: String,
    limits: Option<LimitsInput>,
    #[serde(flatten)]
    fields: Map<String, Value>,
}

#[derive(Serialize)]
struct ChannelView {
    id: ChannelId,
    kind: String,
    name: String,
    username: Option<String>,
    external_id: Option<String>,
    status: String,
    status_detail: Option<String>,
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

#[derive(Serialize)]
struct PacingView {
    per_second: u32,
    burst: u32,
    recipient_interval_ms: u128,
    per_group_per_minute: u32,
    /// Sends in any 24 hours, when capped.
    #[serde(skip_serializing_if = "Option::is_none")]
    per_day: Option<u32>,
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
        }),
        created_at: row.created_at,
    }
}

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

async fn list_channels(
    caller: Caller,
    query: web::Query<PageQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let rows = repo::page_for(&state.db, &caller.user_id, &query.request()?).await?;
    Ok(HttpResponse::Ok().json(rows.map(|r| view(r, &state.adapters, &state.settings))))
}

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
    let _ = state.registry.send(Unregister(row.id)).await;
    Ok(HttpResponse::NoContent().finish())
}

fn not_found() -> ApiError {
    ApiError::NotFound("channel-not-found", "no such channel account".into())
}
