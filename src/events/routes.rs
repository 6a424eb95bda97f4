//! `POST /events`, `POST /events/batch` and `GET /events` (the seed's routes, no credentials,
//! like the seed).
use actix_web::{HttpRequest, HttpResponse, web};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use sea_orm::{
    ColumnTrait, Condition, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    validate::{NewEvent, validate_body},
    writer::SubmitError,
};
use crate::{entities::events, error::ApiError, state::AppState};

/// Mounts the routes at the root (the seed's paths).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/events", web::post().to(post_events))
        .route("/events/batch", web::post().to(post_batch))
        .route("/events", web::get().to(list_events));
}

/// Longest accepted body: the largest allowed batch of the largest allowed events.
fn body_limit(state: &AppState) -> usize {
    let e = &state.settings.events;
    e.max_request_events
        .saturating_mul(e.max_message_bytes + e.max_metadata_bytes + 512)
        .max(64 * 1024)
}

async fn read_json(
    req: &HttpRequest,
    mut payload: web::Payload,
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
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::BadRequest("invalid-body", e.to_string()))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge(format!(
                "the body is larger than {limit} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest("invalid-json", e.to_string()))
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
    let key = crate::messages::idempotency_key(&req)?;
    let body = read_json(&req, payload, body_limit(&state)).await?;
    let now = state.clock.now();
    let (events, is_array) = validate_body(&body, &state.settings.events, now, allow_single)
        .map_err(|errors| {
            metrics::counter!("pregonero_events_rejected_total", "reason" => "invalid")
                .increment(1);
            ApiError::Invalid(errors)
        })?;
    let ids = match key {
        None => {
            let (ids, rows) = rows(events, now, None);
            submit(&state, rows).await?;
            ids
        }
        Some(key) => idempotent(&state, events, now, &key).await?,
    };
    Ok(if is_array {
        HttpResponse::Accepted().json(json!({ "event_ids": ids, "count": ids.len() }))
    } else {
        HttpResponse::Accepted().json(json!({ "event_id": ids[0] }))
    })
}

fn rows(
    events: Vec<NewEvent>,
    now: DateTime<Utc>,
    key: Option<&str>,
) -> (Vec<String>, Vec<events::ActiveModel>) {
    let many = events.len() > 1;
    events
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            let id = uuid::Uuid::now_v7().to_string();
            let row = events::ActiveModel {
                event_id: Set(id.clone()),
                timestamp: Set(e.timestamp),
                service: Set(e.service),
                message: Set(e.message),
                metadata: Set(e.metadata),
                ingested_at: Set(now),
                idempotency_key: Set(key.map(|k| {
                    if many {
                        format!("{k}#{i}")
                    } else {
                        k.to_owned()
                    }
                })),
                ..Default::default()
            };
            (id, row)
        })
        .unzip()
}

async fn submit(state: &AppState, rows: Vec<events::ActiveModel>) -> Result<(), ApiError> {
    match state.events.submit(rows).await {
        Ok(()) => {
            metrics::counter!("pregonero_events_accepted_total").increment(1);
            Ok(())
        }
        Err(SubmitError::Full) => {
            metrics::counter!("pregonero_events_rejected_total", "reason" => "buffer-full")
                .increment(1);
            Err(ApiError::Limited {
                status: actix_web::http::StatusCode::TOO_MANY_REQUESTS,
                code: "buffer-full",
                message: format!(
                    "{} events are waiting to be written; slow down and retry",
                    state.events.in_use()
                ),
                retry_after: 1,
                resets_at: None,
            })
        }
        Err(SubmitError::CircuitOpen(retry_after)) => {
            metrics::counter!("pregonero_events_rejected_total", "reason" => "circuit-open")
                .increment(1);
            Err(circuit_open(retry_after))
        }
        Err(SubmitError::Failed(e)) => {
            metrics::counter!("pregonero_events_rejected_total", "reason" => "storage-unavailable")
                .increment(1);
            tracing::warn!(error = %e, "events not stored");
            Err(ApiError::unavailable(
                "storage-unavailable",
                "the events could not be stored; nothing was kept, retry later",
                5,
            ))
        }
    }
}

fn circuit_open(retry_after: u64) -> ApiError {
    ApiError::unavailable(
        "circuit-open",
        "event storage failed repeatedly and is resting; nothing was kept, retry later",
        retry_after,
    )
}

/// With an `Idempotency-Key`: insert what is new (the key, or `key#i` per event of a batch),
/// then answer the ids stored under those keys, whoever stored them first.
async fn idempotent(
    state: &AppState,
    events: Vec<NewEvent>,
    now: DateTime<Utc>,
    key: &str,
) -> Result<Vec<String>, ApiError> {
    let keys: Vec<String> = if events.len() > 1 {
        (0..events.len()).map(|i| format!("{key}#{i}")).collect()
    } else {
        vec![key.to_owned()]
    };
    state.events.admit().map_err(circuit_open)?;
    let (_, rows) = rows(events, now, Some(key));
    let insert = events::Entity::insert_many(rows)
        .on_conflict(
            sea_orm::sea_query::OnConflict::column(events::Column::IdempotencyKey)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(&state.db)
        .await;
    match insert {
        Ok(_) | Err(sea_orm::DbErr::RecordNotInserted) => {}
        Err(e) => return Err(e.into()),
    }
    let found: Vec<(String, Option<String>)> = events::Entity::find()
        .select_only()
        .column(events::Column::EventId)
        .column(events::Column::IdempotencyKey)
        .filter(events::Column::IdempotencyKey.is_in(keys.clone()))
        .into_tuple()
        .all(&state.db)
        .await?;
    keys.iter()
        .map(|k| {
            found
                .iter()
                .find(|(_, fk)| fk.as_deref() == Some(k.as_str()))
                .map(|(id, _)| id.clone())
                .ok_or_else(|| ApiError::Unexpected(anyhow::anyhow!("idempotent event vanished")))
        })
        .collect()
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

/// Most events per page.
const MAX_LIMIT: u64 = 1_000;

fn encode_cursor(e: &events::Model) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}:{}", e.timestamp.timestamp_micros(), e.seq))
}

fn decode_cursor(s: &str) -> Option<(DateTime<Utc>, i64)> {
    let raw = String::from_utf8(URL_SAFE_NO_PAD.decode(s).ok()?).ok()?;
    let (t, seq) = raw.split_once(':')?;
    Some((
        DateTime::from_timestamp_micros(t.parse().ok()?)?,
        seq.parse().ok()?,
    ))
}

/// `GET /events`: oldest first by `(timestamp, seq)`. `cursor` (from `next_cursor`) pages
/// stably while events keep arriving; `page` (1-based, the seed's) is an offset.
async fn list_events(
    query: web::Query<ListQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let limit = q.limit.unwrap_or(100);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::BadRequest(
            "invalid-query",
            format!("limit must be between 1 and {MAX_LIMIT}"),
        ));
    }
    if q.cursor.is_some() && q.page.is_some() {
        return Err(ApiError::BadRequest(
            "invalid-query",
            "give either cursor or page, not both".into(),
        ));
    }
    let mut filter = Condition::all();
    if let Some(service) = &q.service {
        filter = filter.add(events::Column::Service.eq(service.clone()));
    }
    if let Some(from) = q.from {
        filter = filter.add(events::Column::Timestamp.gte(from));
    }
    if let Some(to) = q.to {
        filter = filter.add(events::Column::Timestamp.lt(to));
    }
    let total = if q.count.unwrap_or(false) {
        Some(
            events::Entity::find()
                .filter(filter.clone())
                .count(&state.db)
                .await?,
        )
    } else {
        None
    };
    let mut select = events::Entity::find().filter(filter);
    if let Some(cursor) = &q.cursor {
        let (t, seq) = decode_cursor(cursor).ok_or_else(|| {
            ApiError::BadRequest(
                "invalid-cursor",
                "cursor is not one this server gave".into(),
            )
        })?;
        select = select.filter(
            Condition::any().add(events::Column::Timestamp.gt(t)).add(
                Condition::all()
                    .add(events::Column::Timestamp.eq(t))
                    .add(events::Column::Seq.gt(seq)),
            ),
        );
    }
    if let Some(page) = q.page {
        if page == 0 {
            return Err(ApiError::BadRequest(
                "invalid-query",
                "page starts at 1".into(),
            ));
        }
        select = select.offset((page - 1) * limit);
    }
    let rows = select
        .order_by_asc(events::Column::Timestamp)
        .order_by_asc(events::Column::Seq)
        .limit(limit + 1)
        .all(&state.db)
        .await?;
    let more = rows.len() as u64 > limit;
    let rows: Vec<_> = rows.into_iter().take(limit as usize).collect();
    let next_cursor = if more {
        rows.last().map(encode_cursor)
    } else {
        None
    };
    let data: Vec<Value> = rows
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
    let mut body = json!({ "data": data, "next_cursor": next_cursor, "limit": limit });
    if let Some(page) = q.page {
        body["page"] = json!(page);
    }
    if let Some(total) = total {
        body["total"] = json!(total);
    }
    Ok(HttpResponse::Ok().json(body))
}
