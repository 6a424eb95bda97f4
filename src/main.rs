//! The `pregonero` command: `serve` (default), `migrate`, `admin create-api-key`.
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use pregonero::{
    auth,
    config::Settings,
    db,
    startup::{Application, RunOptions, shutdown_signal},
    telemetry,
};

#[derive(Parser)]
#[command(version, about = "Self-hosted multi-channel messaging server")]
struct Cli {
    /// TOML settings file (environment `PREGONERO_*` still wins).
    #[arg(long, env = "PREGONERO_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP API, the delivery workers and the channel actors (the default).
    Serve {
        /// Do not serve the API (worker-only replica): only /live, /ready, /health and /metrics
        /// stay on the port, for probes and scraping.
        #[arg(long)]
        no_http: bool,
        /// Do not run delivery workers (API-only replica).
        #[arg(long)]
        no_workers: bool,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Print the OpenAPI document (what `GET /openapi.json` serves; docs/openapi.json) and exit.
    Openapi,
    /// Administration.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Bring data from the tools Pregonero replaces.
    #[command(subcommand)]
    Import(ImportCommand),
}

#[derive(Subcommand)]
enum ImportCommand {
    /// Pingui's integrations (chat, scope, status), keeping their clients' tokens working.
    Pingui {
        /// Pingui's SQLite database file (opened read-only).
        #[arg(long)]
        db: PathBuf,
        /// The environment variable that holds Pingui's `JWT_SECRET` (never pass it as an
        /// argument: arguments are visible to every user of the machine).
        #[arg(long, default_value = "PINGUI_JWT_SECRET")]
        jwt_secret_env: String,
        /// Who owns the imported integrations: `admin` (the first admin), a user name or an email.
        #[arg(long, default_value = "admin")]
        owner: String,
        /// The Telegram channel account (bot) that delivers their alerts; needed when the owner
        /// has more than one.
        #[arg(long)]
        channel: Option<String>,
        /// Alerts per day of each imported integration (Pingui's was 10).
        #[arg(long, default_value_t = 10)]
        daily_quota: i32,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create an API key for the admin user and print it once.
    CreateApiKey {
        /// A name to recognise the key by.
        #[arg(long)]
        name: String,
    },
}

/// mimalloc: a contact import allocates a dozen strings per row on one thread and frees them on
/// SQLite's; with glibc's allocator a million-row import took 8.4-9.7 s and 10-12 s of CPU, with
/// mimalloc 5.7 s and 7.5 s (`bench/contacts_import.sh`). Built without transparent huge pages
/// (`no_thp`), which cost 37 MB of peak RSS in a 30,000-recipient campaign.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    pregonero::allocator::configure();
    actix_web::rt::System::new().block_on(async {
        match run(Cli::parse()).await {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                // One readable line with the causes; no backtrace for configuration mistakes.
                eprintln!("error: {e:#}");
                std::process::ExitCode::FAILURE
            }
        }
    })
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if matches!(cli.command, Some(Command::Openapi)) {
        // From the code alone: no settings, no database.
        println!(
            "{}",
            serde_json::to_string_pretty(pregonero::web::docs::document())?
        );
        return Ok(());
    }
    let settings = Settings::load(cli.config.as_deref())?;
    telemetry::init(settings.log_format);
    match cli.command.unwrap_or(Command::Serve {
        no_http: false,
        no_workers: false,
    }) {
        Command::Serve {
            no_http,
            no_workers,
        } => {
            let options = RunOptions {
                http: !no_http,
                workers: !no_workers,
                ..RunOptions::default()
            };
            let app = Application::build(settings.clone(), options.clone()).await?;
            if let Some(key) = app.bootstrap_key() {
                // Printed, never logged: this is the only time the key exists in clear.
                println!(
                    "\nFirst start: created the admin API key (shown once, stored hashed):\n\n    {key}\n"
                );
            }
            if let Some(password) = app.bootstrap_password() {
                // Printed, never logged, and only this once; set PREGONERO_ADMIN_PASSWORD to choose it.
                println!(
                    "\nLocal mode: the admin signs in as `admin` with this password (shown once, stored with argon2):\n\n    {password}\n"
                );
            }
            println!(
                "Pregonero listening on http://{}:{}{}",
                settings.host,
                app.port(),
                if options.http {
                    ""
                } else {
                    " (worker only: /live, /ready, /health, /metrics)"
                }
            );
            let running = app.spawn()?;
            shutdown_signal().await;
            running.stop().await;
        }
        Command::Openapi => unreachable!("handled before the settings are read"),
        Command::Migrate => {
            let db = db::connect(&settings).await?;
            pregonero::outbox::Queue::attach(&db, &settings, true).await?;
            println!("migrations applied");
        }
        Command::Import(ImportCommand::Pingui {
            db: path,
            jwt_secret_env,
            owner,
            channel,
            daily_quota,
        }) => {
            import_pingui(
                &settings,
                &path,
                &jwt_secret_env,
                &owner,
                channel,
                daily_quota,
            )
            .await?
        }
        Command::Admin(AdminCommand::CreateApiKey { name }) => {
            let conn = db::connect(&settings).await?;
            let admin = match auth::repo::first_admin(&conn).await? {
                Some(admin) => admin,
                None => auth::repo::create_user(&conn, "admin", "admin").await?,
            };
            let key = auth::repo::create_api_key(&conn, &admin.id, &name)
                .await
                .context("could not create the key")?;
            println!("{key}");
        }
    }
    Ok(())
}

/// `pregonero import pingui`: see `integrations::legacy` and docs/api.md.
async fn import_pingui(
    settings: &Settings,
    path: &std::path::Path,
    jwt_secret_env: &str,
    owner: &str,
    channel: Option<String>,
    daily_quota: i32,
) -> anyhow::Result<()> {
    use pregonero::{channels, crypto::Cipher, integrations::legacy};
    let jwt_secret = std::env::var(jwt_secret_env)
        .ok()
        .filter(|s| !s.is_empty())
        .with_context(|| format!("set {jwt_secret_env} to Pingui's JWT_SECRET"))?;
    anyhow::ensure!(
        (1..=100_000).contains(&daily_quota),
        "--daily-quota must be between 1 and 100000"
    );
    let rows = legacy::read_pingui(path)?;
    let conn = db::connect(settings).await?;
    let cipher = Cipher::from_base64(&db::secret_key(settings)?).context("invalid secret_key")?;
    let owner = auth::repo::user_named(&conn, owner)
        .await?
        .with_context(|| format!("no user `{owner}` (give a user name, an email or `admin`)"))?;
    let bots: Vec<_> = channels::repo::list_for(&conn, &owner.id)
        .await?
        .into_iter()
        .filter(|c| c.kind == channels::telegram::KIND)
        .collect();
    let channel = match channel {
        Some(id) => bots
            .into_iter()
            .find(|c| c.id.as_str() == id)
            .with_context(|| format!("`{id}` is not a Telegram channel account of that owner"))?,
        None => match bots.len() {
            1 => bots.into_iter().next().context("one bot")?,
            0 => anyhow::bail!(
                "that owner has no Telegram bot: register Pingui's bot first (POST /api/v1/channels with its BOT_TOKEN)"
            ),
            n => anyhow::bail!("that owner has {n} Telegram bots: pick one with --channel <id>"),
        },
    };
    let to = legacy::ImportPingui {
        jwt_secret,
        owner_id: owner.id.clone(),
        channel_id: channel.id.clone(),
        daily_quota,
    };
    let total = rows.len();
    let report = legacy::import_pingui(&conn, &cipher, rows, &to, chrono::Utc::now()).await?;
    let [active, pending, revoked] = report.imported;
    println!(
        "{total} Pingui integrations read: {} imported ({active} active, {pending} pending, {revoked} revoked), {} imported before, {} refused",
        active + pending + revoked,
        report.already,
        report.refused.len()
    );
    for (id, why) in &report.refused {
        println!("  refused #{id}: {why}");
    }
    if active + pending + revoked > 0 {
        println!(
            "Their clients' tokens work as they are against this server's POST /api/alert; revoke one with DELETE /api/v1/integrations/{{id}}."
        );
    }
    Ok(())
}
