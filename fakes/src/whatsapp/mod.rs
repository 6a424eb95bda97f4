//! Stateful fake of the WhatsApp Business Cloud API (CHANNELS.md §2).
//!
//! [`FakeWhatsApp::start`] binds an actix-web server on `127.0.0.1` (random port) that answers
//! `POST {base_url}/{version}/{phone_number_id}/messages` (text, template, image, document,
//! video, audio) and `POST {base_url}/{version}/{phone_number_id}/media` (multipart upload) with
//! the Graph API envelopes, for any version (`v21.0`, `v23.0`, …). Checks, in order: bearer
//! token (190, HTTP 401), body (100, including a media id this fake did not issue to the number;
//! 132001/132000 for templates), injected failures ([`FakeWhatsApp::fail_next`]), per-number
//! throughput (130429), per-recipient pair rate (131056), then the 24 h customer-service window
//! (131047, sync or by webhook). Uploads over their size limit or of a refused type get 131053.
//!
//! Accepted messages get signed (`X-Hub-Signature-256`) status webhooks `sent` → `delivered` →
//! `read` (or a single `failed`), POSTed to the number's webhook and retried with backoff.
//! [`FakeWhatsApp::inbound`] posts an inbound user message and opens the window.
//!
//! Control endpoints for out-of-process use (benchmarks): `GET /__control/stats`,
//! `GET /__control/sent`, `GET /__control/webhook_failures`, `POST /__control/reset`,
//! `POST /__control/inbound` (`{"phone_number_id","from","text"}`; 400 `{"ok":false,"error"}`
//! when [`FakeWhatsApp::inbound`] would fail), `POST /__control/numbers`
//! (`{"phone_number_id","access_token","app_secret","webhook_url"}`) and
//! `POST /__control/templates` (`{"name","language","body_params"}`).

mod error;
mod media;
mod message;
mod routes;
mod state;
#[cfg(test)]
mod tests;
mod webhooks;

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use actix_web::{App, HttpServer, dev::ServerHandle, web};
use serde::Serialize;
use tokio::sync::mpsc;

pub use media::{
    MAX_AUDIO_VIDEO_UPLOAD, MAX_DOCUMENT_UPLOAD, MAX_IMAGE_UPLOAD, MAX_STICKER_UPLOAD,
};
use state::State;

/// Largest accepted JSON body of a `/messages` call (multipart uploads are streamed).
const JSON_BODY_LIMIT: usize = 1024 * 1024;

/// Rate limits enforced by the fake (CHANNELS.md §2 "Limits").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaLimits {
    /// Messages per phone number in any sliding second, accepted sends and inbound messages
    /// together (over it: 130429). `0` disables the check.
    pub number_per_sec: u32,
    /// One message per this period per (phone number, recipient) pair, GCRA-style (over it:
    /// 131056). [`Duration::ZERO`] disables the check.
    pub pair_period: Duration,
    /// Messages a pair may send back to back before the period applies (`0` is treated as `1`).
    pub pair_burst: u32,
}

impl Default for WaLimits {
    fn default() -> Self {
        Self {
            number_per_sec: 80,
            pair_period: Duration::from_secs(6),
            pair_burst: 1,
        }
    }
}

/// What happens to a non-template message sent outside the 24 h customer-service window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WindowMode {
    /// The call answers HTTP 400 with code 131047.
    #[default]
    SyncError,
    /// The call is accepted (200, wamid), then a `failed` status webhook carries 131047.
    AsyncFailed,
    /// No window check.
    Off,
}

/// Configuration of a [`FakeWhatsApp`].
#[derive(Clone, Debug)]
pub struct FakeWhatsAppConfig {
    /// Rate limits (see [`WaLimits`]).
    pub limits: WaLimits,
    /// Handling of the 24 h window (see [`WindowMode`]).
    pub window_mode: WindowMode,
    /// Pause before each status webhook of a message (default 20 ms).
    pub status_delay: Duration,
    /// Post a `read` status after `delivered` (default true).
    pub send_read: bool,
    /// Post `read` before `delivered` for every second accepted message (timestamps stay in
    /// event order: `read`'s is one second after `delivered`'s). Default false.
    pub shuffle_statuses: bool,
}

impl Default for FakeWhatsAppConfig {
    fn default() -> Self {
        Self {
            limits: WaLimits::default(),
            window_mode: WindowMode::default(),
            status_delay: Duration::from_millis(20),
            send_read: true,
            shuffle_statuses: false,
        }
    }
}

/// One accepted `/messages` call (HTTP 200), in acceptance order.
#[derive(Clone, Debug, Serialize)]
pub struct WaSent {
    /// The sending phone number id (from the URL).
    pub phone_number_id: String,
    /// `to` exactly as given by the client.
    pub to: String,
    /// The id given in the answer (`wamid.…`).
    pub wamid: String,
    /// `text`, `template`, `image`, `document`, `video` or `audio`.
    pub kind: String,
    /// Text body, or the media caption.
    pub body: Option<String>,
    /// Template name.
    pub template: Option<String>,
    /// Template body parameters (`components[type=body].parameters[].text`), in order.
    pub template_params: Vec<String>,
    /// Media given by an uploaded media id.
    pub media_id: Option<String>,
    /// Media given by link.
    pub media_link: Option<String>,
    /// Document `filename`, if given.
    pub filename: Option<String>,
    /// The code of the `failed` status this message gets instead of sent/delivered/read
    /// (131047 outside the window with [`WindowMode::AsyncFailed`], 131026 undeliverable).
    pub failed: Option<i64>,
    /// When the fake accepted it.
    #[serde(skip)]
    pub at: Instant,
}

impl WaSent {
    /// The recipient's wa_id (the digits of `to`).
    pub fn wa_id(&self) -> String {
        message::digits(&self.to)
    }
}

/// Counters since start or the last [`FakeWhatsApp::reset`].
#[derive(Serialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct WaStats {
    /// `/messages` calls received, whatever their outcome.
    pub requests: u64,
    /// `/messages` calls answered 200 (including those that later get a `failed` status).
    pub accepted: u64,
    /// Calls answered 130429 (throughput), injected ones included.
    pub rejected_130429: u64,
    /// Calls answered 131056 (pair rate), injected ones included.
    pub rejected_131056: u64,
    /// Calls answered 131047 synchronously (window), injected ones included.
    pub rejected_131047: u64,
    /// Calls answered 190 (unknown number, missing or wrong token), injected ones included.
    pub rejected_auth: u64,
    /// Calls answered any other error code.
    pub rejected_other: u64,
    /// Accepted messages that get a `failed` status with 131047 ([`WindowMode::AsyncFailed`]).
    pub failed_131047: u64,
    /// Accepted messages that get a `failed` status with 131026 (undeliverable).
    pub failed_131026: u64,
    /// Inbound user messages (from [`FakeWhatsApp::inbound`] or `/__control/inbound`).
    pub inbound: u64,
    /// Webhook POSTs the server answered 2xx.
    pub webhooks_posted: u64,
    /// Webhook POSTs given up after all retries.
    pub webhooks_failed: u64,
    /// Webhook attempts that were retried (non-2xx or connection error).
    pub webhook_retries: u64,
    /// Media uploads accepted.
    pub media_uploaded: u64,
    /// Media uploads refused (auth, size, type, malformed).
    pub media_rejected: u64,
}

/// Locks the shared state, ignoring poisoning (a panicking handler must not wedge the fake).
fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Everything the handlers and the webhook tasks share.
struct Shared {
    state: Mutex<State>,
    status_delay: Duration,
    send_read: bool,
    shuffle_statuses: bool,
    /// Webhook jobs for the dispatcher (see [`webhooks::dispatch`]).
    jobs: mpsc::UnboundedSender<webhooks::Job>,
    /// Set by [`FakeWhatsApp::stop`]; pending status webhooks are dropped.
    stopped: AtomicBool,
    started: Instant,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }
}

struct Inner {
    shared: Arc<Shared>,
    port: u16,
    handle: ServerHandle,
    dispatcher: actix_web::rt::task::JoinHandle<()>,
}

/// A running fake WhatsApp Cloud API server. Cheap to clone; all clones share the same state.
#[derive(Clone)]
pub struct FakeWhatsApp {
    inner: Arc<Inner>,
}

impl fmt::Debug for FakeWhatsApp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeWhatsApp")
            .field("base_url", &self.base_url())
            .finish_non_exhaustive()
    }
}

impl FakeWhatsApp {
    /// Starts a fake with `config` on a random port.
    pub async fn start(config: FakeWhatsAppConfig) -> io::Result<FakeWhatsApp> {
        Self::start_on(0, config).await
    }

    /// Starts a fake with `config` on `127.0.0.1:port` (`0` picks a free port).
    ///
    /// Must be called inside an actix system (`#[actix_web::main]` / `#[actix_web::test]`): the
    /// server and the webhook dispatcher are spawned with `actix_web::rt::spawn`, and webhooks
    /// are posted from the calling thread.
    pub async fn start_on(port: u16, config: FakeWhatsAppConfig) -> io::Result<FakeWhatsApp> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(io::Error::other)?;
        let (jobs, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            state: Mutex::new(State::new(&config)),
            status_delay: config.status_delay,
            send_read: config.send_read,
            shuffle_statuses: config.shuffle_statuses,
            jobs,
            stopped: AtomicBool::new(false),
            started: Instant::now(),
        });
        let data = web::Data::from(Arc::clone(&shared));
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(web::PayloadConfig::new(JSON_BODY_LIMIT))
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
            .ok_or_else(|| io::Error::other("fake whatsapp: no bound address"))?;
        let server = server.run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        let dispatcher = actix_web::rt::spawn(webhooks::dispatch(Arc::clone(&shared), client, rx));
        Ok(FakeWhatsApp {
            inner: Arc::new(Inner {
                shared,
                port,
                handle,
                dispatcher,
            }),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner.shared.state()
    }

    /// `http://127.0.0.1:PORT`; clients call `{base_url}/{version}/{phone_number_id}/messages`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.inner.port)
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.inner.port
    }

    /// Registers a business phone number with the token its calls must carry and the app secret
    /// that signs its webhooks. Adding a known id again replaces token and secret.
    pub fn add_number(&self, phone_number_id: &str, access_token: &str, app_secret: &str) {
        self.state()
            .add_number(phone_number_id, access_token, app_secret);
    }

    /// Where status and inbound webhooks of this number are POSTed (an empty `url` removes it).
    /// Messages accepted while no webhook is set get no status webhooks.
    pub fn set_webhook(&self, phone_number_id: &str, url: &str) {
        self.state().set_webhook(phone_number_id, url);
    }

    /// Registers an approved template: `name` in `language` (e.g. `en_US`) with `body_params`
    /// body parameters.
    pub fn add_template(&self, name: &str, language: &str, body_params: usize) {
        self.state()
            .templates
            .insert((name.to_owned(), language.to_owned()), body_params);
    }

    /// Opens (or refreshes) the 24 h window of `wa_id` with this number, as if the user had
    /// written, without posting a webhook nor counting throughput.
    pub fn open_window(&self, phone_number_id: &str, wa_id: &str) {
        self.state().open_window(phone_number_id, wa_id);
    }

    /// Closes the 24 h window of `wa_id` with this number, as if the last inbound message were
    /// older than 24 h.
    pub fn close_window(&self, phone_number_id: &str, wa_id: &str) {
        self.state().close_window(phone_number_id, wa_id);
    }

    /// The user `from` writes `text` to this number: opens the window, counts against the
    /// number's throughput and POSTs a signed inbound `messages` webhook. Returns once the server
    /// answered 2xx; `Err` for an unknown number, a bad `from`, no webhook, or no 2xx after
    /// retries (the window stays open in the last two cases).
    pub async fn inbound(
        &self,
        phone_number_id: &str,
        from: &str,
        text: &str,
    ) -> Result<(), String> {
        webhooks::inbound(&self.inner.shared, phone_number_id, from, text).await
    }

    /// The next `times` `/messages` calls of this number answer HTTP `http_status` with error
    /// `code`, after the token and body checks and before the limits. Replaces a previous
    /// injection for the number; `times = 0` cancels it.
    pub fn fail_next(&self, phone_number_id: &str, code: i64, http_status: u16, times: u32) {
        self.state()
            .fail_next(phone_number_id, code, http_status, times);
    }

    /// Messages to `wa_id` (any number) are accepted, then get a `failed` status webhook with
    /// 131026 (message undeliverable) instead of sent/delivered/read.
    pub fn set_undeliverable(&self, wa_id: &str) {
        self.state().undeliverable.insert(message::digits(wa_id));
    }

    /// Replaces the rate limits; pair buckets and throughput windows start empty again.
    pub fn set_limits(&self, limits: WaLimits) {
        self.state().set_limits(limits);
    }

    /// Replaces the window handling.
    pub fn set_window_mode(&self, mode: WindowMode) {
        self.state().window_mode = mode;
    }

    /// Accepted sends, in order.
    pub fn sent(&self) -> Vec<WaSent> {
        self.state().sent.clone()
    }

    /// Counters (see [`WaStats`]).
    pub fn stats(&self) -> WaStats {
        self.state().stats.clone()
    }

    /// Descriptions of webhook POSTs given up after all retries (non-2xx or connection error).
    pub fn webhook_failures(&self) -> Vec<String> {
        self.state().webhook_failures.clone()
    }

    /// Every API call (`/messages`, `/media`; not the control endpoints) sleeps `d` first.
    pub fn set_latency(&self, d: Duration) {
        self.state().latency = d;
    }

    /// Every API call first waits a random time from zero to `max` (the network), then is
    /// counted against the limits.
    pub fn set_jitter(&self, max: Duration) {
        self.state().jitter = max;
    }

    /// Clears sent messages, counters, webhook failures, injected failures, throughput windows
    /// and pair buckets, and drops status webhooks not yet posted. Keeps numbers, webhooks,
    /// templates, open windows, undeliverable recipients, uploaded media, limits and latency.
    pub fn reset(&self) {
        self.state().reset();
    }

    /// Polls every 10 ms until `cond` holds; false on timeout.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        cond: impl Fn(&FakeWhatsApp) -> bool,
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

    /// Polls every 10 ms until at least `n` sends were accepted; false on timeout.
    pub async fn wait_for_sent(&self, n: usize, timeout: Duration) -> bool {
        self.wait_until(timeout, |fake| fake.state().sent.len() >= n)
            .await
    }

    /// Stops the server gracefully (in-flight requests get up to 1 s to finish) and drops the
    /// status webhooks not yet posted.
    pub async fn stop(&self) {
        self.inner.shared.stopped.store(true, Ordering::SeqCst);
        self.inner.dispatcher.abort();
        self.inner.handle.stop(true).await;
    }
}
