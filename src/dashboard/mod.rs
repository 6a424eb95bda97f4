//! Dashboard data, read from the rollups (`daily_stats`, `monthly_stats`, `contact_stats`) so
//! it stays fast however large the ledger grows: `/api/v1/dashboard/*` (and the WhatsApp
//! sender's `/dashboard/*`, mounted by `compat::wa_sender`).
use actix_web::{HttpResponse, web};
use chrono::{Datelike, Duration, NaiveDate, Utc};
use serde::Deserialize;
use serde_json::json;

use crate::{auth::Caller, error::ApiError, state::AppState};

mod repo;

/// Mounts `/api/v1/dashboard/*` (inside the authenticated API scope).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/dashboard/{view}", web::get().to(view));
}

/// Query of a dashboard view.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ViewQuery {
    /// `YYYY-MM` (default: this month).
    month: Option<String>,
    /// Timeline length in days (default 30, at most 366).
    days: Option<i64>,
    /// Top contacts listed (default 10, at most 100).
    limit: Option<u64>,
}

fn rate(sent: i64, errors: i64) -> f64 {
    if sent + errors == 0 {
        0.0
    } else {
        (sent as f64 * 1000.0 / (sent + errors) as f64).round() / 10.0
    }
}

pub async fn view(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    q: web::Query<ViewQuery>,
) -> Result<HttpResponse, ApiError> {
    let db = &state.db;
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
            let (sent, errors) = repo::month(db, &owner, &month).await?;
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
            let rows = repo::days_since(db, &owner, from).await?;
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
            let rows = repo::by_group(db, &owner, &month).await?;
            let groups: Vec<_> = rows
                .into_iter()
                .map(|g| json!({"group": g.group_name, "sent": g.sent.unwrap_or(0), "errors": g.errors.unwrap_or(0)}))
                .collect();
            Ok(HttpResponse::Ok().json(json!({ "month": month, "groups": groups })))
        }
        "by-contact" => {
            let limit = q.limit.unwrap_or(10).clamp(1, 100);
            let rows = repo::top_contacts(db, &owner, &month, limit).await?;
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
