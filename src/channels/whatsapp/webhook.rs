//! `GET|POST /whatsapp/webhook/{channel_id}`: Meta's verification handshake and its signed
//! callbacks — message statuses (which advance the ledger) and inbound messages (which open the
//! 24 h service window and record opt-outs).
use crate::outbox::receipts::ReceiptWriter;
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use serde::Deserialize;

use super::WaCredentials;
use crate::{
    channels::repo,
    crypto,
    domain::{ChannelId, UserId},
    error::ApiError,
    outbox::{self, Outbox, hooks::Inbound as InboundMessage, repo::StatusApplied},
};

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
/// Meta's verification query.
pub struct Verify {
    /// `subscribe`.
    #[serde(rename = "hub.mode")]
    mode: Option<String>,
    /// The verify token set on the number.
    #[serde(rename = "hub.verify_token")]
    verify_token: Option<String>,
    /// What to echo back.
    #[serde(rename = "hub.challenge")]
    challenge: Option<String>,
}

/// The number's owner and secrets.
async fn credentials(
    state: &Outbox,
    channel_id: &ChannelId,
) -> Result<(UserId, WaCredentials), ApiError> {
    let not_found = || ApiError::NotFound("channel-not-found", "no such WhatsApp number".into());
    let row = repo::find_recent(&state.db, channel_id)
        .await?
        .filter(|r| r.kind == super::KIND)
        .ok_or_else(not_found)?;
    let plain = state.cipher.decrypt(&row.credentials)?;
    Ok((row.owner_id, WaCredentials::from_json(&plain)?))
}

/// Answer Meta's webhook verification.
///
/// Echoes `hub.challenge` when `hub.mode` is `subscribe` and `hub.verify_token` matches the
/// number's verify token, else 403.
#[utoipa::path(
    tag = "webhooks",
    params(
        ("channel_id" = String, Path, description = "The WhatsApp number (channel account)"),
        Verify,
    ),
    responses(
        (status = 200, description = "The challenge, echoed", content_type = "text/plain", body = String),
        (status = 400, description = "`invalid-query`"),
        (status = 403, description = "`verification-failed`"),
        (status = 404, description = "`channel-not-found`: no such WhatsApp number"),
    )
)]
#[get("/whatsapp/webhook/{channel_id}")]
pub async fn verify(
    path: web::Path<ChannelId>,
    query: web::Query<Verify>,
    state: web::Data<Outbox>,
) -> Result<HttpResponse, ApiError> {
    let (_, creds) = credentials(&state, &path).await?;
    let q = query.into_inner();
    let token_ok = q.verify_token.as_deref().is_some_and(|t| {
        crypto::constant_time_eq(t.as_bytes(), creds.verify_token.expose_secret().as_bytes())
    });
    match (q.mode.as_deref(), token_ok, q.challenge) {
        (Some("subscribe"), true, Some(challenge)) => Ok(HttpResponse::Ok()
            .content_type("text/plain; charset=utf-8")
            .body(challenge)),
        _ => Err(ApiError::Forbidden(
            "verification-failed",
            "hub.mode must be `subscribe` and hub.verify_token must match the number's".into(),
        )),
    }
}

#[derive(Debug, Deserialize)]
struct Callback {
    #[serde(default)]
    entry: Vec<Entry>,
}

#[derive(Debug, Deserialize)]
struct Entry {
    #[serde(default)]
    changes: Vec<Change>,
}

#[derive(Debug, Deserialize)]
struct Change {
    value: Option<Value>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Value {
    #[serde(default)]
    statuses: Vec<Status>,
    #[serde(default)]
    messages: Vec<Inbound>,
}

#[derive(Debug, Deserialize)]
struct Status {
    id: String,
    status: String,
    timestamp: Option<String>,
    #[serde(default)]
    errors: Vec<StatusError>,
}

#[derive(Debug, Deserialize)]
struct StatusError {
    code: Option<i64>,
    title: Option<String>,
    message: Option<String>,
    error_data: Option<ErrorData>,
}

#[derive(Debug, Deserialize)]
struct ErrorData {
    details: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Inbound {
    from: String,
    timestamp: Option<String>,
    text: Option<Text>,
    button: Option<Text>,
}

#[derive(Debug, Deserialize)]
struct Text {
    #[serde(alias = "text")]
    body: Option<String>,
}

/// How long a status for an unknown message id is answered 503 (so Meta sends it again).
const STATUS_RETRY_MINUTES: i64 = 10;
/// Pauses before looking again for a fresh status's message, before answering 503. On SQLite
/// about one status in forty outran its send's commit during a campaign, and each cost a 503
/// and a redelivery.
const RECORDED_WAITS_MS: [u64; 3] = [20, 50, 100];
/// A status this recent may be waiting for its send's commit; an older one is a redelivery.
const FRESH_STATUS_SECS: i64 = 10;

fn at(timestamp: Option<&str>) -> DateTime<Utc> {
    timestamp
        .and_then(|t| t.parse::<i64>().ok())
        .and_then(|secs| DateTime::from_timestamp(secs, 0))
        .unwrap_or_else(Utc::now)
}

/// Whether `header` (`X-Hub-Signature-256: sha256=<hex>`) is the HMAC-SHA256 of `body` under
/// the app secret, compared in constant time.
pub(crate) fn signature_ok(header: Option<&str>, app_secret: &[u8], body: &[u8]) -> bool {
    let signature = header
        .and_then(|v| v.strip_prefix("sha256="))
        .and_then(|hex_sig| hex::decode(hex_sig).ok());
    let expected = crypto::hmac_sha256(app_secret, body);
    signature.is_some_and(|s| crypto::constant_time_eq(&s, &expected))
}

/// The changes of a callback body (statuses and messages), in order.
pub(crate) fn parse_callback(body: &[u8]) -> Result<Vec<Value>, serde_json::Error> {
    let callback: Callback = serde_json::from_slice(body)?;
    Ok(callback
        .entry
        .into_iter()
        .flat_map(|e| e.changes)
        .filter_map(|c| c.value)
        .collect())
}

/// Receive Meta's signed callbacks: message statuses and inbound messages.
///
/// `X-Hub-Signature-256` must be the HMAC-SHA256 of the raw body under the app secret; a bad
/// signature is 401 and nothing is read. Statuses advance messages; inbound messages open the
/// 24 h service window and record opt-outs. The answer has an empty body. A database error is
/// 500 so Meta retries (it does for 7 days), which is why every change is idempotent.
#[utoipa::path(
    tag = "webhooks",
    params(
        ("channel_id" = String, Path, description = "The WhatsApp number (channel account)"),
        ("X-Hub-Signature-256" = Option<String>, Header, description = "`sha256=<hex HMAC-SHA256 of the raw body under the app secret>`"),
    ),
    request_body(content = Object, content_type = "application/json", description = "Meta's webhook callback (`entry[].changes[].value` with `statuses` and `messages`)"),
    responses(
        (status = 200, description = "Processed (empty body)", content_type = "text/plain", body = String),
        (status = 400, description = "`invalid-json`: the callback body is not valid JSON"),
        (status = 401, description = "`invalid-signature`"),
        (status = 404, description = "`channel-not-found`: no such WhatsApp number"),
        (status = 413, description = "`payload-too-large`"),
        (status = 500, description = "`internal-error`: not processed; Meta sends it again"),
        (status = 503, description = "`message-not-recorded-yet`: a fresh status for a message not recorded yet; Meta sends it again"),
    )
)]
#[post("/whatsapp/webhook/{channel_id}")]
pub async fn receive(
    req: HttpRequest,
    path: web::Path<ChannelId>,
    body: web::Bytes,
    state: web::Data<Outbox>,
) -> Result<HttpResponse, ApiError> {
    let channel_id = path.into_inner();
    let (owner, creds) = credentials(&state, &channel_id).await?;
    let header = req
        .headers()
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok());
    if !signature_ok(header, creds.app_secret.expose_secret().as_bytes(), &body) {
        metrics::counter!("pregonero_webhook_rejected_total", "channel" => "whatsapp").increment(1);
        return Err(ApiError::Unauthorized(
            "invalid-signature",
            "X-Hub-Signature-256 does not match the body signed with the app secret".into(),
        ));
    }
    let values = parse_callback(&body).map_err(|e| {
        ApiError::BadRequest(
            "invalid-json",
            format!("callback body is not valid JSON: {e}"),
        )
    })?;
    for value in values {
        for status in value.statuses {
            apply_status(&state, &channel_id, status).await?;
        }
        for inbound in value.messages {
            apply_inbound(&state, &owner, &channel_id, inbound).await?;
        }
    }
    Ok(HttpResponse::Ok().finish())
}

async fn apply_status(state: &Outbox, channel_id: &ChannelId, s: Status) -> Result<(), ApiError> {
    let Some(receipt) = crate::domain::Receipt::parse(&s.status) else {
        tracing::debug!(%channel_id, status = %s.status, "WhatsApp status we do not track");
        return Ok(());
    };
    let when = at(s.timestamp.as_deref());
    let error = s.errors.into_iter().next().map(|e| {
        let detail = [e.title, e.message, e.error_data.and_then(|d| d.details)]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(": ");
        super::classify_status_error(e.code, detail)
    });
    // Meta can report a status before the answer to our send is recorded (the provider id is
    // stored when that answer's transaction commits, usually a few milliseconds later): look
    // again a few times before asking for the webhook again.
    let apply = || async {
        // Delivered and read receipts are recorded in batches; alone if that batch failed.
        if let Some(writer) = state
            .receipts
            .as_ref()
            .filter(|_| ReceiptWriter::takes(receipt))
        {
            match writer.apply(channel_id, &s.id, receipt, when).await {
                Ok(applied) => return Ok(applied),
                Err(e) => {
                    tracing::warn!(%channel_id, error = %e, "receipt batch failed; applying it alone")
                }
            }
        }
        outbox::repo::apply_provider_status(
            &state.db,
            &state.listeners,
            channel_id,
            &s.id,
            receipt,
            when,
            error.clone(),
        )
        .await
    };
    let fresh = Utc::now() - when < chrono::Duration::seconds(FRESH_STATUS_SECS);
    let mut result = apply().await?;
    for pause_ms in RECORDED_WAITS_MS {
        if matches!(result, StatusApplied::Known(_)) || !fresh {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(pause_ms)).await;
        result = apply().await?;
    }
    let applied = matches!(result, StatusApplied::Known(_));
    if let StatusApplied::Known(Some(heard)) = &result {
        let (msg, outcome) = heard.as_ref();
        state.listeners.after(state, msg, outcome).await;
    }
    tracing::debug!(%channel_id, status = %s.status, applied, "WhatsApp status");
    // Still unknown: ask for the webhook again. After a few minutes an unknown id is someone
    // else's message on this number, and is ignored.
    if !applied && Utc::now() - when < chrono::Duration::minutes(STATUS_RETRY_MINUTES) {
        return Err(ApiError::unavailable(
            "message-not-recorded-yet",
            "no message with this id yet; send the status again",
            1,
        ));
    }
    Ok(())
}

async fn apply_inbound(
    state: &Outbox,
    owner: &UserId,
    channel_id: &ChannelId,
    m: Inbound,
) -> Result<(), ApiError> {
    let phone = format!("+{}", m.from.trim_start_matches('+'));
    let text = m.text.or(m.button).and_then(|t| t.body).unwrap_or_default();
    let message = InboundMessage {
        owner_id: owner,
        channel_id,
        from: &phone,
        text: &text,
        at: at(m.timestamp.as_deref()),
    };
    state.listeners.inbound(&state.db, &message).await?;
    Ok(())
}
