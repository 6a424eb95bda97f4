//! `/live`, `/ready` and `/health`.
use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::{channels::Snapshot, outbox::repo, state::AppState};

/// The process is up.
pub async fn live() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// Every backend answers: 200, or 503 naming what failed; 503 `draining` once shutdown began.
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    if state.draining.load(std::sync::atomic::Ordering::SeqCst) {
        return HttpResponse::ServiceUnavailable()
            .insert_header(("Connection", "close"))
            .json(json!({"status": "draining"}));
    }
    let database = state.db.ping().await.map_err(|e| e.to_string());
    let queue = state.queue.ping().await.map_err(|e| format!("{e:#}"));
    let ok = database.is_ok() && queue.is_ok();
    let show = |r: &Result<(), String>| match r {
        Ok(()) => "ok".to_owned(),
        Err(e) => e.clone(),
    };
    let body = json!({
        "status": if ok { "ready" } else { "not-ready" },
        "checks": {"database": show(&database), "queue": show(&queue)},
    });
    if ok {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// Version, uptime, queue depth, workers and channel accounts.
pub async fn health(state: web::Data<AppState>) -> HttpResponse {
    let depth = repo::backlog(&state.db).await.ok();
    let by_status: serde_json::Map<String, serde_json::Value> =
        crate::channels::repo::count_by_status(&state.db)
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|(status, n)| (status, json!(n)))
            .collect();
    let live = state.registry.send(Snapshot).await.unwrap_or_default();
    let frozen = live.iter().filter(|a| a.frozen_for_secs.is_some()).count();
    // Each account's paced rate: below its limit for a while after rate-limit answers (AIMD).
    let pacing: Vec<_> = live
        .iter()
        .filter_map(|a| {
            a.rate_per_sec.filter(|r| r.is_finite()).map(
                |r| json!({"id": a.id, "rate_per_sec": r, "frozen_for_secs": a.frozen_for_secs}),
            )
        })
        .collect();
    // Redis is optional and its absence degrades nothing but sharing: reported, not required.
    let redis = match &state.shared {
        None => serde_json::Value::Null,
        Some(shared) => match shared.ping().await {
            Ok(()) => json!("ok"),
            Err(e) => json!(format!("unavailable: {e:#}")),
        },
    };
    let status = if depth.is_some() { "ok" } else { "degraded" };
    HttpResponse::Ok().json(json!({
        "status": status,
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_secs": state.started_at.elapsed().as_secs(),
        "node": state.node_name,
        "database": if state.settings.is_postgres() { "postgres" } else { "sqlite" },
        "queue": {"depth": depth},
        "redis": redis,
        "workers": {
            "delivery": {
                "running": state.workers_enabled,
                "concurrency": state.settings.delivery.concurrency,
            }
        },
        "events": {
            "durability": state.events.durability(),
            "buffer": {
                "size": state.events.in_use(),
                "capacity": state.events.capacity(),
                "utilisation": f64::from(state.events.in_use()) / f64::from(state.events.capacity().max(1)),
            },
            "circuit": state.events.circuit().as_str(),
            "committed": state.events.committed(),
        },
        "channels": {
            "by_status": by_status,
            "running_actors": live.len(),
            "frozen": frozen,
            "pacing": pacing,
        },
        // The trading-alerts microservice's fields, for its monitors.
        "queue_length": depth,
        "active_workers": state.in_flight.count(),
        "uptime": state.started_at.elapsed().as_secs(),
    }))
}
