//! `/api/v1/campaigns`: parse, authorise, call the service, map its error.
use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{
    repo::{CampaignRow, Counters},
    service::{self, Change, NewCampaign},
};
use crate::page::PageQuery;
use crate::{
    auth::Caller,
    domain::{CampaignId, ChannelId, MediaId},
    error::ApiError,
    state::AppState,
};

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

#[derive(Serialize)]
struct CampaignView {
    id: CampaignId,
    name: String,
    channel_id: ChannelId,
    template_id: Option<String>,
    body: String,
    provider_template: Option<serde_json::Value>,
    media_id: Option<MediaId>,
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    status: Option<String>,
    cursor: Option<String>,
    limit: Option<u64>,
}

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

async fn get(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<CampaignId>,
) -> Result<HttpResponse, ApiError> {
    let (c, counters) = service::get(&state, &caller, &id).await?;
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

async fn pause(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<CampaignId>,
) -> Result<HttpResponse, ApiError> {
    apply(state, caller, id, Change::Pause).await
}

async fn resume(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<CampaignId>,
) -> Result<HttpResponse, ApiError> {
    apply(state, caller, id, Change::Resume).await
}

async fn cancel(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<CampaignId>,
) -> Result<HttpResponse, ApiError> {
    apply(state, caller, id, Change::Cancel).await
}

async fn retry_failed(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<CampaignId>,
) -> Result<HttpResponse, ApiError> {
    apply(state, caller, id, Change::RetryFailed).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecipientsQuery {
    status: Option<String>,
    cursor: Option<String>,
    limit: Option<u64>,
}

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
    let rows = rows.map(|m| {
        json!({
            "message_id": m.id, "contact_id": m.contact_id, "recipient": m.recipient,
            "status": m.status, "attempts": m.attempts,
            "provider_message_id": m.provider_message_id,
            "error_code": m.last_error_code, "error": m.last_error,
            "sent_at": m.sent_at, "delivered_at": m.delivered_at, "read_at": m.read_at,
        })
    });
    Ok(HttpResponse::Ok().json(rows))
}
