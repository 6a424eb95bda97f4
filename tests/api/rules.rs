//! Alert rules: matching events become alerts in the fake Telegram chat, within each rule's rate;
//! validation, and one owner cannot see or use another's rules.
use std::time::Duration;

use chrono::Utc;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, spawn_app};

async fn ingest(app: &TestApp, events: Value) {
    ingest_as(app, &app.api_key, events).await;
}

async fn ingest_as(app: &TestApp, key: &str, events: Value) {
    let res = app
        .client
        .post(format!("{}/events", app.address))
        .bearer_auth(key)
        .json(&events)
        .send()
        .await
        .expect("request");
    assert_eq!(res.status().as_u16(), 202);
}

fn event(service: &str, level: &str, message: &str) -> Value {
    json!({"timestamp": Utc::now().to_rfc3339(), "service": service, "message": message,
           "metadata": {"level": level, "order": {"region": "eu"}}})
}

fn texts_to(app: &TestApp, chat: i64) -> Vec<String> {
    app.telegram
        .sent()
        .into_iter()
        .filter(|m| m.chat_id == chat)
        .filter_map(|m| m.text)
        .collect()
}

async fn matching_events_become_alerts_within_the_rules_rate(backend: Backend) {
    // Arrange: a linked integration in chat 77 and a chat 78 the bot can write to.
    let app = spawn_app(backend).await;
    let channel = app.create_bot(None).await;
    let integration = app.linked_integration(&channel, 77).await;
    app.telegram.add_chat(78);
    let res = app
        .post(
            "alert-rules",
            &json!({"name": "payments critical", "service": "payments",
                    "match": {"level": "critical", "order.region": "eu"},
                    "integration_id": integration.id, "max_per_minute": 2}),
        )
        .await;
    assert_eq!(res.status().as_u16(), 201);
    let rule: Value = res.json().await.expect("json");
    let res = app
        .post(
            "alert-rules",
            &json!({"name": "deploys", "service": "deploys", "channel_id": channel, "chat_id": 78}),
        )
        .await;
    assert_eq!(res.status().as_u16(), 201);

    let (_, bob_key) = app.user_with_key("bob", "operator").await;

    // Act: another owner's deploy (a rule sees its owner's events only), then three critical
    // payments (one over the rate), an info one, a critical from billing, and a deploy.
    ingest_as(&app, &bob_key, event("deploys", "info", "bob's v9 is live")).await;
    ingest(
        &app,
        json!([
            event("payments", "critical", "card declined 1"),
            event("payments", "info", "card ok"),
            event("billing", "critical", "invoice failed"),
            event("payments", "critical", "card declined 2"),
        ]),
    )
    .await;
    ingest(&app, event("payments", "critical", "card declined 3")).await;
    ingest(&app, event("deploys", "info", "v1.2 is live")).await;

    // Assert: the rule fired twice and suppressed the third match (so no third alert can come).
    let id = rule["id"].as_str().expect("id");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (code, body) = app.get_json(&format!("alert-rules/{id}")).await;
        assert_eq!(code, 200);
        if body["fired_count"] == 2 && body["suppressed_count"] == 1 {
            assert!(body["last_fired_at"].is_string());
            break;
        }
        assert!(std::time::Instant::now() < deadline, "counts: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Two alerts reach chat 77 (paced at 1 msg/s per chat), the deploy reaches chat 78.
    app.wait_for_text(78, "v1.2 is live").await;
    let alerts_in_77 = || {
        texts_to(&app, 77)
            .into_iter()
            .filter(|t| t.contains("[payments]") || t.contains("[billing]"))
            .collect::<Vec<String>>()
    };
    let both = app
        .telegram
        .wait_until(Duration::from_secs(30), |_| alerts_in_77().len() >= 2)
        .await;
    let alerts = alerts_in_77();
    assert!(both, "{alerts:#?}");
    assert_eq!(alerts.len(), 2, "{alerts:#?}");
    assert!(
        alerts
            .iter()
            .all(|t| t.starts_with("🔔 payments critical\n[payments] card declined"))
    );
    assert_eq!(texts_to(&app, 78), ["🔔 deploys\n[deploys] v1.2 is live"]);
    // The alerts took from the integration's daily quota like any alert.
    let (_, i) = app
        .get_json(&format!("integrations/{}", integration.id))
        .await;
    assert_eq!(
        i["remaining_today"],
        i["daily_quota"].as_i64().expect("quota") - 2
    );
}

async fn rules_are_validated_and_private_to_their_owner(backend: Backend) {
    // Arrange
    let app = spawn_app(backend).await;
    let channel = app.create_bot(None).await;
    let integration = app.create_integration(&channel, "mine").await;
    let (_, bob_key) = app.user_with_key("bob", "operator").await;

    // Act + Assert: bad bodies get field errors.
    for (body, field, code) in [
        (
            json!({"name": "x", "integration_id": integration.id}),
            "match",
            "required",
        ),
        (
            json!({"service": "s", "integration_id": integration.id}),
            "name",
            "required",
        ),
        (
            json!({"name": "x", "service": "s"}),
            "integration_id",
            "required",
        ),
        (
            json!({"name": "x", "service": "s", "integration_id": integration.id, "channel_id": channel, "chat_id": 1}),
            "integration_id",
            "invalid-target",
        ),
        (
            json!({"name": "x", "service": "s", "integration_id": integration.id, "max_per_minute": 0}),
            "max_per_minute",
            "out-of-range",
        ),
        (
            json!({"name": "x", "match": {"a..b": 1}, "integration_id": integration.id}),
            "match",
            "invalid-path",
        ),
    ] {
        let res = app.post("alert-rules", &body).await;
        assert_eq!(res.status().as_u16(), 400, "{body}");
        let err: Value = res.json().await.expect("json");
        assert_eq!(err["error"], "validation-failed", "{err}");
        let found = err["errors"]
            .as_array()
            .expect("errors")
            .iter()
            .any(|e| e["field"] == field && e["code"] == code);
        assert!(found, "{body} → {err}");
    }
    let res = app
        .post(
            "alert-rules",
            &json!({"name": "mine", "service": "s", "integration_id": integration.id}),
        )
        .await;
    assert_eq!(res.status().as_u16(), 201);
    let rule: Value = res.json().await.expect("json");
    let id = rule["id"].as_str().expect("id");
    assert_eq!(rule["max_per_minute"], 6, "default rate");

    // Bob sees none of it and cannot aim a rule at Alice's integration.
    let as_bob = |method: reqwest::Method, path: String, body: Option<Value>| {
        let mut req = app
            .client
            .request(method, format!("{}/api/v1/{path}", app.address))
            .bearer_auth(&bob_key);
        if let Some(body) = body {
            req = req.json(&body);
        }
        async move { req.send().await.expect("request").status().as_u16() }
    };
    use reqwest::Method;
    assert_eq!(
        as_bob(Method::GET, format!("alert-rules/{id}"), None).await,
        404
    );
    assert_eq!(
        as_bob(
            Method::PATCH,
            format!("alert-rules/{id}"),
            Some(json!({"enabled": false}))
        )
        .await,
        404
    );
    assert_eq!(
        as_bob(Method::DELETE, format!("alert-rules/{id}"), None).await,
        404
    );
    assert_eq!(
        as_bob(
            Method::POST,
            "alert-rules".into(),
            Some(json!({"name": "steal", "service": "s", "integration_id": integration.id}))
        )
        .await,
        404
    );
    let res = app
        .client
        .get(format!("{}/api/v1/alert-rules", app.address))
        .bearer_auth(&bob_key)
        .send()
        .await
        .expect("request");
    assert_eq!(
        res.json::<Value>().await.expect("json"),
        json!({"items": [], "next_cursor": null})
    );

    // The owner can change and delete it.
    let res = app
        .client
        .patch(format!("{}/api/v1/alert-rules/{id}", app.address))
        .bearer_auth(&app.api_key)
        .json(&json!({"enabled": false, "service": null, "match": {"level": "critical"}}))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status().as_u16(), 200);
    let changed: Value = res.json().await.expect("json");
    assert_eq!(changed["enabled"], false);
    assert_eq!(changed["service"], Value::Null);
    assert_eq!(changed["match"], json!({"level": "critical"}));
    let res = app
        .client
        .delete(format!("{}/api/v1/alert-rules/{id}", app.address))
        .bearer_auth(&app.api_key)
        .send()
        .await
        .expect("request");
    assert_eq!(res.status().as_u16(), 204);
    let (code, _) = app.get_json(&format!("alert-rules/{id}")).await;
    assert_eq!(code, 404);
}

crate::on_both_databases!(
    matching_events_become_alerts_within_the_rules_rate,
    rules_are_validated_and_private_to_their_owner,
);
