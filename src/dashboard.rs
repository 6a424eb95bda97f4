//! Dashboard data, read from the rollups (`daily_stats`, `monthly_stats`, `contact_stats`) so
//! it stays fast however large the ledger grows: `/api/v1/dashboard/*`, and the WhatsApp
//! sender's own paths (`/dashboard/*`, `/send-messages`, `/connection-status`,
//! `DELETE /cache/user`).
use std::io::Read;

use actix_web::{HttpResponse, web};
use chrono::{Datelike, Duration, NaiveDate, Utc};
use futures::StreamExt;
use sea_orm::FromQueryResult;
use serde::Deserialize;
use serde_json::json;

use crate::{
    auth::{Caller, authenticate},
    campaigns::{self, Audience, NewCampaign},
    channels,
    contacts::csv_reader,
    error::ApiError,
    messages::stats,
    state::AppState,
};

/// Rows `/send-messages` takes in one CSV; bigger lists go through contact imports and campaigns.
const SEND_MESSAGES_MAX_ROWS: usize = 10_000;

/// Mounts `/api/v1/dashboard/*` (inside the authenticated API scope).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/dashboard/{view}", web::get().to(view));
}

/// Mounts the WhatsApp sender's paths at the root, authenticated like the API.
pub fn configure_seed(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/dashboard/{view}")
            .wrap(actix_web::middleware::from_fn(authenticate))
            .route(web::get().to(view)),
    )
    .service(
        web::resource("/send-messages")
            .wrap(actix_web::middleware::from_fn(
                crate::auth::audit::middleware,
            ))
            .wrap(actix_web::middleware::from_fn(authenticate))
            .route(web::post().to(send_messages)),
    )
    .service(
        web::resource("/connection-status")
            .wrap(actix_web::middleware::from_fn(authenticate))
            .route(web::get().to(connection_status)),
    )
    .service(
        web::resource("/cache/user")
            .wrap(actix_web::middleware::from_fn(authenticate))
            .route(web::delete().to(clear_cache)),
    );
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ViewQuery {
    /// `YYYY-MM` (default: this month).
    month: Option<String>,
    /// Timeline length in days (default 30, at most 366).
    days: Option<i64>,
    /// Top contacts listed (default 10, at most 100).
    limit: Option<u64>,
}

#[derive(Debug, FromQueryResult)]
struct Counts {
    sent: Option<i64>,
    errors: Option<i64>,
}

#[derive(Debug, FromQueryResult)]
struct Day {
    day: String,
    sent: i64,
    errors: i64,
}

#[derive(Debug, FromQueryResult)]
struct Group {
    group_name: Option<String>,
    sent: Option<i64>,
    errors: Option<i64>,
}

#[derive(Debug, FromQueryResult)]
struct TopContact {
    contact_id: String,
    phone: Option<String>,
    name: Option<String>,
    group_name: Option<String>,
    sent: i64,
    errors: i64,
}

fn rate(sent: i64, errors: i64) -> f64 {
    if sent + errors == 0 {
        0.0
    } else {
        (sent as f64 * 1000.0 / (sent + errors) as f64).round() / 10.0
    }
}

async fn view(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    q: web::Query<ViewQuery>,
) -> Result<HttpResponse, ApiError> {
    let db = &state.db;
    let backend = db.get_database_backend();
    let owner = caller.user_id.clone();
    let today = Utc::now().date_naive();
    let month = match &q.month {
        Some(m) => {
            NaiveDate::parse_from_str(&format!("{m}-01"), "%Y-%m-%d").map_err(|_| {
                ApiError::BadRequest("invalid-month", format!("month `{m}` is not YYYY-MM"))
            })?;
            m.clone()
        }
        None => today.format("%Y-%m").to_string(),
    };
    match path.as_str() {
        "current-month" => {
            let c = Counts::find_by_statement(crate::db::statement(
                backend,
                "SELECT sent, errors FROM monthly_stats WHERE owner_id = ? AND month = ?",
                vec![owner.into(), month.clone().into()],
            ))
            .one(db)
            .await?;
            let (sent, errors) = c.map_or((0, 0), |c| (c.sent.unwrap_or(0), c.errors.unwrap_or(0)));
            let days = if month == today.format("%Y-%m").to_string() {
                i64::from(today.day())
            } else {
                30
            };
            Ok(HttpResponse::Ok().json(json!({
                "month": month, "sent": sent, "errors": errors, "total": sent + errors,
                "success_rate": rate(sent, errors),
                "daily_average": (sent as f64 * 10.0 / days as f64).round() / 10.0,
            })))
        }
        "timeline" => {
            let days = q.days.unwrap_or(30).clamp(1, 366);
            let from = today - Duration::days(days - 1);
            let rows = Day::find_by_statement(crate::db::statement(
                backend,
                "SELECT day, sent, errors FROM daily_stats WHERE owner_id = ? AND day >= ? ORDER BY day",
                vec![owner.into(), from.format("%Y-%m-%d").to_string().into()],
            ))
            .all(db)
            .await?;
            let mut by_day: std::collections::HashMap<String, (i64, i64)> = rows
                .into_iter()
                .map(|d| (d.day, (d.sent, d.errors)))
                .collect();
            let timeline: Vec<_> = (0..days)
                .map(|i| {
                    let d = (from + Duration::days(i)).format("%Y-%m-%d").to_string();
                    let (sent, errors) = by_day.remove(&d).unwrap_or((0, 0));
                    json!({"date": d, "sent": sent, "errors": errors})
                })
                .collect();
            Ok(HttpResponse::Ok().json(json!({ "days": timeline })))
        }
        "by-group" => {
            let rows = Group::find_by_statement(crate::db::statement(
                backend,
                "SELECT c.group_name AS group_name, CAST(SUM(s.sent) AS BIGINT) AS sent, \
                 CAST(SUM(s.errors) AS BIGINT) AS errors \
                 FROM contact_stats s JOIN contacts c ON c.id = s.contact_id \
                 WHERE s.owner_id = ? AND s.month = ? GROUP BY c.group_name ORDER BY SUM(s.sent) DESC",
                vec![owner.into(), month.clone().into()],
            ))
            .all(db)
            .await?;
            let groups: Vec<_> = rows
                .into_iter()
                .map(|g| json!({"group": g.group_name, "sent": g.sent.unwrap_or(0), "errors": g.errors.unwrap_or(0)}))
                .collect();
            Ok(HttpResponse::Ok().json(json!({ "month": month, "groups": groups })))
        }
        "by-contact" => {
            let limit = q.limit.unwrap_or(10).clamp(1, 100);
            let rows = TopContact::find_by_statement(crate::db::statement(
                backend,
                &format!(
                    "SELECT s.contact_id AS contact_id, c.phone AS phone, c.name AS name, \
                     c.group_name AS group_name, s.sent AS sent, s.errors AS errors \
                     FROM contact_stats s LEFT JOIN contacts c ON c.id = s.contact_id \
                     WHERE s.owner_id = ? AND s.month = ? ORDER BY s.sent DESC, s.contact_id LIMIT {limit}"
                ),
                vec![owner.into(), month.clone().into()],
            ))
            .all(db)
            .await?;
            let contacts: Vec<_> = rows
                .into_iter()
                .map(|c| json!({"contact_id": c.contact_id, "phone": c.phone, "name": c.name, "group": c.group_name, "sent": c.sent, "errors": c.errors}))
                .collect();
            Ok(HttpResponse::Ok().json(json!({ "month": month, "contacts": contacts })))
        }
        other => Err(ApiError::NotFound(
            "route-not-found",
            format!(
                "no dashboard view `{other}`; use current-month, timeline, by-group or by-contact"
            ),
        )),
    }
}

/// `GET /connection-status`: the caller's WhatsApp number, if one is connected.
async fn connection_status(
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let rows = channels::repo::list_for(&state.db, &caller.user_id).await?;
    let number = rows.into_iter().find(|r| is_phone_channel(&state, &r.kind));
    Ok(HttpResponse::Ok().json(match number {
        Some(n) => json!({
            "connected": n.status == "active", "state": n.status, "detail": n.status_detail,
            "channel_id": n.id, "phone_number_id": n.external_id, "qrUrl": null,
        }),
        None => json!({
            "connected": false, "state": "not-configured", "qrUrl": null,
            "detail": "register a WhatsApp Cloud API number with POST /api/v1/channels",
        }),
    }))
}

/// `DELETE /cache/user`: rebuilds the caller's dashboard rollups from the ledger.
async fn clear_cache(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    caller.ensure_can_write()?;
    let replaced = stats::rebuild(&state.db, &caller.user_id).await?;
    Ok(HttpResponse::Ok().json(json!({ "success": true, "deletedKeys": replaced })))
}

/// `POST /send-messages` (multipart: `file` = contacts CSV, `message` = text with variables,
/// optional `channel_id` and `name`): upserts the contacts and starts a campaign to them.
async fn send_messages(
    state: web::Data<AppState>,
    caller: Caller,
    mut payload: actix_multipart::Multipart,
) -> Result<HttpResponse, ApiError> {
    caller.ensure_can_write()?;
    let max = state.settings.media.max_upload_bytes;
    let (mut csv, mut message, mut channel_id, mut name) = (None, None, None, None);
    while let Some(field) = payload.next().await {
        let mut field =
            field.map_err(|e| ApiError::BadRequest("invalid-multipart", e.to_string()))?;
        let field_name = field.name().unwrap_or_default().to_owned();
        let mut bytes = Vec::new();
        while let Some(chunk) = field.next().await {
            let chunk =
                chunk.map_err(|e| ApiError::BadRequest("invalid-multipart", e.to_string()))?;
            if bytes.len() + chunk.len() > max {
                return Err(ApiError::PayloadTooLarge(format!(
                    "a field may have at most {max} bytes"
                )));
            }
            bytes.extend_from_slice(&chunk);
        }
        let text = || String::from_utf8_lossy(&bytes).trim().to_owned();
        match field_name.as_str() {
            "file" | "csv" => csv = Some(bytes),
            "message" => message = Some(text()),
            "channel_id" => channel_id = Some(text()),
            "name" => name = Some(text()),
            _ => {}
        }
    }
    let csv = csv.ok_or_else(|| {
        ApiError::BadRequest("file-required", "send the contacts CSV as `file`".into())
    })?;
    let message = message.filter(|m| !m.is_empty()).ok_or_else(|| {
        ApiError::BadRequest("message-required", "send the text as `message`".into())
    })?;
    let channel_id = match channel_id {
        Some(id) => id,
        None => channels::repo::list_for(&state.db, &caller.user_id)
            .await?
            .into_iter()
            .find(|r| is_phone_channel(&state, &r.kind))
            .map(|r| r.id)
            .ok_or_else(|| {
                ApiError::Unprocessable(
                    "channel-not-found",
                    "connect a WhatsApp number first (POST /api/v1/channels)".into(),
                )
            })?,
    };
    let region = csv_reader::region(&state.settings.contacts.default_region).ok_or_else(|| {
        ApiError::Unexpected(anyhow::anyhow!("contacts.default_region is invalid"))
    })?;
    let (rows, refused) = read_csv(&csv, region)?;
    if rows.is_empty() {
        return Err(ApiError::Unprocessable(
            "no-valid-rows",
            format!("no row of the CSV has a valid phone ({refused} refused)"),
        ));
    }
    let now = state.clock.now();
    let source = "send-messages";
    for chunk in rows.chunks(crate::contacts::repo::BATCH_ROWS) {
        crate::contacts::repo::upsert(&state.db, &caller.user_id, chunk, source, now).await?;
    }
    let phones: Vec<String> = rows.iter().map(|r| r.phone.clone()).collect();
    let mut ids = Vec::with_capacity(phones.len());
    for chunk in phones.chunks(crate::contacts::repo::BATCH_ROWS) {
        use crate::entities::contacts;
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect};
        let found: Vec<String> = contacts::Entity::find()
            .select_only()
            .column(contacts::Column::Id)
            .filter(contacts::Column::OwnerId.eq(caller.user_id.clone()))
            .filter(contacts::Column::Phone.is_in(chunk.iter().cloned()))
            .into_tuple()
            .all(&state.db)
            .await?;
        ids.extend(found);
    }
    let campaign = NewCampaign {
        name: name.unwrap_or_else(|| format!("Envío {}", now.format("%Y-%m-%d %H:%M"))),
        channel_id,
        template_id: None,
        body: Some(message),
        media_id: None,
        provider_template: None,
        audience: Audience {
            groups: Vec::new(),
            contact_ids: ids,
        },
        scheduled_at: None,
        send_window: None,
        start: true,
        skip_missing: true,
    };
    match campaigns::create_and_start(&state, &caller, campaign).await? {
        Ok(row) => Ok(HttpResponse::Ok().json(json!({
            "success": true, "campaignId": row.id, "queued": row.pending + row.queued,
            "skipped": row.skipped, "invalidRows": refused,
        }))),
        Err(refusal) => Ok(refusal),
    }
}

fn read_csv(
    mut bytes: &[u8],
    region: phonenumber::country::Id,
) -> Result<(Vec<csv_reader::ContactRow>, usize), ApiError> {
    let reader = csv_reader::ContactsCsv::new(bytes.by_ref(), region)
        .map_err(|e| ApiError::Unprocessable("invalid-csv", e.to_string()))?;
    let (mut rows, mut refused) = (Vec::new(), 0);
    for (_, row) in reader {
        match row {
            Ok(r) => rows.push(r),
            Err(_) => refused += 1,
        }
        if rows.len() + refused > SEND_MESSAGES_MAX_ROWS {
            return Err(ApiError::PayloadTooLarge(format!(
                "/send-messages takes at most {SEND_MESSAGES_MAX_ROWS} rows; import bigger lists with \
                 POST /api/v1/contacts/imports and send a campaign to their group"
            )));
        }
    }
    Ok((rows, refused))
}

/// Whether accounts of `kind` send to phone numbers (the seed sender's "WhatsApp number").
fn is_phone_channel(state: &AppState, kind: &str) -> bool {
    state
        .adapters
        .get(kind)
        .is_some_and(|a| a.address() == crate::channels::Address::Phone)
}
