//! Updates in the fake: a queue per bot served by `getUpdates` (long polling, `offset`
//! confirmation, 409 for a second poller or while a webhook is set) or pushed to the bot's
//! webhook with `X-Telegram-Bot-Api-Secret-Token`, retried until it answers 2xx.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::error::ApiError;
use super::lock;
use super::params::Params;
use super::state::State;

/// How often a waiting `getUpdates` and the webhook pusher look at the queues.
const TICK: Duration = Duration::from_millis(20);
/// Longest long-poll the fake honours (Telegram allows 50 s).
const MAX_TIMEOUT_SECS: u64 = 50;

/// A bot's registered webhook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Webhook {
    /// Where updates are POSTed.
    pub url: String,
    /// Echoed in `X-Telegram-Bot-Api-Secret-Token`.
    pub secret_token: Option<String>,
}

/// Per-bot update state.
#[derive(Default)]
pub(super) struct BotUpdates {
    queue: VecDeque<Value>,
    next_update_id: i64,
    pub(super) webhook: Option<Webhook>,
    /// Bumped by every `getUpdates`; a waiting call that sees a newer one answers 409.
    poll_generation: u64,
    /// The pusher waits until then after a failed webhook call.
    retry_at: Option<Instant>,
    failures_in_a_row: u32,
    last_error: Option<String>,
}

/// Webhook counters.
#[derive(Default, Clone, Copy, Debug)]
pub(super) struct WebhookStats {
    pub(super) delivered: usize,
    pub(super) failed: usize,
}

impl State {
    fn bot_updates(&mut self, token: &str) -> &mut BotUpdates {
        self.updates
            .entry(token.to_owned())
            .or_insert_with(|| BotUpdates {
                next_update_id: 100_000_001,
                ..BotUpdates::default()
            })
    }

    /// Queues `update` (its `update_id` is assigned here).
    pub(super) fn push_update(&mut self, token: &str, mut update: Value) -> i64 {
        let bot = self.bot_updates(token);
        let id = bot.next_update_id;
        bot.next_update_id += 1;
        if let Some(obj) = update.as_object_mut() {
            obj.insert("update_id".into(), json!(id));
        }
        bot.queue.push_back(update);
        id
    }

    pub(super) fn pending_updates(&self, token: &str) -> usize {
        self.updates.get(token).map_or(0, |b| b.queue.len())
    }

    pub(super) fn webhook(&self, token: &str) -> Option<Webhook> {
        self.updates.get(token).and_then(|b| b.webhook.clone())
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn chat_json(chat_id: i64) -> Value {
    if chat_id < 0 {
        json!({ "id": chat_id, "type": "group", "title": format!("Fake group {chat_id}") })
    } else {
        json!({ "id": chat_id, "type": "private", "first_name": format!("User {chat_id}") })
    }
}

fn user_json(chat_id: i64) -> Value {
    json!({ "id": chat_id.abs(), "is_bot": false, "first_name": format!("User {}", chat_id.abs()) })
}

/// The update a chat user produces by sending `text` to the bot.
pub(super) fn message_update(message_id: i64, chat_id: i64, text: &str) -> Value {
    let mut message = json!({
        "message_id": message_id,
        "from": user_json(chat_id),
        "chat": chat_json(chat_id),
        "date": now_secs(),
        "text": text,
    });
    if text.starts_with('/')
        && let Some(obj) = message.as_object_mut()
    {
        let len = text
            .split_whitespace()
            .next()
            .map_or(0, |c| c.encode_utf16().count());
        obj.insert(
            "entities".into(),
            json!([{ "type": "bot_command", "offset": 0, "length": len }]),
        );
    }
    json!({ "message": message })
}

/// `my_chat_member`: the bot's status in `chat_id` went from `old` to `new`.
pub(super) fn member_update(bot: &Value, chat_id: i64, old: &str, new: &str) -> Value {
    json!({ "my_chat_member": {
        "chat": chat_json(chat_id),
        "from": user_json(chat_id),
        "date": now_secs(),
        "old_chat_member": { "user": bot, "status": old },
        "new_chat_member": { "user": bot, "status": new },
    }})
}

fn int_param(params: &Params, key: &str) -> Result<Option<i64>, ApiError> {
    match params.string(key) {
        None => Ok(None),
        Some(s) if s.trim().is_empty() => Ok(None),
        Some(s) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| ApiError::bad_request(format!("field \"{key}\" must be a Number"))),
    }
}

/// `getUpdates`: confirms everything below `offset`, then answers at once with what is queued
/// or waits up to `timeout` seconds for something.
pub(super) async fn get_updates(
    shared: &Mutex<State>,
    token: &str,
    params: &Params,
) -> Result<Value, ApiError> {
    let offset = int_param(params, "offset")?;
    let limit = int_param(params, "limit")?.unwrap_or(100).clamp(1, 100);
    let timeout = int_param(params, "timeout")?.unwrap_or(0).max(0);
    let timeout = Duration::from_secs(u64::try_from(timeout).unwrap_or(0).min(MAX_TIMEOUT_SECS));
    let generation = {
        let mut state = lock(shared);
        let bot = state.bot_updates(token);
        if bot.webhook.is_some() {
            return Err(ApiError::new(
                409,
                "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first",
            ));
        }
        if let Some(offset) = offset {
            while bot
                .queue
                .front()
                .and_then(|u| u["update_id"].as_i64())
                .is_some_and(|id| id < offset)
            {
                bot.queue.pop_front();
            }
        }
        bot.poll_generation += 1;
        bot.poll_generation
    };
    let deadline = Instant::now() + timeout;
    loop {
        {
            let mut state = lock(shared);
            let bot = state.bot_updates(token);
            if bot.poll_generation != generation {
                return Err(ApiError::new(
                    409,
                    "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running",
                ));
            }
            if bot.webhook.is_some() {
                return Err(ApiError::new(409, "Conflict: webhook was set"));
            }
            let batch: Vec<Value> = bot
                .queue
                .iter()
                .take(usize::try_from(limit).unwrap_or(100))
                .cloned()
                .collect();
            if !batch.is_empty() || Instant::now() >= deadline {
                return Ok(Value::Array(batch));
            }
        }
        tokio::time::sleep(TICK).await;
    }
}

/// `setWebhook` (an empty `url` removes it).
pub(super) fn set_webhook(
    state: &mut State,
    token: &str,
    params: &Params,
) -> Result<Value, ApiError> {
    let url = params.string("url").unwrap_or_default();
    let url = url.trim();
    if url.is_empty() {
        return delete_webhook(state, token, params);
    }
    let insecure_ok = state.allow_insecure_webhooks;
    let allowed = if let Some(rest) = url.strip_prefix("https://") {
        let host = rest.split('/').next().unwrap_or_default();
        let port = host.rsplit_once(':').map_or("443", |(_, p)| p);
        matches!(port, "443" | "80" | "88" | "8443") || insecure_ok
    } else {
        insecure_ok && url.starts_with("http://")
    };
    if !allowed {
        return Err(ApiError::bad_request(
            "bad webhook: An HTTPS URL must be provided for webhook",
        ));
    }
    let secret = params.string("secret_token").filter(|s| !s.is_empty());
    if let Some(secret) = &secret
        && (secret.len() > 256
            || !secret
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'))
    {
        return Err(ApiError::bad_request(
            "secret token contains unallowed characters",
        ));
    }
    let drop_pending = params.string("drop_pending_updates").as_deref() == Some("true");
    let bot = state.bot_updates(token);
    if drop_pending {
        bot.queue.clear();
    }
    bot.webhook = Some(Webhook {
        url: url.to_owned(),
        secret_token: secret,
    });
    bot.retry_at = None;
    bot.failures_in_a_row = 0;
    Ok(json!(true))
}

/// `deleteWebhook`.
pub(super) fn delete_webhook(
    state: &mut State,
    token: &str,
    params: &Params,
) -> Result<Value, ApiError> {
    let drop_pending = params.string("drop_pending_updates").as_deref() == Some("true");
    let bot = state.bot_updates(token);
    bot.webhook = None;
    if drop_pending {
        bot.queue.clear();
    }
    Ok(json!(true))
}

/// `getWebhookInfo`.
pub(super) fn webhook_info(state: &mut State, token: &str) -> Value {
    let bot = state.bot_updates(token);
    let mut info = json!({
        "url": bot.webhook.as_ref().map(|w| w.url.clone()).unwrap_or_default(),
        "has_custom_certificate": false,
        "pending_update_count": bot.queue.len(),
    });
    if let (Some(err), Some(obj)) = (&bot.last_error, info.as_object_mut()) {
        obj.insert("last_error_message".into(), json!(err));
        obj.insert("last_error_date".into(), json!(now_secs()));
    }
    info
}

/// Pushes queued updates to webhooks, one at a time per bot, in order; a non-2xx answer or a
/// network error is retried with a growing pause, as Telegram does.
pub(super) async fn push_webhooks(shared: Arc<Mutex<State>>) {
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
    {
        Ok(c) => c,
        Err(_) => return,
    };
    loop {
        let due: Vec<(String, Webhook, Value)> = {
            let state = lock(&shared);
            let now = Instant::now();
            state
                .updates
                .iter()
                .filter_map(|(token, bot)| {
                    let hook = bot.webhook.clone()?;
                    let update = bot.queue.front()?.clone();
                    bot.retry_at
                        .is_none_or(|t| t <= now)
                        .then(|| (token.clone(), hook, update))
                })
                .collect()
        };
        for (token, hook, update) in due {
            let mut req = client.post(&hook.url).json(&update);
            if let Some(secret) = &hook.secret_token {
                req = req.header("X-Telegram-Bot-Api-Secret-Token", secret);
            }
            let outcome = match req.send().await {
                Ok(res) if res.status().is_success() => Ok(()),
                Ok(res) => Err(format!("Wrong response from the webhook: {}", res.status())),
                Err(e) => Err(format!("Connection failed: {}", e.without_url())),
            };
            let mut state = lock(&shared);
            match outcome {
                Ok(()) => state.webhook_stats.delivered += 1,
                Err(_) => state.webhook_stats.failed += 1,
            }
            let bot = state.bot_updates(&token);
            let id = update["update_id"].as_i64();
            match outcome {
                Ok(()) => {
                    if bot.queue.front().and_then(|u| u["update_id"].as_i64()) == id {
                        bot.queue.pop_front();
                    }
                    bot.retry_at = None;
                    bot.failures_in_a_row = 0;
                }
                Err(e) => {
                    bot.failures_in_a_row += 1;
                    let pause =
                        Duration::from_millis(100 * u64::from(bot.failures_in_a_row.min(10)));
                    bot.retry_at = Some(Instant::now() + pause);
                    bot.last_error = Some(e);
                }
            }
        }
        tokio::time::sleep(TICK).await;
    }
}

/// Control-side helpers shared by the Rust API and `/__control/updates`.
pub(super) fn user_sends(
    state: &mut State,
    token: &str,
    chat_id: i64,
    text: &str,
) -> Result<i64, String> {
    if !state.bots.contains_key(token) {
        return Err("unknown bot token".into());
    }
    // Writing to the bot makes the chat known (and, in private chats, unblocks nothing).
    state.chats.insert(chat_id);
    let message_id = state.next_message_id(chat_id);
    Ok(state.push_update(token, message_update(message_id, chat_id, text)))
}

/// The chat user blocks (`blocked = true`) or unblocks the bot.
pub(super) fn user_blocks(
    state: &mut State,
    token: &str,
    chat_id: i64,
    blocked: bool,
) -> Result<i64, String> {
    let Some(bot) = state.bots.get(token).cloned() else {
        return Err("unknown bot token".into());
    };
    state.chats.insert(chat_id);
    let (old, new) = if blocked {
        state.blocked.insert(chat_id);
        ("member", "kicked")
    } else {
        state.blocked.remove(&chat_id);
        ("kicked", "member")
    };
    let bot_json = json!({ "id": bot.id, "is_bot": true, "first_name": bot.username, "username": bot.username });
    Ok(state.push_update(token, member_update(&bot_json, chat_id, old, new)))
}

/// Used by `State::new`.
pub(super) fn empty() -> HashMap<String, BotUpdates> {
    HashMap::new()
}
