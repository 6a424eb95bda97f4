//! Shared mutable state of the fake: numbers, templates, windows, limits, sent messages and
//! counters.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use super::error::{self, ApiError};
use super::media::Media;
use super::message::digits;
use super::{FakeWhatsAppConfig, WaLimits, WaSent, WaStats, WindowMode};

/// Length of the customer-service window.
pub(super) const WINDOW: Duration = Duration::from_secs(24 * 60 * 60);
/// The sliding window of the throughput limit.
const THROUGHPUT_WINDOW: Duration = Duration::from_secs(1);

/// A registered business phone number.
#[derive(Clone, Debug)]
pub(super) struct Number {
    pub(super) access_token: String,
    pub(super) app_secret: String,
    /// `metadata.display_phone_number` in webhooks.
    pub(super) display_phone_number: String,
}

/// A pending [`super::FakeWhatsApp::fail_next`] injection.
#[derive(Clone, Copy, Debug)]
struct Injected {
    code: i64,
    http_status: u16,
    remaining: u32,
}

/// (phone number id, wa_id).
type Pair = (String, String);

pub(super) struct State {
    pub(super) numbers: HashMap<String, Number>,
    pub(super) webhooks: HashMap<String, String>,
    /// Approved templates: (name, language) → body parameter count.
    pub(super) templates: HashMap<(String, String), usize>,
    /// Last inbound message per pair.
    windows: HashMap<Pair, Instant>,
    pub(super) undeliverable: HashSet<String>,
    /// Uploaded media by id.
    pub(super) media: HashMap<String, Media>,
    limits: WaLimits,
    pub(super) window_mode: WindowMode,
    pub(super) latency: Duration,
    pub(super) jitter: Duration,
    /// Accepted sends and inbound messages of the last second, per number.
    throughput: HashMap<String, VecDeque<Instant>>,
    /// GCRA theoretical arrival time per pair.
    pair_tat: HashMap<Pair, Instant>,
    injected: HashMap<String, Injected>,
    pub(super) sent: Vec<WaSent>,
    pub(super) stats: WaStats,
    pub(super) webhook_failures: Vec<String>,
    /// Bumped by `reset`: status webhooks scheduled before are dropped.
    pub(super) epoch: u64,
    seq: u64,
}

impl State {
    pub(super) fn new(config: &FakeWhatsAppConfig) -> Self {
        Self {
            numbers: HashMap::new(),
            webhooks: HashMap::new(),
            templates: HashMap::new(),
            windows: HashMap::new(),
            undeliverable: HashSet::new(),
            media: HashMap::new(),
            limits: config.limits,
            window_mode: config.window_mode,
            latency: Duration::ZERO,
            jitter: Duration::ZERO,
            throughput: HashMap::new(),
            pair_tat: HashMap::new(),
            injected: HashMap::new(),
            sent: Vec::new(),
            stats: WaStats::default(),
            webhook_failures: Vec::new(),
            epoch: 0,
            seq: 0,
        }
    }

    pub(super) fn add_number(&mut self, id: &str, access_token: &str, app_secret: &str) {
        let index = self.numbers.len() + 1;
        let number = self.numbers.entry(id.to_owned()).or_insert_with(|| Number {
            access_token: String::new(),
            app_secret: String::new(),
            display_phone_number: format!("1555{index:07}"),
        });
        access_token.clone_into(&mut number.access_token);
        app_secret.clone_into(&mut number.app_secret);
    }

    pub(super) fn set_webhook(&mut self, id: &str, url: &str) {
        let url = url.trim();
        if url.is_empty() {
            self.webhooks.remove(id);
        } else {
            self.webhooks.insert(id.to_owned(), url.to_owned());
        }
    }

    /// The number `id` if `authorization` is `Bearer <its token>`.
    pub(super) fn authorize(
        &self,
        id: &str,
        authorization: Option<&str>,
    ) -> Result<Number, ApiError> {
        let token = authorization
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim);
        match (self.numbers.get(id), token) {
            (Some(number), Some(token)) if !token.is_empty() && token == number.access_token => {
                Ok(number.clone())
            }
            _ => Err(ApiError::auth()),
        }
    }

    pub(super) fn open_window(&mut self, id: &str, wa_id: &str) {
        self.windows
            .insert((id.to_owned(), digits(wa_id)), Instant::now());
    }

    pub(super) fn close_window(&mut self, id: &str, wa_id: &str) {
        self.windows.remove(&(id.to_owned(), digits(wa_id)));
    }

    /// Whether `wa_id` wrote to number `id` in the last 24 h.
    pub(super) fn window_open(&self, id: &str, wa_id: &str) -> bool {
        self.windows
            .get(&(id.to_owned(), wa_id.to_owned()))
            .is_some_and(|at| at.elapsed() < WINDOW)
    }

    pub(super) fn fail_next(&mut self, id: &str, code: i64, http_status: u16, times: u32) {
        if times == 0 {
            self.injected.remove(id);
            return;
        }
        self.injected.insert(
            id.to_owned(),
            Injected {
                code,
                http_status,
                remaining: times,
            },
        );
    }

    /// Consumes one injected failure of number `id`, if any.
    pub(super) fn take_injected(&mut self, id: &str) -> Option<ApiError> {
        let injected = self.injected.get_mut(id)?;
        injected.remaining = injected.remaining.saturating_sub(1);
        let err = ApiError::new(injected.code, "Injected failure (fake)")
            .with_status(injected.http_status);
        if injected.remaining == 0 {
            self.injected.remove(id);
        }
        Some(err)
    }

    pub(super) fn set_limits(&mut self, limits: WaLimits) {
        self.limits = limits;
        self.throughput.clear();
        self.pair_tat.clear();
    }

    /// Checks the throughput then the pair limit without consuming anything.
    ///
    /// Returns the pair's next theoretical arrival time to store if the message is accepted.
    pub(super) fn check_limits(
        &mut self,
        id: &str,
        wa_id: &str,
    ) -> Result<Option<Instant>, ApiError> {
        let now = Instant::now();
        let limits = self.limits;
        if limits.number_per_sec > 0 {
            let recent = self.throughput.entry(id.to_owned()).or_default();
            prune(recent, now);
            let max = usize::try_from(limits.number_per_sec).unwrap_or(usize::MAX);
            if recent.len() >= max {
                return Err(ApiError::new(
                    error::RATE_LIMIT,
                    format!(
                        "Message failed to send because there were too many messages sent from this phone number in a short period of time (limit {} per second)",
                        limits.number_per_sec
                    ),
                ));
            }
        }
        if limits.pair_period.is_zero() {
            return Ok(None);
        }
        // GCRA: emission interval T = pair_period, tolerance = T × (burst − 1).
        let burst = limits.pair_burst.max(1);
        let tolerance = limits.pair_period.saturating_mul(burst - 1);
        let tat = self
            .pair_tat
            .get(&(id.to_owned(), wa_id.to_owned()))
            .map_or(now, |&tat| tat.max(now));
        if tat.saturating_duration_since(now) > tolerance {
            return Err(ApiError::new(
                error::PAIR_RATE_LIMIT,
                "Message failed to send because there were too many messages sent from this phone number to the same phone number in a short period of time",
            ));
        }
        Ok(Some(tat.checked_add(limits.pair_period).unwrap_or(tat)))
    }

    /// Records an accepted send against the limits checked by [`State::check_limits`].
    pub(super) fn consume_limits(&mut self, id: &str, wa_id: &str, pair_tat: Option<Instant>) {
        self.count_throughput(id);
        if let Some(tat) = pair_tat {
            self.pair_tat.insert((id.to_owned(), wa_id.to_owned()), tat);
        }
    }

    /// Counts one message (outbound or inbound) against number `id`'s throughput.
    pub(super) fn count_throughput(&mut self, id: &str) {
        if self.limits.number_per_sec == 0 {
            return;
        }
        let now = Instant::now();
        let recent = self.throughput.entry(id.to_owned()).or_default();
        prune(recent, now);
        recent.push_back(now);
    }

    /// Counts a refused `/messages` call under its code.
    pub(super) fn count_rejection(&mut self, code: i64) {
        let stats = &mut self.stats;
        match code {
            error::RATE_LIMIT => stats.rejected_130429 += 1,
            error::PAIR_RATE_LIMIT => stats.rejected_131056 += 1,
            error::RE_ENGAGEMENT => stats.rejected_131047 += 1,
            error::AUTH => stats.rejected_auth += 1,
            _ => stats.rejected_other += 1,
        }
    }

    /// A fresh sequence number (wamids, media ids).
    pub(super) fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Clears what a benchmark run produced; keeps the configuration and the world (numbers,
    /// webhooks, templates, windows, undeliverable recipients, media, limits, latency).
    pub(super) fn reset(&mut self) {
        self.sent.clear();
        self.stats = WaStats::default();
        self.webhook_failures.clear();
        self.injected.clear();
        self.throughput.clear();
        self.pair_tat.clear();
        self.epoch += 1;
    }
}

/// Drops the timestamps that left the sliding second.
fn prune(recent: &mut VecDeque<Instant>, now: Instant) {
    while recent
        .front()
        .is_some_and(|&t| now.saturating_duration_since(t) >= THROUGHPUT_WINDOW)
    {
        recent.pop_front();
    }
}
