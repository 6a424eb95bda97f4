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
        /// Do not serve HTTP (worker-only replica).
        #[arg(long)]
        no_http: bool,
        /// Do not run delivery workers (API-only replica).
        #[arg(long)]
        no_workers: bool,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Administration.
    #[command(subcommand)]
    Admin(AdminCommand),
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
            };
            let app = Application::build(settings.clone(), options).await?;
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
            if options.http {
                println!(
                    "Pregonero listening on http://{}:{}",
                    settings.host,
                    app.port()
                );
            }
            let running = app.spawn()?;
            shutdown_signal().await;
            running.stop().await;
        }
        Command::Migrate => {
            let db = db::connect(&settings).await?;
            pregonero::outbox::Queue::attach(&db, &settings, true).await?;
            println!("migrations applied");
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
