//! `/signals` and `/users/{id}/plan`: parse, authorise, call the service, map its error.
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{
    repo::{Filter, ProfileRow, SignalRow},
    service,
};
use crate::page::{Page, PageQuery};
use crate::{
    auth::Caller,
    domain::{ChannelId, MessageId, UserId},
    error::{ApiError, FieldError},
    state::AppState,
};

/// Most signals in one page.
pub const MAX_PAGE: u64 = crate::page::MAX_LIMIT;

/// Mounts the signal routes under `/api/v1`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/signals/profile", web::get().to(get_profile))
        .route("/signals/profile", web::put().to(put_profile))
        .route("/signals/profile/token", web::post().to(rotate_token))
        .route("/signals", web::get().to(list))
        .route("/signals/{id}", web::get().to(get))
        .route("/signals/{id}", web::patch().to(patch))
        .route("/users/{id}/plan", web::put().to(set_plan));
}

/// A signal as the API shows it.
#[derive(Debug, Serialize)]
pub struct SignalView {
    pub id: String,
    pub user_id: UserId,
    pub ticker: Option<String>,
    pub exchange: Option<String>,
    pub symbol: Option<String>,
    pub price: Option<f64>,
    pub signal_type: Option<String>,
    pub indicator: Option<String>,
    pub timeframe: Option<String>,
    pub chart_id: Option<String>,
    /// The body as posted.
    pub raw: String,
    /// Why it could not be read; `null` when parsed.
    pub parse_error: Option<String>,
    pub screenshot_status: String,
    pub screenshot_url: Option<String>,
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

#[derive(Serialize)]
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
    suggested_allowed_ips: [&'static str; 4],
    channel_id: Option<ChannelId>,
    recipient: Option<String>,
    template: Option<String>,
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

async fn get_profile(caller: Caller, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let p = service::profile(&state, &caller.user_id).await?;
    Ok(HttpResponse::Ok().json(profile_view(&state, p).await?))
}

async fn put_profile(
    caller: Caller,
    body: web::Json<service::ProfileChange>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller.ensure_can_write()?;
    let p = service::change_profile(&state, &caller.user_id, body.into_inner()).await?;
    Ok(HttpResponse::Ok().json(profile_view(&state, p).await?))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Rotate {
    /// How long the old token keeps working; the configured grace when left out.
    grace_hours: Option<u32>,
}

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
    Ok(HttpResponse::Created().json(serde_json::json!({
        "token": token,
        "webhook_url": url,
        "previous_token_valid_until": p.previous_valid_until,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// Another owner's signals (admins).
    user_id: Option<UserId>,
    ticker: Option<String>,
    #[serde(rename = "type")]
    signal_type: Option<String>,
    indicator: Option<String>,
    result: Option<String>,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    /// `next_cursor` of the page before.
    cursor: Option<String>,
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
        before: PageQuery {
            cursor: q.cursor,
            limit: Some(1),
        }
        .request()?
        .after,
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanBody {
    plan: String,
}

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
