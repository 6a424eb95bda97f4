//! Pingui Alert's routes, unchanged for its clients: `POST /api/alert`,
//! `POST /api/createIntegration`, `GET /api/integrations/{chatId}`, `POST /api/revokeIntegration`
//! (plus `GET /api/alert/{id}` to follow an alert).
//!
//! Credentials are checked before the body is read, so a request without valid credentials gets
//! 401 whatever else is wrong with it.
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use chrono::{DateTime, Utc};
use sea_orm::TransactionTrait;

use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::integrations::{
    AlertCaller, DeepLink, Status, TokenCaller, authenticate, create_integration, remaining,
    repo::{self, IntegrationRow},
    resolve_channel, revoke_integration, tokens,
};
use crate::{
    clock::next_midnight,
    domain::{ChannelId, IntegrationId, MediaId, MessageId},
    error::ApiError,
    messages,
    outbox::{self, repo::NewMessage},
    state::AppState,
    telemetry::redact,
};

/// Mounts the Pingui-compatible routes under `/api`.
pub fn configure(cfg: &mut crate::mount::Routes) {
    // Setting up and revoking integrations are audited (their `wrap`); sending alerts is
    // traffic, not an administrative change (its ledger is the record).
    cfg.service(send_alert)
        .service(get_alert)
        .service(by_chat)
        .service(create)
        .service(revoke);
}

/// Seconds a client is told to wait when the delivery backlog is full.
const QUEUE_FULL_RETRY_SECS: u64 = 5;

/// Parses a JSON body after authentication (empty bodies read as `{}`).
fn parse<T: DeserializeOwned>(req: &HttpRequest, body: &[u8]) -> Result<T, ApiError> {
    let is_json = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_none_or(|ct| ct.starts_with("application/json"));
    if !is_json {
        return Err(ApiError::BadRequest(
            "unsupported-media-type",
            "expected Content-Type: application/json".into(),
        ));
    }
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| {
        if e.is_data() {
            ApiError::Unprocessable("invalid-body", e.to_string())
        } else {
            ApiError::BadRequest("invalid-json", e.to_string())
        }
    })
}

/// A chat id given as a JSON number or string, compared as text.
fn chat_text(v: &Value) -> Option<String> {
    match v {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(s.trim().to_owned()),
        _ => None,
    }
}

/// A Telegram chat id: a JSON number, or a string when it is not one (documentation only).
#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum PinguiChatId {
    Number(i64),
    Text(String),
}

/// Pingui's integration shape (camelCase; `rateLimit` is what is left of today's quota).
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = PinguiIntegration)]
pub(super) struct PinguiView {
    id: IntegrationId,
    name: String,
    /// The linked chat (`null` until linked).
    #[schema(value_type = Option<PinguiChatId>)]
    chat_id: Option<Value>,
    /// Space-separated scopes.
    scope: String,
    /// Alerts left today.
    rate_limit: i32,
    /// Alerts per day.
    daily_quota: i32,
    /// `pending`, `active`, `paused` or `revoked`.
    status: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

pub(super) fn pingui_view(i: &IntegrationRow, state: &AppState) -> PinguiView {
    PinguiView {
        id: i.id.clone(),
        name: i.name.clone(),
        chat_id: i.chat_id.as_deref().map(|c| {
            c.parse::<i64>()
                .map_or_else(|_| Value::String(c.to_owned()), Value::from)
        }),
        scope: i.scopes.clone(),
        rate_limit: remaining(i, state),
        daily_quota: i.daily_quota,
        status: i.status.clone(),
        created_at: i.created_at,
        updated_at: i.updated_at,
    }
}

/// An alert for the integration's chat.
#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[schema(as = Alert)]
struct AlertBody {
    /// The text (also accepted as `text`).
    #[serde(alias = "text")]
    message: String,
    /// `HTML`, `MarkdownV2` or `Markdown`.
    #[serde(default)]
    parse_mode: Option<String>,
    /// Media to send with it (the text becomes its caption).
    #[serde(default)]
    media_id: Option<MediaId>,
    /// Optional (also accepted as `chat_id`); must be the integration's chat.
    #[serde(default, rename = "chatId", alias = "chat_id")]
    #[schema(value_type = Option<PinguiChatId>)]
    chat_id: Option<Value>,
}

/// An accepted alert.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = AlertAccepted)]
struct AlertAccepted {
    /// Follow it with `GET /api/alert/{id}`.
    alert_id: MessageId,
    /// The message's status (`queued` at first).
    status: String,
    /// Today's quota after this alert (absent on an idempotent replay).
    #[serde(skip_serializing_if = "Option::is_none")]
    quota: Option<AlertQuota>,
}

/// The integration's daily quota.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = AlertQuota)]
struct AlertQuota {
    /// Alerts per day.
    limit: i32,
    /// Alerts left today.
    remaining: i32,
    /// When it resets (00:00 UTC).
    resets_at: DateTime<Utc>,
}

/// An alert and how its delivery goes.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = AlertStatus)]
struct AlertView {
    alert_id: MessageId,
    integration_id: Option<IntegrationId>,
    /// The message's status: `queued`, `sending`, `sent`, `failed` or `skipped`.
    status: String,
    /// Delivery attempts so far.
    attempts: i32,
    /// The stable code of the last failure.
    last_error_code: Option<String>,
    created_at: DateTime<Utc>,
    sent_at: Option<DateTime<Utc>>,
}

fn not_sendable(i: &IntegrationRow) -> Option<ApiError> {
    match Status::parse(&i.status) {
        Some(Status::Active) => None,
        Some(Status::Pending) => Some(ApiError::Conflict(
            "integration-not-linked",
            "this integration has no chat yet: open its deep link in Telegram and tap START".into(),
        )),
        Some(Status::Paused) => Some(ApiError::Conflict(
            "integration-paused",
            format!(
                "this integration is paused ({}); send /start to the bot in its chat to resume",
                i.status_detail.as_deref().unwrap_or("paused")
            ),
        )),
        _ => Some(ApiError::Unauthorized(
            "token-revoked",
            "this integration was revoked".into(),
        )),
    }
}

fn token_only(caller: AlertCaller, what: &str) -> Result<TokenCaller, ApiError> {
    match caller {
        AlertCaller::Token(t) => Ok(*t),
        AlertCaller::ApiKey(_) => Err(ApiError::Forbidden(
            "integration-token-required",
            format!("{what} takes an integration token, not an API key"),
        )),
    }
}

/// Send an alert to the integration's chat.
///
/// Takes the integration's token (scope `alert:send`). With `Idempotency-Key`, the same key and
/// body within 24 h answers the first alert again (`Idempotent-Replayed: true`, no `quota`).
#[utoipa::path(
    tag = "pingui",
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "Same key and body answers the first alert again (Idempotent-Replayed: true); same key, other body: 409 idempotency-key-reused"),
    ),
    request_body(content = AlertBody, content_type = "application/json", description = "The alert (an empty body reads as `{}`)"),
    responses(
        (status = 202, description = "Accepted for delivery", body = AlertAccepted),
        (status = 400, description = "`invalid-json`, `unsupported-media-type`, `invalid-idempotency-key`"),
        (status = 401, description = "`missing-credentials`, `invalid-credentials`, `api-key-revoked`, `api-key-expired`, `invalid-token`, `token-expired`, `token-revoked`: no usable integration token or API key"),
        (status = 403, description = "`integration-token-required`, `insufficient-scope`, `chat-mismatch`, `read-only-role`"),
        (status = 404, description = "`media-not-found`"),
        (status = 409, description = "`integration-not-linked`, `integration-paused`, `idempotency-key-reused`"),
        (status = 413, description = "`payload-too-large`"),
        (status = 422, description = "`invalid-body`, `text-empty`, `text-too-long`, `caption-too-long`, `invalid-parse-mode`"),
        (status = 429, description = "`quota-exhausted`: today's quota is used up (it resets at 00:00 UTC); `rate-limited`: over the request rate limit"),
        (status = 503, description = "`queue-full`: too many alerts waiting for delivery"),
    ),
    security(("integrationToken" = []))
)]
#[post("/api/alert")]
async fn send_alert(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let caller = token_only(authenticate(&req, &state).await?, "POST /api/alert")?;
    caller.require(tokens::ALERT_SEND)?;
    let body: AlertBody = parse(&req, &body)?;
    let integration = caller.integration;
    if let Some(given) = &body.chat_id
        && chat_text(given) != integration.chat_id
    {
        return Err(ApiError::Forbidden(
            "chat-mismatch",
            "this token only sends to the chat its integration is linked to".into(),
        ));
    }
    if let Some(e) = not_sendable(&integration) {
        return Err(e);
    }
    let Some(chat_id) = integration.chat_id.clone() else {
        return Err(ApiError::Conflict(
            "integration-not-linked",
            "this integration has no chat yet".into(),
        ));
    };
    messages::validate_content(
        &state,
        &integration.owner_id,
        &body.message,
        body.parse_mode.as_deref(),
        body.media_id.as_ref(),
    )
    .await?;
    let key = messages::idempotency_key(&req)?.map(|k| format!("alert:{}:{k}", integration.id));
    // Only an idempotent replay compares bodies; skip the hash otherwise (hot path).
    let hash = match &key {
        Some(_) => hex::encode(Sha256::digest(
            serde_json::to_vec(&body).map_err(anyhow::Error::from)?,
        )),
        None => String::new(),
    };
    if let Some(existing) =
        outbox::earlier(&state.outbox, &integration.owner_id, key.as_deref()).await?
    {
        return replay(existing, &hash);
    }

    let max_pending = state.settings.alerts.max_pending;
    if max_pending > 0 && outbox::repo::pending_alerts(&state.db, max_pending).await? >= max_pending
    {
        metrics::counter!("pregonero_alerts_rejected_total", "reason" => "queue-full").increment(1);
        return Err(ApiError::unavailable(
            "queue-full",
            format!("{max_pending} alerts are already waiting for delivery; try again shortly"),
            QUEUE_FULL_RETRY_SECS,
        ));
    }

    let now = state.clock.now();
    let message = NewMessage {
        owner_id: integration.owner_id.clone(),
        channel_id: integration.channel_id.clone(),
        recipient: chat_id.clone(),
        body: body.message,
        parse_mode: body.parse_mode,
        media_id: body.media_id,
        idempotency_key: key.clone(),
        request_hash: key.as_ref().map(|_| hash.clone()),
        integration_id: Some(integration.id.clone()),
    };
    let pending = outbox::Pending {
        message,
        quota: Some(integration.id.to_string()),
    };
    let msg = match outbox::admit(&state.outbox, pending).await? {
        outbox::Admit::Accepted(msg) => msg,
        outbox::Admit::Replayed(existing) => return replay(existing, &hash),
        outbox::Admit::Refused => return Err(refusal(&state, &integration, now).await),
    };
    tracing::debug!(integration_id = %integration.id, chat = %redact(&chat_id), alert_id = %msg.id, "alert accepted");
    let used = if integration.quota_day.as_deref() == Some(now.date_naive().to_string().as_str()) {
        integration.used_today + 1
    } else {
        1
    };
    Ok(HttpResponse::Accepted().json(AlertAccepted {
        alert_id: msg.id,
        status: msg.status,
        quota: Some(AlertQuota {
            limit: integration.daily_quota,
            remaining: (integration.daily_quota - used).max(0),
            resets_at: next_midnight(now),
        }),
    }))
}

/// Why an alert was refused by the quota update: the integration stopped being active
/// meanwhile, or today's quota is used up (429 until midnight UTC).
async fn refusal(state: &AppState, integration: &IntegrationRow, now: DateTime<Utc>) -> ApiError {
    match repo::find(&state.db, &integration.id).await {
        Err(e) => return e.into(),
        Ok(current) => {
            if let Some(e) = current.as_ref().and_then(not_sendable) {
                return e;
            }
        }
    }
    let resets_at = next_midnight(now);
    metrics::counter!("pregonero_alerts_rejected_total", "reason" => "quota").increment(1);
    ApiError::Limited {
        status: actix_web::http::StatusCode::TOO_MANY_REQUESTS,
        code: "quota-exhausted",
        message: format!(
            "the daily quota of {} alerts is used up; it resets at {} (00:00 UTC)",
            integration.daily_quota,
            resets_at.to_rfc3339()
        ),
        retry_after: u64::try_from((resets_at - now).num_seconds().max(1)).unwrap_or(1),
        resets_at: Some(resets_at),
    }
}

fn replay(existing: outbox::repo::MessageRow, hash: &str) -> Result<HttpResponse, ApiError> {
    let answer = AlertAccepted {
        alert_id: existing.id.clone(),
        status: existing.status.clone(),
        quota: None,
    };
    messages::replayed(&existing, hash, answer)
}

/// Get an alert and how its delivery goes.
///
/// An integration token sees its integration's alerts; an API key its owner's alerts.
#[utoipa::path(
    tag = "pingui",
    params(MessageId),
    responses(
        (status = 200, description = "The alert", body = AlertView),
        (status = 401, description = "`missing-credentials`, `invalid-credentials`, `api-key-revoked`, `api-key-expired`, `invalid-token`, `token-expired`, `token-revoked`: no usable integration token or API key"),
        (status = 403, description = "`insufficient-scope`: an API key without `read`"),
        (status = 404, description = "`alert-not-found`"),
    ),
    security(("integrationToken" = []), ("apiKey" = []))
)]
#[get("/api/alert/{id}")]
async fn get_alert(
    req: HttpRequest,
    path: web::Path<MessageId>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let caller = authenticate(&req, &state).await?;
    if let AlertCaller::ApiKey(c) = &caller {
        c.ensure_can_read()?;
    }
    let msg = outbox::repo::find(&state.db, &path).await?;
    let visible = match (&caller, &msg) {
        (AlertCaller::Token(t), Some(m)) => m.integration_id.as_ref() == Some(&t.integration.id),
        (AlertCaller::ApiKey(c), Some(m)) => m.owner_id == c.user_id && m.integration_id.is_some(),
        _ => false,
    };
    let msg = msg
        .filter(|_| visible)
        .ok_or_else(|| ApiError::NotFound("alert-not-found", "no such alert".into()))?;
    Ok(HttpResponse::Ok().json(AlertView {
        alert_id: msg.id,
        integration_id: msg.integration_id,
        status: msg.status,
        attempts: msg.attempts,
        last_error_code: msg.last_error_code,
        created_at: msg.created_at,
        sent_at: msg.sent_at,
    }))
}

/// With an API key: which bot and what name (both optional). With a setup token: nothing.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PinguiNewIntegration)]
struct CreateBody {
    /// The Telegram bot (also accepted as `channelId`); optional when the owner has only one.
    #[serde(default, alias = "channelId")]
    channel_id: Option<ChannelId>,
    /// Default `Pingui integration`.
    #[serde(default)]
    name: Option<String>,
}

/// A Pingui integration with its token.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = PinguiCreatedIntegration)]
struct PinguiCreated {
    integration: PinguiView,
    /// The integration token (shown once).
    token: String,
    /// When the token stops working (`null`: never).
    expires_at: Option<DateTime<Utc>>,
    /// The one-time deep link that links a chat (only when created with an API key).
    #[serde(skip_serializing_if = "Option::is_none")]
    link: Option<DeepLink>,
}

/// Create an integration (API key) or finish a chat-started one (setup token).
///
/// With the setup token the bot gave a chat on `/start` (scope `integration:create`, one use):
/// empty body; activates that chat's integration and answers its token. With an API key:
/// `{channel_id?, name?}` creates a pending integration with its token and a deep link.
#[utoipa::path(
    tag = "pingui",
    request_body(content = CreateBody, content_type = "application/json", description = "Empty with a setup token"),
    responses(
        (status = 201, description = "The integration and its token (and, with an API key, its deep link)", body = PinguiCreated),
        (status = 400, description = "`invalid-json`, `unsupported-media-type`"),
        (status = 401, description = "`missing-credentials`, `invalid-credentials`, `api-key-revoked`, `api-key-expired`, `invalid-token`, `token-expired`, `token-revoked`: no usable integration token or API key"),
        (status = 403, description = "`insufficient-scope`, `read-only-role`"),
        (status = 404, description = "`channel-not-found`, `integration-not-found`"),
        (status = 409, description = "`integration-not-pending`"),
        (status = 413, description = "`payload-too-large`"),
        (status = 422, description = "`invalid-body`, `channel-required`, `channel-not-telegram`, `invalid-name`"),
    ),
    security(("integrationToken" = []), ("apiKey" = []))
)]
#[post(
    "/api/createIntegration",
    wrap = "actix_web::middleware::from_fn(crate::auth::audit::middleware)"
)]
async fn create(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    match authenticate(&req, &state).await? {
        // An owner creates a pending integration and gets its deep link.
        AlertCaller::ApiKey(caller) => {
            let body: CreateBody = parse(&req, &body)?;
            let channel =
                resolve_channel(&state, &caller.user_id, body.channel_id.as_ref()).await?;
            let name = body.name.unwrap_or_else(|| "Pingui integration".into());
            let created = create_integration(&state, &caller, &channel, &name, None, None).await?;
            Ok(HttpResponse::Created().json(PinguiCreated {
                integration: pingui_view(&created.integration, &state),
                token: created.token.token,
                expires_at: created.token.expires_at,
                link: Some(created.link),
            }))
        }
        // The setup token the bot gave a chat on `/start` finishes that chat's integration.
        AlertCaller::Token(caller) => {
            caller.require(tokens::INTEGRATION_CREATE)?;
            let now = state.clock.now();
            let TokenCaller {
                claims,
                integration,
            } = *caller;
            if integration.status != Status::Pending.as_str() || integration.chat_id.is_none() {
                return Err(ApiError::Conflict(
                    "integration-not-pending",
                    "this integration was already set up".into(),
                ));
            }
            // One use only, all or nothing: burn the setup token, activate, issue the token.
            let txn = state.db.begin().await?;
            if !repo::revoke_token(&txn, &claims.id_hash(), now).await? {
                return Err(ApiError::Unauthorized(
                    "token-revoked",
                    "this setup token was already used".into(),
                ));
            }
            if !repo::transition(
                &txn,
                &integration.id,
                &[Status::Pending],
                Status::Active,
                None,
                now,
            )
            .await?
            {
                return Err(ApiError::Conflict(
                    "integration-not-pending",
                    "this integration was revoked or set up meanwhile".into(),
                ));
            }
            let token = crate::integrations::issue_token_in(
                &txn,
                &state,
                &integration.id,
                tokens::KIND_ACCESS,
                &integration.scopes,
                crate::integrations::access_ttl(&state),
            )
            .await?;
            txn.commit().await?;
            let integration = repo::find(&state.db, &integration.id)
                .await?
                .ok_or_else(|| ApiError::NotFound("integration-not-found", "gone".into()))?;
            tracing::info!(integration_id = %integration.id, "chat-started integration activated");
            Ok(HttpResponse::Created().json(PinguiCreated {
                integration: pingui_view(&integration, &state),
                token: token.token,
                expires_at: token.expires_at,
                link: None,
            }))
        }
    }
}

/// List the integrations of a chat (Pingui's shape).
///
/// An integration token (scope `integration:read`) reads only its own chat, and only its
/// owner's integrations on its bot; an API key reads its owner's integrations in that chat.
#[utoipa::path(
    tag = "pingui",
    params(("chat_id" = String, Path, description = "The Telegram chat id")),
    responses(
        (status = 200, description = "The chat's integrations", body = Vec<PinguiView>),
        (status = 401, description = "`missing-credentials`, `invalid-credentials`, `api-key-revoked`, `api-key-expired`, `invalid-token`, `token-expired`, `token-revoked`: no usable integration token or API key"),
        (status = 403, description = "`insufficient-scope`, `chat-mismatch`"),
    ),
    security(("integrationToken" = []), ("apiKey" = []))
)]
#[get("/api/integrations/{chat_id}")]
async fn by_chat(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let caller = authenticate(&req, &state).await?;
    if let AlertCaller::ApiKey(c) = &caller {
        c.ensure_can_read()?;
    }
    let chat_id = path.into_inner().trim().to_owned();
    let rows = match caller {
        AlertCaller::Token(t) => {
            t.require(tokens::INTEGRATION_READ)?;
            if t.integration.chat_id.as_deref() != Some(chat_id.as_str()) {
                return Err(ApiError::Forbidden(
                    "chat-mismatch",
                    "this token only reads the chat its integration is linked to".into(),
                ));
            }
            // Only the integrations of the token's owner, on the token's bot.
            repo::in_chat(&state.db, &t.integration.channel_id, &chat_id)
                .await?
                .into_iter()
                .filter(|i| i.owner_id == t.integration.owner_id)
                .collect()
        }
        AlertCaller::ApiKey(c) => repo::list_for(&state.db, &c.user_id, Some(&chat_id)).await?,
    };
    let views: Vec<_> = rows.iter().map(|i| pingui_view(i, &state)).collect();
    Ok(HttpResponse::Ok().json(views))
}

/// Which integration to revoke: required with an API key; a token revokes its own.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PinguiRevokeIntegration)]
struct RevokeBody {
    /// Also accepted as `integration_id`; with a token it must be the token's integration.
    #[serde(default, alias = "integration_id")]
    #[serde(rename = "integrationId")]
    integration_id: Option<IntegrationId>,
}

/// A revoked integration.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = PinguiRevokedIntegration)]
struct PinguiRevoked {
    id: IntegrationId,
    /// `revoked`.
    status: &'static str,
}

/// Revoke an integration and its tokens.
///
/// A token (scope `integration:revoke`) revokes its own integration; an API key the one named
/// by `integrationId`.
#[utoipa::path(
    tag = "pingui",
    request_body(content = RevokeBody, content_type = "application/json", description = "Empty with a token"),
    responses(
        (status = 200, description = "Revoked", body = PinguiRevoked),
        (status = 400, description = "`invalid-json`, `unsupported-media-type`"),
        (status = 401, description = "`missing-credentials`, `invalid-credentials`, `api-key-revoked`, `api-key-expired`, `invalid-token`, `token-expired`, `token-revoked`: no usable integration token or API key"),
        (status = 403, description = "`insufficient-scope`, `integration-mismatch`, `read-only-role`"),
        (status = 404, description = "`integration-not-found`"),
        (status = 413, description = "`payload-too-large`"),
        (status = 422, description = "`invalid-body`, `integration-id-required`"),
    ),
    security(("integrationToken" = []), ("apiKey" = []))
)]
#[post(
    "/api/revokeIntegration",
    wrap = "actix_web::middleware::from_fn(crate::auth::audit::middleware)"
)]
async fn revoke(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let caller = authenticate(&req, &state).await?;
    let body: RevokeBody = parse(&req, &body)?;
    let integration = match caller {
        AlertCaller::Token(t) => {
            t.require(tokens::INTEGRATION_REVOKE)?;
            if body
                .integration_id
                .as_ref()
                .is_some_and(|id| id != &t.integration.id)
            {
                return Err(ApiError::Forbidden(
                    "integration-mismatch",
                    "a token can only revoke its own integration".into(),
                ));
            }
            t.integration.clone()
        }
        AlertCaller::ApiKey(c) => {
            let id = body.integration_id.ok_or_else(|| {
                ApiError::Unprocessable(
                    "integration-id-required",
                    "give `integrationId` to revoke".into(),
                )
            })?;
            repo::find_owned(&state.db, &c.user_id, &id)
                .await?
                .ok_or_else(|| {
                    ApiError::NotFound("integration-not-found", format!("no integration `{id}`"))
                })?
        }
    };
    revoke_integration(&state, &integration.id).await?;
    Ok(HttpResponse::Ok().json(PinguiRevoked {
        id: integration.id,
        status: Status::Revoked.as_str(),
    }))
}
