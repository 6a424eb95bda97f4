//! HTTP side of the fake: the Bot API methods (checks in Telegram's order) and the control endpoints.

use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};

use super::error::ApiError;
use super::markup::ParseMode;
use super::params::{Params, read_params};
use super::state::{Bot, State};
use super::{FileRef, MAX_DOCUMENT_UPLOAD, MAX_PHOTO_UPLOAD, Refusal, SentMessage, lock, updates};

const MAX_TEXT_CHARS: usize = 4096;
const MAX_CAPTION_CHARS: usize = 1024;

type Shared = web::Data<Mutex<State>>;

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/bot{token}/{method}")
            .route(web::get().to(bot_api))
            .route(web::post().to(bot_api)),
    )
    .service(web::resource("/__control/stats").route(web::get().to(control_stats)))
    .service(web::resource("/__control/sent").route(web::get().to(control_sent)))
    .service(web::resource("/__control/reset").route(web::post().to(control_reset)))
    .service(web::resource("/__control/updates").route(web::post().to(control_updates)));
}

/// Default service: Telegram's 404 envelope.
pub(super) async fn not_found() -> HttpResponse {
    ApiError::new(404, "Not Found").respond()
}

async fn control_stats(state: Shared) -> HttpResponse {
    let state = lock(&state);
    HttpResponse::Ok().json(json!({
        "sent": state.sent.len(),
        "rate_limited": state.rate_limited,
        "requests": state.requests,
    }))
}

async fn control_sent(state: Shared) -> HttpResponse {
    let sent = lock(&state).sent.clone();
    HttpResponse::Ok().json(sent)
}

async fn control_reset(state: Shared) -> HttpResponse {
    lock(&state).reset();
    HttpResponse::Ok().json(json!({"ok": true}))
}

#[derive(serde::Deserialize)]
struct ControlUpdate {
    token: String,
    chat_id: i64,
    text: Option<String>,
    blocked: Option<bool>,
}

async fn control_updates(state: Shared, body: web::Json<ControlUpdate>) -> HttpResponse {
    let body = body.into_inner();
    let mut state = lock(&state);
    let result = match (body.text, body.blocked) {
        (Some(text), None) => updates::user_sends(&mut state, &body.token, body.chat_id, &text),
        (None, Some(blocked)) => {
            updates::user_blocks(&mut state, &body.token, body.chat_id, blocked)
        }
        _ => Err("give exactly one of `text` and `blocked`".into()),
    };
    match result {
        Ok(id) => HttpResponse::Ok().json(json!({ "ok": true, "update_id": id })),
        Err(e) => HttpResponse::BadRequest().json(json!({ "ok": false, "description": e })),
    }
}

/// Methods the fake implements (names are case-insensitive).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Method {
    GetMe,
    Send(SendKind),
    GetUpdates,
    SetWebhook,
    DeleteWebhook,
    GetWebhookInfo,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SendKind {
    Message,
    Photo,
    Document,
}

impl Method {
    fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "getme" => Some(Self::GetMe),
            "sendmessage" => Some(Self::Send(SendKind::Message)),
            "sendphoto" => Some(Self::Send(SendKind::Photo)),
            "senddocument" => Some(Self::Send(SendKind::Document)),
            "getupdates" => Some(Self::GetUpdates),
            "setwebhook" => Some(Self::SetWebhook),
            "deletewebhook" => Some(Self::DeleteWebhook),
            "getwebhookinfo" => Some(Self::GetWebhookInfo),
            _ => None,
        }
    }
}

impl SendKind {
    fn method_name(self) -> &'static str {
        match self {
            Self::Message => "sendMessage",
            Self::Photo => "sendPhoto",
            Self::Document => "sendDocument",
        }
    }

    /// Name of the file parameter (`photo` / `document`).
    fn file_field(self) -> &'static str {
        match self {
            Self::Message => "",
            Self::Photo => "photo",
            Self::Document => "document",
        }
    }
}

/// `/bot{token}/{method}` for GET and POST.
async fn bot_api(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
    state: Shared,
) -> HttpResponse {
    let (token, method) = path.into_inner();
    let (latency, jitter) = {
        let state = lock(&state);
        (state.latency, state.jitter)
    };
    let delay = latency + jitter.mul_f64(rand::random::<f64>());
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    // Always drain the body first so that early errors don't reset the connection mid-upload.
    let params = read_params(&req, payload).await;
    let method = Method::parse(&method);
    // getUpdates may wait (long polling), so it runs outside the state lock.
    if method == Some(Method::GetUpdates) {
        let known = lock(&state).bots.contains_key(&token);
        let result = match (known, params) {
            (false, _) => Err(ApiError::new(401, "Unauthorized")),
            (true, Err(e)) => Err(e),
            (true, Ok(params)) => updates::get_updates(&state, &token, &params).await,
        };
        return match result {
            Ok(value) => HttpResponse::Ok().json(json!({ "ok": true, "result": value })),
            Err(err) => err.respond(),
        };
    }
    let result = dispatch(&mut lock(&state), &token, method, params);
    match result {
        Ok(value) => HttpResponse::Ok().json(json!({ "ok": true, "result": value })),
        Err(err) => err.respond(),
    }
}

/// Checks in Telegram's order and runs the method. Runs under the state lock (no await).
fn dispatch(
    state: &mut State,
    token: &str,
    method: Option<Method>,
    params: Result<Params, ApiError>,
) -> Result<Value, ApiError> {
    if let Some(Method::Send(_)) = method {
        state.requests += 1;
        if let Some(status) = state.take_injected_failure() {
            if status == 429 {
                state.rate_limited += 1;
            }
            return Err(ApiError::injected(status));
        }
    }
    let bot = state
        .bots
        .get(token)
        .cloned()
        .ok_or_else(|| ApiError::new(401, "Unauthorized"))?;
    let method = method.ok_or_else(|| ApiError::new(404, "Not Found"))?;
    let params = params?;
    match method {
        Method::GetMe => Ok(json!({
            "id": bot.id,
            "is_bot": true,
            "first_name": bot.username,
            "username": bot.username,
            "can_join_groups": true,
            "can_read_all_group_messages": false,
            "supports_inline_queries": false,
        })),
        Method::Send(kind) => send(state, token, &bot, kind, &params),
        Method::SetWebhook => updates::set_webhook(state, token, &params),
        Method::DeleteWebhook => updates::delete_webhook(state, token, &params),
        Method::GetWebhookInfo => Ok(updates::webhook_info(state, token)),
        Method::GetUpdates => Err(ApiError::new(500, "Internal Server Error")),
    }
}

/// What a valid send carries.
struct Content {
    text: Option<String>,
    caption: Option<String>,
    parse_mode: Option<String>,
    file: Option<FileRef>,
}

fn send(
    state: &mut State,
    token: &str,
    bot: &Bot,
    kind: SendKind,
    params: &Params,
) -> Result<Value, ApiError> {
    let chat_id = parse_chat_id(params.fields.get("chat_id"))?;
    if !state.accept_any_chat && !state.chats.contains(&chat_id) {
        return Err(ApiError::chat_not_found());
    }
    if state.blocked.contains(&chat_id) {
        return Err(ApiError::new(403, "Forbidden: bot was blocked by the user"));
    }
    let content = validate(kind, params)?;
    if let Err(wait) = state.check_rate(token, chat_id) {
        state.rate_limited += 1;
        state.refusals.push(Refusal {
            at: Instant::now(),
            chat_id,
            wait,
        });
        return Err(ApiError::too_many_requests(wait));
    }

    let message_id = state.next_message_id(chat_id);
    let date = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let chat = if chat_id < 0 {
        json!({ "id": chat_id, "type": "group", "title": format!("Fake group {chat_id}") })
    } else {
        json!({ "id": chat_id, "type": "private", "first_name": format!("User {chat_id}") })
    };
    let mut message = json!({
        "message_id": message_id,
        "from": {
            "id": bot.id,
            "is_bot": true,
            "first_name": bot.username,
            "username": bot.username,
        },
        "chat": chat,
        "date": date,
    });
    if let Some(obj) = message.as_object_mut() {
        if let Some(text) = &content.text {
            obj.insert("text".to_owned(), json!(text));
        }
        if let Some(caption) = &content.caption {
            obj.insert("caption".to_owned(), json!(caption));
        }
        if let Some(file) = &content.file {
            let (field, value) = file_json(state, kind, file);
            obj.insert(field.to_owned(), value);
        }
    }

    state.sent.push(SentMessage {
        message_id,
        bot_token: token.to_owned(),
        chat_id,
        method: kind.method_name().to_owned(),
        text: content.text,
        caption: content.caption,
        parse_mode: content.parse_mode,
        file: content.file,
        at: Instant::now(),
    });
    Ok(message)
}

/// `chat_id` as an integer or numeric string; `@username` and anything else is an unknown chat.
fn parse_chat_id(value: Option<&Value>) -> Result<i64, ApiError> {
    match value {
        None | Some(Value::Null) => Err(ApiError::bad_request("chat_id is empty")),
        Some(Value::Number(n)) => n.as_i64().ok_or_else(ApiError::chat_not_found),
        Some(Value::String(s)) if s.trim().is_empty() => {
            Err(ApiError::bad_request("chat_id is empty"))
        }
        Some(Value::String(s)) => s.trim().parse().map_err(|_| ApiError::chat_not_found()),
        Some(_) => Err(ApiError::chat_not_found()),
    }
}

/// Validates the payload of a send (text, caption, parse_mode, file).
fn validate(kind: SendKind, params: &Params) -> Result<Content, ApiError> {
    let parse_mode = params.string("parse_mode").filter(|m| !m.is_empty());
    let mode = parse_mode
        .as_deref()
        .map(|m| ParseMode::parse(m).ok_or_else(|| ApiError::bad_request("unsupported parse_mode")))
        .transpose()?;
    let check_markup = |text: &str| match mode {
        Some(mode) => mode
            .check(text)
            .map_err(|detail| ApiError::bad_request(format!("can't parse entities: {detail}"))),
        None => Ok(()),
    };

    if kind == SendKind::Message {
        let text = params.string("text").unwrap_or_default();
        if text.trim().is_empty() {
            return Err(ApiError::bad_request("message text is empty"));
        }
        check_markup(&text)?;
        if text.chars().count() > MAX_TEXT_CHARS {
            return Err(ApiError::bad_request("message is too long"));
        }
        return Ok(Content {
            text: Some(text),
            caption: None,
            parse_mode,
            file: None,
        });
    }

    let field = kind.file_field();
    let file = params
        .file(field)
        .ok_or_else(|| ApiError::bad_request(format!("there is no {field} in the request")))?;
    if let FileRef::Upload { bytes, .. } = &file {
        let limit = if kind == SendKind::Photo {
            MAX_PHOTO_UPLOAD
        } else {
            MAX_DOCUMENT_UPLOAD
        };
        if *bytes > limit {
            return Err(ApiError::new(413, "Request Entity Too Large"));
        }
    }
    let caption = params.string("caption").filter(|c| !c.is_empty());
    if let Some(caption) = &caption {
        check_markup(caption)?;
        if caption.chars().count() > MAX_CAPTION_CHARS {
            return Err(ApiError::bad_request("message caption is too long"));
        }
    }
    Ok(Content {
        text: None,
        caption,
        parse_mode,
        file: Some(file),
    })
}

/// The `photo` (PhotoSize array) or `document` field of the answered Message.
fn file_json(state: &mut State, kind: SendKind, file: &FileRef) -> (&'static str, Value) {
    let (file_id, file_unique_id) = match file {
        FileRef::FileId(id) => (id.clone(), format!("u{id}")),
        FileRef::Upload { .. } | FileRef::Url(_) => state.next_file_ids(kind.file_field()),
    };
    let mut value = json!({ "file_id": file_id, "file_unique_id": file_unique_id });
    if let Some(obj) = value.as_object_mut() {
        if let FileRef::Upload { filename, bytes } = file {
            obj.insert("file_size".to_owned(), json!(bytes));
            if let (SendKind::Document, Some(name)) = (kind, filename) {
                obj.insert("file_name".to_owned(), json!(name));
            }
        }
        if kind == SendKind::Photo {
            obj.insert("width".to_owned(), json!(1));
            obj.insert("height".to_owned(), json!(1));
        }
    }
    match kind {
        SendKind::Photo => ("photo", json!([value])),
        SendKind::Message | SendKind::Document => ("document", value),
    }
}
