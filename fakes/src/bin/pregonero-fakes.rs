//! `pregonero-fakes`: runs a provider fake as a standalone process (for benchmarks and scripts).
//!
//! ```text
//! pregonero-fakes telegram --port PORT --bot TOKEN:USERNAME [--bot ...] [--chat ID ...]
//!                          [--accept-any-chat] [--allow-insecure-webhooks] [--latency-ms MS]
//! ```
//!
//! `TOKEN:USERNAME` is split at its last `:` (bot tokens contain one themselves). Prints
//! `listening on http://127.0.0.1:<port>` once ready, then runs until killed. Stats and reset
//! are under `/__control/`.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use fakes::{FakeTelegram, FakeTelegramConfig};

const USAGE: &str = "usage: pregonero-fakes telegram --port PORT --bot TOKEN:USERNAME [--bot ...] \
                     [--chat ID ...] [--accept-any-chat] [--allow-insecure-webhooks] [--latency-ms MS]";

#[derive(Debug, Default)]
struct Options {
    port: u16,
    bots: Vec<(String, String)>,
    chats: Vec<i64>,
    accept_any_chat: bool,
    allow_insecure_webhooks: bool,
    latency: Duration,
}

fn parse_args(args: &[String]) -> Result<Options, String> {
    let mut args = args.iter();
    match args.next().map(String::as_str) {
        Some("telegram") => {}
        Some(other) => return Err(format!("unknown fake {other:?}")),
        None => return Err("missing fake name".to_owned()),
    }
    let mut options = Options::default();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match arg.as_str() {
            "--port" => {
                let v = value("--port")?;
                options.port = v.parse().map_err(|_| format!("bad port {v:?}"))?;
            }
            "--bot" => {
                let v = value("--bot")?;
                let (token, username) = v
                    .rsplit_once(':')
                    .filter(|(token, username)| !token.is_empty() && !username.is_empty())
                    .ok_or_else(|| format!("--bot wants TOKEN:USERNAME, got {v:?}"))?;
                options.bots.push((token.to_owned(), username.to_owned()));
            }
            "--chat" => {
                let v = value("--chat")?;
                options
                    .chats
                    .push(v.parse().map_err(|_| format!("bad chat id {v:?}"))?);
            }
            "--latency-ms" => {
                let v = value("--latency-ms")?;
                let ms: u64 = v.parse().map_err(|_| format!("bad latency {v:?}"))?;
                options.latency = Duration::from_millis(ms);
            }
            "--accept-any-chat" => options.accept_any_chat = true,
            "--allow-insecure-webhooks" => options.allow_insecure_webhooks = true,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(options)
}

#[actix_web::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let options = match parse_args(&args) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("pregonero-fakes: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };

    let config = FakeTelegramConfig {
        accept_any_chat: options.accept_any_chat,
        allow_insecure_webhooks: options.allow_insecure_webhooks,
        ..FakeTelegramConfig::default()
    };
    let fake = match FakeTelegram::start_on(options.port, config).await {
        Ok(fake) => fake,
        Err(err) => {
            eprintln!(
                "pregonero-fakes: can't listen on port {}: {err}",
                options.port
            );
            return ExitCode::FAILURE;
        }
    };
    for (token, username) in &options.bots {
        fake.add_bot(token, username);
    }
    for chat in &options.chats {
        fake.add_chat(*chat);
    }
    fake.set_latency(options.latency);

    let mut stdout = std::io::stdout().lock();
    let printed =
        writeln!(stdout, "listening on {}", fake.base_url()).and_then(|()| stdout.flush());
    drop(stdout);
    if let Err(err) = printed {
        eprintln!("pregonero-fakes: can't write to stdout: {err}");
        return ExitCode::FAILURE;
    }

    // Serve until the process is killed (signal handling is disabled: default dispositions).
    std::future::pending::<()>().await;
    ExitCode::SUCCESS
}
