//! Native integration routes under `/api/v1/integrations` (API key auth).
use actix_web::{HttpResponse, delete, get, patch, post, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{
    DeepLink, IssuedToken, Status, new_link, remaining,
    repo::{self, IntegrationRow, NewIntegration},
    revoke_integration, tokens,
};
use crate::page::{Page, PageQuery};
use crate::{
    auth::Caller,
    channels::repo::{self as channels_repo, ChannelRow},
    clock::next_midnight,
    domain::{ChannelId, IntegrationId, UserId},
    error::ApiError,
    state::AppState,
};

/// Mounts the routes (inside the API-key scope).
pub fn configure(cfg: &mut crate::mount::Routes) {
    cfg.service(create)
        .service(list)
        .service(get)
        .service(update)
        .service(delete)
        .service(relink);
}

/// Longest integration name.
const MAX_NAME: usize = 200;

/// A new integration on one of the caller's Telegram bots.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NewIntegration)]
struct CreateIntegration {
    /// The Telegram bot (channel account) whose chats the integration sends to.
    channel_id: ChannelId,
    /// 1 to 200 characters.
    #[schema(min_length = 1, max_length = 200)]
    name: String,
    /// `alert:send`, `integration:read`, `integration:revoke` (default: all three).
    #[serde(default)]
    scopes: Option<Vec<String>>,
    /// Alerts per day (default: the owner's plan's; above it only for admins).
    #[serde(default)]
    daily_quota: Option<u32>,
}

/// The native view of an integration.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Integration)]
pub(super) struct IntegrationView {
    id: IntegrationId,
    name: String,
    /// The Telegram bot it sends through.
    channel_id: ChannelId,
    /// The linked Telegram chat (`null` until its deep link is opened).
    chat_id: Option<String>,
    /// `pending`, `active`, `paused` or `revoked`.
    status: String,
    /// Why it is paused, say.
    status_detail: Option<String>,
    scopes: Vec<String>,
    /// Alerts per day.
    daily_quota: i32,
    /// Alerts left today.
    remaining_today: i32,
    /// When the daily quota resets (00:00 UTC).
    quota_resets_at: DateTime<Utc>,
    /// When the pending deep link stops working.
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

/// What to change of an integration; absent fields stay as they are.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = IntegrationChange)]
struct UpdateIntegration {
    /// 1 to 200 characters.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 200)]
    name: Option<String>,
    /// Alerts per day; above the owner's plan only for admins.
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
        Some(asked) => {
            if asked.is_empty() {
                return Err(ApiError::Unprocessable(
                    "invalid-scope",
                    "give at least one scope".into(),
                ));
            }
            if let Some(bad) = asked
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
            asked.join(" ")
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

/// A created integration: its token (shown once) and its one-time deep link.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = CreatedIntegration)]
struct CreatedView {
    /// The integration, pending until a chat opens the link.
    integration: IntegrationView,
    /// Its first token (shown once).
    token: IssuedToken,
    /// The one-time deep link that links a chat.
    link: DeepLink,
}

/// Create an integration: token (shown once) and one-time deep link.
#[utoipa::path(
    tag = "integrations",
    responses(
        (status = 201, description = "The pending integration, its token and deep link", body = CreatedView),
        (status = 400, description = "`invalid-json`, `unsupported-media-type`"),
        (status = 404, description = "`channel-not-found`"),
        (status = 413, description = "`payload-too-large`"),
        (status = 422, description = "`invalid-body`, `invalid-name`, `invalid-scope`, `quota-above-plan`, `channel-not-telegram`"),
    )
)]
#[post("/integrations")]
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
    Ok(HttpResponse::Created().json(CreatedView {
        integration: view(&created.integration, &state),
        token: created.token,
        link: created.link,
    }))
}

/// List integrations, oldest first.
#[utoipa::path(
    tag = "integrations",
    params(PageQuery),
    responses(
        (status = 200, description = "One page of integrations", body = Page<IntegrationView>),
        (status = 400, description = "`invalid-cursor`, `validation-failed`, `invalid-query`"),
    )
)]
#[get("/integrations")]
async fn list(
    caller: Caller,
    query: web::Query<PageQuery>,
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

/// Get one integration.
#[utoipa::path(
    tag = "integrations",
    params(IntegrationId),
    responses(
        (status = 200, description = "The integration", body = IntegrationView),
        (status = 404, description = "`integration-not-found`"),
    )
)]
#[get("/integrations/{id}")]
async fn get(
    caller: Caller,
    path: web::Path<IntegrationId>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let i = owned(&state, &caller, &path).await?;
    Ok(HttpResponse::Ok().json(view(&i, &state)))
}

/// Rename an integration or change its daily quota.
#[utoipa::path(
    tag = "integrations",
    params(IntegrationId),
    responses(
        (status = 200, description = "The changed integration", body = IntegrationView),
        (status = 400, description = "`invalid-json`, `unsupported-media-type`"),
        (status = 404, description = "`integration-not-found`"),
        (status = 409, description = "`integration-revoked`"),
        (status = 413, description = "`payload-too-large`"),
        (status = 422, description = "`invalid-body`, `invalid-name`, `quota-above-plan`"),
    )
)]
#[patch("/integrations/{id}")]
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

/// Revoke an integration and all its tokens.
#[utoipa::path(
    tag = "integrations",
    params(IntegrationId),
    responses(
        (status = 200, description = "The revoked integration", body = IntegrationView),
        (status = 404, description = "`integration-not-found`"),
    )
)]
#[delete("/integrations/{id}")]
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

/// A pending integration's new deep link.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = IntegrationLink)]
struct RelinkView {
    /// The new one-time deep link.
    link: DeepLink,
}

/// Get a new deep link for a pending integration.
///
/// The old link stops working.
#[utoipa::path(
    tag = "integrations",
    params(IntegrationId),
    responses(
        (status = 200, description = "The new deep link", body = RelinkView),
        (status = 404, description = "`integration-not-found`, `channel-not-found`"),
        (status = 409, description = "`integration-not-pending`"),
        (status = 422, description = "`channel-not-telegram`"),
    )
)]
#[post("/integrations/{id}/link")]
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
    Ok(HttpResponse::Ok().json(RelinkView { link }))
}
