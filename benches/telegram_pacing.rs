//! Pacing benchmark (issue 18): one bot, 300 messages to 150 private chats (two each) posted as
//! fast as 16 client connections can, against the fake Telegram Bot API counting its limits in
//! sliding windows at arrival (30 per bot in any second, 1 s between two sends to a chat, no
//! burst) after a random 0–30 ms network delay. Repeated `BENCH_RUNS` times (default 20) on one
//! server; prints each run and min / median / max of the delivered share of 30 msg/s and of the
//! 429s, and the server's RSS.
//!
//! `cargo bench --bench telegram_pacing` (SQLite);
//! `BENCH_DATABASE_URL=postgres://… cargo bench --bench telegram_pacing` (an empty database).
//! Knobs: `BENCH_RUNS`, `BENCH_JITTER_MS` (default 30), `BENCH_CHATS` (default 150).
use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::Duration,
};

use fakes::telegram::{FakeTelegram, FakeTelegramConfig, Limits};
use futures::{StreamExt, stream};
use serde_json::{Value, json};

const BOT_TOKEN: &str = "110201543:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw";
const PER_CHAT: i64 = 2;
const ALLOWED_PER_SEC: f64 = 30.0;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// min / median / max of `values`.
fn spread(values: &[f64]) -> (f64, f64, f64) {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    (v[0], v[v.len() / 2], v[v.len() - 1])
}

#[actix_web::main]
async fn main() {
    let runs: usize = env_or("BENCH_RUNS", 20);
    let chats: i64 = env_or("BENCH_CHATS", 150);
    let jitter = Duration::from_millis(env_or("BENCH_JITTER_MS", 30));
    let telegram = FakeTelegram::start_with(FakeTelegramConfig {
        accept_any_chat: true,
        limits: Limits::at_arrival(),
        ..Default::default()
    })
    .await
    .expect("fake telegram");
    telegram.add_bot(BOT_TOKEN, "bench_bot");
    telegram.set_jitter(jitter);
    let data_dir = tempfile::tempdir().expect("tempdir");

    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pregonero"));
    cmd.arg("serve")
        .env("RUST_LOG", "warn")
        .env("PREGONERO_PORT", "0")
        .env("PREGONERO_DATA_DIR", data_dir.path())
        .env("PREGONERO_TELEGRAM__API_BASE_URL", telegram.base_url())
        .stdout(Stdio::piped());
    if let Ok(url) = std::env::var("BENCH_DATABASE_URL") {
        cmd.env("DATABASE_URL", url);
    }
    let mut child = cmd.spawn().expect("start pregonero");
    let mut key = None;
    let mut address = None;
    for line in BufReader::new(child.stdout.take().expect("stdout")).lines() {
        let line = line.expect("line");
        if line.trim().starts_with("prg_") {
            key = Some(line.trim().to_owned());
        }
        if let Some(a) = line.strip_prefix("Pregonero listening on ") {
            address = Some(a.trim().to_owned());
            break;
        }
    }
    let (key, address) = (
        key.expect("admin key (use an empty database)"),
        address.expect("address"),
    );
    let pid = child.id();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_rss = rss_kib(pid, "VmRSS:");

    let client = reqwest::Client::new();
    let channel: Value = client
        .post(format!("{address}/api/v1/channels"))
        .bearer_auth(&key)
        .json(&json!({"kind": "telegram", "name": "bench", "bot_token": BOT_TOKEN}))
        .send()
        .await
        .expect("create channel")
        .json()
        .await
        .expect("json");
    let channel_id = channel["id"].as_str().expect("channel id").to_owned();

    println!(
        "telegram_pacing: {runs} runs of {} messages to {chats} chats through one bot, fake counting at arrival with 0-{} ms jitter, {}",
        chats * PER_CHAT,
        jitter.as_millis(),
        if std::env::var("BENCH_DATABASE_URL").is_ok() {
            "postgres"
        } else {
            "sqlite"
        }
    );
    let total = (chats * PER_CHAT) as usize;
    let (mut shares, mut refusals) = (Vec::new(), Vec::new());
    for run in 0..runs {
        telegram.reset();
        // Chat ids of their own per run: no chat carries a turn over from the run before.
        let base = 1_000 + run as i64 * 10_000;
        let posts = (0..PER_CHAT).flat_map(|round| {
            (1..=chats).map(move |chat| (base + chat, format!("bench {round}-{chat}")))
        });
        let (client, address, key, channel_id) = (&client, &address, &key, &channel_id);
        let accepted = stream::iter(posts)
            .map(|(chat, text)| async move {
                client
                    .post(format!("{address}/api/v1/messages"))
                    .bearer_auth(key)
                    .json(&json!({"channel_id": channel_id, "to": chat.to_string(), "text": text}))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().as_u16() == 202)
            })
            .buffer_unordered(16)
            .filter(|ok| std::future::ready(*ok))
            .count()
            .await;
        assert_eq!(accepted, total, "every message accepted");
        let delivered = telegram
            .wait_for_sent(total, Duration::from_secs(120))
            .await;
        let sent = telegram.sent();
        let first = sent.first().map(|m| m.at).expect("something was sent");
        let last = sent.last().map(|m| m.at).expect("something was sent");
        let span = last.duration_since(first).as_secs_f64();
        let share = (sent.len() as f64 - 1.0) / span / ALLOWED_PER_SEC;
        let refused = telegram.rate_limited();
        println!(
            "  run {:>2}: {} delivered{} in {span:.2} s: {:.2} msg/s = {share:.3} of 30 msg/s, {refused} × 429",
            run + 1,
            sent.len(),
            if delivered { "" } else { " (NOT ALL)" },
            (sent.len() as f64 - 1.0) / span,
        );
        shares.push(share);
        refusals.push(refused as f64);
        // Let every chat's and the bot's window empty before the next run.
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    let after_rss = rss_kib(pid, "VmRSS:");
    let peak_rss = rss_kib(pid, "VmHWM:");
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let _ = child.wait();

    let (lo, mid, hi) = spread(&shares);
    println!("  delivered share of 30 msg/s: min {lo:.3} / median {mid:.3} / max {hi:.3}");
    let (lo, mid, hi) = spread(&refusals);
    println!(
        "  429s per run:                min {lo} / median {mid} / max {hi} (runs with any: {})",
        refusals.iter().filter(|r| **r > 0.0).count()
    );
    println!(
        "  RSS idle {:.1} MiB, after the runs {:.1} MiB (peak {:.1} MiB)",
        idle_rss as f64 / 1024.0,
        after_rss as f64 / 1024.0,
        peak_rss as f64 / 1024.0
    );
}
