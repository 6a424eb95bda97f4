//! `GET /api/v1/live`: a user's message statuses as server-sent events, their own only; across
//! replicas through Redis (`replicas::a_stream_on_one_replica_sees_sends_of_another`).
use std::time::Duration;

use serde_json::json;

use crate::helpers::{Backend, spawn_app};

/// Reads the stream until `needle` appears (its text so far), or gives up after `within`.
pub async fn read_until(
    mut res: reqwest::Response,
    needle: &str,
    within: Duration,
) -> (bool, String) {
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + within;
    while !text.contains(needle) {
        match tokio::time::timeout_at(deadline, res.chunk()).await {
            Ok(Ok(Some(chunk))) => text.push_str(&String::from_utf8_lossy(&chunk)),
            _ => return (false, text),
        }
    }
    (true, text)
}

/// Opens the caller's stream.
pub async fn open(client: &reqwest::Client, base: &str, key: &str) -> reqwest::Response {
    let res = client
        .get(format!("{base}/api/v1/live"))
        .bearer_auth(key)
        .send()
        .await
        .expect("stream");
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(
        crate::helpers::header(&res, "content-type"),
        "text/event-stream"
    );
    res
}

async fn a_stream_gets_its_owners_statuses_and_nobody_elses(backend: Backend) {
    // Arrange: the admin's stream and another user's.
    let app = spawn_app(backend).await;
    let (_, other) = app.user_with_key("bob", "operator").await;
    let mine = open(&app.client, &app.address, &app.api_key).await;
    let theirs = open(&app.client, &app.address, &other).await;
    let channel = app.create_bot(None).await;
    app.telegram.add_chat(4100);

    // Act
    let id = app.send_text(&channel, 4100, "live").await;

    // Assert: the admin sees the send; the other user sees nothing of it.
    let (seen, text) = read_until(
        mine,
        &format!("\"message_id\":\"{id}\""),
        Duration::from_secs(20),
    )
    .await;
    assert!(seen, "{text}");
    assert!(text.starts_with(": connected"), "{text}");
    let event = text
        .split("\n\n")
        .find(|e| e.contains(&id))
        .expect("the event");
    assert!(
        event.starts_with("event: message.status\ndata: "),
        "{event}"
    );
    let data: serde_json::Value =
        serde_json::from_str(event.split("data: ").nth(1).expect("data")).expect("json");
    assert_eq!(data["status"], "sent");
    assert_eq!(data["channel_id"], json!(channel));
    let (leaked, text) = read_until(theirs, &id, Duration::from_secs(2)).await;
    assert!(!leaked, "another user's stream got it: {text}");
}

crate::on_both_databases!(a_stream_gets_its_owners_statuses_and_nobody_elses);

async fn import_progress_and_ingested_events_reach_their_owner_only(backend: Backend) {
    // Arrange: two streams of the admin's (one per thing awaited) and another user's.
    let app = spawn_app(backend).await;
    let (_, other) = app.user_with_key("bob", "operator").await;
    let imports = open(&app.client, &app.address, &app.api_key).await;
    let events = open(&app.client, &app.address, &app.api_key).await;
    let theirs = open(&app.client, &app.address, &other).await;

    // Act: a contacts import, and a batch of events.
    let (status, import) = app
        .post_raw(
            "contacts/imports?filename=live.csv",
            "text/csv",
            b"telefono;nombre\n600000001;Ana\n12;Mal\n".to_vec(),
        )
        .await;
    assert_eq!(status, 202, "{import}");
    let id = import["id"].as_str().expect("id").to_owned();
    let res = app
        .client
        .post(format!("{}/events", app.address))
        .bearer_auth(&app.api_key)
        .json(&json!([
            {"timestamp": chrono::Utc::now(), "service": "billing", "message": "one"},
            {"timestamp": chrono::Utc::now(), "service": "billing", "message": "two"},
        ]))
        .send()
        .await
        .expect("events");
    assert!(res.status().is_success(), "{}", res.status());

    // Assert: the import's last announcement is its final count, as GET …/imports/{id} says.
    let (seen, text) =
        read_until(imports, "\"status\":\"completed\"", Duration::from_secs(20)).await;
    assert!(seen, "{text}");
    let last = text
        .split("\n\n")
        .filter(|e| e.starts_with("event: import.progress\ndata: "))
        .last()
        .expect("an import.progress event");
    let data: serde_json::Value =
        serde_json::from_str(last.split("data: ").nth(1).expect("data")).expect("json");
    assert_eq!(data["id"], json!(id));
    assert_eq!(
        (data["imported"].as_i64(), data["failed"].as_i64()),
        (Some(1), Some(1))
    );
    // The events' commit is announced with its count and services.
    let (seen, text) = read_until(
        events,
        "\"services\":[\"billing\"]",
        Duration::from_secs(20),
    )
    .await;
    assert!(seen, "{text}");
    let ingested = text
        .split("\n\n")
        .find(|e| e.starts_with("event: events.ingested\ndata: "))
        .expect("an events.ingested event");
    let data: serde_json::Value =
        serde_json::from_str(ingested.split("data: ").nth(1).expect("data")).expect("json");
    assert_eq!(data, json!({"count": 2, "services": ["billing"]}));
    let (leaked, text) = read_until(theirs, "data:", Duration::from_secs(2)).await;
    assert!(!leaked, "another user's stream got an event: {text}");
}

crate::on_both_databases!(import_progress_and_ingested_events_reach_their_owner_only);
