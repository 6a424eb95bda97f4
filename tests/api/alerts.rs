//! Alerts API (Pingui-compatible): linking chats both ways, polling and webhooks, tokens,
//! quotas, the queue limit and the once-per-cluster scheduled jobs.
use std::time::Duration;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use fakes::telegram::FakeTelegramConfig;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};

use crate::helpers::{
    BOT_TOKEN, BOT_USERNAME, Backend, spawn_app, spawn_app_custom, spawn_app_with,
};

const WAIT: Duration = Duration::from_secs(30);

async fn alert_status(app: &crate::helpers::TestApp, token: &str, id: &str) -> Value {
    let res = app
        .client
        .get(format!("{}/api/alert/{id}", app.address))
        .bearer_auth(token)
        .send()
        .await
        .expect("request");
    assert_eq!(res.status().as_u16(), 200);
    res.json().await.expect("json")
}

async fn a_deep_link_links_a_chat_and_alerts_reach_it(backend: Backend) {
    // Arrange
    let app = spawn_app(backend).await;
    let channel = app.create_bot(None).await;
    let integration = app.create_integration(&channel, "CI alerts").await;

    // Assert: the link has Telegram's shape and the token cannot send before linking.
    assert!(integration.code.len() <= 64);
    assert!(
        integration
            .code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    );
    let early = app
        .alert(&integration.token, &json!({"message": "too early"}))
        .await;
    assert_eq!(early.status().as_u16(), 409);
    let body: Value = early.json().await.expect("json");
    assert_eq!(body["error"], "integration-not-linked");

    // Act: the chat user taps START (the bot reads the update by long polling).
    let link_update =
        app.telegram
            .user_sends(BOT_TOKEN, 5151, &format!("/start {}", integration.code));

    // Assert: bound to that chat, confirmed in the chat, update confirmed to Telegram.
    let linked = app.wait_integration(&integration.id, "active").await;
    assert_eq!(linked["chat_id"], "5151");
    app.wait_for_text(5151, "now linked").await;
    assert!(
        app.telegram
            .wait_until(WAIT, |t| t.pending_updates(BOT_TOKEN) == 0)
            .await,
        "the poller confirms handled updates"
    );

    // The next offset is stored, so a restart neither replays nor skips updates.
    let channel_row = pregonero::channels::repo::find(&app.state.db, &channel.as_str().into())
        .await
        .expect("query")
        .expect("channel");
    assert_eq!(channel_row.update_offset, Some(link_update + 1));

    // Act: an alert.
    let res = app
        .alert(&integration.token, &json!({"message": "deploy finished"}))
        .await;

    // Assert
    assert_eq!(res.status().as_u16(), 202);
    let accepted: Value = res.json().await.expect("json");
    assert_eq!(accepted["quota"]["limit"], 10);
    assert_eq!(accepted["quota"]["remaining"], 9);
    let id = accepted["alert_id"].as_str().expect("alert id");
    app.wait_for_text(5151, "deploy finished").await;
    let deadline = std::time::Instant::now() + WAIT;
    while alert_status(&app, &integration.token, id).await["status"] != "sent" {
        assert!(
            std::time::Instant::now() < deadline,
            "alert not marked sent"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    // Act: the same code from another chat.
    app.telegram
        .user_sends(BOT_TOKEN, 6262, &format!("/start {}", integration.code));

    // Assert: refused; the integration stays with the first chat.
    app.wait_for_text(6262, "not valid").await;
    let (_, again) = app
        .get_json(&format!("integrations/{}", integration.id))
        .await;
    assert_eq!(again["chat_id"], "5151");

    // Act: a link opened after it expired (the clock two hours later).
    let late = app.create_integration(&channel, "late").await;
    app.state.clock.advance(chrono::Duration::hours(2));
    app.telegram
        .user_sends(BOT_TOKEN, 6363, &format!("/start {}", late.code));

    // Assert: refused, still pending; a new link works.
    app.wait_for_text(6363, "expired").await;
    let (_, view) = app.get_json(&format!("integrations/{}", late.id)).await;
    assert_eq!(view["status"], "pending");
    let relink = app
        .post(&format!("integrations/{}/link", late.id), &json!({}))
        .await;
    assert_eq!(relink.status().as_u16(), 200);
    let relink: Value = relink.json().await.expect("json");
    let code = relink["link"]["url"]
        .as_str()
        .and_then(|u| u.split("?start=").nth(1))
        .expect("code");
    app.telegram
        .user_sends(BOT_TOKEN, 6363, &format!("/start {code}"));
    app.wait_integration(&late.id, "active").await;
}

async fn start_without_a_code_follows_pinguis_chat_first_flow(backend: Backend) {
    // Arrange
    let app = spawn_app(backend).await;
    app.create_bot(None).await;

    // Act: a chat says /start; the bot answers with a one-time setup token.
    app.telegram.user_sends(BOT_TOKEN, 7373, "/start");
    let reply = app.wait_for_text(7373, "Authorization: Bearer ").await;
    let setup = reply
        .split("Authorization: Bearer ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("setup token in the reply")
        .to_owned();
    let (_, list) = app.get_json("integrations").await;
    assert_eq!(list["items"][0]["status"], "pending");
    assert_eq!(list["items"][0]["chat_id"], "7373");

    // Act: the owner's application finishes it with the setup token.
    let created = app
        .client
        .post(format!("{}/api/createIntegration", app.address))
        .bearer_auth(&setup)
        .send()
        .await
        .expect("request");

    // Assert
    assert_eq!(created.status().as_u16(), 201);
    let created: Value = created.json().await.expect("json");
    assert_eq!(created["integration"]["status"], "active");
    assert_eq!(created["integration"]["chatId"], 7373);
    let token = created["token"].as_str().expect("token").to_owned();
    let reuse = app
        .client
        .post(format!("{}/api/createIntegration", app.address))
        .bearer_auth(&setup)
        .send()
        .await
        .expect("request");
    assert_eq!(reuse.status().as_u16(), 401, "a setup token works once");
    let reuse: Value = reuse.json().await.expect("json");
    assert_eq!(reuse["error"], "token-revoked");
    let setup_cannot_send = app.alert(&setup, &json!({"message": "x"})).await;
    assert_eq!(setup_cannot_send.status().as_u16(), 401);

    let res = app
        .alert(&token, &json!({"message": "hello from pingui"}))
        .await;
    assert_eq!(res.status().as_u16(), 202);
    app.wait_for_text(7373, "hello from pingui").await;

    // Pingui's read route: the token's own chat, with what is left of today's quota.
    let read = app
        .client
        .get(format!("{}/api/integrations/7373", app.address))
        .bearer_auth(&token)
        .send()
        .await
        .expect("request");
    assert_eq!(read.status().as_u16(), 200);
    let read: Value = read.json().await.expect("json");
    assert_eq!(read[0]["rateLimit"], 9);
    assert_eq!(read[0]["status"], "active");
    let other = app
        .client
        .get(format!("{}/api/integrations/9999", app.address))
        .bearer_auth(&token)
        .send()
        .await
        .expect("request");
    assert_eq!(other.status().as_u16(), 403);
}

async fn stop_blocking_and_start_pause_and_resume(backend: Backend) {
    // Arrange
    let app = spawn_app(backend).await;
    let channel = app.create_bot(None).await;
    let integration = app.linked_integration(&channel, 8484).await;

    // Act + Assert: /stop pauses, alerts are refused with a clear code.
    app.telegram.user_sends(BOT_TOKEN, 8484, "/stop");
    let paused = app.wait_integration(&integration.id, "paused").await;
    assert_eq!(paused["status_detail"], "stopped-in-chat");
    let res = app
        .alert(&integration.token, &json!({"message": "x"}))
        .await;
    assert_eq!(res.status().as_u16(), 409);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["error"], "integration-paused");

    // /start resumes.
    app.telegram.user_sends(BOT_TOKEN, 8484, "/start");
    app.wait_integration(&integration.id, "active").await;

    // Blocking the bot (my_chat_member) pauses; unblocking resumes.
    app.telegram.user_blocks(BOT_TOKEN, 8484);
    let blocked = app.wait_integration(&integration.id, "paused").await;
    assert_eq!(blocked["status_detail"], "bot-blocked");
    app.telegram.user_unblocks(BOT_TOKEN, 8484);
    app.wait_integration(&integration.id, "active").await;

    // A 403 on delivery (block not seen as an update) pauses it too.
    app.telegram.block_chat(8484);
    let res = app
        .alert(&integration.token, &json!({"message": "lost"}))
        .await;
    assert_eq!(res.status().as_u16(), 202);
    let paused = app.wait_integration(&integration.id, "paused").await;
    assert_eq!(paused["status_detail"], "bot-blocked");
}

async fn webhook_mode_registers_and_checks_the_secret(backend: Backend) {
    // Arrange: the server's public URL must be known before it starts.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let fake = FakeTelegramConfig {
        allow_insecure_webhooks: true,
        ..FakeTelegramConfig::default()
    };
    let app = spawn_app_custom(backend, fake, |s| {
        s.port = port;
        s.telegram.public_url = Some(format!("http://127.0.0.1:{port}"));
    })
    .await;
    let channel = app.create_bot(None).await;

    // Assert: the actor registered the webhook with a secret.
    assert!(
        app.telegram
            .wait_until(WAIT, |t| t.webhook(BOT_TOKEN).is_some())
            .await,
        "setWebhook was called"
    );
    let hook = app.telegram.webhook(BOT_TOKEN).expect("webhook");
    assert_eq!(
        hook.url,
        format!("http://127.0.0.1:{port}/telegram/webhook/{channel}")
    );
    let secret = hook.secret_token.expect("secret token");

    // Act + Assert: calls without or with a wrong secret are refused.
    let update = json!({"update_id": 1, "message": {"message_id": 1, "date": 0,
        "chat": {"id": 9191, "type": "private"}, "text": "/start"}});
    for given in [None, Some("wrong")] {
        let mut req = app.client.post(&hook.url).json(&update);
        if let Some(s) = given {
            req = req.header("X-Telegram-Bot-Api-Secret-Token", s);
        }
        let res = req.send().await.expect("request");
        assert_eq!(res.status().as_u16(), 401);
        let body: Value = res.json().await.expect("json");
        assert_eq!(body["error"], "invalid-webhook-secret");
    }
    let (_, list) = app.get_json("integrations").await;
    assert_eq!(list["items"], json!([]), "a refused call changes nothing");

    // Act: a real link through the fake, which pushes the update to the webhook.
    let integration = app.create_integration(&channel, "hooked").await;
    app.telegram
        .user_sends(BOT_TOKEN, 9292, &format!("/start {}", integration.code));

    // Assert
    app.wait_integration(&integration.id, "active").await;
    app.wait_for_text(9292, "now linked").await;
    let (delivered, _) = app.telegram.webhook_calls();
    assert!(delivered >= 1);
    assert!(!secret.is_empty());
}

async fn quota_runs_out_and_the_scheduled_reset_restores_it(backend: Backend) {
    // Arrange: a 3-alert plan, the clock 30 s before midnight, the scheduler on.
    let app = spawn_app_with(backend, |s| {
        s.alerts
            .plans
            .get_mut("free")
            .expect("free plan")
            .daily_quota = 3;
        s.schedule.enabled = true;
    })
    .await;
    let before_midnight = "2030-01-01T23:59:30Z".parse().expect("date");
    app.state.clock.set(before_midnight);
    let channel = app.create_bot(None).await;
    let integration = app.linked_integration(&channel, 1212).await;

    // Act: three alerts pass, the fourth does not.
    for n in 0..3 {
        let res = app
            .alert(&integration.token, &json!({"message": format!("a{n}")}))
            .await;
        assert_eq!(res.status().as_u16(), 202);
    }
    let res = app
        .alert(&integration.token, &json!({"message": "a3"}))
        .await;

    // Assert
    assert_eq!(res.status().as_u16(), 429);
    let retry_after: u64 = res
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["error"], "quota-exhausted");
    assert_eq!(body["resets_at"], "2030-01-02T00:00:00Z");

    // Act: past midnight; the scheduler runs the reset for the new day.
    app.state.clock.advance(chrono::Duration::minutes(1));
    let db = app.inspect_db().await;
    use pregonero::entities::scheduled_runs;
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let run = scheduled_runs::Entity::find()
            .filter(scheduled_runs::Column::Job.eq("quota-reset"))
            .filter(scheduled_runs::Column::Slot.eq("2030-01-02"))
            .one(&db)
            .await
            .expect("query");
        if run.is_some_and(|r| r.outcome.as_deref() == Some("ok")) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "quota reset did not run"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Assert: alerts flow again, with a full quota.
    let res = app
        .alert(&integration.token, &json!({"message": "new day"}))
        .await;
    assert_eq!(res.status().as_u16(), 202);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["quota"]["remaining"], 2);

    // A quota of 0 allows nothing, not even the first alert of a day.
    let res = app
        .client
        .patch(format!(
            "{}/api/v1/integrations/{}",
            app.address, integration.id
        ))
        .bearer_auth(&app.api_key)
        .json(&json!({"daily_quota": 0}))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status().as_u16(), 200);
    app.state.clock.advance(chrono::Duration::days(1));
    let res = app
        .alert(&integration.token, &json!({"message": "none"}))
        .await;
    assert_eq!(res.status().as_u16(), 429);
}

async fn scheduled_jobs_run_once_per_cluster(backend: Backend) {
    // Arrange: two nodes on one database, both with the scheduler on.
    let app = spawn_app_with(backend, |s| s.schedule.enabled = true).await;
    let mut settings = app.settings.clone();
    settings.node_name = Some("second-node".into());
    let second = pregonero::startup::Application::build(settings, Default::default())
        .await
        .expect("second node")
        .spawn()
        .expect("spawn second");

    // Act: let both tick a few times.
    tokio::time::sleep(Duration::from_millis(3500)).await;

    // Assert: one run per job and slot, whoever got it.
    let db = app.inspect_db().await;
    use pregonero::entities::scheduled_runs;
    let runs = scheduled_runs::Entity::find().all(&db).await.expect("runs");
    let resets: Vec<_> = runs.iter().filter(|r| r.job == "quota-reset").collect();
    assert_eq!(resets.len(), 1, "{runs:#?}");
    assert_eq!(resets[0].outcome.as_deref(), Some("ok"));
    let backups: Vec<_> = runs.iter().filter(|r| r.job == "sqlite-backup").collect();
    if app.settings.is_postgres() {
        assert!(backups.is_empty(), "no SQLite backup on PostgreSQL");
    } else {
        assert_eq!(backups.len(), 1, "{runs:#?}");
        let dir = app.settings.data_dir.join("backups");
        let files: Vec<_> = std::fs::read_dir(&dir)
            .expect("backups dir")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .collect();
        assert_eq!(files.len(), 1, "{files:?}");
        // The backup is a complete database.
        let copy = sea_orm::Database::connect(format!("sqlite://{}?mode=ro", files[0].display()))
            .await
            .expect("open backup");
        let users = pregonero::entities::users::Entity::find()
            .all(&copy)
            .await
            .expect("read backup");
        assert_eq!(users.len(), 1);
    }
    second.stop().await;
}

async fn revoked_and_expired_tokens_are_refused(backend: Backend) {
    // Arrange
    let app = spawn_app(backend).await;
    let channel = app.create_bot(None).await;
    let first = app.linked_integration(&channel, 3131).await;
    let second = app.create_integration(&channel, "other").await;

    // Act: revoke the first with its own token (Pingui's route), the second natively.
    let res = app
        .client
        .post(format!("{}/api/revokeIntegration", app.address))
        .bearer_auth(&first.token)
        .json(&json!({}))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status().as_u16(), 200);
    let res = app
        .client
        .delete(format!("{}/api/v1/integrations/{}", app.address, second.id))
        .bearer_auth(&app.api_key)
        .send()
        .await
        .expect("request");
    assert_eq!(res.status().as_u16(), 200);

    // Assert
    for token in [&first.token, &second.token] {
        let res = app.alert(token, &json!({"message": "x"})).await;
        assert_eq!(res.status().as_u16(), 401);
        let body: Value = res.json().await.expect("json");
        assert_eq!(body["error"], "token-revoked");
    }
    let (_, view) = app.get_json(&format!("integrations/{}", first.id)).await;
    assert_eq!(view["status"], "revoked");

    // An expired token: a fresh integration, then the clock a year and a day later.
    let third = app.linked_integration(&channel, 3232).await;
    app.state.clock.advance(chrono::Duration::days(366));
    let res = app.alert(&third.token, &json!({"message": "x"})).await;
    assert_eq!(res.status().as_u16(), 401);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["error"], "token-expired");
}

async fn a_token_never_reaches_another_integrations_chat(backend: Backend) {
    // Arrange: two integrations on two chats.
    let app = spawn_app(backend).await;
    let channel = app.create_bot(None).await;
    let a = app.linked_integration(&channel, 1001).await;
    let b = app.linked_integration(&channel, 2002).await;
    app.wait_for_text(1001, "now linked").await;
    app.wait_for_text(2002, "now linked").await;

    // Act + Assert: naming the other chat is refused.
    let res = app
        .alert(&a.token, &json!({"message": "cross", "chatId": 2002}))
        .await;
    assert_eq!(res.status().as_u16(), 403);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["error"], "chat-mismatch");

    // A forged token (A's signature, B's id) is refused.
    let mut parts: Vec<String> = a.token.split('.').map(str::to_owned).collect();
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[1]).expect("b64")).expect("claims");
    claims["sub"] = json!(b.id);
    parts[1] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).expect("json"));
    let forged = parts.join(".");
    let res = app.alert(&forged, &json!({"message": "forged"})).await;
    assert_eq!(res.status().as_u16(), 401);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["error"], "invalid-token");

    // An API key is not an integration token.
    let res = app.alert(&app.api_key, &json!({"message": "key"})).await;
    assert_eq!(res.status().as_u16(), 403);
    let res = app.alert("garbage", &json!({"message": "g"})).await;
    assert_eq!(res.status().as_u16(), 401);

    // A's own alert reaches only chat 1001.
    let res = app.alert(&a.token, &json!({"message": "mine"})).await;
    assert_eq!(res.status().as_u16(), 202);
    app.wait_for_text(1001, "mine").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let to_b: Vec<_> = app
        .telegram
        .sent()
        .into_iter()
        .filter(|m| m.chat_id == 2002)
        .filter_map(|m| m.text)
        .collect();
    assert!(
        to_b.iter().all(|t| t.contains("now linked")),
        "only B's own link confirmation reached B's chat: {to_b:?}"
    );
}

async fn a_full_queue_answers_503_with_retry_after(backend: Backend) {
    // Arrange: at most 2 pending alerts; a slow provider keeps them pending.
    let app = spawn_app_with(backend, |s| s.alerts.max_pending = 2).await;
    let channel = app.create_bot(None).await;
    let integration = app.linked_integration(&channel, 4545).await;
    app.wait_for_text(4545, "now linked").await;
    app.telegram.set_latency(Duration::from_secs(3));

    // Act
    for n in 0..2 {
        let res = app
            .alert(&integration.token, &json!({"message": format!("q{n}")}))
            .await;
        assert_eq!(res.status().as_u16(), 202);
    }
    let res = app
        .alert(&integration.token, &json!({"message": "q2"}))
        .await;

    // Assert
    assert_eq!(res.status().as_u16(), 503);
    assert_eq!(
        res.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("5")
    );
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["error"], "queue-full");
    // The refused alert used no quota: 2 of 10 are gone.
    let (_, view) = app
        .get_json(&format!("integrations/{}", integration.id))
        .await;
    assert_eq!(view["remaining_today"], 8);
    assert_eq!(BOT_USERNAME, "pregonero_test_bot");
}

async fn native_crud_validates_and_updates(backend: Backend) {
    // Arrange
    let app = spawn_app(backend).await;
    let channel = app.create_bot(None).await;
    let integration = app.create_integration(&channel, "first name").await;
    let patch = |body: Value| {
        app.client
            .patch(format!(
                "{}/api/v1/integrations/{}",
                app.address, integration.id
            ))
            .bearer_auth(&app.api_key)
            .json(&body)
            .send()
    };

    // Act + Assert: bad input gets stable codes and changes nothing.
    let res = app
        .post(
            "integrations",
            &json!({"channel_id": channel, "name": "x", "scopes": ["alert:send", "root"]}),
        )
        .await;
    assert_eq!(res.status().as_u16(), 422);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["error"], "invalid-scope");
    let res = app
        .post("integrations", &json!({"channel_id": "nope", "name": "x"}))
        .await;
    assert_eq!(res.status().as_u16(), 404);
    let res = patch(json!({"name": "  "})).await.expect("request");
    assert_eq!(res.status().as_u16(), 422);
    let res = patch(json!({"colour": "red"})).await.expect("request");
    assert_eq!(res.status().as_u16(), 422);
    let (_, list) = app.get_json("integrations").await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(list["items"][0]["name"], "first name");

    // Update.
    let res = patch(json!({"name": "renamed", "daily_quota": 50}))
        .await
        .expect("request");
    assert_eq!(res.status().as_u16(), 200);
    let view: Value = res.json().await.expect("json");
    assert_eq!(view["name"], "renamed");
    assert_eq!(view["daily_quota"], 50);
    assert_eq!(view["remaining_today"], 50);

    // Revoked integrations are final.
    let res = app
        .client
        .delete(format!(
            "{}/api/v1/integrations/{}",
            app.address, integration.id
        ))
        .bearer_auth(&app.api_key)
        .send()
        .await
        .expect("request");
    assert_eq!(res.status().as_u16(), 200);
    let res = patch(json!({"name": "again"})).await.expect("request");
    assert_eq!(res.status().as_u16(), 409);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["error"], "integration-revoked");
}

async fn a_polling_lease_has_one_holder_and_release_keeps_a_newer_term(backend: Backend) {
    // Arrange
    use pregonero::leases;
    let app = spawn_app(backend).await;
    let db = &app.state.db;
    let now = chrono::Utc::now();
    let secs = |s| now + chrono::Duration::seconds(s);
    let name = "telegram-poll:test";

    // Act + Assert: one holder at a time; renewals by the holder; takeover after expiry.
    assert!(
        leases::acquire(db, name, "node-a", now, secs(30))
            .await
            .expect("a")
    );
    assert!(
        !leases::acquire(db, name, "node-b", now, secs(30))
            .await
            .expect("b")
    );
    assert!(
        leases::acquire(db, name, "node-a", now, secs(60))
            .await
            .expect("renew")
    );
    assert!(
        leases::acquire(db, name, "node-b", secs(61), secs(90))
            .await
            .expect("takeover")
    );

    // A release of an old term (node-a's) leaves node-b's lease alone; its own release frees it.
    leases::release(db, name, "node-a", secs(60))
        .await
        .expect("stale release");
    assert!(
        !leases::acquire(db, name, "node-c", secs(62), secs(92))
            .await
            .expect("still b")
    );
    leases::release(db, name, "node-b", secs(89))
        .await
        .expect("wrong term");
    assert!(
        !leases::acquire(db, name, "node-c", secs(62), secs(92))
            .await
            .expect("still b")
    );
    leases::release(db, name, "node-b", secs(90))
        .await
        .expect("release");
    assert!(
        leases::acquire(db, name, "node-c", secs(62), secs(92))
            .await
            .expect("free")
    );
}

crate::on_both_databases!(
    a_polling_lease_has_one_holder_and_release_keeps_a_newer_term,
    native_crud_validates_and_updates,
    a_deep_link_links_a_chat_and_alerts_reach_it,
    start_without_a_code_follows_pinguis_chat_first_flow,
    stop_blocking_and_start_pause_and_resume,
    webhook_mode_registers_and_checks_the_secret,
    quota_runs_out_and_the_scheduled_reset_restores_it,
    scheduled_jobs_run_once_per_cluster,
    revoked_and_expired_tokens_are_refused,
    a_token_never_reaches_another_integrations_chat,
    a_full_queue_answers_503_with_retry_after,
);
