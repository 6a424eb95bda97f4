//! `Idempotency-Key` on every creating `POST`: a retry gets the first answer and creates
//! nothing; another body or path under the same key is refused; keys are their owner's; a
//! refused request frees its key.
use reqwest::{Method, RequestBuilder};
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, spawn_app, status_and_json};

fn post_keyed(app: &TestApp, token: &str, path: &str, key: &str) -> RequestBuilder {
    app.client
        .post(format!("{}/api/v1/{path}", app.address))
        .bearer_auth(token)
        .header("Idempotency-Key", key)
}

/// Status, `Idempotent-Replayed` and JSON.
async fn send(req: RequestBuilder) -> (u16, bool, Value) {
    let res = req.send().await.expect("request");
    let status = res.status().as_u16();
    let replayed = res.headers().get("idempotent-replayed").is_some();
    (status, replayed, res.json().await.unwrap_or(Value::Null))
}

async fn a_retried_create_gets_the_first_answer_and_creates_nothing(backend: Backend) {
    // Arrange
    let app = spawn_app(backend).await;
    let key = app.api_key.clone();
    let template = json!({"name": "bienvenida", "body": "Hola {{ nombre }}"});

    // Act: the same create three times under one key.
    let (first, first_replayed, created) =
        send(post_keyed(&app, &key, "templates", "tpl-1").json(&template)).await;
    let (again, again_replayed, replay) =
        send(post_keyed(&app, &key, "templates", "tpl-1").json(&template)).await;
    let (_, _, third) = send(post_keyed(&app, &key, "templates", "tpl-1").json(&template)).await;

    // Assert: one template; the retries got the first answer, marked as replayed.
    assert_eq!(first, 201, "{created}");
    assert!(!first_replayed);
    assert_eq!((again, again_replayed), (201, true));
    assert_eq!(replay, created);
    assert_eq!(third["id"], created["id"]);
    let (_, list) = app.api(Method::GET, "templates", None).await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1), "{list}");

    // The same key with another body, or on another route, is refused and creates nothing.
    let (status, _, body) = send(
        post_keyed(&app, &key, "templates", "tpl-1")
            .json(&json!({"name": "otra", "body": "Adiós"})),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("idempotency-key-reused"))
    );
    let (status, _, body) =
        send(post_keyed(&app, &key, "api-keys", "tpl-1").json(&json!({"name": "ci"}))).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("idempotency-key-reused"))
    );
    let (_, list) = app.api(Method::GET, "templates", None).await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1));

    // A refused request frees its key: fixed, the same key creates.
    let (status, _, _) = send(
        post_keyed(&app, &key, "templates", "tpl-2")
            .json(&json!({"name": "rota", "body": "Hola {{ nombre"})),
    )
    .await;
    assert!((400..500).contains(&status), "{status}");
    let (status, replayed, _) = send(
        post_keyed(&app, &key, "templates", "tpl-2")
            .json(&json!({"name": "arreglada", "body": "Hola {{ nombre }}"})),
    )
    .await;
    assert_eq!((status, replayed), (201, false));

    // A bad key is refused before anything runs.
    let (status, _, body) = send(post_keyed(&app, &key, "templates", "").json(&template)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid-idempotency-key"))
    );
}

async fn keys_are_their_owners_and_uploads_replay_by_key(backend: Backend) {
    // Arrange: a second owner.
    let app = spawn_app(backend).await;
    let (_, bob_key) = app.user_with_key("bob", "operator").await;
    let body = json!({"name": "ci"});

    // Act: both create an API key under the same Idempotency-Key.
    let (_, _, mine) = send(post_keyed(&app, &app.api_key, "api-keys", "same").json(&body)).await;
    let (status, replayed, bobs) =
        send(post_keyed(&app, &bob_key, "api-keys", "same").json(&body)).await;

    // Assert: two keys; neither saw the other's answer.
    assert_eq!((status, replayed), (201, false), "{bobs}");
    assert_ne!(mine["id"], bobs["id"]);
    assert_ne!(mine["token"], bobs["token"]);

    // A multipart upload sent twice (a new boundary each time) is one file.
    let upload = || {
        let form = reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(b"%PDF-1.4 report".to_vec())
                .file_name("report.pdf")
                .mime_str("application/pdf")
                .expect("mime"),
        );
        post_keyed(&app, &app.api_key, "media", "upload-1").multipart(form)
    };
    let (status, _, first) = send(upload()).await;
    assert_eq!(status, 201, "{first}");
    let (status, replayed, again) = send(upload()).await;
    assert_eq!((status, replayed), (201, true));
    assert_eq!(again["id"], first["id"]);
    let (_, list) = status_and_json(
        app.client
            .get(format!("{}/api/v1/media", app.address))
            .bearer_auth(&app.api_key),
    )
    .await;
    assert_eq!(list.to_string().matches("report.pdf").count(), 1, "{list}");
}

crate::on_both_databases!(
    a_retried_create_gets_the_first_answer_and_creates_nothing,
    keys_are_their_owners_and_uploads_replay_by_key,
);
