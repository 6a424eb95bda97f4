//! Dashboard data, read from the rollups (`daily_stats`, `monthly_stats`, `contact_stats`) so
//! it stays fast however large the ledger grows: `/api/v1/dashboard/*` (and the WhatsApp
//! sender's `/dashboard/*`, mounted by `compat::wa_sender`).
use actix_web::{HttpResponse, get, web};
use chrono::{Datelike, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::{auth::Caller, domain::ContactId, error::ApiError, state::AppState};

mod repo;

/// Mounts `/api/v1/dashboard/*` (inside the authenticated API scope).
pub fn configure(cfg: &mut crate::mount::Routes) {
    cfg.service(view);
}

/// Query of a dashboard view.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
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

/// A dashboard view: one of the four shapes below, by the view's name.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum DashboardView {
    /// `current-month`.
    CurrentMonth(MonthSummary),
    /// `timeline`.
    Timeline(Timeline),
    /// `by-group`.
    ByGroup(ByGroup),
    /// `by-contact`.
    ByContact(ByContact),
}

/// `current-month`: the month's totals.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = DashboardMonth)]
pub struct MonthSummary {
    /// `YYYY-MM`.
    month: String,
    sent: i64,
    errors: i64,
    /// `sent + errors`.
    total: i64,
    /// Percentage of `total` sent, 0–100, one decimal.
    success_rate: f64,
    /// Sent per day so far this month (per 30 days for a past month), one decimal.
    daily_average: f64,
}

/// `timeline`: one entry per day, oldest first.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = DashboardTimeline)]
pub struct Timeline {
    days: Vec<TimelineDay>,
}

/// One day of the timeline.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = DashboardDay)]
pub struct TimelineDay {
    /// `YYYY-MM-DD`.
    date: String,
    sent: i64,
    errors: i64,
}

/// `by-group`: the month's sends by contact group.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = DashboardByGroup)]
pub struct ByGroup {
    /// `YYYY-MM`.
    month: String,
    groups: Vec<GroupCounts>,
}

/// One group's sends in the month.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = DashboardGroup)]
pub struct GroupCounts {
    /// The group's name; null for contacts in none.
    group: Option<String>,
    sent: i64,
    errors: i64,
}

/// `by-contact`: the month's top contacts.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = DashboardByContact)]
pub struct ByContact {
    /// `YYYY-MM`.
    month: String,
    contacts: Vec<ContactCounts>,
}

/// One contact's sends in the month.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = DashboardContact)]
pub struct ContactCounts {
    contact_id: ContactId,
    phone: Option<String>,
    name: Option<String>,
    /// The contact's group.
    group: Option<String>,
    sent: i64,
    errors: i64,
}

/// A dashboard view, read from the rollups: `current-month`, `timeline`, `by-group` or
/// `by-contact`.
///
/// `current-month` answers `{month, sent, errors, total, success_rate, daily_average}`;
/// `timeline` (`?days=`) `{days: [{date, sent, errors}]}`; `by-group` `{month, groups}`;
/// `by-contact` (`?limit=`) `{month, contacts}`. `?month=YYYY-MM` picks the month.
#[utoipa::path(
    tag = "dashboard",
    params(
        ("view" = String, Path, description = "`current-month`, `timeline`, `by-group` or `by-contact`"),
        ViewQuery,
    ),
    responses(
        (status = 200, description = "The view", body = DashboardView),
        (status = 400, description = "`invalid-month`, `invalid-query`"),
        (status = 404, description = "`route-not-found`: no such view"),
    )
)]
#[get("/dashboard/{view}")]
async fn view(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    q: web::Query<ViewQuery>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(render(&state, &caller, &path, &q).await?))
}

/// The dashboard view `name` for `caller` (also the WhatsApp sender's `/dashboard/{view}`).
pub async fn render(
    state: &AppState,
    caller: &Caller,
    name: &str,
    q: &ViewQuery,
) -> Result<DashboardView, ApiError> {
    let db = &state.db;
    // Outcomes recorded since the last fold count too.
    crate::outbox::stats::fold(db).await?;
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
    match name {
        "current-month" => {
            let (sent, errors) = repo::month(db, &owner, &month).await?;
            let days = if month == today.format("%Y-%m").to_string() {
                i64::from(today.day())
            } else {
                30
            };
            Ok(DashboardView::CurrentMonth(MonthSummary {
                month,
                sent,
                errors,
                total: sent + errors,
                success_rate: rate(sent, errors),
                daily_average: (sent as f64 * 10.0 / days as f64).round() / 10.0,
            }))
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
                    let date = (from + Duration::days(i)).format("%Y-%m-%d").to_string();
                    let (sent, errors) = by_day.remove(&date).unwrap_or((0, 0));
                    TimelineDay { date, sent, errors }
                })
                .collect();
            Ok(DashboardView::Timeline(Timeline { days: timeline }))
        }
        "by-group" => {
            let rows = repo::by_group(db, &owner, &month).await?;
            let groups: Vec<_> = rows
                .into_iter()
                .map(|g| GroupCounts {
                    group: g.group_name,
                    sent: g.sent.unwrap_or(0),
                    errors: g.errors.unwrap_or(0),
                })
                .collect();
            Ok(DashboardView::ByGroup(ByGroup { month, groups }))
        }
        "by-contact" => {
            let limit = q.limit.unwrap_or(10).clamp(1, 100);
            let rows = repo::top_contacts(db, &owner, &month, limit).await?;
            let contacts: Vec<_> = rows
                .into_iter()
                .map(|c| ContactCounts {
                    contact_id: c.contact_id,
                    phone: c.phone,
                    name: c.name,
                    group: c.group_name,
                    sent: c.sent,
                    errors: c.errors,
                })
                .collect();
            Ok(DashboardView::ByContact(ByContact { month, contacts }))
        }
        other => Err(ApiError::NotFound(
            "route-not-found",
            format!(
                "no dashboard view `{other}`; use current-month, timeline, by-group or by-contact"
            ),
        )),
    }
}
