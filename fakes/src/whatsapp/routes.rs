//! HTTP side of the fake: `/messages` and `/media` (checks in the documented order) and the
//! control endpoints.

use std::time::Instant;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::ApiError;
use super::media::{self, Media};
use super::message::{self, Outgoing};
use super::state::State;
use super::webhooks::{self, Accepted};
use super::{Shared, WaSent, WindowMode, error};

type Data = web::Data<Shared>;

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/__control/stats").route(web::get().to(control_stats)))
        .service(web::resource("/__control/sent").route(web::get().to(control_sent)))
        .service(
            web::resource("/__control/webhook_failures")
                .route(web::get().to(control_webhook_failures)),
        )
        .service(web::resource("/__control/reset").route(web::post().to(control_reset)))
        .service(web::resource("/__control/inbound").route(web::post().to(control_inbound)))
        .service(web::resource("/__control/numbers").route(web::post().to(control_numbers)))
        .service(web::resource("/__control/templates").route(web::post().to(control_templates)))
        .service(
            web::resource("/{version}/{phone_number_id}/messages").route(web::post().to(messages)),
        )
        .service(web::resource("/{version}/{phone_number_id}/media").route(web::post().to(upload)));
}

/// Default service: Graph's unknown-path error.
pub(super) async fn not_found(req: HttpRequest) -> HttpResponse {
    ApiError::new(
        error::UNKNOWN_PATH,
        format!("Unknown path components: {}", req.path()),
    )
    .with_status(404)
    .respond()
}

/// `v21.0`, `v23.0`, `v9`, …
fn is_version(version: &str) -> bool {
    version.strip_prefix('v').is_some_and(|rest| {
        !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit() || b == b'.')
    })
}

fn authorization(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}

async fn sleep_latency(data: &Data) {
    let (latency, jitter) = {
        let state = data.state();
        (state.latency, state.jitter)
    };
    let delay = latency + jitter.mul_f64(rand::random::<f64>());
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
}

/// `POST /{version}/{phone_number_id}/messages`.
async fn messages(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: web::Bytes,
    data: Data,
) -> HttpResponse {
    let (version, id) = path.into_inner();
    if !is_version(&version) {
        return not_found(req).await;
    }
    sleep_latency(&data).await;
    let mut state = data.state();
    state.stats.requests += 1;
    match send(&data, &mut state, &id, authorization(&req), &body) {
        Ok(answer) => HttpResponse::Ok().json(answer),
        Err(err) => {
            state.count_rejection(err.code);
            err.respond()
        }
    }
}

/// Checks in order (token, body, injected failure, throughput, pair, window) and accepts.
/// Runs under the state lock (no await).
fn send(
    data: &Shared,
    state: &mut State,
    id: &str,
    authorization: Option<&str>,
    body: &[u8],
) -> Result<Value, ApiError> {
    let number = state.authorize(id, authorization)?;
    let message = message::validate(state, id, body)?;
    if let Some(err) = state.take_injected(id) {
        return Err(err);
    }
    let pair_tat = state.check_limits(id, &message.wa_id)?;
    let window_closed = !message.is_template() && !state.window_open(id, &message.wa_id);
    if window_closed && state.window_mode == WindowMode::SyncError {
        return Err(ApiError::new(
            error::RE_ENGAGEMENT,
            "Message failed to send because more than 24 hours have passed since the customer last replied to this number.",
        ));
    }

    state.consume_limits(id, &message.wa_id, pair_tat);
    let seq = state.next_seq();
    let wamid = webhooks::wamid(&message.wa_id, seq);
    let failed = webhooks::failure_for(state, id, &message);
    match failed {
        Some(error::RE_ENGAGEMENT) => state.stats.failed_131047 += 1,
        Some(_) => state.stats.failed_131026 += 1,
        None => {}
    }
    state.stats.accepted += 1;
    webhooks::schedule_statuses(
        data,
        state,
        &Accepted {
            id,
            number: &number,
            message: &message,
            wamid: &wamid,
            failed,
            seq,
        },
    );
    let answer = json!({
        "messaging_product": "whatsapp",
        "contacts": [{ "input": message.to, "wa_id": message.wa_id }],
        "messages": [{ "id": wamid, "message_status": "accepted" }],
    });
    state.sent.push(record(id, message, wamid, failed));
    Ok(answer)
}

fn record(id: &str, message: Outgoing, wamid: String, failed: Option<i64>) -> WaSent {
    WaSent {
        phone_number_id: id.to_owned(),
        to: message.to,
        wamid,
        kind: message.kind.to_owned(),
        body: message.body,
        template: message.template,
        template_params: message.template_params,
        media_id: message.media_id,
        media_link: message.media_link,
        filename: message.filename,
        failed,
        at: Instant::now(),
    }
}

/// `POST /{version}/{phone_number_id}/media`.
async fn upload(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
    data: Data,
) -> HttpResponse {
    let (version, id) = path.into_inner();
    if !is_version(&version) {
        return not_found(req).await;
    }
    sleep_latency(&data).await;
    // Always drain the body first so that early errors don't reset the connection mid-upload.
    let upload = media::read_upload(&req, payload).await;
    let mut state = data.state();
    let outcome = state
        .authorize(&id, authorization(&req))
        .and(upload)
        .and_then(media::check);
    match outcome {
        Ok(_) => {
            let media_id = format!("{}", 1_000_000_000_000_000 + state.next_seq());
            state.media.insert(
                media_id.clone(),
                Media {
                    phone_number_id: id,
                },
            );
            state.stats.media_uploaded += 1;
            HttpResponse::Ok().json(json!({ "id": media_id }))
        }
        Err(err) => {
            state.stats.media_rejected += 1;
            err.respond()
        }
    }
}

async fn control_stats(data: Data) -> HttpResponse {
    HttpResponse::Ok().json(data.state().stats.clone())
}

/// Sent messages with `at_ms`, milliseconds since the fake started.
async fn control_sent(data: Data) -> HttpResponse {
    let sent = data.state().sent.clone();
    let list: Vec<Value> = sent
        .iter()
        .map(|s| {
            let mut value = json!(s);
            let at_ms = s.at.saturating_duration_since(data.started).as_millis();
            if let Some(obj) = value.as_object_mut() {
                obj.insert(
                    "at_ms".to_owned(),
                    json!(u64::try_from(at_ms).unwrap_or(u64::MAX)),
                );
            }
            value
        })
        .collect();
    HttpResponse::Ok().json(list)
}

async fn control_webhook_failures(data: Data) -> HttpResponse {
    HttpResponse::Ok().json(data.state().webhook_failures.clone())
}

async fn control_reset(data: Data) -> HttpResponse {
    data.state().reset();
    HttpResponse::Ok().json(json!({ "ok": true }))
}

#[derive(Deserialize)]
struct ControlInbound {
    phone_number_id: String,
    from: String,
    text: String,
}

async fn control_inbound(data: Data, body: web::Json<ControlInbound>) -> HttpResponse {
    let body = body.into_inner();
    match webhooks::inbound(&data, &body.phone_number_id, &body.from, &body.text).await {
        Ok(()) => HttpResponse::Ok().json(json!({ "ok": true })),
        Err(e) => HttpResponse::BadRequest().json(json!({ "ok": false, "error": e })),
    }
}

#[derive(Deserialize)]
struct ControlNumber {
    phone_number_id: String,
    access_token: String,
    app_secret: String,
    webhook_url: Option<String>,
}

async fn control_numbers(data: Data, body: web::Json<ControlNumber>) -> HttpResponse {
    let body = body.into_inner();
    let mut state = data.state();
    state.add_number(&body.phone_number_id, &body.access_token, &body.app_secret);
    if let Some(url) = &body.webhook_url {
        state.set_webhook(&body.phone_number_id, url);
    }
    HttpResponse::Ok().json(json!({ "ok": true }))
}

#[derive(Deserialize)]
struct ControlTemplate {
    name: String,
    language: String,
    body_params: usize,
}

async fn control_templates(data: Data, body: web::Json<ControlTemplate>) -> HttpResponse {
    let body = body.into_inner();
    data.state()
        .templates
        .insert((body.name, body.language), body.body_params);
    HttpResponse::Ok().json(json!({ "ok": true }))
}
