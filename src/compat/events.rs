//! The event-ingestion MVP's routes at its root paths: `POST /events` (one event or an array),
//! `POST /events/batch` (an array) and `GET /events`. Each is a translation onto
//! [`crate::events::service`].
//!
//! Unlike the seed's, they take credentials: an API key with the `events:write` scope to send,
//! `events:read` to query (or a dashboard session or Keycloak token), and every event is its
//! caller's. The seed's open routes come back only with `events.anonymous_owner` set
//! ([`events_owner`]).
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    auth::{self, Scopes},
    domain::UserId,
    error::ApiError,
    events::{repo::Filter, service},
    messages::idempotency_key,
    state::AppState,
};

/// Mounts the routes at the root (the seed's paths).
pub fn configure(cfg: &mut crate::mount::Routes) {
    cfg.service(post_events)
        .service(post_batch)
        .service(list_events);
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

/// An event as sent (the body is checked field by field, every problem reported at once).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // Documentation only: `validate_body` reads the JSON.
struct EventIn {
    /// When it happened: RFC 3339, at most `events.max_future_skew_secs` ahead and within the
    /// retention.
    timestamp: DateTime<Utc>,
    /// The emitting service: 1 to 100 bytes of letters, digits, `.`, `_`, `:` and `-`.
    service: String,
    /// The text, 1 to `events.max_message_bytes` bytes.
    message: String,
    /// Any JSON object, up to `events.max_metadata_bytes` as JSON (alert rules match on it).
    #[schema(value_type = Option<Object>)]
    metadata: Option<Value>,
}

/// One event, or an array of them.
#[derive(utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // Documentation only.
enum EventsIn {
    One(EventIn),
    Many(Vec<EventIn>),
}

/// The id of the one event stored.
#[derive(Serialize, utoipa::ToSchema)]
struct EventAccepted {
    event_id: String,
}

/// The ids of a batch's events, in the order sent.
#[derive(Serialize, utoipa::ToSchema)]
struct EventsAccepted {
    count: usize,
    event_ids: Vec<String>,
}

/// `202` to a single event (`event_id`) or to an array (`event_ids` and `count`).
#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
#[schema(as = EventsIngested)]
enum IngestAnswer {
    One(EventAccepted),
    Many(EventsAccepted),
}

/// Store one event (an object) or several (an array).
///
/// Answers `202` once the events are committed. Takes an API key with the `events:write` scope
/// (or a session or Keycloak token); with `events.anonymous_owner` set, a request without
/// credentials is that user's. With an `Idempotency-Key`, a repeat answers the ids stored the
/// first time.
#[utoipa::path(
    tag = "events",
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "1 to 255 visible ASCII characters: a repeat stores nothing and answers the ids stored the first time."),
    ),
    request_body(content = EventsIn, content_type = "application/json", description = "An event or an array of at most `events.max_request_events` events"),
    responses(
        (status = 202, description = "Stored: `event_id` for an object, `event_ids` and `count` for an array", body = IngestAnswer),
        (status = 400, description = "`validation-failed` (with every field's problem), `invalid-json`, `unsupported-media-type`, `invalid-idempotency-key`, `invalid-body-stream`"),
        (status = 403, description = "`insufficient-scope` (an API key without `events:write`), `read-only-role`, `csrf-failed`, `no-role`"),
        (status = 413, description = "`payload-too-large`"),
        (status = 429, description = "`buffer-full`: too many events are waiting to be written (`Retry-After: 1`); `rate-limited`: over the `ingest` rate limit"),
        (status = 503, description = "`circuit-open`: storage failed repeatedly and is resting; `storage-unavailable`: the write failed. Nothing was kept; retry after `Retry-After`"),
    ),
    security(("apiKey" = []), ("keycloakBearer" = []), ("session" = []), ())
)]
#[post("/events")]
async fn post_events(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    ingest(req, payload, state, true).await
}

/// Store an array of events.
///
/// Like `POST /events`, but the body must be an array.
#[utoipa::path(
    tag = "events",
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "1 to 255 visible ASCII characters: a repeat stores nothing and answers the ids stored the first time."),
    ),
    request_body(content = Vec<EventIn>, content_type = "application/json", description = "At most `events.max_request_events` events"),
    responses(
        (status = 202, description = "Stored", body = EventsAccepted),
        (status = 400, description = "`validation-failed` (with every field's problem), `invalid-json`, `unsupported-media-type`, `invalid-idempotency-key`, `invalid-body-stream`"),
        (status = 403, description = "`insufficient-scope` (an API key without `events:write`), `read-only-role`, `csrf-failed`, `no-role`"),
        (status = 413, description = "`payload-too-large`"),
        (status = 429, description = "`buffer-full`: too many events are waiting to be written (`Retry-After: 1`); `rate-limited`: over the `ingest` rate limit"),
        (status = 503, description = "`circuit-open`: storage failed repeatedly and is resting; `storage-unavailable`: the write failed. Nothing was kept; retry after `Retry-After`"),
    ),
    security(("apiKey" = []), ("keycloakBearer" = []), ("session" = []), ())
)]
#[post("/events/batch")]
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
        HttpResponse::Accepted().json(IngestAnswer::Many(EventsAccepted {
            count: done.ids.len(),
            event_ids: done.ids,
        }))
    } else {
        HttpResponse::Accepted().json(IngestAnswer::One(EventAccepted {
            event_id: done.ids[0].clone(),
        }))
    })
}

/// `?service=&from=&to=&limit=&cursor=&page=&count=`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Only events of this service.
    service: Option<String>,
    /// Events at or after this time (RFC 3339).
    from: Option<DateTime<Utc>>,
    /// Events before this time (RFC 3339).
    to: Option<DateTime<Utc>>,
    /// Events per page, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u64>,
    /// `next_cursor` of the page before (not with `page`).
    cursor: Option<String>,
    /// 1-based page number, an offset (the seed's paging; not with `cursor`).
    #[param(minimum = 1)]
    page: Option<u64>,
    /// Also count the matching events (`total`).
    count: Option<bool>,
}

/// A stored event.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Event)]
struct EventView {
    event_id: String,
    /// When the request was committed.
    ingested_at: DateTime<Utc>,
    message: String,
    /// The metadata object as sent; `null` without one.
    #[schema(value_type = Option<Object>)]
    metadata: Option<Value>,
    service: String,
    /// When it happened.
    timestamp: DateTime<Utc>,
}

/// One page of events (the seed's shape).
#[derive(Serialize, utoipa::ToSchema)]
struct EventPage {
    /// Oldest first.
    data: Vec<EventView>,
    /// The page size used.
    limit: u64,
    /// Pass as `cursor` for the next page; `null` on the last page.
    next_cursor: Option<String>,
    /// The `page` asked for; only when one was.
    #[serde(skip_serializing_if = "Option::is_none")]
    page: Option<u64>,
    /// How many events match; only with `count=true`.
    #[serde(skip_serializing_if = "Option::is_none")]
    total: Option<u64>,
}

/// Query events, oldest first.
///
/// Ordered by `(timestamp, seq)`. `cursor` (from `next_cursor`) pages stably while events keep
/// arriving; `page` (1-based, the seed's) is an offset. Takes an API key with the `events:read`
/// scope (or a session or Keycloak token); with `events.anonymous_owner` set, a request without
/// credentials reads that user's events.
#[utoipa::path(
    tag = "events",
    params(ListQuery),
    responses(
        (status = 200, description = "One page of events", body = EventPage),
        (status = 400, description = "`invalid-query` (a bad parameter, `limit` out of 1–1000, `cursor` with `page`, `page=0`), `invalid-cursor`"),
        (status = 403, description = "`insufficient-scope` (an API key without `events:read`), `no-role`"),
    ),
    security(("apiKey" = []), ("keycloakBearer" = []), ("session" = []), ())
)]
#[get("/events")]
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
    let data = page
        .rows
        .into_iter()
        .map(|e| EventView {
            metadata: e
                .metadata
                .as_deref()
                .and_then(|m| serde_json::from_str::<Value>(m).ok()),
            event_id: e.event_id,
            ingested_at: e.ingested_at,
            message: e.message,
            service: e.service,
            timestamp: e.timestamp,
        })
        .collect();
    Ok(HttpResponse::Ok().json(EventPage {
        data,
        limit,
        next_cursor: page.next_cursor,
        page: q.page,
        total: page.total,
    }))
}
