//! Event ingestion: validation, durable acknowledgement, idempotency, keyset pagination under
//! concurrent inserts, backpressure and retention.
use std::{collections::HashSet, time::Duration};

use chrono::Utc;
use serde_json::{Value, json};

use crate::helpers::{
    Backend, StorageFault, TcpProxy, TestApp, spawn_app, spawn_app_with, status_and_json,
};

async fn post(app: &TestApp, path: &str, body: &Value, key: Option<&str>) -> reqwest::Response {
    let mut req = app
        .client
        .post(format!("{}{path}", app.address))
        .bearer_auth(&app.api_key)
        .json(body);
    if let Some(key) = key {
        req = req.header("Idempotency-Key", key);
    }
    req.send().await.expect("request")
}

async fn list(app: &TestApp, query: &str) -> Value {
    let res = app
        .client
        .get(format!("{}/events?{query}", app.address))
        .bearer_auth(&app.api_key)
        .send()
        .await
        .expect("request");
    assert_eq!(res.status().as_u16(), 200, "GET /events?{query}");
    res.json().await.expect("json")
}

fn event(service: &str, message: &str) -> Value {
    json!({"timestamp": Utc::now().to_rfc3339(), "service": service, "message": message,
           "metadata": {"level": "info"}})
}

async fn invalid_events_get_field_errors_and_store_nothing(backend: Backend) {
    // Arrange
    let app = spawn_app(backend).await;

    // Act
    let res = post(
        &app,
        "/events",
        &json!([event("api", "fine"), {"timestamp": "noon", "service": "", "message": 7}]),
        None,
    )
    .await;

    // Assert
    assert_eq!(res.status().as_u16(), 400);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["error"], "validation-failed");
    let fields: Vec<_> = body["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| {
            (
                e["field"].as_str().unwrap_or("").to_owned(),
                e["code"].clone(),
            )
        })
        .collect();
    assert_eq!(
        fields,
        vec![
            ("[1].timestamp".to_owned(), json!("invalid-format")),
            ("[1].service".to_owned(), json!("required")),
            ("[1].message".to_owned(), json!("invalid-type")),
        ]
    );
    assert_eq!(list(&app, "").await["data"], json!([]), "all or nothing");
    let res = app
        .client
        .post(format!("{}/events", app.address))
        .bearer_auth(&app.api_key)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("request");
    assert_eq!(res.status().as_u16(), 400);
    let big = "x".repeat(9 * 1024);
    let res = post(&app, "/events", &event("api", &big), None).await;
    assert_eq!(res.status().as_u16(), 400, "message over the size limit");
}

async fn accepted_events_are_committed_and_queryable(backend: Backend) {
    // Arrange
    let app = spawn_app(backend).await;

    // Act: one event, an array, the batch route, and an idempotent replay.
    let one = post(&app, "/events", &event("payments", "charged"), None).await;
    assert_eq!(one.status().as_u16(), 202);
    let one: Value = one.json().await.expect("json");
    let many = post(
        &app,
        "/events",
        &json!([event("payments", "a"), event("search", "b")]),
        None,
    )
    .await;
    assert_eq!(many.status().as_u16(), 202);
    let many: Value = many.json().await.expect("json");
    assert_eq!(many["count"], 2);
    let batch = post(
        &app,
        "/events/batch",
        &json!([event("payments", "c")]),
        None,
    )
    .await;
    assert_eq!(batch.status().as_u16(), 202);
    let first = post(&app, "/events", &event("payments", "once"), Some("evt-1")).await;
    let again = post(&app, "/events", &event("payments", "once"), Some("evt-1")).await;
    let first: Value = first.json().await.expect("json");
    let again: Value = again.json().await.expect("json");

    // Assert: a 202 means it is already readable; the replay stored nothing new.
    assert_eq!(first["event_id"], again["event_id"]);
    let payments = list(&app, "service=payments&count=true").await;
    assert_eq!(payments["total"], 4);
    let data = payments["data"].as_array().expect("data");
    assert_eq!(data[0]["event_id"], one["event_id"]);
    assert_eq!(data[0]["metadata"]["level"], "info");
    assert_eq!(
        list(&app, "service=search").await["data"][0]["event_id"],
        many["event_ids"][1]
    );
    let bad = app
        .client
        .get(format!("{}/events?cursor=garbage", app.address))
        .bearer_auth(&app.api_key)
        .send()
        .await
        .expect("request");
    assert_eq!(bad.status().as_u16(), 400);
}

async fn cursor_pages_are_stable_under_concurrent_inserts(backend: Backend) {
    // Arrange: 300 events over 100 timestamps (3 share each: the seq breaks ties).
    let app = spawn_app(backend).await;
    let base = Utc::now() - chrono::Duration::hours(1);
    let mut seeded = HashSet::new();
    for chunk in 0..3 {
        let batch: Vec<Value> = (0..100)
            .map(|i| {
                let t = base + chrono::Duration::seconds(i);
                json!({"timestamp": t.to_rfc3339(), "service": "pages", "message": format!("{chunk}-{i}")})
            })
            .collect();
        let res = post(&app, "/events", &json!(batch), None).await;
        let body: Value = res.json().await.expect("json");
        for id in body["event_ids"].as_array().expect("ids") {
            seeded.insert(id.as_str().expect("id").to_owned());
        }
    }

    // Act: page through 37 at a time while another client keeps inserting in the same range.
    let writer = {
        let (client, address, key) = (app.client.clone(), app.address.clone(), app.api_key.clone());
        tokio::spawn(async move {
            for i in 0..30 {
                let t = base + chrono::Duration::seconds(i * 3);
                let body =
                    json!([{"timestamp": t.to_rfc3339(), "service": "pages", "message": "late"}]);
                let _ = client
                    .post(format!("{address}/events"))
                    .bearer_auth(&key)
                    .json(&body)
                    .send()
                    .await;
            }
        })
    };
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let query = match &cursor {
            Some(c) => format!("service=pages&limit=37&cursor={c}"),
            None => "service=pages&limit=37".into(),
        };
        let page = list(&app, &query).await;
        for e in page["data"].as_array().expect("data") {
            seen.push((
                e["timestamp"].as_str().expect("ts").to_owned(),
                e["event_id"].as_str().expect("id").to_owned(),
            ));
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    writer.await.expect("writer");

    // Assert: every seeded event exactly once, in time order, nothing twice.
    let ids: Vec<_> = seen.iter().map(|(_, id)| id.clone()).collect();
    let unique: HashSet<_> = ids.iter().cloned().collect();
    assert_eq!(unique.len(), ids.len(), "an event appeared twice");
    assert!(seeded.is_subset(&unique), "a seeded event was skipped");
    let times: Vec<_> = seen
        .iter()
        .map(|(t, _)| t.parse::<chrono::DateTime<Utc>>().expect("time"))
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "out of order");
}

async fn a_full_buffer_answers_429_and_recovers(backend: Backend) {
    // Arrange: room for 5 uncommitted events.
    let app = spawn_app_with(backend, |s| {
        s.events.buffer_capacity = 5;
        s.events.max_request_events = 5;
    })
    .await;
    let batch: Vec<Value> = (0..5).map(|i| event("flood", &format!("e{i}"))).collect();
    let batch = json!(batch);

    // Act: many batches at once.
    let requests = (0..60).map(|_| post(&app, "/events", &batch, None));
    let answers = futures::future::join_all(requests).await;

    // Assert: some refused with Retry-After, every accepted one stored, nothing else.
    let mut accepted = 0;
    let mut refused = 0;
    for res in answers {
        match res.status().as_u16() {
            202 => accepted += 1,
            429 => {
                assert_eq!(
                    res.headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok()),
                    Some("1")
                );
                let body: Value = res.json().await.expect("json");
                assert_eq!(body["error"], "buffer-full");
                refused += 1;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(refused > 0, "the buffer never filled");
    assert!(accepted > 0);
    let stored = list(&app, "service=flood&count=true&limit=1").await;
    assert_eq!(stored["total"], accepted * 5);
    let res = post(&app, "/events", &event("flood", "after"), None).await;
    assert_eq!(
        res.status().as_u16(),
        202,
        "recovers once the buffer drains"
    );
}

async fn a_body_over_the_limit_answers_413_and_stores_nothing(backend: Backend) {
    // Arrange: at most 5 events a request, so the body limit is 5 × (message + metadata + 512)
    // bytes, 125,440 here.
    let app = spawn_app_with(backend, |s| s.events.max_request_events = 5).await;
    let big = "x".repeat(40 * 1024);
    let batch = json!(
        (0..5)
            .map(|i| event("oversize", &format!("{i}{big}")))
            .collect::<Vec<_>>()
    );

    // Act
    let res = post(&app, "/events", &batch, None).await;

    // Assert: refused before parsing, with the stable code; nothing stored; a normal body is fine.
    assert_eq!(res.status().as_u16(), 413);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["error"], "payload-too-large");
    let res = post(&app, "/events", &event("oversize", "small"), None).await;
    assert_eq!(res.status().as_u16(), 202);
    let stored = list(&app, "service=oversize&count=true&limit=10").await;
    assert_eq!(stored["total"], 1);
}

async fn retention_deletes_old_events_on_schedule(backend: Backend) {
    // Arrange: events 20 days old and fresh ones; retention 30 days; scheduler on.
    let app = spawn_app_with(backend, |s| s.schedule.enabled = false).await;
    let old = Utc::now() - chrono::Duration::days(20);
    let res = post(
        &app,
        "/events",
        &json!([
            {"timestamp": old.to_rfc3339(), "service": "ret", "message": "old"},
            {"timestamp": Utc::now().to_rfc3339(), "service": "ret", "message": "new"}
        ]),
        None,
    )
    .await;
    assert_eq!(res.status().as_u16(), 202);

    // Act: 15 days later the old ones are past retention; run the due jobs.
    app.state.clock.advance(chrono::Duration::days(15));
    pregonero::scheduled::run_due(&app.state).await;

    // Assert
    let left = list(&app, "service=ret").await;
    let messages: Vec<_> = left["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|e| e["message"].clone())
        .collect();
    assert_eq!(messages, vec![json!("new")]);
    let db = app.inspect_db().await;
    use pregonero::entities::scheduled_runs;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    let run = scheduled_runs::Entity::find()
        .filter(scheduled_runs::Column::Job.eq("events-retention"))
        .one(&db)
        .await
        .expect("query")
        .expect("a retention run");
    assert_eq!(run.outcome.as_deref(), Some("ok"));
    assert!(run.detail.unwrap_or_default().starts_with("1 events"));
}

async fn health_events(app: &TestApp) -> Value {
    let (code, body) = app.get_json_root("/health").await;
    assert_eq!(code, 200);
    body["events"].clone()
}

/// `POST /events` as `key` (none: no `Authorization` header); status and JSON.
async fn post_as(
    app: &TestApp,
    key: Option<&str>,
    body: &Value,
    idem: Option<&str>,
) -> (u16, Value) {
    let mut req = app
        .client
        .post(format!("{}/events", app.address))
        .json(body);
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    if let Some(idem) = idem {
        req = req.header("Idempotency-Key", idem);
    }
    status_and_json(req).await
}

/// `GET /events?<query>` as `key`; status and JSON.
async fn list_as(app: &TestApp, key: Option<&str>, query: &str) -> (u16, Value) {
    let mut req = app.client.get(format!("{}/events?{query}", app.address));
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    status_and_json(req).await
}

/// A new API key of the admin's with these scopes.
async fn key_with(app: &TestApp, scopes: &[&str]) -> String {
    let res = app
        .post("api-keys", &json!({"name": "scoped", "scopes": scopes}))
        .await;
    assert_eq!(res.status().as_u16(), 201);
    let body: Value = res.json().await.expect("json");
    body["token"].as_str().expect("token").to_owned()
}

async fn events_need_a_key_with_the_events_scopes(backend: Backend) {
    // Arrange
    let app = spawn_app(backend).await;
    let ingest = key_with(&app, &["events:write"]).await;
    let reader = key_with(&app, &["events:read"]).await;
    let general = key_with(&app, &["read", "write"]).await;

    // Act + Assert: no credentials, no events (the seed's open route is off by default).
    let (code, body) = post_as(&app, None, &event("api", "anon"), None).await;
    assert_eq!(
        (code, body["error"].as_str()),
        (401, Some("missing-credentials"))
    );
    let (code, _) = list_as(&app, None, "").await;
    assert_eq!(code, 401);
    let (code, _) = post_as(&app, Some("prg_not-a-key"), &event("api", "x"), None).await;
    assert_eq!(code, 401);

    // An ingest key sends, and can do nothing else.
    let (code, sent) = post_as(&app, Some(&ingest), &event("api", "sent"), None).await;
    assert_eq!(code, 202, "{sent}");
    let (code, body) = list_as(&app, Some(&ingest), "").await;
    assert_eq!(
        (code, body["error"].as_str()),
        (403, Some("insufficient-scope"))
    );
    let res = app
        .client
        .get(format!("{}/api/v1/channels", app.address))
        .bearer_auth(&ingest)
        .send()
        .await
        .expect("request");
    assert_eq!(
        res.status().as_u16(),
        403,
        "an ingest key cannot read /api/v1"
    );

    // A reader key reads and cannot send; a general key does neither.
    let (code, page) = list_as(&app, Some(&reader), "").await;
    assert_eq!(code, 200);
    assert_eq!(page["data"][0]["event_id"], sent["event_id"]);
    let (code, _) = post_as(&app, Some(&reader), &event("api", "no"), None).await;
    assert_eq!(code, 403);
    let (code, body) = post_as(&app, Some(&general), &event("api", "no"), None).await;
    assert_eq!(
        (code, body["error"].as_str()),
        (403, Some("insufficient-scope"))
    );
    let (code, _) = list_as(&app, Some(&general), "").await;
    assert_eq!(code, 403);
    // Nothing refused was stored.
    assert_eq!(list(&app, "count=true").await["total"], 1);
}

async fn events_are_their_owners(backend: Backend) {
    // Arrange: two owners with keys of every scope.
    let app = spawn_app(backend).await;
    let (_, bob_key) = app.user_with_key("bob", "operator").await;

    // Act: both send to the same service, under the same Idempotency-Key.
    let (code, mine) = post_as(
        &app,
        Some(&app.api_key),
        &event("shared", "mine"),
        Some("k1"),
    )
    .await;
    assert_eq!(code, 202);
    let (code, bobs) = post_as(&app, Some(&bob_key), &event("shared", "bob's"), Some("k1")).await;
    assert_eq!(code, 202);
    let (_, bobs_again) =
        post_as(&app, Some(&bob_key), &event("shared", "bob's"), Some("k1")).await;

    // Assert: one owner's key is not another's; each reads only their own, even as admin.
    assert_ne!(mine["event_id"], bobs["event_id"]);
    assert_eq!(bobs["event_id"], bobs_again["event_id"]);
    let (_, page) = list_as(&app, Some(&app.api_key), "service=shared&count=true").await;
    assert_eq!(page["total"], 1);
    assert_eq!(page["data"][0]["message"], "mine");
    let (_, page) = list_as(&app, Some(&bob_key), "service=shared&count=true").await;
    assert_eq!(page["total"], 1);
    assert_eq!(page["data"][0]["message"], "bob's");
}

async fn the_seeds_open_routes_need_an_explicit_owner(backend: Backend) {
    // Arrange
    let app = spawn_app_with(backend, |s| s.events.anonymous_owner = Some("admin".into())).await;

    // Act: the seed's call, without credentials.
    let (code, sent) = post_as(&app, None, &event("seed", "open"), None).await;

    // Assert: stored as the first admin's, readable both ways.
    assert_eq!(code, 202, "{sent}");
    let (code, page) = list_as(&app, None, "service=seed").await;
    assert_eq!(code, 200);
    assert_eq!(page["data"][0]["event_id"], sent["event_id"]);
    let (_, page) = list_as(&app, Some(&app.api_key), "service=seed").await;
    assert_eq!(page["data"][0]["event_id"], sent["event_id"]);
    // An owner that does not exist stops the start, with the setting's name.
    let mut settings = app.settings.clone();
    settings.events.anonymous_owner = Some("nobody@example.com".into());
    let refused = pregonero::startup::Application::build(settings, Default::default()).await;
    let message = format!("{:#}", refused.err().expect("refused to start"));
    assert!(message.contains("events.anonymous_owner"), "{message}");
}

async fn events_stored_before_owners_go_to_the_first_admin(backend: Backend) {
    use migrations::{Migrator, MigratorTrait};
    use sea_orm::{ConnectionTrait, EntityTrait};
    // Arrange: the schema and rows of the version before owners (migration 11).
    let data_dir = tempfile::tempdir().expect("tempdir");
    let settings = crate::helpers::test_settings(
        &backend,
        data_dir.path().to_owned(),
        "http://127.0.0.1:9".into(),
    );
    let db = pregonero::db::open(&settings).await.expect("db");
    Migrator::up(&db, Some(11))
        .await
        .expect("schema before owners");
    let operator = pregonero::auth::repo::create_user(&db, "ops", "operator")
        .await
        .expect("user");
    let first = pregonero::auth::repo::create_user(&db, "first", "admin")
        .await
        .expect("user");
    tokio::time::sleep(Duration::from_millis(5)).await;
    pregonero::auth::repo::create_user(&db, "second", "admin")
        .await
        .expect("user");
    let now = Utc::now();
    for (id, key) in [("e1", Some("k1")), ("e2", None)] {
        db.execute_raw(pregonero::db::statement(
            db.get_database_backend(),
            "INSERT INTO events (event_id, \"timestamp\", service, message, ingested_at, \
             idempotency_key) VALUES (?, ?, 'old', 'before owners', ?, ?)",
            vec![id.into(), now.into(), now.into(), key.into()],
        ))
        .await
        .expect("old event");
    }

    // Act
    Migrator::up(&db, None).await.expect("the rest");

    // Assert: the first admin owns them, and its key is now an owned key.
    let rows = pregonero::entities::events::Entity::find()
        .all(&db)
        .await
        .expect("events");
    assert_eq!(rows.len(), 2);
    for row in &rows {
        assert_eq!(
            row.owner_id.as_ref(),
            Some(&first.id),
            "not {}",
            operator.id.as_str()
        );
    }
    let keyed = rows.iter().find(|r| r.event_id == "e1").expect("e1");
    assert_eq!(
        keyed.idempotency_key.as_deref(),
        Some(format!("{}/k1", first.id.as_str()).as_str())
    );
}

async fn error_of(res: reqwest::Response) -> (u16, Option<String>, String) {
    let status = res.status().as_u16();
    let retry = res
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body: Value = res.json().await.expect("json");
    (
        status,
        retry,
        body["error"].as_str().unwrap_or_default().to_owned(),
    )
}

async fn the_circuit_breaker_opens_on_failing_commits_and_closes_after_probes(backend: Backend) {
    // Arrange: opens after 3 failures, closes after 2 good probes, rests 30 s.
    let app = spawn_app_with(backend, |s| {
        s.events.breaker_failures = 3;
        s.events.breaker_successes = 2;
        s.events.breaker_open_secs = 30;
    })
    .await;
    let fault = StorageFault::install(&app).await;
    fault.set(true).await;

    // Act + Assert: three failed commits answer 503 storage-unavailable and open the circuit.
    for i in 0..3 {
        let res = post(&app, "/events", &event("cb", &format!("fail{i}")), None).await;
        let (status, retry, code) = error_of(res).await;
        assert_eq!((status, code.as_str()), (503, "storage-unavailable"));
        assert!(retry.is_some(), "503 carries Retry-After");
    }
    assert_eq!(health_events(&app).await["circuit"], "open");
    fault.set(false).await;
    let (status, retry, code) =
        error_of(post(&app, "/events", &event("cb", "refused"), None).await).await;
    assert_eq!(
        (status, code.as_str()),
        (503, "circuit-open"),
        "open refuses without trying"
    );
    let retry: u64 = retry.expect("Retry-After").parse().expect("seconds");
    assert!((1..=30).contains(&retry), "Retry-After {retry}");

    // After the rest period the next requests are probes; two good ones close the circuit.
    app.state.clock.advance(chrono::Duration::seconds(31));
    assert_eq!(
        post(&app, "/events", &event("cb", "probe1"), None)
            .await
            .status()
            .as_u16(),
        202
    );
    assert_eq!(health_events(&app).await["circuit"], "half-open");
    assert_eq!(
        post(&app, "/events", &event("cb", "probe2"), None)
            .await
            .status()
            .as_u16(),
        202
    );
    assert_eq!(health_events(&app).await["circuit"], "closed");

    // A failed probe opens it again at once.
    fault.set(true).await;
    for i in 0..3 {
        post(&app, "/events", &event("cb", &format!("again{i}")), None).await;
    }
    app.state.clock.advance(chrono::Duration::seconds(31));
    let (status, _, code) =
        error_of(post(&app, "/events", &event("cb", "bad probe"), None).await).await;
    assert_eq!((status, code.as_str()), (503, "storage-unavailable"));
    assert_eq!(health_events(&app).await["circuit"], "open");
    fault.set(false).await;

    // Only the accepted events were stored, and the metrics show the states.
    let stored = list(&app, "service=cb&count=true").await;
    assert_eq!(stored["total"], 2);
    let metrics = app
        .client
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("pregonero_events_circuit_state 2"),
        "{metrics}"
    );
    assert!(metrics.contains(r#"pregonero_events_rejected_total{reason="circuit-open"}"#));
}

async fn buffered_mode_answers_first_and_keeps_events_through_an_outage(backend: Backend) {
    // Arrange
    let app = spawn_app_with(backend, |s| {
        s.events.durability = pregonero::config::Durability::Buffered;
    })
    .await;
    let fault = StorageFault::install(&app).await;
    fault.set(true).await;

    // Act: events accepted while every commit fails.
    for i in 0..3 {
        let res = post(&app, "/events", &event("buf", &format!("e{i}")), None).await;
        assert_eq!(
            res.status().as_u16(),
            202,
            "buffered mode answers before the commit"
        );
    }
    let held = health_events(&app).await;
    assert_eq!(held["durability"], "buffered");
    assert_eq!(held["buffer"]["size"], 3, "held in the buffer: {held}");
    fault.set(false).await;

    // Assert: the writer keeps retrying and stores all three once the database takes them.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let stored = list(&app, "service=buf&count=true").await;
        if stored["total"] == 3 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "buffered events were not written: {stored}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(health_events(&app).await["buffer"]["size"], 0);
}

async fn buffered_events_are_committed_on_shutdown(backend: Backend) {
    // Arrange
    let mut app = spawn_app_with(backend, |s| {
        s.events.durability = pregonero::config::Durability::Buffered;
    })
    .await;
    let batch: Vec<Value> = (0..200).map(|i| event("stop", &format!("s{i}"))).collect();
    let batch = json!(batch);
    let requests = (0..10).map(|_| post(&app, "/events", &batch, None));
    for res in futures::future::join_all(requests).await {
        assert_eq!(res.status().as_u16(), 202);
    }

    // Act: a clean stop right after the answers.
    app.stop_server().await;
    app.start_server().await;

    // Assert
    let stored = list(&app, "service=stop&count=true").await;
    assert_eq!(stored["total"], 2_000);
}

/// PostgreSQL behind a proxy that is cut: 503 at once (not after the pool's acquire timeout),
/// the breaker opens, and ingestion comes back when the database does.
#[actix_web::test]
async fn database_down_answers_503_and_recovers_postgres() {
    let Some(Backend::Postgres(url)) = Backend::postgres().await else {
        return;
    };
    if !url.contains("127.0.0.1:5432") {
        println!("skipped: TEST_POSTGRES_URL is not on 127.0.0.1:5432");
        return;
    }
    let proxy = TcpProxy::start("127.0.0.1:5432".into()).await;
    let through = url.replace("127.0.0.1:5432", &format!("127.0.0.1:{}", proxy.port));
    let app = spawn_app_with(Backend::Postgres(through), |s| {
        s.events.breaker_failures = 2;
    })
    .await;
    assert_eq!(
        post(&app, "/events", &event("down", "before"), None)
            .await
            .status()
            .as_u16(),
        202
    );

    // Act: the database goes away.
    proxy.cut();
    let started = std::time::Instant::now();
    let mut codes = Vec::new();
    for i in 0..3 {
        let (status, retry, code) =
            error_of(post(&app, "/events", &event("down", &format!("lost{i}")), None).await).await;
        assert_eq!(status, 503);
        assert!(retry.is_some());
        codes.push(code);
    }

    // Assert: failures, then the open circuit; each answer within the 2 s connection bound.
    assert_eq!(
        codes,
        ["storage-unavailable", "storage-unavailable", "circuit-open"]
    );
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "took {:?}",
        started.elapsed()
    );
    proxy.restore();
    app.state.clock.advance(chrono::Duration::seconds(31));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let res = post(&app, "/events", &event("down", "after"), None).await;
        if res.status().as_u16() == 202 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "ingestion did not recover"
        );
        app.state.clock.advance(chrono::Duration::seconds(31));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let stored = list(&app, "service=down&count=true").await;
    assert!(stored["total"].as_u64() >= Some(2), "{stored}");
}

crate::on_both_databases!(
    the_circuit_breaker_opens_on_failing_commits_and_closes_after_probes,
    buffered_mode_answers_first_and_keeps_events_through_an_outage,
    buffered_events_are_committed_on_shutdown,
);

crate::on_both_databases!(
    events_need_a_key_with_the_events_scopes,
    events_are_their_owners,
    the_seeds_open_routes_need_an_explicit_owner,
    events_stored_before_owners_go_to_the_first_admin,
    invalid_events_get_field_errors_and_store_nothing,
    accepted_events_are_committed_and_queryable,
    cursor_pages_are_stable_under_concurrent_inserts,
    a_full_buffer_answers_429_and_recovers,
    a_body_over_the_limit_answers_413_and_stores_nothing,
    retention_deletes_old_events_on_schedule,
);
