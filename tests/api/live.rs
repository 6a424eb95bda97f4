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
