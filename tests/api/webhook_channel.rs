//! The outgoing-webhook channel against a receiving server in the test: signed JSON, retried
//! on 503, failed at once on 410, paced per account, fed by `/api/v1/messages`, alert rules and
//! campaigns; and refused for this server's own networks unless the account allows them.
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use chrono::Utc;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, spawn_app};

const WAIT: Duration = Duration::from_secs(30);

/// One POST the receiver got.
#[derive(Clone)]
pub(crate) struct Received {
    pub at: Instant,
    pub signature: String,
    pub body: Vec<u8>,
}

#[derive(Default)]
pub(crate) struct Receiver {
    pub got: Mutex<Vec<Received>>,
    /// POSTs seen per `to`.
    tries: Mutex<HashMap<String, usize>>,
    /// When set, the status every POST is answered with.
    pub answer: std::sync::atomic::AtomicU16,
}

/// `to: "flaky"` answers 503 the first time; `to: "gone"` answers 410; anything else 204.
async fn receive(req: HttpRequest, body: web::Bytes, r: web::Data<Receiver>) -> HttpResponse {
    let signature = req
        .headers()
        .get("x-pregonero-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    r.got.lock().expect("lock").push(Received {
        at: Instant::now(),
        signature,
        body: body.to_vec(),
    });
    let to = serde_json::from_slice::<Value>(&body).expect("json body")["to"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let tries = {
        let mut tries = r.tries.lock().expect("lock");
        let n = tries.entry(to.clone()).or_default();
        *n += 1;
        *n
    };
    let forced = r.answer.load(std::sync::atomic::Ordering::SeqCst);
    if forced != 0 {
        return HttpResponse::build(actix_web::http::StatusCode::from_u16(forced).expect("status"))
            .finish();
    }
    match (to.as_str(), tries) {
        ("flaky", 1) => HttpResponse::ServiceUnavailable().finish(),
        ("gone", _) => HttpResponse::Gone().finish(),
        _ => HttpResponse::NoContent().finish(),
    }
}

pub(crate) async fn start_receiver() -> (String, Arc<Receiver>) {
    let data = web::Data::new(Receiver::default());
    let shared = data.clone().into_inner();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/hook", web::post().to(receive))
    })
    .workers(1)
    .disable_signals()
    .bind(("127.0.0.1", 0))
    .expect("bind");
    let port = server.addrs()[0].port();
    actix_web::rt::spawn(server.run());
    (format!("http://127.0.0.1:{port}/hook"), shared)
}

/// The documented check: `v1` is the hex HMAC-SHA256 of `"<t>.<raw body>"` under the secret.
pub(crate) fn verify(secret: &str, header: &str, body: &[u8]) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", v)) => t = Some(v),
            Some(("v1", v)) => v1 = Some(v),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    let fresh = t
        .parse::<i64>()
        .is_ok_and(|t| (Utc::now().timestamp() - t).abs() < 300);
    let mut signed = format!("{t}.").into_bytes();
    signed.extend_from_slice(body);
    fresh && hex::encode(pregonero::crypto::hmac_sha256(secret.as_bytes(), &signed)) == v1
}

pub(crate) async fn create_hook(app: &TestApp, body: Value) -> (u16, Value) {
    let res = app.post("channels", &body).await;
    (res.status().as_u16(), res.json().await.expect("json"))
}

async fn a_webhook_channel_posts_signed_json_retries_503_and_fails_on_410(backend: Backend) {
    // Arrange
    let app = spawn_app(backend).await;
    let (url, receiver) = start_receiver().await;
    let (code, channel) = create_hook(
        &app,
        json!({"kind": "webhook", "name": "hooks", "url": url, "allow_private_network": true,
               "limits": {"per_second": 5}}),
    )
    .await;
    assert_eq!(code, 201, "{channel}");
    let secret = channel["signing_secret"]
        .as_str()
        .expect("the secret is shown once")
        .to_owned();
    crate::helpers::secret(&secret);
    let channel_id = channel["id"].as_str().expect("id").to_owned();
    let (_, shown) = app.get_json(&format!("channels/{channel_id}")).await;
    assert!(shown.get("signing_secret").is_none(), "never shown again");

    // Act: messages through the API, and an alert rule that posts to the same channel.
    let send = |to: String, text: String| {
        let (app, channel_id) = (&app, &channel_id);
        async move {
            let res = app
                .post(
                    "messages",
                    &json!({"channel_id": channel_id, "to": to, "text": text}),
                )
                .await;
            assert_eq!(res.status().as_u16(), 202);
            let body: Value = res.json().await.expect("json");
            body["id"].as_str().expect("id").to_owned()
        }
    };
    let mut ids = Vec::new();
    for i in 0..10 {
        ids.push(send(format!("user-{i}"), format!("hello {i}")).await);
    }
    let flaky = send("flaky".into(), "try again".into()).await;
    let gone = send("gone".into(), "nobody home".into()).await;
    let res = app
        .post(
            "alert-rules",
            &json!({"name": "deploys", "service": "deploys", "channel_id": channel_id,
                    "chat_id": "ops-room"}),
        )
        .await;
    assert_eq!(res.status().as_u16(), 201);
    let res = app
        .client
        .post(format!("{}/events", app.address))
        .bearer_auth(&app.api_key)
        .json(
            &json!({"timestamp": Utc::now().to_rfc3339(), "service": "deploys",
                      "message": "v2 is live"}),
        )
        .send()
        .await
        .expect("event");
    assert_eq!(res.status().as_u16(), 202);

    // Assert: delivered, retried, failed as the answers say.
    for id in &ids {
        let msg = app.wait_for_status(id, "sent", WAIT).await;
        assert_eq!(msg["attempt_count"], 1);
    }
    let msg = app.wait_for_status(&flaky, "sent", WAIT).await;
    assert_eq!(msg["attempt_count"], 2, "503 is retried: {msg:#}");
    let msg = app.wait_for_status(&gone, "failed", WAIT).await;
    assert_eq!(msg["last_error_code"], "webhook-gone");
    assert_eq!(msg["attempt_count"], 1, "410 is not retried");
    let deadline = Instant::now() + WAIT;
    let got = loop {
        let got = receiver.got.lock().expect("lock").clone();
        let alerted = got
            .iter()
            .any(|r| serde_json::from_slice::<Value>(&r.body).is_ok_and(|b| b["to"] == "ops-room"));
        if alerted {
            break got;
        }
        assert!(
            Instant::now() < deadline,
            "the alert rule's post never came"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        got.len(),
        10 + 2 + 1 + 1,
        "10, flaky twice, gone once, the alert"
    );
    for r in &got {
        assert!(
            verify(&secret, &r.signature, &r.body),
            "signature checks with the documented recipe"
        );
    }
    let first: Value = got
        .iter()
        .map(|r| serde_json::from_slice::<Value>(&r.body).expect("json"))
        .find(|b| b["to"] == "user-0")
        .expect("user-0's post");
    assert_eq!(first["type"], "message");
    assert_eq!(first["text"], "hello 0");
    assert_eq!(first["id"], ids[0].as_str());
    // Paced at 5 per second: no six posts within one second.
    let mut at: Vec<Instant> = got.iter().map(|r| r.at).collect();
    at.sort();
    for (i, t) in at.iter().enumerate().skip(5) {
        assert!(
            t.duration_since(at[i - 5]) >= Duration::from_millis(990),
            "posts {} and {i} only {:?} apart",
            i - 5,
            t.duration_since(at[i - 5])
        );
    }
}

async fn a_webhook_into_this_servers_own_network_is_refused_without_the_flag(backend: Backend) {
    let app = spawn_app(backend).await;
    for url in [
        "http://127.0.0.1:9/hook",
        "http://10.0.0.1/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]:9/hook",
        "http://localhost:9/hook",
    ] {
        let (code, body) =
            create_hook(&app, json!({"kind": "webhook", "name": "h", "url": url})).await;
        assert_eq!(code, 422, "{url}: {body}");
        assert_eq!(body["error"], "webhook-url-forbidden", "{url}: {body}");
    }
    for (fields, error) in [
        (
            json!({"url": "ftp://93.184.216.34/x"}),
            "invalid-webhook-url",
        ),
        (json!({"url": "not a url"}), "invalid-webhook-url"),
        (
            json!({"url": "https://93.184.216.34/x", "secret": "short"}),
            "invalid-signing-secret",
        ),
        (
            json!({"url": "https://93.184.216.34/x", "bot_token": "1:x"}),
            "invalid-channel-fields",
        ),
    ] {
        let mut body = json!({"kind": "webhook", "name": "h"});
        body.as_object_mut()
            .expect("object")
            .extend(fields.as_object().expect("object").clone());
        let (code, answer) = create_hook(&app, body).await;
        assert_eq!(
            (code, answer["error"].as_str()),
            (422, Some(error)),
            "{answer}"
        );
    }
    let private = json!({"kind": "webhook", "name": "h", "url": "http://127.0.0.1:9/hook",
                         "allow_private_network": true});
    // The flag is an admin's to set: an operator asking for it is refused.
    let (_, operator_key) = app.user_with_key("op", "operator").await;
    let (code, body) = crate::helpers::status_and_json(
        app.client
            .post(format!("{}/api/v1/channels", app.address))
            .bearer_auth(&operator_key)
            .json(&private),
    )
    .await;
    assert_eq!(
        (code, body["error"].as_str()),
        (403, Some("admin-only")),
        "{body}"
    );
    let (code, body) = create_hook(&app, private).await;
    assert_eq!(code, 201, "the flag allows it: {body}");
}

async fn a_campaign_over_a_webhook_channel_posts_one_call_per_contact(backend: Backend) {
    // Arrange
    let app = spawn_app(backend).await;
    let (url, receiver) = start_receiver().await;
    let (code, channel) = create_hook(
        &app,
        json!({"kind": "webhook", "name": "crm", "url": url, "allow_private_network": true}),
    )
    .await;
    assert_eq!(code, 201, "{channel}");
    crate::helpers::secret(channel["signing_secret"].as_str().expect("secret"));
    for i in 1..=3 {
        let (code, c) = app
            .api(
                reqwest::Method::POST,
                "contacts",
                Some(json!({"phone": format!("+3460000000{i}"), "name": format!("N{i}")})),
            )
            .await;
        assert_eq!(code, 201, "{c}");
    }

    // Act
    let (code, c) = app
        .api(
            reqwest::Method::POST,
            "campaigns",
            Some(
                json!({"name": "promo", "channel_id": channel["id"], "body": "Hola {{ nombre }}",
                        "start": true}),
            ),
        )
        .await;
    assert_eq!(code, 201, "{c}");
    let id = c["id"].as_str().expect("id").to_owned();

    // Assert: the campaign completes with one signed post per contact, addressed to its phone.
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, c) = app.get_json(&format!("campaigns/{id}")).await;
        if c["status"] == "completed" {
            assert_eq!(c["counters"]["sent"], 3, "{c}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "campaign did not complete: {c:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut posted: Vec<(String, String)> = receiver
        .got
        .lock()
        .expect("lock")
        .iter()
        .map(|r| {
            let b: Value = serde_json::from_slice(&r.body).expect("json");
            (
                b["to"].as_str().unwrap_or_default().to_owned(),
                b["text"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    posted.sort();
    assert_eq!(
        posted,
        (1..=3)
            .map(|i| (format!("+3460000000{i}"), format!("Hola N{i}")))
            .collect::<Vec<_>>()
    );
}

async fn a_daily_cap_defers_the_sends_past_it_by_a_day(backend: Backend) {
    // Arrange
    let app = spawn_app(backend).await;
    let (url, receiver) = start_receiver().await;
    let (code, channel) = create_hook(
        &app,
        json!({"kind": "webhook", "name": "capped", "url": url, "allow_private_network": true,
               "limits": {"per_second": 50, "per_day": 2}}),
    )
    .await;
    assert_eq!(code, 201, "{channel}");
    assert_eq!(channel["limits"]["per_day"], 2, "{channel}");
    crate::helpers::secret(channel["signing_secret"].as_str().expect("secret"));

    // Act
    let mut ids = Vec::new();
    for i in 0..3 {
        let res = app
            .post(
                "messages",
                &json!({"channel_id": channel["id"], "to": format!("r{i}"), "text": "hi"}),
            )
            .await;
        assert_eq!(res.status().as_u16(), 202);
        let body: Value = res.json().await.expect("json");
        ids.push(body["id"].as_str().expect("id").to_owned());
    }

    // Assert: two leave; the third waits for the day to roll, without using an attempt.
    let deadline = Instant::now() + WAIT;
    let mut statuses;
    loop {
        statuses = Vec::new();
        for id in &ids {
            let (_, m) = app.get_json(&format!("messages/{id}")).await;
            statuses.push(m);
        }
        let sent = statuses.iter().filter(|m| m["status"] == "sent").count();
        let deferred = statuses.iter().find(|m| {
            m["status"] == "queued"
                && m["next_attempt_at"].as_str().is_some_and(|at| {
                    chrono::DateTime::parse_from_rfc3339(at).is_ok_and(|at| {
                        at.with_timezone(&Utc) > Utc::now() + chrono::Duration::hours(23)
                    })
                })
        });
        if let Some(deferred) = deferred
            && sent == 2
        {
            assert_eq!(deferred["attempt_count"], 0);
            break;
        }
        assert!(Instant::now() < deadline, "{statuses:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(receiver.got.lock().expect("lock").len(), 2);
}

crate::on_both_databases!(
    a_daily_cap_defers_the_sends_past_it_by_a_day,
    a_campaign_over_a_webhook_channel_posts_one_call_per_contact,
    a_webhook_channel_posts_signed_json_retries_503_and_fails_on_410,
    a_webhook_into_this_servers_own_network_is_refused_without_the_flag,
);
