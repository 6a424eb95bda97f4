//! Dashboard data, read from the rollups (`daily_stats`, `monthly_stats`, `contact_stats`) so
//! it stays fast however large the ledger grows: `/api/v1/dashboard/*` (and the WhatsApp
//! sender's `/dashboard/*`, mounted by `compat::wa_sender`).
use actix_web::{HttpResponse, web};
use chrono::{Datelike, Duration, NaiveDate, Utc};
use sea_orm::FromQueryResult;
use serde::Deserialize;
use serde_json::json;

use crate::{auth::Caller, error::ApiError, state::AppState};

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

pub async fn view(
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
