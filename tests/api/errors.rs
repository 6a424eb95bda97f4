//! Bad input gets a clear 4xx with a stable code, and changes nothing.
use serde_json::{Value, json};

use crate::helpers::{BOT_TOKEN, Backend, header, spawn_app};

async fn error_code(res: reqwest::Response) -> (u16, String) {
    let status = res.status().as_u16();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    (
        status,
        body["error"]
            .as_str()
            .unwrap_or("<no error code>")
            .to_owned(),
    )
}

async fn bad_requests_get_stable_error_codes(backend: Backend) {
    // Arrange
    let app = spawn_app(backend).await;
    let channel = app.create_bot(None).await;
    let url = format!("{}/api/v1/messages", app.address);
    let long = "x".repeat(4097);
    let cases: Vec<(&str, reqwest::RequestBuilder, u16, &str)> = vec![
        (
            "no auth",
            app.client.post(&url).json(&json!({})),
            401,
            "missing-credentials",
        ),
        (
            "wrong key",
            app.client
                .post(&url)
                .bearer_auth("prg_nope")
                .json(&json!({})),
            401,
            "invalid-credentials",
        ),
        (
            "malformed JSON",
            app.client
                .post(&url)
                .bearer_auth(&app.api_key)
                .header("content-type", "application/json")
                .body("{\"to\": "),
            400,
            "invalid-json",
        ),
        (
            "not JSON",
            app.client
                .post(&url)
                .bearer_auth(&app.api_key)
                .header("content-type", "text/plain")
                .body("hi"),
            400,
            "unsupported-media-type",
        ),
        (
            "unknown field",
            app.client
                .post(&url)
                .bearer_auth(&app.api_key)
                .json(&json!({"channel_id": channel, "to": "1", "text": "x", "colour": "red"})),
            422,
            "invalid-body",
        ),
        (
            "unknown channel",
            app.client
                .post(&url)
                .bearer_auth(&app.api_key)
                .json(&json!({"channel_id": "nope", "to": "1", "text": "x"})),
            404,
            "channel-not-found",
        ),
        (
            "bad recipient",
            app.client
                .post(&url)
                .bearer_auth(&app.api_key)
                .json(&json!({"channel_id": channel, "to": "bob", "text": "x"})),
            422,
            "invalid-recipient",
        ),
        (
            "empty text",
            app.client
                .post(&url)
                .bearer_auth(&app.api_key)
                .json(&json!({"channel_id": channel, "to": "1", "text": " "})),
            422,
            "text-empty",
        ),
        (
            "text too long",
            app.client
                .post(&url)
                .bearer_auth(&app.api_key)
                .json(&json!({"channel_id": channel, "to": "1", "text": long})),
            422,
            "text-too-long",
        ),
        (
            "bad parse mode",
            app.client.post(&url).bearer_auth(&app.api_key).json(
                &json!({"channel_id": channel, "to": "1", "text": "x", "parse_mode": "BBCode"}),
            ),
            422,
            "invalid-parse-mode",
        ),
        (
            "unknown media",
            app.client
                .post(&url)
                .bearer_auth(&app.api_key)
                .json(&json!({"channel_id": channel, "to": "1", "text": "x", "media_id": "nope"})),
            404,
            "media-not-found",
        ),
        (
            "unknown message",
            app.client
                .get(format!("{url}/0190-nope"))
                .bearer_auth(&app.api_key),
            404,
            "message-not-found",
        ),
        (
            "unknown route",
            app.client
                .get(format!("{}/api/v1/nothing", app.address))
                .bearer_auth(&app.api_key),
            404,
            "route-not-found",
        ),
    ];

    // Act + Assert
    for (what, req, status, code) in cases {
        let got = error_code(req.send().await.expect("request")).await;
        assert_eq!(got, (status, code.to_owned()), "{what}");
    }
    let (_, page) = app.get_json("channels").await;
    assert_eq!(
        page["items"].as_array().map(Vec::len),
        Some(1),
        "bad requests changed nothing"
    );
    assert!(app.telegram.requests() == 0, "nothing was sent");
}

async fn registering_a_bot_checks_its_token(backend: Backend) {
    // Arrange
    let app = spawn_app(backend).await;
    let post = |body: Value| {
        let app = &app;
        async move { app.post("channels", &body).await }
    };

    // Act
    let malformed =
        error_code(post(json!({"kind": "telegram", "name": "b", "bot_token": "hello"})).await)
            .await;
    let rejected =
        error_code(post(json!({"kind": "telegram", "name": "b", "bot_token": BOT_TOKEN})).await)
            .await;
    let kind =
        error_code(post(json!({"kind": "pigeon", "name": "b", "bot_token": BOT_TOKEN})).await)
            .await;
    app.telegram.add_bot(BOT_TOKEN, "good_bot");
    let created = post(json!({"kind": "telegram", "name": "b", "bot_token": BOT_TOKEN})).await;

    // Assert
    assert_eq!(malformed, (422, "invalid-bot-token".into()));
    assert_eq!(rejected, (422, "bot-token-rejected".into()));
    assert_eq!(kind, (422, "unsupported-channel-kind".into()));
    assert_eq!(created.status().as_u16(), 201);
    let text = created.text().await.expect("body");
    assert!(!text.contains(BOT_TOKEN), "the token is never returned");
    let body: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(body["username"], "good_bot");
    let stored = pregonero::channels::repo::all(&app.state.db)
        .await
        .expect("rows");
    assert!(
        !stored[0].credentials.contains(BOT_TOKEN),
        "the token is stored encrypted"
    );
    assert_eq!(
        app.state
            .cipher
            .decrypt(&stored[0].credentials)
            .expect("decrypt"),
        BOT_TOKEN
    );
}

crate::on_both_databases!(
    bad_requests_get_stable_error_codes,
    registering_a_bot_checks_its_token
);

/// One error code, one status: across the server's source, every `ApiError::<Variant>("code", …)`
/// gives a code one variant, and each variant is one status. (Codes that reach `ApiError`
/// through a feature's own error type are checked by the route tests.)
#[test]
fn every_error_code_has_one_status() {
    let mut variants: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        Default::default();
    for (_, text) in crate::openapi::rust_sources() {
        for (at, _) in text.match_indices("ApiError::") {
            let rest = &text[at + "ApiError::".len()..];
            let variant: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect();
            let Some(args) = rest[variant.len()..].strip_prefix('(') else {
                continue;
            };
            let Some(code) = args.trim_start().strip_prefix('"') else {
                continue;
            };
            let code: String = code.chars().take_while(|c| *c != '"').collect();
            variants.entry(code).or_default().insert(variant);
        }
    }
    assert!(
        variants.len() > 50,
        "the scan found the codes: {variants:?}"
    );
    let split: Vec<_> = variants.iter().filter(|(_, v)| v.len() > 1).collect();
    assert!(
        split.is_empty(),
        "codes answered with more than one status: {split:?}"
    );
}

/// Every error is RFC 9457 problem details, its `instance` the request's id.
#[actix_web::test]
async fn errors_are_problem_details() {
    // Arrange
    let app = spawn_app(Backend::Sqlite).await;

    // Act
    let res = app
        .client
        .get(format!("{}/api/v1/channels/nope", app.address))
        .bearer_auth(&app.api_key)
        .send()
        .await
        .expect("request");

    // Assert
    assert_eq!(res.status().as_u16(), 404);
    assert_eq!(header(&res, "content-type"), "application/problem+json");
    let request_id = header(&res, "x-request-id");
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["type"], "urn:pregonero:problem:channel-not-found");
    assert_eq!(body["title"], "Not Found");
    assert_eq!(body["status"], 404);
    assert_eq!(body["error"], "channel-not-found");
    assert_eq!(body["detail"], body["message"]);
    assert_eq!(body["instance"], format!("urn:uuid:{request_id}"));
}
