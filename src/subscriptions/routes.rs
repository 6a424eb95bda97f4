//! `/subscriptions`: parse, authorise, call the service, map its error.
use actix_web::{HttpResponse, delete, get, post, web};
use serde::{Deserialize, Serialize};

use super::{SubscriptionsListener, repo::SubscriptionRow, service};
use crate::page::{Page, PageQuery};
use crate::{
    auth::Caller,
    domain::{ChannelId, MessageId},
    error::ApiError,
    outbox::Outbox,
    outbox::repo::MessageRow,
};

/// Mounts the subscription routes.
pub fn configure(cfg: &mut crate::mount::Routes) {
    cfg.service(create)
        .service(list)
        .service(get)
        .service(delete)
        .service(dead_letters)
        .service(replay);
}

/// A subscription of a webhook channel to message status events.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Subscription)]
struct View {
    id: String,
    /// The webhook channel the events are posted to.
    channel_id: ChannelId,
    /// The events it gets: `sent`, `delivered`, `read`, `failed`, `skipped`.
    events: Vec<String>,
    /// Only messages sent on this channel.
    source_channel_id: Option<ChannelId>,
    /// The last sequence number given to an event.
    sequence: i64,
    created_at: chrono::DateTime<chrono::Utc>,
}

impl From<SubscriptionRow> for View {
    fn from(s: SubscriptionRow) -> Self {
        Self {
            events: s.events.split(',').map(str::to_owned).collect(),
            id: s.id,
            channel_id: s.channel_id,
            source_channel_id: s.source_channel_id,
            sequence: s.sequence,
            created_at: s.created_at,
        }
    }
}

/// An event that was refused or ran out of attempts.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = DeadLetter)]
struct DeadLetter {
    /// The event message's id (`X-Pregonero-Message-Id` of its POSTs).
    id: MessageId,
    attempts: i32,
    /// Stable code of the last failure.
    error_code: Option<String>,
    /// The last failure, as the endpoint answered.
    error: Option<String>,
    failed_at: chrono::DateTime<chrono::Utc>,
    /// The document that was posted (a status event).
    event: serde_json::Value,
}

impl From<MessageRow> for DeadLetter {
    fn from(m: MessageRow) -> Self {
        Self {
            event: serde_json::from_str(&m.body).unwrap_or(serde_json::Value::String(m.body)),
            id: m.id,
            attempts: m.attempts,
            error_code: m.last_error_code,
            error: m.last_error,
            failed_at: m.updated_at,
        }
    }
}

/// Subscribe a webhook channel to message status events.
#[utoipa::path(
    tag = "subscriptions",
    responses(
        (status = 201, description = "The subscription", body = View),
        (status = 400, description = "`invalid-json`, `unsupported-media-type`, `invalid-idempotency-key`"),
        (status = 404, description = "`channel-not-found`: `source_channel_id` is not one of your channels"),
        (status = 413, description = "`payload-too-large`"),
        (status = 422, description = "`not-a-webhook-channel`, `unknown-event`, `invalid-body`"),
    )
)]
#[post("/subscriptions")]
async fn create(
    caller: Caller,
    body: web::Json<service::Create>,
    outbox: web::Data<Outbox>,
    listener: web::Data<SubscriptionsListener>,
) -> Result<HttpResponse, ApiError> {
    caller.ensure_can_write()?;
    let row = service::create(&outbox, &listener, &caller.user_id, body.into_inner()).await?;
    Ok(HttpResponse::Created().json(View::from(row)))
}

/// List the caller's subscriptions, oldest first.
#[utoipa::path(
    tag = "subscriptions",
    params(PageQuery),
    responses(
        (status = 200, description = "One page of subscriptions", body = Page<View>),
        (status = 400, description = "`invalid-cursor`, `validation-failed`, `invalid-query`"),
    )
)]
#[get("/subscriptions")]
async fn list(
    caller: Caller,
    query: web::Query<PageQuery>,
    outbox: web::Data<Outbox>,
) -> Result<HttpResponse, ApiError> {
    let rows = service::list(&outbox, &caller.user_id, &query.request()?).await?;
    Ok(HttpResponse::Ok().json(rows.map(View::from)))
}

/// One subscription.
#[utoipa::path(
    tag = "subscriptions",
    params(("id" = String, Path, description = "The subscription")),
    responses(
        (status = 200, description = "The subscription", body = View),
        (status = 404, description = "`subscription-not-found`"),
    )
)]
#[get("/subscriptions/{id}")]
async fn get(
    caller: Caller,
    path: web::Path<String>,
    outbox: web::Data<Outbox>,
) -> Result<HttpResponse, ApiError> {
    let row = service::get(&outbox, &caller, &path).await?;
    Ok(HttpResponse::Ok().json(View::from(row)))
}

/// Delete a subscription (events already written are still delivered).
#[utoipa::path(
    tag = "subscriptions",
    params(("id" = String, Path, description = "The subscription")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "`subscription-not-found`"),
    )
)]
#[delete("/subscriptions/{id}")]
async fn delete(
    caller: Caller,
    path: web::Path<String>,
    outbox: web::Data<Outbox>,
    listener: web::Data<SubscriptionsListener>,
) -> Result<HttpResponse, ApiError> {
    caller.ensure_can_write()?;
    service::delete(&outbox, &listener, &caller, &path).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// List a subscription's dead letters: events refused or out of attempts, oldest first.
#[utoipa::path(
    tag = "subscriptions",
    params(("id" = String, Path, description = "The subscription"), PageQuery),
    responses(
        (status = 200, description = "One page of dead letters", body = Page<DeadLetter>),
        (status = 400, description = "`invalid-cursor`, `validation-failed`, `invalid-query`"),
        (status = 404, description = "`subscription-not-found`"),
    )
)]
#[get("/subscriptions/{id}/dead-letters")]
async fn dead_letters(
    caller: Caller,
    path: web::Path<String>,
    query: web::Query<PageQuery>,
    outbox: web::Data<Outbox>,
) -> Result<HttpResponse, ApiError> {
    let rows = service::dead_letters(&outbox, &caller, &path, &query.request()?).await?;
    Ok(HttpResponse::Ok().json(rows.map(DeadLetter::from)))
}

/// `{ids}`.
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = DeadLetterReplay)]
struct Replay {
    /// Dead letters to send again (at most 500); all when left out.
    #[schema(max_items = 500)]
    ids: Option<Vec<MessageId>>,
}

/// What a replay queued again (keys in the order the answer always had).
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = DeadLettersReplayed)]
struct Replayed {
    /// The dead letters queued again.
    ids: Vec<MessageId>,
    /// How many.
    replayed: usize,
}

/// Send dead letters again (all, or those of `ids`), each with its first sequence number.
///
/// The body is optional; one that is not a JSON `{ids}` counts as none (all are replayed).
#[utoipa::path(
    tag = "subscriptions",
    params(("id" = String, Path, description = "The subscription")),
    request_body(content = Option<Replay>, description = "Which dead letters; all when there is no body"),
    responses(
        (status = 202, description = "Queued again", body = Replayed),
        (status = 400, description = "`invalid-idempotency-key`"),
        (status = 404, description = "`subscription-not-found`"),
        (status = 422, description = "`too-many-ids`: more than 500"),
    )
)]
#[post("/subscriptions/{id}/dead-letters/replay")]
async fn replay(
    caller: Caller,
    path: web::Path<String>,
    body: Option<web::Json<Replay>>,
    outbox: web::Data<Outbox>,
) -> Result<HttpResponse, ApiError> {
    caller.ensure_can_write()?;
    let ids = body.map(|b| b.into_inner()).unwrap_or_default().ids;
    let replayed = service::replay(&outbox, &caller, &path, ids).await?;
    Ok(HttpResponse::Accepted().json(Replayed {
        replayed: replayed.len(),
        ids: replayed,
    }))
}
