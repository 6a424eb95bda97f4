//! The trading-alerts microservice's routes, unchanged for TradingView and for the platform
//! that reads them: `POST /webhook/u/{token}?chart=ID`, `GET /api/users/{id}/stats` and
//! `GET /api/users/{id}/signals`. `/health` carries the seed's fields too (`web::health`).
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use crate::{
    auth::{self, Caller},
    client_ip,
    domain::UserId,
    error::ApiError,
    signals::{
        repo::Filter,
        routes::list_for,
        service::{self, Incoming},
    },
    state::AppState,
};

/// Mounts the seed's routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/webhook/u/{token}", web::post().to(webhook))
        .service(
            web::scope("/api/users")
                .wrap(actix_web::middleware::from_fn(auth::authenticate))
                .route("/{id}/stats", web::get().to(stats))
                .route("/{id}/signals", web::get().to(signals)),
        );
}

#[derive(Deserialize)]
struct Chart {
    chart: Option<String>,
}

/// TradingView's alert: JSON when the alert's message is valid JSON, plain text otherwise; the
/// answer comes before any chart is captured or message sent.
async fn webhook(
    req: HttpRequest,
    path: web::Path<String>,
    query: web::Query<Chart>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let started = std::time::Instant::now();
    let body = super::read_capped(payload, state.settings.signals.max_body_bytes).await?;
    let hook = Incoming {
        token: &path,
        chart: query.into_inner().chart,
        body: String::from_utf8_lossy(&body).into_owned(),
        client_ip: client_ip::client_ip(&req, &state.trusted_proxies),
    };
    let result = service::receive(&state, hook).await;
    metrics::histogram!("pregonero_signal_webhook_seconds").record(started.elapsed().as_secs_f64());
    let received = result?;
    let s = received.signal;
    let wait = if s.screenshot_status == crate::signals::queue::PENDING {
        state
            .snapshots
            .estimated_wait(state.snapshots.active() as u64)
    } else {
        0
    };
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "success": true,
        "signal_id": s.id,
        "screenshot_status": s.screenshot_status,
        "estimated_wait": wait,
        "duplicate": received.duplicate,
        "parse_error": s.parse_error,
    })))
}

async fn stats(
    caller: Caller,
    path: web::Path<UserId>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let s = service::stats(&state, &caller, &path).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "total_signals": s.total,
        "this_month": s.since,
        "screenshots_pending": s.screenshots_pending,
        "win_rate": service::win_rate(&s),
    })))
}

#[derive(Deserialize)]
struct Page {
    before: Option<String>,
    limit: Option<u64>,
}

async fn signals(
    req: HttpRequest,
    caller: Caller,
    path: web::Path<UserId>,
    query: web::Query<Page>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let filter = Filter {
        before: q.before,
        ..Default::default()
    };
    let base = crate::client_ip::request_base(
        &req,
        state.settings.auth.public_url.as_deref(),
        &state.trusted_proxies,
    );
    let (items, next_before) = list_for(&state, &base, &caller, &path, filter, q.limit).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "items": items,
        "next_before": next_before,
    })))
}
