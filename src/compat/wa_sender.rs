//! The WhatsApp Message Sender's paths, unchanged for its dashboard: `/dashboard/*` (the native
//! dashboard's views), `POST /send-messages` (a CSV and a text become contacts and a campaign),
//! `GET /connection-status` and `DELETE /cache/user`, authenticated like the API.
use std::io::Read;

use actix_web::{HttpResponse, delete, get, post, web};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::domain::{CampaignId, ChannelId};
use crate::{
    auth::Caller,
    campaigns::{self, Audience, NewCampaign},
    channels,
    contacts::csv_reader,
    dashboard::{self, DashboardView, ViewQuery},
    domain::ChannelStatus,
    error::ApiError,
    outbox::stats,
    state::AppState,
};

/// Rows `/send-messages` takes in one CSV; bigger lists go through contact imports and campaigns.
const SEND_MESSAGES_MAX_ROWS: usize = 10_000;

/// Mounts the WhatsApp sender's paths at the root, authenticated like the API.
pub fn configure(cfg: &mut crate::mount::Routes) {
    cfg.service(dashboard_view)
        .service(send_messages)
        .service(connection_status)
        .service(clear_cache);
}

/// One of the dashboard's views, as `GET /api/v1/dashboard/{view}` answers it.
#[utoipa::path(
    tag = "wa-sender",
    params(
        ("view" = String, Path, description = "`current-month`, `timeline`, `by-group` or `by-contact`"),
        ViewQuery,
    ),
    responses(
        (status = 200, description = "The view", body = DashboardView),
        (status = 400, description = "`invalid-month`, `invalid-query`"),
        (status = 403, description = "`insufficient-scope`: an API key without `read`"),
        (status = 404, description = "`route-not-found`: no such view"),
    )
)]
#[get(
    "/dashboard/{view}",
    wrap = "actix_web::middleware::from_fn(crate::auth::authenticate)"
)]
async fn dashboard_view(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    q: web::Query<ViewQuery>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(dashboard::render(&state, &caller, &path, &q).await?))
}

/// `GET /connection-status`'s answer.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = WaConnectionStatus)]
struct ConnectionStatus {
    /// Whether the number can send now.
    connected: bool,
    /// A Cloud number's status (`active`, `unauthorized`, `error`); a WhatsApp Web session's
    /// state (`pairing`, `connected`, `reconnecting`, `logged_out`, `replaced`, `failed`,
    /// `standby`, `starting`); or `not-configured`.
    state: String,
    /// Why the number is not connected; without a number, how to register one.
    detail: Option<String>,
    /// The number's channel account (absent without a number).
    #[serde(skip_serializing_if = "Option::is_none")]
    channel_id: Option<ChannelId>,
    /// The channel's kind (`whatsapp_web` or `whatsapp_cloud`).
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<String>,
    /// Meta's phone number id (Cloud numbers only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    phone_number_id: Option<Option<String>>,
    /// The linked phone, E.164 (WhatsApp Web, once paired).
    phone: Option<String>,
    /// The pairing QR as an SVG data URL while a WhatsApp Web session waits for a scan; null
    /// otherwise (Cloud numbers connect without one).
    #[serde(rename = "qrUrl")]
    qr_url: Option<String>,
    /// The 8-character code to type on the phone, when pairing by phone number.
    #[serde(rename = "pairCode", skip_serializing_if = "Option::is_none")]
    pair_code: Option<String>,
}

/// `GET /connection-status?channel_id=`.
#[derive(Deserialize, utoipa::IntoParams)]
struct StatusQuery {
    /// Which number, when the caller has several (default: the first WhatsApp Web number, else
    /// the first Cloud number).
    channel_id: Option<ChannelId>,
}

/// The caller's WhatsApp number: connected or not, and the QR to scan while pairing.
#[utoipa::path(
    tag = "wa-sender",
    params(StatusQuery),
    responses(
        (status = 200, description = "The number's state", body = ConnectionStatus),
        (status = 403, description = "`insufficient-scope`: an API key without `read`"),
        (status = 404, description = "`channel-not-found`: `channel_id` names no WhatsApp number of the caller"),
    )
)]
#[get(
    "/connection-status",
    wrap = "actix_web::middleware::from_fn(crate::auth::authenticate)"
)]
async fn connection_status(
    state: web::Data<AppState>,
    caller: Caller,
    q: web::Query<StatusQuery>,
) -> Result<HttpResponse, ApiError> {
    let rows = channels::repo::list_for(&state.db, &caller.user_id).await?;
    let mut numbers: Vec<_> = rows
        .into_iter()
        .filter(|r| is_phone_channel(&state, &r.kind))
        .collect();
    // The seed's users connect by QR: a WhatsApp Web number comes first.
    numbers.sort_by_key(|r| r.kind != channels::whatsapp_web::KIND);
    let number = match &q.channel_id {
        Some(id) => Some(numbers.into_iter().find(|r| &r.id == id).ok_or_else(|| {
            ApiError::NotFound(
                "channel-not-found",
                "no WhatsApp number of yours has this id".into(),
            )
        })?),
        None => numbers.into_iter().next(),
    };
    Ok(HttpResponse::Ok().json(match number {
        Some(n) if n.kind == channels::whatsapp_web::KIND => {
            let v = channels::whatsapp_web::current_view(
                &state.web_sessions,
                &state.db,
                &state.cipher,
                &n.id,
            )
            .await;
            ConnectionStatus {
                connected: v.state == channels::whatsapp_web::SessionState::Connected,
                state: serde_json::to_value(v.state)
                    .ok()
                    .and_then(|s| s.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                detail: v.detail,
                channel_id: Some(n.id),
                kind: Some(n.kind),
                phone_number_id: None,
                phone: v.phone,
                qr_url: v.qr_url,
                pair_code: v.pair_code,
            }
        }
        Some(n) => ConnectionStatus {
            connected: n.status == ChannelStatus::Active.as_str(),
            state: n.status,
            detail: n.status_detail,
            channel_id: Some(n.id),
            kind: Some(n.kind),
            phone_number_id: Some(n.external_id),
            phone: None,
            qr_url: None,
            pair_code: None,
        },
        None => ConnectionStatus {
            connected: false,
            state: "not-configured".into(),
            detail: Some(
                "connect a number with POST /api/v1/channels: {\"kind\": \"whatsapp_web\"} to scan a QR, or a WhatsApp Cloud API number"
                    .into(),
            ),
            channel_id: None,
            kind: None,
            phone_number_id: None,
            phone: None,
            qr_url: None,
            pair_code: None,
        },
    }))
}

/// `DELETE /cache/user`'s answer.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = WaCacheCleared)]
struct CacheCleared {
    /// Always true.
    success: bool,
    /// Rollup rows replaced.
    #[serde(rename = "deletedKeys")]
    deleted_keys: u64,
}

/// Rebuild the caller's dashboard rollups from the ledger.
#[utoipa::path(
    tag = "wa-sender",
    responses(
        (status = 200, description = "Rebuilt", body = CacheCleared),
        (status = 403, description = "`read-only-role`, `insufficient-scope`, `csrf-failed`"),
    )
)]
#[delete(
    "/cache/user",
    wrap = "actix_web::middleware::from_fn(crate::auth::authenticate)"
)]
async fn clear_cache(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    caller.ensure_can_write()?;
    let replaced = stats::rebuild(&state.db, &caller.user_id).await?;
    Ok(HttpResponse::Ok().json(CacheCleared {
        success: true,
        deleted_keys: replaced,
    }))
}

/// Multipart part names the seed's forms used for the file sent with every message.
const MEDIA_PARTS: [&str; 6] = ["media", "image", "video", "audio", "document", "attachment"];

/// The form of `POST /send-messages`.
#[derive(utoipa::ToSchema)]
#[schema(as = WaSendMessagesForm)]
#[allow(dead_code)]
struct SendMessagesForm {
    /// The contacts CSV (also accepted as `csv`), at most 10,000 rows.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    /// The text, with `{{ variables }}` from the CSV's columns.
    message: String,
    /// The number to send from (default: the caller's first WhatsApp number).
    channel_id: Option<String>,
    /// The campaign's name (default `Envío <date>`).
    name: Option<String>,
    /// A file to send with every message (also accepted as `image`, `video`, `audio`,
    /// `document` or `attachment`), with its Content-Type; checked against the number's
    /// media limits.
    #[schema(value_type = Option<String>, format = Binary)]
    media: Option<Vec<u8>>,
}

/// `POST /send-messages`'s answer.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = WaSendMessagesResult)]
struct SendMessagesAnswer {
    /// Always true.
    success: bool,
    /// The campaign started.
    #[serde(rename = "campaignId")]
    campaign_id: CampaignId,
    /// Recipients queued.
    queued: i64,
    /// Recipients skipped (a variable missing).
    skipped: i64,
    /// CSV rows refused (no valid phone).
    #[serde(rename = "invalidRows")]
    invalid_rows: usize,
}

/// Send a text to the contacts of a CSV: upserts them and starts a campaign to them.
///
/// Multipart: `file` = contacts CSV, `message` = text with variables, optional `channel_id`,
/// `name`, and a file to send with the message as `media` (or `image`, `video`, `audio`,
/// `document`, `attachment`), checked against the number's media limits.
#[utoipa::path(
    tag = "wa-sender",
    params(("Idempotency-Key" = Option<String>, Header, description = "Same key, route and body within 24 h: the first answer again (Idempotent-Replayed: true)")),
    request_body(content = SendMessagesForm, content_type = "multipart/form-data"),
    responses(
        (status = 200, description = "The campaign started", body = SendMessagesAnswer),
        (status = 400, description = "`invalid-multipart`, `file-required`, `message-required`, `too-many-files`, `missing-content-type`, `invalid-idempotency-key`"),
        (status = 403, description = "`read-only-role`, `insufficient-scope`, `csrf-failed`"),
        (status = 404, description = "`channel-not-found`, `template-not-found`, `media-not-found`"),
        (status = 409, description = "`channel-deleted`, `idempotency-key-reused`, `idempotency-key-in-use`"),
        (status = 413, description = "`payload-too-large`: a field over the upload limit, or more than 10,000 rows"),
        (status = 422, description = "`no-whatsapp-number`, `invalid-csv`, `no-valid-rows`, `unsupported-media-type-for-channel`, `content-type-mismatch`, `empty-upload`, `invalid-filename`, `body-too-long`, `invalid-template`, `audience-too-large`"),
        (status = 503, description = "`media-store-unavailable`"),
    )
)]
#[post(
    "/send-messages",
    wrap = "actix_web::middleware::from_fn(crate::idempotency::middleware)",
    wrap = "actix_web::middleware::from_fn(crate::auth::audit::middleware)",
    wrap = "actix_web::middleware::from_fn(crate::auth::authenticate)"
)]
async fn send_messages(
    state: web::Data<AppState>,
    caller: Caller,
    mut payload: actix_multipart::Multipart,
) -> Result<HttpResponse, ApiError> {
    caller.ensure_can_write()?;
    let max = state.settings.media.max_upload_bytes;
    let (mut csv, mut message, mut channel_id, mut name) = (None, None, None, None);
    let mut media = None;
    while let Some(field) = payload.next().await {
        let mut field =
            field.map_err(|e| ApiError::BadRequest("invalid-multipart", e.to_string()))?;
        let field_name = field.name().unwrap_or_default().to_owned();
        let (content_type, filename) = (
            field.content_type().cloned(),
            field
                .content_disposition()
                .and_then(|cd| cd.get_filename())
                .map(str::to_owned),
        );
        let mut bytes = Vec::new();
        while let Some(chunk) = field.next().await {
            let chunk =
                chunk.map_err(|e| ApiError::BadRequest("invalid-multipart", e.to_string()))?;
            if bytes.len() + chunk.len() > max {
                return Err(ApiError::PayloadTooLarge(format!(
                    "a field may have at most {max} bytes"
                )));
            }
            bytes.extend_from_slice(&chunk);
        }
        let text = || String::from_utf8_lossy(&bytes).trim().to_owned();
        match field_name.as_str() {
            "file" | "csv" => csv = Some(bytes),
            "message" => message = Some(text()),
            // An HTML form sends its empty fields too: blank means not given.
            "channel_id" => {
                channel_id = Some(text()).filter(|t| !t.is_empty()).map(ChannelId::from)
            }
            "name" => name = Some(text()).filter(|t| !t.is_empty()),
            part if MEDIA_PARTS.contains(&part) => {
                if media.is_some() {
                    return Err(ApiError::BadRequest(
                        "too-many-files",
                        "send one file with the message".into(),
                    ));
                }
                let content_type = content_type.ok_or_else(|| {
                    ApiError::BadRequest(
                        "missing-content-type",
                        format!("the `{part}` part needs a Content-Type"),
                    )
                })?;
                media = Some((content_type, filename, bytes));
            }
            _ => {}
        }
    }
    let csv = csv.ok_or_else(|| {
        ApiError::BadRequest("file-required", "send the contacts CSV as `file`".into())
    })?;
    let message = message.filter(|m| !m.is_empty()).ok_or_else(|| {
        ApiError::BadRequest("message-required", "send the text as `message`".into())
    })?;
    let channel_id = match channel_id {
        Some(id) => id,
        None => channels::repo::list_for(&state.db, &caller.user_id)
            .await?
            .into_iter()
            .find(|r| is_phone_channel(&state, &r.kind))
            .map(|r| r.id)
            .ok_or_else(|| {
                ApiError::Unprocessable(
                    "no-whatsapp-number",
                    "connect a WhatsApp number first (POST /api/v1/channels)".into(),
                )
            })?,
    };
    let region = csv_reader::region(&state.settings.contacts.default_region).ok_or_else(|| {
        ApiError::Unexpected(anyhow::anyhow!("contacts.default_region is invalid"))
    })?;
    let (rows, refused) = read_csv(&csv, region)?;
    if rows.is_empty() {
        return Err(ApiError::Unprocessable(
            "no-valid-rows",
            format!("no row of the CSV has a valid phone ({refused} refused)"),
        ));
    }
    let media_id = match media {
        None => None,
        Some((content_type, filename, bytes)) => {
            // Checked against the number's own limits (WhatsApp: 5 MB images, 16 MB video …),
            // and only once the CSV is known to be good, so a refused send stores no file.
            let kind = channels::repo::find_owned(&state.db, &caller.user_id, &channel_id)
                .await?
                .map(|r| r.kind)
                .ok_or_else(|| {
                    ApiError::NotFound("channel-not-found", format!("no channel `{channel_id}`"))
                })?;
            let body = futures::stream::iter([Ok::<_, String>(bytes::Bytes::from(bytes))]);
            let row = crate::media::service::upload(
                &state,
                &caller,
                Some(&kind),
                &content_type,
                filename,
                body,
            )
            .await?;
            Some(row.id)
        }
    };
    let now = state.clock.now();
    let source = "send-messages";
    for chunk in rows.chunks(crate::contacts::repo::BATCH_ROWS) {
        crate::contacts::repo::upsert(&state.db, &caller.user_id, chunk, source, now).await?;
    }
    let phones: Vec<String> = rows.iter().map(|r| r.phone.to_string()).collect();
    let mut ids = Vec::with_capacity(phones.len());
    for chunk in phones.chunks(crate::contacts::repo::BATCH_ROWS) {
        ids.extend(crate::contacts::repo::ids_of_phones(&state.db, &caller.user_id, chunk).await?);
    }
    let campaign = NewCampaign {
        name: name.unwrap_or_else(|| format!("Envío {}", now.format("%Y-%m-%d %H:%M"))),
        channel_id,
        template_id: None,
        body: Some(message),
        media_id,
        provider_template: None,
        audience: Audience {
            groups: Vec::new(),
            contact_ids: ids,
        },
        scheduled_at: None,
        send_window: None,
        start: true,
        skip_missing: true,
    };
    caller.ensure_can_write()?;
    match campaigns::create(&state, &caller, campaign).await {
        Ok(row) => Ok(HttpResponse::Ok().json(SendMessagesAnswer {
            success: true,
            campaign_id: row.id,
            queued: row.pending + row.queued,
            skipped: row.skipped,
            invalid_rows: refused,
        })),
        Err(e) => e.respond(),
    }
}

fn read_csv(
    mut bytes: &[u8],
    region: phonenumber::country::Id,
) -> Result<(Vec<csv_reader::ContactRow>, usize), ApiError> {
    let reader = csv_reader::ContactsCsv::new(bytes.by_ref(), region)
        .map_err(|e| ApiError::Unprocessable("invalid-csv", e.to_string()))?;
    let (mut rows, mut refused) = (Vec::new(), 0);
    for (_, row) in reader {
        match row {
            Ok(r) => rows.push(r),
            Err(_) => refused += 1,
        }
        if rows.len() + refused > SEND_MESSAGES_MAX_ROWS {
            return Err(ApiError::PayloadTooLarge(format!(
                "/send-messages takes at most {SEND_MESSAGES_MAX_ROWS} rows; import bigger lists with \
                 POST /api/v1/contacts/imports and send a campaign to their group"
            )));
        }
    }
    Ok((rows, refused))
}

/// Whether accounts of `kind` send to phone numbers (the seed sender's "WhatsApp number").
fn is_phone_channel(state: &AppState, kind: &str) -> bool {
    state
        .adapters
        .get(kind)
        .is_some_and(|a| a.address() == crate::channels::Address::Phone)
}
