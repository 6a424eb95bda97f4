//! What the signal routes ask for: the webhook's intake, the profile, the signals and their
//! stats.
use std::{collections::BTreeMap, net::IpAddr};

use chrono::{DateTime, Datelike, Duration, TimeZone, Utc};
use sea_orm::{Set, TransactionTrait, TryIntoModel};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{
    SignalError,
    parse::{self, Signal},
    repo::{self, Filter, ProfileRow, SignalRow, Stats},
};
use crate::{
    auth::Caller,
    client_ip, crypto,
    db::is_unique_violation,
    domain::{ChannelId, MediaId, UserId},
    entities::{signal_profiles, signals},
    error::FieldError,
    outbox::{self, Admit, Pending, repo::NewMessage},
    state::AppState,
    templates::Compiled,
};

/// Prefix of webhook tokens.
pub const TOKEN_PREFIX: &str = "pgs";
/// `screenshot_status` of a signal without a chart capture.
pub const SCREENSHOT_SKIPPED: &str = "skipped";
/// Longest per-user template, in characters.
const MAX_TEMPLATE_CHARS: usize = 4096;
/// Most addresses in an allow-list.
const MAX_ALLOWED_IPS: usize = 64;
/// Longest caption of a picture (Telegram's limit; WhatsApp's is longer).
const MAX_CAPTION: usize = 1024;
/// Most TradingView cookies kept per user, and the longest value.
const MAX_COOKIES: usize = 10;
const MAX_COOKIE_CHARS: usize = 4096;
/// Results a signal can be marked with.
pub const RESULTS: [&str; 4] = ["pending", "win", "loss", "skip"];

/// An alert as it reached the webhook.
#[derive(Debug)]
pub struct Incoming<'a> {
    /// The token from the path.
    pub token: &'a str,
    /// `?chart=`.
    pub chart: Option<String>,
    /// The body (invalid UTF-8 replaced).
    pub body: String,
    /// The client's address (trusted proxies resolved).
    pub client_ip: Option<IpAddr>,
}

/// What the webhook stored.
#[derive(Debug)]
pub struct Received {
    /// The signal (the earlier one for a duplicate).
    pub signal: SignalRow,
    /// The same alert came within the dedup window; nothing new was stored or sent.
    pub duplicate: bool,
}

/// Takes one alert: finds the profile, checks the allow-list and the plan's quota, reads the
/// alert (a text that cannot be read is stored raw with the reason), stores it once per dedup
/// window and queues its delivery.
pub async fn receive(state: &AppState, hook: Incoming<'_>) -> Result<Received, SignalError> {
    let now = state.clock.now();
    // One indexed lookup whatever the token is: an unknown, rotated-out or disabled token
    // answers the same 404 after the same work.
    let hash = crypto::hash_token(hook.token);
    let profile = repo::profile_by_token(&state.db, &hash).await?;
    let profile = profile
        .filter(|p| p.webhook_enabled)
        .filter(|p| {
            p.token_hash.as_deref() == Some(hash.as_str())
                || p.previous_valid_until.is_some_and(|until| until > now)
        })
        .ok_or(SignalError::UnknownWebhook)?;
    if let Some(list) = profile
        .allowed_ips
        .as_deref()
        .filter(|l| !l.trim().is_empty())
    {
        let nets = client_ip::parse_list(list.split(',')).unwrap_or_default();
        if !hook
            .client_ip
            .is_some_and(|ip| client_ip::allowed(ip, &nets))
        {
            metrics::counter!("pregonero_signals_refused_total", "reason" => "ip").increment(1);
            tracing::warn!(user_id = %profile.user_id, ip = ?hook.client_ip, "signal webhook from an address outside the allow-list");
            return Err(SignalError::IpNotAllowed);
        }
    }
    let chart = hook
        .chart
        .filter(|c| !c.trim().is_empty())
        .or_else(|| profile.default_chart_id.clone());
    let payload_hash = {
        let mut h = Sha256::new();
        h.update(chart.as_deref().unwrap_or("").as_bytes());
        h.update([0]);
        h.update(hook.body.as_bytes());
        hex::encode(h.finalize())
    };
    let window = i64::from(state.settings.signals.dedup_window_secs.max(1));
    let slot = now.timestamp().div_euclid(window);
    if let Some(earlier) = repo::recent_duplicate(
        &state.db,
        &profile.user_id,
        &payload_hash,
        slot,
        now - Duration::seconds(window),
    )
    .await?
    {
        metrics::counter!("pregonero_signals_duplicate_total").increment(1);
        return Ok(Received {
            signal: earlier,
            duplicate: true,
        });
    }
    let user = crate::auth::repo::find_user(&state.db, &profile.user_id).await?;
    let (plan_name, plan) = state
        .settings
        .signal_plan(user.as_ref().and_then(|u| u.plan.as_deref()));
    let parsed = parse::parse(&hook.body);
    if let Err(e) = &parsed {
        metrics::counter!("pregonero_signals_parse_failures_total", "reason" => e.code())
            .increment(1);
    }
    let period_end = now + Duration::days(i64::from(state.settings.signals.quota_period_days));
    let txn = state.db.begin().await?;
    if !repo::take_quota(&txn, &profile.user_id, plan.quota, period_end, now).await? {
        txn.rollback().await?;
        metrics::counter!("pregonero_signals_refused_total", "reason" => "quota").increment(1);
        return Err(SignalError::QuotaExceeded {
            plan: plan_name.to_owned(),
            quota: plan.quota,
            resets_at: profile.quota_reset_at.max(now),
        });
    }
    // A chart to capture first, when there is one and a browser to capture it with.
    let capture = state.snapshots.enabled() && chart.is_some();
    let row = new_row(
        &profile.user_id,
        &hook.body,
        &parsed,
        chart,
        payload_hash.clone(),
        slot,
        plan.priority,
        now,
        if capture {
            super::queue::PENDING
        } else {
            SCREENSHOT_SKIPPED
        },
    );
    // Without a chart to wait for, its message is written in the same transaction: one commit
    // for the quota, the signal, the message and (on SQLite) its job.
    let mut row = row;
    let message = if capture {
        None
    } else {
        let model = row.clone().try_into_model()?;
        message_for(&profile, &model, None).map(|m| m.into_row(now))
    };
    if let Some(m) = &message {
        row.message_id = Set(m.id.try_as_ref().cloned());
    }
    let inserted = match repo::insert(&txn, row).await {
        Ok(signal) => match message {
            Some(m) => match outbox::insert_in(&state.outbox, &txn, m, now).await {
                Ok(inserted) => (signal, Some(inserted)),
                Err(e) => {
                    txn.rollback().await?;
                    return Err(SignalError::Unexpected(anyhow::anyhow!(e)));
                }
            },
            None => (signal, None),
        },
        Err(e) if is_unique_violation(&e) => {
            // The same alert raced this one into the slot: that one is the signal.
            txn.rollback().await?;
            let earlier = repo::recent_duplicate(
                &state.db,
                &profile.user_id,
                &payload_hash,
                slot,
                now - Duration::seconds(window),
            )
            .await?
            .ok_or_else(|| anyhow::anyhow!("duplicate signal vanished"))?;
            return Ok(Received {
                signal: earlier,
                duplicate: true,
            });
        }
        Err(e) => return Err(e.into()),
    };
    txn.commit().await?;
    let (signal, message) = inserted;
    if let Some(message) = message {
        outbox::committed(&state.outbox, message).await;
    }
    metrics::counter!("pregonero_signals_received_total", "plan" => plan_name.to_owned())
        .increment(1);
    if capture {
        // Delivered by the snapshot worker, with its picture (or without, once it gives up).
        state.snapshots.wake();
    }
    Ok(Received {
        signal,
        duplicate: false,
    })
}

#[allow(clippy::too_many_arguments)]
fn new_row(
    owner_id: &UserId,
    raw: &str,
    parsed: &Result<Signal, parse::ParseError>,
    chart: Option<String>,
    payload_hash: String,
    slot: i64,
    priority: u8,
    now: DateTime<Utc>,
    screenshot_status: &str,
) -> signals::ActiveModel {
    let ok = parsed.as_ref().ok();
    signals::ActiveModel {
        id: Set(uuid::Uuid::now_v7().to_string()),
        owner_id: Set(owner_id.clone()),
        raw: Set(raw.to_owned()),
        parse_error: Set(parsed.as_ref().err().map(|e| e.code().to_owned())),
        ticker: Set(ok.map(|s| s.ticker.clone())),
        exchange: Set(ok.and_then(|s| s.exchange.clone())),
        symbol: Set(ok.map(|s| s.symbol.clone())),
        price: Set(ok.and_then(|s| s.price)),
        signal_type: Set(ok.and_then(|s| s.signal_type.clone())),
        indicator: Set(ok.and_then(|s| s.indicator.clone())),
        timeframe: Set(ok.and_then(|s| s.timeframe.clone())),
        chart_id: Set(chart),
        screenshot_status: Set(screenshot_status.into()),
        screenshot_media_id: Set(None),
        screenshot_error: Set(None),
        snapshot_attempts: Set(0),
        snapshot_due_at: Set(None),
        result: Set("pending".into()),
        profit_loss: Set(None),
        notes: Set(None),
        payload_hash: Set(payload_hash),
        dedup_slot: Set(slot),
        priority: Set(i16::from(priority)),
        message_id: Set(None),
        received_at: Set(now),
        updated_at: Set(now),
    }
}

/// Queues the signal's message (with the chart's picture when there is one) to the profile's
/// target, if it has one; a failure is logged and leaves the signal stored without a message.
pub(super) async fn deliver(
    state: &AppState,
    profile: &ProfileRow,
    signal: SignalRow,
    picture: Option<MediaId>,
) -> SignalRow {
    let Some(message) = message_for(profile, &signal, picture) else {
        return signal;
    };
    let pending = Pending {
        message,
        quota: None,
    };
    match outbox::admit(&state.outbox, pending).await {
        Ok(Admit::Accepted(msg) | Admit::Replayed(msg)) => {
            if let Err(e) = repo::set_message(&state.db, &signal.id, &msg.id).await {
                tracing::warn!(signal_id = %signal.id, error = %e, "could not link the signal to its message");
            }
            SignalRow {
                message_id: Some(msg.id),
                ..signal
            }
        }
        Ok(Admit::Refused) => signal,
        Err(e) => {
            tracing::error!(signal_id = %signal.id, error = ?e, "could not queue the signal's message");
            signal
        }
    }
}

/// The message that delivers `signal` to the profile's target, if it has one.
fn message_for(
    profile: &ProfileRow,
    signal: &SignalRow,
    picture: Option<MediaId>,
) -> Option<NewMessage> {
    let (Some(channel_id), Some(recipient)) = (&profile.channel_id, &profile.recipient) else {
        return None;
    };
    let mut body = match render(profile.template.as_deref(), signal) {
        Ok(body) => body,
        Err(e) => {
            tracing::warn!(signal_id = %signal.id, error = %e, "signal template failed; sending the default text");
            default_text(signal)
        }
    };
    if picture.is_some() && body.chars().count() > MAX_CAPTION {
        body = body.chars().take(MAX_CAPTION - 1).collect::<String>() + "…";
    }
    Some(NewMessage {
        owner_id: signal.owner_id.clone(),
        channel_id: channel_id.clone(),
        recipient: recipient.clone(),
        body,
        parse_mode: None,
        media_id: picture,
        idempotency_key: None,
        request_hash: None,
        integration_id: None,
    })
}

/// The variables a signal template sees (all of them, empty when unknown).
fn variables(s: &SignalRow) -> BTreeMap<String, String> {
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    BTreeMap::from([
        ("ticker".into(), opt(&s.ticker)),
        ("exchange".into(), opt(&s.exchange)),
        ("symbol".into(), opt(&s.symbol)),
        (
            "price".into(),
            s.price.map(format_price).unwrap_or_default(),
        ),
        ("signal_type".into(), opt(&s.signal_type)),
        ("indicator".into(), opt(&s.indicator)),
        ("timeframe".into(), opt(&s.timeframe)),
        ("chart_id".into(), opt(&s.chart_id)),
        ("raw".into(), s.raw.clone()),
        ("received_at".into(), s.received_at.to_rfc3339()),
    ])
}

fn render(template: Option<&str>, s: &SignalRow) -> Result<String, String> {
    match template {
        Some(t) => Compiled::new(t)?.render(&variables(s)),
        None => Ok(default_text(s)),
    }
}

/// The seed's layout, in Spanish like its users' alerts; the raw text when it was not read.
fn default_text(s: &SignalRow) -> String {
    if s.parse_error.is_some() {
        return s.raw.clone();
    }
    let mut out = String::new();
    if let Some(t) = &s.signal_type {
        out.push_str(&format!("📈 {t}\n"));
    }
    out.push_str(&format!("🪙 {}\n", s.ticker.as_deref().unwrap_or("")));
    if let Some(p) = s.price {
        out.push_str(&format!("💰 {}\n", format_price(p)));
    }
    if let Some(i) = &s.indicator {
        out.push_str(&format!("📊 {i}\n"));
    }
    if let Some(tf) = &s.timeframe {
        out.push_str(&format!("⏰ {tf}\n"));
    }
    out.trim_end().to_owned()
}

/// A price as written by people: no trailing zeros, no exponent.
fn format_price(p: f64) -> String {
    let s = format!("{p:.8}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// `PUT /signals/profile`: fields left out stay as they are; `null` clears.
#[derive(Debug, Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = SignalProfileChange)]
pub struct ProfileChange {
    /// Whether the webhook takes alerts.
    pub webhook_enabled: Option<bool>,
    /// Addresses or CIDR blocks the webhook takes alerts from (at most 64); empty or `null`:
    /// any.
    #[serde(default, deserialize_with = "crate::domain::double_option")]
    pub allowed_ips: Option<Option<Vec<String>>>,
    /// Where each signal is sent (with `recipient`; both or neither).
    #[serde(default, deserialize_with = "crate::domain::double_option")]
    pub channel_id: Option<Option<ChannelId>>,
    /// The recipient on `channel_id`.
    #[serde(default, deserialize_with = "crate::domain::double_option")]
    pub recipient: Option<Option<String>>,
    /// The message's template (minijinja, at most 4096 characters: `{{ticker}}`, `{{price}}`, …);
    /// `null` for the default layout.
    #[serde(default, deserialize_with = "crate::domain::double_option")]
    pub template: Option<Option<String>>,
    /// The chart captured when an alert names none: letters, digits, `-` and `_`, at most 64.
    #[serde(default, deserialize_with = "crate::domain::double_option")]
    pub default_chart_id: Option<Option<String>>,
    /// TradingView session cookies (`sessionid`, `sessionid_sign`, …), stored encrypted and sent
    /// only to the chart's host; never shown again.
    #[serde(default, deserialize_with = "crate::domain::double_option")]
    pub tradingview_cookies: Option<Option<BTreeMap<String, String>>>,
}

/// The stored cookies (decrypted JSON) as name/value pairs.
pub fn read_cookies(json: &str) -> anyhow::Result<Vec<(String, String)>> {
    let map: BTreeMap<String, String> = serde_json::from_str(json)?;
    Ok(map.into_iter().collect())
}

/// Cookie names are tokens; values are cookie-octets (RFC 6265).
fn valid_cookie(name: &str, value: &str) -> bool {
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    let octet = |c: char| c.is_ascii_graphic() && !matches!(c, '"' | ',' | ';' | '\\');
    !name.is_empty()
        && name.len() <= 256
        && name.chars().all(token)
        && value.chars().count() <= MAX_COOKIE_CHARS
        && value.chars().all(octet)
}

/// The caller's profile (created on first use).
pub async fn profile(state: &AppState, user_id: &UserId) -> Result<ProfileRow, SignalError> {
    Ok(repo::profile_or_new(&state.db, user_id, state.clock.now()).await?)
}

/// Changes the caller's profile; every field is checked before anything is saved.
pub async fn change_profile(
    state: &AppState,
    user_id: &UserId,
    change: ProfileChange,
) -> Result<ProfileRow, SignalError> {
    let current = profile(state, user_id).await?;
    let mut errors = Vec::new();
    let mut row: signal_profiles::ActiveModel = current.clone().into();
    if let Some(enabled) = change.webhook_enabled {
        row.webhook_enabled = Set(enabled);
    }
    if let Some(ips) = change.allowed_ips {
        let ips = ips.unwrap_or_default();
        if ips.len() > MAX_ALLOWED_IPS {
            errors.push(FieldError::new(
                "allowed_ips",
                "too-long",
                format!("at most {MAX_ALLOWED_IPS} addresses"),
            ));
        }
        match client_ip::parse_list(ips.iter().map(String::as_str)) {
            Ok(nets) => {
                let list: Vec<String> = nets.iter().map(ToString::to_string).collect();
                row.allowed_ips = Set((!list.is_empty()).then(|| list.join(",")));
            }
            Err(bad) => errors.push(FieldError::new(
                "allowed_ips",
                "invalid-format",
                format!("`{bad}` is not an IP address or a CIDR block"),
            )),
        }
    }
    if let Some(template) = change.template {
        if let Some(t) = &template {
            if t.chars().count() > MAX_TEMPLATE_CHARS {
                errors.push(FieldError::new(
                    "template",
                    "too-long",
                    format!("at most {MAX_TEMPLATE_CHARS} characters"),
                ));
            } else if let Err(why) = Compiled::new(t) {
                errors.push(FieldError::new("template", "invalid-format", why));
            }
        }
        row.template = Set(template.filter(|t| !t.trim().is_empty()));
    }
    if let Some(chart) = change.default_chart_id {
        let chart = chart.map(|c| c.trim().to_owned()).filter(|c| !c.is_empty());
        if chart.as_ref().is_some_and(|c| !valid_chart_id(c)) {
            errors.push(FieldError::new(
                "default_chart_id",
                "invalid-characters",
                "letters, digits, `-` and `_`, at most 64",
            ));
        }
        row.default_chart_id = Set(chart);
    }
    if let Some(cookies) = change.tradingview_cookies {
        match cookies.filter(|c| !c.is_empty()) {
            None => row.tradingview_cookies = Set(None),
            Some(map) if map.len() > MAX_COOKIES => errors.push(FieldError::new(
                "tradingview_cookies",
                "too-long",
                format!("at most {MAX_COOKIES} cookies"),
            )),
            Some(map) if !map.iter().all(|(n, v)| valid_cookie(n, v)) => {
                errors.push(FieldError::new(
                    "tradingview_cookies",
                    "invalid-characters",
                    "names are cookie tokens and values cookie characters (no spaces, quotes, commas or semicolons)",
                ))
            }
            Some(map) => {
                let json = serde_json::to_string(&map).map_err(anyhow::Error::from)?;
                row.tradingview_cookies = Set(Some(state.cipher.encrypt(&json)?));
            }
        }
    }
    // The target: both or neither; the recipient in the channel's own form.
    let channel_id = change
        .channel_id
        .clone()
        .unwrap_or_else(|| current.channel_id.clone());
    let recipient = change
        .recipient
        .clone()
        .unwrap_or_else(|| current.recipient.clone());
    if change.channel_id.is_some() || change.recipient.is_some() {
        match (channel_id, recipient) {
            (None, None) => {
                row.channel_id = Set(None);
                row.recipient = Set(None);
            }
            (Some(channel_id), Some(to)) => {
                match crate::messages::service::canonical_recipient(
                    state,
                    user_id,
                    &channel_id,
                    &to,
                )
                .await
                {
                    Ok(recipient) => {
                        row.channel_id = Set(Some(channel_id));
                        row.recipient = Set(Some(recipient));
                    }
                    Err(crate::messages::MessageError::ChannelNotFound(_)) => {
                        errors.push(FieldError::new(
                            "channel_id",
                            "not-found",
                            "not one of your channels",
                        ));
                    }
                    Err(crate::messages::MessageError::InvalidRecipient(why)) => {
                        errors.push(FieldError::new("recipient", "invalid-format", why));
                    }
                    Err(e) => return Err(SignalError::Unexpected(anyhow::anyhow!("{e}"))),
                }
            }
            (None, Some(_)) => errors.push(FieldError::new(
                "channel_id",
                "required",
                "a recipient needs a channel",
            )),
            (Some(_), None) => errors.push(FieldError::new(
                "recipient",
                "required",
                "a channel needs a recipient",
            )),
        }
    }
    if !errors.is_empty() {
        return Err(SignalError::Invalid(errors));
    }
    row.updated_at = Set(state.clock.now());
    Ok(repo::save(&state.db, row).await?)
}

fn valid_chart_id(c: &str) -> bool {
    c.len() <= 64
        && c.chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
}

/// A new webhook token for the caller: shown once, its hash stored; the one it replaces keeps
/// working for `grace` (the configured grace when `None`).
pub async fn rotate_token(
    state: &AppState,
    user_id: &UserId,
    grace: Option<Duration>,
) -> Result<(String, ProfileRow), SignalError> {
    let now = state.clock.now();
    let current = profile(state, user_id).await?;
    let grace = grace
        .unwrap_or_else(|| Duration::hours(i64::from(state.settings.signals.token_grace_hours)));
    let token = crypto::new_token(TOKEN_PREFIX);
    let mut row: signal_profiles::ActiveModel = current.clone().into();
    row.previous_token_hash = Set(current.token_hash.clone());
    row.previous_valid_until = Set(current
        .token_hash
        .as_ref()
        .map(|_| now + grace)
        .filter(|until| *until > now));
    if current.token_hash.is_none() || grace <= Duration::zero() {
        row.previous_token_hash = Set(None);
        row.previous_valid_until = Set(None);
    }
    row.token_hash = Set(Some(crypto::hash_token(&token)));
    row.updated_at = Set(now);
    let saved = repo::save(&state.db, row).await?;
    tracing::info!(%user_id, "signal webhook token rotated");
    Ok((token, saved))
}

/// Sets a user's plan (admins).
pub async fn set_plan(
    state: &AppState,
    caller: &Caller,
    user_id: &UserId,
    plan: &str,
) -> Result<(), SignalError> {
    if !caller.is_admin() {
        return Err(SignalError::UserNotFound);
    }
    if !state.settings.signals.plans.contains_key(plan) {
        return Err(SignalError::UnknownPlan(plan.to_owned()));
    }
    if !crate::auth::repo::set_plan(&state.db, user_id, plan).await? {
        return Err(SignalError::UserNotFound);
    }
    tracing::info!(%user_id, plan, "plan changed");
    Ok(())
}

/// One signal the caller may see.
pub async fn find(state: &AppState, caller: &Caller, id: &str) -> Result<SignalRow, SignalError> {
    repo::find(&state.db, id)
        .await?
        .filter(|s| caller.can_access(&s.owner_id))
        .ok_or(SignalError::NotFound)
}

/// `PATCH /signals/{id}`: the trader's verdict.
#[derive(Debug, Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = SignalVerdict)]
pub struct Verdict {
    /// `pending`, `win`, `loss` or `skip`.
    pub result: Option<String>,
    /// `null` clears it.
    #[serde(default, deserialize_with = "crate::domain::double_option")]
    pub profit_loss: Option<Option<f64>>,
    /// At most 4000 characters; `null` clears them.
    #[serde(default, deserialize_with = "crate::domain::double_option")]
    pub notes: Option<Option<String>>,
}

/// Records a verdict on one of the caller's signals.
pub async fn judge(
    state: &AppState,
    caller: &Caller,
    id: &str,
    verdict: Verdict,
) -> Result<SignalRow, SignalError> {
    let signal = find(state, caller, id).await?;
    let mut errors = Vec::new();
    let mut row: signals::ActiveModel = signal.into();
    if let Some(result) = verdict.result {
        if RESULTS.contains(&result.as_str()) {
            row.result = Set(result);
        } else {
            errors.push(FieldError::new(
                "result",
                "invalid-format",
                "one of pending, win, loss, skip",
            ));
        }
    }
    if let Some(pl) = verdict.profit_loss {
        if pl.is_some_and(|v| !v.is_finite()) {
            errors.push(FieldError::new("profit_loss", "invalid-format", "a number"));
        }
        row.profit_loss = Set(pl);
    }
    if let Some(notes) = verdict.notes {
        if notes.as_ref().is_some_and(|n| n.chars().count() > 4000) {
            errors.push(FieldError::new(
                "notes",
                "too-long",
                "at most 4000 characters",
            ));
        }
        row.notes = Set(notes);
    }
    if !errors.is_empty() {
        return Err(SignalError::Invalid(errors));
    }
    row.updated_at = Set(state.clock.now());
    Ok(repo::update(&state.db, row).await?)
}

/// The owner's signals, newest first.
pub async fn list(
    state: &AppState,
    caller: &Caller,
    owner_id: &UserId,
    filter: &Filter,
    limit: u64,
) -> Result<Vec<SignalRow>, SignalError> {
    if !caller.can_access(owner_id) {
        return Err(SignalError::UserNotFound);
    }
    Ok(repo::list(&state.db, owner_id, filter, limit).await?)
}

/// The seed's `{total_signals, this_month, screenshots_pending, win_rate}`.
pub async fn stats(
    state: &AppState,
    caller: &Caller,
    owner_id: &UserId,
) -> Result<Stats, SignalError> {
    if !caller.can_access(owner_id) {
        return Err(SignalError::UserNotFound);
    }
    let now = state.clock.now();
    let month = Utc
        .with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0)
        .single()
        .unwrap_or(now);
    Ok(repo::stats(&state.db, owner_id, month).await?)
}

/// Wins over decided signals, in percent with one decimal (0 when none is decided).
pub fn win_rate(s: &Stats) -> f64 {
    let decided = s.wins + s.losses;
    if decided == 0 {
        return 0.0;
    }
    (s.wins as f64 * 1000.0 / decided as f64).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_read_as_people_write_them() {
        assert_eq!(format_price(67_890.5), "67890.5");
        assert_eq!(format_price(0.000_012_34), "0.00001234");
        assert_eq!(format_price(100.0), "100");
    }

    #[test]
    fn the_win_rate_counts_decided_signals_only() {
        let s = Stats {
            wins: 2,
            losses: 1,
            ..Default::default()
        };
        assert_eq!(win_rate(&s), 66.7);
        assert_eq!(win_rate(&Stats::default()), 0.0);
    }
}
