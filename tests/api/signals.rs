//! Trading signals: TradingView's webhook, the profile and its token, plans and quotas, the
//! allow-list behind trusted proxies, the signals API and the seed's stats.
use chrono::Duration;
use serde_json::{Value, json};

use crate::{
    helpers::{Backend, TestApp, spawn_app, spawn_app_with, status_and_json},
    on_both_databases,
};

const SEED_ALERT: &str = "🪙 Ticker: BINANCE:BTCUSDT\n💰 Precio: $67,890.50\n📈 Señal: Divergencia Alcista\n📊 Indicador: ADX DEF [APIDEVS]\n⏰ Temporalidad: 15";
const CHAT: i64 = 555;

impl TestApp {
    /// A fresh webhook token for the admin (the old one, if any, stops at once).
    async fn signal_token(&self) -> String {
        let (status, body) = self
            .api(
                reqwest::Method::POST,
                "signals/profile/token",
                Some(json!({"grace_hours": 0})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        assert!(
            body["webhook_url"]
                .as_str()
                .is_some_and(|u| u.ends_with(body["token"].as_str().unwrap_or("?")))
        );
        let token = body["token"].as_str().expect("token").to_owned();
        crate::helpers::secret(&token);
        token
    }

    /// Posts an alert to the webhook as TradingView would.
    async fn webhook(&self, path: &str, content_type: &str, body: &str) -> (u16, Value) {
        self.webhook_from(path, content_type, body, None).await
    }

    async fn webhook_from(
        &self,
        path: &str,
        content_type: &str,
        body: &str,
        forwarded_for: Option<&str>,
    ) -> (u16, Value) {
        let mut req = self
            .client
            .post(format!("{}/webhook/u/{path}", self.address))
            .header("content-type", content_type)
            .body(body.to_owned());
        if let Some(xff) = forwarded_for {
            req = req.header("x-forwarded-for", xff);
        }
        let (status, mut body) = status_and_json(req).await;
        // The request's own id: the only part of an answer that differs from call to call.
        if let Some(problem) = body.as_object_mut() {
            problem.remove("instance");
        }
        (status, body)
    }

    /// The admin's profile, delivering to the test bot's chat.
    async fn signal_profile_to_chat(&self) -> String {
        let channel = self.create_bot(None).await;
        self.telegram.add_chat(CHAT);
        let (status, body) = self
            .api(
                reqwest::Method::PUT,
                "signals/profile",
                Some(json!({"channel_id": channel, "recipient": CHAT.to_string()})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body["user_id"].as_str().expect("user id").to_owned()
    }
}

async fn an_alert_is_stored_answered_and_delivered_once(backend: Backend) {
    // Arrange
    let app = spawn_app(backend).await;
    app.signal_profile_to_chat().await;
    let token = app.signal_token().await;

    // Act: the seed's text, as TradingView posts a message that is not JSON.
    let (status, body) = app
        .webhook(&format!("{token}?chart=Q7w5R5x8"), "text/plain", SEED_ALERT)
        .await;

    // Assert: the seed's answer, the parsed signal, and its message in the chat.
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["success"], true);
    assert_eq!(body["duplicate"], false);
    assert_eq!(body["screenshot_status"], "skipped");
    assert!(body["estimated_wait"].is_number());
    let id = body["signal_id"].as_str().expect("signal id").to_owned();
    let text = app.wait_for_text(CHAT, "BINANCE:BTCUSDT").await;
    assert!(
        text.contains("Divergencia Alcista") && text.contains("67890.5"),
        "{text}"
    );
    let (status, signal) = app.get_json(&format!("signals/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(signal["ticker"], "BINANCE:BTCUSDT");
    assert_eq!(signal["exchange"], "BINANCE");
    assert_eq!(signal["symbol"], "BTCUSDT");
    assert_eq!(signal["price"], 67_890.5);
    assert_eq!(signal["signal_type"], "Divergencia Alcista");
    assert_eq!(signal["indicator"], "ADX DEF [APIDEVS]");
    assert_eq!(signal["timeframe"], "15m");
    assert_eq!(signal["chart_id"], "Q7w5R5x8");
    assert_eq!(signal["result"], "pending");
    assert!(signal["message_id"].is_string(), "{signal}");

    // The same alert again within the window is the same signal, sent once.
    let (status, again) = app
        .webhook(&format!("{token}?chart=Q7w5R5x8"), "text/plain", SEED_ALERT)
        .await;
    assert_eq!((status, &again["duplicate"]), (200, &json!(true)));
    assert_eq!(again["signal_id"], id.as_str());

    // JSON, as TradingView posts a message that is valid JSON.
    let (status, body) = app
        .webhook(
            &token,
            "application/json",
            r#"{"ticker": "ETHUSDT", "exchange": "BINANCE", "close": 3456.7, "signal": "sell"}"#,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    app.wait_for_text(CHAT, "BINANCE:ETHUSDT").await;

    // A text that cannot be read is kept raw with the reason, and still delivered.
    let (status, body) = app
        .webhook(&token, "text/plain", "price went up a lot, check it")
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["parse_error"], "no-ticker");
    let raw_id = body["signal_id"].as_str().expect("id");
    let (_, raw) = app.get_json(&format!("signals/{raw_id}")).await;
    assert_eq!(raw["raw"], "price went up a lot, check it");
    assert!(raw["ticker"].is_null());
    app.wait_for_text(CHAT, "price went up a lot").await;

    let (_, list) = app.get_json("signals").await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(3), "{list}");
    let btc_sends = app
        .telegram
        .sent()
        .iter()
        .filter(|m| m.text.as_deref().is_some_and(|t| t.contains("BTCUSDT")))
        .count();
    assert_eq!(btc_sends, 1, "the duplicate was not sent again");
}

on_both_databases!(an_alert_is_stored_answered_and_delivered_once);

async fn unknown_rotated_and_disabled_tokens_get_the_same_404(backend: Backend) {
    // Arrange
    let app = spawn_app(backend).await;
    let first = app.signal_token().await;
    let alert = |n: u32| format!("Ticker: BINANCE:BTCUSDT\nPrice: {n}");

    // Act + Assert: an unknown token.
    let (status, unknown) = app
        .webhook("pgs_not-a-real-token", "text/plain", &alert(1))
        .await;
    assert_eq!(status, 404);
    assert_eq!(unknown["error"], "webhook-not-found");

    // A rotation with a grace period: both work until it ends, then only the new one.
    let (status, body) = app
        .api(
            reqwest::Method::POST,
            "signals/profile/token",
            Some(json!({"grace_hours": 24})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let second = body["token"].as_str().expect("token").to_owned();
    crate::helpers::secret(&second);
    assert!(body["previous_token_valid_until"].is_string());
    assert_eq!(app.webhook(&first, "text/plain", &alert(2)).await.0, 200);
    assert_eq!(app.webhook(&second, "text/plain", &alert(3)).await.0, 200);
    app.state.clock.advance(Duration::hours(25));
    let (status, old) = app.webhook(&first, "text/plain", &alert(4)).await;
    assert_eq!(
        (status, &old),
        (404, &unknown),
        "an expired token looks unknown"
    );
    assert_eq!(app.webhook(&second, "text/plain", &alert(5)).await.0, 200);

    // Disabled: the same answer as unknown.
    let (status, _) = app
        .api(
            reqwest::Method::PUT,
            "signals/profile",
            Some(json!({"webhook_enabled": false})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, disabled) = app.webhook(&second, "text/plain", &alert(6)).await;
    assert_eq!((status, &disabled), (404, &unknown));

    // The profile never shows a token, only that one exists.
    let (_, profile) = app.get_json("signals/profile").await;
    assert_eq!(profile["has_token"], true);
    assert!(!profile.to_string().contains(&second));
}

on_both_databases!(unknown_rotated_and_disabled_tokens_get_the_same_404);

async fn the_allow_list_believes_forwarded_for_only_from_trusted_proxies(backend: Backend) {
    // Arrange: the server behind a proxy on 127.0.0.1; TradingView's addresses allowed.
    let app = spawn_app_with(backend, |s| {
        s.trusted_proxies = vec!["127.0.0.1".into()];
    })
    .await;
    let token = app.signal_token().await;
    let (status, profile) = app.get_json("signals/profile").await;
    assert_eq!(status, 200);
    let suggested = profile["suggested_allowed_ips"].clone();
    let (status, body) = app
        .api(
            reqwest::Method::PUT,
            "signals/profile",
            Some(json!({"allowed_ips": suggested})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let alert = |n: u32| format!("Ticker: NASDAQ:AAPL\nPrice: {n}");

    // Act + Assert: forwarded by our proxy from TradingView.
    let (status, body) = app
        .webhook_from(&token, "text/plain", &alert(1), Some("52.89.214.238"))
        .await;
    assert_eq!(status, 200, "{body}");
    // A client that writes TradingView's address into the header itself: the proxy appends
    // the real one, and that is what counts.
    let (status, body) = app
        .webhook_from(
            &token,
            "text/plain",
            &alert(2),
            Some("52.89.214.238, 198.51.100.7"),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("ip-not-allowed"))
    );
    // The proxy itself is not TradingView.
    let (status, _) = app.webhook(&token, "text/plain", &alert(3)).await;
    assert_eq!(status, 403);

    // A bad list is refused whole, and the old one stays.
    let (status, body) = app
        .api(
            reqwest::Method::PUT,
            "signals/profile",
            Some(json!({"allowed_ips": ["52.89.214.238", "not-an-ip"]})),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("validation-failed"))
    );
    let (_, profile) = app.get_json("signals/profile").await;
    assert_eq!(profile["allowed_ips"].as_array().map(Vec::len), Some(4));
}

on_both_databases!(the_allow_list_believes_forwarded_for_only_from_trusted_proxies);

async fn a_forged_forwarded_for_is_ignored_without_trusted_proxies(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.signal_token().await;
    let (status, _) = app
        .api(
            reqwest::Method::PUT,
            "signals/profile",
            Some(json!({"allowed_ips": ["52.89.214.238"]})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) = app
        .webhook_from(
            &token,
            "text/plain",
            "Ticker: NYSE:KO",
            Some("52.89.214.238"),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("ip-not-allowed"))
    );
}

on_both_databases!(a_forged_forwarded_for_is_ignored_without_trusted_proxies);

async fn plans_quotas_verdicts_stats_and_pages(backend: Backend) {
    // Arrange: a free plan of two signals per period.
    let app = spawn_app_with(backend, |s| {
        if let Some(free) = s.signals.plans.get_mut("free") {
            free.quota = 2;
        }
    })
    .await;
    let token = app.signal_token().await;
    let (_, profile) = app.get_json("signals/profile").await;
    let me = profile["user_id"].as_str().expect("user id").to_owned();
    assert_eq!(
        (profile["plan"].as_str(), profile["signals_quota"].as_u64()),
        (Some("free"), Some(2))
    );

    // Act + Assert: the third signal of the period is refused with when it resets.
    let mut ids = Vec::new();
    for ticker in ["BINANCE:BTCUSDT", "BINANCE:ETHUSDT"] {
        let (status, body) = app
            .webhook(&token, "text/plain", &format!("Ticker: {ticker}"))
            .await;
        assert_eq!(status, 200, "{body}");
        ids.push(body["signal_id"].as_str().expect("id").to_owned());
    }
    let (status, refused) = app.webhook(&token, "text/plain", "Ticker: NYSE:KO").await;
    assert_eq!(status, 429, "{refused}");
    assert_eq!(refused["error"], "quota-exceeded");
    assert!(refused["resets_at"].is_string());

    // An admin moves the user to a bigger plan; unknown plans are refused.
    let (status, body) = app
        .api(
            reqwest::Method::PUT,
            &format!("users/{me}/plan"),
            Some(json!({"plan": "gold"})),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (422, Some("unknown-plan"))
    );
    let (status, _) = app
        .api(
            reqwest::Method::PUT,
            &format!("users/{me}/plan"),
            Some(json!({"plan": "basic"})),
        )
        .await;
    assert_eq!(status, 204);
    let (status, body) = app.webhook(&token, "text/plain", "Ticker: NYSE:KO").await;
    assert_eq!(status, 200, "{body}");
    ids.push(body["signal_id"].as_str().expect("id").to_owned());

    // Verdicts, and bad ones refused.
    for (id, result) in [(&ids[0], "win"), (&ids[1], "loss")] {
        let (status, body) = app
            .api(
                reqwest::Method::PATCH,
                &format!("signals/{id}"),
                Some(json!({"result": result, "profit_loss": 12.5, "notes": "ok"})),
            )
            .await;
        assert_eq!(
            (status, body["result"].as_str()),
            (200, Some(result)),
            "{body}"
        );
    }
    let (status, body) = app
        .api(
            reqwest::Method::PATCH,
            &format!("signals/{}", ids[2]),
            Some(json!({"result": "maybe"})),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("validation-failed"))
    );

    // The seed's stats.
    let req = app
        .client
        .get(format!("{}/api/users/{me}/stats", app.address))
        .bearer_auth(&app.api_key);
    let (status, stats) = status_and_json(req).await;
    assert_eq!(status, 200, "{stats}");
    assert_eq!(
        stats,
        json!({"total_signals": 3, "this_month": 3, "screenshots_pending": 0, "win_rate": 50.0})
    );

    // Filters and pages, newest first.
    let (_, wins) = app.get_json("signals?result=win").await;
    assert_eq!(wins["items"][0]["id"], ids[0].as_str());
    assert_eq!(wins["items"].as_array().map(Vec::len), Some(1));
    let (_, by_symbol) = app.get_json("signals?ticker=ETHUSDT").await;
    assert_eq!(by_symbol["items"][0]["id"], ids[1].as_str());
    let (_, page1) = app.get_json("signals?limit=2").await;
    assert_eq!(page1["items"][0]["id"], ids[2].as_str());
    let cursor = page1["next_cursor"].as_str().expect("a next page");
    let (_, page2) = app
        .get_json(&format!("signals?limit=2&cursor={cursor}"))
        .await;
    assert_eq!(page2["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(page2["items"][0]["id"], ids[0].as_str());
    let req = app
        .client
        .get(format!("{}/api/users/{me}/signals?limit=500", app.address))
        .bearer_auth(&app.api_key);
    let (status, seed_list) = status_and_json(req).await;
    assert_eq!(
        (status, seed_list["items"].as_array().map(Vec::len)),
        (200, Some(3))
    );
}

on_both_databases!(plans_quotas_verdicts_stats_and_pages);

async fn bad_webhook_and_profile_input_gets_clear_errors(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.signal_token().await;
    let big = "x".repeat(app.settings.signals.max_body_bytes + 1);
    let (status, body) = app.webhook(&token, "text/plain", &big).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (413, Some("payload-too-large"))
    );
    let (status, body) = app.webhook(&token, "text/plain", "   ").await;
    assert_eq!((status, body["parse_error"].as_str()), (200, Some("empty")));
    for (change, field) in [
        (json!({"recipient": "555"}), "channel_id"),
        (json!({"template": "{% if %}"}), "template"),
        (json!({"default_chart_id": "../../etc"}), "default_chart_id"),
        (
            json!({"channel_id": "00000000-0000-0000-0000-000000000000", "recipient": "1"}),
            "channel_id",
        ),
    ] {
        let (status, body) = app
            .api(
                reqwest::Method::PUT,
                "signals/profile",
                Some(change.clone()),
            )
            .await;
        assert_eq!(status, 400, "{change}: {body}");
        assert_eq!(body["errors"][0]["field"], field, "{change}: {body}");
    }
    let (status, body) = app
        .api(
            reqwest::Method::PUT,
            "signals/profile",
            Some(json!({"colour": "red"})),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (422, Some("invalid-body")),
        "{body}"
    );
    let (status, body) = app.get_json("signals/not-a-signal").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("signal-not-found"))
    );
}

on_both_databases!(bad_webhook_and_profile_input_gets_clear_errors);
