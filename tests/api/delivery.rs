//! Happy paths: text, photo, idempotency, ownership.
use std::time::Duration;

use fakes::telegram::FileRef;
use serde_json::{Value, json};

use crate::helpers::{Backend, spawn_app};

const WAIT: Duration = Duration::from_secs(30);

async fn a_text_message_is_delivered_and_its_history_recorded(backend: Backend) {
    // Arrange
    let app = spawn_app(backend).await;
    let channel = app.create_bot(None).await;
    app.telegram.add_chat(4242);

    // Act
    let res = app
        .post(
            "messages",
            &json!({"channel_id": channel, "to": "4242", "text": "<b>Disk</b> almost full", "parse_mode": "HTML"}),
        )
        .await;

    // Assert
    assert_eq!(res.status().as_u16(), 202);
    let accepted: Value = res.json().await.expect("json");
    assert_eq!(accepted["status"], "queued");
    let id = accepted["id"].as_str().expect("id");
    let msg = app.wait_for_status(id, "sent", WAIT).await;
    assert_eq!(msg["attempt_count"], 1);
    assert_eq!(msg["attempts"][0]["outcome"], "sent");
    let sent = app.telegram.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].chat_id, 4242);
    assert_eq!(sent[0].text.as_deref(), Some("<b>Disk</b> almost full"));
    assert_eq!(sent[0].parse_mode.as_deref(), Some("HTML"));
    assert_eq!(msg["provider_message_id"], sent[0].message_id.to_string());
    let kinds: Vec<_> = msg["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["kind"].clone())
        .collect();
    assert_eq!(kinds, vec![json!("queued"), json!("attempt")]);
}

async fn a_photo_is_uploaded_with_its_caption(backend: Backend) {
    // Arrange
    let app = spawn_app(backend).await;
    let channel = app.create_bot(None).await;
    app.telegram.add_chat(77);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend((0..300_000u32).map(|i| (i % 251) as u8));
    let upload = app
        .client
        .post(format!("{}/api/v1/media?filename=chart.png", app.address))
        .bearer_auth(&app.api_key)
        .header("content-type", "image/png")
        .body(png.clone())
        .send()
        .await
        .expect("upload");
    assert_eq!(upload.status().as_u16(), 201);
    let media: Value = upload.json().await.expect("json");
    assert_eq!(media["size"], png.len());

    // Act
    let res = app
        .post("messages", &json!({"channel_id": channel, "to": "77", "text": "BTC chart", "media_id": media["id"]}))
        .await;

    // Assert
    assert_eq!(res.status().as_u16(), 202);
    let id = res.json::<Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    app.wait_for_status(&id, "sent", WAIT).await;
    let sent = app.telegram.sent();
    assert_eq!(sent[0].method, "sendPhoto");
    assert_eq!(sent[0].caption.as_deref(), Some("BTC chart"));
    match &sent[0].file {
        Some(FileRef::Upload { bytes, filename }) => {
            assert_eq!(*bytes, png.len());
            assert_eq!(filename.as_deref(), Some("chart.png"));
        }
        other => panic!("expected an upload, got {other:?}"),
    }
}

async fn resubmitting_with_the_same_idempotency_key_returns_the_same_message(backend: Backend) {
    // Arrange
    let app = spawn_app(backend).await;
    let channel = app.create_bot(None).await;
    app.telegram.add_chat(5);
    let body = json!({"channel_id": channel, "to": "5", "text": "once"});
    let post = |body: Value| {
        let app = &app;
        async move {
            app.client
                .post(format!("{}/api/v1/messages", app.address))
                .bearer_auth(&app.api_key)
                .header("Idempotency-Key", "order-1234")
                .json(&body)
                .send()
                .await
                .expect("request")
        }
    };

    // Act
    let first: Value = post(body.clone()).await.json().await.expect("json");
    let again = post(body.clone()).await;
    let replayed = again.headers().get("idempotent-replayed").cloned();
    let second: Value = again.json().await.expect("json");
    let conflicting = post(json!({"channel_id": channel, "to": "5", "text": "twice"})).await;

    // Assert
    assert_eq!(first["id"], second["id"]);
    assert!(replayed.is_some());
    assert_eq!(conflicting.status().as_u16(), 409);
    let err: Value = conflicting.json().await.expect("json");
    assert_eq!(err["error"], "idempotency-key-reused");
    app.wait_for_status(first["id"].as_str().expect("id"), "sent", WAIT)
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.telegram.sent().len(), 1);
}

async fn another_owner_cannot_see_or_use_my_resources(backend: Backend) {
    // Arrange
    let app = spawn_app(backend).await;
    let channel = app.create_bot(None).await;
    app.telegram.add_chat(9);
    let id = app.send_text(&channel, 9, "private").await;
    let (_, bob_key) = app.user_with_key("bob", "operator").await;
    let as_bob = |path: String| {
        let req = app
            .client
            .get(format!("{}/api/v1/{path}", app.address))
            .bearer_auth(&bob_key);
        async move { req.send().await.expect("request") }
    };

    // Act
    let message = as_bob(format!("messages/{id}")).await;
    let chan = as_bob(format!("channels/{channel}")).await;
    let list: Value = as_bob("channels".into()).await.json().await.expect("json");
    let send = app
        .client
        .post(format!("{}/api/v1/messages", app.address))
        .bearer_auth(&bob_key)
        .json(&json!({"channel_id": channel, "to": "9", "text": "hijack"}))
        .send()
        .await
        .expect("request");

    // Assert
    assert_eq!(message.status().as_u16(), 404);
    assert_eq!(chan.status().as_u16(), 404);
    assert_eq!(list["items"].as_array().map(Vec::len), Some(0));
    assert_eq!(send.status().as_u16(), 404);
}

async fn a_viewer_can_read_but_not_change_anything(backend: Backend) {
    // Arrange
    let app = spawn_app(backend).await;
    let channel = app.create_bot(None).await;
    let (_, key) = app.user_with_key("vera", "viewer").await;
    let call = |method: reqwest::Method, path: &str, body: Option<Value>| {
        let mut req = app
            .client
            .request(method, format!("{}/api/v1/{path}", app.address))
            .bearer_auth(&key);
        if let Some(body) = body {
            req = req.json(&body);
        }
        async move { req.send().await.expect("request") }
    };

    // Act
    let read = call(reqwest::Method::GET, "channels", None).await;
    let writes = [
        call(
            reqwest::Method::POST,
            "messages",
            Some(json!({"channel_id": channel, "to": "9", "text": "hi"})),
        )
        .await,
        call(
            reqwest::Method::POST,
            "alert-rules",
            Some(json!({"name": "x", "service": "s", "channel_id": channel, "chat_id": 9})),
        )
        .await,
        call(
            reqwest::Method::DELETE,
            &format!("channels/{channel}"),
            None,
        )
        .await,
    ];

    // Assert
    assert_eq!(read.status().as_u16(), 200);
    for res in writes {
        assert_eq!(res.status().as_u16(), 403);
        let body: Value = res.json().await.expect("json");
        assert_eq!(body["error"], "read-only-role");
    }
    let (_, channels) = app.get_json("channels").await;
    assert_eq!(
        channels["items"].as_array().map(Vec::len),
        Some(1),
        "nothing changed"
    );
}

/// One statement claims a batch (`outbox::claims`): of five queued messages, the three asked
/// for that are due; not the one due later, not one asked twice, not one already taken; the
/// claimed ones are `sending` under this node's lease, returned as they were before.
async fn a_batch_claim_takes_only_the_due_queued_messages_asked_for(backend: Backend) {
    use pregonero::{domain::MessageId, entities::messages, outbox::repo};
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
    let app = crate::helpers::spawn_app_options(
        backend,
        fakes::telegram::FakeTelegramConfig::default(),
        |_| {},
        pregonero::startup::RunOptions {
            workers: false,
            ..Default::default()
        },
    )
    .await;
    let channel = app.create_bot(None).await;
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(MessageId::from(
            app.send_text(&channel, 100 + n, &format!("m{n}"))
                .await
                .as_str(),
        ));
    }
    let db = &app.state.db;
    messages::Entity::update_many()
        .col_expr(
            messages::Column::NextAttemptAt,
            Expr::value(chrono::Utc::now() + chrono::Duration::hours(1)),
        )
        .filter(messages::Column::Id.eq(ids[3].clone()))
        .exec(db)
        .await
        .expect("not due yet");
    let now = chrono::Utc::now();
    let lease = now + chrono::Duration::seconds(30);
    let first = repo::claim_due_many(db, &ids[4..5], "node-x", now, lease, &[])
        .await
        .expect("claim");
    assert_eq!(first.len(), 1);

    // Six ids asked (padded to eight), one twice: ids 0, 1, 2 are due and queued.
    let asked = [&ids[0], &ids[1], &ids[3], &ids[4], &ids[2], &ids[1]].map(|id| (*id).clone());
    let claimed = repo::claim_due_many(db, &asked, "node-y", now, lease, &[])
        .await
        .expect("claim");
    let mut got: Vec<_> = claimed
        .iter()
        .map(|(m, veto)| (m.id.clone(), *veto))
        .collect();
    got.sort();
    let mut want: Vec<_> = ids[..3].iter().map(|id| (id.clone(), None)).collect();
    want.sort();
    assert_eq!(got, want);
    for (msg, _) in &claimed {
        assert_eq!(
            (msg.status.as_str(), msg.attempts),
            ("queued", 0),
            "as it was"
        );
        let row = repo::find(db, &msg.id).await.expect("read").expect("row");
        assert_eq!(
            (row.status.as_str(), row.attempts, row.locked_by.as_deref()),
            ("sending", 1, Some("node-y"))
        );
    }
    let taken = repo::find(db, &ids[4]).await.expect("read").expect("row");
    assert_eq!(
        taken.locked_by.as_deref(),
        Some("node-x"),
        "not taken twice"
    );
    let waiting = repo::find(db, &ids[3]).await.expect("read").expect("row");
    assert_eq!((waiting.status.as_str(), waiting.attempts), ("queued", 0));
}

crate::on_both_databases!(
    a_batch_claim_takes_only_the_due_queued_messages_asked_for,
    a_viewer_can_read_but_not_change_anything,
    a_text_message_is_delivered_and_its_history_recorded,
    a_photo_is_uploaded_with_its_caption,
    resubmitting_with_the_same_idempotency_key_returns_the_same_message,
    another_owner_cannot_see_or_use_my_resources,
);
