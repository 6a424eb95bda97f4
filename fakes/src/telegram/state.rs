//! Shared mutable state of the fake: bots, chats, sent messages, counters and rate limiters.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use governor::clock::Clock;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use super::updates::{self, BotUpdates, WebhookStats};
use super::{Counting, FakeTelegramConfig, Limits, Refusal, SentMessage};

/// First user id given to bots (ids look like real bot ids).
const FIRST_BOT_ID: i64 = 7_000_000_001;

#[derive(Clone, Debug)]
pub(super) struct Bot {
    pub(super) id: i64,
    pub(super) username: String,
}

pub(super) struct State {
    pub(super) accept_any_chat: bool,
    pub(super) latency: Duration,
    pub(super) jitter: Duration,
    pub(super) bots: HashMap<String, Bot>,
    next_bot_id: i64,
    /// Known chats (sends to others answer `chat not found` unless `accept_any_chat`).
    pub(super) chats: HashSet<i64>,
    pub(super) blocked: HashSet<i64>,
    /// Last message id given per chat.
    message_ids: HashMap<i64, i64>,
    pub(super) fail_remaining: usize,
    pub(super) fail_status: u16,
    pub(super) sent: Vec<SentMessage>,
    pub(super) rate_limited: usize,
    pub(super) refusals: Vec<Refusal>,
    pub(super) requests: usize,
    limits: Limits,
    pub(super) allow_insecure_webhooks: bool,
    pub(super) updates: HashMap<String, BotUpdates>,
    pub(super) webhook_stats: WebhookStats,
    bot_buckets: HashMap<String, DefaultDirectRateLimiter>,
    chat_buckets: HashMap<(String, i64), DefaultDirectRateLimiter>,
    /// Accepted sends' arrival times per bot and per (bot, chat), for [`Counting::Windows`].
    bot_windows: HashMap<String, VecDeque<Instant>>,
    chat_windows: HashMap<(String, i64), VecDeque<Instant>>,
    file_seq: u64,
}

impl State {
    pub(super) fn new(config: &FakeTelegramConfig) -> Self {
        Self {
            accept_any_chat: config.accept_any_chat,
            latency: Duration::ZERO,
            jitter: Duration::ZERO,
            bots: HashMap::new(),
            next_bot_id: FIRST_BOT_ID,
            chats: HashSet::new(),
            blocked: HashSet::new(),
            message_ids: HashMap::new(),
            fail_remaining: 0,
            fail_status: 500,
            sent: Vec::new(),
            rate_limited: 0,
            refusals: Vec::new(),
            requests: 0,
            limits: config.limits,
            allow_insecure_webhooks: config.allow_insecure_webhooks,
            updates: updates::empty(),
            webhook_stats: WebhookStats::default(),
            bot_buckets: HashMap::new(),
            chat_buckets: HashMap::new(),
            bot_windows: HashMap::new(),
            chat_windows: HashMap::new(),
            file_seq: 0,
        }
    }

    pub(super) fn add_bot(&mut self, token: &str, username: &str) -> i64 {
        let username = username.trim_start_matches('@').to_owned();
        if let Some(bot) = self.bots.get_mut(token) {
            bot.username = username;
            return bot.id;
        }
        let id = self.next_bot_id;
        self.next_bot_id += 1;
        self.bots.insert(token.to_owned(), Bot { id, username });
        id
    }

    pub(super) fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
        self.bot_buckets.clear();
        self.chat_buckets.clear();
        self.bot_windows.clear();
        self.chat_windows.clear();
    }

    /// Clears what a benchmark run produced; keeps the configuration (bots, chats, blocks,
    /// latency, limits) and the message id sequences.
    pub(super) fn reset(&mut self) {
        self.sent.clear();
        self.rate_limited = 0;
        self.refusals.clear();
        self.requests = 0;
        self.fail_remaining = 0;
        self.bot_buckets.clear();
        self.chat_buckets.clear();
        self.bot_windows.clear();
        self.chat_windows.clear();
    }

    /// Consumes one injected failure, if any, and returns its HTTP status.
    pub(super) fn take_injected_failure(&mut self) -> Option<u16> {
        if self.fail_remaining == 0 {
            return None;
        }
        self.fail_remaining -= 1;
        Some(self.fail_status)
    }

    /// Checks the bot bucket, then the chat bucket. `Err(wait)` is the time until the rejecting
    /// bucket would allow a send.
    ///
    /// governor cannot peek, so when the chat bucket rejects, the cell already taken from the
    /// bot bucket is not given back (like Telegram, a rejected request still costs the bot).
    pub(super) fn check_rate(&mut self, token: &str, chat_id: i64) -> Result<(), Duration> {
        let limits = self.limits;
        if limits.counting == Counting::Windows {
            return self.check_windows(token, chat_id, Instant::now());
        }
        let bot_quota = quota(limits.bot_per_sec, limits.bot_burst, Quota::per_second);
        check_bucket(&mut self.bot_buckets, token.to_owned(), bot_quota)?;
        let chat_quota = if chat_id < 0 {
            quota(limits.group_per_min, limits.group_burst, Quota::per_minute)
        } else {
            quota(limits.chat_per_sec, limits.chat_burst, Quota::per_second)
        };
        check_bucket(
            &mut self.chat_buckets,
            (token.to_owned(), chat_id),
            chat_quota,
        )
    }

    /// [`Counting::Windows`]: checks every window, then counts the send in each.
    fn check_windows(&mut self, token: &str, chat_id: i64, now: Instant) -> Result<(), Duration> {
        let limits = self.limits;
        let bot = self.bot_windows.entry(token.to_owned()).or_default();
        window_wait(bot, limits.bot_per_sec, Duration::from_secs(1), now)?;
        let chat = self
            .chat_windows
            .entry((token.to_owned(), chat_id))
            .or_default();
        if chat_id < 0 {
            window_wait(chat, limits.group_per_min, Duration::from_secs(60), now)?;
        } else if limits.chat_per_sec > 0 {
            window_wait(chat, 1, Duration::from_secs(1) / limits.chat_per_sec, now)?;
        }
        chat.push_back(now);
        if let Some(bot) = self.bot_windows.get_mut(token) {
            bot.push_back(now);
        }
        Ok(())
    }

    /// Next message id in `chat_id` (1, 2, ...).
    pub(super) fn next_message_id(&mut self, chat_id: i64) -> i64 {
        let last = self.message_ids.entry(chat_id).or_insert(0);
        *last += 1;
        *last
    }

    /// A fresh `(file_id, file_unique_id)` pair.
    pub(super) fn next_file_ids(&mut self, kind: &str) -> (String, String) {
        self.file_seq += 1;
        let n = self.file_seq;
        (format!("fake-{kind}-{n:08}"), format!("fakeu{n:08}"))
    }
}

/// `Err(wait)` when `arrivals` already holds `max` sends within `window` before `now` (after
/// forgetting older ones); `max == 0` disables the window.
fn window_wait(
    arrivals: &mut VecDeque<Instant>,
    max: u32,
    window: Duration,
    now: Instant,
) -> Result<(), Duration> {
    while arrivals
        .front()
        .is_some_and(|t| now.duration_since(*t) >= window)
    {
        arrivals.pop_front();
    }
    match arrivals.front() {
        Some(first) if max > 0 && arrivals.len() >= max as usize => {
            Err(window - now.duration_since(*first))
        }
        _ => Ok(()),
    }
}

/// `None` when `rate` is 0 (bucket disabled).
fn quota(rate: u32, burst: u32, per: fn(NonZeroU32) -> Quota) -> Option<Quota> {
    let rate = NonZeroU32::new(rate)?;
    let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
    Some(per(rate).allow_burst(burst))
}

fn check_bucket<K: Hash + Eq>(
    buckets: &mut HashMap<K, DefaultDirectRateLimiter>,
    key: K,
    quota: Option<Quota>,
) -> Result<(), Duration> {
    let Some(quota) = quota else {
        return Ok(());
    };
    let limiter = buckets
        .entry(key)
        .or_insert_with(|| RateLimiter::direct(quota));
    match limiter.check() {
        Ok(()) => Ok(()),
        Err(not_until) => Err(not_until.wait_time_from(limiter.clock().now())),
    }
}
