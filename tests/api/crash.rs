//! The real binary, killed with SIGKILL mid-queue and stopped with SIGTERM: nothing accepted is lost.
use std::{
    collections::HashMap,
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

use fakes::telegram::FakeTelegram;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QuerySelect};
use serde_json::{Value, json};

use crate::helpers::{BOT_TOKEN, Backend, test_settings};

pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) address: String,
    pub(crate) api_key: Option<String>,
}

impl Drop for Server {
    // A test that ends, or fails, with its server up must not leave it running: it would hold
    // database connections and CPU for every test after it.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The key a PostgreSQL server of this data folder runs with (PostgreSQL needs a configured
/// one): made once, so a restarted server reads what the killed one wrote.
fn postgres_key(data_dir: &Path) -> String {
    let path = data_dir.join("test-secret.key");
    if let Ok(key) = std::fs::read_to_string(&path) {
        return key;
    }
    let key = pregonero::crypto::Cipher::generate_key();
    std::fs::write(&path, &key).expect("write key");
    key
}

/// The binary with the test environment; its log is appended to `<data_dir>/server.log`.
fn pregonero(backend: &Backend, data_dir: &Path, telegram: &FakeTelegram) -> Command {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(data_dir.join("server.log"))
        .expect("log file");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pregonero"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        // Verbose on purpose: the test checks that no secret reaches the log.
        .env("RUST_LOG", "debug")
        .env("PREGONERO_PORT", "0")
        .env("PREGONERO_DATA_DIR", data_dir)
        .env("PREGONERO_NODE_NAME", "crash-node")
        .env("PREGONERO_TELEGRAM__API_BASE_URL", telegram.base_url())
        .env("PREGONERO_DELIVERY__LEASE_SECS", "5")
        .env("PREGONERO_DELIVERY__SWEEP_INTERVAL_SECS", "1")
        .env("PREGONERO_DELIVERY__POLL_INTERVAL_MS", "20")
        .env("PREGONERO_DELIVERY__BACKOFF_BASE_MS", "50")
        .env("PREGONERO_DELIVERY__BACKOFF_MAX_MS", "400")
        .env("PREGONERO_DELIVERY__UNREADY_DELAY_SECS", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log));
    if let Backend::Postgres(url) = backend {
        cmd.env("DATABASE_URL", url)
            .env("PREGONERO_SECRET_KEY", postgres_key(data_dir));
    }
    // A test process killed mid-run (an interrupted run, a timeout) takes its servers with it:
    // orphaned replicas once kept sending for an hour and slowed every later run on the machine.
    // The signal follows the spawning thread, the test's own, which outlives its servers.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: prctl is async-signal-safe and touches only the child being started.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    cmd
}

fn start_server(backend: &Backend, data_dir: &Path, telegram: &FakeTelegram) -> Server {
    start_server_with(backend, data_dir, telegram, &[])
}

/// [`start_server`] with more settings (they override the test environment's).
fn start_server_with(
    backend: &Backend,
    data_dir: &Path,
    telegram: &FakeTelegram,
    env: &[(&str, &str)],
) -> Server {
    start_serve(backend, data_dir, telegram, env, &[])
}

/// `pregonero serve <args>` with more settings.
pub(crate) fn start_serve(
    backend: &Backend,
    data_dir: &Path,
    telegram: &FakeTelegram,
    env: &[(&str, &str)],
    args: &[&str],
) -> Server {
    let mut child = pregonero(backend, data_dir, telegram)
        .envs(env.iter().copied())
        .arg("serve")
        .args(args)
        .spawn()
        .expect("start pregonero");
    let stdout = child.stdout.take().expect("stdout");
    let mut api_key = None;
    let mut address = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("stdout line");
        if let Some(key) = line.trim().strip_prefix("prg_") {
            api_key = Some(format!("prg_{key}"));
        }
        if let Some(addr) = line.strip_prefix("Pregonero listening on ") {
            address = addr.split_whitespace().next().map(str::to_owned);
            break;
        }
    }
    Server {
        child,
        address: address.expect("server printed its address"),
        api_key,
    }
}

async fn post(
    client: &reqwest::Client,
    server: &Server,
    key: &str,
    path: &str,
    body: Value,
) -> Value {
    let res = client
        .post(format!("{}/api/v1/{path}", server.address))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .expect("request");
    assert!(res.status().is_success(), "{path}: {}", res.status());
    res.json().await.expect("json")
}

/// Registers the test bot and queues `m1`…`m60` to chats 1…60; returns the channel and the ids.
async fn queue_sixty(
    client: &reqwest::Client,
    server: &Server,
    key: &str,
    telegram: &FakeTelegram,
) -> (String, Vec<String>) {
    let channel = post(
        client,
        server,
        key,
        "channels",
        json!({"kind": "telegram", "name": "c", "bot_token": BOT_TOKEN}),
    )
    .await;
    let channel = channel["id"].as_str().expect("id").to_owned();
    let mut ids = Vec::new();
    for chat in 1..=60 {
        telegram.add_chat(chat);
        let m = post(
            client,
            server,
            key,
            "messages",
            json!({"channel_id": channel, "to": chat.to_string(), "text": format!("m{chat}")}),
        )
        .await;
        ids.push(m["id"].as_str().expect("id").to_owned());
    }
    (channel, ids)
}

async fn status_of(client: &reqwest::Client, server: &Server, key: &str, id: &str) -> String {
    let res = client
        .get(format!("{}/api/v1/messages/{id}", server.address))
        .bearer_auth(key)
        .send()
        .await
        .expect("request");
    let body: Value = res.json().await.expect("json");
    body["status"].as_str().unwrap_or_default().to_owned()
}

async fn kill_9_mid_queue_loses_no_accepted_message_and_sigterm_drains(backend: Backend) {
    // Arrange
    let telegram = FakeTelegram::start().await.expect("fake");
    telegram.add_bot(BOT_TOKEN, "crash_bot");
    telegram.set_latency(Duration::from_millis(40));
    let data_dir = tempfile::tempdir().expect("tempdir");
    let client = reqwest::Client::new();
    let mut first = start_server(&backend, data_dir.path(), &telegram);
    let first_key = first
        .api_key
        .clone()
        .expect("first start prints the admin key");
    let key = first_key.clone();
    let (channel, ids) = queue_sixty(&client, &first, &key, &telegram).await;
    assert!(telegram.wait_for_sent(10, Duration::from_secs(20)).await);

    // Act: SIGKILL, then start again on the same data.
    first.child.kill().expect("kill -9");
    let _ = first.child.wait();
    let sent_at_kill = telegram.sent().len();
    let admin = pregonero(&backend, data_dir.path(), &telegram)
        .args(["admin", "create-api-key", "--name", "ci"])
        .output()
        .expect("admin create-api-key");
    assert!(admin.status.success(), "admin create-api-key failed");
    let key = String::from_utf8(admin.stdout)
        .expect("utf8")
        .trim()
        .to_owned();
    assert!(key.starts_with("prg_"), "a new key is printed: {key}");
    let mut second = start_server(&backend, data_dir.path(), &telegram);
    assert!(
        second.api_key.is_none(),
        "a restart prints no new bootstrap key"
    );

    // Assert: every accepted message is delivered; only in-flight ones may repeat.
    assert!(sent_at_kill < 60, "the kill happened mid-queue");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    for id in &ids {
        while status_of(&client, &second, &key, id).await != "sent" {
            assert!(
                std::time::Instant::now() < deadline,
                "message {id} was not delivered after the crash"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let mut counts: HashMap<String, usize> = HashMap::new();
    for m in telegram.sent() {
        *counts.entry(m.text.unwrap_or_default()).or_default() += 1;
    }
    assert_eq!(counts.len(), 60, "every message arrived");
    let duplicates: usize = counts.values().map(|n| n - 1).sum();
    assert!(
        duplicates <= 3,
        "only messages in flight at the kill may repeat: {duplicates}"
    );

    // Act: queue more, then SIGTERM mid-queue.
    for chat in 1..=20 {
        post(
            &client,
            &second,
            &key,
            "messages",
            json!({"channel_id": channel, "to": chat.to_string(), "text": format!("t{chat}")}),
        )
        .await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid = second.child.id().to_string();
    let term = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill -TERM");
    let exit = second.child.wait().expect("wait");

    // Assert: a clean exit that left nothing in `sending`.
    assert!(term.success());
    assert!(exit.success(), "SIGTERM exits cleanly: {exit:?}");
    let mut settings = test_settings(&backend, data_dir.path().to_owned(), telegram.base_url());
    settings.node_name = Some("inspector".into());
    let db = pregonero::db::connect(&settings).await.expect("db");
    use pregonero::entities::messages;
    let sending = messages::Entity::find()
        .filter(messages::Column::Status.eq("sending"))
        .count(&db)
        .await
        .expect("count");
    assert_eq!(sending, 0, "SIGTERM left messages in `sending`");
    let log = std::fs::read_to_string(data_dir.path().join("server.log")).expect("server log");
    assert!(log.contains("DEBUG"), "the server logged at debug level");
    for secret in [BOT_TOKEN, &first_key, &key] {
        assert!(!log.contains(secret), "a secret reached the log");
    }
}

crate::on_both_databases!(kill_9_mid_queue_loses_no_accepted_message_and_sigterm_drains);

/// At SIGTERM the server first turns unready (`/ready` 503 `draining`) while it still serves,
/// for `delivery.unready_delay_secs`, so a load balancer stops sending before the port closes;
/// then it drains and exits cleanly.
#[actix_web::test]
async fn sigterm_turns_ready_off_before_the_listener_closes() {
    // Arrange
    let telegram = FakeTelegram::start().await.expect("fake");
    let data_dir = tempfile::tempdir().expect("dir");
    let mut server = start_server_with(
        &Backend::Sqlite,
        data_dir.path(),
        &telegram,
        &[("PREGONERO_DELIVERY__UNREADY_DELAY_SECS", "2")],
    );
    let client = reqwest::Client::new();
    let address = server.address.clone();
    let get = |path: &str| client.get(format!("{address}{path}")).send();
    assert_eq!(get("/ready").await.expect("ready").status().as_u16(), 200);

    // Act
    let sent_at = std::time::Instant::now();
    let pid = server.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill -TERM")
            .success()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Assert: unready, still serving, then gone after the delay.
    let ready = get("/ready").await.expect("still listening");
    assert_eq!(ready.status().as_u16(), 503);
    let body: serde_json::Value = ready.json().await.expect("json");
    assert_eq!(body["status"], "draining");
    assert_eq!(get("/live").await.expect("live").status().as_u16(), 200);
    let exit = server.child.wait().expect("wait");
    let took = sent_at.elapsed();
    assert!(exit.success(), "{exit:?}");
    assert!(
        took >= Duration::from_secs(2),
        "closed before the delay: {took:?}"
    );
    assert!(took < Duration::from_secs(12), "drain took {took:?}");
}

async fn a_node_restarted_after_kill_9_resumes_at_once_despite_the_default_lease(backend: Backend) {
    // Arrange: the production lease (300 s) and sweep period (30 s): only taking back its own
    // earlier claims at start lets the node resume in seconds.
    let production = [
        ("PREGONERO_DELIVERY__LEASE_SECS", "300"),
        ("PREGONERO_DELIVERY__SWEEP_INTERVAL_SECS", "30"),
    ];
    let telegram = FakeTelegram::start().await.expect("fake");
    telegram.add_bot(BOT_TOKEN, "crash_bot");
    telegram.set_latency(Duration::from_millis(300));
    let data_dir = tempfile::tempdir().expect("tempdir");
    let client = reqwest::Client::new();
    let mut first = start_server_with(&backend, data_dir.path(), &telegram, &production);
    let key = first.api_key.clone().expect("admin key");
    let (_, ids) = queue_sixty(&client, &first, &key, &telegram).await;
    assert!(telegram.wait_for_sent(5, Duration::from_secs(20)).await);

    // Act: SIGKILL with sends in flight (300 ms each), then start again on the same data.
    first.child.kill().expect("kill -9");
    let _ = first.child.wait();
    assert!(telegram.sent().len() < 60, "the kill happened mid-queue");
    let second = start_server_with(&backend, data_dir.path(), &telegram, &production);
    let restarted = std::time::Instant::now();

    // Assert: everything is delivered within seconds of the restart, not after a lease.
    let deadline = restarted + Duration::from_secs(20);
    for id in &ids {
        while status_of(&client, &second, &key, id).await != "sent" {
            assert!(
                std::time::Instant::now() < deadline,
                "message {id} still not sent 20 s after the restart"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

crate::on_both_databases!(a_node_restarted_after_kill_9_resumes_at_once_despite_the_default_lease);

/// One client of the load: posts single events and batches of 10 until the server dies;
/// returns the `(event_id, message)` of every event that got a 202.
async fn event_client(
    client: reqwest::Client,
    url: String,
    key: String,
    n: usize,
) -> Vec<(String, String)> {
    let mut acked = Vec::new();
    for round in 0.. {
        let batch = round % 2 == 1;
        let messages: Vec<String> = (0..if batch { 10 } else { 1 })
            .map(|i| format!("c{n}-r{round}-{i}"))
            .collect();
        let events: Vec<Value> = messages
            .iter()
            .map(|m| json!({"timestamp": chrono::Utc::now().to_rfc3339(), "service": "crash", "message": m}))
            .collect();
        let body = if batch {
            json!(events)
        } else {
            events[0].clone()
        };
        let Ok(res) = client.post(&url).bearer_auth(&key).json(&body).send().await else {
            return acked;
        };
        if res.status().as_u16() != 202 {
            continue;
        }
        let Ok(answer) = res.json::<Value>().await else {
            return acked;
        };
        let ids: Vec<String> = if batch {
            answer["event_ids"]
                .as_array()
                .expect("event_ids")
                .iter()
                .map(|v| v.as_str().expect("id").to_owned())
                .collect()
        } else {
            vec![answer["event_id"].as_str().expect("event_id").to_owned()]
        };
        acked.extend(ids.into_iter().zip(messages));
    }
    acked
}

async fn kill_9_under_event_load_keeps_every_acknowledged_event_once(backend: Backend) {
    // Arrange
    let telegram = FakeTelegram::start().await.expect("fake");
    let data_dir = tempfile::tempdir().expect("tempdir");
    let mut server = start_server(&backend, data_dir.path(), &telegram);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let url = format!("{}/events", server.address);
    let key = server
        .api_key
        .clone()
        .expect("first start prints the admin key");

    // Act: 16 clients ingest flat out; SIGKILL mid-stream; start again on the same data.
    let clients: Vec<_> = (0..16)
        .map(|n| tokio::spawn(event_client(client.clone(), url.clone(), key.clone(), n)))
        .collect();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    server.child.kill().expect("kill -9");
    let _ = server.child.wait();
    let mut acked = Vec::new();
    for c in clients {
        acked.extend(c.await.expect("client task"));
    }
    let mut again = start_server(&backend, data_dir.path(), &telegram);

    // Assert: every acknowledged event is stored exactly once, under the id it was given.
    assert!(acked.len() > 100, "the load ran: {} events", acked.len());
    let mut settings = test_settings(&backend, data_dir.path().to_owned(), telegram.base_url());
    settings.node_name = Some("inspector".into());
    let db = pregonero::db::connect(&settings).await.expect("db");
    use pregonero::entities::events;
    let stored: Vec<(String, String)> = events::Entity::find()
        .select_only()
        .column(events::Column::EventId)
        .column(events::Column::Message)
        .filter(events::Column::Service.eq("crash"))
        .into_tuple()
        .all(&db)
        .await
        .expect("events");
    let mut by_message: HashMap<&str, Vec<&str>> = HashMap::new();
    for (id, message) in &stored {
        by_message.entry(message).or_default().push(id);
    }
    let mut missing = 0;
    for (id, message) in &acked {
        match by_message.get(message.as_str()) {
            Some(ids) => {
                assert_eq!(ids.len(), 1, "{message} stored {} times", ids.len());
                assert_eq!(ids[0], id, "{message} stored under another id");
            }
            None => missing += 1,
        }
    }
    assert_eq!(
        missing,
        0,
        "{missing} of {} acknowledged events were lost",
        acked.len()
    );
    let res = client
        .post(format!("{}/events", again.address))
        .bearer_auth(&key)
        .json(&json!({"timestamp": chrono::Utc::now().to_rfc3339(), "service": "crash", "message": "after"}))
        .send()
        .await
        .expect("request");
    assert_eq!(
        res.status().as_u16(),
        202,
        "ingests again after the restart"
    );
    again.child.kill().expect("kill");
    let _ = again.child.wait();
}

crate::on_both_databases!(kill_9_under_event_load_keeps_every_acknowledged_event_once);

async fn get_json(client: &reqwest::Client, url: String, token: &str) -> (u16, Value) {
    let res = client
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .expect("request");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn chat_ids_and_tokens_never_reach_the_log(backend: Backend) {
    // Arrange: the real binary at debug level, polling the fake for updates.
    const CHAT: i64 = 731_904_582;
    const OTHER_CHAT: i64 = 864_213_907;
    let telegram = FakeTelegram::start().await.expect("fake");
    telegram.add_bot(BOT_TOKEN, "privacy_bot");
    let data_dir = tempfile::tempdir().expect("tempdir");
    let client = reqwest::Client::new();
    let mut server = start_server(&backend, data_dir.path(), &telegram);
    let key = server.api_key.clone().expect("admin key");
    let channel = post(
        &client,
        &server,
        &key,
        "channels",
        json!({"kind": "telegram", "name": "c", "bot_token": BOT_TOKEN}),
    )
    .await;
    let channel = channel["id"].as_str().expect("id").to_owned();
    let created = post(
        &client,
        &server,
        &key,
        "integrations",
        json!({"channel_id": channel, "name": "private"}),
    )
    .await;
    let id = created["integration"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let token = created["token"]["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let url = created["link"]["url"].as_str().expect("url");
    let code = url.split("?start=").nth(1).expect("code").to_owned();

    // Act: link, alert, read by chat id, and the chat-first flow from another chat.
    telegram.user_sends(BOT_TOKEN, CHAT, &format!("/start {code}"));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, view) = get_json(
            &client,
            format!("{}/api/v1/integrations/{id}", server.address),
            &key,
        )
        .await;
        if view["status"] == "active" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not linked: {view}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let res = client
        .post(format!("{}/api/alert", server.address))
        .bearer_auth(&token)
        .json(&json!({"message": "secret-free alert"}))
        .send()
        .await
        .expect("alert");
    assert_eq!(res.status().as_u16(), 202);
    let (status, _) = get_json(
        &client,
        format!("{}/api/integrations/{CHAT}", server.address),
        &token,
    )
    .await;
    assert_eq!(status, 200);
    telegram.user_sends(BOT_TOKEN, OTHER_CHAT, "/start");
    let delivered = telegram
        .wait_until(Duration::from_secs(20), |t| {
            let sent = t.sent();
            sent.iter()
                .any(|m| m.text.as_deref() == Some("secret-free alert"))
                && sent.iter().any(|m| m.chat_id == OTHER_CHAT)
        })
        .await;
    assert!(delivered, "alert and setup reply delivered");
    let setup = telegram
        .sent()
        .into_iter()
        .filter(|m| m.chat_id == OTHER_CHAT)
        .filter_map(|m| m.text)
        .find_map(|t| {
            t.split("Bearer ")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .map(str::to_owned)
        })
        .expect("setup token");
    let pid = server.child.id().to_string();
    Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill -TERM");
    let exit = server.child.wait().expect("wait");
    assert!(exit.success());

    // Assert
    let log = std::fs::read_to_string(data_dir.path().join("server.log")).expect("server log");
    assert!(log.contains("DEBUG"), "the server logged at debug level");
    assert!(
        log.contains("chat linked by deep link"),
        "the link was logged (hashed)"
    );
    for (what, secret) in [
        ("chat id", CHAT.to_string()),
        ("other chat id", OTHER_CHAT.to_string()),
        ("integration token", token),
        ("link code", code),
        ("setup token", setup),
        ("bot token", BOT_TOKEN.to_owned()),
        ("api key", key),
    ] {
        let line = log.lines().find(|l| l.contains(&secret));
        assert!(line.is_none(), "the {what} reached the log: {line:?}");
    }
}

crate::on_both_databases!(chat_ids_and_tokens_never_reach_the_log);

/// A worker-only replica (`serve --no-http`) keeps the operational routes on its port, for
/// probes and scraping, and serves no API.
#[actix_web::test]
async fn a_worker_only_replica_serves_probes_and_metrics_only() {
    let telegram = FakeTelegram::start().await.expect("fake");
    let data_dir = tempfile::tempdir().expect("dir");
    let mut server = start_serve(
        &Backend::Sqlite,
        data_dir.path(),
        &telegram,
        &[],
        &["--no-http"],
    );
    let client = reqwest::Client::new();
    for path in ["/live", "/ready", "/health", "/metrics"] {
        let res = client
            .get(format!("{}{path}", server.address))
            .send()
            .await
            .expect("request");
        assert_eq!(res.status().as_u16(), 200, "{path}");
    }
    let res = client
        .get(format!("{}/api/v1/channels", server.address))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status().as_u16(), 404);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["error"], "route-not-found");
    let _ = server.child.kill();
    let _ = server.child.wait();
}
