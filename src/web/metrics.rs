//! Prometheus metrics (`pregonero_*`): one process-wide recorder, HTTP middleware, `/metrics`.
use std::{sync::OnceLock, time::Instant};

use actix_web::{
    HttpResponse,
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
    get,
    middleware::Next,
    web,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::state::AppState;

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// How often recorded histogram samples are folded into their buckets.
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Installs the global recorder once per process (later calls reuse it), and a thread that
/// runs its upkeep.
///
/// `install_recorder` leaves upkeep to the caller: without it every histogram sample (one per
/// HTTP request, per send, per batch) stayed in memory until the next scrape of `/metrics`, so
/// a server nobody scraped grew by about 8 bytes a request for ever (1.4 MB after a
/// 100,000-recipient campaign's 176,000 status callbacks).
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Suffix("_seconds".into()),
                    &[
                        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                        10.0,
                    ],
                )
                .ok()?
                .install_recorder()
                .ok()?;
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(UPKEEP_EVERY);
                        upkeep.run_upkeep();
                    }
                })
                .ok()?;
            Some(handle)
        })
        .as_ref()
}

/// Counts requests and their latency by method, route pattern and status.
pub async fn track(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let start = Instant::now();
    let method = req.method().to_string();
    let route = req.match_pattern().unwrap_or_else(|| "unmatched".into());
    let res = next.call(req).await?;
    let status = res.status().as_u16().to_string();
    metrics::counter!("pregonero_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("pregonero_http_request_duration_seconds", "method" => method, "route" => route)
        .record(start.elapsed().as_secs_f64());
    Ok(res)
}

/// Prometheus metrics (`pregonero_*`) in the text exposition format.
///
/// Refreshes the queue gauges first. The metrics are listed in docs/api.md (Operations).
#[utoipa::path(
    tag = "operations",
    operation_id = "metrics",
    responses(
        (status = 200, description = "The metrics (`text/plain; version=0.0.4`)", content_type = "text/plain", body = String),
        (status = 503, description = "The metrics recorder could not be installed (a plain-text answer, `metrics recorder unavailable`)"),
    )
)]
#[get("/metrics")]
pub async fn render(state: web::Data<AppState>) -> HttpResponse {
    state.events.publish_gauges();
    if let Ok(depth) = crate::outbox::repo::backlog(&state.db).await {
        metrics::gauge!("pregonero_queue_depth").set(depth as f64);
    }
    if let Ok(backlog) = crate::signals::repo::snapshot_backlog(&state.db).await {
        // Every plan's gauge, so one that drained reads 0 rather than its last value.
        for (name, plan) in &state.settings.signals.plans {
            let n = backlog
                .iter()
                .find(|(p, _)| *p == i16::from(plan.priority))
                .map_or(0, |(_, n)| *n);
            metrics::gauge!("pregonero_snapshot_queue", "plan" => name.clone()).set(n as f64);
        }
    }
    if state.db.get_database_backend() == sea_orm::DatabaseBackend::Sqlite {
        metrics::counter!("pregonero_sqlite_busy_waits_total")
            .absolute(crate::db::sqlite_busy_waits());
    }
    match install() {
        Some(handle) => HttpResponse::Ok()
            .content_type("text/plain; version=0.0.4")
            .body(handle.render()),
        None => HttpResponse::ServiceUnavailable().body("metrics recorder unavailable"),
    }
}
