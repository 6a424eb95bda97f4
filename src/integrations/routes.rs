//! Native integration routes under `/api/v1/integrations` (API key auth).
use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{
    DeepLink, IssuedToken, Status, new_link, remaining,
    repo::{self, IntegrationRow, NewIntegration},
    revoke_integration, tokens,
};
use crate::{
    auth::Caller,
    channels::repo::{self as channels_repo, ChannelRow},
    clock::next_midnight,
    domain::{ChannelId, IntegrationId, UserId},
    error::ApiError,
    state::AppState,
};

/// Mounts the routes (inside the API-key scope).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/integrations", web::post().to(create))
        .route("/integrations", web::get().to(list))
        .route("/integrations/{id}", web::get().to(get))
        .route("/integrations/{id}", web::patch().to(update))
        .route("/integrations/{id}", web::delete().to(delete))
        .route("/integrations/{id}/link", web::post().to(relink));
}

/// Longest integration name.
const MAX_NAME: usize = 200;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateIntegration {
    channel_id: ChannelId,
    name: String,
    #[serde(default)]
    scopes: Option<Vec<String>>,
    #[serde(default)]
    daily_quota: Option<u32>,
}

/// The native view of an integration.
#[derive(Serialize)]
pub(super) struct IntegrationView {
    id: IntegrationId,
    name: String,
    channel_id: ChannelId,
    chat_id: Option<String>,
    status: String,
    status_detail: Option<String>,
    scopes: Vec<String>,
    daily_quota: i32,
    remaining_today: i32,
    quota_resets_at: DateTime<Utc>,
    link_expires_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

pub(super) fn view(i: &IntegrationRow, state: &AppState) -> IntegrationView {
    IntegrationView {
        id: i.id.clone(),
        name: i.name.clone(),
        channel_id: i.channel_id.clone(),
        chat_id: i.chat_id.clone(),
        status: i.status.clone(),
        status_detail: i.status_detail.clone(),
        scopes: i.scopes.split_whitespace().map(str::to_owned).collect(),
        daily_quota: i.daily_quota,
        remaining_today: remaining(i, state),
        quota_resets_at: next_midnight(state.clock.now()),
        link_expires_at: i.link_expires_at,
        created_at: i.created_at,
        updated_at: i.updated_at,
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateIntegration {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    daily_quota: Option<u32>,
}

/// A created integration with its one-time token and deep link.
pub struct Created {
    /// The integration, pending until its chat is linked.
    pub integration: IntegrationRow,
    /// Its first token (shown once).
    pub token: IssuedToken,
    /// The one-time deep link that links a chat.
    pub link: DeepLink,
}

/// Whether accounts of `kind` are bots that chats start (the kind integrations link through).
fn is_bot(state: &AppState, kind: &str) -> bool {
    state
        .adapters
        .get(kind)
        .is_some_and(|a| a.address() == crate::channels::Address::Chat)
}

/// The Telegram bot `owner_id` names, or their only one when `channel_id` is not given.
pub async fn resolve_channel(
    state: &AppState,
    owner_id: &UserId,
    channel_id: Option<&ChannelId>,
) -> Result<ChannelRow, ApiError> {
    let channel = match channel_id {
        Some(id) => channels_repo::find_owned(&state.db, owner_id, id)
            .await?
            .ok_or_else(|| {
                ApiError::NotFound("channel-not-found", format!("no channel account `{id}`"))
            })?,
        None => {
            let mut bots: Vec<_> = channels_repo::list_for(&state.db, owner_id)
                .await?
                .into_iter()
                .filter(|c| is_bot(state, &c.kind))
                .collect();
            if bots.len() != 1 {
                return Err(ApiError::Unprocessable(
                    "channel-required",
                    format!(
                        "you have {} Telegram bots; say which one with `channel_id`",
                        bots.len()
                    ),
                ));
            }
            bots.remove(0)
        }
    };
    if !is_bot(state, &channel.kind) || channel.username.is_none() {
        return Err(ApiError::Unprocessable(
            "channel-not-telegram",
            "integrations need a Telegram bot with a username".into(),
        ));
    }
    Ok(channel)
}

/// The quota asked for, or the plan's; above the plan only for admins.
async fn checked_quota(
    state: &AppState,
    caller: &Caller,
    asked: Option<u32>,
) -> Result<i32, ApiError> {
    let plan_quota = super::plan_quota(state, &caller.user_id).await?;
    match asked {
        None => Ok(plan_quota),
        Some(q) => {
            let q = i32::try_from(q).unwrap_or(i32::MAX);
            if q > plan_quota && !caller.is_admin() {
                return Err(ApiError::Unprocessable(
                    "quota-above-plan",
                    format!("your plan allows at most {plan_quota} alerts per day per integration"),
                ));
            }
            Ok(q)
        }
    }
}

fn checked_name(name: &str) -> Result<&str, ApiError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME {
        return Err(ApiError::Unprocessable(
            "invalid-name",
            format!("name must be 1 to {MAX_NAME} characters"),
        ));
    }
    Ok(name)
}

/// Creates a pending integration on `channel` with a token and a deep link.
pub async fn create_integration(
    state: &AppState,
    caller: &Caller,
    channel: &ChannelRow,
    name: &str,
    scopes: Option<&[String]>,
    daily_quota: Option<u32>,
) -> Result<Created, ApiError> {
    let name = checked_name(name)?;
    let scopes = match scopes {
        None => tokens::INTEGRATION_SCOPES.join(" "),
        Some(list) => {
            if list.is_empty() {
                return Err(ApiError::Unprocessable(
                    "invalid-scope",
                    "give at least one scope".into(),
                ));
            }
            if let Some(bad) = list
                .iter()
                .find(|s| !tokens::INTEGRATION_SCOPES.contains(&s.as_str()))
            {
                return Err(ApiError::Unprocessable(
                    "invalid-scope",
                    format!(
                        "unknown scope `{bad}`; scopes are {}",
                        tokens::INTEGRATION_SCOPES.join(", ")
                    ),
                ));
            }
            list.join(" ")
        }
    };
    let now = state.clock.now();
    let daily_quota = checked_quota(state, caller, daily_quota).await?;
    let username = channel.username.clone().unwrap_or_default();
    let (link, code_hash) = new_link(&username, state.settings.alerts.link_ttl_secs, now);
    let integration = repo::insert(
        &state.db,
        NewIntegration {
            owner_id: caller.user_id.clone(),
            channel_id: channel.id.clone(),
            name: name.to_owned(),
            chat_id: None,
            scopes: scopes.clone(),
            daily_quota,
            link: Some((code_hash, link.expires_at)),
        },
        now,
    )
    .await?;
    let token = super::issue_token(
        state,
        &integration.id,
        tokens::KIND_ACCESS,
        &scopes,
        super::access_ttl(state),
    )
    .await?;
    tracing::info!(integration_id = %integration.id, channel_id = %channel.id, "integration created");
    Ok(Created {
        integration,
        token,
        link,
    })
}

async fn create(
    caller: Caller,
    body: web::Json<CreateIntegration>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let channel = resolve_channel(&state, &caller.user_id, Some(&body.channel_id)).await?;
    let created = create_integration(
        &state,
        &caller,
        &channel,
        &body.name,
        body.scopes.as_deref(),
        body.daily_quota,
    )
    .await?;
    Ok(HttpResponse::Created().json(serde_json::json!({
        "integration": view(&created.integration, &state),
        "token": created.token,
        "link": created.link,
    })))
}

async fn list(
    caller: Caller,
    query: web::Query<crate::page::PageQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let rows = repo::page_for(&state.db, &caller.user_id, &query.request()?).await?;
    Ok(HttpResponse::Ok().json(rows.map(|i| view(&i, &state))))
}

async fn owned(
    state: &AppState,
    caller: &Caller,
    id: &IntegrationId,
) -> Result<IntegrationRow, ApiError> {
    repo::find(&state.db, id)
        .await?
        .filter(|i| caller.can_access(&i.owner_id))
        .ok_or_else(|| {
            ApiError::NotFound("integration-not-found", format!("no integration `{id}`"))
        })
}

async fn get(
    caller: Caller,
    path: web::Path<IntegrationId>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let i = owned(&state, &caller, &path).await?;
    Ok(HttpResponse::Ok().json(view(&i, &state)))
}

/// Renames an integration or changes its daily quota.
async fn update(
    caller: Caller,
    path: web::Path<IntegrationId>,
    body: web::Json<UpdateIntegration>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let i = owned(&state, &caller, &path).await?;
    let body = body.into_inner();
    let name = body.name.as_deref().map(checked_name).transpose()?;
    let quota = match body.daily_quota {
        Some(q) => Some(checked_quota(&state, &caller, Some(q)).await?),
        None => None,
    };
    if !repo::update(&state.db, &i.id, name, quota, state.clock.now()).await? {
        return Err(ApiError::Conflict(
            "integration-revoked",
            "a revoked integration cannot be changed".into(),
        ));
    }
    state.token_cache.clear();
    let i = owned(&state, &caller, &path).await?;
    Ok(HttpResponse::Ok().json(view(&i, &state)))
}

async fn delete(
    caller: Caller,
    path: web::Path<IntegrationId>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let i = owned(&state, &caller, &path).await?;
    revoke_integration(&state, &i.id).await?;
    let i = owned(&state, &caller, &path).await?;
    Ok(HttpResponse::Ok().json(view(&i, &state)))
}

/// A new deep link for a pending integration (the old one stops working).
async fn relink(
    caller: Caller,
    path: web::Path<IntegrationId>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let i = owned(&state, &caller, &path).await?;
    let channel = resolve_channel(&state, &caller.user_id, Some(&i.channel_id)).await?;
    if i.status != Status::Pending.as_str() || i.chat_id.is_some() {
        return Err(ApiError::Conflict(
            "integration-not-pending",
            "only a pending integration without a chat can get a new link".into(),
        ));
    }
    let now = state.clock.now();
    let username = channel.username.unwrap_or_default();
    let (link, hash) = new_link(&username, state.settings.alerts.link_ttl_secs, now);
    if !repo::set_link(&state.db, &i.id, &hash, link.expires_at, now).await? {
        return Err(ApiError::Conflict(
            "integration-not-pending",
            "the integration changed meanwhile".into(),
        ));
    }
    Ok(HttpResponse::Ok().json(serde_json::json!({ "link": link })))
}
