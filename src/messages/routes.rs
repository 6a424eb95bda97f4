//! `POST /messages` (queue a send, idempotent by key) and `GET /messages/{id}`.
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::service::{self, SendRequest, Sent};
use crate::{
    auth::Caller,
    domain::{ChannelId, HistoryKind, MediaId, MessageId, MessageStatus},
    error::ApiError,
    outbox::repo::{EventRow, MessageRow},
    state::AppState,
};

/// Mounts the message routes.
pub fn configure(cfg: &mut crate::mount::Routes) {
    cfg.service(create_message).service(get_message);
}

/// A send accepted into the queue.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = MessageAccepted)]
struct Accepted<'a> {
    #[schema(value_type = MessageId)]
    id: &'a MessageId,
    /// `queued` (or where the message stands, for a replay).
    #[schema(value_type = String)]
    status: &'a str,
}

/// One delivery attempt.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = MessageAttempt)]
struct AttemptView {
    at: DateTime<Utc>,
    /// How it ended (`sent`, `retryable_error`, `permanent_error`, `rate_limited`, …).
    outcome: Option<String>,
    /// Stable code of the failure.
    error_code: Option<String>,
    /// The provider's words.
    detail: Option<String>,
}

/// One entry of a message's history.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = MessageEvent)]
struct EventView {
    at: DateTime<Utc>,
    /// `queued`, `attempt`, `skipped`, `failed`, `replayed`, `retry_scheduled` or `status`.
    kind: String,
    outcome: Option<String>,
    error_code: Option<String>,
    detail: Option<String>,
}

/// A message of the ledger and its history.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Message)]
struct MessageView {
    id: MessageId,
    channel_id: ChannelId,
    /// The recipient, in the channel's canonical form.
    to: String,
    /// `pending`, `queued`, `sending`, `sent`, `failed` or `skipped`.
    status: String,
    text: String,
    parse_mode: Option<String>,
    media_id: Option<MediaId>,
    /// Delivery attempts so far.
    attempt_count: i32,
    attempts: Vec<AttemptView>,
    events: Vec<EventView>,
    provider_message_id: Option<String>,
    /// Stable code of the last failure.
    last_error_code: Option<String>,
    /// The last failure, as the provider put it.
    last_error: Option<String>,
    /// When the next attempt is due (queued messages only).
    next_attempt_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    sent_at: Option<DateTime<Utc>>,
}

fn view(m: MessageRow, events: Vec<EventRow>) -> MessageView {
    let attempts = events
        .iter()
        .filter(|e| e.kind == HistoryKind::Attempt.as_str())
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

/// The request's `Idempotency-Key` ([`crate::idempotency::header_key`]).
pub(crate) fn idempotency_key(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    crate::idempotency::header_key(req)
}

/// Answers a replayed request with `answer` (built from the message the first one created),
/// or 409 if its body differs from the first one's (`hash`). Shared by every route that takes an
/// `Idempotency-Key` for a message.
pub(crate) fn replayed(
    existing: &MessageRow,
    hash: &str,
    answer: impl serde::Serialize,
) -> Result<HttpResponse, ApiError> {
    service::same_request(existing, hash)?;
    Ok(HttpResponse::Accepted()
        .insert_header(("Idempotent-Replayed", "true"))
        .json(answer))
}

/// Queue a message.
///
/// With an `Idempotency-Key`, a repeat of the same request answers the message the first one
/// created (`Idempotent-Replayed: true`) and sends nothing.
#[utoipa::path(
    tag = "messages",
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "Same key and body within 24 h: the message the first request created, again (`Idempotent-Replayed: true`); same key, other body: `409 idempotency-key-reused`. 1 to 255 visible ASCII characters."),
    ),
    responses(
        (status = 202, description = "Queued (or, for a repeat, the message the first request created)", body = Accepted,
            headers(("Idempotent-Replayed" = String, description = "`true` when this answers a repeat of an earlier request"))),
        (status = 400, description = "`invalid-idempotency-key`, `invalid-json`, `unsupported-media-type`"),
        (status = 404, description = "`channel-not-found`, `media-not-found`"),
        (status = 409, description = "`idempotency-key-reused`: the key came before with another body"),
        (status = 413, description = "`payload-too-large`"),
        (status = 422, description = "`invalid-recipient`, `text-empty`, `text-too-long`, `caption-too-long`, `invalid-parse-mode`, `unsupported-channel-kind`, `invalid-body`"),
    )
)]
#[post("/messages")]
async fn create_message(
    caller: Caller,
    req: HttpRequest,
    body: web::Json<SendRequest>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let key = idempotency_key(&req)?;
    let (msg, replayed) = match service::send(&state, &caller, body.into_inner(), key).await? {
        Sent::Accepted(msg) => (msg, false),
        Sent::Replayed(msg) => (msg, true),
    };
    let answer = Accepted {
        id: &msg.id,
        status: &msg.status,
    };
    let mut res = HttpResponse::Accepted();
    if replayed {
        res.insert_header(("Idempotent-Replayed", "true"));
    }
    Ok(res.json(answer))
}

/// One message, with its attempts and events.
#[utoipa::path(
    tag = "messages",
    params(MessageId),
    responses(
        (status = 200, description = "The message", body = MessageView),
        (status = 404, description = "`message-not-found`"),
    )
)]
#[get("/messages/{id}")]
async fn get_message(
    caller: Caller,
    path: web::Path<MessageId>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (msg, events) = service::find(&state, &caller, &path).await?;
    Ok(HttpResponse::Ok().json(view(msg, events)))
}
