//! `/signals` and `/users/{id}/plan`: parse, authorise, call the service, map its error.
use actix_web::{HttpRequest, HttpResponse, get, patch, post, put, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{
    repo::{Filter, ProfileRow, SignalRow},
    service,
};
use crate::page::Page;
use crate::{
    auth::Caller,
    domain::{ChannelId, MessageId, UserId},
    error::{ApiError, FieldError},
    state::AppState,
};

/// Most signals in one page.
pub const MAX_PAGE: u64 = crate::page::MAX_LIMIT;

/// Mounts the signal routes under `/api/v1`.
pub fn configure(cfg: &mut crate::mount::Routes) {
    cfg.service(get_profile)
        .service(put_profile)
        .service(rotate_token)
        .service(list)
        .service(get)
        .service(patch)
        .service(set_plan);
}

/// A signal as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Signal)]
pub struct SignalView {
    pub id: String,
    /// Whose signal it is.
    pub user_id: UserId,
    /// `EXCHANGE:SYMBOL` when the exchange is known, else the symbol.
    pub ticker: Option<String>,
    /// `BINANCE` in `BINANCE:BTCUSDT`.
    pub exchange: Option<String>,
    /// `BTCUSDT` in `BINANCE:BTCUSDT`.
    pub symbol: Option<String>,
    pub price: Option<f64>,
    /// As the alert wrote it: `BUY`, `Divergencia Alcista`, …
    pub signal_type: Option<String>,
    pub indicator: Option<String>,
    /// `15m`, `1h`, `1D`, …
    pub timeframe: Option<String>,
    /// The TradingView chart captured for it.
    pub chart_id: Option<String>,
    /// The body as posted.
    pub raw: String,
    /// Why it could not be read (`empty`, `unfilled-placeholder`, `no-ticker`); `null` when
    /// parsed.
    pub parse_error: Option<String>,
    /// The chart picture: `pending`, `processing`, `completed`, `failed` or `skipped`.
    pub screenshot_status: String,
    /// A link to the chart picture, when there is one.
    pub screenshot_url: Option<String>,
    /// `pending`, `win`, `loss` or `skip`.
    pub result: String,
    pub profit_loss: Option<f64>,
    pub notes: Option<String>,
    /// The message that delivers it, when the profile has a target.
    pub message_id: Option<MessageId>,
    pub timestamp: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl SignalView {
    /// The views of `rows`, each with a link to its chart picture when it has one (the pictures'
    /// rows read in one query).
    pub async fn linked(state: &AppState, base: &str, rows: Vec<SignalRow>) -> Vec<Self> {
        let ids: Vec<_> = rows
            .iter()
            .filter_map(|s| s.screenshot_media_id.clone())
            .collect();
        let media = crate::media::repo::find_many(&state.db, &ids)
            .await
            .unwrap_or_default();
        let library = crate::media::Library::of(state);
        let mut views = Vec::with_capacity(rows.len());
        for row in rows {
            let meta = row
                .screenshot_media_id
                .as_ref()
                .and_then(|id| media.iter().find(|m| &m.id == id));
            let mut view = Self::from(row);
            if let Some(meta) = meta {
                view.screenshot_url = library.link(meta, base).await.ok().map(|(url, _)| url);
            }
            views.push(view);
        }
        views
    }

    /// One signal's view, with its picture's link.
    pub async fn linked_one(state: &AppState, base: &str, row: SignalRow) -> Self {
        Self::linked(state, base, vec![row])
            .await
            .pop()
            .unwrap_or_else(|| unreachable!("one row in, one view out"))
    }
}

impl From<SignalRow> for SignalView {
    fn from(s: SignalRow) -> Self {
        Self {
            id: s.id,
            user_id: s.owner_id,
            ticker: s.ticker,
            exchange: s.exchange,
            symbol: s.symbol,
            price: s.price,
            signal_type: s.signal_type,
            indicator: s.indicator,
            timeframe: s.timeframe,
            chart_id: s.chart_id,
            raw: s.raw,
            parse_error: s.parse_error,
            screenshot_status: s.screenshot_status,
            screenshot_url: None,
            result: s.result,
            profit_loss: s.profit_loss,
            notes: s.notes,
            message_id: s.message_id,
            timestamp: s.received_at,
            updated_at: s.updated_at,
        }
    }
}

/// The caller's signal webhook, delivery target and plan.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = SignalProfile)]
struct ProfileView {
    user_id: UserId,
    /// Whether a token was issued (the token itself is shown once, at rotation).
    has_token: bool,
    /// Until when the token before the last rotation still works.
    previous_token_valid_until: Option<DateTime<Utc>>,
    webhook_enabled: bool,
    webhook_last_used: Option<DateTime<Utc>>,
    plan: String,
    signals_quota: u32,
    signals_used: i32,
    quota_reset_at: DateTime<Utc>,
    allowed_ips: Vec<String>,
    /// TradingView's documented sending addresses, for `allowed_ips`.
    #[schema(value_type = Vec<String>)]
    suggested_allowed_ips: [&'static str; 4],
    /// Where each signal is sent (with `recipient`).
    channel_id: Option<ChannelId>,
    recipient: Option<String>,
    /// The message's template (minijinja); the default layout when `null`.
    template: Option<String>,
    /// The chart captured when an alert names none (`?chart=`).
    default_chart_id: Option<String>,
    /// Whether TradingView cookies are stored (they are never shown).
    has_tradingview_cookies: bool,
    /// Whether this server captures charts (Chromium found, snapshots on).
    snapshots_enabled: bool,
}

/// TradingView's webhook sending addresses (its documentation).
pub const TRADINGVIEW_IPS: [&str; 4] = [
    "52.89.214.238",
    "34.212.75.30",
    "54.218.53.128",
    "52.32.178.7",
];

async fn profile_view(state: &AppState, p: ProfileRow) -> Result<ProfileView, ApiError> {
    let user = crate::auth::repo::find_user(&state.db, &p.user_id).await?;
    let (plan, limits) = state
        .settings
        .signal_plan(user.as_ref().and_then(|u| u.plan.as_deref()));
    let now = state.clock.now();
    let period_over = p.quota_reset_at <= now;
    Ok(ProfileView {
        has_token: p.token_hash.is_some(),
        previous_token_valid_until: p.previous_valid_until.filter(|u| *u > now),
        webhook_enabled: p.webhook_enabled,
        webhook_last_used: p.webhook_last_used,
        plan: plan.to_owned(),
        signals_quota: limits.quota,
        signals_used: if period_over { 0 } else { p.signals_used },
        quota_reset_at: if period_over {
            now + chrono::Duration::days(i64::from(state.settings.signals.quota_period_days))
        } else {
            p.quota_reset_at
        },
        allowed_ips: p
            .allowed_ips
            .as_deref()
            .map(|l| l.split(',').map(str::to_owned).collect())
            .unwrap_or_default(),
        suggested_allowed_ips: TRADINGVIEW_IPS,
        channel_id: p.channel_id,
        recipient: p.recipient,
        template: p.template,
        default_chart_id: p.default_chart_id,
        has_tradingview_cookies: p.tradingview_cookies.is_some(),
        snapshots_enabled: state.snapshots.enabled(),
        user_id: p.user_id,
    })
}

/// The caller's signals profile (created on first use).
#[utoipa::path(
    tag = "signals",
    responses(
        (status = 200, description = "The profile", body = ProfileView),
    )
)]
#[get("/signals/profile")]
async fn get_profile(caller: Caller, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let p = service::profile(&state, &caller.user_id).await?;
    Ok(HttpResponse::Ok().json(profile_view(&state, p).await?))
}

/// Change the caller's signals profile: fields left out stay as they are, `null` clears.
#[utoipa::path(
    tag = "signals",
    responses(
        (status = 200, description = "The changed profile", body = ProfileView),
        (status = 400, description = "`validation-failed` (with the fields), `invalid-json`, `unsupported-media-type`"),
        (status = 413, description = "`payload-too-large`"),
        (status = 422, description = "`invalid-body`: not a profile change (unknown or mistyped field)"),
    )
)]
#[put("/signals/profile")]
async fn put_profile(
    caller: Caller,
    body: web::Json<service::ProfileChange>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller.ensure_can_write()?;
    let p = service::change_profile(&state, &caller.user_id, body.into_inner()).await?;
    Ok(HttpResponse::Ok().json(profile_view(&state, p).await?))
}

/// `{grace_hours}` (the body is optional).
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = SignalTokenRotation)]
struct Rotate {
    /// How long the old token keeps working (at most 2160); the configured grace when left out.
    grace_hours: Option<u32>,
}

/// The new webhook token: shown only here.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = SignalToken)]
struct RotatedToken {
    /// Until when the token it replaced keeps working; `null` when there was none or it stopped
    /// at once.
    previous_token_valid_until: Option<DateTime<Utc>>,
    token: String,
    /// Where TradingView posts the alerts: `<public url>/webhook/u/<token>`.
    webhook_url: String,
}

/// Issue a new webhook token; the one it replaces keeps working for `grace_hours`.
///
/// The body is optional: without one, or with one that is not `{grace_hours}` JSON, the
/// configured grace applies.
#[utoipa::path(
    tag = "signals",
    responses(
        (status = 201, description = "The token (shown once) and its webhook URL", body = RotatedToken),
    )
)]
#[post("/signals/profile/token")]
async fn rotate_token(
    req: HttpRequest,
    caller: Caller,
    body: Option<web::Json<Rotate>>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller.ensure_can_write()?;
    let grace = body
        .and_then(|b| b.grace_hours)
        .map(|h| chrono::Duration::hours(i64::from(h.min(24 * 90))));
    let (token, p) = service::rotate_token(&state, &caller.user_id, grace).await?;
    let url = format!(
        "{}/webhook/u/{token}",
        crate::client_ip::request_base(
            &req,
            state.settings.auth.public_url.as_deref(),
            &state.trusted_proxies,
        )
    );
    Ok(HttpResponse::Created().json(RotatedToken {
        previous_token_valid_until: p.previous_valid_until,
        token,
        webhook_url: url,
    }))
}

/// `?user_id=&ticker=&type=&indicator=&result=&from=&to=&cursor=&limit=`.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Another owner's signals (admins).
    user_id: Option<UserId>,
    /// Only this ticker.
    ticker: Option<String>,
    /// Only this signal type.
    #[serde(rename = "type")]
    signal_type: Option<String>,
    /// Only this indicator.
    indicator: Option<String>,
    /// Only this result: `pending`, `win`, `loss` or `skip`.
    result: Option<String>,
    /// Received at or after (RFC 3339).
    from: Option<DateTime<Utc>>,
    /// Received before (RFC 3339).
    to: Option<DateTime<Utc>>,
    /// `next_cursor` of the page before.
    cursor: Option<String>,
    /// Signals per page, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u64>,
}

/// One page of an owner's signals with the query's filters, newest first, and the id of the
/// last one when more follow (`filter.before` of the next page).
pub async fn list_for(
    state: &AppState,
    base: &str,
    caller: &Caller,
    owner_id: &UserId,
    query: Filter,
    limit: Option<u64>,
) -> Result<(Vec<SignalView>, Option<String>), ApiError> {
    let limit = limit.unwrap_or(100);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::Invalid(vec![FieldError::new(
            "limit",
            "invalid-format",
            format!("limit must be between 1 and {MAX_PAGE}"),
        )]));
    }
    if let Some(r) = &query.result
        && !service::RESULTS.contains(&r.as_str())
    {
        return Err(ApiError::Invalid(vec![FieldError::new(
            "result",
            "invalid-format",
            "one of pending, win, loss, skip",
        )]));
    }
    let mut rows = service::list(state, caller, owner_id, &query, limit + 1).await?;
    let more = rows.len() as u64 > limit;
    rows.truncate(limit as usize);
    let next_before = more.then(|| rows.last().map(|s| s.id.clone())).flatten();
    Ok((SignalView::linked(state, base, rows).await, next_before))
}

/// List an owner's signals (the caller's unless `user_id`), newest first.
#[utoipa::path(
    tag = "signals",
    params(ListQuery),
    responses(
        (status = 200, description = "One page of signals", body = Page<SignalView>),
        (status = 400, description = "`invalid-cursor`, `validation-failed` (`limit`, `result`), `invalid-query`"),
        (status = 404, description = "`user-not-found`: `user_id` is not one the caller may read"),
    )
)]
#[get("/signals")]
async fn list(
    req: HttpRequest,
    caller: Caller,
    query: web::Query<ListQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let owner = q.user_id.unwrap_or_else(|| caller.user_id.clone());
    let filter = Filter {
        ticker: q.ticker,
        signal_type: q.signal_type,
        indicator: q.indicator,
        result: q.result,
        from: q.from,
        to: q.to,
        before: crate::page::after(q.cursor.as_deref())?,
    };
    let base = crate::client_ip::request_base(
        &req,
        state.settings.auth.public_url.as_deref(),
        &state.trusted_proxies,
    );
    let (items, last) = list_for(&state, &base, &caller, &owner, filter, q.limit).await?;
    Ok(HttpResponse::Ok().json(Page {
        items,
        next_cursor: last.as_deref().map(crate::page::encode),
    }))
}

/// One signal.
#[utoipa::path(
    tag = "signals",
    params(
        ("id" = String, Path, description = "The signal's id."),
    ),
    responses(
        (status = 200, description = "The signal", body = SignalView),
        (status = 404, description = "`signal-not-found`"),
    )
)]
#[get("/signals/{id}")]
async fn get(
    req: HttpRequest,
    caller: Caller,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let s = service::find(&state, &caller, &path).await?;
    let base = crate::client_ip::request_base(
        &req,
        state.settings.auth.public_url.as_deref(),
        &state.trusted_proxies,
    );
    Ok(HttpResponse::Ok().json(SignalView::linked_one(&state, &base, s).await))
}

/// Record the trader's verdict on a signal: its result, profit or loss and notes.
#[utoipa::path(
    tag = "signals",
    params(
        ("id" = String, Path, description = "The signal's id."),
    ),
    responses(
        (status = 200, description = "The signal", body = SignalView),
        (status = 400, description = "`validation-failed` (with the fields), `invalid-json`, `unsupported-media-type`"),
        (status = 404, description = "`signal-not-found`"),
        (status = 413, description = "`payload-too-large`"),
        (status = 422, description = "`invalid-body`: unknown or mistyped field"),
    )
)]
#[patch("/signals/{id}")]
async fn patch(
    req: HttpRequest,
    caller: Caller,
    path: web::Path<String>,
    body: web::Json<service::Verdict>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller.ensure_can_write()?;
    let s = service::judge(&state, &caller, &path, body.into_inner()).await?;
    let base = crate::client_ip::request_base(
        &req,
        state.settings.auth.public_url.as_deref(),
        &state.trusted_proxies,
    );
    Ok(HttpResponse::Ok().json(SignalView::linked_one(&state, &base, s).await))
}

/// `{plan}`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = SignalPlanChange)]
struct PlanBody {
    /// A plan defined under `signals.plans`.
    plan: String,
}

/// Set a user's signals plan (admins).
#[utoipa::path(
    tag = "signals",
    params(UserId),
    responses(
        (status = 204, description = "Set"),
        (status = 400, description = "`invalid-json`, `unsupported-media-type`"),
        (status = 404, description = "`user-not-found` (also to a caller who is not an admin)"),
        (status = 413, description = "`payload-too-large`"),
        (status = 422, description = "`unknown-plan`, `invalid-body`"),
    )
)]
#[put("/users/{id}/plan")]
async fn set_plan(
    caller: Caller,
    path: web::Path<UserId>,
    body: web::Json<PlanBody>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller.ensure_can_write()?;
    service::set_plan(&state, &caller, &path, &body.plan).await?;
    Ok(HttpResponse::NoContent().finish())
}
