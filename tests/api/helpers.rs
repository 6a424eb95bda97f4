//! `spawn_app`: a server per test with its own database, data folder and fake Telegram.
use std::{path::PathBuf, sync::LazyLock, time::Duration};

use fakes::telegram::{FakeTelegram, FakeTelegramConfig};
use pregonero::{
    config::Settings,
    startup::{Application, RunOptions, RunningApp},
    state::AppState,
};
use serde_json::{Value, json};

/// Which database a test runs on.
#[derive(Clone, Debug)]
pub enum Backend {
    /// A SQLite file in the test's temporary folder.
    Sqlite,
    /// A fresh database on the PostgreSQL server at `TEST_POSTGRES_URL`.
    Postgres(String),
}

/// Where PostgreSQL tests create their databases (any database on the server works as admin).
pub fn postgres_admin_url() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// The Redis the tests share, or `None` (with a printed reason) when `TEST_SKIP_REDIS` is set.
pub fn redis_url() -> Option<String> {
    if let Ok(reason) = std::env::var("TEST_SKIP_REDIS") {
        eprintln!("SKIPPED Redis test: {reason}");
        return None;
    }
    Some(std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into()))
}

impl Backend {
    /// A fresh PostgreSQL database, or `None` (with a printed reason) when `TEST_SKIP_POSTGRES` is set.
    pub async fn postgres() -> Option<Backend> {
        if let Ok(reason) = std::env::var("TEST_SKIP_POSTGRES") {
            eprintln!("SKIPPED PostgreSQL variant: {reason}");
            return None;
        }
        use sea_orm::{ConnectionTrait, Database};
        let admin_url = postgres_admin_url();
        let admin = Database::connect(&admin_url).await.unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is not reachable at {admin_url} ({e}). Start it (scripts/services.sh does) \
                 or set TEST_SKIP_POSTGRES=<reason> to skip the PostgreSQL variants."
            )
        });
        let name = format!("pregonero_test_{}", uuid::Uuid::new_v4().simple());
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create test database");
        let base = admin_url
            .rsplit_once('/')
            .map(|(b, _)| b.to_owned())
            .unwrap_or(admin_url);
        Some(Backend::Postgres(format!("{base}/{name}")))
    }
}

/// Runs a scenario `async fn name(backend: Backend)` once on SQLite and once on PostgreSQL.
#[macro_export]
macro_rules! on_both_databases {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[actix_web::test]
                async fn sqlite() {
                    super::$name($crate::helpers::Backend::Sqlite).await
                }

                #[actix_web::test]
                async fn postgres() {
                    if let Some(backend) = $crate::helpers::Backend::postgres().await {
                        super::$name(backend).await
                    }
                }
            }
        )+
    };
}

/// Everything the servers of this test binary logged (`info`, and `debug` for our crate), so a
/// test can prove no secret ever reaches the logs. `TEST_LOG=1` also prints it.
pub static LOGS: LazyLock<std::sync::Mutex<Vec<u8>>> = LazyLock::new(Default::default);

struct CaptureWriter;

/// `TEST_LOG_FILE`: where scripts/test collects every test binary's logs, to check them for the
/// secrets listed in `TEST_SECRETS_FILE` once the whole suite has run.
static LOG_FILE: LazyLock<Option<std::sync::Mutex<std::fs::File>>> =
    LazyLock::new(|| append_to("TEST_LOG_FILE"));

/// The file named by environment variable `var`, opened for appending (shared by test binaries).
fn append_to(var: &str) -> Option<std::sync::Mutex<std::fs::File>> {
    let path = std::env::var_os(var)?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .ok()?;
    Some(std::sync::Mutex::new(file))
}

impl std::io::Write for CaptureWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOGS.lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        if let Some(file) = LOG_FILE.as_ref() {
            file.lock()
                .unwrap_or_else(|e| e.into_inner())
                .write_all(buf)?;
        }
        if std::env::var_os("TEST_LOG").is_some() {
            std::io::stderr().write_all(buf)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

static TRACING: LazyLock<()> = LazyLock::new(|| {
    use tracing_subscriber::{EnvFilter, fmt, prelude::*};
    let filter = EnvFilter::new(
        std::env::var("TEST_LOG_FILTER")
            .unwrap_or_else(|_| "info,pregonero=debug,sqlx=warn,sea_orm=warn".into()),
    );
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(fmt::layer().with_ansi(false).with_writer(|| CaptureWriter))
        .try_init();
    watch_for_stalls();
});

/// A thread that wakes every 100 ms and notes in the log file (not through the log capture, which
/// a stall could block) whenever it woke much later than asked: then the whole process, or the
/// machine, stood still. scripts/test prints these lines.
fn watch_for_stalls() {
    use std::io::Write;
    let _ = std::thread::Builder::new()
        .name("stall-watch".into())
        .spawn(|| {
            loop {
                let before = std::time::Instant::now();
                std::thread::sleep(Duration::from_millis(100));
                let late = before.elapsed().saturating_sub(Duration::from_millis(100));
                if late > Duration::from_secs(1)
                    && let Some(file) = LOG_FILE.as_ref()
                {
                    let _ = writeln!(
                        file.lock().unwrap_or_else(|e| e.into_inner()),
                        "STALL {} test process woke {:.1} s late (the process or the machine stood still)",
                        chrono::Utc::now().to_rfc3339(),
                        late.as_secs_f64()
                    );
                }
            }
        });
}

/// Makes sure the log capture is installed (servers started by [`spawn_app`] do this).
pub fn capture_logs() {
    LazyLock::force(&TRACING);
}

/// Notes a secret the suite used (token, key, password, cookie), one per line in
/// `TEST_SECRETS_FILE`; scripts/test fails if any of them appears in the captured logs.
pub fn secret(value: &str) {
    use std::io::Write;
    static FILE: LazyLock<Option<std::sync::Mutex<std::fs::File>>> =
        LazyLock::new(|| append_to("TEST_SECRETS_FILE"));
    if let Some(file) = FILE.as_ref() {
        let _ = writeln!(file.lock().unwrap_or_else(|e| e.into_inner()), "{value}");
    }
}

/// A bot token in the shape @BotFather issues.
pub const BOT_TOKEN: &str = "110201543:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw";

/// A running server with its fake Telegram and an admin API key.
pub struct TestApp {
    /// `http://127.0.0.1:<port>`.
    pub address: String,
    /// Admin API key.
    pub api_key: String,
    /// HTTP client.
    pub client: reqwest::Client,
    /// The fake Bot API the server talks to.
    pub telegram: FakeTelegram,
    /// Settings the server runs with (restart reuses them).
    pub settings: Settings,
    /// Shared state of the running server.
    pub state: AppState,
    /// How the server runs (restart reuses them).
    pub options: RunOptions,
    app: Option<RunningApp>,
    _data_dir: tempfile::TempDir,
}

/// Test settings: fast polling and backoff so retries happen in milliseconds.
pub fn test_settings(backend: &Backend, data_dir: PathBuf, telegram_url: String) -> Settings {
    let mut s = Settings {
        port: 0,
        data_dir,
        node_name: Some("test-node".into()),
        database_url: match backend {
            Backend::Sqlite => None,
            Backend::Postgres(url) => Some(url.clone()),
        },
        // PostgreSQL needs a configured key (replicas share it); SQLite makes its own file.
        secret_key: match backend {
            Backend::Sqlite => None,
            Backend::Postgres(_) => {
                let key = pregonero::crypto::Cipher::generate_key();
                secret(&key);
                Some(key.into())
            }
        },
        ..Settings::default()
    };
    s.telegram.api_base_url = telegram_url;
    s.telegram.request_timeout_ms = 5_000;
    s.delivery.backoff_base_ms = 50;
    s.delivery.backoff_max_ms = 400;
    s.delivery.poll_interval_ms = 20;
    s.delivery.sweep_interval_secs = 1;
    s.delivery.shutdown_grace_secs = 5;
    s.delivery.unready_delay_secs = 0;
    s.delivery.lease_secs = 30;
    s.telegram.poll_timeout_secs = 5;
    // Scheduled jobs run only where a test turns them on (they would back up every test's DB).
    s.schedule.enabled = false;
    s.schedule.tick_secs = 1;
    // Chart snapshots start a browser: only the snapshot tests (tests/api/snapshots.rs) want one.
    s.signals.snapshots.enabled = false;
    s
}

/// Starts a fake Telegram and a server on `backend`; `tweak` adjusts settings first.
pub async fn spawn_app_with(backend: Backend, tweak: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_custom(backend, FakeTelegramConfig::default(), tweak).await
}

/// Like [`spawn_app_with`], with a configured fake.
pub async fn spawn_app_custom(
    backend: Backend,
    fake: FakeTelegramConfig,
    tweak: impl FnOnce(&mut Settings),
) -> TestApp {
    spawn_app_options(backend, fake, tweak, RunOptions::default()).await
}

/// Like [`spawn_app_custom`], with run options (a scripted WhatsApp Web phone).
pub async fn spawn_app_options(
    backend: Backend,
    fake: FakeTelegramConfig,
    tweak: impl FnOnce(&mut Settings),
    options: RunOptions,
) -> TestApp {
    LazyLock::force(&TRACING);
    let telegram = FakeTelegram::start_with(fake).await.expect("fake telegram");
    let data_dir = tempfile::tempdir().expect("tempdir");
    let mut settings = test_settings(&backend, data_dir.path().to_owned(), telegram.base_url());
    tweak(&mut settings);
    let app = Application::build(settings.clone(), options.clone())
        .await
        .expect("build app");
    let api_key = app
        .bootstrap_key()
        .expect("fresh database has a bootstrap key")
        .to_owned();
    secret(&api_key);
    secret(BOT_TOKEN);
    let running = app.spawn().expect("spawn app");
    TestApp {
        address: format!("http://127.0.0.1:{}", running.port),
        api_key,
        client: reqwest::Client::new(),
        telegram,
        settings,
        state: running.state.clone(),
        options,
        app: Some(running),
        _data_dir: data_dir,
    }
}

/// Starts a server with the test defaults.
pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

impl TestApp {
    /// `POST /api/v1/<path>` with a JSON body and the admin key.
    pub async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(format!("{}/api/v1/{path}", self.address))
            .bearer_auth(&self.api_key)
            .json(body)
            .send()
            .await
            .expect("request")
    }

    /// Any `/api/v1/<path>` call with the admin key and an optional JSON body; status and JSON.
    pub async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .client
            .request(method, format!("{}/api/v1/{path}", self.address))
            .bearer_auth(&self.api_key);
        if let Some(body) = body {
            req = req.json(&body);
        }
        status_and_json(req).await
    }

    /// `GET /api/v1/<path>` with the admin key, as JSON.
    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let req = self
            .client
            .get(format!("{}/api/v1/{path}", self.address))
            .bearer_auth(&self.api_key);
        status_and_json(req).await
    }

    /// `POST /api/v1/<path>` with a raw body of `content_type` (uploads), as JSON.
    pub async fn post_raw(&self, path: &str, content_type: &str, body: Vec<u8>) -> (u16, Value) {
        let req = self
            .client
            .post(format!("{}/api/v1/{path}", self.address))
            .bearer_auth(&self.api_key)
            .header("content-type", content_type)
            .body(body);
        status_and_json(req).await
    }

    /// `GET` a path outside `/api/v1` (no credentials); status and JSON body.
    pub async fn get_json_root(&self, path: &str) -> (u16, Value) {
        status_and_json(self.client.get(format!("{}{path}", self.address))).await
    }

    /// Registers the test bot with the fake and then with the server; returns the channel id.
    pub async fn create_bot(&self, limits: Option<Value>) -> String {
        self.telegram.add_bot(BOT_TOKEN, "pregonero_test_bot");
        let mut body = json!({"kind": "telegram", "name": "alerts bot", "bot_token": BOT_TOKEN});
        if let Some(limits) = limits {
            body["limits"] = limits;
        }
        let res = self.post("channels", &body).await;
        assert_eq!(res.status().as_u16(), 201, "create channel");
        let body: Value = res.json().await.expect("json");
        body["id"].as_str().expect("id").to_owned()
    }

    /// Queues a text message; returns the message id.
    pub async fn send_text(&self, channel_id: &str, to: i64, text: &str) -> String {
        let res = self
            .post(
                "messages",
                &json!({"channel_id": channel_id, "to": to.to_string(), "text": text}),
            )
            .await;
        assert_eq!(res.status().as_u16(), 202, "queue message");
        let body: Value = res.json().await.expect("json");
        body["id"].as_str().expect("id").to_owned()
    }

    /// Polls `GET /messages/{id}` until its status is `status` (panics after `timeout`).
    pub async fn wait_for_status(&self, id: &str, status: &str, timeout: Duration) -> Value {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let (code, body) = self.get_json(&format!("messages/{id}")).await;
            assert_eq!(code, 200, "get message");
            if body["status"] == status {
                return body;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "message {id} did not reach `{status}` in {timeout:?}: {body:#}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// A new user with `role` and an API key of theirs with every scope.
    pub async fn user_with_key(
        &self,
        name: &str,
        role: &str,
    ) -> (pregonero::auth::repo::UserRow, String) {
        let user = pregonero::auth::repo::create_user(&self.state.db, name, role)
            .await
            .expect("user");
        let key = pregonero::auth::repo::create_api_key(&self.state.db, &user.id, name)
            .await
            .expect("key");
        secret(&key);
        (user, key)
    }

    /// Stops the server cleanly (drain), leaving database and fake as they are.
    pub async fn stop_server(&mut self) {
        if let Some(app) = self.app.take() {
            app.stop().await;
        }
    }

    /// A new connection to the test's database (the server's pools die with the server).
    pub async fn inspect_db(&self) -> sea_orm::DatabaseConnection {
        sea_orm::Database::connect(self.settings.database_url())
            .await
            .expect("inspect db")
    }

    /// Starts a server again on the same database and data folder.
    pub async fn start_server(&mut self) {
        let app = Application::build(self.settings.clone(), self.options.clone())
            .await
            .expect("rebuild app");
        assert!(
            app.bootstrap_key().is_none(),
            "a restart must not create a new admin key"
        );
        let running = app.spawn().expect("respawn");
        self.address = format!("http://127.0.0.1:{}", running.port);
        self.state = running.state.clone();
        self.app = Some(running);
    }
}

/// The bot's @username in the fake.
pub const BOT_USERNAME: &str = "pregonero_test_bot";

/// An integration created through the API.
pub struct Integration {
    /// Its id.
    pub id: String,
    /// Its token (JWT).
    pub token: String,
    /// The deep-link code (`start` parameter).
    pub code: String,
}

impl TestApp {
    /// `POST /api/v1/integrations` on `channel`; returns id, token and link code.
    pub async fn create_integration(&self, channel: &str, name: &str) -> Integration {
        let res = self
            .post(
                "integrations",
                &json!({"channel_id": channel, "name": name}),
            )
            .await;
        assert_eq!(res.status().as_u16(), 201, "create integration");
        let body: Value = res.json().await.expect("json");
        let url = body["link"]["url"].as_str().expect("link url");
        let code = url.split("?start=").nth(1).expect("start param").to_owned();
        let token = body["token"]["token"].as_str().expect("token").to_owned();
        secret(&token);
        secret(&code);
        Integration {
            id: body["integration"]["id"].as_str().expect("id").to_owned(),
            token,
            code,
        }
    }

    /// Polls `GET /api/v1/integrations/{id}` until its status is `status`.
    pub async fn wait_integration(&self, id: &str, status: &str) -> Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let (code, body) = self.get_json(&format!("integrations/{id}")).await;
            assert_eq!(code, 200, "get integration");
            if body["status"] == status {
                return body;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "integration {id} did not become `{status}`: {body:#}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Creates an integration and links chat `chat_id` to it with its deep link (polling mode).
    pub async fn linked_integration(&self, channel: &str, chat_id: i64) -> Integration {
        let integration = self.create_integration(channel, "CI alerts").await;
        self.telegram
            .user_sends(BOT_TOKEN, chat_id, &format!("/start {}", integration.code));
        self.wait_integration(&integration.id, "active").await;
        integration
    }

    /// `POST /api/alert` with `token` as Bearer.
    pub async fn alert(&self, token: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(format!("{}/api/alert", self.address))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("request")
    }

    /// Waits until the fake accepted a send to `chat_id` whose text contains `needle`; returns it.
    pub async fn wait_for_text(&self, chat_id: i64, needle: &str) -> String {
        let found = self
            .telegram
            .wait_until(Duration::from_secs(30), |t| {
                t.sent().iter().any(|m| {
                    m.chat_id == chat_id && m.text.as_deref().is_some_and(|x| x.contains(needle))
                })
            })
            .await;
        assert!(
            found,
            "no message containing {needle:?} reached chat {chat_id}: {:#?}",
            self.telegram.sent()
        );
        self.telegram
            .sent()
            .into_iter()
            .filter(|m| m.chat_id == chat_id)
            .filter_map(|m| m.text)
            .rfind(|t| t.contains(needle))
            .unwrap_or_default()
    }
}

/// Makes every insert into `events` fail while switched on: a trigger that raises, installed
/// with SQL straight into the test's database (the server has no such switch).
pub struct StorageFault {
    db: sea_orm::DatabaseConnection,
}

impl StorageFault {
    /// Installs the trigger (off).
    pub async fn install(app: &TestApp) -> Self {
        use sea_orm::ConnectionTrait;
        let db = app.inspect_db().await;
        let sql = if app.settings.is_postgres() {
            "CREATE TABLE test_fault (down INTEGER NOT NULL);
             INSERT INTO test_fault VALUES (0);
             CREATE FUNCTION test_fault_fn() RETURNS trigger AS $$
             BEGIN
               IF (SELECT down FROM test_fault) = 1 THEN RAISE EXCEPTION 'injected storage fault'; END IF;
               RETURN NEW;
             END $$ LANGUAGE plpgsql;
             CREATE TRIGGER test_fault_events BEFORE INSERT ON events
               FOR EACH ROW EXECUTE FUNCTION test_fault_fn();"
        } else {
            "CREATE TABLE test_fault (down INTEGER NOT NULL);
             INSERT INTO test_fault VALUES (0);
             CREATE TRIGGER test_fault_events BEFORE INSERT ON events
               WHEN (SELECT down FROM test_fault) = 1
               BEGIN SELECT RAISE(ABORT, 'injected storage fault'); END;"
        };
        db.execute_unprepared(sql).await.expect("install fault");
        Self { db }
    }

    /// Inserts into `events` fail (`true`) or work again.
    pub async fn set(&self, down: bool) {
        use sea_orm::ConnectionTrait;
        self.db
            .execute_unprepared(&format!("UPDATE test_fault SET down = {}", i32::from(down)))
            .await
            .expect("toggle fault");
    }
}

/// A TCP proxy in front of PostgreSQL that can cut every connection and refuse new ones, as a
/// database that went away would.
pub struct TcpProxy {
    /// Port it listens on (127.0.0.1).
    pub port: u16,
    down: std::sync::Arc<std::sync::atomic::AtomicBool>,
    connections: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl TcpProxy {
    /// Proxies 127.0.0.1:<random> to `upstream`, on a thread and runtime of its own (the test's
    /// runtime may be busy awaiting the very connection the proxy has to carry).
    pub async fn start(upstream: String) -> Self {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let down = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let connections = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (d, c) = (down.clone(), connections.clone());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("proxy runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                while let Ok((mut inbound, _)) = listener.accept().await {
                    if d.load(Ordering::SeqCst) {
                        continue; // dropped: the connection is closed at once
                    }
                    let upstream = upstream.clone();
                    let task = tokio::spawn(async move {
                        if let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                    c.lock().expect("lock").push(task);
                }
            });
        });
        Self {
            port,
            down,
            connections,
        }
    }

    /// Closes every open connection and refuses new ones.
    pub fn cut(&self) {
        self.down.store(true, std::sync::atomic::Ordering::SeqCst);
        for task in self.connections.lock().expect("lock").drain(..) {
            task.abort();
        }
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.down.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A response header as text (empty when absent).
pub fn header(res: &reqwest::Response, name: &str) -> String {
    res.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// Sends `req`; its status and JSON body (`null` when the body is not JSON).
pub async fn status_and_json(req: reqwest::RequestBuilder) -> (u16, Value) {
    // Every answer read this way is also checked against the OpenAPI document.
    crate::openapi::send_checked(req).await
}
