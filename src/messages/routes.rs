//! `POST /messages` (queue a send, idempotent by key) and `GET /messages/{id}`.
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{
    auth::Caller,
    channels::{self, Address},
    domain::{MessageStatus, PARSE_MODES, PhoneError, PhoneNumber},
    error::ApiError,
    outbox::{
        self,
        repo::{self, EventRow, MessageRow},
    },
    state::AppState,
};

/// Mounts the message routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/messages", web::post().to(create_message))
        .route("/messages/{id}", web::get().to(get_message));
}

/// Longest text Telegram takes in `sendMessage`.
const MAX_TEXT: usize = 4096;
/// Longest caption Telegram takes with media.
const MAX_CAPTION: usize = 1024;
/// Longest `Idempotency-Key` accepted.
const MAX_IDEMPOTENCY_KEY: usize = 255;

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct CreateMessage {
    channel_id: String,
    to: String,
    #[serde(default)]
    text: String,
    parse_mode: Option<String>,
    media_id: Option<String>,
}

#[derive(Serialize)]
struct Accepted<'a> {
    id: &'a str,
    status: &'a str,
}

#[derive(Serialize)]
struct AttemptView {
    at: DateTime<Utc>,
    outcome: Option<String>,
    error_code: Option<String>,
    detail: Option<String>,
}

#[derive(Serialize)]
struct EventView {
    at: DateTime<Utc>,
    kind: String,
    outcome: Option<String>,
    error_code: Option<String>,
    detail: Option<String>,
}

#[derive(Serialize)]
struct MessageView {
    id: String,
    channel_id: String,
    to: String,
    status: String,
    text: String,
    parse_mode: Option<String>,
    media_id: Option<String>,
    attempt_count: i32,
    attempts: Vec<AttemptView>,
    events: Vec<EventView>,
    provider_message_id: Option<String>,
    last_error_code: Option<String>,
    last_error: Option<String>,
    next_attempt_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    sent_at: Option<DateTime<Utc>>,
}

fn view(m: MessageRow, events: Vec<EventRow>) -> MessageView {
    let attempts = events
        .iter()
        .filter(|e| e.kind == "attempt")
        .map(|e| AttemptView {
            at: e.at,
            outcome: e.outcome.clone(),
            error_code: e.error_code.clone(),
            detail: e.detail.clone(),
        })
        .collect();
    let events = events
        .into_iter()
        .map(|e| EventView {
            at: e.at,
            kind: e.kind,
            outcome: e.outcome,
            error_code: e.error_code,
            detail: e.detail,
        })
        .collect();
    MessageView {
        next_attempt_at: (m.status == MessageStatus::Queued.as_str()).then_some(m.next_attempt_at),
        id: m.id,
        channel_id: m.channel_id,
        to: m.recipient,
        status: m.status,
        text: m.body,
        parse_mode: m.parse_mode,
        media_id: m.media_id,
        attempt_count: m.attempts,
        attempts,
        events,
        provider_message_id: m.provider_message_id,
        last_error_code: m.last_error_code,
        last_error: m.last_error,
        created_at: m.created_at,
        updated_at: m.updated_at,
        sent_at: m.sent_at,
    }
}

pub(crate) fn idempotency_key(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    let Some(value) = req.headers().get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY)
        .ok_or_else(|| {
            ApiError::BadRequest(
                "invalid-idempotency-key",
                format!(
                    "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters"
                ),
            )
        })?;
    Ok(Some(key.to_owned()))
}

/// Checks the message; returns the recipient in the channel's canonical form (a Telegram chat
/// as given, a WhatsApp phone in E.164 read with `contacts.default_region`).
async fn validate(
    body: &CreateMessage,
    caller: &Caller,
    state: &AppState,
) -> Result<String, ApiError> {
    let channel = find_owned_cached(state, &caller.user_id, &body.channel_id)
        .await?
        .ok_or_else(|| {
            ApiError::NotFound(
                "channel-not-found",
                format!("no channel account `{}`", body.channel_id),
            )
        })?;
    let adapter = state.adapters.get(&channel.kind).ok_or_else(|| {
        ApiError::Unprocessable(
            "unsupported-channel-kind",
            format!("channel `{}` is of an unknown kind", channel.id),
        )
    })?;
    let to = match adapter.address() {
        // Phones are normalised to E.164 with the default region first; other addresses are
        // the adapter's to check.
        Address::Phone => {
            let region = crate::domain::region(&state.settings.contacts.default_region)
                .ok_or_else(|| {
                    ApiError::Unexpected(anyhow::anyhow!("contacts.default_region is not a region"))
                })?;
            PhoneNumber::parse(&body.to, region)
                .map_err(|e| {
                    ApiError::Unprocessable(
                        "invalid-recipient",
                        match e {
                            PhoneError::Unparsable => format!("`{}` is not a phone number", body.to),
                            PhoneError::Invalid => format!(
                                "`{}` is not a valid phone number (read as {region:?} when it has no +country)",
                                body.to
                            ),
                        },
                    )
                })?
                .into_string()
        }
        _ => body.to.clone(),
    };
    let recipient = adapter
        .recipient(&to)
        .map_err(|e| ApiError::Unprocessable("invalid-recipient", e))?;
    validate_content(
        state,
        &caller.user_id,
        &body.text,
        body.parse_mode.as_deref(),
        body.media_id.as_deref(),
    )
    .await?;
    Ok(recipient)
}

/// Checks text, caption, parse mode and media ownership against Telegram's limits.
pub(crate) async fn validate_content(
    state: &AppState,
    owner_id: &str,
    text: &str,
    parse_mode: Option<&str>,
    media_id: Option<&str>,
) -> Result<(), ApiError> {
    let len = text.chars().count();
    match media_id {
        None if text.trim().is_empty() => {
            return Err(ApiError::Unprocessable(
                "text-empty",
                "text is required when no media_id is given".into(),
            ));
        }
        None if len > MAX_TEXT => {
            return Err(ApiError::Unprocessable(
                "text-too-long",
                format!("text has {len} characters; Telegram takes at most {MAX_TEXT}"),
            ));
        }
        Some(_) if len > MAX_CAPTION => {
            return Err(ApiError::Unprocessable(
                "caption-too-long",
                format!(
                    "with media, text is a caption of at most {MAX_CAPTION} characters; it has {len}"
                ),
            ));
        }
        _ => {}
    }
    if let Some(mode) = parse_mode
        && !PARSE_MODES.contains(&mode)
    {
        return Err(ApiError::Unprocessable(
            "invalid-parse-mode",
            format!("parse_mode must be one of {}", PARSE_MODES.join(", ")),
        ));
    }
    if let Some(media_id) = media_id {
        crate::media::find_owned(&state.db, owner_id, media_id)
            .await?
            .ok_or_else(|| {
                ApiError::NotFound("media-not-found", format!("no media `{media_id}`"))
            })?;
    }
    Ok(())
}

fn request_hash(body: &CreateMessage) -> Result<String, ApiError> {
    let canonical = serde_json::to_vec(body).map_err(anyhow::Error::from)?;
    Ok(hex::encode(Sha256::digest(canonical)))
}

/// Answers a replayed request with `answer` (built from the message the first one created),
/// or 409 if its body differs from the first one's (`hash`). Shared by every route that takes an
/// `Idempotency-Key` for a message.
pub(crate) fn replayed(
    existing: &MessageRow,
    hash: &str,
    answer: impl serde::Serialize,
) -> Result<HttpResponse, ApiError> {
    if existing.request_hash.as_deref() != Some(hash) {
        return Err(ApiError::Conflict(
            "idempotency-key-reused",
            "this Idempotency-Key was already used with a different request body".into(),
        ));
    }
    Ok(HttpResponse::Accepted()
        .insert_header(("Idempotent-Replayed", "true"))
        .json(answer))
}

fn replay(existing: MessageRow, hash: &str) -> Result<HttpResponse, ApiError> {
    let answer = Accepted {
        id: &existing.id,
        status: &existing.status,
    };
    replayed(&existing, hash, answer)
}

async fn create_message(
    caller: Caller,
    req: HttpRequest,
    body: web::Json<CreateMessage>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let mut body = body.into_inner();
    body.to = body.to.trim().to_owned();
    let key = idempotency_key(&req)?;
    let hash = request_hash(&body)?;
    if let Some(existing) = outbox::earlier(&state.outbox, &caller.user_id, key.as_deref()).await? {
        return replay(existing, &hash);
    }
    let recipient = validate(&body, &caller, &state).await?;
    let message = repo::NewMessage {
        owner_id: caller.user_id.clone(),
        channel_id: body.channel_id,
        recipient,
        body: body.text,
        parse_mode: body.parse_mode,
        media_id: body.media_id,
        idempotency_key: key,
        request_hash: Some(hash.clone()),
        integration_id: None,
    };
    let pending = outbox::Pending {
        message,
        quota: None,
    };
    match outbox::admit(&state.outbox, pending).await? {
        outbox::Admit::Accepted(msg) => Ok(HttpResponse::Accepted().json(Accepted {
            id: &msg.id,
            status: &msg.status,
        })),
        outbox::Admit::Replayed(existing) => replay(existing, &hash),
        outbox::Admit::Refused => Err(ApiError::Unexpected(anyhow::anyhow!(
            "a message without a quota was refused"
        ))),
    }
}

async fn get_message(
    caller: Caller,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let msg = repo::find(&state.db, &path)
        .await?
        .filter(|m| caller.can_access(&m.owner_id))
        .ok_or_else(|| ApiError::NotFound("message-not-found", "no such message".into()))?;
    let events = repo::events(&state.db, &msg.id).await?;
    Ok(HttpResponse::Ok().json(view(msg, events)))
}

/// The caller's account `id`, reused for a second on the request path (deleting an account on
/// this node clears the cache).
async fn find_owned_cached(
    state: &AppState,
    owner_id: &str,
    id: &str,
) -> Result<Option<channels::repo::ChannelRow>, sea_orm::DbErr> {
    let key = (owner_id.to_owned(), id.to_owned());
    if let Some(row) = state.channel_rows.get(&key) {
        return Ok(Some(row));
    }
    let row = channels::repo::find_owned(&state.db, owner_id, id).await?;
    if let Some(row) = &row {
        state.channel_rows.put(key, row.clone());
    }
    Ok(row)
}
