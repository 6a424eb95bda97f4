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
    if settings.is_postgres() {
        migrate_locked(&db).await?;
    } else {
        Migrator::up(&db, None)
            .await
            .context("database migration failed")?;
    }
    Ok(db)
}

/// Key of the PostgreSQL advisory lock migrations run under (`pregoner` in ASCII).
pub const MIGRATION_LOCK: i64 = 0x7072_6567_6f6e_6572;

/// Runs the migrations holding a PostgreSQL advisory lock on a connection of its own, so pods
/// that start together run them one after another: the first applies them, the others wait,
/// then find nothing left to do. (sea-orm's migrator takes no lock: two at once race on the
/// same `CREATE TABLE` and on `seaql_migrations`.)
async fn migrate_locked(db: &DatabaseConnection) -> anyhow::Result<()> {
    use sea_orm::sqlx;
    let pool = db.get_postgres_connection_pool();
    let mut holder = pool
        .acquire()
        .await
        .context("could not connect to PostgreSQL")?;
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *holder)
        .await
        .context("could not take the migration lock")?;
    let migrated = Migrator::up(db, None).await;
    let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *holder)
        .await;
    if unlocked.is_err() {
        // A session lock lives as long as its connection: close it rather than pool it.
        let _ = holder.detach();
    }
    migrated.context("database migration failed")
}

/// How long a PostgreSQL query waits for a pooled connection (see [`open`]).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens a pool on the current runtime (sqlx connections belong to the runtime that opened them).
pub async fn open(settings: &Settings) -> anyhow::Result<DatabaseConnection> {
    let url = settings.database_url();
    if settings.is_postgres() {
        let options = PgConnectOptions::from_str(&url).context("bad PostgreSQL URL")?;
        let port = options.get_port();
        let pool = PgPoolOptions::new()
            .max_connections(settings.database_max_connections)
            // sqlx retries a refused connection with a backoff doubling up to a fifth of this
            // timeout: at 10 s, pools came back up to 2 s after PostgreSQL did (a 3 s restart
            // stopped every replica's deliveries for 4.6 s). At 5 s the wait after it is at
            // most 1 s, and a request that finds no connection fails after 5 s, not 10.
            .acquire_timeout(ACQUIRE_TIMEOUT)
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
        .after_connect(|connection, _meta| {
            Box::pin(async move {
                let mut handle = connection.lock_handle().await?;
                // SAFETY: the handle is locked away from the connection's worker thread while
                // the handler is set; `eager_busy_c` is a plain function that touches no data
                // through the pointer it is given (null here).
                unsafe {
                    rusqlite::ffi::sqlite3_busy_handler(
                        handle.as_raw_handle().as_ptr(),
                        Some(eager_busy_c),
                        std::ptr::null_mut(),
                    );
                }
                Ok(())
            })
        })
        .connect_with(options)
        .await
        .with_context(|| format!("could not open SQLite database {url}"))?;
    start_checkpointer(pool.connect_options().get_filename());
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
        .foreign_keys(true)
        // Checkpoints run on a thread of their own ([`start_checkpointer`]); the commit that takes
        // the WAL past this size still copies it itself, as a safety net.
        .pragma("wal_autocheckpoint", POOL_WAL_PAGES.to_string()))
}

/// WAL size, in pages, at which a pool commit checkpoints by itself (SQLite's default is 1,000).
const POOL_WAL_PAGES: u32 = 16_384;

/// How often the checkpointer copies the WAL into the database.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

/// Copies the WAL of the database at `path` into the database every [`CHECKPOINT_EVERY`], on a
/// thread with its own connection, one per file. SQLite's own checkpoint runs inside the commit
/// that takes the WAL past 1,000 pages (every half second at 500 webhooks a second) and waits
/// there for the database file's fsync: that request's answer took 50-110 ms instead of 2
/// (`bench/signals.sh`). PASSIVE never blocks a reader or a writer. The thread ends when the
/// file is gone (a test's temporary database).
fn start_checkpointer(path: &std::path::Path) {
    static STARTED: std::sync::Mutex<Vec<std::path::PathBuf>> = std::sync::Mutex::new(Vec::new());
    if path.as_os_str().is_empty() || path == std::path::Path::new(":memory:") {
        return;
    }
    let path = path.to_path_buf();
    {
        let mut started = STARTED.lock().unwrap_or_else(|e| e.into_inner());
        if started.contains(&path) {
            return;
        }
        started.push(path.clone());
    }
    let spawned = std::thread::Builder::new()
        .name("sqlite-checkpoint".into())
        .spawn(move || {
            let connection = rusqlite::Connection::open(&path).and_then(|c| {
                c.busy_timeout(Duration::from_secs(1))?;
                Ok(c)
            });
            let Ok(connection) = connection else {
                tracing::warn!(path = %path.display(), "no checkpoint connection; SQLite checkpoints in its commits");
                return;
            };
            while path.exists() {
                std::thread::sleep(CHECKPOINT_EVERY);
                if let Err(e) = connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                    tracing::debug!(error = %e, "background WAL checkpoint failed");
                }
            }
            STARTED
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|p| p != &path);
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "could not start the checkpoint thread; SQLite checkpoints in its commits");
    }
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
        // The ledger writer's multi-row statements differ by row count; keep the common sizes.
        connection.set_prepared_statement_cache_capacity(64);
        connection.busy_handler(Some(eager_busy))?;
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
    pub fn write<T, E: From<rusqlite::Error>>(
        &self,
        write: impl FnOnce(&rusqlite::Connection) -> Result<T, E>,
    ) -> Result<T, E> {
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

/// Busy handler of every SQLite connection (the pool's and [`SqliteBulk`]'s): it retries the
/// lock every quarter of a millisecond. SQLite's own handler (what `busy_timeout` installs)
/// sleeps 1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50 and then 100 ms between tries, so a request
/// whose write met another one's could wait 50-100 ms for a lock freed after 1 ms (the trading
/// webhook's slowest answers, `bench/signals.sh`), and a bulk writer lost the lock to the pool's.
/// Gives up after about 10 s, as `busy_timeout` did. Each wait is counted
/// ([`sqlite_busy_waits`]).
fn eager_busy(tries: i32) -> bool {
    const TRIES: i32 = 40_000;
    if tries == 0 {
        BUSY_WAITS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    std::thread::sleep(Duration::from_micros(250));
    tries < TRIES
}

static BUSY_WAITS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many statements found the SQLite database locked by another connection and waited.
pub fn sqlite_busy_waits() -> u64 {
    BUSY_WAITS.load(std::sync::atomic::Ordering::Relaxed)
}

/// [`eager_busy`] as SQLite calls it.
extern "C" fn eager_busy_c(
    _data: *mut std::ffi::c_void,
    tries: std::ffi::c_int,
) -> std::ffi::c_int {
    std::ffi::c_int::from(eager_busy(tries))
}

/// The secret-at-rest key: from settings, else `<data_dir>/secret.key`, created on first start.
pub fn secret_key(settings: &Settings) -> anyhow::Result<String> {
    use secrecy::ExposeSecret;
    if let Some(key) = &settings.secret_key {
        return Ok(key.expose_secret().to_owned());
    }
    // On PostgreSQL several replicas share the data: a key generated into each one's own data
    // folder would make every other replica's encrypted tokens unreadable.
    anyhow::ensure!(
        !settings.is_postgres(),
        "on PostgreSQL set secret_key (PREGONERO_SECRET_KEY, base64 of 32 bytes, the same on every replica; \
         generate one with `openssl rand -base64 32`): a key generated per replica would make the others' encrypted tokens unreadable"
    );
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

/// Whether `e` (anywhere in its chain) says the database could not be reached or let go of a
/// statement for a while: no connection, a connection lost mid-statement, PostgreSQL shutting
/// down (SQLSTATE classes 08 and 57), SQLite busy or locked. Not a statement the database
/// refused: running that one again gives the same answer.
pub fn unreachable(e: &anyhow::Error) -> bool {
    use sea_orm::{DbErr, RuntimeErr};
    fn sqlx_unreachable(e: &sea_orm::sqlx::Error) -> bool {
        use sea_orm::sqlx::Error;
        match e {
            Error::Io(_)
            | Error::Tls(_)
            | Error::Protocol(_)
            | Error::PoolTimedOut
            | Error::PoolClosed
            | Error::WorkerCrashed => true,
            Error::Database(d) => d.code().is_some_and(|code| {
                code.starts_with("08")
                    || code.starts_with("57")
                    || code.parse::<i32>().is_ok_and(|n| matches!(n & 0xff, 5 | 6))
            }),
            _ => false,
        }
    }
    e.chain().any(|cause| {
        if let Some(e) = cause.downcast_ref::<DbErr>() {
            return match e {
                DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
                DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => {
                    sqlx_unreachable(e)
                }
                _ => false,
            };
        }
        cause
            .downcast_ref::<sea_orm::sqlx::Error>()
            .is_some_and(sqlx_unreachable)
    })
}

/// Runs statements inside an open transaction. The batching writers build their statements
/// with sea-query and run them through this, so one piece of logic serves both lanes: on
/// PostgreSQL sea-orm's transaction, on SQLite a connection of the writer's own
/// ([`SqliteBulk`]), where sqlx would hand every statement to a worker thread and back (58 % of
/// the server's CPU under `POST /api/v1/messages` load was on those threads).
pub trait Exec {
    /// The SQL dialect the statements must be built for.
    fn backend(&self) -> sea_orm::DbBackend;

    /// Runs `statement`; the number of rows it changed.
    fn exec(
        &mut self,
        statement: sea_orm::Statement,
    ) -> impl std::future::Future<Output = Result<u64, sea_orm::DbErr>>;
}

impl Exec for &sea_orm::DatabaseTransaction {
    fn backend(&self) -> sea_orm::DbBackend {
        use sea_orm::ConnectionTrait;
        self.get_database_backend()
    }

    async fn exec(&mut self, statement: sea_orm::Statement) -> Result<u64, sea_orm::DbErr> {
        use sea_orm::ConnectionTrait;
        Ok(self.execute_raw(statement).await?.rows_affected())
    }
}

/// Always ready: run the writer's logic with `futures::executor::block_on` on the thread that
/// owns the connection.
impl Exec for &rusqlite::Connection {
    fn backend(&self) -> sea_orm::DbBackend {
        sea_orm::DbBackend::Sqlite
    }

    async fn exec(&mut self, statement: sea_orm::Statement) -> Result<u64, sea_orm::DbErr> {
        exec_sqlite(self, statement)
    }
}

/// Runs a sea-query statement on a rusqlite connection (prepared once and cached), binding each
/// value as sqlx's SQLite driver would, so rows written here read back through sea-orm alike.
fn exec_sqlite(
    connection: &rusqlite::Connection,
    statement: sea_orm::Statement,
) -> Result<u64, sea_orm::DbErr> {
    let values = statement
        .values
        .map(|v| v.0)
        .unwrap_or_default()
        .into_iter()
        .map(sqlite_value)
        .collect::<Result<Vec<_>, _>>()?;
    let mut prepared = connection
        .prepare_cached(&statement.sql)
        .map_err(sqlite_err)?;
    let changed = prepared
        .execute(rusqlite::params_from_iter(values))
        .map_err(sqlite_err)?;
    Ok(u64::try_from(changed).unwrap_or(u64::MAX))
}

/// A rusqlite error as sea-orm's.
pub fn sqlite_err(e: rusqlite::Error) -> sea_orm::DbErr {
    sea_orm::DbErr::Custom(format!("SQLite: {e}"))
}

/// The SQLite value sqlx's driver binds for `value` (`sea-query-sqlx`'s `IntoArguments` and
/// sqlx-sqlite's `Encode` impls): integers and booleans as INTEGER, times as text in the same
/// formats (so comparisons between rows written by either agree).
fn sqlite_value(value: sea_orm::Value) -> Result<rusqlite::types::Value, sea_orm::DbErr> {
    use chrono::SecondsFormat;
    use rusqlite::types::Value as S;
    use sea_orm::Value as V;
    fn or_null<T>(v: Option<T>, f: impl FnOnce(T) -> S) -> S {
        v.map_or(S::Null, f)
    }
    Ok(match value {
        V::Bool(v) => or_null(v, |b| S::Integer(b.into())),
        V::TinyInt(v) => or_null(v, |i| S::Integer(i.into())),
        V::SmallInt(v) => or_null(v, |i| S::Integer(i.into())),
        V::Int(v) => or_null(v, |i| S::Integer(i.into())),
        V::BigInt(v) => or_null(v, S::Integer),
        V::TinyUnsigned(v) => or_null(v, |i| S::Integer(i.into())),
        V::SmallUnsigned(v) => or_null(v, |i| S::Integer(i.into())),
        V::Unsigned(v) => or_null(v, |i| S::Integer(i.into())),
        V::BigUnsigned(Some(i)) => S::Integer(
            i64::try_from(i)
                .map_err(|_| sea_orm::DbErr::Custom(format!("{i} does not fit SQLite")))?,
        ),
        V::BigUnsigned(None) => S::Null,
        V::Float(v) => or_null(v, |f| S::Real(f.into())),
        V::Double(v) => or_null(v, S::Real),
        V::String(v) => or_null(v, S::Text),
        V::Char(v) => or_null(v, |c| S::Text(c.to_string())),
        V::Bytes(v) => or_null(v, S::Blob),
        V::Json(v) => or_null(v, |j| S::Text(j.to_string())),
        V::ChronoDate(v) => or_null(v, |d| S::Text(d.format("%F").to_string())),
        V::ChronoDateTime(v) => or_null(v, |t| S::Text(t.format("%F %T%.f").to_string())),
        V::ChronoDateTimeUtc(v) => or_null(v, |t| {
            S::Text(t.to_rfc3339_opts(SecondsFormat::AutoSi, false))
        }),
        other => {
            return Err(sea_orm::DbErr::Custom(format!(
                "{other:?} is not written through the SQLite writer connection"
            )));
        }
    })
}

/// Most rows in one multi-row `INSERT` of a wide table (messages: 25 columns, so 3,200 values).
pub const INSERT_CHUNK: usize = 128;

/// Splits `rows` for multi-row statements into chunks of [`INSERT_CHUNK`] and then of falling
/// powers of two (300 rows: 128, 128, 32, 8, 4).
///
/// Both sqlx and the writer connections keep prepared statements by their SQL text, and a
/// prepared `INSERT` of 1,000 rows of 25 columns holds about 3.4 MB in SQLite. With one text per
/// row count, every connection kept the large statements of every batch size it had seen: a
/// 100,000-recipient campaign's ledger (pages of 1,000) left the pool about 60 MB above idle.
/// Powers of two give each connection at most eight texts per table, under 1 MB in all, and the
/// same text comes back often enough to be reused instead of compiled again.
pub fn pow2_chunks<T>(rows: Vec<T>) -> Vec<Vec<T>> {
    let mut rest = rows.len();
    let mut rows = rows.into_iter();
    let mut chunks = Vec::new();
    while rest > 0 {
        let size = if rest >= INSERT_CHUNK {
            INSERT_CHUNK
        } else {
            1 << (usize::BITS - 1 - rest.leading_zeros())
        };
        chunks.push(rows.by_ref().take(size).collect());
        rest -= size;
    }
    chunks
}

/// A SQLite database in a temporary file, opened through sea-orm's pool, with `sql` run on it
/// (tests of the writer connections, which need a file another connection can open).
#[cfg(test)]
pub(crate) async fn scratch_sqlite(
    sql: &str,
) -> (tempfile::TempDir, std::path::PathBuf, DatabaseConnection) {
    use sea_orm::ConnectionTrait;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("t.db");
    let pool = sea_orm::Database::connect(format!("sqlite://{}?mode=rwc", path.display()))
        .await
        .expect("pool");
    pool.execute_unprepared(sql).await.expect("schema");
    (dir, path, pool)
}

#[cfg(test)]
mod chunk_tests {
    #[test]
    fn chunks_are_powers_of_two_up_to_the_cap_in_order() {
        let sizes = |n: usize| -> Vec<usize> {
            super::pow2_chunks((0..n).collect())
                .iter()
                .map(Vec::len)
                .collect()
        };
        assert_eq!(sizes(0), Vec::<usize>::new());
        assert_eq!(sizes(1), vec![1]);
        assert_eq!(sizes(300), vec![128, 128, 32, 8, 4]);
        assert_eq!(
            sizes(1000),
            vec![128, 128, 128, 128, 128, 128, 128, 64, 32, 8]
        );
        for n in 0..600 {
            let chunks = super::pow2_chunks((0..n).collect::<Vec<_>>());
            let flat: Vec<usize> = chunks.iter().flatten().copied().collect();
            assert_eq!(
                flat,
                (0..n).collect::<Vec<_>>(),
                "order and completeness for {n}"
            );
            assert!(
                chunks
                    .iter()
                    .all(|c| c.len().is_power_of_two() && c.len() <= super::INSERT_CHUNK)
            );
        }
    }
}

#[cfg(test)]
mod exec_tests {
    use sea_orm::{ConnectionTrait, DbBackend, Statement, Value};

    /// A row written through [`super::exec_sqlite`] is stored exactly as sqlx stores it (same
    /// types, same text for times and JSON), so reads, comparisons and sorting by sea-orm agree
    /// whichever connection wrote it.
    #[tokio::test]
    async fn the_writer_connection_stores_values_as_sqlx_does() {
        let (_dir, path, pool) = super::scratch_sqlite(
            "CREATE TABLE t (k TEXT, b, i, big, d, s, n, bytes, json, day, naive, at)",
        )
        .await;
        let at = chrono::DateTime::parse_from_rfc3339("2026-12-05T21:53:26.123456789Z")
            .expect("time")
            .to_utc();
        let values = |k: &str| -> Vec<Value> {
            vec![
                k.into(),
                true.into(),
                7_i32.into(),
                (-9_000_000_000_i64).into(),
                1.5_f64.into(),
                "text ✓".into(),
                Value::String(None),
                vec![0_u8, 1, 255].into(),
                serde_json::json!({"a": [1, "b"]}).into(),
                chrono::NaiveDate::from_ymd_opt(2026, 12, 5)
                    .expect("day")
                    .into(),
                at.naive_utc().into(),
                at.into(),
            ]
        };
        let sql = "INSERT INTO t VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
        pool.execute_raw(Statement::from_sql_and_values(
            DbBackend::Sqlite,
            sql,
            values("sqlx"),
        ))
        .await
        .expect("sqlx insert");
        let connection = rusqlite::Connection::open(&path).expect("rusqlite");
        let changed = super::exec_sqlite(
            &connection,
            Statement::from_sql_and_values(DbBackend::Sqlite, sql, values("rusqlite")),
        )
        .expect("rusqlite insert");
        assert_eq!(changed, 1);
        let stored = |k: &str| -> Vec<String> {
            connection
                .query_row(
                    "SELECT typeof(b)||quote(b), typeof(i)||quote(i), typeof(big)||quote(big),
                            typeof(d)||quote(d), typeof(s)||quote(s), typeof(n)||quote(n),
                            typeof(bytes)||quote(bytes), typeof(json)||quote(json),
                            typeof(day)||quote(day), typeof(naive)||quote(naive),
                            typeof(at)||quote(at)
                     FROM t WHERE k = ?",
                    [k],
                    |row| (0..11).map(|i| row.get::<_, String>(i)).collect(),
                )
                .expect("row")
        };
        assert_eq!(stored("rusqlite"), stored("sqlx"));
        assert!(stored("sqlx")[10].contains("2026-12-05T21:53:26.123456789+00:00"));
    }
}

#[cfg(test)]
mod secret_key_tests {
    use crate::config::Settings;

    /// Replicas share a PostgreSQL database, so each must be given the same key: without one
    /// the server refuses to start and says how to make one. SQLite makes its own key file.
    #[test]
    fn postgresql_needs_a_configured_key() {
        let dir = tempfile::tempdir().expect("dir");
        let pg = Settings {
            database_url: Some("postgres://postgres@127.0.0.1:5432/test".into()),
            data_dir: dir.path().to_owned(),
            ..Settings::default()
        };
        let err = super::secret_key(&pg).expect_err("refused").to_string();
        assert!(err.contains("PREGONERO_SECRET_KEY"), "{err}");
        assert!(!dir.path().join("secret.key").exists(), "no key file made");
        let configured = Settings {
            secret_key: Some(crate::crypto::Cipher::generate_key().into()),
            ..pg
        };
        assert!(super::secret_key(&configured).is_ok());
        let sqlite = Settings {
            data_dir: dir.path().to_owned(),
            ..Settings::default()
        };
        assert!(super::secret_key(&sqlite).is_ok());
        assert!(dir.path().join("secret.key").exists());
    }
}

#[cfg(test)]
mod unreachable_tests {
    use std::sync::Arc;

    use sea_orm::{ConnAcquireErr, ConnectionTrait, DbErr, RuntimeErr, sqlx};

    use super::unreachable;

    #[test]
    fn a_lost_connection_counts_wherever_it_is_in_the_chain() {
        let timeout = anyhow::Error::new(DbErr::ConnectionAcquire(ConnAcquireErr::Timeout));
        assert!(unreachable(&timeout));
        let reset = DbErr::Exec(RuntimeErr::SqlxError(Arc::new(sqlx::Error::Io(
            std::io::Error::from(std::io::ErrorKind::ConnectionReset),
        ))));
        let wrapped = anyhow::Error::new(reset).context("could not record");
        assert!(unreachable(&wrapped));
        assert!(unreachable(&anyhow::Error::new(sqlx::Error::PoolTimedOut)));
    }

    /// A statement the database refuses is not an outage: running it again gives the same
    /// answer.
    #[tokio::test]
    async fn a_refused_statement_does_not() {
        let db = sea_orm::Database::connect("sqlite::memory:")
            .await
            .expect("sqlite");
        let refused = db
            .execute_unprepared("SELECT * FROM no_such_table")
            .await
            .expect_err("no such table");
        assert!(!unreachable(&anyhow::Error::new(refused)));
        assert!(!unreachable(&anyhow::Error::new(DbErr::RecordNotFound(
            "x".into()
        ))));
        assert!(!unreachable(&anyhow::anyhow!("something else")));
    }
}
