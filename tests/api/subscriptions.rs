//! Status-event subscriptions: a WhatsApp campaign's outcomes reach a subscriber's webhook,
//! signed and numbered without gaps; events the subscriber refused are dead letters that the
//! API lists and replays; bad requests get stable codes.
use std::{
    collections::{BTreeSet, HashMap},
    time::{Duration, Instant},
};

use fakes::WindowMode;
use reqwest::Method;
use serde_json::{Value, json};

use crate::{
    campaigns::wa_app_with,
    helpers::{Backend, TestApp, secret, spawn_app},
    webhook_channel::{Receiver, create_hook, start_receiver, verify},
};

const WAIT: Duration = Duration::from_secs(30);

/// A webhook channel posting to `url`; returns (id, signing secret).
async fn hook(app: &TestApp, name: &str, url: &str) -> (String, String) {
    let (code, ch) = create_hook(
        app,
        json!({"kind": "webhook", "name": name, "url": url, "allow_private_network": true,
               "limits": {"per_second": 50}}),
    )
    .await;
    assert_eq!(code, 201, "{ch}");
    let signing = ch["signing_secret"].as_str().expect("secret").to_owned();
    secret(&signing);
    (ch["id"].as_str().expect("id").to_owned(), signing)
}

/// The status events the receiver got, each checked against the signature.
fn events(receiver: &Receiver, signing: &str) -> Vec<Value> {
    receiver
        .got
        .lock()
        .expect("lock")
        .iter()
        .map(|r| {
            assert!(verify(signing, &r.signature, &r.body), "signed");
            serde_json::from_slice::<Value>(&r.body).expect("json")
        })
        .filter(|e| e["type"] == "message.status")
        .collect()
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn status_events_of_a_whatsapp_campaign_reach_a_subscriber_in_sequence(backend: Backend) {
    // Arrange: a WhatsApp number, four contacts (one undeliverable), a subscriber.
    let wa = wa_app_with(backend, WindowMode::Off, None, |_| {}).await;
    let app = &wa.app;
    let (url, receiver) = start_receiver().await;
    let (hook_id, signing) = hook(app, "events", &url).await;
    let (code, sub) = app
        .api(
            Method::POST,
            "subscriptions",
            Some(json!({"channel_id": hook_id})),
        )
        .await;
    assert_eq!(code, 201, "{sub}");
    let sub_id = sub["id"].as_str().expect("id").to_owned();
    assert_eq!(
        sub["events"],
        json!(["sent", "delivered", "read", "failed", "skipped"])
    );
    for i in 1..=4 {
        let (code, c) = app
            .api(
                Method::POST,
                "contacts",
                Some(json!({"phone": format!("+34600{i:06}"), "name": format!("N{i}")})),
            )
            .await;
        assert_eq!(code, 201, "{c}");
    }
    wa.fake.set_undeliverable("34600000004");

    // Act
    let (code, c) = app
        .api(
            Method::POST,
            "campaigns",
            Some(
                json!({"name": "Promo", "channel_id": wa.channel, "body": "Hola {{ nombre }}",
                        "start": true}),
            ),
        )
        .await;
    assert_eq!(code, 201, "{c}");
    let campaign_id = c["id"].as_str().expect("id").to_owned();

    // Assert: sent ×4, delivered ×3, read ×3, failed ×1 — eleven events, numbered 1..=11.
    wait_until("eleven status events", || {
        events(&receiver, &signing).len() >= 11
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = events(&receiver, &signing);
    assert_eq!(got.len(), 11, "no event twice: {got:#?}");
    let sequences: BTreeSet<i64> = got.iter().filter_map(|e| e["sequence"].as_i64()).collect();
    assert_eq!(sequences, (1..=11).collect(), "numbered without gaps");
    let mut by_message: HashMap<String, Vec<String>> = HashMap::new();
    for e in &got {
        assert_eq!(e["subscription_id"], sub_id.as_str());
        assert_eq!(e["message"]["campaign_id"], campaign_id.as_str(), "{e}");
        by_message
            .entry(e["message"]["id"].as_str().expect("id").to_owned())
            .or_default()
            .push(e["event"].as_str().expect("event").to_owned());
    }
    assert_eq!(by_message.len(), 4, "{by_message:?}");
    let mut shapes: Vec<Vec<String>> = by_message
        .into_values()
        .map(|mut v| {
            v.sort();
            v
        })
        .collect();
    shapes.sort();
    assert_eq!(
        shapes,
        vec![
            vec!["delivered", "read", "sent"],
            vec!["delivered", "read", "sent"],
            vec!["delivered", "read", "sent"],
            vec!["failed", "sent"],
        ]
    );
    let failed = got.iter().find(|e| e["event"] == "failed").expect("failed");
    assert_eq!(failed["error"]["code"], "undeliverable", "{failed}");
    let (_, sub) = app.get_json(&format!("subscriptions/{sub_id}")).await;
    assert_eq!(sub["sequence"], 11, "{sub}");
}

async fn refused_events_are_dead_letters_that_replay(backend: Backend) {
    // Arrange: messages go to one webhook, their events to another that answers 410.
    let app = spawn_app(backend).await;
    let (crm_url, _crm) = start_receiver().await;
    let (crm, _) = hook(&app, "crm", &crm_url).await;
    let (url, receiver) = start_receiver().await;
    let (events_hook, signing) = hook(&app, "events", &url).await;
    receiver
        .answer
        .store(410, std::sync::atomic::Ordering::SeqCst);
    let (code, sub) = app
        .api(
            Method::POST,
            "subscriptions",
            Some(json!({"channel_id": events_hook, "events": ["sent"], "source_channel_id": crm})),
        )
        .await;
    assert_eq!(code, 201, "{sub}");
    let sub_id = sub["id"].as_str().expect("id").to_owned();

    // Act: two messages are sent; their `sent` events are refused.
    for to in ["a", "b"] {
        let res = app
            .post(
                "messages",
                &json!({"channel_id": crm, "to": to, "text": "hi"}),
            )
            .await;
        assert_eq!(res.status().as_u16(), 202);
    }
    let path = format!("subscriptions/{sub_id}/dead-letters");
    let deadline = Instant::now() + WAIT;
    let dead = loop {
        let (code, dead) = app.get_json(&path).await;
        assert_eq!(code, 200, "{dead}");
        if dead["items"].as_array().expect("items").len() == 2 {
            break dead;
        }
        assert!(Instant::now() < deadline, "no dead letters: {dead:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    // Assert: listed with the refusal and the document; no events about the failed events.
    for item in dead["items"].as_array().expect("items") {
        assert_eq!(item["error_code"], "webhook-gone", "{item}");
        assert_eq!(item["event"]["event"], "sent", "{item}");
    }
    let (_, sub) = app.get_json(&format!("subscriptions/{sub_id}")).await;
    assert_eq!(sub["sequence"], 2, "{sub}");

    // Act: the subscriber is fixed; one dead letter is replayed by id, then the rest.
    receiver
        .answer
        .store(0, std::sync::atomic::Ordering::SeqCst);
    let first = dead["items"][0]["id"].as_str().expect("id").to_owned();
    let replay = format!("subscriptions/{sub_id}/dead-letters/replay");
    let (code, body) = app
        .api(Method::POST, &replay, Some(json!({"ids": [first]})))
        .await;
    assert_eq!((code, &body["replayed"]), (202, &json!(1)), "{body}");
    let (code, body) = app.api(Method::POST, &replay, None).await;
    assert_eq!(code, 202, "{body}");

    // Assert: both reach the subscriber, with their first sequence numbers.
    wait_until("two accepted events", || {
        receiver.answer.load(std::sync::atomic::Ordering::SeqCst) == 0
            && events(&receiver, &signing)
                .iter()
                .map(|e| e["sequence"].as_i64())
                .collect::<BTreeSet<_>>()
                .len()
                == 2
    })
    .await;
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, dead) = app.get_json(&path).await;
        if dead["items"].as_array().expect("items").is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "still dead: {dead:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, sub) = app.get_json(&format!("subscriptions/{sub_id}")).await;
    assert_eq!(sub["sequence"], 2, "a replay keeps its number: {sub}");
}

async fn subscription_requests_are_checked(backend: Backend) {
    let app = spawn_app(backend).await;
    let bot = app.create_bot(None).await;
    let (hook_id, _) = hook(&app, "events", "http://127.0.0.1:9/hook").await;
    for (body, code, error) in [
        (json!({"channel_id": bot}), 422, "not-a-webhook-channel"),
        (json!({"channel_id": "nope"}), 422, "not-a-webhook-channel"),
        (
            json!({"channel_id": hook_id, "events": ["opened"]}),
            422,
            "unknown-event",
        ),
        (
            json!({"channel_id": hook_id, "source_channel_id": "nope"}),
            404,
            "channel-not-found",
        ),
        (
            json!({"channel_id": hook_id, "extra": 1}),
            422,
            "invalid-body",
        ),
    ] {
        let (status, answer) = app
            .api(Method::POST, "subscriptions", Some(body.clone()))
            .await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (code, Some(error)),
            "{body} → {answer}"
        );
    }
    let (status, answer) = app.get_json("subscriptions/nope").await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (404, Some("subscription-not-found"))
    );
    let (status, list) = app.get_json("subscriptions").await;
    assert_eq!(
        (status, list["items"].as_array().map(Vec::len)),
        (200, Some(0))
    );
}

crate::on_both_databases!(
    status_events_of_a_whatsapp_campaign_reach_a_subscriber_in_sequence,
    refused_events_are_dead_letters_that_replay,
    subscription_requests_are_checked,
);
