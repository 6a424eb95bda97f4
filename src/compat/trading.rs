//! The trading-alerts microservice's routes, unchanged for TradingView and for the platform
//! that reads them: `POST /webhook/u/{token}?chart=ID`, `GET /api/users/{id}/stats` and
//! `GET /api/users/{id}/signals`. `/health` carries the seed's fields too (`web::health`).
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use serde::{Deserialize, Serialize};
use utoipa_actix_web::scope;

use crate::{
    auth::{self, Caller},
    client_ip,
    domain::UserId,
    error::ApiError,
    signals::{
        repo::Filter,
        routes::{SignalView, list_for},
        service::{self, Incoming},
    },
    state::AppState,
};

/// Mounts the seed's routes.
pub fn configure(cfg: &mut crate::mount::Routes) {
    cfg.service(webhook).service(
        scope("/api/users")
            .wrap(actix_web::middleware::from_fn(auth::authenticate))
            .service(stats)
            .service(signals),
    );
}

/// `?chart=`.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct Chart {
    /// The TradingView chart to capture with this alert (else the profile's default chart).
    chart: Option<String>,
}

/// What the webhook did with the alert (the seed's shape).
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = TradingWebhookAnswer)]
struct WebhookAnswer {
    /// The same alert came within the dedup window: nothing new was stored or sent, and
    /// `signal_id` is the earlier signal.
    duplicate: bool,
    /// Seconds until the chart picture is likely taken; 0 when none is waiting.
    estimated_wait: u64,
    /// Why the alert could not be read (`empty`, `unfilled-placeholder`, `no-ticker`; it is
    /// kept raw); `null` when it was read.
    parse_error: Option<String>,
    /// `pending` while a chart picture is waiting, else `skipped` (or the earlier signal's).
    screenshot_status: String,
    signal_id: String,
    /// Always `true`.
    success: bool,
}

/// Receive a TradingView alert.
///
/// The body is the alert's message: JSON when it is valid JSON, plain text otherwise (the
/// seed's multi-line texts, `Ticker: EXCHANGE:SYMBOL` and so on). The token in the path is the
/// credential (`POST /api/v1/signals/profile/token`). The answer comes before any chart is
/// captured or message sent.
#[utoipa::path(
    tag = "trading",
    params(
        ("token" = String, Path, description = "The user's webhook token."),
        Chart,
    ),
    request_body(
        content((String = "text/plain"), (Object = "application/json")),
        description = "The alert's message, read whatever its Content-Type, up to `signals.max_body_bytes`",
    ),
    responses(
        (status = 200, description = "Taken (or a duplicate within the dedup window)", body = WebhookAnswer),
        (status = 400, description = "`invalid-query`, `invalid-body-stream`"),
        (status = 403, description = "`ip-not-allowed`: the client is not in the profile's `allowed_ips`"),
        (status = 404, description = "`webhook-not-found`: unknown, rotated-out or disabled token"),
        (status = 413, description = "`payload-too-large`"),
        (status = 429, description = "`quota-exceeded`: the plan's signals for this period are used up (`resets_at`, `Retry-After`); `rate-limited`: over the request rate limit"),
    )
)]
#[post("/webhook/u/{token}")]
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
    Ok(HttpResponse::Ok().json(WebhookAnswer {
        duplicate: received.duplicate,
        estimated_wait: wait,
        parse_error: s.parse_error,
        screenshot_status: s.screenshot_status,
        signal_id: s.id,
        success: true,
    }))
}

/// A user's signal counts (the seed's shape).
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = TradingStats)]
struct StatsView {
    /// Chart pictures still waiting.
    screenshots_pending: i64,
    /// Signals since the first of this month (UTC).
    this_month: i64,
    total_signals: i64,
    /// Wins over decided signals (win or loss), in percent with one decimal; 0 when none is
    /// decided.
    win_rate: f64,
}

/// A user's signal counts and win rate.
#[utoipa::path(
    tag = "trading",
    params(UserId),
    responses(
        (status = 200, description = "The counts", body = StatsView),
        (status = 403, description = "`insufficient-scope`: an API key without the `read` scope; `no-role`"),
        (status = 404, description = "`user-not-found`: not a user the caller may read"),
    )
)]
#[get("/{id}/stats")]
async fn stats(
    caller: Caller,
    path: web::Path<UserId>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let s = service::stats(&state, &caller, &path).await?;
    Ok(HttpResponse::Ok().json(StatsView {
        screenshots_pending: s.screenshots_pending,
        this_month: s.since,
        total_signals: s.total,
        win_rate: service::win_rate(&s),
    }))
}

/// `?before=&limit=`.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct Page {
    /// `next_before` of the page before.
    before: Option<String>,
    /// Signals per page, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u64>,
}

/// One page of a user's signals (the seed's shape).
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = TradingSignalPage)]
struct SignalsPage {
    /// Newest first.
    items: Vec<SignalView>,
    /// Pass as `before` for the next page; `null` on the last page.
    next_before: Option<String>,
}

/// A user's signals, newest first.
#[utoipa::path(
    tag = "trading",
    params(UserId, Page),
    responses(
        (status = 200, description = "One page of signals", body = SignalsPage),
        (status = 400, description = "`validation-failed` (`limit`), `invalid-query`"),
        (status = 403, description = "`insufficient-scope`: an API key without the `read` scope; `no-role`"),
        (status = 404, description = "`user-not-found`: not a user the caller may read"),
    )
)]
#[get("/{id}/signals")]
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
    Ok(HttpResponse::Ok().json(SignalsPage { items, next_before }))
}
