//! Connects the database (SQLite by default, PostgreSQL by URL) and runs migrations.
use std::{str::FromStr, time::Duration};

use anyhow::Context;
use migrations::{Migrator, MigratorTrait};
use sea_orm::{
    DatabaseConnection, SqlxPostgresConnector, SqlxSqliteConnector,
    sqlx::{
        postgres::{PgConnectOptions, PgPoolOptions},
        sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
    },
};

use crate::config::Settings;

/// Opens the pool and applies our migrations (the job queue's tables are the queue's own:
/// `jobs::Queue::attach`).
pub async fn connect(settings: &Settings) -> anyhow::Result<DatabaseConnection> {
    let db = open(settings).await?;
    Migrator::up(&db, None)
        .await
        .context("database migration failed")?;
    Ok(db)
}

/// Opens a pool on the current runtime (sqlx connections belong to the runtime that opened them).
pub async fn open(settings: &Settings) -> anyhow::Result<DatabaseConnection> {
    let url = settings.database_url();
    if settings.is_postgres() {
        let options = PgConnectOptions::from_str(&url).context("bad PostgreSQL URL")?;
        let port = options.get_port();
        let pool = PgPoolOptions::new()
            .max_connections(settings.database_max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |_connection, _meta| {
                Box::pin(async move {
                    tcp_nodelay_to(port);
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .context("could not connect to PostgreSQL (check DATABASE_URL)")?;
        return Ok(SqlxPostgresConnector::from_sqlx_postgres_pool(pool));
    }
    std::fs::create_dir_all(&settings.data_dir)
        .with_context(|| format!("could not create data dir {}", settings.data_dir.display()))?;
    let options = sqlite_options(settings)?;
    let pool = SqlitePoolOptions::new()
        .max_connections(settings.database_max_connections)
        .connect_with(options)
        .await
        .with_context(|| format!("could not open SQLite database {url}"))?;
    Ok(SqlxSqliteConnector::from_sqlx_sqlite_pool(pool))
}

fn sqlite_options(settings: &Settings) -> anyhow::Result<SqliteConnectOptions> {
    let url = settings.database_url();
    Ok(SqliteConnectOptions::from_str(&url)
        .with_context(|| format!("bad SQLite URL {url}"))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        // WAL + NORMAL survives a killed process; only an OS crash can lose the last commits.
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(10))
        .foreign_keys(true))
}

/// Sets `TCP_NODELAY` on this process's TCP sockets to `port` (PostgreSQL's), after every new
/// connection.
///
/// sqlx 0.9.0 stopped setting it (transact-rs/sqlx#4335, fixed upstream by #4336, not released
/// when this was written), so the last part of any message longer than one TCP segment waited
/// for the server's delayed acknowledgement, 40 ms. Over 127.0.0.1 that is a message over 64 KiB
/// (a contact import of 1,000,000 rows took 43-45 s, against 16-19 s over a Unix socket); across
/// a network, over about 1.4 KiB. Unix sockets are not affected. Remove this once sqlx sets the
/// option again.
#[cfg(target_os = "linux")]
fn tcp_nodelay_to(port: u16) {
    use std::os::fd::{BorrowedFd, RawFd};
    let Ok(fds) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    for entry in fds.flatten() {
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<RawFd>().ok())
        else {
            continue;
        };
        let is_socket = std::fs::read_link(entry.path()).is_ok_and(|target| {
            target
                .as_os_str()
                .as_encoded_bytes()
                .starts_with(b"socket:")
        });
        if !is_socket {
            continue;
        }
        // SAFETY: the descriptor is only borrowed for the calls below. If another thread closed
        // it meanwhile, they fail, or act on whatever socket now has its number, and only after
        // checking that it is a TCP stream to `port`; `TCP_NODELAY` only changes when segments
        // are sent.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let socket = socket2::SockRef::from(&fd);
        let to_port = socket
            .peer_addr()
            .ok()
            .and_then(|addr| addr.as_socket())
            .is_some_and(|addr| addr.port() == port);
        if to_port && socket.r#type().is_ok_and(|t| t == socket2::Type::STREAM) {
            let _ = socket.set_tcp_nodelay(true);
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn tcp_nodelay_to(_port: u16) {}

/// Page cache of a [`SqliteBulk`] connection, in KiB (SQLite's default is 2,000).
const BULK_CACHE_KIB: i64 = 16 * 1024;

/// WAL size, in pages, at which a [`SqliteBulk`] commit copies what its checkpointer has not
/// copied yet, so that the WAL starts over (64 MiB of 4 KiB pages; SQLite's default is 1,000).
const BULK_WAL_PAGES: u32 = 16_384;

/// A SQLite connection of its own, used on the calling (blocking) thread, for a long run of
/// writes (a contact import), with a checkpointer thread beside it.
///
/// - Its own connection: SQLite drops a connection's page cache whenever another one wrote, so
///   batches spread over the pool's connections read their pages again each time (an import of a
///   million rows made 168,000 page reads).
/// - On the calling thread, through rusqlite: sqlx runs each statement on a worker thread of the
///   connection's and copies every bound value into arguments of its own first.
/// - Its own checkpoints: the commit that takes the WAL past SQLite's limit copies the WAL into
///   the database and waits for two fsyncs, inside the writer's time (a million-row import spent
///   1.5 s of its 6 s doing that; 4.6 s with no checkpoint at all, `bench/contacts_import.sh`).
///   Here another connection checkpoints after every commit on a thread of its own, concurrently
///   with the writer (PASSIVE never blocks it), and the writer's own checkpoint only runs every
///   [`BULK_WAL_PAGES`] pages, with little left to copy, to let the WAL start over.
pub struct SqliteBulk {
    connection: rusqlite::Connection,
    /// Wakes the checkpointer; dropping it stops the checkpointer.
    wake: Option<std::sync::mpsc::SyncSender<()>>,
    checkpointer: Option<std::thread::JoinHandle<()>>,
}

impl SqliteBulk {
    /// The file of `db`'s pool (`None` on PostgreSQL), to [`open`](Self::open).
    pub fn path(db: &DatabaseConnection) -> Option<std::path::PathBuf> {
        match db.get_database_backend() {
            sea_orm::DatabaseBackend::Sqlite => Some(
                db.get_sqlite_connection_pool()
                    .connect_options()
                    .get_filename()
                    .to_path_buf(),
            ),
            _ => None,
        }
    }

    /// Opens the connection and starts its checkpointer. Blocking (call from a blocking thread).
    pub fn open(path: &std::path::Path) -> anyhow::Result<Self> {
        if path.as_os_str().is_empty() || path == std::path::Path::new(":memory:") {
            // Another connection would open another, empty database.
            anyhow::bail!("bulk writes need the SQLite database in a file, not in memory");
        }
        let open = |extra: &str| -> anyhow::Result<rusqlite::Connection> {
            let connection = rusqlite::Connection::open(path)
                .with_context(|| format!("could not open SQLite database {}", path.display()))?;
            // The pool's settings (sqlite_options), and the writer's own.
            connection.busy_timeout(Duration::from_secs(10))?;
            connection.execute_batch(&format!(
                "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; {extra}"
            ))?;
            Ok(connection)
        };
        let connection = open(&format!(
            "PRAGMA cache_size = -{BULK_CACHE_KIB}; PRAGMA wal_autocheckpoint = {BULK_WAL_PAGES};"
        ))?;
        let checkpoints = open("")?;
        let (wake, woken) = std::sync::mpsc::sync_channel::<()>(1);
        let checkpointer = std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || {
                while woken.recv().is_ok() {
                    if let Err(e) =
                        checkpoints.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                    {
                        tracing::warn!(error = %e, "background WAL checkpoint failed");
                    }
                }
            })
            .context("could not start the checkpoint thread")?;
        Ok(Self {
            connection,
            wake: Some(wake),
            checkpointer: Some(checkpointer),
        })
    }

    /// The connection, to prepare statements on that outlive one [`write`](Self::write).
    pub fn connection(&self) -> &rusqlite::Connection {
        &self.connection
    }

    /// Runs `write` in one transaction that holds the write lock from its start (so it never has
    /// to upgrade a read snapshot, which SQLite refuses when another connection wrote meanwhile),
    /// commits it, and has the checkpointer copy it into the database.
    pub fn write<T>(
        &self,
        write: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        self.connection.execute_batch("BEGIN IMMEDIATE")?;
        let out = write(&self.connection).and_then(|out| {
            self.connection.execute_batch("COMMIT")?;
            Ok(out)
        });
        if out.is_err() && !self.connection.is_autocommit() {
            let _ = self.connection.execute_batch("ROLLBACK");
        }
        if out.is_ok()
            && let Some(wake) = &self.wake
        {
            // Full means a checkpoint is due already, and it will include this commit.
            let _ = wake.try_send(());
        }
        out
    }
}

impl Drop for SqliteBulk {
    fn drop(&mut self) {
        self.wake = None;
        if let Some(checkpointer) = self.checkpointer.take() {
            let _ = checkpointer.join();
        }
    }
}

/// The secret-at-rest key: from settings, else `<data_dir>/secret.key`, created on first start.
pub fn secret_key(settings: &Settings) -> anyhow::Result<String> {
    use secrecy::ExposeSecret;
    if let Some(key) = &settings.secret_key {
        return Ok(key.expose_secret().to_owned());
    }
    let path = settings.data_dir.join("secret.key");
    if let Ok(existing) = std::fs::read_to_string(&path) {
        return Ok(existing.trim().to_owned());
    }
    std::fs::create_dir_all(&settings.data_dir)?;
    let key = crate::crypto::Cipher::generate_key();
    write_private(&path, &key).with_context(|| format!("could not write {}", path.display()))?;
    tracing::warn!(path = %path.display(), "generated a new secret key; back it up, secrets stored with it are unreadable without it");
    Ok(key)
}

fn write_private(path: &std::path::Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)?.write_all(contents.as_bytes())
}

/// A raw statement written with `?` placeholders, rewritten to `$1, $2, …` for PostgreSQL.
pub fn statement(
    backend: sea_orm::DatabaseBackend,
    text: &str,
    values: Vec<sea_orm::Value>,
) -> sea_orm::Statement {
    let text = match backend {
        sea_orm::DatabaseBackend::Postgres => {
            let mut out = String::with_capacity(text.len() + 8);
            let mut n = 0;
            for ch in text.chars() {
                if ch == '?' {
                    n += 1;
                    out.push('$');
                    out.push_str(&n.to_string());
                } else {
                    out.push(ch);
                }
            }
            out
        }
        _ => text.to_owned(),
    };
    sea_orm::Statement::from_sql_and_values(backend, text, values)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #[test]
    fn tcp_sockets_to_the_database_port_send_without_delay() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
        let port = listener.local_addr().expect("address").port();
        let client = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let other = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
        let unrelated =
            std::net::TcpStream::connect(other.local_addr().expect("address")).expect("connect");
        assert!(!client.nodelay().expect("nodelay"));
        super::tcp_nodelay_to(port);
        assert!(client.nodelay().expect("nodelay"));
        assert!(
            !unrelated.nodelay().expect("nodelay"),
            "only sockets to that port"
        );
    }
}

/// Whether `e` is a unique-constraint violation (an idempotency key or a natural key taken).
pub fn is_unique_violation(e: &sea_orm::DbErr) -> bool {
    matches!(
        e.sql_err(),
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
    )
}
