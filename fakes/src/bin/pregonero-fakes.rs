//! `pregonero-fakes`: runs a provider fake as a standalone process (for benchmarks and scripts).
//!
//! ```text
//! pregonero-fakes telegram --port PORT --bot TOKEN:USERNAME [--bot ...] [--chat ID ...]
//!                          [--accept-any-chat] [--allow-insecure-webhooks] [--latency-ms MS]
//!                          [--jitter-ms MS] [--at-arrival]
//! pregonero-fakes whatsapp --port PORT [--number ID:TOKEN:SECRET ...] [--webhook ID=URL ...]
//!                          [--template NAME:LANG:PARAMS ...] [--mps N] [--pair-period-ms N]
//!                          [--pair-burst N] [--window sync|async|off] [--latency-ms MS]
//!                          [--status-delay-ms MS] [--no-read] [--shuffle-statuses] [--jitter-ms MS]
//! ```
//!
//! `--jitter-ms MS` delays each request by a random 0..MS before it is counted (the network);
//! `--at-arrival` counts Telegram's limits in sliding windows with no burst (`Limits::at_arrival`).
//!
//! Telegram's `TOKEN:USERNAME` is split at its last `:` (bot tokens contain one themselves).
//! WhatsApp's `ID:TOKEN:SECRET` is split at its first and last `:`. Prints
//! `listening on http://127.0.0.1:<port>` once ready, then runs until killed. Stats and reset
//! are under `/__control/`.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use fakes::{FakeTelegram, FakeTelegramConfig, FakeWhatsApp, FakeWhatsAppConfig, WindowMode};

const USAGE: &str = "usage: pregonero-fakes telegram --port PORT --bot TOKEN:USERNAME [--bot ...] \
                     [--chat ID ...] [--accept-any-chat] [--allow-insecure-webhooks] [--latency-ms MS] \
                     [--jitter-ms MS] [--at-arrival]
       pregonero-fakes whatsapp --port PORT [--number ID:TOKEN:SECRET ...] [--webhook ID=URL ...] \
                     [--template NAME:LANG:PARAMS ...] [--mps N] [--pair-period-ms N] [--pair-burst N] \
                     [--window sync|async|off] [--latency-ms MS] [--status-delay-ms MS] [--no-read] \
                     [--shuffle-statuses] [--jitter-ms MS]";

/// Which fake to run, with its options.
#[derive(Debug)]
enum Command {
    Telegram(Options),
    WhatsApp(WhatsAppOptions),
}

#[derive(Debug, Default)]
struct Options {
    port: u16,
    bots: Vec<(String, String)>,
    chats: Vec<i64>,
    accept_any_chat: bool,
    allow_insecure_webhooks: bool,
    latency: Duration,
    jitter: Duration,
    at_arrival: bool,
}

#[derive(Debug, Default)]
struct WhatsAppOptions {
    port: u16,
    /// (phone number id, access token, app secret).
    numbers: Vec<(String, String, String)>,
    /// (phone number id, webhook URL).
    webhooks: Vec<(String, String)>,
    /// (name, language, body parameter count).
    templates: Vec<(String, String, usize)>,
    config: FakeWhatsAppConfig,
    latency: Duration,
    jitter: Duration,
}

/// The value after flag `name`.
fn value<'a>(args: &mut impl Iterator<Item = &'a String>, name: &str) -> Result<String, String> {
    args.next()
        .cloned()
        .ok_or_else(|| format!("{name} needs a value"))
}

/// The value after flag `name`, parsed.
fn number<'a, T: std::str::FromStr>(
    args: &mut impl Iterator<Item = &'a String>,
    name: &str,
) -> Result<T, String> {
    let v = value(args, name)?;
    v.parse().map_err(|_| format!("bad {name} value {v:?}"))
}

fn parse_args(args: &[String]) -> Result<Command, String> {
    let mut args = args.iter();
    match args.next().map(String::as_str) {
        Some("telegram") => parse_telegram(args).map(Command::Telegram),
        Some("whatsapp") => parse_whatsapp(args).map(Command::WhatsApp),
        Some(other) => Err(format!("unknown fake {other:?}")),
        None => Err("missing fake name".to_owned()),
    }
}

fn parse_telegram<'a>(mut args: impl Iterator<Item = &'a String>) -> Result<Options, String> {
    let mut options = Options::default();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--port" => {
                let v = value(&mut args, "--port")?;
                options.port = v.parse().map_err(|_| format!("bad port {v:?}"))?;
            }
            "--bot" => {
                let v = value(&mut args, "--bot")?;
                let (token, username) = v
                    .rsplit_once(':')
                    .filter(|(token, username)| !token.is_empty() && !username.is_empty())
                    .ok_or_else(|| format!("--bot wants TOKEN:USERNAME, got {v:?}"))?;
                options.bots.push((token.to_owned(), username.to_owned()));
            }
            "--chat" => {
                let v = value(&mut args, "--chat")?;
                options
                    .chats
                    .push(v.parse().map_err(|_| format!("bad chat id {v:?}"))?);
            }
            "--latency-ms" => {
                let v = value(&mut args, "--latency-ms")?;
                let ms: u64 = v.parse().map_err(|_| format!("bad latency {v:?}"))?;
                options.latency = Duration::from_millis(ms);
            }
            "--jitter-ms" => {
                let v = value(&mut args, "--jitter-ms")?;
                let ms: u64 = v.parse().map_err(|_| format!("bad jitter {v:?}"))?;
                options.jitter = Duration::from_millis(ms);
            }
            "--at-arrival" => options.at_arrival = true,
            "--accept-any-chat" => options.accept_any_chat = true,
            "--allow-insecure-webhooks" => options.allow_insecure_webhooks = true,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(options)
}

fn parse_whatsapp<'a>(
    mut args: impl Iterator<Item = &'a String>,
) -> Result<WhatsAppOptions, String> {
    let mut options = WhatsAppOptions::default();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--port" => options.port = number(&mut args, "--port")?,
            "--number" => {
                let v = value(&mut args, "--number")?;
                let parsed = v.split_once(':').and_then(|(id, rest)| {
                    let (token, secret) = rest.rsplit_once(':')?;
                    let ok = !id.is_empty() && !token.is_empty() && !secret.is_empty();
                    ok.then(|| (id.to_owned(), token.to_owned(), secret.to_owned()))
                });
                let number =
                    parsed.ok_or_else(|| format!("--number wants ID:TOKEN:SECRET, got {v:?}"))?;
                options.numbers.push(number);
            }
            "--webhook" => {
                let v = value(&mut args, "--webhook")?;
                let (id, url) = v
                    .split_once('=')
                    .filter(|(id, url)| !id.is_empty() && !url.is_empty())
                    .ok_or_else(|| format!("--webhook wants ID=URL, got {v:?}"))?;
                options.webhooks.push((id.to_owned(), url.to_owned()));
            }
            "--template" => {
                let v = value(&mut args, "--template")?;
                let mut parts = v.splitn(3, ':');
                let parsed = match (parts.next(), parts.next(), parts.next()) {
                    (Some(name), Some(lang), Some(params))
                        if !name.is_empty() && !lang.is_empty() =>
                    {
                        params
                            .parse()
                            .ok()
                            .map(|n| (name.to_owned(), lang.to_owned(), n))
                    }
                    _ => None,
                };
                let template = parsed
                    .ok_or_else(|| format!("--template wants NAME:LANG:PARAMS, got {v:?}"))?;
                options.templates.push(template);
            }
            "--mps" => options.config.limits.number_per_sec = number(&mut args, "--mps")?,
            "--pair-period-ms" => {
                let ms: u64 = number(&mut args, "--pair-period-ms")?;
                options.config.limits.pair_period = Duration::from_millis(ms);
            }
            "--pair-burst" => options.config.limits.pair_burst = number(&mut args, "--pair-burst")?,
            "--window" => {
                let v = value(&mut args, "--window")?;
                options.config.window_mode = match v.as_str() {
                    "sync" => WindowMode::SyncError,
                    "async" => WindowMode::AsyncFailed,
                    "off" => WindowMode::Off,
                    _ => return Err(format!("--window wants sync, async or off, got {v:?}")),
                };
            }
            "--latency-ms" => {
                let ms: u64 = number(&mut args, "--latency-ms")?;
                options.latency = Duration::from_millis(ms);
            }
            "--jitter-ms" => {
                let ms: u64 = number(&mut args, "--jitter-ms")?;
                options.jitter = Duration::from_millis(ms);
            }
            "--status-delay-ms" => {
                let ms: u64 = number(&mut args, "--status-delay-ms")?;
                options.config.status_delay = Duration::from_millis(ms);
            }
            "--no-read" => options.config.send_read = false,
            "--shuffle-statuses" => options.config.shuffle_statuses = true,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(options)
}

/// Starts the Telegram fake; returns it (keep it alive) and its base URL.
async fn start_telegram(options: Options) -> Result<(FakeTelegram, String), String> {
    let config = FakeTelegramConfig {
        accept_any_chat: options.accept_any_chat,
        allow_insecure_webhooks: options.allow_insecure_webhooks,
        ..FakeTelegramConfig::default()
    };
    let fake = FakeTelegram::start_on(options.port, config)
        .await
        .map_err(|err| format!("can't listen on port {}: {err}", options.port))?;
    for (token, username) in &options.bots {
        fake.add_bot(token, username);
    }
    for chat in &options.chats {
        fake.add_chat(*chat);
    }
    fake.set_latency(options.latency);
    fake.set_jitter(options.jitter);
    if options.at_arrival {
        fake.set_limits(fakes::telegram::Limits::at_arrival());
    }
    let url = fake.base_url();
    Ok((fake, url))
}

/// Starts the WhatsApp fake; returns it (keep it alive) and its base URL.
async fn start_whatsapp(options: WhatsAppOptions) -> Result<(FakeWhatsApp, String), String> {
    let fake = FakeWhatsApp::start_on(options.port, options.config)
        .await
        .map_err(|err| format!("can't listen on port {}: {err}", options.port))?;
    for (id, token, secret) in &options.numbers {
        fake.add_number(id, token, secret);
    }
    for (id, url) in &options.webhooks {
        fake.set_webhook(id, url);
    }
    for (name, language, params) in &options.templates {
        fake.add_template(name, language, *params);
    }
    fake.set_latency(options.latency);
    fake.set_jitter(options.jitter);
    let url = fake.base_url();
    Ok((fake, url))
}

#[actix_web::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let command = match parse_args(&args) {
        Ok(command) => command,
        Err(message) => {
            eprintln!("pregonero-fakes: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };

    // The fakes are kept alive until the process ends.
    let (_telegram, _whatsapp, url) = match command {
        Command::Telegram(options) => match start_telegram(options).await {
            Ok((fake, url)) => (Some(fake), None, url),
            Err(message) => {
                eprintln!("pregonero-fakes: {message}");
                return ExitCode::FAILURE;
            }
        },
        Command::WhatsApp(options) => match start_whatsapp(options).await {
            Ok((fake, url)) => (None, Some(fake), url),
            Err(message) => {
                eprintln!("pregonero-fakes: {message}");
                return ExitCode::FAILURE;
            }
        },
    };

    let mut stdout = std::io::stdout().lock();
    let printed = writeln!(stdout, "listening on {url}").and_then(|()| stdout.flush());
    drop(stdout);
    if let Err(err) = printed {
        eprintln!("pregonero-fakes: can't write to stdout: {err}");
        return ExitCode::FAILURE;
    }

    // Serve until the process is killed (signal handling is disabled: default dispositions).
    std::future::pending::<()>().await;
    ExitCode::SUCCESS
}
