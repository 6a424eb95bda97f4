//! The event-ingestion MVP's routes at its root paths: `POST /events` (one event or an array),
//! `POST /events/batch` (an array) and `GET /events`. Each is a translation onto
//! [`crate::events::service`].
//!
//! Unlike the seed's, they take credentials: an API key with the `events:write` scope to send,
//! `events:read` to query (or a dashboard session or Keycloak token), and every event is its
//! caller's. The seed's open routes come back only with `events.anonymous_owner` set
//! ([`events_owner`]).
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    auth::{self, Scopes},
    domain::UserId,
    error::ApiError,
    events::{repo::Filter, service},
    messages::idempotency_key,
    state::AppState,
};

/// Mounts the routes at the root (the seed's paths).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/events", web::post().to(post_events))
        .route("/events/batch", web::post().to(post_batch))
        .route("/events", web::get().to(list_events));
}

/// The body as JSON, refused past `limit` bytes while it streams in.
async fn read_json(
    req: &HttpRequest,
    payload: web::Payload,
    limit: usize,
) -> Result<Value, ApiError> {
    let is_json = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    if !is_json {
        return Err(ApiError::BadRequest(
            "unsupported-media-type",
            "expected Content-Type: application/json".into(),
        ));
    }
    let body = super::read_capped(payload, limit).await?;
    serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest("invalid-json", e.to_string()))
}

/// Whose events a request writes (`scope` [`Scopes::EVENTS_WRITE`]) or reads
/// ([`Scopes::EVENTS_READ`]): the caller's, checked like `/api/v1` checks its requests (an API
/// key needs the scope; a session changing something needs its CSRF token and a role that may
/// write). A request with no credentials at all acts for `events.anonymous_owner` when it is
/// set, and is refused with 401 otherwise.
pub async fn events_owner(
    state: &AppState,
    req: &HttpRequest,
    scope: Scopes,
) -> Result<UserId, ApiError> {
    let anonymous =
        !req.headers().contains_key("authorization") && req.cookie(auth::session::COOKIE).is_none();
    if anonymous && let Some(owner) = state.anonymous_events_owner.get() {
        return Ok(owner.clone());
    }
    let caller = auth::extractor::resolve(state, req).await?;
    if scope == Scopes::EVENTS_WRITE {
        auth::extractor::check_csrf(&caller, req.headers())?;
        caller.ensure_can_change(scope)?;
    } else {
        caller.ensure_key_scope(scope)?;
    }
    Ok(caller.user_id)
}

async fn post_events(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    ingest(req, payload, state, true).await
}

async fn post_batch(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    ingest(req, payload, state, false).await
}

async fn ingest(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    allow_single: bool,
) -> Result<HttpResponse, ApiError> {
    let owner = events_owner(&state, &req, Scopes::EVENTS_WRITE).await?;
    let key = idempotency_key(&req)?;
    let body = read_json(&req, payload, service::body_limit(&state)).await?;
    let done = service::ingest(&state, &owner, &body, key.as_deref(), allow_single).await?;
    Ok(if done.is_array {
        HttpResponse::Accepted().json(json!({ "event_ids": done.ids, "count": done.ids.len() }))
    } else {
        HttpResponse::Accepted().json(json!({ "event_id": done.ids[0] }))
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    service: Option<String>,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    limit: Option<u64>,
    cursor: Option<String>,
    page: Option<u64>,
    count: Option<bool>,
}

/// `GET /events`: oldest first by `(timestamp, seq)`. `cursor` (from `next_cursor`) pages
/// stably while events keep arriving; `page` (1-based, the seed's) is an offset.
async fn list_events(
    req: HttpRequest,
    query: web::Query<ListQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let owner = events_owner(&state, &req, Scopes::EVENTS_READ).await?;
    let q = query.into_inner();
    let limit = q.limit.unwrap_or(100);
    let page = service::list(
        &state,
        service::Query {
            filter: Filter {
                owner,
                service: q.service,
                from: q.from,
                to: q.to,
            },
            limit,
            cursor: q.cursor,
            page: q.page,
            count: q.count.unwrap_or(false),
        },
    )
    .await?;
    let data: Vec<Value> = page
        .rows
        .iter()
        .map(|e| {
            json!({
                "event_id": e.event_id,
                "timestamp": e.timestamp,
                "service": e.service,
                "message": e.message,
                "metadata": e.metadata.as_deref().and_then(|m| serde_json::from_str::<Value>(m).ok()),
                "ingested_at": e.ingested_at,
            })
        })
        .collect();
    let mut body = json!({ "data": data, "next_cursor": page.next_cursor, "limit": limit });
    if let Some(p) = q.page {
        body["page"] = json!(p);
    }
    if let Some(total) = page.total {
        body["total"] = json!(total);
    }
    Ok(HttpResponse::Ok().json(body))
}
