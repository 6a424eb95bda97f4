//! Operating the server: health endpoints, metrics, clean restarts.
use std::{collections::HashMap, time::Duration};

use pregonero::outbox::repo;
use serde_json::Value;

use crate::helpers::{Backend, spawn_app, spawn_app_with};

async fn health_ready_and_metrics_describe_the_server(backend: Backend) {
    // Arrange
    let app = spawn_app(backend).await;
    let channel = app.create_bot(None).await;
    app.telegram.add_chat(1);
    let id = app.send_text(&channel, 1, "ping").await;
    app.wait_for_status(&id, "sent", Duration::from_secs(30))
        .await;
    let get = |path: &str| app.client.get(format!("{}{path}", app.address)).send();

    // Act
    let live = get("/live").await.expect("live");
    let ready = get("/ready").await.expect("ready");
    let health: Value = get("/health")
        .await
        .expect("health")
        .json()
        .await
        .expect("json");
    let metrics = get("/metrics")
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");

    // Assert
    assert_eq!(live.status().as_u16(), 200);
    assert_eq!(ready.status().as_u16(), 200);
    assert!(live.headers().contains_key("x-request-id"));
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(health["queue"]["depth"], 0);
    assert_eq!(health["channels"]["by_status"]["active"], 1);
    assert_eq!(health["workers"]["delivery"]["running"], true);
    for name in [
        "pregonero_http_requests_total",
        "pregonero_http_request_duration_seconds",
        "pregonero_queue_depth",
        "pregonero_sends_total",
        "pregonero_pacing_wait_seconds",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }
}

async fn a_clean_restart_mid_queue_delivers_everything_exactly_once(backend: Backend) {
    // Arrange: a slow provider so that the queue is still full when we stop, and an uptime longer
    // than the shutdown grace (a grace timer started at boot once skipped the graceful close).
    let mut app = spawn_app_with(backend, |s| {
        s.delivery.concurrency = 2;
        s.delivery.shutdown_grace_secs = 1;
    })
    .await;
    let channel = app.create_bot(None).await;
    app.telegram.set_latency(Duration::from_millis(300));
    let mut ids = Vec::new();
    for chat in 1..=30 {
        app.telegram.add_chat(chat);
        ids.push(
            app.send_text(&channel, chat, &format!("restart {chat}"))
                .await,
        );
    }
    // Generous: the whole suite shares 2 cores; what is checked is exactly-once, not speed.
    assert!(app.telegram.wait_for_sent(3, Duration::from_secs(30)).await);
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // Act
    app.stop_server().await;
    let db = app.inspect_db().await;
    let left_sending = {
        let mut n = 0;
        for id in &ids {
            if repo::find(&db, &id.as_str().into())
                .await
                .expect("row")
                .map(|m| m.status)
                == Some("sending".into())
            {
                n += 1;
            }
        }
        n
    };
    let sent_before_restart = app.telegram.sent().len();
    app.start_server().await;

    // Assert
    assert_eq!(left_sending, 0, "a clean stop leaves nothing in `sending`");
    assert!(sent_before_restart < 30, "the restart happened mid-queue");
    for id in &ids {
        app.wait_for_status(id, "sent", Duration::from_secs(30))
            .await;
    }
    let mut counts: HashMap<String, usize> = HashMap::new();
    for m in app.telegram.sent() {
        *counts.entry(m.text.unwrap_or_default()).or_default() += 1;
    }
    assert_eq!(counts.len(), 30);
    for id in &ids {
        let (_, msg) = app.get_json(&format!("messages/{id}")).await;
        if counts.get(msg["text"].as_str().unwrap_or("")) != Some(&1) {
            eprintln!("DUPLICATE {msg:#}");
        }
    }
    assert!(counts.values().all(|&n| n == 1), "duplicates: {counts:?}");
}

/// Delivery jobs in the queue's table by state: (finished, waiting).
async fn queue_jobs(app: &crate::helpers::TestApp) -> (i64, i64) {
    use sea_orm::{ConnectionTrait, Statement};
    let db = app.inspect_db().await;
    let table = match db.get_database_backend() {
        sea_orm::DatabaseBackend::Postgres => "apalis.jobs",
        _ => "Jobs",
    };
    let sql = format!(
        "SELECT COALESCE(SUM(CASE WHEN status = 'Done' THEN 1 ELSE 0 END), 0), \
                COALESCE(SUM(CASE WHEN status = 'Pending' THEN 1 ELSE 0 END), 0) FROM {table}"
    );
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .expect("count jobs")
        .expect("one row");
    (
        row.try_get_by_index::<i64>(0).expect("finished"),
        row.try_get_by_index::<i64>(1).expect("waiting"),
    )
}

async fn finished_jobs_leave_the_queue_and_waiting_ones_stay(backend: Backend) {
    // Arrange: finished jobs are kept one second.
    let app = spawn_app_with(backend, |s| s.delivery.keep_finished_jobs_secs = 1).await;
    let channel = app.create_bot(None).await;
    app.telegram.add_chat(1);
    // A job due in an hour (its message does not exist: it would do nothing when it ran).
    app.state
        .queue
        .push(&"not-a-message".into(), Duration::from_secs(3600))
        .await
        .expect("push a future job");

    // Act
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(app.send_text(&channel, 1, &format!("m{i}")).await);
    }
    for id in &ids {
        app.wait_for_status(id, "sent", Duration::from_secs(30))
            .await;
    }

    // Assert: the five finished jobs go within a few seconds; the waiting one and the ledger stay.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let (mut finished, mut waiting) = queue_jobs(&app).await;
    while finished > 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        (finished, waiting) = queue_jobs(&app).await;
    }
    assert_eq!(finished, 0, "finished jobs were not deleted");
    assert_eq!(waiting, 1, "the job due later must stay");
    for id in &ids {
        let (_, msg) = app.get_json(&format!("messages/{id}")).await;
        assert_eq!(msg["status"], "sent");
    }
}

crate::on_both_databases!(
    health_ready_and_metrics_describe_the_server,
    a_clean_restart_mid_queue_delivers_everything_exactly_once,
    finished_jobs_leave_the_queue_and_waiting_ones_stay,
);

/// Every operation in the OpenAPI document is routed by the server (none answers
/// `route-not-found`), and what it answers an empty request with (ids that do not exist, `{}`
/// bodies: mostly refusals) is a status and body the document gives for it.
#[actix_web::test]
async fn every_documented_operation_exists() {
    // Arrange
    let app = spawn_app(Backend::Sqlite).await;
    let spec = crate::openapi::document();
    let paths = spec["paths"].as_object().expect("paths");
    let mut checked = 0;

    for (path, ops) in paths {
        let concrete: String = path
            .split('/')
            .map(|s| match s {
                "{chat_id}" => "123456",
                "{view}" => "current-month",
                "{token}" => "not-a-token",
                s if s.starts_with('{') => "00000000-0000-0000-0000-000000000000",
                s => s,
            })
            .collect::<Vec<_>>()
            .join("/");
        for method in ops.as_object().expect("operations").keys() {
            // Act
            let url = format!("{}{concrete}", app.address);
            let req = match method.as_str() {
                "get" => app.client.get(&url),
                "post" => app.client.post(&url).json(&serde_json::json!({})),
                "delete" => app.client.delete(&url),
                "patch" => app.client.patch(&url).json(&serde_json::json!({})),
                "put" => app.client.put(&url).json(&serde_json::json!({})),
                other => panic!("unexpected method {other} in the document"),
            };
            if method == "get" && crate::openapi::is_stream(path) {
                // An endless stream: its answer's head is checked, its body is not read.
                let res = req.bearer_auth(&app.api_key).send().await.expect("request");
                assert_eq!(res.status().as_u16(), 200);
                crate::openapi::check(
                    &reqwest::Method::GET,
                    path,
                    200,
                    res.headers()
                        .get("content-type")
                        .and_then(|v| v.to_str().ok()),
                    b"",
                );
                checked += 1;
                continue;
            }
            let (status, body) = crate::openapi::send_checked(req.bearer_auth(&app.api_key)).await;

            // Assert
            assert_ne!(
                body["error"], "route-not-found",
                "{method} {path} is documented but not routed ({status})"
            );
            checked += 1;
        }
    }
    assert!(checked >= 95, "only {checked} operations checked");
}

/// Pods that start together on a new PostgreSQL database migrate one after another (an advisory
/// lock): every start succeeds and each migration is recorded once.
#[actix_web::test]
async fn replicas_starting_together_migrate_once() {
    use sea_orm::{ConnectionTrait, Statement};
    let Some(crate::helpers::Backend::Postgres(url)) = crate::helpers::Backend::postgres().await
    else {
        return;
    };
    let settings = pregonero::config::Settings {
        database_url: Some(url),
        secret_key: Some(pregonero::crypto::Cipher::generate_key().into()),
        ..Default::default()
    };
    let starts = (0..4).map(|_| pregonero::db::connect(&settings));
    let dbs = futures::future::join_all(starts).await;
    let db = match dbs.into_iter().collect::<Result<Vec<_>, _>>() {
        Ok(mut dbs) => dbs.pop().expect("a connection"),
        Err(e) => panic!("a replica failed to start: {e:#}"),
    };
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT count(*) AS n, count(DISTINCT version) AS d FROM seaql_migrations",
        ))
        .await
        .expect("query")
        .expect("row");
    let (n, d): (i64, i64) = (
        row.try_get("", "n").expect("n"),
        row.try_get("", "d").expect("d"),
    );
    assert_eq!(n, d, "a migration recorded twice");
    assert!(n >= 14, "{n} migrations");
}

/// The query KEDA scales the workers on (k8s/base/keda.yaml) runs on the real schema and counts
/// what `/health` reports as the queue's depth.
#[actix_web::test]
async fn the_keda_backlog_query_matches_the_health_queue_depth() {
    use sea_orm::{ConnectionTrait, Statement};
    let Some(backend) = crate::helpers::Backend::postgres().await else {
        return;
    };
    let manifest = include_str!("../../k8s/base/keda.yaml");
    let query = manifest
        .lines()
        .find_map(|l| l.trim().strip_prefix("query: "))
        .expect("a query in keda.yaml")
        .trim_matches('"');
    let app = spawn_app(backend).await;
    let channel = app.create_bot(None).await;
    // Slow answers keep the three in `queued` or `sending` while both are read.
    app.telegram.set_latency(std::time::Duration::from_secs(5));
    for chat in 1..=3 {
        app.telegram.add_chat(chat);
        app.send_text(&channel, chat, "queued").await;
    }
    let db = app.inspect_db().await;
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), query))
        .await
        .expect("KEDA's query runs")
        .expect("one row");
    let counted: i64 = row.try_get_by_index(0).expect("count");
    let (_, health) = app
        .client
        .get(format!("{}/health", app.address))
        .send()
        .await
        .expect("health")
        .json::<Value>()
        .await
        .map(|h| (0, h))
        .expect("json");
    assert_eq!(counted, 3, "{query}");
    assert_eq!(health["queue"]["depth"], 3);
}

/// The API document is served at `/openapi.json` and explorable at `/docs/` (Swagger UI from the
/// binary: no file it loads comes from another host), without credentials.
#[actix_web::test]
async fn the_api_is_documented_at_openapi_json_and_docs() {
    // Arrange
    let app = spawn_app(Backend::Sqlite).await;
    let get = |path: &str| app.client.get(format!("{}{path}", app.address)).send();

    // Act + Assert: the generated document (docs/openapi.json holds the same).
    let res = get("/openapi.json").await.expect("request");
    assert_eq!(res.status().as_u16(), 200);
    let served: Value = res.json().await.expect("json");
    assert_eq!(&served, crate::openapi::document());

    // Swagger UI: /docs sends to /docs/, whose page and scripts are served here and read
    // /openapi.json.
    let no_redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let res = no_redirect
        .get(format!("{}/docs", app.address))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status().as_u16(), 302);
    assert_eq!(crate::helpers::header(&res, "location"), "/docs/");
    let page = get("/docs/").await.expect("request");
    assert_eq!(page.status().as_u16(), 200);
    let html = page.text().await.expect("html");
    assert!(html.contains("swagger-ui"), "{html}");
    for external in ["src=\"http", "href=\"http", "src=\"//", "href=\"//"] {
        assert!(
            !html.contains(external),
            "the page loads {external}…: {html}"
        );
    }
    let init = get("/docs/swagger-initializer.js").await.expect("request");
    assert_eq!(init.status().as_u16(), 200);
    assert!(init.text().await.expect("js").contains("/openapi.json"));
    let bundle = get("/docs/swagger-ui-bundle.js").await.expect("request");
    assert_eq!(bundle.status().as_u16(), 200);
    assert!(bundle.bytes().await.expect("js").len() > 100_000);
}

/// `delivery.body_retention_days`: the daily retention job erases the text of finished
/// messages past it and keeps their ledger rows; newer messages keep theirs.
#[actix_web::test]
async fn message_bodies_are_erased_after_their_retention() {
    // Arrange: a sent message, retention 2 days, the scheduler run by hand.
    let app = crate::helpers::spawn_app_with(crate::helpers::Backend::Sqlite, |s| {
        s.schedule.enabled = false;
        s.delivery.body_retention_days = Some(2);
    })
    .await;
    let channel = app.create_bot(None).await;
    app.telegram.add_chat(5);
    let old = app.send_text(&channel, 5, "secret alert text").await;
    app.wait_for_status(&old, "sent", std::time::Duration::from_secs(10))
        .await;

    // Act: the first message three days old, a new one, then the due jobs.
    {
        use pregonero::entities::messages;
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
        messages::Entity::update_many()
            .col_expr(
                messages::Column::CreatedAt,
                Expr::value(chrono::Utc::now() - chrono::Duration::days(3)),
            )
            .filter(messages::Column::Id.eq(old.as_str()))
            .exec(&app.state.db)
            .await
            .expect("age the message");
    }
    let new = app.send_text(&channel, 5, "fresh text").await;
    app.wait_for_status(&new, "sent", std::time::Duration::from_secs(10))
        .await;
    pregonero::scheduled::run_due(&app.state).await;

    // Assert
    let (_, old_view) = app.get_json(&format!("messages/{old}")).await;
    assert_eq!(old_view["status"], "sent", "the ledger row stays");
    assert_eq!(old_view["text"], "", "{old_view}");
    let (_, new_view) = app.get_json(&format!("messages/{new}")).await;
    assert_eq!(new_view["text"], "fresh text");
}
