//! `/subscriptions`: parse, authorise, call the service, map its error.
use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};

use super::{SubscriptionsListener, repo::SubscriptionRow, service};
use crate::page::PageQuery;
use crate::{
    auth::Caller,
    domain::{ChannelId, MessageId},
    error::ApiError,
    outbox::Outbox,
    outbox::repo::MessageRow,
};

/// Mounts the subscription routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/subscriptions", web::post().to(create))
        .route("/subscriptions", web::get().to(list))
        .route("/subscriptions/{id}", web::get().to(get))
        .route("/subscriptions/{id}", web::delete().to(delete))
        .route(
            "/subscriptions/{id}/dead-letters",
            web::get().to(dead_letters),
        )
        .route(
            "/subscriptions/{id}/dead-letters/replay",
            web::post().to(replay),
        );
}

#[derive(Serialize)]
struct View {
    id: String,
    channel_id: ChannelId,
    events: Vec<String>,
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

#[derive(Serialize)]
struct DeadLetter {
    /// The event message's id (`X-Pregonero-Message-Id` of its POSTs).
    id: MessageId,
    attempts: i32,
    error_code: Option<String>,
    error: Option<String>,
    failed_at: chrono::DateTime<chrono::Utc>,
    /// The document that was posted.
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

async fn list(
    caller: Caller,
    query: web::Query<PageQuery>,
    outbox: web::Data<Outbox>,
) -> Result<HttpResponse, ApiError> {
    let rows = service::list(&outbox, &caller.user_id, &query.request()?).await?;
    Ok(HttpResponse::Ok().json(rows.map(View::from)))
}

async fn get(
    caller: Caller,
    path: web::Path<String>,
    outbox: web::Data<Outbox>,
) -> Result<HttpResponse, ApiError> {
    let row = service::get(&outbox, &caller, &path).await?;
    Ok(HttpResponse::Ok().json(View::from(row)))
}

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

async fn dead_letters(
    caller: Caller,
    path: web::Path<String>,
    query: web::Query<PageQuery>,
    outbox: web::Data<Outbox>,
) -> Result<HttpResponse, ApiError> {
    let rows = service::dead_letters(&outbox, &caller, &path, &query.request()?).await?;
    Ok(HttpResponse::Ok().json(rows.map(DeadLetter::from)))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Replay {
    /// Dead letters to send again; all when left out.
    ids: Option<Vec<MessageId>>,
}

async fn replay(
    caller: Caller,
    path: web::Path<String>,
    body: Option<web::Json<Replay>>,
    outbox: web::Data<Outbox>,
) -> Result<HttpResponse, ApiError> {
    caller.ensure_can_write()?;
    let ids = body.map(|b| b.into_inner()).unwrap_or_default().ids;
    let replayed = service::replay(&outbox, &caller, &path, ids).await?;
    Ok(HttpResponse::Accepted().json(serde_json::json!({
        "replayed": replayed.len(),
        "ids": replayed,
    })))
}
