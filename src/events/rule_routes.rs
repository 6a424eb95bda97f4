//! `/api/v1/alert-rules`: create, list, read, change and delete alert rules (API key auth;
//! every rule belongs to its creator, and other owners get 404).
use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};

use super::{
    repo::RuleRow,
    rule_service::{self, RuleBody},
};
use crate::{
    auth::Caller,
    domain::{ChannelId, IntegrationId},
    error::ApiError,
    state::AppState,
};

/// Mounts the routes (inside the API-key scope).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/alert-rules", web::post().to(create))
        .route("/alert-rules", web::get().to(list))
        .route("/alert-rules/{id}", web::get().to(get))
        .route("/alert-rules/{id}", web::patch().to(update))
        .route("/alert-rules/{id}", web::delete().to(delete));
}

#[derive(Serialize)]
struct RuleView {
    id: String,
    name: String,
    service: Option<String>,
    #[serde(rename = "match")]
    conditions: Value,
    integration_id: Option<IntegrationId>,
    channel_id: Option<ChannelId>,
    chat_id: Option<String>,
    max_per_minute: i32,
    enabled: bool,
    fired_count: i64,
    suppressed_count: i64,
    last_fired_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

fn view(r: RuleRow, state: &AppState) -> RuleView {
    let pending = state.rules.pending_suppressed(&r.id);
    RuleView {
        conditions: serde_json::from_str(&r.conditions)
            .unwrap_or_else(|_| Value::Object(Map::new())),
        suppressed_count: r.suppressed_count + pending,
        id: r.id,
        name: r.name,
        service: r.service,
        integration_id: r.integration_id,
        channel_id: r.channel_id,
        chat_id: r.chat_id,
        max_per_minute: r.max_per_minute,
        enabled: r.enabled,
        fired_count: r.fired_count,
        last_fired_at: r.last_fired_at,
        created_at: r.created_at,
        updated_at: r.updated_at,
    }
}

async fn create(
    caller: Caller,
    body: web::Json<RuleBody>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let row = rule_service::create(&state, &caller, body.into_inner()).await?;
    Ok(HttpResponse::Created().json(view(row, &state)))
}

async fn list(
    caller: Caller,
    query: web::Query<crate::page::PageQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let rows = rule_service::list(&state, &caller, &query.request()?).await?;
    Ok(HttpResponse::Ok().json(rows.map(|r| view(r, &state))))
}

async fn get(
    caller: Caller,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let row = rule_service::find(&state, &caller, &path).await?;
    Ok(HttpResponse::Ok().json(view(row, &state)))
}

async fn update(
    caller: Caller,
    path: web::Path<String>,
    body: web::Json<RuleBody>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let row = rule_service::update(&state, &caller, &path, body.into_inner()).await?;
    Ok(HttpResponse::Ok().json(view(row, &state)))
}

async fn delete(
    caller: Caller,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    rule_service::delete(&state, &caller, &path).await?;
    Ok(HttpResponse::NoContent().finish())
}
