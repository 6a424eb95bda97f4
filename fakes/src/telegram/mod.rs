//! Stateful fake of the Telegram Bot API (CHANNELS.md §1).
//!
//! [`FakeTelegram::start`] binds an actix-web server on `127.0.0.1` (random port) that answers
//! `{base_url}/bot{token}/{method}` for `getMe`, `sendMessage`, `sendPhoto` and `sendDocument`
//! with Telegram's envelope (`{"ok":true,"result":..}` / `{"ok":false,"error_code":..}`, HTTP
//! status equal to `error_code`). It keeps every accepted send, applies Telegram-like rate limits
//! with `governor`, and lets tests inject failures, latency and blocked chats.
//!
//! It also keeps a queue of updates per bot, fed by the test ("a user sends `/start`", "a user
//! blocks the bot") and served by `getUpdates` (long polling, offsets, 409 for a second poller or
//! while a webhook is set) or pushed to a webhook set with `setWebhook` (with its secret token,
//! retried until answered 2xx).
//!
//! Control endpoints for out-of-process use (benchmarks): `GET /__control/stats`,
//! `GET /__control/sent`, `POST /__control/reset`, `POST /__control/updates`
//! (`{"token","chat_id","text"}` or `{"token","chat_id","blocked":bool}`).

mod error;
mod markup;
mod params;
mod routes;
mod state;
#[cfg(test)]
mod tests;
mod updates;

use std::fmt;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use actix_web::{App, HttpServer, dev::ServerHandle, web};
use serde::Serialize;

use state::State;
pub use updates::Webhook;

/// Largest accepted multipart photo upload (10 MiB); larger answers 413.
pub const MAX_PHOTO_UPLOAD: usize = 10 * 1024 * 1024;
/// Largest accepted multipart upload for other files (50 MiB); larger answers 413.
pub const MAX_DOCUMENT_UPLOAD: usize = 50 * 1024 * 1024;
/// Largest accepted request body (non-multipart bodies are buffered up to this size).
const BODY_LIMIT: usize = 64 * 1024 * 1024;

/// Rate limits enforced by the fake (Telegram's FAQ: ~30 msg/s per bot, ~1 msg/s per chat,
/// 20 msg/min per group, short bursts tolerated).
///
/// A rate of `0` disables that bucket; a burst of `0` is treated as `1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Sends per second per bot token, all chats together.
    pub bot_per_sec: u32,
    /// Burst size of the per-bot bucket.
    pub bot_burst: u32,
    /// Sends per second per (bot, private chat).
    pub chat_per_sec: u32,
    /// Burst size of the per-private-chat bucket.
    pub chat_burst: u32,
    /// Sends per minute per (bot, group chat) (chat ids < 0).
    pub group_per_min: u32,
    /// Burst size of the per-group bucket.
    pub group_burst: u32,
    /// How the limits are counted: token buckets with the bursts above (the default), or
    /// sliding windows at arrival with no burst at all (see [`Counting::Windows`]).
    pub counting: Counting,
}

/// How [`Limits`] are counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Counting {
    /// GCRA buckets (`governor`) with the configured bursts: Telegram's "bursts are tolerated".
    #[default]
    Buckets,
    /// The strictest reading of Telegram's FAQ, counted when a request arrives (accepted sends
    /// only): at most `bot_per_sec` sends of one bot in any 1 s window, at least
    /// `1 / chat_per_sec` s between two sends to one private chat, at most `group_per_min` sends
    /// to one group in any 60 s window. Bursts are ignored.
    Windows,
}

impl Limits {
    /// Telegram's documented limits counted in sliding windows at arrival (30 per bot per
    /// second, 1 s between two sends to a private chat, 20 per group per minute).
    pub fn at_arrival() -> Self {
        Self {
            counting: Counting::Windows,
            ..Self::default()
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            bot_per_sec: 30,
            bot_burst: 5,
            chat_per_sec: 1,
            chat_burst: 2,
            group_per_min: 20,
            group_burst: 3,
            counting: Counting::Buckets,
        }
    }
}

/// Configuration of a [`FakeTelegram`].
#[derive(Clone, Debug, Default)]
pub struct FakeTelegramConfig {
    /// Rate limits (see [`Limits`]).
    pub limits: Limits,
    /// When true, sends to chats never registered with [`FakeTelegram::add_chat`] are accepted
    /// (instead of `400 Bad Request: chat not found`).
    pub accept_any_chat: bool,
    /// When true, `setWebhook` also takes `http://` URLs and any port (Telegram requires HTTPS
    /// on 443, 80, 88 or 8443), so tests can point webhooks at a loopback server.
    pub allow_insecure_webhooks: bool,
}

/// One accepted `send*` call, in acceptance order.
#[derive(Clone, Debug, Serialize)]
pub struct SentMessage {
    /// Message id given in the answer (per chat, increasing from 1).
    pub message_id: i64,
    /// Token of the bot that sent it.
    pub bot_token: String,
    /// Target chat.
    pub chat_id: i64,
    /// Canonical method name: `sendMessage`, `sendPhoto` or `sendDocument`.
    pub method: String,
    /// `text` of a `sendMessage`.
    pub text: Option<String>,
    /// `caption` of a `sendPhoto` / `sendDocument`.
    pub caption: Option<String>,
    /// `parse_mode` as sent by the client.
    pub parse_mode: Option<String>,
    /// The photo or document.
    pub file: Option<FileRef>,
    /// When the fake accepted it.
    #[serde(skip)]
    pub at: Instant,
}

/// A send refused by the rate limits (injected failures are not listed).
#[derive(Clone, Copy, Debug)]
pub struct Refusal {
    /// When it arrived.
    pub at: Instant,
    /// Its chat.
    pub chat_id: i64,
    /// How long the refusing limit had left.
    pub wait: Duration,
}

/// How a file was given to `sendPhoto` / `sendDocument`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum FileRef {
    /// A multipart upload: its file name (if any) and length in bytes.
    Upload {
        /// File name from the part's `Content-Disposition`.
        filename: Option<String>,
        /// Length of the uploaded data.
        bytes: usize,
    },
    /// An `http://` or `https://` URL for Telegram to fetch.
    Url(String),
    /// An existing `file_id`.
    FileId(String),
}

/// Locks the shared state, ignoring poisoning (a panicking handler must not wedge the fake).
fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

struct Inner {
    state: Arc<Mutex<State>>,
    port: u16,
    handle: ServerHandle,
    pusher: actix_web::rt::task::JoinHandle<()>,
}

/// A running fake Telegram Bot API server. Cheap to clone; all clones share the same state.
#[derive(Clone)]
pub struct FakeTelegram {
    inner: Arc<Inner>,
}

impl fmt::Debug for FakeTelegram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeTelegram")
            .field("base_url", &self.base_url())
            .finish_non_exhaustive()
    }
}

impl FakeTelegram {
    /// Starts a fake with the default configuration on a random port.
    pub async fn start() -> io::Result<FakeTelegram> {
        Self::start_with(FakeTelegramConfig::default()).await
    }

    /// Starts a fake with `config` on a random port.
    pub async fn start_with(config: FakeTelegramConfig) -> io::Result<FakeTelegram> {
        Self::start_on(0, config).await
    }

    /// Starts a fake with `config` on `127.0.0.1:port` (`0` picks a free port).
    ///
    /// Must be called inside an actix system (`#[actix_web::main]` / `#[actix_web::test]`): the
    /// server future is spawned with `actix_web::rt::spawn`.
    pub async fn start_on(port: u16, config: FakeTelegramConfig) -> io::Result<FakeTelegram> {
        let state = Arc::new(Mutex::new(State::new(&config)));
        let data = web::Data::from(Arc::clone(&state));
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(web::PayloadConfig::new(BODY_LIMIT))
                .configure(routes::configure)
                .default_service(web::to(routes::not_found))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1)
        .bind(("127.0.0.1", port))?;
        let port = server
            .addrs()
            .first()
            .map(|addr| addr.port())
            .ok_or_else(|| io::Error::other("fake telegram: no bound address"))?;
        let server = server.run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        let pusher = actix_web::rt::spawn(updates::push_webhooks(Arc::clone(&state)));
        Ok(FakeTelegram {
            inner: Arc::new(Inner {
                state,
                port,
                handle,
                pusher,
            }),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.inner.state)
    }

    /// `http://127.0.0.1:PORT`; clients call `{base_url}/bot{token}/{method}`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.inner.port)
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.inner.port
    }

    /// Registers a bot; returns its user id. Adding a known token again only updates the
    /// username. Calls with an unregistered token answer `401 Unauthorized`.
    pub fn add_bot(&self, token: &str, username: &str) -> i64 {
        self.state().add_bot(token, username)
    }

    /// Registers a chat the bots may write to. `chat_id < 0` is a group (group limits), `> 0` a
    /// private chat.
    pub fn add_chat(&self, chat_id: i64) {
        self.state().chats.insert(chat_id);
    }

    /// Marks a chat as having blocked the bots (it also becomes known): sends to it answer
    /// `403 Forbidden: bot was blocked by the user`.
    pub fn block_chat(&self, chat_id: i64) {
        let mut state = self.state();
        state.chats.insert(chat_id);
        state.blocked.insert(chat_id);
    }

    /// The next `n` `send*` calls (any bot, any chat) answer HTTP `status` with the error
    /// envelope, before any other check (after the latency sleep). Replaces a previous
    /// injection. An injected 429 carries `parameters.retry_after = 1` and counts in
    /// [`rate_limited`](Self::rate_limited).
    pub fn fail_next(&self, n: usize, status: u16) {
        let mut state = self.state();
        state.fail_remaining = n;
        state.fail_status = status;
    }

    /// Every API call (not the control endpoints) sleeps `d` before answering.
    pub fn set_latency(&self, d: Duration) {
        self.state().latency = d;
    }

    /// Every API call first waits a random time from zero to `max` (the network between the
    /// client and Telegram), then is counted against the limits: two sends that left in order
    /// can arrive closer together than they left, or swapped.
    pub fn set_jitter(&self, max: Duration) {
        self.state().jitter = max;
    }

    /// Replaces the rate limits; all buckets start full again.
    pub fn set_limits(&self, limits: Limits) {
        self.state().set_limits(limits);
    }

    /// Accepted sends, in order.
    pub fn sent(&self) -> Vec<SentMessage> {
        self.state().sent.clone()
    }

    /// Number of `429 Too Many Requests` answers given.
    pub fn rate_limited(&self) -> usize {
        self.state().rate_limited
    }

    /// Sends refused by the rate limits, in order.
    pub fn refusals(&self) -> Vec<Refusal> {
        self.state().refusals.clone()
    }

    /// Number of `send*` requests received, whatever their outcome.
    pub fn requests(&self) -> usize {
        self.state().requests
    }

    /// Clears sent messages, counters, pending injected failures and rate-limit buckets (bots,
    /// chats, blocks, latency, limits and message id sequences are kept).
    pub fn reset(&self) {
        self.state().reset();
    }

    /// Polls every 10 ms until at least `n` sends were accepted; false on timeout.
    pub async fn wait_for_sent(&self, n: usize, timeout: Duration) -> bool {
        let start = Instant::now();
        loop {
            if self.state().sent.len() >= n {
                return true;
            }
            if start.elapsed() >= timeout {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// A chat user sends `text` to the bot (`/start <code>`, `/stop`, …): the update is queued
    /// for `getUpdates` or pushed to the bot's webhook. The chat becomes known. Returns the
    /// `update_id`. Panics on an unknown token (a test bug).
    pub fn user_sends(&self, token: &str, chat_id: i64, text: &str) -> i64 {
        updates::user_sends(&mut self.state(), token, chat_id, text)
            .unwrap_or_else(|e| panic!("user_sends: {e}"))
    }

    /// The chat user blocks the bot: sends to the chat answer 403 and a `my_chat_member` update
    /// (`member` → `kicked`) is queued. Returns the `update_id`.
    pub fn user_blocks(&self, token: &str, chat_id: i64) -> i64 {
        updates::user_blocks(&mut self.state(), token, chat_id, true)
            .unwrap_or_else(|e| panic!("user_blocks: {e}"))
    }

    /// The chat user unblocks the bot (`kicked` → `member`).
    pub fn user_unblocks(&self, token: &str, chat_id: i64) -> i64 {
        updates::user_blocks(&mut self.state(), token, chat_id, false)
            .unwrap_or_else(|e| panic!("user_unblocks: {e}"))
    }

    /// Updates not yet confirmed by `getUpdates` nor accepted by the webhook.
    pub fn pending_updates(&self, token: &str) -> usize {
        self.state().pending_updates(token)
    }

    /// The bot's webhook, if one is set.
    pub fn webhook(&self, token: &str) -> Option<Webhook> {
        self.state().webhook(token)
    }

    /// Webhook calls answered 2xx and not, so far.
    pub fn webhook_calls(&self) -> (usize, usize) {
        let stats = self.state().webhook_stats;
        (stats.delivered, stats.failed)
    }

    /// Polls every 10 ms until `cond` holds; false on timeout.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        cond: impl Fn(&FakeTelegram) -> bool,
    ) -> bool {
        let start = Instant::now();
        loop {
            if cond(self) {
                return true;
            }
            if start.elapsed() >= timeout {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops the server gracefully (in-flight requests get up to 1 s to finish).
    pub async fn stop(&self) {
        self.inner.pusher.abort();
        self.inner.handle.stop(true).await;
    }
}
