//! `/api/v1/alert-rules`: create, list, read, change and delete alert rules (API key auth;
//! every rule belongs to its creator, and other owners get 404).
use actix_web::{HttpResponse, delete, get, patch, post, web};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};

use super::{
    repo::RuleRow,
    rule_service::{self, RuleBody},
};
use crate::page::{Page, PageQuery};
use crate::{
    auth::Caller,
    domain::{ChannelId, IntegrationId},
    error::ApiError,
    state::AppState,
};

/// Mounts the routes (inside the API-key scope).
pub fn configure(cfg: &mut crate::mount::Routes) {
    cfg.service(create)
        .service(list)
        .service(get)
        .service(update)
        .service(delete);
}

/// An alert rule: which events it matches, where its alerts go, and what it has done.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = AlertRule)]
struct RuleView {
    id: String,
    name: String,
    /// Only events of this service; `null`: any service.
    service: Option<String>,
    /// Metadata conditions: dotted metadata path → the value it must have (all must hold).
    #[serde(rename = "match")]
    #[schema(value_type = Object)]
    conditions: Value,
    /// The integration alerts go to (or `channel_id` with `chat_id`).
    integration_id: Option<IntegrationId>,
    /// The channel account alerts go to, with `chat_id`.
    channel_id: Option<ChannelId>,
    /// The chat (or `@channel`) of `channel_id` alerts go to.
    chat_id: Option<String>,
    /// Most alerts per minute; matches beyond it are counted as suppressed.
    max_per_minute: i32,
    enabled: bool,
    /// Alerts it has sent.
    fired_count: i64,
    /// Matches over `max_per_minute`, not sent.
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

/// Create an alert rule.
///
/// It needs a `service` or at least one `match` condition, and a target: `integration_id`, or
/// `channel_id` with `chat_id` (the caller's own).
#[utoipa::path(
    tag = "alert-rules",
    responses(
        (status = 201, description = "The rule, already at work", body = RuleView),
        (status = 400, description = "`validation-failed` (with the fields), `invalid-json`, `unsupported-media-type`"),
        (status = 404, description = "`integration-not-found`, `channel-not-found`"),
        (status = 413, description = "`payload-too-large`"),
        (status = 422, description = "`invalid-body`: not a rule (unknown or mistyped field)"),
    )
)]
#[post("/alert-rules")]
async fn create(
    caller: Caller,
    body: web::Json<RuleBody>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let row = rule_service::create(&state, &caller, body.into_inner()).await?;
    Ok(HttpResponse::Created().json(view(row, &state)))
}

/// List the caller's alert rules, oldest first.
#[utoipa::path(
    tag = "alert-rules",
    params(PageQuery),
    responses(
        (status = 200, description = "One page of rules", body = Page<RuleView>),
        (status = 400, description = "`invalid-cursor`, `validation-failed`, `invalid-query`"),
    )
)]
#[get("/alert-rules")]
async fn list(
    caller: Caller,
    query: web::Query<PageQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let rows = rule_service::list(&state, &caller, &query.request()?).await?;
    Ok(HttpResponse::Ok().json(rows.map(|r| view(r, &state))))
}

/// One alert rule.
#[utoipa::path(
    tag = "alert-rules",
    params(
        ("id" = String, Path, description = "The alert rule's id."),
    ),
    responses(
        (status = 200, description = "The rule", body = RuleView),
        (status = 404, description = "`rule-not-found`"),
    )
)]
#[get("/alert-rules/{id}")]
async fn get(
    caller: Caller,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let row = rule_service::find(&state, &caller, &path).await?;
    Ok(HttpResponse::Ok().json(view(row, &state)))
}

/// Change an alert rule: the fields given; `"service": null` clears the service filter.
#[utoipa::path(
    tag = "alert-rules",
    params(
        ("id" = String, Path, description = "The alert rule's id."),
    ),
    responses(
        (status = 200, description = "The changed rule", body = RuleView),
        (status = 400, description = "`validation-failed` (with the fields), `invalid-json`, `unsupported-media-type`"),
        (status = 404, description = "`rule-not-found`, `integration-not-found`, `channel-not-found`"),
        (status = 413, description = "`payload-too-large`"),
        (status = 422, description = "`invalid-body`: not a rule (unknown or mistyped field)"),
    )
)]
#[patch("/alert-rules/{id}")]
async fn update(
    caller: Caller,
    path: web::Path<String>,
    body: web::Json<RuleBody>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let row = rule_service::update(&state, &caller, &path, body.into_inner()).await?;
    Ok(HttpResponse::Ok().json(view(row, &state)))
}

/// Delete an alert rule.
#[utoipa::path(
    tag = "alert-rules",
    params(
        ("id" = String, Path, description = "The alert rule's id."),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "`rule-not-found`"),
    )
)]
#[delete("/alert-rules/{id}")]
async fn delete(
    caller: Caller,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    rule_service::delete(&state, &caller, &path).await?;
    Ok(HttpResponse::NoContent().finish())
}
