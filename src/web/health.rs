//! `/live`, `/ready` and `/health`.
use std::collections::BTreeMap;

use actix_web::{HttpResponse, get, web};
use serde::Serialize;

use crate::{
    channels::Snapshot, config::Durability, domain::ChannelId, outbox::repo, state::AppState,
};

/// `/live`'s answer.
#[derive(Serialize, utoipa::ToSchema)]
struct Liveness {
    /// Always `ok`.
    status: &'static str,
}

/// The process is up.
#[utoipa::path(
    tag = "operations",
    responses(
        (status = 200, description = "The process runs", body = Liveness),
    )
)]
#[get("/live")]
pub async fn live() -> HttpResponse {
    HttpResponse::Ok().json(Liveness { status: "ok" })
}

/// `/ready`'s answer.
#[derive(Serialize, utoipa::ToSchema)]
struct Readiness {
    /// `ready`, `not-ready` or `draining`.
    status: &'static str,
    /// Each backend's check (absent while draining).
    #[serde(skip_serializing_if = "Option::is_none")]
    checks: Option<ReadinessChecks>,
}

/// `ok`, or what failed.
#[derive(Serialize, utoipa::ToSchema)]
struct ReadinessChecks {
    database: String,
    queue: String,
}

/// Every backend answers: 200, or 503 naming what failed; 503 `draining` once shutdown began.
#[utoipa::path(
    tag = "operations",
    responses(
        (status = 200, description = "The database and the queue answer", body = Readiness),
        (status = 503, description = "`not-ready` (the checks name what failed) or `draining` (shutdown began; `Connection: close`)", content(
            (Readiness = "application/json"),
            (crate::error::ErrorBody = "application/problem+json"),
        )),
    )
)]
#[get("/ready")]
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    if state.draining.load(std::sync::atomic::Ordering::SeqCst) {
        return HttpResponse::ServiceUnavailable()
            .insert_header(("Connection", "close"))
            .json(Readiness {
                status: "draining",
                checks: None,
            });
    }
    let database = state.db.ping().await.map_err(|e| e.to_string());
    let queue = state.queue.ping().await.map_err(|e| format!("{e:#}"));
    let ok = database.is_ok() && queue.is_ok();
    let show = |r: &Result<(), String>| match r {
        Ok(()) => "ok".to_owned(),
        Err(e) => e.clone(),
    };
    let body = Readiness {
        status: if ok { "ready" } else { "not-ready" },
        checks: Some(ReadinessChecks {
            database: show(&database),
            queue: show(&queue),
        }),
    };
    if ok {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// `/health`'s answer.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Health)]
struct HealthView {
    /// `ok`, or `degraded` when the queue's depth cannot be read.
    status: &'static str,
    version: &'static str,
    uptime_secs: u64,
    /// This replica's name.
    node: String,
    /// `postgres` or `sqlite`.
    database: &'static str,
    queue: HealthQueue,
    /// `null` without `redis_url`, `ok`, or `unavailable: …` (limits are then per process).
    redis: Option<String>,
    workers: HealthWorkers,
    events: HealthEvents,
    channels: HealthChannels,
    /// The queue's depth (the trading-alerts microservice's field).
    queue_length: Option<u64>,
    /// Messages being sent now (the trading-alerts microservice's field).
    active_workers: usize,
    /// Seconds since start (the trading-alerts microservice's field).
    uptime: u64,
}

/// The outbox queue.
#[derive(Serialize, utoipa::ToSchema)]
struct HealthQueue {
    /// Messages queued or sending; null when it cannot be read.
    depth: Option<u64>,
}

/// The workers of this replica.
#[derive(Serialize, utoipa::ToSchema)]
struct HealthWorkers {
    delivery: HealthDeliveryWorkers,
}

/// The delivery workers.
#[derive(Serialize, utoipa::ToSchema)]
struct HealthDeliveryWorkers {
    running: bool,
    concurrency: usize,
}

/// The event ingestion's writer.
#[derive(Serialize, utoipa::ToSchema)]
struct HealthEvents {
    /// `durable` or `buffered`.
    #[schema(value_type = String)]
    durability: Durability,
    buffer: HealthEventBuffer,
    /// `closed`, `open` or `half-open`.
    circuit: &'static str,
    /// Events committed since start.
    committed: u64,
}

/// The event writer's buffer.
#[derive(Serialize, utoipa::ToSchema)]
struct HealthEventBuffer {
    size: u32,
    capacity: u32,
    /// `size / capacity`, 0 to 1.
    utilisation: f64,
}

/// The channel accounts.
#[derive(Serialize, utoipa::ToSchema)]
struct HealthChannels {
    /// Accounts by status (`active`, `unauthorized`, `error`).
    by_status: BTreeMap<String, i64>,
    /// Account actors running on this replica.
    running_actors: usize,
    /// Accounts frozen after a rate-limit answer.
    frozen: usize,
    /// Each running account's paced rate.
    pacing: Vec<HealthPacing>,
}

/// One running account's pacing: below its limit for a while after rate-limit answers (AIMD).
#[derive(Serialize, utoipa::ToSchema)]
struct HealthPacing {
    id: ChannelId,
    /// Sends per second the account is paced at now.
    rate_per_sec: f64,
    /// Seconds left of a freeze, if any.
    frozen_for_secs: Option<f64>,
}

/// Version, uptime, queue depth, workers and channel accounts.
#[utoipa::path(
    tag = "operations",
    responses(
        (status = 200, description = "The server's state", body = HealthView),
    )
)]
#[get("/health")]
pub async fn health(state: web::Data<AppState>) -> HttpResponse {
    let depth = repo::backlog(&state.db).await.ok();
    let by_status: BTreeMap<String, i64> = crate::channels::repo::count_by_status(&state.db)
        .await
        .unwrap_or_default()
        .into_iter()
        .collect();
    let accounts = state.registry.send(Snapshot).await.unwrap_or_default();
    let frozen = accounts
        .iter()
        .filter(|a| a.frozen_for_secs.is_some())
        .count();
    // Each account's paced rate: below its limit for a while after rate-limit answers (AIMD).
    let pacing: Vec<_> = accounts
        .iter()
        .filter_map(|a| {
            a.rate_per_sec
                .filter(|r| r.is_finite())
                .map(|r| HealthPacing {
                    id: a.id.clone(),
                    rate_per_sec: r,
                    frozen_for_secs: a.frozen_for_secs,
                })
        })
        .collect();
    // Redis is optional and its absence degrades nothing but sharing: reported, not required.
    let redis = match &state.shared {
        None => None,
        Some(shared) => match shared.ping().await {
            Ok(()) => Some("ok".to_owned()),
            Err(e) => Some(format!("unavailable: {e:#}")),
        },
    };
    let status = if depth.is_some() { "ok" } else { "degraded" };
    HttpResponse::Ok().json(HealthView {
        status,
        version: env!("CARGO_PKG_VERSION"),
        uptime_secs: state.started_at.elapsed().as_secs(),
        node: state.node_name.clone(),
        database: if state.settings.is_postgres() {
            "postgres"
        } else {
            "sqlite"
        },
        queue: HealthQueue { depth },
        redis,
        workers: HealthWorkers {
            delivery: HealthDeliveryWorkers {
                running: state.workers_enabled,
                concurrency: state.settings.delivery.concurrency,
            },
        },
        events: HealthEvents {
            durability: state.events.durability(),
            buffer: HealthEventBuffer {
                size: state.events.in_use(),
                capacity: state.events.capacity(),
                utilisation: f64::from(state.events.in_use())
                    / f64::from(state.events.capacity().max(1)),
            },
            circuit: state.events.circuit().as_str(),
            committed: state.events.committed(),
        },
        channels: HealthChannels {
            by_status,
            running_actors: accounts.len(),
            frozen,
            pacing,
        },
        // The trading-alerts microservice's fields, for its monitors.
        queue_length: depth,
        active_workers: state.in_flight.count(),
        uptime: state.started_at.elapsed().as_secs(),
    })
}
