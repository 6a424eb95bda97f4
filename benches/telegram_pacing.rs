//! Pacing benchmark: 600 messages to 300 chats through one bot, against the fake Telegram Bot API
//! (30 msg/s per bot, 1 msg/s per chat). Prints the achieved rate as a ratio of the allowed
//! 30 msg/s, the 429s received, and the server's RSS idle and after the run.
//!
//! `cargo bench --bench telegram_pacing` (SQLite); `BENCH_DATABASE_URL=postgres://… cargo bench …`.
use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use fakes::telegram::{FakeTelegram, FakeTelegramConfig};
use serde_json::{Value, json};

const BOT_TOKEN: &str = "110201543:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw";
const CHATS: i64 = 300;
const PER_CHAT: i64 = 2;
const ALLOWED_PER_SEC: f64 = 30.0;

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

#[actix_web::main]
async fn main() {
    let telegram = FakeTelegram::start_with(FakeTelegramConfig {
        accept_any_chat: true,
        ..Default::default()
    })
    .await
    .expect("fake telegram");
    telegram.add_bot(BOT_TOKEN, "bench_bot");
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

    let total = (CHATS * PER_CHAT) as usize;
    let started = Instant::now();
    for round in 0..PER_CHAT {
        for chat in 1..=CHATS {
            let res = client
                .post(format!("{address}/api/v1/messages"))
                .bearer_auth(&key)
                .json(&json!({"channel_id": channel_id, "to": (1000 + chat).to_string(), "text": format!("bench {round}-{chat}")}))
                .send()
                .await
                .expect("post message");
            assert_eq!(res.status().as_u16(), 202);
        }
    }
    let accepted_in = started.elapsed();
    let delivered = telegram
        .wait_for_sent(total, Duration::from_secs(120))
        .await;
    let sent = telegram.sent();
    let first = sent.first().map(|m| m.at).expect("something was sent");
    let last = sent.last().map(|m| m.at).expect("something was sent");
    let span = last.duration_since(first).as_secs_f64();
    let rate = (sent.len() as f64 - 1.0) / span;
    let after_rss = rss_kib(pid, "VmRSS:");
    let peak_rss = rss_kib(pid, "VmHWM:");
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let _ = child.wait();

    println!(
        "telegram_pacing: {} messages to {CHATS} chats through one bot",
        sent.len()
    );
    println!(
        "  database:            {}",
        if std::env::var("BENCH_DATABASE_URL").is_ok() {
            "postgres"
        } else {
            "sqlite"
        }
    );
    println!(
        "  accepted by the API: {total} in {:.2}s",
        accepted_in.as_secs_f64()
    );
    println!("  all delivered:       {delivered}");
    println!("  achieved rate:       {rate:.2} msg/s over {span:.2}s");
    println!(
        "  ratio of allowed:    {:.3} (allowed {ALLOWED_PER_SEC} msg/s)",
        rate / ALLOWED_PER_SEC
    );
    println!("  429s received:       {}", telegram.rate_limited());
    println!("  RSS idle:            {:.1} MiB", idle_rss as f64 / 1024.0);
    println!(
        "  RSS after the run:   {:.1} MiB (peak {:.1} MiB)",
        after_rss as f64 / 1024.0,
        peak_rss as f64 / 1024.0
    );
}
