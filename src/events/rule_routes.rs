//! `/api/v1/alert-rules`: create, list, read, change and delete alert rules (API key auth;
//! every rule belongs to its creator, and other owners get 404).
use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, Set};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::rules::{Target, target_of};
use crate::{
    auth::Caller,
    channels::repo as channels_repo,
    entities::alert_rules,
    error::{ApiError, FieldError},
    integrations::repo as integrations_repo,
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

/// Most metadata conditions in one rule.
const MAX_CONDITIONS: usize = 16;
/// Highest per-rule rate.
const MAX_PER_MINUTE: i32 = 600;
/// Rate when none is given.
const DEFAULT_PER_MINUTE: i32 = 6;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleBody {
    name: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    service: Option<Option<String>>,
    #[serde(rename = "match")]
    conditions: Option<Map<String, Value>>,
    integration_id: Option<String>,
    channel_id: Option<String>,
    chat_id: Option<Value>,
    max_per_minute: Option<i32>,
    enabled: Option<bool>,
}

/// `"service": null` clears the filter; a missing key leaves it as it is.
fn double_option<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<String>>, D::Error> {
    Ok(Some(Option::deserialize(d)?))
}

#[derive(Serialize)]
struct RuleView {
    id: String,
    name: String,
    service: Option<String>,
    #[serde(rename = "match")]
    conditions: Value,
    integration_id: Option<String>,
    channel_id: Option<String>,
    chat_id: Option<String>,
    max_per_minute: i32,
    enabled: bool,
    fired_count: i64,
    suppressed_count: i64,
    last_fired_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

fn view(r: alert_rules::Model, state: &AppState) -> RuleView {
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

fn field(name: &str, code: &'static str, message: impl Into<String>) -> FieldError {
    FieldError {
        field: name.to_owned(),
        code,
        message: message.into(),
    }
}

/// Checks `body` over `current` (for PATCH) and returns the row to store.
async fn checked(
    state: &AppState,
    caller: &Caller,
    body: RuleBody,
    mut row: alert_rules::Model,
) -> Result<alert_rules::Model, ApiError> {
    let mut errors = Vec::new();
    if let Some(name) = body.name {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 200 {
            errors.push(field(
                "name",
                "invalid-length",
                "name must be 1 to 200 characters",
            ));
        }
        row.name = name.to_owned();
    } else if row.name.is_empty() {
        errors.push(field("name", "required", "give the rule a name"));
    }
    if let Some(service) = body.service {
        if service
            .as_deref()
            .is_some_and(|s| s.is_empty() || s.len() > 100)
        {
            errors.push(field(
                "service",
                "invalid-length",
                "service must be 1 to 100 bytes",
            ));
        }
        row.service = service;
    }
    if let Some(conditions) = body.conditions {
        if conditions.len() > MAX_CONDITIONS {
            errors.push(field(
                "match",
                "too-many",
                format!("at most {MAX_CONDITIONS} conditions"),
            ));
        }
        if let Some(bad) = conditions
            .keys()
            .find(|k| k.is_empty() || k.split('.').any(str::is_empty))
        {
            errors.push(field(
                "match",
                "invalid-path",
                format!("`{bad}` is not a metadata path (keys joined by dots)"),
            ));
        }
        row.conditions = Value::Object(conditions).to_string();
    }
    if row.service.is_none() && row.conditions == "{}" {
        errors.push(field(
            "match",
            "required",
            "a rule needs a service or at least one metadata condition",
        ));
    }
    if let Some(n) = body.max_per_minute {
        if !(1..=MAX_PER_MINUTE).contains(&n) {
            errors.push(field(
                "max_per_minute",
                "out-of-range",
                format!("must be between 1 and {MAX_PER_MINUTE}"),
            ));
        }
        row.max_per_minute = n;
    }
    if let Some(enabled) = body.enabled {
        row.enabled = enabled;
    }
    let chat_id = match body.chat_id {
        None => None,
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 32 => Some(s),
        Some(Value::Number(n)) if n.is_i64() => Some(n.to_string()),
        Some(_) => {
            errors.push(field(
                "chat_id",
                "invalid",
                "chat_id is a chat id or @channel name",
            ));
            None
        }
    };
    match (body.integration_id, body.channel_id, chat_id) {
        (None, None, None) => {}
        (Some(id), None, None) => {
            row.integration_id = Some(id);
            row.channel_id = None;
            row.chat_id = None;
        }
        (None, Some(channel), Some(chat)) => {
            row.integration_id = None;
            row.channel_id = Some(channel);
            row.chat_id = Some(chat);
        }
        _ => errors.push(field(
            "integration_id",
            "invalid-target",
            "give either integration_id, or channel_id with chat_id",
        )),
    }
    if errors.is_empty() && target_of(&row).is_none() {
        errors.push(field(
            "integration_id",
            "required",
            "say where alerts go: integration_id, or channel_id with chat_id",
        ));
    }
    if !errors.is_empty() {
        return Err(ApiError::Invalid(errors));
    }
    // The target must be the caller's (404 otherwise, like any resource they cannot see).
    match target_of(&row) {
        Some(Target::Integration(id)) => {
            integrations_repo::find_owned(&state.db, &caller.user_id, &id)
                .await?
                .ok_or_else(|| {
                    ApiError::NotFound("integration-not-found", format!("no integration `{id}`"))
                })?;
        }
        Some(Target::Chat { channel_id, .. }) => {
            channels_repo::find_owned(&state.db, &caller.user_id, &channel_id)
                .await?
                .ok_or_else(|| {
                    ApiError::NotFound(
                        "channel-not-found",
                        format!("no channel account `{channel_id}`"),
                    )
                })?;
        }
        None => {}
    }
    Ok(row)
}

async fn create(
    caller: Caller,
    body: web::Json<RuleBody>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let now = state.clock.now();
    let blank = alert_rules::Model {
        id: uuid::Uuid::now_v7().to_string(),
        owner_id: caller.user_id.clone(),
        name: String::new(),
        service: None,
        conditions: "{}".into(),
        integration_id: None,
        channel_id: None,
        chat_id: None,
        max_per_minute: DEFAULT_PER_MINUTE,
        enabled: true,
        fired_count: 0,
        suppressed_count: 0,
        last_fired_at: None,
        created_at: now,
        updated_at: now,
    };
    let row = checked(&state, &caller, body.into_inner(), blank).await?;
    let active: alert_rules::ActiveModel = row.into();
    let row = active.reset_all().insert(&state.db).await?;
    state.rules.reload().await?;
    tracing::info!(rule_id = %row.id, "alert rule created");
    Ok(HttpResponse::Created().json(view(row, &state)))
}

async fn list(caller: Caller, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let rows = alert_rules::Entity::find()
        .filter(alert_rules::Column::OwnerId.eq(caller.user_id.clone()))
        .order_by_asc(alert_rules::Column::CreatedAt)
        .all(&state.db)
        .await?;
    let views: Vec<_> = rows.into_iter().map(|r| view(r, &state)).collect();
    Ok(HttpResponse::Ok().json(views))
}

async fn owned(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<alert_rules::Model, ApiError> {
    alert_rules::Entity::find_by_id(id.to_owned())
        .one(&state.db)
        .await?
        .filter(|r| caller.can_access(&r.owner_id))
        .ok_or_else(|| ApiError::NotFound("rule-not-found", format!("no alert rule `{id}`")))
}

async fn get(
    caller: Caller,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let row = owned(&state, &caller, &path).await?;
    Ok(HttpResponse::Ok().json(view(row, &state)))
}

async fn update(
    caller: Caller,
    path: web::Path<String>,
    body: web::Json<RuleBody>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let current = owned(&state, &caller, &path).await?;
    let mut row = checked(&state, &caller, body.into_inner(), current).await?;
    row.updated_at = state.clock.now();
    let active = alert_rules::ActiveModel {
        id: sea_orm::ActiveValue::Unchanged(row.id.clone()),
        name: Set(row.name),
        service: Set(row.service),
        conditions: Set(row.conditions),
        integration_id: Set(row.integration_id),
        channel_id: Set(row.channel_id),
        chat_id: Set(row.chat_id),
        max_per_minute: Set(row.max_per_minute),
        enabled: Set(row.enabled),
        updated_at: Set(row.updated_at),
        ..Default::default()
    };
    let row = active.update(&state.db).await?;
    state.rules.reload().await?;
    Ok(HttpResponse::Ok().json(view(row, &state)))
}

async fn delete(
    caller: Caller,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let row = owned(&state, &caller, &path).await?;
    alert_rules::Entity::delete_by_id(row.id)
        .exec(&state.db)
        .await?;
    state.rules.reload().await?;
    Ok(HttpResponse::NoContent().finish())
}
