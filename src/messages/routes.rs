//! `POST /messages` (queue a send, idempotent by key) and `GET /messages/{id}`.
use actix_web::{HttpRequest, HttpResponse, web};
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
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/messages", web::post().to(create_message))
        .route("/messages/{id}", web::get().to(get_message));
}

#[derive(Serialize)]
struct Accepted<'a> {
    id: &'a MessageId,
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
    id: MessageId,
    channel_id: ChannelId,
    to: String,
    status: String,
    text: String,
    parse_mode: Option<String>,
    media_id: Option<MediaId>,
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

async fn get_message(
    caller: Caller,
    path: web::Path<MessageId>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (msg, events) = service::find(&state, &caller, &path).await?;
    Ok(HttpResponse::Ok().json(view(msg, events)))
}
