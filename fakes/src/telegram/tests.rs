//! Exercises the fake over real HTTP.

use std::time::Duration;

use serde_json::{Value, json};

use super::{FakeTelegram, FakeTelegramConfig, FileRef, Limits};

const TOKEN: &str = "123456:TEST-token_abc";
const PRIVATE_CHAT: i64 = 42;

async fn fake_with_bot() -> FakeTelegram {
    let fake = FakeTelegram::start().await.expect("start fake");
    fake.add_bot(TOKEN, "fakebot");
    fake
}

fn url(fake: &FakeTelegram, token: &str, method: &str) -> String {
    format!("{}/bot{token}/{method}", fake.base_url())
}

async fn answer(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let body = response.json::<Value>().await.expect("JSON body");
    (status, body)
}

async fn post_json(fake: &FakeTelegram, method: &str, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(url(fake, TOKEN, method))
        .json(&body)
        .send()
        .await
        .expect("request");
    answer(response).await
}

async fn send_text(fake: &FakeTelegram, chat_id: i64, text: &str) -> (u16, Value) {
    post_json(
        fake,
        "sendMessage",
        json!({ "chat_id": chat_id, "text": text }),
    )
    .await
}

#[actix_web::test]
async fn get_me_and_bad_token() {
    let fake = fake_with_bot().await;

    let response = reqwest::get(url(&fake, "999:WRONG", "getMe"))
        .await
        .expect("request");
    let (status, body) = answer(response).await;
    assert_eq!(status, 401);
    assert_eq!(
        body,
        json!({ "ok": false, "error_code": 401, "description": "Unauthorized" })
    );

    let response = reqwest::get(url(&fake, TOKEN, "getMe"))
        .await
        .expect("request");
    let (status, body) = answer(response).await;
    assert_eq!(status, 200);
    assert_eq!(body["ok"], json!(true));
    assert_eq!(body["result"]["is_bot"], json!(true));
    assert_eq!(body["result"]["username"], json!("fakebot"));

    let response = reqwest::get(url(&fake, TOKEN, "noSuchMethod"))
        .await
        .expect("request");
    let (status, body) = answer(response).await;
    assert_eq!(status, 404);
    assert_eq!(body["description"], json!("Not Found"));
    fake.stop().await;
}

#[actix_web::test]
async fn unknown_chat_and_validation() {
    let fake = fake_with_bot().await;

    let (status, body) = send_text(&fake, 777, "hello").await;
    assert_eq!(status, 400);
    assert_eq!(body["error_code"], json!(400));
    assert_eq!(body["description"], json!("Bad Request: chat not found"));

    fake.add_chat(PRIVATE_CHAT);
    let (status, body) = send_text(&fake, PRIVATE_CHAT, "").await;
    assert_eq!(status, 400);
    assert_eq!(
        body["description"],
        json!("Bad Request: message text is empty")
    );

    let (status, body) = post_json(
        &fake,
        "sendMessage",
        json!({ "chat_id": PRIVATE_CHAT.to_string(), "text": "Hi.", "parse_mode": "MarkdownV2" }),
    )
    .await;
    assert_eq!(status, 400);
    let description = body["description"].as_str().expect("description");
    assert!(description.starts_with("Bad Request: can't parse entities: Character '.'"));

    // Query-string parameters and a numeric-string chat id work too.
    let response = reqwest::get(format!(
        "{}?chat_id={PRIVATE_CHAT}&text=hello",
        url(&fake, TOKEN, "sendmessage")
    ))
    .await
    .expect("request");
    let (status, body) = answer(response).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["message_id"], json!(1));
    assert_eq!(body["result"]["chat"]["type"], json!("private"));
    assert_eq!(body["result"]["text"], json!("hello"));
    assert_eq!(fake.sent().len(), 1);
    assert_eq!(fake.requests(), 4);
    fake.stop().await;
}

#[actix_web::test]
async fn burst_beyond_chat_limit_is_429() {
    let fake = fake_with_bot().await;
    fake.add_chat(PRIVATE_CHAT);
    let burst = Limits::default().chat_burst;

    for i in 0..burst {
        let (status, body) = send_text(&fake, PRIVATE_CHAT, &format!("m{i}")).await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = send_text(&fake, PRIVATE_CHAT, "one too many").await;
    assert_eq!(status, 429);
    assert_eq!(body["ok"], json!(false));
    assert_eq!(body["error_code"], json!(429));
    let retry_after = body["parameters"]["retry_after"]
        .as_u64()
        .expect("retry_after");
    assert!(retry_after >= 1);
    assert_eq!(
        body["description"],
        json!(format!("Too Many Requests: retry after {retry_after}"))
    );
    assert_eq!(fake.rate_limited(), 1);
    assert_eq!(fake.sent().len(), usize::try_from(burst).expect("small"));

    // Another chat has its own bucket.
    fake.add_chat(PRIVATE_CHAT + 1);
    let (status, _) = send_text(&fake, PRIVATE_CHAT + 1, "other chat").await;
    assert_eq!(status, 200);
    fake.stop().await;
}

#[actix_web::test]
async fn windows_at_arrival_allow_no_burst() {
    let fake = fake_with_bot().await;
    fake.set_limits(Limits::at_arrival());

    // One private chat: a second send within a second is refused, whatever the burst says.
    fake.add_chat(PRIVATE_CHAT);
    assert_eq!(send_text(&fake, PRIVATE_CHAT, "first").await.0, 200);
    let (status, body) = send_text(&fake, PRIVATE_CHAT, "too soon").await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["parameters"]["retry_after"], json!(1));

    // One group: 20 in a minute, then refused.
    fake.add_chat(-100);
    for i in 0..20 {
        assert_eq!(send_text(&fake, -100, &format!("g{i}")).await.0, 200);
    }
    let (status, body) = send_text(&fake, -100, "21st").await;
    assert_eq!(status, 429, "{body}");
    assert!(
        body["parameters"]["retry_after"].as_u64() > Some(50),
        "{body}"
    );

    // The bot: 30 accepted sends in any second (21 so far), then refused.
    for chat in 1..=9 {
        fake.add_chat(chat);
        assert_eq!(send_text(&fake, chat, "x").await.0, 200, "chat {chat}");
    }
    fake.add_chat(10);
    assert_eq!(send_text(&fake, 10, "31st").await.0, 429);
    assert_eq!(fake.sent().len(), 30);
    assert_eq!(fake.rate_limited(), 3);
    fake.stop().await;
}

#[actix_web::test]
async fn blocked_chat_is_403() {
    let fake = fake_with_bot().await;
    fake.block_chat(PRIVATE_CHAT);
    let (status, body) = send_text(&fake, PRIVATE_CHAT, "hello").await;
    assert_eq!(status, 403);
    assert_eq!(
        body["description"],
        json!("Forbidden: bot was blocked by the user")
    );
    assert!(fake.sent().is_empty());
    fake.stop().await;
}

#[actix_web::test]
async fn injected_failure_then_success() {
    let fake = fake_with_bot().await;
    fake.add_chat(PRIVATE_CHAT);
    fake.fail_next(1, 502);

    let (status, body) = send_text(&fake, PRIVATE_CHAT, "first").await;
    assert_eq!(status, 502);
    assert_eq!(body["ok"], json!(false));
    assert_eq!(body["error_code"], json!(502));

    let (status, body) = send_text(&fake, PRIVATE_CHAT, "second").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(fake.requests(), 2);
    let sent = fake.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].text.as_deref(), Some("second"));
    fake.stop().await;
}

#[actix_web::test]
async fn multipart_photo_upload() {
    let fake = FakeTelegram::start_with(FakeTelegramConfig {
        accept_any_chat: true,
        ..FakeTelegramConfig::default()
    })
    .await
    .expect("start fake");
    fake.add_bot(TOKEN, "fakebot");

    let form = reqwest::multipart::Form::new()
        .text("chat_id", "-100500")
        .text("caption", "<b>look</b>")
        .text("parse_mode", "HTML")
        .part(
            "photo",
            reqwest::multipart::Part::bytes(vec![7u8; 12_345]).file_name("pic.jpg"),
        );
    let response = reqwest::Client::new()
        .post(url(&fake, TOKEN, "sendPhoto"))
        .multipart(form)
        .send()
        .await
        .expect("request");
    let (status, body) = answer(response).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["chat"]["type"], json!("group"));
    assert_eq!(body["result"]["caption"], json!("<b>look</b>"));
    assert_eq!(body["result"]["photo"][0]["file_size"], json!(12_345));

    assert!(fake.wait_for_sent(1, Duration::from_secs(1)).await);
    let sent = fake.sent();
    assert_eq!(sent[0].method, "sendPhoto");
    assert_eq!(sent[0].chat_id, -100_500);
    assert_eq!(sent[0].parse_mode.as_deref(), Some("HTML"));
    assert_eq!(
        sent[0].file,
        Some(FileRef::Upload {
            filename: Some("pic.jpg".to_owned()),
            bytes: 12_345,
        })
    );

    // A document given by URL, and the control endpoint.
    let (status, body) = post_json(
        &fake,
        "sendDocument",
        json!({ "chat_id": 5, "document": "https://example.com/a.pdf" }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        fake.sent()[1].file,
        Some(FileRef::Url("https://example.com/a.pdf".to_owned()))
    );
    let stats: Value = reqwest::get(format!("{}/__control/stats", fake.base_url()))
        .await
        .expect("request")
        .json()
        .await
        .expect("JSON body");
    assert_eq!(
        stats,
        json!({ "sent": 2, "rate_limited": 0, "requests": 2 })
    );
    fake.stop().await;
}
