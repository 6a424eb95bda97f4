//! What the alert-rule routes do: check a rule and its target, store it, reload the engine.
use serde::Deserialize;
use serde_json::{Map, Value};

use super::{
    EventError,
    repo::{self, RuleRow},
    rules::{Target, target_of},
};
use crate::{
    auth::Caller,
    channels::repo as channels_repo,
    domain::{ChannelId, IntegrationId},
    error::FieldError,
    integrations::repo as integrations_repo,
    state::AppState,
};

/// Most metadata conditions in one rule.
const MAX_CONDITIONS: usize = 16;
/// Highest per-rule rate.
const MAX_PER_MINUTE: i32 = 600;
/// Rate when none is given.
const DEFAULT_PER_MINUTE: i32 = 6;

/// A rule as the API takes it: every field for a create, any for a PATCH.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = AlertRuleBody)]
pub struct RuleBody {
    /// 1 to 200 characters (required on create).
    name: Option<String>,
    /// Only events of this service (1 to 100 bytes). `"service": null` clears the filter; a
    /// missing key leaves it as it is.
    #[serde(default, deserialize_with = "crate::domain::double_option")]
    service: Option<Option<String>>,
    /// Metadata conditions, at most 16: dotted metadata path (`level`, `http.status`) → the
    /// value it must have.
    #[serde(rename = "match")]
    #[schema(value_type = Option<Object>)]
    conditions: Option<Map<String, Value>>,
    /// Send alerts to this integration (instead of `channel_id` with `chat_id`).
    integration_id: Option<IntegrationId>,
    /// Send alerts to this channel account, to `chat_id`.
    channel_id: Option<ChannelId>,
    /// The chat of `channel_id`: a chat id (string or integer) or an `@channel` name.
    #[schema(value_type = Option<String>)]
    chat_id: Option<Value>,
    /// Most alerts per minute, 1 to 600 (default 6).
    max_per_minute: Option<i32>,
    /// Default `true`.
    enabled: Option<bool>,
}

/// Checks `body` over `current` (for PATCH) and returns the row to store.
async fn checked(
    state: &AppState,
    caller: &Caller,
    body: RuleBody,
    mut row: RuleRow,
) -> Result<RuleRow, EventError> {
    let mut errors = Vec::new();
    if let Some(name) = body.name {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 200 {
            errors.push(FieldError::new(
                "name",
                "invalid-length",
                "name must be 1 to 200 characters",
            ));
        }
        row.name = name.to_owned();
    } else if row.name.is_empty() {
        errors.push(FieldError::new("name", "required", "give the rule a name"));
    }
    if let Some(service) = body.service {
        if service
            .as_deref()
            .is_some_and(|s| s.is_empty() || s.len() > 100)
        {
            errors.push(FieldError::new(
                "service",
                "invalid-length",
                "service must be 1 to 100 bytes",
            ));
        }
        row.service = service;
    }
    if let Some(conditions) = body.conditions {
        if conditions.len() > MAX_CONDITIONS {
            errors.push(FieldError::new(
                "match",
                "too-many",
                format!("at most {MAX_CONDITIONS} conditions"),
            ));
        }
        if let Some(bad) = conditions
            .keys()
            .find(|k| k.is_empty() || k.split('.').any(str::is_empty))
        {
            errors.push(FieldError::new(
                "match",
                "invalid-path",
                format!("`{bad}` is not a metadata path (keys joined by dots)"),
            ));
        }
        row.conditions = Value::Object(conditions).to_string();
    }
    if row.service.is_none() && row.conditions == "{}" {
        errors.push(FieldError::new(
            "match",
            "required",
            "a rule needs a service or at least one metadata condition",
        ));
    }
    if let Some(n) = body.max_per_minute {
        if !(1..=MAX_PER_MINUTE).contains(&n) {
            errors.push(FieldError::new(
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
            errors.push(FieldError::new(
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
        _ => errors.push(FieldError::new(
            "integration_id",
            "invalid-target",
            "give either integration_id, or channel_id with chat_id",
        )),
    }
    if errors.is_empty() && target_of(&row).is_none() {
        errors.push(FieldError::new(
            "integration_id",
            "required",
            "say where alerts go: integration_id, or channel_id with chat_id",
        ));
    }
    if !errors.is_empty() {
        return Err(EventError::Invalid(errors));
    }
    // The target must be the caller's (404 otherwise, like any resource they cannot see).
    match target_of(&row) {
        Some(Target::Integration(id)) => {
            integrations_repo::find_owned(&state.db, &caller.user_id, &id)
                .await?
                .ok_or(EventError::IntegrationNotFound(id))?;
        }
        Some(Target::Chat { channel_id, .. }) => {
            channels_repo::find_owned(&state.db, &caller.user_id, &channel_id)
                .await?
                .ok_or(EventError::ChannelNotFound(channel_id))?;
        }
        None => {}
    }
    Ok(row)
}

/// Stores a new rule of the caller's and puts it to work.
pub async fn create(
    state: &AppState,
    caller: &Caller,
    body: RuleBody,
) -> Result<RuleRow, EventError> {
    let now = state.clock.now();
    let blank = RuleRow {
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
    let row = checked(state, caller, body, blank).await?;
    let row = repo::insert_rule(&state.db, row).await?;
    state.rules.reload().await?;
    tracing::info!(rule_id = %row.id, "alert rule created");
    Ok(row)
}

/// The caller's rules, oldest first.
pub async fn list(
    state: &AppState,
    caller: &Caller,
    page: &crate::page::PageRequest,
) -> Result<crate::page::Page<RuleRow>, EventError> {
    Ok(repo::rules_of(&state.db, &caller.user_id, page).await?)
}

/// The rule `id` if the caller may see it.
pub async fn find(state: &AppState, caller: &Caller, id: &str) -> Result<RuleRow, EventError> {
    repo::find_rule(&state.db, id)
        .await?
        .filter(|r| caller.can_access(&r.owner_id))
        .ok_or_else(|| EventError::RuleNotFound(id.to_owned()))
}

/// Changes the fields given and reloads the engine.
pub async fn update(
    state: &AppState,
    caller: &Caller,
    id: &str,
    body: RuleBody,
) -> Result<RuleRow, EventError> {
    let current = find(state, caller, id).await?;
    let mut row = checked(state, caller, body, current).await?;
    row.updated_at = state.clock.now();
    let row = repo::update_rule(&state.db, row).await?;
    state.rules.reload().await?;
    Ok(row)
}

/// Deletes a rule and reloads the engine.
pub async fn delete(state: &AppState, caller: &Caller, id: &str) -> Result<(), EventError> {
    let row = find(state, caller, id).await?;
    repo::delete_rule(&state.db, &row.id).await?;
    state.rules.reload().await?;
    Ok(())
}
