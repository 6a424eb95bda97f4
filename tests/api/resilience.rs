//! Provider failures: 429 storms, permanent errors, 5xx then success, exhaustion, actor crash.
use std::time::Duration;

use fakes::telegram::Limits;
use pregonero::channels::{Crash, Lookup};
use serde_json::json;

use crate::helpers::{Backend, spawn_app, spawn_app_with};

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

    // Act: the actor panics inside a handler.
    let crashed = actor.send(Crash).await;
    let id = app.send_text(&channel, 8, "after the crash").await;

    // Assert
    assert!(crashed.is_err(), "the crash request itself gets no answer");
    app.wait_for_status(&id, "sent", WAIT).await;
    assert_eq!(app.telegram.sent().len(), 1);
}

crate::on_both_databases!(
    a_429_storm_delays_messages_but_fails_none,
    a_permanent_error_fails_the_message_without_retrying,
    server_errors_are_retried_with_backoff_until_success,
    exhausted_retries_fail_with_the_last_error_visible,
    a_crashed_account_actor_is_restarted_and_keeps_delivering,
);
