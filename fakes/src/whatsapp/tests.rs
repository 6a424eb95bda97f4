//! Exercises the fake over real HTTP, with a webhook receiver that checks signatures.

use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use super::{FakeWhatsApp, FakeWhatsAppConfig, WaLimits, WindowMode};

const NUMBER: &str = "106540352242922";
const TOKEN: &str = "EAAGtestTOKEN123";
const SECRET: &str = "app-secret-for-tests";
const USER: &str = "+34600111222";
const USER_WA_ID: &str = "34600111222";
const WAIT: Duration = Duration::from_secs(5);

async fn start(config: FakeWhatsAppConfig) -> FakeWhatsApp {
    let fake = FakeWhatsApp::start(config).await.expect("start fake");
    fake.add_number(NUMBER, TOKEN, SECRET);
    fake
}

/// A fake without window checks, for tests about other things.
async fn start_open() -> FakeWhatsApp {
    start(FakeWhatsAppConfig {
        window_mode: WindowMode::Off,
        ..FakeWhatsAppConfig::default()
    })
    .await
}

async fn answer(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let body = response.json::<Value>().await.expect("JSON body");
    (status, body)
}

async fn send_as(fake: &FakeWhatsApp, token: Option<&str>, body: &Value) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("{}/v21.0/{NUMBER}/messages", fake.base_url()))
        .json(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    answer(request.send().await.expect("request")).await
}

async fn send(fake: &FakeWhatsApp, body: &Value) -> (u16, Value) {
    send_as(fake, Some(TOKEN), body).await
}

fn text(to: &str, body: &str) -> Value {
    json!({
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "type": "text",
        "text": { "preview_url": false, "body": body },
    })
}

fn template(to: &str, name: &str, language: &str, params: &[&str]) -> Value {
    let parameters: Vec<Value> = params
        .iter()
        .map(|p| json!({ "type": "text", "text": p }))
        .collect();
    json!({
        "messaging_product": "whatsapp",
        "to": to,
        "type": "template",
        "template": {
            "name": name,
            "language": { "code": language },
            "components": [
                { "type": "header", "parameters": [{ "type": "image", "image": { "link": "https://example.com/a.png" } }] },
                { "type": "body", "parameters": parameters },
            ],
        },
    })
}

/// The `n`-th recipient of a bulk test (distinct wa_ids, so pair limits don't interfere).
fn recipient(n: usize) -> String {
    format!("+3460{:07}", n)
}

fn assert_error(status: u16, body: &Value, http: u16, code: i64) {
    assert_eq!(status, http, "{body}");
    let error = &body["error"];
    assert_eq!(error["code"], json!(code), "{body}");
    assert_eq!(error["type"], json!("OAuthException"));
    let message = error["message"].as_str().expect("message");
    assert!(message.starts_with(&format!("(#{code}) ")), "{message}");
    assert_eq!(error["error_data"]["messaging_product"], json!("whatsapp"));
    assert!(error["error_data"]["details"].is_string());
    assert!(error["fbtrace_id"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(error.get("error_subcode").is_none());
}

/// One webhook POST the receiver accepted.
#[derive(Clone, Debug)]
struct Hook {
    signature_ok: bool,
    content_type: String,
    body: Value,
}

struct ReceiverState {
    secret: String,
    hooks: Mutex<Vec<Hook>>,
    /// Answer 500 to this many POSTs first.
    fail_first: AtomicU32,
}

/// A webhook endpoint on a random port that checks `X-Hub-Signature-256` with `secret`.
struct Receiver {
    url: String,
    state: Arc<ReceiverState>,
    handle: ServerHandle,
}

async fn receive(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<ReceiverState>,
) -> HttpResponse {
    let failing = state
        .fail_first
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if failing {
        return HttpResponse::InternalServerError().finish();
    }
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let signature = header("X-Hub-Signature-256");
    let expected = signature
        .strip_prefix("sha256=")
        .and_then(|h| hex::decode(h).ok())
        .unwrap_or_default();
    let mut mac = Hmac::<Sha256>::new_from_slice(state.secret.as_bytes()).expect("HMAC key");
    mac.update(&body);
    let hook = Hook {
        signature_ok: mac.verify_slice(&expected).is_ok(),
        content_type: header("Content-Type"),
        body: serde_json::from_slice(&body).expect("JSON webhook"),
    };
    state.hooks.lock().expect("lock").push(hook);
    HttpResponse::Ok().finish()
}

impl Receiver {
    async fn start(secret: &str) -> Receiver {
        let state = Arc::new(ReceiverState {
            secret: secret.to_owned(),
            hooks: Mutex::new(Vec::new()),
            fail_first: AtomicU32::new(0),
        });
        let data = web::Data::from(Arc::clone(&state));
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route("/hook", web::post().to(receive))
        })
        .workers(1)
        .disable_signals()
        .bind(("127.0.0.1", 0))
        .expect("bind receiver");
        let port = server.addrs()[0].port();
        let server = server.run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        Receiver {
            url: format!("http://127.0.0.1:{port}/hook"),
            state,
            handle,
        }
    }

    fn hooks(&self) -> Vec<Hook> {
        self.state.hooks.lock().expect("lock").clone()
    }

    /// Every `statuses[]` item received, in arrival order.
    fn statuses(&self) -> Vec<Value> {
        self.hooks()
            .iter()
            .filter_map(|h| {
                h.body["entry"][0]["changes"][0]["value"]["statuses"]
                    .as_array()
                    .cloned()
            })
            .flatten()
            .collect()
    }

    /// Waits until `n` hooks arrived; panics after [`WAIT`].
    async fn wait_for(&self, n: usize) -> Vec<Hook> {
        let start = Instant::now();
        loop {
            let hooks = self.hooks();
            if hooks.len() >= n {
                return hooks;
            }
            assert!(
                start.elapsed() < WAIT,
                "only {} of {n} webhooks: {hooks:?}",
                hooks.len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn stop(&self) {
        self.handle.stop(false).await;
    }
}

#[actix_web::test]
async fn a_text_in_the_window_is_accepted_with_a_wamid() {
    // Arrange
    let fake = start(FakeWhatsAppConfig::default()).await;
    fake.open_window(NUMBER, USER_WA_ID);

    // Act
    let (status, body) = send(&fake, &text(USER, "hola")).await;

    // Assert
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["messaging_product"], json!("whatsapp"));
    assert_eq!(
        body["contacts"],
        json!([{ "input": USER, "wa_id": USER_WA_ID }])
    );
    assert_eq!(body["messages"][0]["message_status"], json!("accepted"));
    let wamid = body["messages"][0]["id"].as_str().expect("wamid");
    assert!(wamid.starts_with("wamid.") && wamid.len() <= 128, "{wamid}");
    let sent = fake.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].wamid, wamid);
    assert_eq!(sent[0].phone_number_id, NUMBER);
    assert_eq!(sent[0].to, USER);
    assert_eq!(sent[0].wa_id(), USER_WA_ID);
    assert_eq!(sent[0].kind, "text");
    assert_eq!(sent[0].body.as_deref(), Some("hola"));
    assert_eq!(sent[0].failed, None);
    assert_eq!(fake.stats().accepted, 1);

    // Without "+" the wa_id is the same; wamids are unique.
    fake.open_window(NUMBER, "34600111333");
    let (status, body) = send(&fake, &text("34600111333", "again")).await;
    assert_eq!(status, 200, "{body}");
    assert_ne!(body["messages"][0]["id"].as_str(), Some(wamid));
    fake.stop().await;
}

#[actix_web::test]
async fn a_missing_or_wrong_token_or_unknown_number_is_190_with_http_401() {
    let fake = start_open().await;

    let (status, body) = send_as(&fake, Some("wrong"), &text(USER, "x")).await;
    assert_error(status, &body, 401, 190);
    assert_eq!(
        body["error"]["message"],
        json!("(#190) Invalid OAuth access token")
    );
    let (status, body) = send_as(&fake, None, &text(USER, "x")).await;
    assert_error(status, &body, 401, 190);
    let response = reqwest::Client::new()
        .post(format!("{}/v21.0/999999/messages", fake.base_url()))
        .bearer_auth(TOKEN)
        .json(&text(USER, "x"))
        .send()
        .await
        .expect("request");
    let (status, body) = answer(response).await;
    assert_error(status, &body, 401, 190);

    assert_eq!(fake.stats().rejected_auth, 3);
    assert!(fake.sent().is_empty());
    fake.stop().await;
}

#[actix_web::test]
async fn malformed_bodies_are_100() {
    let fake = start_open().await;
    let long = "x".repeat(4097);
    let bad_bodies = [
        json!({ "to": USER, "type": "text", "text": { "body": "no product" } }),
        json!({ "messaging_product": "sms", "to": USER, "type": "text", "text": { "body": "x" } }),
        json!({ "messaging_product": "whatsapp", "type": "text", "text": { "body": "no to" } }),
        text("12ab", "bad to"),
        text("+1234567", "too short"),
        json!({ "messaging_product": "whatsapp", "to": USER, "type": "sticker", "sticker": { "id": "1" } }),
        json!({ "messaging_product": "whatsapp", "to": USER, "type": "text", "text": {} }),
        text(USER, &long),
        json!({ "messaging_product": "whatsapp", "to": USER, "type": "image", "image": { "id": "1", "link": "https://e.com/a.png" } }),
        json!({ "messaging_product": "whatsapp", "to": USER, "type": "image", "image": { "caption": "neither" } }),
        json!({ "messaging_product": "whatsapp", "to": USER, "type": "image", "image": { "id": "424242" } }),
    ];
    for body in &bad_bodies {
        let (status, answer) = send(&fake, body).await;
        assert_error(status, &answer, 400, 100);
        assert_eq!(
            answer["error"]["message"],
            json!("(#100) Invalid parameter")
        );
    }
    assert_eq!(fake.stats().rejected_other, 11);

    // 4096 characters are fine, and so is a media link with a caption.
    let (status, body) = send(&fake, &text(USER, &long[1..])).await;
    assert_eq!(status, 200, "{body}");
    let image = json!({ "messaging_product": "whatsapp", "to": recipient(1), "type": "image",
        "image": { "link": "https://example.com/a.png", "caption": "look" } });
    let (status, body) = send(&fake, &image).await;
    assert_eq!(status, 200, "{body}");
    let sent = fake.sent();
    assert_eq!(sent[1].kind, "image");
    assert_eq!(
        sent[1].media_link.as_deref(),
        Some("https://example.com/a.png")
    );
    assert_eq!(sent[1].body.as_deref(), Some("look"));
    fake.stop().await;
}

#[actix_web::test]
async fn templates_must_exist_and_take_the_registered_parameter_count() {
    // Arrange: default window mode; templates need no window.
    let fake = start(FakeWhatsAppConfig::default()).await;
    fake.add_template("order_update", "en_US", 2);

    // Act / Assert
    let (status, body) = send(&fake, &template(USER, "nope", "en_US", &["a", "b"])).await;
    assert_error(status, &body, 400, 132_001);
    let (status, body) = send(&fake, &template(USER, "order_update", "es_ES", &["a", "b"])).await;
    assert_error(status, &body, 400, 132_001);
    let (status, body) = send(&fake, &template(USER, "order_update", "en_US", &["a"])).await;
    assert_error(status, &body, 400, 132_000);
    let (status, body) = send(
        &fake,
        &template(USER, "order_update", "en_US", &["a", "b", "c"]),
    )
    .await;
    assert_error(status, &body, 400, 132_000);

    let (status, body) = send(
        &fake,
        &template(USER, "order_update", "en_US", &["Alex", "A123"]),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let sent = fake.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].kind, "template");
    assert_eq!(sent[0].template.as_deref(), Some("order_update"));
    assert_eq!(sent[0].template_params, vec!["Alex", "A123"]);
    fake.stop().await;
}

#[actix_web::test]
async fn the_81st_message_in_a_second_is_130429() {
    let fake = start_open().await;
    let started = Instant::now();

    for n in 0..80 {
        let (status, body) = send(&fake, &text(&recipient(n), "bulk")).await;
        assert_eq!(status, 200, "message {n}: {body}");
    }
    let (status, body) = send(&fake, &text(&recipient(80), "one too many")).await;

    assert!(
        started.elapsed() < Duration::from_secs(1),
        "too slow to test: {:?}",
        started.elapsed()
    );
    assert_error(status, &body, 400, 130_429);
    assert_eq!(body["error"]["message"], json!("(#130429) Rate limit hit"));
    let stats = fake.stats();
    assert_eq!((stats.accepted, stats.rejected_130429), (80, 1));
    fake.stop().await;
}

#[actix_web::test]
async fn messages_spread_evenly_at_80_per_second_all_pass() {
    let fake = start_open().await;

    // 100 messages, at least 12.5 ms apart: never more than 80 in any second.
    for n in 0..100 {
        let (status, body) = send(&fake, &text(&recipient(n), "paced")).await;
        assert_eq!(status, 200, "message {n}: {body}");
        tokio::time::sleep(Duration::from_micros(12_500)).await;
    }

    assert_eq!(fake.stats().accepted, 100);
    assert_eq!(fake.stats().rejected_130429, 0);
    fake.stop().await;
}

#[actix_web::test]
async fn inbound_messages_count_against_throughput() {
    let fake = start(FakeWhatsAppConfig {
        window_mode: WindowMode::Off,
        limits: WaLimits {
            number_per_sec: 3,
            ..WaLimits::default()
        },
        ..FakeWhatsAppConfig::default()
    })
    .await;
    let receiver = Receiver::start(SECRET).await;
    fake.set_webhook(NUMBER, &receiver.url);

    fake.inbound(NUMBER, &recipient(1), "one")
        .await
        .expect("inbound");
    fake.inbound(NUMBER, &recipient(2), "two")
        .await
        .expect("inbound");
    let (status, body) = send(&fake, &text(&recipient(3), "three")).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = send(&fake, &text(&recipient(4), "four")).await;

    assert_error(status, &body, 400, 130_429);
    assert_eq!(fake.stats().inbound, 2);
    receiver.stop().await;
    fake.stop().await;
}

#[actix_web::test]
async fn two_quick_messages_to_one_recipient_are_131056() {
    let fake = start_open().await;

    let (status, body) = send(&fake, &text(USER, "first")).await;
    assert_eq!(status, 200, "{body}");
    // Same wa_id written without "+".
    let (status, body) = send(&fake, &text(USER_WA_ID, "second")).await;
    assert_error(status, &body, 400, 131_056);
    assert_eq!(
        body["error"]["message"],
        json!("(#131056) (Business Account, Consumer Account) pair rate limit hit")
    );
    let (status, body) = send(&fake, &text(&recipient(1), "someone else")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(fake.stats().rejected_131056, 1);

    // After the period the pair may write again; a refused send does not use quota.
    fake.set_limits(WaLimits {
        pair_period: Duration::from_millis(150),
        ..WaLimits::default()
    });
    let (status, _) = send(&fake, &text(USER, "a")).await;
    assert_eq!(status, 200);
    let (status, _) = send(&fake, &text(USER, "b")).await;
    assert_eq!(status, 400);
    tokio::time::sleep(Duration::from_millis(170)).await;
    let (status, body) = send(&fake, &text(USER, "c")).await;
    assert_eq!(status, 200, "{body}");
    fake.stop().await;
}

#[actix_web::test]
async fn outside_the_window_a_text_is_131047_until_the_user_writes() {
    // Arrange
    let fake = start(FakeWhatsAppConfig::default()).await;
    let receiver = Receiver::start(SECRET).await;
    fake.set_webhook(NUMBER, &receiver.url);
    fake.add_template("hello", "en_US", 0);

    // Act / Assert: closed window.
    let (status, body) = send(&fake, &text(USER, "hi")).await;
    assert_error(status, &body, 400, 131_047);
    assert_eq!(
        body["error"]["message"],
        json!("(#131047) Re-engagement message")
    );
    let (status, body) = send(&fake, &template(USER, "hello", "en_US", &[])).await;
    assert_eq!(status, 200, "templates need no window: {body}");

    // The user writes: signed inbound webhook, window open.
    fake.inbound(NUMBER, USER, "STOP?").await.expect("inbound");
    let hooks = receiver.hooks();
    let inbound = hooks
        .iter()
        .find(|h| h.body["entry"][0]["changes"][0]["value"]["messages"].is_array())
        .expect("inbound webhook");
    assert!(inbound.signature_ok);
    let value = &inbound.body["entry"][0]["changes"][0]["value"];
    assert_eq!(inbound.body["object"], json!("whatsapp_business_account"));
    assert_eq!(value["metadata"]["phone_number_id"], json!(NUMBER));
    assert_eq!(value["contacts"][0]["wa_id"], json!(USER_WA_ID));
    assert_eq!(
        value["contacts"][0]["profile"]["name"],
        json!(format!("User {USER_WA_ID}"))
    );
    assert_eq!(value["messages"][0]["from"], json!(USER_WA_ID));
    assert_eq!(value["messages"][0]["type"], json!("text"));
    assert_eq!(value["messages"][0]["text"]["body"], json!("STOP?"));
    assert!(
        value["messages"][0]["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("wamid."))
    );
    assert!(value["messages"][0]["timestamp"].is_string());

    fake.set_limits(WaLimits {
        pair_period: Duration::ZERO,
        ..WaLimits::default()
    });
    let (status, body) = send(&fake, &text(USER, "hi again")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(fake.stats().rejected_131047, 1);
    receiver.stop().await;
    fake.stop().await;
}

#[actix_web::test]
async fn outside_the_window_async_mode_accepts_then_posts_failed_131047() {
    let fake = start(FakeWhatsAppConfig {
        window_mode: WindowMode::AsyncFailed,
        ..FakeWhatsAppConfig::default()
    })
    .await;
    let receiver = Receiver::start(SECRET).await;
    fake.set_webhook(NUMBER, &receiver.url);

    let (status, body) = send(&fake, &text(USER, "hi")).await;
    assert_eq!(status, 200, "{body}");
    let wamid = body["messages"][0]["id"].clone();

    receiver.wait_for(1).await;
    // Give a wrong sent/delivered status time to show up.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let statuses = receiver.statuses();
    assert_eq!(statuses.len(), 1, "{statuses:?}");
    let failed = &statuses[0];
    assert_eq!(failed["id"], wamid);
    assert_eq!(failed["status"], json!("failed"));
    assert_eq!(failed["recipient_id"], json!(USER_WA_ID));
    assert_eq!(failed["errors"][0]["code"], json!(131_047));
    assert_eq!(failed["errors"][0]["title"], json!("Re-engagement message"));
    assert!(failed["errors"][0]["error_data"]["details"].is_string());
    assert!(receiver.hooks()[0].signature_ok);
    assert_eq!(fake.sent()[0].failed, Some(131_047));
    assert_eq!(fake.stats().failed_131047, 1);
    receiver.stop().await;
    fake.stop().await;
}

#[actix_web::test]
async fn status_callbacks_are_signed_and_in_event_order() {
    let fake = start_open().await;
    let receiver = Receiver::start(SECRET).await;
    fake.set_webhook(NUMBER, &receiver.url);

    let (status, body) = send(&fake, &text(USER, "hi")).await;
    assert_eq!(status, 200, "{body}");
    let wamid = body["messages"][0]["id"].clone();

    let hooks = receiver.wait_for(3).await;
    for hook in &hooks {
        assert!(hook.signature_ok, "bad signature: {hook:?}");
        assert_eq!(hook.content_type, "application/json");
        let value = &hook.body["entry"][0]["changes"][0];
        assert_eq!(value["field"], json!("messages"));
        assert_eq!(value["value"]["metadata"]["phone_number_id"], json!(NUMBER));
    }
    let statuses = receiver.statuses();
    let names: Vec<&str> = statuses
        .iter()
        .filter_map(|s| s["status"].as_str())
        .collect();
    assert_eq!(names, ["sent", "delivered", "read"]);
    let timestamps: Vec<u64> = statuses
        .iter()
        .map(|s| {
            s["timestamp"]
                .as_str()
                .and_then(|t| t.parse().ok())
                .expect("timestamp")
        })
        .collect();
    assert!(
        timestamps.windows(2).all(|w| w[0] <= w[1]),
        "{timestamps:?}"
    );
    for status in &statuses {
        assert_eq!(status["id"], wamid);
        assert_eq!(status["recipient_id"], json!(USER_WA_ID));
        assert_eq!(status["pricing"]["pricing_model"], json!("PMP"));
    }
    // The fake counts a webhook once it has read the 2xx, a moment after the receiver saw it.
    assert!(
        fake.wait_until(Duration::from_secs(5), |f| f.stats().webhooks_posted == 3)
            .await,
        "{:?}",
        fake.stats()
    );
    receiver.stop().await;
    fake.stop().await;
}

#[actix_web::test]
async fn shuffled_statuses_post_read_first_with_later_timestamp() {
    let fake = start(FakeWhatsAppConfig {
        window_mode: WindowMode::Off,
        shuffle_statuses: true,
        ..FakeWhatsAppConfig::default()
    })
    .await;
    let receiver = Receiver::start(SECRET).await;
    fake.set_webhook(NUMBER, &receiver.url);

    for n in 0..2 {
        let (status, body) = send(&fake, &text(&recipient(n), "hi")).await;
        assert_eq!(status, 200, "{body}");
    }
    receiver.wait_for(6).await;

    let statuses = receiver.statuses();
    let mut shuffled = 0;
    for sent in fake.sent() {
        let mine: Vec<&Value> = statuses
            .iter()
            .filter(|s| s["id"] == json!(sent.wamid))
            .collect();
        let names: Vec<&str> = mine.iter().filter_map(|s| s["status"].as_str()).collect();
        let time = |name: &str| {
            mine.iter()
                .find(|s| s["status"] == json!(name))
                .and_then(|s| s["timestamp"].as_str()?.parse::<u64>().ok())
                .expect("timestamp")
        };
        assert!(time("sent") <= time("delivered") && time("delivered") < time("read"));
        if names == ["sent", "read", "delivered"] {
            shuffled += 1;
        } else {
            assert_eq!(names, ["sent", "delivered", "read"]);
        }
    }
    assert_eq!(shuffled, 1);
    receiver.stop().await;
    fake.stop().await;
}

#[actix_web::test]
async fn undeliverable_recipients_get_failed_131026() {
    let fake = start_open().await;
    let receiver = Receiver::start(SECRET).await;
    fake.set_webhook(NUMBER, &receiver.url);
    fake.set_undeliverable(USER);

    let (status, body) = send(&fake, &text(USER, "hi")).await;
    assert_eq!(status, 200, "{body}");

    receiver.wait_for(1).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    let statuses = receiver.statuses();
    assert_eq!(statuses.len(), 1, "{statuses:?}");
    assert_eq!(statuses[0]["status"], json!("failed"));
    assert_eq!(statuses[0]["errors"][0]["code"], json!(131_026));
    assert_eq!(fake.stats().failed_131026, 1);
    receiver.stop().await;
    fake.stop().await;
}

#[actix_web::test]
async fn webhooks_are_retried_then_reported_as_failures() {
    let fake = start_open().await;
    let receiver = Receiver::start(SECRET).await;
    fake.set_webhook(NUMBER, &receiver.url);
    receiver.state.fail_first.store(2, Ordering::SeqCst);

    fake.inbound(NUMBER, USER, "hello")
        .await
        .expect("delivered on the third try");
    assert_eq!(receiver.hooks().len(), 1);
    assert_eq!(fake.stats().webhook_retries, 2);
    assert!(fake.webhook_failures().is_empty());

    // Nothing listens on a port just released.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    fake.set_webhook(NUMBER, &format!("http://127.0.0.1:{port}/hook"));
    let outcome = fake.inbound(NUMBER, USER, "lost").await;

    assert!(outcome.is_err());
    let failures = fake.webhook_failures();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(failures[0].contains("inbound message from"), "{failures:?}");
    assert_eq!(fake.stats().webhooks_failed, 1);
    receiver.stop().await;
    fake.stop().await;
}

async fn upload(fake: &FakeWhatsApp, mime: &str, bytes: usize) -> (u16, Value) {
    let file = reqwest::multipart::Part::bytes(vec![0u8; bytes])
        .file_name("f.bin")
        .mime_str(mime)
        .expect("mime");
    let form = reqwest::multipart::Form::new()
        .text("messaging_product", "whatsapp")
        .text("type", mime.to_owned())
        .part("file", file);
    let response = reqwest::Client::new()
        .post(format!("{}/v21.0/{NUMBER}/media", fake.base_url()))
        .bearer_auth(TOKEN)
        .multipart(form)
        .send()
        .await
        .expect("request");
    answer(response).await
}

#[actix_web::test]
async fn media_over_its_size_limit_or_of_an_unsupported_type_is_131053() {
    let fake = start_open().await;

    let (status, body) = upload(&fake, "image/jpeg", 6 * 1024 * 1024).await;
    assert_error(status, &body, 400, 131_053);
    assert_eq!(
        body["error"]["message"],
        json!("(#131053) Media upload error")
    );
    let (status, body) = upload(&fake, "image/webp", 600 * 1024).await;
    assert_error(status, &body, 400, 131_053);
    let (status, body) = upload(&fake, "image/gif", 1024).await;
    assert_error(status, &body, 400, 131_053);

    let (status, body) = upload(&fake, "application/pdf", 2 * 1024 * 1024).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = upload(&fake, "image/png", 4 * 1024 * 1024).await;
    assert_eq!(status, 200, "{body}");
    let media_id = body["id"].as_str().expect("media id").to_owned();

    let image = json!({ "messaging_product": "whatsapp", "to": USER, "type": "image",
        "image": { "id": media_id, "caption": "pic" } });
    let (status, body) = send(&fake, &image).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(fake.sent()[0].media_id.as_deref(), Some(media_id.as_str()));
    let stats = fake.stats();
    assert_eq!((stats.media_uploaded, stats.media_rejected), (2, 3));
    fake.stop().await;
}

#[actix_web::test]
async fn fail_next_forces_any_code_before_the_limits() {
    let fake = start_open().await;
    fake.fail_next(NUMBER, 131_048, 400, 2);

    let (status, body) = send(&fake, &text(USER, "one")).await;
    assert_error(status, &body, 400, 131_048);
    assert_eq!(
        body["error"]["message"],
        json!("(#131048) Spam rate limit hit")
    );
    let (status, body) = send(&fake, &text(USER, "two")).await;
    assert_error(status, &body, 400, 131_048);
    let (status, body) = send(&fake, &text(USER, "three")).await;
    assert_eq!(status, 200, "{body}");

    fake.fail_next(NUMBER, 130_429, 503, 1);
    let (status, body) = send(&fake, &text(USER, "pair limit is not reached first")).await;
    assert_error(status, &body, 503, 130_429);
    let stats = fake.stats();
    assert_eq!(
        (stats.rejected_other, stats.rejected_130429, stats.accepted),
        (2, 1, 1)
    );
    fake.stop().await;
}

#[actix_web::test]
async fn control_endpoints_configure_and_report() {
    let fake = FakeWhatsApp::start(FakeWhatsAppConfig::default())
        .await
        .expect("start fake");
    let receiver = Receiver::start("other-secret").await;
    let client = reqwest::Client::new();
    let control = |path: &str| format!("{}/__control/{path}", fake.base_url());
    let post = |path: &str, body: Value| client.post(control(path)).json(&body).send();

    let response = post(
        "numbers",
        json!({ "phone_number_id": NUMBER, "access_token": TOKEN, "app_secret": "other-secret", "webhook_url": receiver.url }),
    )
    .await
    .expect("request");
    assert_eq!(response.status(), 200);
    let response = post(
        "templates",
        json!({ "name": "promo", "language": "es", "body_params": 1 }),
    )
    .await
    .expect("request");
    assert_eq!(response.status(), 200);
    let response = post(
        "inbound",
        json!({ "phone_number_id": NUMBER, "from": USER, "text": "hola" }),
    )
    .await
    .expect("request");
    assert_eq!(response.status(), 200);
    assert!(receiver.hooks()[0].signature_ok);

    let (status, body) = send(&fake, &text(USER, "in the window")).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = send(&fake, &template(&recipient(1), "promo", "es", &["x"])).await;
    assert_eq!(status, 200, "{body}");

    let sent: Value = client
        .get(control("sent"))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("JSON");
    assert_eq!(sent[1]["template"], json!("promo"));
    assert!(sent[0]["at_ms"].is_u64());
    let stats: Value = client
        .get(control("stats"))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("JSON");
    assert_eq!(stats["accepted"], json!(2));
    assert_eq!(stats["inbound"], json!(1));

    let response = post("reset", json!({})).await.expect("request");
    assert_eq!(response.status(), 200);
    assert!(fake.sent().is_empty());
    assert_eq!(fake.stats().accepted, 0);
    receiver.stop().await;
    fake.stop().await;
}
