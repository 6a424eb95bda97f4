//! `/api/v1/campaigns`: create, list, show, start, pause, resume, cancel, retry failed, and the
//! per-recipient ledger.
use std::collections::BTreeMap;

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
    TransactionTrait,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{
    Audience, SendWindow,
    repo::{self, CampaignRow, Counters, status},
};
use crate::{
    auth::Caller,
    channels::{ChannelAdapter, ProviderTemplate, repo::ChannelRow},
    domain::MessageStatus,
    entities::{campaigns, contacts, media, messages, templates},
    error::ApiError,
    outbox::repo::NewMessage,
    state::AppState,
    templates::{Compiled, context},
};

/// Contacts read per page while building the ledger.
const PAGE: u64 = 1_000;
/// Contacts named in a `missing-variables` answer.
const LIST_MISSING: usize = 20;

/// Mounts the campaign routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/campaigns", web::post().to(create))
        .route("/campaigns", web::get().to(list))
        .route("/campaigns/{id}", web::get().to(get))
        .route("/campaigns/{id}/start", web::post().to(start))
        .route("/campaigns/{id}/pause", web::post().to(pause))
        .route("/campaigns/{id}/resume", web::post().to(resume))
        .route("/campaigns/{id}/cancel", web::post().to(cancel))
        .route("/campaigns/{id}/retry-failed", web::post().to(retry_failed))
        .route("/campaigns/{id}/recipients", web::get().to(recipients));
}

/// What creates a campaign (API body, and the seed's `/send-messages`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewCampaign {
    /// Display name.
    pub name: String,
    /// Channel account that sends it.
    pub channel_id: String,
    /// Template to copy the body (and media) from.
    #[serde(default)]
    pub template_id: Option<String>,
    /// Body with variables (instead of a template).
    #[serde(default)]
    pub body: Option<String>,
    /// Media sent with every message.
    #[serde(default)]
    pub media_id: Option<String>,
    /// WhatsApp approved template; its `params` may use variables.
    #[serde(default)]
    pub provider_template: Option<ProviderTemplate>,
    /// Who gets it (default: every contact of the owner).
    #[serde(default)]
    pub audience: Audience,
    /// Start later (with `start`).
    #[serde(default)]
    pub scheduled_at: Option<DateTime<Utc>>,
    /// Hours sends may happen.
    #[serde(default)]
    pub send_window: Option<SendWindow>,
    /// Start right away (default false: a draft).
    #[serde(default)]
    pub start: bool,
    /// With `start`: skip contacts lacking a variable instead of refusing.
    #[serde(default)]
    pub skip_missing: bool,
}

#[derive(Serialize)]
struct CampaignView {
    id: String,
    name: String,
    channel_id: String,
    template_id: Option<String>,
    body: String,
    provider_template: Option<serde_json::Value>,
    media_id: Option<String>,
    audience: serde_json::Value,
    scheduled_at: Option<DateTime<Utc>>,
    send_window: Option<serde_json::Value>,
    status: String,
    status_detail: Option<String>,
    counters: Counters,
    /// Share of the audience that reached a final state, 0–100.
    progress: f64,
    created_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
}

fn view(c: CampaignRow) -> CampaignView {
    let stored = Counters {
        total: c.total,
        pending: c.pending,
        queued: c.queued,
        sent: c.sent,
        delivered: c.delivered,
        read: c.read,
        failed: c.failed,
        skipped: c.skipped,
    };
    view_with(c, stored)
}

/// The campaign with `counters` (fresh from the ledger, or as stored on the row).
fn view_with(c: CampaignRow, counters: Counters) -> CampaignView {
    let done = counters.sent + counters.failed + counters.skipped;
    let json = |s: &Option<String>| s.as_deref().and_then(|s| serde_json::from_str(s).ok());
    CampaignView {
        progress: if counters.total > 0 {
            (done as f64 * 1000.0 / counters.total as f64).round() / 10.0
        } else {
            0.0
        },
        provider_template: json(&c.provider_template),
        send_window: json(&c.send_window),
        audience: serde_json::from_str(&c.audience).unwrap_or_default(),
        counters,
        id: c.id,
        name: c.name,
        channel_id: c.channel_id,
        template_id: c.template_id,
        body: c.body,
        media_id: c.media_id,
        scheduled_at: c.scheduled_at,
        status: c.status,
        status_detail: c.status_detail,
        created_at: c.created_at,
        started_at: c.started_at,
        finished_at: c.finished_at,
    }
}

fn invalid(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::Unprocessable(code, message.into())
}

/// Creates a campaign for `caller` and, if asked, starts it. `Err(Ok(response))` carries a
/// complete refusal (the missing-variables list).
pub async fn create_and_start(
    state: &AppState,
    caller: &Caller,
    b: NewCampaign,
) -> Result<Result<CampaignRow, HttpResponse>, ApiError> {
    caller.ensure_can_write()?;
    let name = b.name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(invalid("invalid-name", "name must be 1 to 200 characters"));
    }
    let channel =
        crate::channels::repo::find_visible(&state.db, &b.channel_id, |o| caller.can_access(o))
            .await?
            .ok_or_else(|| {
                ApiError::NotFound(
                    "channel-not-found",
                    format!("no channel `{}`", b.channel_id),
                )
            })?;
    let owner = channel.owner_id.clone();
    let (body, mut media_id) = match (&b.template_id, &b.body) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "ambiguous-body",
                "give template_id or body, not both",
            ));
        }
        (Some(tid), None) => {
            let t = templates::Entity::find_by_id(tid.clone())
                .one(&state.db)
                .await?
                .filter(|t| t.owner_id == owner)
                .ok_or_else(|| {
                    ApiError::NotFound("template-not-found", format!("no template `{tid}`"))
                })?;
            (t.body, t.media_id)
        }
        (None, Some(body)) => (body.clone(), None),
        (None, None) if b.provider_template.is_some() => (String::new(), None),
        (None, None) => {
            return Err(invalid(
                "body-required",
                "give a body, a template_id or a provider_template",
            ));
        }
    };
    if body.chars().count() > 4096 {
        return Err(invalid(
            "body-too-long",
            "the body may have at most 4096 characters",
        ));
    }
    Compiled::new(&body).map_err(|e| invalid("invalid-template", e))?;
    let adapter = channel_adapter(state, &channel)?;
    if let Some(pt) = &b.provider_template {
        if !adapter.provider_templates() {
            return Err(invalid(
                "provider-template-unsupported",
                "provider templates are a WhatsApp Cloud API feature; this channel cannot send them",
            ));
        }
        if pt.name.trim().is_empty() || pt.language.trim().is_empty() {
            return Err(invalid(
                "invalid-provider-template",
                "provider_template needs a name and a language",
            ));
        }
        for p in &pt.params {
            Compiled::new(p).map_err(|e| invalid("invalid-provider-template", e))?;
        }
    }
    if b.media_id.is_some() {
        media_id = b.media_id.clone();
    }
    if let Some(mid) = &media_id {
        let m = media::Entity::find_by_id(mid.clone())
            .one(&state.db)
            .await?
            .filter(|m| m.owner_id == owner)
            .ok_or_else(|| ApiError::NotFound("media-not-found", format!("no media `{mid}`")))?;
        adapter
            .check_media(&m.content_type, u64::try_from(m.size).unwrap_or(u64::MAX))
            .map_err(|(code, why)| invalid(code, why))?;
    }
    if let Some(w) = &b.send_window {
        w.validate()
            .map_err(|e| invalid("invalid-send-window", e))?;
    }
    if b.audience.contact_ids.len() > 10_000 {
        return Err(invalid(
            "audience-too-large",
            "list at most 10000 contact ids; use groups for more",
        ));
    }
    let now = state.clock.now();
    let row = campaigns::ActiveModel {
        id: Set(uuid::Uuid::now_v7().to_string()),
        owner_id: Set(owner),
        name: Set(name.to_owned()),
        channel_id: Set(channel.id.clone()),
        template_id: Set(b.template_id.clone()),
        body: Set(body),
        provider_template: Set(b
            .provider_template
            .as_ref()
            .map(|p| serde_json::to_string(p).unwrap_or_default())),
        media_id: Set(media_id),
        audience: Set(serde_json::to_string(&b.audience).unwrap_or_default()),
        scheduled_at: Set(b.scheduled_at),
        send_window: Set(b
            .send_window
            .as_ref()
            .map(|w| serde_json::to_string(w).unwrap_or_default())),
        status: Set(status::DRAFT.into()),
        status_detail: Set(None),
        total: Set(0),
        pending: Set(0),
        queued: Set(0),
        sent: Set(0),
        delivered: Set(0),
        read: Set(0),
        failed: Set(0),
        skipped: Set(0),
        created_at: Set(now),
        updated_at: Set(now),
        started_at: Set(None),
        finished_at: Set(None),
    }
    .insert(&state.db)
    .await?;
    tracing::info!(campaign_id = %row.id, "campaign created");
    if !b.start {
        return Ok(Ok(row));
    }
    if let Err(refusal) = launch(state, &row, b.skip_missing).await? {
        return Ok(Err(refusal));
    }
    Ok(Ok(repo::find(&state.db, &row.id).await?.unwrap_or(row)))
}

fn audience_query(owner: &str, a: &Audience, after: &str) -> sea_orm::Select<contacts::Entity> {
    let mut q = contacts::Entity::find()
        .filter(contacts::Column::OwnerId.eq(owner))
        .filter(contacts::Column::OptedOut.eq(false))
        .filter(contacts::Column::Id.gt(after))
        .order_by_asc(contacts::Column::Id)
        .limit(PAGE);
    if !a.groups.is_empty() || !a.contact_ids.is_empty() {
        use sea_orm::sea_query::Condition;
        let mut any = Condition::any();
        if !a.groups.is_empty() {
            any = any.add(contacts::Column::GroupName.is_in(a.groups.clone()));
        }
        if !a.contact_ids.is_empty() {
            any = any.add(contacts::Column::Id.is_in(a.contact_ids.clone()));
        }
        q = q.filter(any);
    }
    q
}

/// Renders everything a contact's message needs, or names the variables it lacks.
struct Renderer {
    body: Compiled,
    params: Vec<Compiled>,
    template: Option<ProviderTemplate>,
}

impl Renderer {
    fn new(c: &CampaignRow) -> Result<Self, ApiError> {
        let template: Option<ProviderTemplate> = c
            .provider_template
            .as_deref()
            .and_then(|p| serde_json::from_str(p).ok());
        let params = template
            .iter()
            .flat_map(|t| t.params.iter())
            .map(|p| Compiled::new(p).map_err(|e| invalid("invalid-provider-template", e)))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            body: Compiled::new(&c.body).map_err(|e| invalid("invalid-template", e))?,
            params,
            template,
        })
    }

    fn missing(&self, vars: &BTreeMap<String, String>) -> Vec<String> {
        let mut lacking = self.body.blocking(vars);
        for p in &self.params {
            lacking.extend(p.blocking(vars));
        }
        lacking.sort();
        lacking.dedup();
        lacking
    }

    fn render(
        &self,
        vars: &BTreeMap<String, String>,
    ) -> Result<(String, Option<ProviderTemplate>), String> {
        let text = self.body.render(vars)?;
        let template = match &self.template {
            None => None,
            Some(t) => Some(ProviderTemplate {
                params: self
                    .params
                    .iter()
                    .map(|p| p.render(vars))
                    .collect::<Result<_, _>>()?,
                ..t.clone()
            }),
        };
        Ok((text, template))
    }
}

/// Builds the ledger of a draft campaign and sets it running (or scheduled). Refuses, with the
/// list, when contacts lack a variable, unless `skip_missing`.
async fn launch(
    state: &AppState,
    c: &CampaignRow,
    skip_missing: bool,
) -> Result<Result<(), HttpResponse>, ApiError> {
    if c.status != status::DRAFT {
        return Err(ApiError::Conflict(
            "campaign-not-draft",
            format!("the campaign is {}; only a draft can be started", c.status),
        ));
    }
    let channel = crate::channels::repo::find(&state.db, &c.channel_id)
        .await?
        .ok_or_else(|| ApiError::Conflict("channel-not-found", "the channel was deleted".into()))?;
    let adapter = channel_adapter(state, &channel)?;
    let audience: Audience = serde_json::from_str(&c.audience).unwrap_or_default();
    let renderer = Renderer::new(c)?;

    // Pass 1: who lacks a variable (nothing is written if the answer is a refusal).
    let (mut affected, mut listed, mut after) = (0u64, Vec::new(), String::new());
    if !skip_missing {
        loop {
            let page = audience_query(&c.owner_id, &audience, &after)
                .all(&state.db)
                .await?;
            let Some(last) = page.last() else { break };
            after = last.id.clone();
            for contact in &page {
                let lacking = renderer.missing(&context(contact));
                if !lacking.is_empty() {
                    affected += 1;
                    if listed.len() < LIST_MISSING {
                        listed.push(json!({"contact_id": contact.id, "phone": contact.phone, "missing": lacking}));
                    }
                }
            }
        }
        if affected > 0 {
            return Ok(Err(HttpResponse::UnprocessableEntity().json(json!({
                "error": "missing-variables",
                "message": format!("{affected} contact(s) lack a variable the message uses; fill them in or start with skip_missing"),
                "contacts_missing_variables": affected,
                "contacts": listed,
                "campaign_id": c.id,
            }))));
        }
    }

    // Pass 2: the ledger, a page per transaction; re-running skips contacts already in it.
    after.clear();
    let now = Utc::now();
    loop {
        let page = audience_query(&c.owner_id, &audience, &after)
            .all(&state.db)
            .await?;
        let Some(last) = page.last() else { break };
        after = last.id.clone();
        let rows = page
            .iter()
            .map(|contact| {
                let recipient =
                    adapter.contact_address(&contact.phone, contact.telegram_chat_id.as_deref());
                let rendered = renderer.render(&context(contact));
                let (body, template, skip) = match (&recipient, rendered) {
                    (Err(reason), _) => (String::new(), None, Some(*reason)),
                    (Ok(_), Err(_)) => (String::new(), None, Some("missing-variables")),
                    (Ok(_), Ok((body, template))) => (body, template, None),
                };
                let mut row = NewMessage {
                    owner_id: c.owner_id.clone(),
                    channel_id: c.channel_id.clone(),
                    recipient: recipient.unwrap_or_default(),
                    body,
                    parse_mode: None,
                    media_id: c.media_id.clone(),
                    idempotency_key: None,
                    request_hash: None,
                    integration_id: None,
                }
                .into_row(now);
                row.campaign_id = Set(Some(c.id.clone()));
                row.contact_id = Set(Some(contact.id.clone()));
                row.provider_template =
                    Set(template.map(|t| serde_json::to_string(&t).unwrap_or_default()));
                row.status = Set(match skip {
                    Some(_) => MessageStatus::Skipped,
                    None => MessageStatus::Pending,
                }
                .as_str()
                .into());
                row.last_error_code = Set(skip.map(str::to_owned));
                row
            })
            .collect();
        let txn = state.db.begin().await?;
        repo::insert_recipients(&txn, rows).await?;
        txn.commit().await?;
    }
    let counters = repo::count(&state.db, &c.id).await?;
    repo::store_counters(&state.db, &c.id, &counters).await?;
    let to = match c.scheduled_at {
        Some(at) if at > Utc::now() => status::SCHEDULED,
        _ => status::RUNNING,
    };
    repo::transition(&state.db, &c.id, &[status::DRAFT], to, None).await?;
    tracing::info!(campaign_id = %c.id, recipients = counters.total, status = to, "campaign started");
    Ok(Ok(()))
}

async fn find(state: &AppState, caller: &Caller, id: &str) -> Result<CampaignRow, ApiError> {
    repo::find(&state.db, id)
        .await?
        .filter(|c| caller.can_access(&c.owner_id))
        .ok_or_else(|| ApiError::NotFound("campaign-not-found", format!("no campaign `{id}`")))
}

async fn create(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<NewCampaign>,
) -> Result<HttpResponse, ApiError> {
    Ok(
        match create_and_start(&state, &caller, body.into_inner()).await? {
            Ok(row) => HttpResponse::Created().json(view(row)),
            Err(refusal) => refusal,
        },
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    status: Option<String>,
}

async fn list(
    state: web::Data<AppState>,
    caller: Caller,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let mut query = campaigns::Entity::find()
        .filter(campaigns::Column::OwnerId.eq(caller.user_id.clone()))
        .order_by_desc(campaigns::Column::CreatedAt)
        .limit(500);
    if let Some(s) = &q.status {
        query = query.filter(campaigns::Column::Status.eq(s.clone()));
    }
    let items: Vec<_> = query.all(&state.db).await?.into_iter().map(view).collect();
    Ok(HttpResponse::Ok().json(json!({ "items": items })))
}

async fn get(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let c = find(&state, &caller, &id).await?;
    // A running campaign's actor stores fresh counters every second; counting here too would
    // scan the whole ledger once per poll of every open dashboard. Otherwise count: receipts
    // keep arriving by webhook after the actor has finished.
    if c.status == status::RUNNING {
        return Ok(HttpResponse::Ok().json(view(c)));
    }
    let counters = repo::count(&state.db, &c.id).await?;
    repo::store_counters(&state.db, &c.id, &counters).await?;
    Ok(HttpResponse::Ok().json(view_with(c, counters)))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct StartQuery {
    #[serde(default)]
    skip_missing: bool,
}

async fn start(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
    q: web::Query<StartQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.ensure_can_write()?;
    let c = find(&state, &caller, &id).await?;
    if let Err(refusal) = launch(&state, &c, q.skip_missing).await? {
        return Ok(refusal);
    }
    Ok(HttpResponse::Ok().json(view(find(&state, &caller, &id).await?)))
}

/// Applies a state change and the ledger moves that go with it, in one transaction.
async fn change(
    state: &AppState,
    caller: &Caller,
    id: &str,
    from: &[&str],
    to: &str,
    moves: &[(&[MessageStatus], MessageStatus, Option<&str>)],
) -> Result<HttpResponse, ApiError> {
    caller.ensure_can_write()?;
    let c = find(state, caller, id).await?;
    let txn = state.db.begin().await?;
    if !repo::transition(&txn, &c.id, from, to, None).await? {
        return Err(ApiError::Conflict(
            "invalid-campaign-state",
            format!("a {} campaign cannot become {to}", c.status),
        ));
    }
    for (from, to, code) in moves {
        repo::move_messages(&txn, &c.id, from, *to, *code).await?;
    }
    txn.commit().await?;
    let counters = repo::count(&state.db, &c.id).await?;
    repo::store_counters(&state.db, &c.id, &counters).await?;
    tracing::info!(campaign_id = %c.id, status = to, "campaign state changed");
    let c = find(state, caller, id).await?;
    Ok(HttpResponse::Ok().json(view_with(c, counters)))
}

async fn pause(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    // Released but unsent recipients go back to pending (their jobs find them so and stop).
    change(
        &state,
        &caller,
        &id,
        &[status::RUNNING, status::SCHEDULED],
        status::PAUSED,
        &[(&[MessageStatus::Queued], MessageStatus::Pending, None)],
    )
    .await
}

async fn resume(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    change(
        &state,
        &caller,
        &id,
        &[status::PAUSED],
        status::RUNNING,
        &[],
    )
    .await
}

async fn cancel(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    change(
        &state,
        &caller,
        &id,
        &[
            status::DRAFT,
            status::SCHEDULED,
            status::RUNNING,
            status::PAUSED,
        ],
        status::CANCELLED,
        &[(
            &[MessageStatus::Pending, MessageStatus::Queued],
            MessageStatus::Skipped,
            Some("cancelled"),
        )],
    )
    .await
}

async fn retry_failed(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    change(
        &state,
        &caller,
        &id,
        &[status::COMPLETED, status::RUNNING, status::PAUSED],
        status::RUNNING,
        &[(&[MessageStatus::Failed], MessageStatus::Pending, None)],
    )
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecipientsQuery {
    status: Option<String>,
    after: Option<String>,
    limit: Option<u64>,
}

async fn recipients(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
    q: web::Query<RecipientsQuery>,
) -> Result<HttpResponse, ApiError> {
    let c = find(&state, &caller, &id).await?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let mut query = messages::Entity::find()
        .filter(messages::Column::CampaignId.eq(c.id.clone()))
        .order_by_asc(messages::Column::Id)
        .limit(limit);
    if let Some(s) = &q.status {
        query = query.filter(messages::Column::Status.eq(s.clone()));
    }
    if let Some(after) = &q.after {
        query = query.filter(messages::Column::Id.gt(after.clone()));
    }
    let rows = query.all(&state.db).await?;
    let next = (rows.len() as u64 == limit)
        .then(|| rows.last().map(|r| r.id.clone()))
        .flatten();
    let items: Vec<_> = rows
        .into_iter()
        .map(|m| {
            json!({
                "message_id": m.id, "contact_id": m.contact_id, "recipient": m.recipient,
                "status": m.status, "attempts": m.attempts,
                "provider_message_id": m.provider_message_id,
                "error_code": m.last_error_code, "error": m.last_error,
                "sent_at": m.sent_at, "delivered_at": m.delivered_at, "read_at": m.read_at,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "items": items, "next_after": next })))
}

/// The adapter of a campaign's channel.
fn channel_adapter<'a>(
    state: &'a AppState,
    channel: &ChannelRow,
) -> Result<&'a std::sync::Arc<dyn ChannelAdapter>, ApiError> {
    state.adapters.get(&channel.kind).ok_or_else(|| {
        ApiError::Unprocessable(
            "unsupported-channel-kind",
            format!("channel `{}` is of an unknown kind", channel.id),
        )
    })
}
