//! `/api/v1/campaigns`: parse, authorise, call the service, map its error.
use actix_web::{HttpResponse, get, post, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{
    repo::{CampaignRow, Counters},
    service::{self, Change, NewCampaign},
};
use crate::page::{Page, PageQuery};
use crate::{
    auth::Caller,
    domain::{CampaignId, ChannelId, ContactId, MediaId, MessageId},
    error::ApiError,
    state::AppState,
};

/// Mounts the campaign routes.
pub fn configure(cfg: &mut crate::mount::Routes) {
    cfg.service(create)
        .service(list)
        .service(get)
        .service(start)
        .service(pause)
        .service(resume)
        .service(cancel)
        .service(retry_failed)
        .service(recipients);
}

/// A campaign with its live counters.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Campaign)]
struct CampaignView {
    id: CampaignId,
    name: String,
    channel_id: ChannelId,
    template_id: Option<String>,
    /// The message body (minijinja), copied from the template when one was named.
    body: String,
    #[schema(value_type = Option<crate::channels::ProviderTemplate>)]
    provider_template: Option<serde_json::Value>,
    media_id: Option<MediaId>,
    #[schema(value_type = super::Audience)]
    audience: serde_json::Value,
    scheduled_at: Option<DateTime<Utc>>,
    #[schema(value_type = Option<super::SendWindow>)]
    send_window: Option<serde_json::Value>,
    /// `draft`, `preparing`, `scheduled`, `running`, `paused`, `completed` or `cancelled`.
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
    let stored = Counters::stored(&c);
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

/// Create a campaign: a draft, or started at once with `start: true`.
///
/// A start refused because contacts lack a variable the message uses is `422 missing-variables`
/// with the first of them (`contacts`) and the draft's `campaign_id`; start again with
/// `skip_missing` to skip them.
#[utoipa::path(
    tag = "campaigns",
    responses(
        (status = 201, description = "The campaign, with counters", body = CampaignView),
        (status = 400, description = "`invalid-json`, `unsupported-media-type`"),
        (status = 404, description = "`channel-not-found`, `template-not-found`, `media-not-found`"),
        (status = 409, description = "`channel-deleted`: the channel went away while the campaign started"),
        (status = 413, description = "`payload-too-large`"),
        (status = 422, description = "`invalid-body`, `invalid-name`, `ambiguous-body`, `body-required`, `body-too-long`, `invalid-template`, `provider-template-unsupported`, `invalid-provider-template`, `invalid-send-window`, `audience-too-large`, `unsupported-channel-kind`, `missing-variables` (with `start`; the list is in `contacts`)"),
    )
)]
#[post("/campaigns")]
async fn create(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<NewCampaign>,
) -> Result<HttpResponse, ApiError> {
    caller.ensure_can_write()?;
    match service::create(&state, &caller, body.into_inner()).await {
        Ok(row) => Ok(HttpResponse::Created().json(view(row))),
        Err(e) => e.respond(),
    }
}

/// `?status=&cursor=&limit=`.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Only campaigns in this status.
    status: Option<String>,
    /// `next_cursor` of the page before.
    cursor: Option<String>,
    /// Rows per page, 1 to 1000 (default 100).
    limit: Option<u64>,
}

/// List the caller's campaigns, newest first.
#[utoipa::path(
    tag = "campaigns",
    params(ListQuery),
    responses(
        (status = 200, description = "One page of campaigns", body = Page<CampaignView>),
        (status = 400, description = "`invalid-cursor`, `validation-failed`, `invalid-query`"),
    )
)]
#[get("/campaigns")]
async fn list(
    state: web::Data<AppState>,
    caller: Caller,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = PageQuery {
        cursor: q.cursor.clone(),
        limit: q.limit,
    }
    .request()?;
    let rows = service::list(&state, &caller, q.status.as_deref(), &page).await?;
    Ok(HttpResponse::Ok().json(rows.map(view)))
}

/// One campaign, with counters fresh from its ledger.
#[utoipa::path(
    tag = "campaigns",
    params(CampaignId),
    responses(
        (status = 200, description = "The campaign", body = CampaignView),
        (status = 404, description = "`campaign-not-found`"),
    )
)]
#[get("/campaigns/{id}")]
async fn get(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<CampaignId>,
) -> Result<HttpResponse, ApiError> {
    let (c, counters) = service::get(&state, &caller, &id).await?;
    Ok(HttpResponse::Ok().json(view_with(c, counters)))
}

/// `?skip_missing=`.
#[derive(Deserialize, Default, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct StartQuery {
    /// Skip contacts lacking a variable instead of refusing the start.
    #[serde(default)]
    skip_missing: bool,
}

/// Start a draft (at `scheduled_at`, if set).
#[utoipa::path(
    tag = "campaigns",
    params(CampaignId, StartQuery),
    responses(
        (status = 200, description = "The started campaign", body = CampaignView),
        (status = 404, description = "`campaign-not-found`"),
        (status = 400, description = "`invalid-query`"),
        (status = 409, description = "`campaign-not-draft`: only a draft starts; `channel-deleted`"),
        (status = 422, description = "`missing-variables` (the list is in `contacts`), `invalid-template`, `invalid-provider-template`, `unsupported-channel-kind`"),
    )
)]
#[post("/campaigns/{id}/start")]
async fn start(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<CampaignId>,
    q: web::Query<StartQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.ensure_can_write()?;
    match service::start(&state, &caller, &id, q.skip_missing).await {
        Ok(c) => Ok(HttpResponse::Ok().json(view(c))),
        Err(e) => e.respond(),
    }
}

async fn apply(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<CampaignId>,
    change: Change,
) -> Result<HttpResponse, ApiError> {
    caller.ensure_can_write()?;
    let (c, counters) = service::change(&state, &caller, &id, change).await?;
    Ok(HttpResponse::Ok().json(view_with(c, counters)))
}

/// Pause a running campaign: nothing more is released until it resumes.
#[utoipa::path(
    tag = "campaigns",
    params(CampaignId),
    responses(
        (status = 200, description = "The campaign", body = CampaignView),
        (status = 404, description = "`campaign-not-found`"),
        (status = 409, description = "`invalid-campaign-state`: not allowed in the campaign's status"),
    )
)]
#[post("/campaigns/{id}/pause")]
async fn pause(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<CampaignId>,
) -> Result<HttpResponse, ApiError> {
    apply(state, caller, id, Change::Pause).await
}

/// Resume a paused campaign.
#[utoipa::path(
    tag = "campaigns",
    params(CampaignId),
    responses(
        (status = 200, description = "The campaign", body = CampaignView),
        (status = 404, description = "`campaign-not-found`"),
        (status = 409, description = "`invalid-campaign-state`: not allowed in the campaign's status"),
    )
)]
#[post("/campaigns/{id}/resume")]
async fn resume(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<CampaignId>,
) -> Result<HttpResponse, ApiError> {
    apply(state, caller, id, Change::Resume).await
}

/// Cancel a campaign: recipients not sent yet are skipped.
#[utoipa::path(
    tag = "campaigns",
    params(CampaignId),
    responses(
        (status = 200, description = "The campaign", body = CampaignView),
        (status = 404, description = "`campaign-not-found`"),
        (status = 409, description = "`invalid-campaign-state`: not allowed in the campaign's status"),
    )
)]
#[post("/campaigns/{id}/cancel")]
async fn cancel(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<CampaignId>,
) -> Result<HttpResponse, ApiError> {
    apply(state, caller, id, Change::Cancel).await
}

/// Queue the failed recipients of a finished or paused campaign again.
#[utoipa::path(
    tag = "campaigns",
    params(CampaignId),
    responses(
        (status = 200, description = "The campaign", body = CampaignView),
        (status = 404, description = "`campaign-not-found`"),
        (status = 409, description = "`invalid-campaign-state`: not allowed in the campaign's status"),
    )
)]
#[post("/campaigns/{id}/retry-failed")]
async fn retry_failed(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<CampaignId>,
) -> Result<HttpResponse, ApiError> {
    apply(state, caller, id, Change::RetryFailed).await
}

/// `?status=&cursor=&limit=`.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct RecipientsQuery {
    /// Only recipients in this status (`pending`, `queued`, `sending`, `sent`, `failed`,
    /// `skipped`).
    status: Option<String>,
    /// `next_cursor` of the page before.
    cursor: Option<String>,
    /// Rows per page, 1 to 1000 (default 100).
    limit: Option<u64>,
}

/// One recipient of a campaign: its message in the ledger.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = CampaignRecipient)]
struct RecipientView {
    message_id: MessageId,
    contact_id: Option<ContactId>,
    /// Phone number as sent.
    recipient: String,
    /// `pending`, `queued`, `sending`, `sent`, `failed` or `skipped`.
    status: String,
    attempts: i32,
    provider_message_id: Option<String>,
    /// Stable code of the last failure.
    error_code: Option<String>,
    /// The last failure, as the provider put it.
    error: Option<String>,
    sent_at: Option<DateTime<Utc>>,
    delivered_at: Option<DateTime<Utc>>,
    read_at: Option<DateTime<Utc>>,
}

/// The campaign's recipients with their delivery status, in ledger order.
#[utoipa::path(
    tag = "campaigns",
    params(CampaignId, RecipientsQuery),
    responses(
        (status = 200, description = "One page of recipients", body = Page<RecipientView>),
        (status = 400, description = "`invalid-cursor`, `validation-failed`, `invalid-query`"),
        (status = 404, description = "`campaign-not-found`"),
    )
)]
#[get("/campaigns/{id}/recipients")]
async fn recipients(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<CampaignId>,
    q: web::Query<RecipientsQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = PageQuery {
        cursor: q.cursor.clone(),
        limit: q.limit,
    }
    .request()?;
    let rows = service::recipients(&state, &caller, &id, q.status.as_deref(), &page).await?;
    let rows = rows.map(|m| RecipientView {
        message_id: m.id,
        contact_id: m.contact_id,
        recipient: m.recipient,
        status: m.status,
        attempts: m.attempts,
        provider_message_id: m.provider_message_id,
        error_code: m.last_error_code,
        error: m.last_error,
        sent_at: m.sent_at,
        delivered_at: m.delivered_at,
        read_at: m.read_at,
    });
    Ok(HttpResponse::Ok().json(rows))
}
