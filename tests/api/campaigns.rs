//! Campaigns over the WhatsApp Cloud API against the stateful fake (CHANNELS.md §2): signed
//! status webhooks, the 24 h window, opt-outs, pause/resume/cancel, restart without duplicates,
//! missing variables, dashboards and the WhatsApp sender's `/send-messages`.
use std::{collections::HashSet, time::Duration};

use fakes::{FakeWhatsApp, FakeWhatsAppConfig, WindowMode};
use reqwest::Method;
use serde_json::{Value, json};

use crate::{
    helpers::{Backend, TestApp, secret, spawn_app_with, status_and_json},
    on_both_databases,
};

const NUMBER: &str = "106540352242922";
const ACCESS_TOKEN: &str = "EAAGtest-access-token-0123456789";
const APP_SECRET: &str = "wa-app-secret-0123456789";

pub struct Wa {
    pub app: TestApp,
    pub fake: FakeWhatsApp,
    pub channel: String,
    webhook_path: String,
    verify_token: String,
}

async fn wa_app(backend: Backend, mode: WindowMode, limits: Option<Value>) -> Wa {
    wa_app_with(backend, mode, limits, |_| {}).await
}

/// A server with one WhatsApp number registered on a fresh fake; `tweak` adjusts settings.
pub async fn wa_app_with(
    backend: Backend,
    mode: WindowMode,
    limits: Option<Value>,
    tweak: impl FnOnce(&mut pregonero::config::Settings),
) -> Wa {
    let fake = FakeWhatsApp::start(FakeWhatsAppConfig {
        window_mode: mode,
        ..Default::default()
    })
    .await
    .expect("fake whatsapp");
    fake.add_number(NUMBER, ACCESS_TOKEN, APP_SECRET);
    let base = format!("{}/v21.0", fake.base_url());
    let app = spawn_app_with(backend, move |s| {
        s.whatsapp.api_base_url = base;
        s.whatsapp.throughput_backoff_ms = 200;
        s.campaigns.tick_ms = 50;
        tweak(s);
    })
    .await;
    secret(ACCESS_TOKEN);
    secret(APP_SECRET);
    let mut body = json!({"kind": "whatsapp_cloud", "name": "wa", "phone_number_id": NUMBER,
                          "access_token": ACCESS_TOKEN, "app_secret": APP_SECRET});
    if let Some(limits) = limits {
        body["limits"] = limits;
    }
    let (status, ch) = app.api(Method::POST, "channels", Some(body)).await;
    assert_eq!(status, 201, "{ch}");
    assert!(ch.get("access_token").is_none() && ch.get("app_secret").is_none());
    let webhook_path = ch["webhook_path"]
        .as_str()
        .expect("webhook path")
        .to_owned();
    let verify_token = ch["verify_token"]
        .as_str()
        .expect("verify token")
        .to_owned();
    secret(&verify_token);
    fake.set_webhook(NUMBER, &format!("{}{webhook_path}", app.address));
    Wa {
        channel: ch["id"].as_str().expect("id").to_owned(),
        app,
        fake,
        webhook_path,
        verify_token,
    }
}

async fn contact(app: &TestApp, body: Value) -> String {
    let (status, c) = app.api(Method::POST, "contacts", Some(body)).await;
    assert_eq!(status, 201, "{c}");
    c["id"].as_str().expect("id").to_owned()
}

fn phone(i: usize) -> String {
    format!("+34600{i:06}")
}

async fn campaign(app: &TestApp, body: Value) -> (u16, Value) {
    app.api(Method::POST, "campaigns", Some(body)).await
}

/// Polls `GET /api/v1/<path>` until `done` holds (panics after `timeout`).
async fn wait_for(
    app: &TestApp,
    path: &str,
    timeout: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let (status, v) = app.get_json(path).await;
        assert_eq!(status, 200, "{v}");
        if done(&v) {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{path} did not get there: {v:#}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Polls the campaign until `done` holds (panics after `timeout`).
async fn wait_campaign(
    app: &TestApp,
    id: &str,
    timeout: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    wait_for(app, &format!("campaigns/{id}"), timeout, done).await
}

async fn whatsapp_campaign_end_to_end(backend: Backend) {
    let wa = wa_app(backend, WindowMode::Off, None).await;
    let app = &wa.app;
    for i in 1..=4 {
        contact(app, json!({"phone": phone(i), "name": format!("N{i}"), "group": if i % 2 == 0 { "VIP" } else { "General" }})).await;
    }
    contact(
        app,
        json!({"phone": phone(5), "name": "Gone", "opted_out": true}),
    )
    .await;
    wa.fake.set_undeliverable(&phone(4)[1..]);

    let (status, c) = campaign(app, json!({"name": "Promo", "channel_id": wa.channel, "body": "Hola {{ nombre }}", "start": true})).await;
    assert_eq!(status, 201, "{c}");
    assert_eq!(
        c["counters"]["total"], 4,
        "opted-out contacts are not in the audience: {c}"
    );
    let id = c["id"].as_str().expect("id");
    let c = wait_campaign(app, id, Duration::from_secs(30), |c| {
        c["status"] == "completed" && c["counters"]["read"] == 3 && c["counters"]["failed"] == 1
    })
    .await;
    assert_eq!(c["counters"]["sent"], 3, "{c}");
    assert_eq!(c["progress"], 100.0);

    let sent = wa.fake.sent();
    let texts: HashSet<_> = sent.iter().filter_map(|s| s.body.clone()).collect();
    assert_eq!(sent.len(), 4, "one message per contact: {sent:?}");
    assert!(
        texts.contains("Hola N1") && texts.contains("Hola N3"),
        "{texts:?}"
    );
    assert!(
        !sent.iter().any(|s| s.to.ends_with("600000005")),
        "opted out"
    );

    let (_, rec) = app
        .get_json(&format!("campaigns/{id}/recipients?status=failed"))
        .await;
    assert_eq!(rec["items"][0]["error_code"], "undeliverable", "{rec}");
    let (_, rec) = app
        .get_json(&format!("campaigns/{id}/recipients?status=sent"))
        .await;
    assert!(
        rec["items"]
            .as_array()
            .expect("items")
            .iter()
            .all(|r| !r["read_at"].is_null()
                && r["provider_message_id"]
                    .as_str()
                    .is_some_and(|p| p.starts_with("wamid."))),
        "{rec}"
    );

    // Dashboards, from the rollups, through both the API and the WhatsApp sender's paths.
    let (status, month) = app.get_json("dashboard/current-month").await;
    assert_eq!(status, 200);
    assert_eq!(
        (month["sent"].as_i64(), month["errors"].as_i64()),
        (Some(3), Some(1)),
        "{month}"
    );
    assert_eq!(month["success_rate"], 75.0);
    let seed = app
        .client
        .get(format!("{}/dashboard/current-month", app.address))
        .bearer_auth(&app.api_key);
    let (status, seed) = status_and_json(seed).await;
    assert_eq!((status, &seed["sent"]), (200, &json!(3)), "{seed}");
    let (_, groups) = app.get_json("dashboard/by-group").await;
    let vip = groups["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .find(|g| g["group"] == "VIP")
        .cloned()
        .expect("VIP");
    assert_eq!(
        (vip["sent"].as_i64(), vip["errors"].as_i64()),
        (Some(1), Some(1)),
        "{groups}"
    );
    let (_, top) = app.get_json("dashboard/by-contact?limit=2").await;
    assert_eq!(
        top["contacts"].as_array().expect("contacts").len(),
        2,
        "{top}"
    );
    let (_, timeline) = app.get_json("dashboard/timeline?days=7").await;
    let days = timeline["days"].as_array().expect("days");
    assert_eq!(days.len(), 7);
    assert_eq!(days[6]["sent"], 3, "{timeline}");
    let clear = app
        .client
        .delete(format!("{}/cache/user", app.address))
        .bearer_auth(&app.api_key);
    let (status, cleared) = status_and_json(clear).await;
    assert_eq!(
        (status, &cleared["success"]),
        (200, &json!(true)),
        "{cleared}"
    );
    let (_, again) = app.get_json("dashboard/current-month").await;
    assert_eq!(
        (again["sent"].as_i64(), again["errors"].as_i64()),
        (Some(3), Some(1)),
        "rebuilt from the ledger: {again}"
    );
    let status_req = app
        .client
        .get(format!("{}/connection-status", app.address))
        .bearer_auth(&app.api_key);
    let (_, conn) = status_and_json(status_req).await;
    assert_eq!(conn["connected"], true, "{conn}");
}

async fn webhooks_window_and_opt_out(backend: Backend) {
    let wa = wa_app(backend, WindowMode::SyncError, None).await;
    let app = &wa.app;
    // Verification handshake.
    let url = format!("{}{}", app.address, wa.webhook_path);
    let ok = app
        .client
        .get(&url)
        .query(&[
            ("hub.mode", "subscribe"),
            ("hub.verify_token", wa.verify_token.as_str()),
            ("hub.challenge", "1158201444"),
        ])
        .send()
        .await
        .expect("verify");
    assert_eq!(ok.status().as_u16(), 200);
    assert_eq!(ok.text().await.expect("body"), "1158201444");
    let bad = app
        .client
        .get(&url)
        .query(&[
            ("hub.mode", "subscribe"),
            ("hub.verify_token", "nope"),
            ("hub.challenge", "1"),
        ])
        .send()
        .await
        .expect("verify");
    assert_eq!(bad.status().as_u16(), 403);
    // A callback signed with another secret changes nothing.
    let body = json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages", "value": {"messages": [{"from": phone(1)[1..].to_owned(), "id": "wamid.x", "timestamp": "1750857384", "type": "text", "text": {"body": "STOP"}}]}}]}]});
    let forged = app
        .client
        .post(&url)
        .header("x-hub-signature-256", format!("sha256={}", "ab".repeat(32)))
        .json(&body);
    let (status, err) = status_and_json(forged).await;
    assert_eq!(
        (status, err["error"].as_str()),
        (401, Some("invalid-signature"))
    );

    let inside = contact(app, json!({"phone": phone(1), "name": "Ana"})).await;
    let outside = contact(app, json!({"phone": phone(2), "name": "Luis"})).await;
    let (_, c) = app.get_json(&format!("contacts/{inside}")).await;
    assert_eq!(c["opted_out"], false, "the forged STOP was ignored: {c}");
    wa.fake
        .inbound(NUMBER, &phone(1)[1..], "hola")
        .await
        .expect("inbound accepted");

    let (status, c) = campaign(
        app,
        json!({"name": "W", "channel_id": wa.channel, "body": "Hola {{ nombre }}", "start": true}),
    )
    .await;
    assert_eq!(status, 201, "{c}");
    let id = c["id"].as_str().expect("id");
    let c = wait_campaign(app, id, Duration::from_secs(30), |c| {
        c["status"] == "completed"
    })
    .await;
    assert_eq!(
        (
            c["counters"]["sent"].as_i64(),
            c["counters"]["failed"].as_i64()
        ),
        (Some(1), Some(1)),
        "{c}"
    );
    let (_, rec) = app
        .get_json(&format!("campaigns/{id}/recipients?status=failed"))
        .await;
    assert_eq!(rec["items"][0]["contact_id"], outside.as_str());
    assert_eq!(
        rec["items"][0]["error_code"], "outside-service-window",
        "{rec}"
    );
    assert!(
        rec["items"][0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("24 h")),
        "a clear reason: {rec}"
    );

    // "BAJA" from a contact opts them out; the next campaign skips them.
    wa.fake
        .inbound(NUMBER, &phone(1)[1..], "baja")
        .await
        .expect("inbound accepted");
    let (_, c) = app.get_json(&format!("contacts/{inside}")).await;
    assert_eq!(c["opted_out"], true, "{c}");

    // A rejected token (190) stops the account, and its owner's live stream says so.
    let stream = crate::live::open(&app.client, &app.address, &app.api_key).await;
    wa.fake.fail_next(NUMBER, 190, 401, 1);
    let (_, c) = campaign(app, json!({"name": "X", "channel_id": wa.channel, "body": "Hola", "audience": {"contact_ids": [outside]}, "start": true})).await;
    let id = c["id"].as_str().expect("id");
    wait_campaign(app, id, Duration::from_secs(30), |c| {
        c["status"] == "completed"
    })
    .await;
    let (_, ch) = app.get_json(&format!("channels/{}", wa.channel)).await;
    assert_eq!(ch["status"], "unauthorized", "{ch}");
    let (seen, text) = crate::live::read_until(
        stream,
        "\"status\":\"unauthorized\"",
        Duration::from_secs(10),
    )
    .await;
    assert!(seen, "{text}");
    assert!(text.contains("event: channel.status\ndata: "), "{text}");
    assert!(
        text.contains(&format!("\"channel_id\":\"{}\"", wa.channel)),
        "{text}"
    );
}

async fn pause_resume_restart_cancel(backend: Backend) {
    // 5 messages a second: slow enough to pause and restart in the middle.
    let mut wa = wa_app(backend, WindowMode::Off, Some(json!({"per_second": 5}))).await;
    for i in 1..=20 {
        contact(&wa.app, json!({"phone": phone(i), "name": format!("N{i}")})).await;
    }
    let (_, c) = campaign(
        &wa.app,
        json!({"name": "P", "channel_id": wa.channel, "body": "Hola {{ nombre }}", "start": true}),
    )
    .await;
    let id = c["id"].as_str().expect("id").to_owned();
    // The fake's count, not the campaign's counters (those are refreshed once a second).
    assert!(wa.fake.wait_for_sent(3, Duration::from_secs(20)).await);
    let (status, c) = wa
        .app
        .api(Method::POST, &format!("campaigns/{id}/pause"), None)
        .await;
    assert_eq!((status, c["status"].as_str()), (200, Some("paused")), "{c}");
    // Messages already with the sender (at most `lookahead_secs` = 2 s of the account's rate)
    // finish; then nothing more goes out.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let paused_at = wa.fake.sent().len();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        wa.fake.sent().len(),
        paused_at,
        "nothing is sent while paused"
    );
    assert!(paused_at < 20);
    let (status, _) = wa
        .app
        .api(Method::POST, &format!("campaigns/{id}/pause"), None)
        .await;
    assert_eq!(status, 409, "pausing twice is a conflict");

    let (status, _) = wa
        .app
        .api(Method::POST, &format!("campaigns/{id}/resume"), None)
        .await;
    assert_eq!(status, 200);
    let target = (paused_at + 4).min(20);
    wait_campaign(&wa.app, &id, Duration::from_secs(20), |c| {
        c["counters"]["sent"].as_i64() >= Some(target as i64)
    })
    .await;
    // Restart mid-campaign: it continues where it was.
    wa.app.stop_server().await;
    wa.app.start_server().await;
    wa.fake
        .set_webhook(NUMBER, &format!("{}{}", wa.app.address, wa.webhook_path));
    let c = wait_campaign(&wa.app, &id, Duration::from_secs(30), |c| {
        c["status"] == "completed"
    })
    .await;
    assert_eq!(c["counters"]["sent"], 20, "{c}");
    let sent = wa.fake.sent();
    let unique: HashSet<_> = sent.iter().map(|s| s.to.clone()).collect();
    assert_eq!(
        (sent.len(), unique.len()),
        (20, 20),
        "no duplicates, no losses"
    );

    // Cancel: whatever was not sent is skipped.
    let (_, c) = campaign(
        &wa.app,
        json!({"name": "C", "channel_id": wa.channel, "body": "Otra vez", "start": true}),
    )
    .await;
    let id = c["id"].as_str().expect("id").to_owned();
    let (status, c) = wa
        .app
        .api(Method::POST, &format!("campaigns/{id}/cancel"), None)
        .await;
    assert_eq!(
        (status, c["status"].as_str()),
        (200, Some("cancelled")),
        "{c}"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let c = wait_campaign(&wa.app, &id, Duration::from_secs(10), |c| {
        c["counters"]["queued"] == 0
    })
    .await;
    let (sent, skipped) = (
        c["counters"]["sent"].as_i64().unwrap_or(0),
        c["counters"]["skipped"].as_i64().unwrap_or(0),
    );
    assert_eq!(sent + skipped, 20, "{c}");
    assert!(skipped > 0, "{c}");
}

async fn missing_variables_and_send_messages(backend: Backend) {
    let wa = wa_app(backend, WindowMode::Off, None).await;
    let app = &wa.app;
    contact(
        app,
        json!({"phone": phone(1), "name": "Ana", "noun": "Sra."}),
    )
    .await;
    let lacking = contact(app, json!({"phone": phone(2), "name": "Luis"})).await;
    let (status, err) = campaign(app, json!({"name": "M", "channel_id": wa.channel, "body": "Hola {{ sustantivo }} {{ nombre }}", "start": true})).await;
    assert_eq!(
        (status, err["error"].as_str()),
        (422, Some("missing-variables")),
        "{err}"
    );
    assert_eq!(err["contacts"][0]["contact_id"], lacking.as_str());
    assert_eq!(err["contacts"][0]["missing"], json!(["sustantivo"]));
    let (_, list) = app.get_json("campaigns").await;
    let draft = list["items"][0].clone();
    assert_eq!(draft["status"], "draft", "nothing was sent: {list}");
    let id = draft["id"].as_str().expect("id");
    let (status, c) = app
        .api(
            Method::POST,
            &format!("campaigns/{id}/start?skip_missing=true"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{c}");
    let c = wait_campaign(app, id, Duration::from_secs(30), |c| {
        c["status"] == "completed"
    })
    .await;
    assert_eq!(
        (
            c["counters"]["sent"].as_i64(),
            c["counters"]["skipped"].as_i64()
        ),
        (Some(1), Some(1)),
        "{c}"
    );

    // The WhatsApp sender's form post: CSV (semicolons, Latin-1 is handled by the importer) + message.
    // Sent with an Idempotency-Key, and sent again as a client does after a timeout.
    let csv = "telefono;nombre;grupo\n600 000 003;Eva;VIP\nnot-a-phone;X;Y\n";
    let send = || {
        let form = reqwest::multipart::Form::new()
            .part(
                "file",
                reqwest::multipart::Part::bytes(csv.as_bytes().to_vec())
                    .file_name("c.csv")
                    .mime_str("text/csv")
                    .expect("mime"),
            )
            .text("message", "Hola {{ nombre }} ({{ grupo }})")
            // A browser's form sends its blank fields too: they mean "not given".
            .text("name", "")
            .text("channel_id", " ");
        app.client
            .post(format!("{}/send-messages", app.address))
            .bearer_auth(&app.api_key)
            .header("Idempotency-Key", "form-1")
            .multipart(form)
    };
    let (status, out) = status_and_json(send()).await;
    assert_eq!(status, 200, "{out}");
    let retry = send().send().await.expect("retry");
    assert!(retry.headers().get("idempotent-replayed").is_some());
    let retried: serde_json::Value = retry.json().await.expect("json");
    assert_eq!(
        retried["campaignId"], out["campaignId"],
        "the retry started no second campaign"
    );
    assert_eq!(
        (out["queued"].as_i64(), out["invalidRows"].as_i64()),
        (Some(1), Some(1)),
        "{out}"
    );
    let id = out["campaignId"].as_str().expect("campaign id");
    wait_campaign(app, id, Duration::from_secs(30), |c| {
        c["status"] == "completed"
    })
    .await;
    assert!(
        wa.fake
            .sent()
            .iter()
            .any(|s| s.body.as_deref() == Some("Hola Eva (VIP)"))
    );

    // With a picture, as the seed's form sends it: every recipient gets it with the text as
    // its caption. A second file in one form is refused, and so is a file the number cannot
    // send (WhatsApp takes images up to 5 MB), before any contact or campaign is written.
    let picture = || {
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        png.extend_from_slice(&[7; 2000]);
        reqwest::multipart::Part::bytes(png)
            .file_name("oferta.png")
            .mime_str("image/png")
            .expect("mime")
    };
    let form = |extra: Vec<(&'static str, reqwest::multipart::Part)>| {
        let mut form = reqwest::multipart::Form::new()
            .part(
                "file",
                reqwest::multipart::Part::bytes(b"telefono;nombre\n600 000 004;Leo\n".to_vec())
                    .file_name("c.csv")
                    .mime_str("text/csv")
                    .expect("mime"),
            )
            .text("message", "Mira, {{ nombre }}");
        for (name, part) in extra {
            form = form.part(name, part);
        }
        form
    };
    let post = |form: reqwest::multipart::Form| {
        app.client
            .post(format!("{}/send-messages", app.address))
            .bearer_auth(&app.api_key)
            .multipart(form)
    };
    let (_, campaigns) = app.api(Method::GET, "campaigns", None).await;
    let before = campaigns.to_string().matches("\"id\"").count();
    let (status, out) =
        status_and_json(post(form(vec![("image", picture()), ("media", picture())]))).await;
    assert_eq!(
        (status, out["error"].as_str()),
        (400, Some("too-many-files")),
        "{out}"
    );
    let big = reqwest::multipart::Part::bytes(
        [b"\x89PNG\r\n\x1a\n".as_slice(), &[0; 6 * 1024 * 1024]].concat(),
    )
    .file_name("big.png")
    .mime_str("image/png")
    .expect("mime");
    let (status, out) = status_and_json(post(form(vec![("image", big)]))).await;
    assert_eq!(status, 413, "{out}");
    let (status, out) = status_and_json(post(form(vec![("image", picture())]))).await;
    assert_eq!(status, 200, "{out}");
    let (_, campaigns) = app.api(Method::GET, "campaigns", None).await;
    assert_eq!(
        campaigns.to_string().matches("\"id\"").count(),
        before + 1,
        "only the accepted form made a campaign"
    );
    let id = out["campaignId"].as_str().expect("campaign id");
    wait_campaign(app, id, Duration::from_secs(30), |c| {
        c["status"] == "completed"
    })
    .await;
    let sent = wa.fake.sent();
    let leo = sent
        .iter()
        .find(|s| s.body.as_deref() == Some("Mira, Leo"))
        .expect("Leo's message");
    assert_eq!(leo.kind, "image", "{leo:?}");
    assert!(
        leo.media_id.is_some() || leo.media_link.is_some(),
        "{leo:?}"
    );
}

/// Polls a message until `done` holds (panics after `timeout`).
async fn wait_message(
    app: &TestApp,
    id: &str,
    timeout: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    wait_for(app, &format!("messages/{id}"), timeout, done).await
}

/// CHANNELS.md §2 error scopes against the fake: 131056 holds back one message (its attempt
/// refunded) while the number goes on; 131048 pauses the whole number; and the pair rate is
/// kept by pacing, so two messages to one person go out six seconds apart without a 131056.
async fn errors_by_scope_and_pair_pacing(backend: Backend) {
    let wa = wa_app_with(backend, WindowMode::Off, None, |s| {
        s.whatsapp.quality_backoff_secs = 1;
    })
    .await;
    let app = &wa.app;
    let channel = wa.channel.as_str();
    let send = |to: String, text: &'static str| async move {
        let (status, m) = app
            .api(
                Method::POST,
                "messages",
                Some(json!({"channel_id": channel, "to": to, "text": text})),
            )
            .await;
        assert_eq!(status, 202, "{m}");
        m["id"].as_str().expect("id").to_owned()
    };
    let sent_at = |text: &str| {
        wa.fake
            .sent()
            .into_iter()
            .find(|s| s.body.as_deref() == Some(text))
            .map(|s| s.at)
    };

    // 131056: that message waits (4 s), the number does not.
    wa.fake.fail_next(NUMBER, 131056, 400, 1);
    let held = send(phone(1), "uno").await;
    wait_message(app, &held, Duration::from_secs(10), |m| {
        m["last_error_code"] == "recipient-rate-limited"
    })
    .await;
    let other = send(phone(2), "dos").await;
    wait_message(app, &other, Duration::from_secs(3), |m| {
        m["status"] == "sent"
    })
    .await;
    let (_, m) = app.get_json(&format!("messages/{held}")).await;
    assert_eq!(m["status"], "queued", "still waiting its turn: {m}");
    let m = wait_message(app, &held, Duration::from_secs(15), |m| {
        m["status"] == "sent"
    })
    .await;
    assert_eq!(
        m["attempt_count"], 1,
        "the pair-rate hit is not an attempt: {m}"
    );

    // 131048: the whole number pauses for whatsapp.quality_backoff_secs.
    let before = std::time::Instant::now();
    wa.fake.fail_next(NUMBER, 131048, 400, 1);
    let throttled = send(phone(3), "tres").await;
    wait_message(app, &throttled, Duration::from_secs(10), |m| {
        m["last_error_code"] == "quality-throttled"
    })
    .await;
    let next = send(phone(4), "cuatro").await;
    for id in [&throttled, &next] {
        wait_message(app, id, Duration::from_secs(10), |m| m["status"] == "sent").await;
    }
    for text in ["tres", "cuatro"] {
        let at = sent_at(text).expect("sent");
        assert!(
            at.duration_since(before) >= Duration::from_millis(950),
            "{text} went out {:?} after the 131048, inside the pause",
            at.duration_since(before)
        );
    }

    // The pair rate (1 per 6 s per person) is kept by pacing, not discovered by errors.
    let first = send(phone(5), "a").await;
    let second = send(phone(5), "b").await;
    for id in [&first, &second] {
        wait_message(app, id, Duration::from_secs(20), |m| m["status"] == "sent").await;
    }
    let (a, b) = (sent_at("a").expect("a"), sent_at("b").expect("b"));
    let gap = a.max(b).duration_since(a.min(b));
    assert!(
        gap >= Duration::from_millis(5_900),
        "two messages to one person {gap:?} apart"
    );
    let stats = wa.fake.stats();
    assert_eq!(
        (stats.rejected_131056, stats.rejected_130429),
        (1, 0),
        "only the injected 131056: {stats:?}"
    );
}

/// Posts a status callback signed with the number's app secret; returns the status and body.
async fn post_status(wa: &Wa, wamid: &str, status: &str, at: i64) -> (u16, Value, Option<String>) {
    use hmac::Mac;
    let body = json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages",
        "value": {"statuses": [{"id": wamid, "status": status, "timestamp": at.to_string(), "recipient_id": "34600000001"}]}}]}]});
    let bytes = serde_json::to_vec(&body).expect("json");
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(APP_SECRET.as_bytes()).expect("hmac key");
    mac.update(&bytes);
    let res = wa
        .app
        .client
        .post(format!("{}{}", wa.app.address, wa.webhook_path))
        .header("content-type", "application/json")
        .header(
            "x-hub-signature-256",
            format!("sha256={}", hex::encode(mac.finalize().into_bytes())),
        )
        .body(bytes)
        .send()
        .await
        .expect("webhook");
    let code = res.status().as_u16();
    let retry_after = res
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (code, res.json().await.unwrap_or(Value::Null), retry_after)
}

async fn a_status_for_a_message_not_recorded_yet_is_asked_again(backend: Backend) {
    // Arrange
    let wa = wa_app(backend, WindowMode::SyncError, None).await;
    let now = chrono::Utc::now().timestamp();

    // Act: a fresh status for an id we never sent, and a stale one.
    let started = std::time::Instant::now();
    let fresh = post_status(&wa, "wamid.not-ours-yet", "delivered", now).await;
    let waited = started.elapsed();
    let stale = post_status(&wa, "wamid.someone-elses", "delivered", now - 3600).await;

    // Assert: the fresh one is looked up again for a moment, then asked for again (503 with
    // Retry-After); the stale one is someone else's message and is acknowledged.
    assert_eq!(
        (fresh.0, fresh.1["error"].as_str(), fresh.2.as_deref()),
        (503, Some("message-not-recorded-yet"), Some("1")),
        "{:?}",
        fresh.1
    );
    assert!(
        waited >= Duration::from_millis(150),
        "looked again before answering: {waited:?}"
    );
    assert_eq!(stale.0, 200, "{:?}", stale.1);
}

/// The rollups count every outcome once while folds race: dashboard reads fold from many
/// requests at once during a campaign, the server folds every second, and a rebuild lands while
/// outcomes are still pending. Totals end equal to the ledger.
async fn rollups_count_each_outcome_once_while_folds_race(backend: Backend) {
    const N: usize = 60;
    let wa = wa_app(backend, WindowMode::Off, None).await;
    let app = &wa.app;
    let csv: String = std::iter::once("nombre;telefono\n".to_owned())
        .chain((0..N).map(|i| format!("P{i};{}\n", phone(100 + i))))
        .collect();
    let import = app
        .client
        .post(format!(
            "{}/api/v1/contacts/imports?filename=r.csv",
            app.address
        ))
        .bearer_auth(&app.api_key)
        .header("content-type", "text/csv")
        .body(csv);
    let (status, imp) = status_and_json(import).await;
    assert_eq!(status, 202, "{imp}");
    let imp_id = imp["id"].as_str().expect("id");
    wait_for(
        app,
        &format!("contacts/imports/{imp_id}"),
        Duration::from_secs(30),
        |i| i["status"] == "completed",
    )
    .await;
    let (status, c) = campaign(app, json!({"name": "Race", "channel_id": wa.channel, "body": "Hola {{ nombre }}", "start": true})).await;
    assert_eq!(status, 201, "{c}");
    let id = c["id"].as_str().expect("id").to_owned();
    let mut rebuilt = false;
    loop {
        let reads = (0..8).map(|_| app.get_json("dashboard/current-month"));
        for (status, v) in futures::future::join_all(reads).await {
            assert_eq!(status, 200, "{v}");
        }
        let (_, c) = app.get_json(&format!("campaigns/{id}")).await;
        if !rebuilt && c["counters"]["sent"].as_i64().unwrap_or(0) >= (N / 2) as i64 {
            let clear = app
                .client
                .delete(format!("{}/cache/user", app.address))
                .bearer_auth(&app.api_key);
            let (status, cleared) = status_and_json(clear).await;
            assert_eq!(status, 200, "{cleared}");
            rebuilt = true;
        }
        if c["status"] == "completed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(rebuilt, "the rebuild ran mid-campaign");
    let (_, month) = app.get_json("dashboard/current-month").await;
    assert_eq!(month["sent"].as_i64(), Some(N as i64), "{month}");
    assert_eq!(month["errors"].as_i64(), Some(0), "{month}");
    let (_, timeline) = app.get_json("dashboard/timeline?days=1").await;
    assert_eq!(
        timeline["days"][0]["sent"].as_i64(),
        Some(N as i64),
        "{timeline}"
    );
    let (_, top) = app.get_json("dashboard/by-contact?limit=100").await;
    let per_contact: Vec<i64> = top["contacts"]
        .as_array()
        .expect("contacts")
        .iter()
        .map(|c| c["sent"].as_i64().expect("sent"))
        .collect();
    assert_eq!(per_contact, vec![1; N], "{top}");
}

/// An audience above `campaigns.prepare_inline_max` is listed in the background: the start
/// answers at once with the campaign `preparing`, and whichever process runs campaigns builds the
/// list and sends it, each contact once; here the process that started it runs none, and the
/// list is built after a restart by one that does. A preparing campaign can be cancelled.
async fn a_large_audience_is_prepared_in_the_background(backend: Backend) {
    let mut wa = wa_app_with(backend, WindowMode::Off, None, |s| {
        s.campaigns.prepare_inline_max = 5;
    })
    .await;
    for i in 1..=12 {
        contact(&wa.app, json!({"phone": phone(i), "name": format!("N{i}")})).await;
    }
    wa.app.stop_server().await;
    wa.app.options.workers = false;
    wa.app.start_server().await;
    let body = json!({"name": "Grande", "channel_id": wa.channel, "body": "Hola {{ nombre }}", "start": true});
    let (status, c) = campaign(&wa.app, body.clone()).await;
    assert_eq!((status, &c["status"]), (201, &json!("preparing")), "{c}");
    let id = c["id"].as_str().expect("id").to_owned();
    let (status, other) = campaign(&wa.app, body).await;
    assert_eq!(status, 201, "{other}");
    let other = other["id"].as_str().expect("id").to_owned();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, c) = wa.app.get_json(&format!("campaigns/{id}")).await;
    assert_eq!(
        (&c["status"], &c["counters"]["total"]),
        (&json!("preparing"), &json!(0)),
        "no runner here: {c}"
    );
    // Cancelled while preparing: nothing of it is ever sent.
    let (status, x) = wa
        .app
        .api(Method::POST, &format!("campaigns/{other}/cancel"), None)
        .await;
    assert_eq!((status, &x["status"]), (200, &json!("cancelled")), "{x}");

    wa.app.stop_server().await;
    wa.app.options.workers = true;
    wa.app.start_server().await;
    let c = wait_campaign(&wa.app, &id, Duration::from_secs(30), |c| {
        c["status"] == "completed" && c["counters"]["sent"] == 12
    })
    .await;
    assert_eq!(c["counters"]["total"], 12, "{c}");
    let sent = wa.fake.sent();
    let to: HashSet<_> = sent.iter().map(|s| s.to.clone()).collect();
    assert_eq!(
        (sent.len(), to.len()),
        (12, 12),
        "each contact once: {sent:?}"
    );
    let (_, x) = wa.app.get_json(&format!("campaigns/{other}")).await;
    assert_eq!(
        (&x["status"], &x["counters"]["sent"]),
        (&json!("cancelled"), &json!(0)),
        "{x}"
    );
}

/// Receipts are recorded in batches: every `delivered` and `read` report of a campaign, each
/// heard three times and all at once (Meta retries and sends concurrently), stamps each message
/// once, adds one history entry per kind and counts each message once.
async fn receipts_heard_many_times_at_once_are_recorded_once(backend: Backend) {
    use futures::StreamExt;
    const N: usize = 24;
    // Arrange: a sent campaign whose receipts have not come yet.
    let wa = wa_app(backend, WindowMode::Off, None).await;
    wa.fake.set_webhook(NUMBER, "");
    for i in 0..N {
        contact(
            &wa.app,
            json!({"phone": phone(300 + i), "name": format!("R{i}")}),
        )
        .await;
    }
    let (status, c) = campaign(&wa.app, json!({"name": "Acuses", "channel_id": wa.channel, "body": "Hola {{ nombre }}", "start": true})).await;
    assert_eq!(status, 201, "{c}");
    let id = c["id"].as_str().expect("id").to_owned();
    wait_campaign(&wa.app, &id, Duration::from_secs(30), |c| {
        c["status"] == "completed" && c["counters"]["sent"] == N
    })
    .await;
    let wamids: Vec<String> = wa.fake.sent().into_iter().map(|s| s.wamid).collect();
    assert_eq!(wamids.len(), N);

    // Act: each receipt three times, shuffled, 32 webhooks in flight.
    let now = chrono::Utc::now().timestamp();
    let mut reports: Vec<(String, &str)> = wamids
        .iter()
        .flat_map(|w| {
            [(w.clone(), "delivered"), (w.clone(), "read")]
                .into_iter()
                .cycle()
                .take(6)
        })
        .collect();
    let order = std::collections::hash_map::RandomState::new();
    reports.sort_by_key(|report| {
        use std::hash::BuildHasher;
        order.hash_one(report)
    });
    let answers: Vec<u16> = futures::stream::iter(reports)
        .map(|(w, kind)| {
            let wa = &wa;
            async move { post_status(wa, &w, kind, now).await.0 }
        })
        .buffer_unordered(32)
        .collect()
        .await;

    // Assert
    assert!(answers.iter().all(|&a| a == 200), "{answers:?}");
    let c = wait_campaign(&wa.app, &id, Duration::from_secs(10), |c| {
        c["counters"]["read"] == N
    })
    .await;
    assert_eq!(
        (&c["counters"]["delivered"], &c["counters"]["read"]),
        (&json!(N), &json!(N)),
        "{c}"
    );
    let (_, rec) = wa
        .app
        .get_json(&format!("campaigns/{id}/recipients?status=sent&limit=100"))
        .await;
    let items = rec["items"].as_array().expect("items");
    assert_eq!(items.len(), N, "{rec}");
    for r in items {
        let (_, m) = wa
            .app
            .get_json(&format!(
                "messages/{}",
                r["message_id"].as_str().expect("id")
            ))
            .await;
        let mut statuses: Vec<&str> = m["events"]
            .as_array()
            .expect("events")
            .iter()
            .filter(|e| e["kind"] == "status")
            .filter_map(|e| e["outcome"].as_str())
            .collect();
        statuses.sort_unstable();
        assert_eq!(statuses, ["delivered", "read"], "{m}");
        assert!(
            !r["delivered_at"].is_null() && !r["read_at"].is_null(),
            "{r}"
        );
    }
}

/// Failed recipients retried while the campaign still runs are sent too: the runner reads the
/// pending ones on from where it got to, so it finds these behind it before it completes.
async fn failed_recipients_retried_while_running_are_sent(backend: Backend) {
    // Arrange: 2 messages a second to 20 people; the first three calls are refused for good.
    let wa = wa_app(backend, WindowMode::Off, Some(json!({"per_second": 2}))).await;
    for i in 1..=20 {
        contact(&wa.app, json!({"phone": phone(i), "name": format!("N{i}")})).await;
    }
    wa.fake.fail_next(NUMBER, 100, 400, 3);
    let (status, c) = campaign(
        &wa.app,
        json!({"name": "R", "channel_id": wa.channel, "body": "Hola {{ nombre }}", "start": true}),
    )
    .await;
    assert_eq!(status, 201, "{c}");
    let id = c["id"].as_str().expect("id").to_owned();
    let c = wait_campaign(&wa.app, &id, Duration::from_secs(20), |c| {
        c["counters"]["failed"] == 3
    })
    .await;
    assert_eq!(c["status"], "running", "retried while it still runs: {c}");

    // Act
    let (status, c) = wa
        .app
        .api(Method::POST, &format!("campaigns/{id}/retry-failed"), None)
        .await;
    assert_eq!(
        (status, c["status"].as_str()),
        (200, Some("running")),
        "{c}"
    );

    // Assert: all 20 sent once, none left failed.
    let c = wait_campaign(&wa.app, &id, Duration::from_secs(40), |c| {
        c["status"] == "completed"
    })
    .await;
    assert_eq!(
        (
            c["counters"]["sent"].as_i64(),
            c["counters"]["failed"].as_i64()
        ),
        (Some(20), Some(0)),
        "{c}"
    );
    let sent = wa.fake.sent();
    let unique: HashSet<_> = sent.iter().map(|s| s.to.clone()).collect();
    assert_eq!((sent.len(), unique.len()), (20, 20), "each once");
}

on_both_databases!(
    failed_recipients_retried_while_running_are_sent,
    receipts_heard_many_times_at_once_are_recorded_once,
    a_large_audience_is_prepared_in_the_background,
    a_status_for_a_message_not_recorded_yet_is_asked_again,
    errors_by_scope_and_pair_pacing,
    whatsapp_campaign_end_to_end,
    webhooks_window_and_opt_out,
    pause_resume_restart_cancel,
    missing_variables_and_send_messages,
    rollups_count_each_outcome_once_while_folds_race,
);
