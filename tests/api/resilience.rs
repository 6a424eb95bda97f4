//! Provider failures: 429 storms, permanent errors, 5xx then success, exhaustion, actor crash.
use std::time::Duration;

use fakes::telegram::Limits;
use pregonero::channels::{Crash, Lookup};
use serde_json::json;

use crate::helpers::{Backend, TestApp, spawn_app, spawn_app_with};

const WAIT: Duration = Duration::from_secs(30);

async fn a_429_storm_delays_messages_but_fails_none(backend: Backend) {
    // Arrange: the account is configured far above what the fake allows, so the fake answers 429s.
    let app = spawn_app(backend).await;
    app.telegram.set_limits(Limits {
        bot_per_sec: 20,
        bot_burst: 3,
        ..Limits::default()
    });
    let channel = app
        .create_bot(Some(json!({"per_second": 500, "burst": 100})))
        .await;
    let mut ids = Vec::new();

    // Act
    for chat in 1..=40 {
        app.telegram.add_chat(chat);
        ids.push(
            app.send_text(&channel, chat, &format!("storm {chat}"))
                .await,
        );
    }

    // Assert
    for id in &ids {
        let msg = app.wait_for_status(id, "sent", WAIT).await;
        assert!(
            msg["attempt_count"].as_i64().unwrap_or(99) <= 1,
            "429s must not use up attempts: {msg:#}"
        );
    }
    assert!(
        app.telegram.rate_limited() > 0,
        "the storm should have provoked 429s"
    );
    assert_eq!(app.telegram.sent().len(), 40);
    let rate_limited_events = {
        let mut n = 0;
        for id in &ids {
            let (_, msg) = app.get_json(&format!("messages/{id}")).await;
            n += msg["attempts"]
                .as_array()
                .map(|a| a.iter().filter(|e| e["outcome"] == "rate_limited").count())
                .unwrap_or(0);
        }
        n
    };
    assert!(
        rate_limited_events > 0,
        "rate-limited attempts are visible in the history"
    );
}

async fn a_permanent_error_fails_the_message_without_retrying(backend: Backend) {
    // Arrange
    let app = spawn_app(backend).await;
    let channel = app.create_bot(None).await;
    app.telegram.block_chat(66);

    // Act
    let blocked = app.send_text(&channel, 66, "hello?").await;
    let unknown = app.send_text(&channel, 67, "anyone?").await;

    // Assert
    let msg = app.wait_for_status(&blocked, "failed", WAIT).await;
    assert_eq!(msg["last_error_code"], "bot-blocked");
    assert_eq!(msg["attempt_count"], 1);
    let msg = app.wait_for_status(&unknown, "failed", WAIT).await;
    assert_eq!(msg["last_error_code"], "chat-not-found");
    assert_eq!(msg["attempt_count"], 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        app.telegram.requests(),
        2,
        "no retries after a permanent error"
    );
}

async fn server_errors_are_retried_with_backoff_until_success(backend: Backend) {
    // Arrange
    let app = spawn_app(backend).await;
    let channel = app.create_bot(None).await;
    app.telegram.add_chat(3);
    app.telegram.fail_next(2, 502);

    // Act
    let id = app.send_text(&channel, 3, "third time lucky").await;

    // Assert
    let msg = app.wait_for_status(&id, "sent", WAIT).await;
    assert_eq!(msg["attempt_count"], 3);
    let outcomes: Vec<_> = msg["attempts"]
        .as_array()
        .expect("attempts")
        .iter()
        .map(|a| a["outcome"].clone())
        .collect();
    assert_eq!(
        outcomes,
        vec![
            json!("retryable_error"),
            json!("retryable_error"),
            json!("sent")
        ]
    );
    assert_eq!(app.telegram.sent().len(), 1);
}

async fn exhausted_retries_fail_with_the_last_error_visible(backend: Backend) {
    // Arrange
    let app = spawn_app_with(backend, |s| s.delivery.max_attempts = 3).await;
    let channel = app.create_bot(None).await;
    app.telegram.add_chat(3);
    app.telegram.fail_next(1000, 500);

    // Act
    let id = app.send_text(&channel, 3, "never").await;

    // Assert
    let msg = app.wait_for_status(&id, "failed", WAIT).await;
    assert_eq!(msg["attempt_count"], 3);
    assert_eq!(msg["last_error_code"], "provider-unavailable");
    assert!(
        msg["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("gave up after 3 attempts")
    );
}

/// An account actor that panics is started again by the registry's watch, with nothing sent
/// through it meanwhile: its bot goes on reading commands (and answering them), and sends.
async fn a_crashed_account_actor_is_restarted_and_keeps_delivering(backend: Backend) {
    // Arrange
    let app = spawn_app(backend).await;
    let channel = app.create_bot(None).await;
    app.telegram.add_chat(8);
    let actor = app
        .state
        .registry
        .send(Lookup(channel.as_str().into()))
        .await
        .expect("registry")
        .expect("actor");

    // Act: the actor panics inside a handler; then a user writes to the bot.
    let crashed = actor.send(Crash).await;
    app.telegram
        .user_sends(crate::helpers::BOT_TOKEN, 8, "/start not-a-code");

    // Assert: the command was read and answered without any send asking for the actor.
    assert!(crashed.is_err(), "the crash request itself gets no answer");
    app.wait_for_text(8, "not valid").await;

    // And it delivers.
    let id = app.send_text(&channel, 8, "after the crash").await;
    app.wait_for_status(&id, "sent", WAIT).await;
    assert_eq!(app.telegram.sent().len(), 2);
}

/// A delivery worker restarted under a new name (it lost its database) asks back the jobs its
/// previous incarnation had fetched and not started, and leaves those it was running to it.
async fn a_restarted_worker_takes_back_only_the_jobs_it_had_not_started(backend: Backend) {
    use sea_orm::{ConnectionTrait, Statement};
    // Arrange: three jobs for an hour from now (no worker fetches them): one fetched and one
    // running under a dead worker's name, and one fetched by another worker.
    let app = spawn_app(backend).await;
    let db = app.inspect_db().await;
    let queue = &app.state.queue;
    for id in ["m-fetched", "m-running", "m-other"] {
        queue
            .push(&id.into(), Duration::from_secs(3600))
            .await
            .expect("push");
    }
    let pg = db.get_database_backend() == sea_orm::DbBackend::Postgres;
    let (workers, jobs) = if pg {
        ("apalis.workers", "apalis.jobs")
    } else {
        ("Workers", "Jobs")
    };
    let run = |sql: String| {
        let db = &db;
        async move {
            db.execute_raw(Statement::from_string(db.get_database_backend(), sql))
                .await
                .expect("sql")
        }
    };
    for worker in ["deliver-n~run-0", "deliver-n~run-1", "deliver-other~run-0"] {
        run(format!(
            "INSERT INTO {workers} (id, worker_type, storage_name, layers) \
             VALUES ('{worker}', 'pregonero::deliver', 'test', '')"
        ))
        .await;
    }
    for (message, status, worker) in [
        ("m-fetched", "Queued", "deliver-n~run-0"),
        ("m-running", "Running", "deliver-n~run-0"),
        ("m-other", "Queued", "deliver-other~run-0"),
    ] {
        let job = if pg {
            format!("convert_from(job, 'UTF8') LIKE '%{message}%'")
        } else {
            format!("CAST(job AS TEXT) LIKE '%{message}%'")
        };
        let changed = run(format!(
            "UPDATE {jobs} SET status = '{status}', lock_by = '{worker}' WHERE {job}"
        ))
        .await;
        assert_eq!(changed.rows_affected(), 1, "{message}");
    }

    // Act: the worker `deliver-n~run-0` came back as `deliver-n~run-1`.
    let released = queue
        .release_worker("deliver-n~run-0")
        .await
        .expect("release");

    // Assert
    assert_eq!(released, 1);
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            format!("SELECT status, lock_by FROM {jobs} ORDER BY status"),
        ))
        .await
        .expect("jobs");
    let states: Vec<(String, Option<String>)> = rows
        .iter()
        .map(|r| {
            (
                r.try_get("", "status").expect("status"),
                r.try_get("", "lock_by").expect("lock_by"),
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            ("Pending".to_owned(), None),
            ("Queued".to_owned(), Some("deliver-other~run-0".to_owned())),
            ("Running".to_owned(), Some("deliver-n~run-0".to_owned())),
        ]
    );
}

/// The purge's vacuum of the queue's table runs on PostgreSQL (its statistics say when), whatever
/// autovacuum does; on SQLite there is nothing to do.
#[actix_web::test]
async fn the_queue_table_is_vacuumed_on_postgresql() {
    use sea_orm::{ConnectionTrait, Statement};
    let Some(backend) = Backend::postgres().await else {
        return;
    };
    let app = spawn_app(backend).await;
    let db = app.inspect_db().await;
    let last = || async {
        db.query_one_raw(Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT count(last_vacuum) + count(last_analyze) AS n FROM pg_stat_user_tables \
             WHERE schemaname = 'apalis' AND relname = 'jobs' AND last_vacuum IS NOT NULL",
        ))
        .await
        .expect("stats")
        .and_then(|r| r.try_get::<i64>("", "n").ok())
        .unwrap_or(0)
    };
    assert_eq!(last().await, 0, "vacuumed before the test");

    app.state.queue.vacuum().await.expect("vacuum");

    // The statistics collector reports a moment later.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while last().await != 2 {
        assert!(std::time::Instant::now() < deadline, "no vacuum recorded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

crate::on_both_databases!(
    a_restarted_worker_takes_back_only_the_jobs_it_had_not_started,
    a_429_storm_delays_messages_but_fails_none,
    a_permanent_error_fails_the_message_without_retrying,
    server_errors_are_retried_with_backoff_until_success,
    exhausted_retries_fail_with_the_last_error_visible,
    a_crashed_account_actor_is_restarted_and_keeps_delivering,
);

/// A PostgreSQL cluster of this test's own (initdb + pg_ctl from the installed server), on a
/// free port, so it can be stopped under a running server without touching the others' tests.
pub(crate) struct OwnPostgres {
    dir: tempfile::TempDir,
    bin: std::path::PathBuf,
    port: u16,
}

impl OwnPostgres {
    pub(crate) fn start() -> Option<Self> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|b| b.join("pg_ctl").exists())
            .max()?;
        let dir = tempfile::tempdir().expect("dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port();
        let me = Self { dir, bin, port };
        if is_root() {
            let status = std::process::Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(me.dir.path())
                .status()
                .expect("chown");
            assert!(status.success());
        }
        let data = me.dir.path().join("data");
        me.run(&format!(
            "{} -D {} -U postgres --auth=trust -E UTF8",
            me.bin.join("initdb").display(),
            data.display()
        ));
        me.pg_ctl("start");
        Some(me)
    }

    fn run(&self, command: &str) {
        let mut cmd = if is_root() {
            let mut c = std::process::Command::new("su");
            c.args(["postgres", "-c", command]);
            c
        } else {
            let mut c = std::process::Command::new("sh");
            c.args(["-c", command]);
            c
        };
        let out = cmd.output().expect("run");
        assert!(
            out.status.success(),
            "{command}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub(crate) fn pg_ctl(&self, action: &str) {
        let data = self.dir.path().join("data");
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let mode = if action == "stop" { "-m fast" } else { "" };
        self.run(&format!(
            "{} -D {} -o '{options}' -l {}/log -w {mode} {action}",
            self.bin.join("pg_ctl").display(),
            data.display(),
            self.dir.path().display()
        ));
    }

    pub(crate) fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let _ = std::process::Command::new("sh")
            .arg("-c")
            .arg(if is_root() {
                format!(
                    "su postgres -c '{} -D {} -m immediate stop'",
                    self.bin.join("pg_ctl").display(),
                    data.display()
                )
            } else {
                format!(
                    "{} -D {} -m immediate stop",
                    self.bin.join("pg_ctl").display(),
                    data.display()
                )
            })
            .output();
    }
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// PostgreSQL restarted under a running server: accepted messages wait while it is gone (the
/// API answers errors meanwhile, it does not crash) and are all delivered, each once, when it is
/// back; the server serves again without a restart of its own.
#[actix_web::test]
async fn a_postgresql_restart_loses_and_duplicates_nothing() {
    let Some((pg, app, channel)) = on_own_postgres(10).await else {
        return;
    };
    // Slow answers keep some of the first ten in flight when the database goes.
    app.telegram.set_latency(Duration::from_millis(300));
    let mut ids = Vec::new();
    for chat in 1..=10 {
        ids.push(
            app.send_text(&channel, chat, &format!("before {chat}"))
                .await,
        );
    }

    // Act: the database goes away for three seconds, then comes back.
    pg.pg_ctl("stop");
    let down = app
        .client
        .get(format!("{}/ready", app.address))
        .send()
        .await
        .expect("the server still answers");
    assert_eq!(down.status().as_u16(), 503);
    tokio::time::sleep(Duration::from_secs(3)).await;
    pg.pg_ctl("start");

    // Assert: every message delivered exactly once; new ones go through. (How soon depends on
    // the pool's reconnection and the sweep; on a loaded machine that has taken over 30 s.)
    let patience = Duration::from_secs(120);
    for id in &ids {
        app.wait_for_status(id, "sent", patience).await;
    }
    let after = app.send_text(&channel, 1, "after").await;
    app.wait_for_status(&after, "sent", patience).await;
    each_delivered_once(&app, "before", 10);
}

/// A server on a PostgreSQL cluster of its own, with a minute's lease (the time a sent
/// message's worker keeps trying to record it while the pool reconnects; production: five
/// minutes), and a bot that can write to chats `1..=chats`; `None` where PostgreSQL is not
/// tested.
async fn on_own_postgres(chats: i64) -> Option<(OwnPostgres, TestApp, String)> {
    if std::env::var("TEST_SKIP_POSTGRES").is_ok() {
        return None;
    }
    let Some(pg) = OwnPostgres::start() else {
        eprintln!("SKIPPED: no PostgreSQL server binaries under /usr/lib/postgresql");
        return None;
    };
    let app = spawn_app_with(Backend::Postgres(pg.url()), |s| s.delivery.lease_secs = 60).await;
    let channel = app.create_bot(None).await;
    for chat in 1..=chats {
        app.telegram.add_chat(chat);
    }
    Some((pg, app, channel))
}

/// Asserts that `<prefix> <chat>` reached the fake exactly once for each of chats `1..=chats`.
fn each_delivered_once(app: &TestApp, prefix: &str, chats: i64) {
    let sent = app.telegram.sent();
    for chat in 1..=chats {
        let text = format!("{prefix} {chat}");
        let n = sent
            .iter()
            .filter(|m| m.text.as_deref() == Some(&text))
            .count();
        assert_eq!(n, 1, "`{text}` delivered {n} times");
    }
}

/// A delivery the provider refused with a retryable error while PostgreSQL was gone (so the
/// retry could not be written) goes back to the queue as soon as the database answers, not
/// when its lease runs out: before, its job failed into a queue in that same database and the
/// message stayed claimed for the whole lease (a minute here, five by default).
#[actix_web::test]
async fn a_delivery_cut_by_a_postgresql_restart_goes_back_to_the_queue_at_once() {
    let Some((pg, app, channel)) = on_own_postgres(5).await else {
        return;
    };
    // Each first send is answered 502 after 2 s: the database is gone by then.
    app.telegram.set_latency(Duration::from_secs(2));
    app.telegram.fail_next(5, 502);
    let mut ids = Vec::new();
    for chat in 1..=5 {
        ids.push(app.send_text(&channel, chat, &format!("cut {chat}")).await);
    }

    // Act: the database goes away while the five calls are at the provider, for longer than
    // the pools wait for a connection (5 s): the retries cannot be written.
    tokio::time::sleep(Duration::from_millis(500)).await;
    pg.pg_ctl("stop");
    tokio::time::sleep(Duration::from_secs(7)).await;
    pg.pg_ctl("start");
    let back = std::time::Instant::now();

    // Assert: each sent once, well inside the lease (the second try takes 2 s at the fake).
    for id in &ids {
        app.wait_for_status(id, "sent", Duration::from_secs(30))
            .await;
    }
    eprintln!(
        "all five sent {:?} after the database came back",
        back.elapsed()
    );
    assert_eq!(
        app.telegram.requests(),
        10,
        "each message tried twice, no more"
    );
    each_delivered_once(&app, "cut", 5);
}
