//! Pacing against a fake Telegram that counts its limits in sliding windows when each request
//! arrives, after a random network delay: 30 per bot in any second, 1 s between two sends to a
//! private chat, 20 per group in any minute, no burst.
use std::time::{Duration, Instant};

use fakes::telegram::{FakeTelegramConfig, Limits};
use futures::{StreamExt, stream};
use serde_json::json;

use crate::helpers::{Backend, TestApp, spawn_app_custom};

const WAIT: Duration = Duration::from_secs(150);
const GROUP: i64 = -1_001_234;
const BUSY_CHAT: i64 = 777;

/// Queues `(chat, text)` pairs 16 at a time, as fast as the server takes them.
async fn post_all(app: &TestApp, channel: &str, batch: Vec<(i64, String)>) -> Vec<String> {
    stream::iter(batch)
        .map(|(chat, text)| async move {
            let res = app
                .post(
                    "messages",
                    &json!({"channel_id": channel, "to": chat.to_string(), "text": text}),
                )
                .await;
            assert_eq!(res.status().as_u16(), 202, "queue message");
            let body: serde_json::Value = res.json().await.expect("json");
            body["id"].as_str().expect("id").to_owned()
        })
        .buffer_unordered(16)
        .collect()
        .await
}

async fn contention_at_arrival_gives_no_429_and_no_burst_after_a_freeze(backend: Backend) {
    // Arrange
    let app = spawn_app_custom(
        backend,
        FakeTelegramConfig {
            accept_any_chat: true,
            limits: Limits::at_arrival(),
            ..Default::default()
        },
        |_| {},
    )
    .await;
    app.telegram.set_jitter(Duration::from_millis(30));
    let channel = app.create_bot(None).await;
    let wave = |round: usize| -> Vec<(i64, String)> {
        (1..=150)
            .map(|chat| (chat, format!("wave {round} to {chat}")))
            .collect()
    };

    // Act: a first wave to 150 chats; while it waits, a busy chat and a group; then a second
    // wave to the same 150 chats. A 429 is injected mid-run.
    let mut ids = post_all(&app, &channel, wave(1)).await;
    let extra: Vec<_> = (0..15)
        .map(|i| (BUSY_CHAT, format!("busy {i}")))
        .chain((0..25).map(|i| (GROUP, format!("group {i}"))))
        .collect();
    ids.extend(post_all(&app, &channel, extra).await);
    ids.extend(post_all(&app, &channel, wave(2)).await);
    assert!(
        app.telegram
            .wait_until(WAIT, |t| t.sent().len() >= 100)
            .await
    );
    app.telegram.fail_next(1, 429);
    let injected_at = Instant::now();

    // Assert: everything is sent once, with no 429 but the injected one.
    for id in &ids {
        let msg = app.wait_for_status(id, "sent", WAIT).await;
        assert!(msg["attempt_count"].as_i64() <= Some(1), "{msg:#}");
    }
    let sent = app.telegram.sent();
    let refusals: Vec<_> = app
        .telegram
        .refusals()
        .iter()
        .map(|r| {
            let last = sent
                .iter()
                .rev()
                .find(|m| m.chat_id == r.chat_id && m.at < r.at)
                .map(|m| r.at.duration_since(m.at));
            format!("chat {} (its last send {last:?} before)", r.chat_id)
        })
        .collect();
    assert_eq!(
        app.telegram.rate_limited(),
        1,
        "only the injected 429; refused: {refusals:?}"
    );
    assert_eq!(sent.len(), 340, "every message exactly once");
    let mut texts: Vec<_> = sent.iter().filter_map(|m| m.text.clone()).collect();
    texts.sort();
    texts.dedup();
    assert_eq!(texts.len(), 340, "no message twice");

    // No burst after the freeze: sends leave at least 80 % of a slot (34 ms at 30/s) apart, so
    // even with 30 ms of jitter no 100 ms after it holds more than 5.
    let after: Vec<Instant> = sent
        .iter()
        .map(|m| m.at)
        .filter(|at| *at >= injected_at)
        .collect();
    for (i, at) in after.iter().enumerate() {
        let within = after[i..]
            .iter()
            .take_while(|t| t.duration_since(*at) < Duration::from_millis(100))
            .count();
        let gaps: Vec<_> = after[i..]
            .windows(2)
            .take(within)
            .map(|w| w[1].duration_since(w[0]).as_millis())
            .collect();
        assert!(
            within <= 5,
            "{within} sends within 100 ms after the 429, gaps in ms: {gaps:?}"
        );
    }
    // The busy chat and the group got theirs spaced as their limits say.
    let spaced = |chat: i64, least: Duration| {
        let times: Vec<Instant> = sent
            .iter()
            .filter(|m| m.chat_id == chat)
            .map(|m| m.at)
            .collect();
        for pair in times.windows(2) {
            assert!(
                pair[1].duration_since(pair[0]) >= least,
                "chat {chat}: {:?} between two sends",
                pair[1].duration_since(pair[0])
            );
        }
        times.len()
    };
    assert_eq!(spaced(BUSY_CHAT, Duration::from_millis(1000)), 15);
    assert_eq!(spaced(GROUP, Duration::from_millis(2900)), 25);
}

crate::on_both_databases!(contention_at_arrival_gives_no_429_and_no_burst_after_a_freeze);

/// The provider's windows, counted when each send arrives: 30 per bot in any second, 1 s
/// between two sends to one chat. Records every arrival that breaks one.
#[derive(Default)]
struct Provider {
    bot: std::collections::VecDeque<Instant>,
    chats: std::collections::HashMap<String, Instant>,
    arrivals: Vec<Instant>,
    violations: Vec<String>,
}

impl Provider {
    fn arrive(&mut self, chat: &str, at: Instant) {
        while self
            .bot
            .front()
            .is_some_and(|t| at.duration_since(*t) >= Duration::from_secs(1))
        {
            self.bot.pop_front();
        }
        if self.bot.len() >= 30 {
            self.violations
                .push(format!("31 sends to the bot within a second at {at:?}"));
        }
        self.bot.push_back(at);
        if let Some(last) = self.chats.insert(chat.to_owned(), at)
            && at.duration_since(last) < Duration::from_secs(1)
        {
            self.violations.push(format!(
                "chat {chat}: two sends {:?} apart",
                at.duration_since(last)
            ));
        }
        self.arrivals.push(at);
    }
}

/// `replicas` pacers of one bot send `per_replica` messages each (32 at a time per replica,
/// over 60 chats), every send and every answer taking 0 to 60 ms on the network. Returns the
/// provider's record.
async fn run_replicas(
    pacers: Vec<std::sync::Arc<dyn pregonero::pacing::Pacer>>,
    per_replica: usize,
) -> Provider {
    use pregonero::pacing::RecipientKind;
    let provider = std::sync::Arc::new(std::sync::Mutex::new(Provider::default()));
    let replicas = pacers.into_iter().enumerate().map(|(r, pacer)| {
        let provider = provider.clone();
        async move {
            stream::iter(0..per_replica)
                .map(|i| {
                    let (pacer, provider) = (pacer.clone(), provider.clone());
                    async move {
                        let chat = ((i * 3 + r) % 60).to_string();
                        let permit = pacer
                            .acquire(&chat, RecipientKind::Private, Duration::from_secs(120))
                            .await
                            .expect("a turn within the horizon");
                        let jitter = || Duration::from_millis(rand::random_range(0..=60));
                        tokio::time::sleep(jitter()).await;
                        provider
                            .lock()
                            .expect("provider")
                            .arrive(&chat, Instant::now());
                        tokio::time::sleep(jitter()).await;
                        pacer.answered(&permit);
                    }
                })
                .buffer_unordered(32)
                .collect::<Vec<()>>()
                .await
        }
    });
    futures::future::join_all(replicas).await;
    std::sync::Arc::try_unwrap(provider)
        .ok()
        .expect("every send done")
        .into_inner()
        .expect("provider")
}

/// Telegram's limits with the server's default margins.
fn telegram_limits() -> pregonero::pacing::PacingLimits {
    pregonero::pacing::PacingLimits {
        account_per_sec: 30,
        account_burst: 30,
        recipient_interval: Duration::from_secs(1),
        group_per_min: 20,
        margin: Duration::from_millis(50),
        recipient_margin: Duration::from_millis(100),
        daily_cap: 0,
        gap: None,
    }
}

/// Three replicas sending for one bot keep its 30 per second and each chat's 1 per second
/// between them through Redis, counted at arrival with network jitter, and still use most of
/// the bot's rate. The same run with in-process pacers only (what each replica had before)
/// breaks the bot's limit: the check can fail.
#[actix_web::test]
async fn replicas_keep_one_pace_through_redis() {
    use std::sync::Arc;
    let Some(url) = crate::helpers::redis_url() else {
        return;
    };
    let account = format!("test-{}", uuid::Uuid::new_v4().simple());
    let shared = pregonero::shared::Shared::new(&url).expect("redis url");
    pregonero::pacing::heartbeat(shared.clone());
    let key = [7u8; 32];
    let pacers: Vec<Arc<dyn pregonero::pacing::Pacer>> = (0..3)
        .map(|_| {
            Arc::new(pregonero::pacing::SharedPacer::new(
                telegram_limits(),
                shared.clone(),
                &account,
                key,
            )) as Arc<dyn pregonero::pacing::Pacer>
        })
        .collect();

    // Act
    let shared_run = run_replicas(pacers, 90).await;
    let local: Vec<Arc<dyn pregonero::pacing::Pacer>> = (0..3)
        .map(|_| {
            Arc::new(pregonero::pacing::LocalPacer::new(telegram_limits()))
                as Arc<dyn pregonero::pacing::Pacer>
        })
        .collect();
    let local_run = run_replicas(local, 90).await;

    // Assert
    assert!(
        shared_run.violations.is_empty(),
        "{:?}",
        &shared_run.violations[..shared_run.violations.len().min(5)]
    );
    let first = shared_run.arrivals.iter().min().expect("arrivals");
    let last = shared_run.arrivals.iter().max().expect("arrivals");
    let rate = (shared_run.arrivals.len() - 1) as f64 / last.duration_since(*first).as_secs_f64();
    eprintln!(
        "3 replicas through redis: {} sends at {rate:.1}/s, no window broken; in process only: {} broken",
        shared_run.arrivals.len(),
        local_run.violations.len()
    );
    // A floor against a gate that serialises everything; the rate itself is measured by
    // repeated runs alone (docs/architecture.md), not asserted under the suite's load.
    assert!(rate >= 0.6 * 30.0, "{rate:.1} sends/s");
    assert!(
        !local_run.violations.is_empty(),
        "three in-process pacers should have broken the bot's window"
    );
}

/// Fills a bot's shared window with 30 departures of about 100 ms ago, all answered but the
/// oldest, which is `replica`'s.
async fn one_unanswered_departure(shared: &pregonero::shared::Shared, account: &str, replica: u32) {
    let script = redis::Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('SET', KEYS[2], 30)
for i = 1, 30 do
  local dep = now - 100000 + i
  local ans, rep = dep + 1000, '1'
  if i == 1 then ans, rep = 0, ARGV[1] end
  redis.call('LPUSH', KEYS[1], string.format('%d:%d:%d:%s', i, dep, ans, rep))
end
redis.call('PEXPIRE', KEYS[1], 60000)
return {now}
",
    );
    let prefix = format!("pregonero:pace:{account}:");
    shared
        .eval(
            &script,
            &[&format!("{prefix}sent"), &format!("{prefix}seq")],
            &[i64::from(replica)],
        )
        .await
        .expect("seed the window");
}

/// A replica killed mid-send leaves a departure that will never be answered. Once its heartbeat
/// is gone, the others count that send as arrived `DEAD_ANSWER` after it left (a request leaves
/// within `LEAVE_WITHIN` of its departure or not at all), so the bot's window reopens a second
/// after that: not earlier (the request may still have been on its way), and not after the
/// 35 s a live replica's unanswered send is given. A replica whose heartbeat is there holds the
/// window.
#[actix_web::test]
async fn a_dead_replicas_unanswered_send_holds_the_bot_for_a_bounded_time() {
    use pregonero::pacing::{DEAD_ANSWER, Pacer, RecipientKind, SharedPacer};
    let Some(url) = crate::helpers::redis_url() else {
        return;
    };
    let shared = pregonero::shared::Shared::new(&url).expect("redis url");
    pregonero::pacing::heartbeat(shared.clone());
    // Replica numbers are below 2^31: these two are no live process's.
    let (dead, alive) = (4_000_000_001u32, 4_000_000_002u32);
    shared
        .set_px(&format!("pregonero:alive:{alive}"), 60_000)
        .await
        .expect("heartbeat");

    // Dead: the send goes about DEAD_ANSWER + 1 s after the unanswered departure.
    let account = format!("test-{}", uuid::Uuid::new_v4().simple());
    let pacer = SharedPacer::new(telegram_limits(), shared.clone(), &account, [7u8; 32]);
    one_unanswered_departure(&shared, &account, dead).await;
    let permit = pacer
        .acquire("chat", RecipientKind::Private, Duration::from_secs(10))
        .await
        .expect("a dead replica holds the window for a bounded time");
    let earliest = DEAD_ANSWER + Duration::from_secs(1) - Duration::from_millis(150);
    assert!(
        permit.waited >= earliest,
        "left {:?} after, before the dead replica's send can be taken as arrived",
        permit.waited
    );
    assert!(
        permit.waited < Duration::from_secs(5),
        "{:?}",
        permit.waited
    );
    assert!(permit.fresh(), "a shared permit is fresh when handed out");
    assert!(permit.leave_by.is_some(), "a shared permit has a deadline");
    pacer.answered(&permit);

    // Alive: its send may still be on its way, so the window stays shut.
    let account = format!("test-{}", uuid::Uuid::new_v4().simple());
    let pacer = SharedPacer::new(telegram_limits(), shared.clone(), &account, [7u8; 32]);
    one_unanswered_departure(&shared, &account, alive).await;
    let held = pacer
        .acquire("chat", RecipientKind::Private, Duration::from_secs(3))
        .await;
    assert!(
        held.is_err(),
        "a live replica's unanswered send was ignored"
    );
}
