//! Tenant isolation, walked over the whole route table: another owner gets 404 on each of a
//! user's resources (existence does not leak), a viewer can change nothing, an admin sees all.
//! The table is checked against the OpenAPI document, so a new route without a row here fails,
//! and every answer of the walk is checked against the document's schemas.
use reqwest::Method;
use serde_json::{Value, json};

use crate::{
    helpers::{BOT_TOKEN, Backend, TestApp, spawn_app},
    on_both_databases,
};

/// One route: method, path (`{id}` is replaced), body, and the owner-scoped id it takes.
struct Route {
    method: Method,
    path: &'static str,
    /// Which of the owner's resources `{id}` stands for; `None` for collection routes.
    resource: Option<&'static str>,
    body: fn(&Resources) -> Option<Value>,
}

/// The ids of what user A created.
struct Resources {
    channel: String,
    message: String,
    media: String,
    integration: String,
    rule: String,
    api_key: String,
    contact: String,
    import: String,
    template: String,
    campaign: String,
    subscription: String,
    signal: String,
    user: String,
}

impl Resources {
    fn id(&self, kind: &str) -> &str {
        match kind {
            "channel" => &self.channel,
            "message" => &self.message,
            "media" => &self.media,
            "integration" => &self.integration,
            "rule" => &self.rule,
            "api_key" => &self.api_key,
            "contact" => &self.contact,
            "import" => &self.import,
            "template" => &self.template,
            "campaign" => &self.campaign,
            "subscription" => &self.subscription,
            "signal" => &self.signal,
            "user" => &self.user,
            other => panic!("unknown resource kind {other}"),
        }
    }
}

fn none(_: &Resources) -> Option<Value> {
    None
}

/// Every route under `/api/v1`.
fn routes() -> Vec<Route> {
    use Method as M;
    let r = |method: Method, path, resource, body| Route {
        method,
        path,
        resource,
        body,
    };
    vec![
        r(M::POST, "/api/v1/channels", None, |_| {
            Some(json!({"kind": "telegram", "name": "b", "bot_token": BOT_TOKEN}))
        }),
        r(M::GET, "/api/v1/channels", None, none),
        r(M::GET, "/api/v1/channels/{id}", Some("channel"), none),
        r(M::DELETE, "/api/v1/channels/{id}", Some("channel"), none),
        r(M::POST, "/api/v1/messages", None, |res| {
            Some(json!({"channel_id": res.channel, "to": "77", "text": "hi"}))
        }),
        r(M::GET, "/api/v1/messages/{id}", Some("message"), none),
        r(M::POST, "/api/v1/media", None, none),
        r(M::GET, "/api/v1/media", None, none),
        r(M::GET, "/api/v1/media/{id}", Some("media"), none),
        r(M::GET, "/api/v1/media/{id}/content", Some("media"), none),
        r(M::GET, "/api/v1/media/{id}/url", Some("media"), none),
        r(M::DELETE, "/api/v1/media/{id}", Some("media"), none),
        r(M::POST, "/api/v1/integrations", None, |res| {
            Some(json!({"channel_id": res.channel, "name": "x"}))
        }),
        r(M::GET, "/api/v1/integrations", None, none),
        r(
            M::GET,
            "/api/v1/integrations/{id}",
            Some("integration"),
            none,
        ),
        r(
            M::PATCH,
            "/api/v1/integrations/{id}",
            Some("integration"),
            |_| Some(json!({"name": "renamed"})),
        ),
        r(
            M::DELETE,
            "/api/v1/integrations/{id}",
            Some("integration"),
            none,
        ),
        r(
            M::POST,
            "/api/v1/integrations/{id}/link",
            Some("integration"),
            none,
        ),
        r(M::POST, "/api/v1/alert-rules", None, |res| {
            Some(json!({"name": "r", "service": "s", "channel_id": res.channel, "chat_id": 77}))
        }),
        r(M::GET, "/api/v1/alert-rules", None, none),
        r(M::GET, "/api/v1/alert-rules/{id}", Some("rule"), none),
        r(M::PATCH, "/api/v1/alert-rules/{id}", Some("rule"), |_| {
            Some(json!({"enabled": false}))
        }),
        r(M::DELETE, "/api/v1/alert-rules/{id}", Some("rule"), none),
        r(M::POST, "/api/v1/api-keys", None, |_| {
            Some(json!({"name": "k"}))
        }),
        r(M::GET, "/api/v1/api-keys", None, none),
        r(M::GET, "/api/v1/api-keys/{id}", Some("api_key"), none),
        r(M::DELETE, "/api/v1/api-keys/{id}", Some("api_key"), none),
        r(M::GET, "/api/v1/audit-log", None, none),
        r(M::POST, "/api/v1/contacts", None, |_| {
            Some(json!({"phone": "+34 611 000 111"}))
        }),
        r(M::GET, "/api/v1/contacts", None, none),
        r(M::GET, "/api/v1/contacts/{id}", Some("contact"), none),
        r(M::PATCH, "/api/v1/contacts/{id}", Some("contact"), |_| {
            Some(json!({"group": "stolen"}))
        }),
        r(M::DELETE, "/api/v1/contacts/{id}", Some("contact"), none),
        r(M::POST, "/api/v1/contacts/imports", None, none),
        r(M::GET, "/api/v1/contacts/imports", None, none),
        r(
            M::GET,
            "/api/v1/contacts/imports/{id}",
            Some("import"),
            none,
        ),
        r(
            M::GET,
            "/api/v1/contacts/imports/{id}/errors",
            Some("import"),
            none,
        ),
        r(M::POST, "/api/v1/templates", None, |_| {
            Some(json!({"name": "t", "body": "Hola {{ nombre }}"}))
        }),
        r(M::GET, "/api/v1/templates", None, none),
        r(M::GET, "/api/v1/templates/{id}", Some("template"), none),
        r(M::PATCH, "/api/v1/templates/{id}", Some("template"), |_| {
            Some(json!({"body": "stolen"}))
        }),
        r(M::DELETE, "/api/v1/templates/{id}", Some("template"), none),
        r(
            M::POST,
            "/api/v1/templates/{id}/preview",
            Some("template"),
            |res| Some(json!({"contact_id": res.contact})),
        ),
        r(
            M::POST,
            "/api/v1/templates/{id}/check",
            Some("template"),
            |_| Some(json!({})),
        ),
        r(M::POST, "/api/v1/campaigns", None, |res| {
            Some(json!({"name": "c", "channel_id": res.channel, "body": "Hola"}))
        }),
        r(M::GET, "/api/v1/campaigns", None, none),
        r(M::GET, "/api/v1/campaigns/{id}", Some("campaign"), none),
        r(
            M::POST,
            "/api/v1/campaigns/{id}/start",
            Some("campaign"),
            none,
        ),
        r(
            M::POST,
            "/api/v1/campaigns/{id}/pause",
            Some("campaign"),
            none,
        ),
        r(
            M::POST,
            "/api/v1/campaigns/{id}/resume",
            Some("campaign"),
            none,
        ),
        r(
            M::POST,
            "/api/v1/campaigns/{id}/cancel",
            Some("campaign"),
            none,
        ),
        r(
            M::POST,
            "/api/v1/campaigns/{id}/retry-failed",
            Some("campaign"),
            none,
        ),
        r(
            M::GET,
            "/api/v1/campaigns/{id}/recipients",
            Some("campaign"),
            none,
        ),
        r(M::GET, "/api/v1/dashboard/current-month", None, none),
        r(M::GET, "/api/v1/dashboard/timeline", None, none),
        r(M::GET, "/api/v1/dashboard/by-group", None, none),
        r(M::GET, "/api/v1/dashboard/by-contact", None, none),
        r(M::POST, "/api/v1/subscriptions", None, |res| {
            Some(json!({"channel_id": res.channel}))
        }),
        r(M::GET, "/api/v1/subscriptions", None, none),
        r(
            M::GET,
            "/api/v1/subscriptions/{id}",
            Some("subscription"),
            none,
        ),
        r(
            M::DELETE,
            "/api/v1/subscriptions/{id}",
            Some("subscription"),
            none,
        ),
        r(
            M::GET,
            "/api/v1/subscriptions/{id}/dead-letters",
            Some("subscription"),
            none,
        ),
        r(
            M::POST,
            "/api/v1/subscriptions/{id}/dead-letters/replay",
            Some("subscription"),
            none,
        ),
        r(M::GET, "/api/v1/signals/profile", None, none),
        r(M::PUT, "/api/v1/signals/profile", None, |_| {
            Some(json!({"webhook_enabled": true}))
        }),
        r(M::POST, "/api/v1/signals/profile/token", None, none),
        r(M::GET, "/api/v1/signals", None, none),
        r(M::GET, "/api/v1/signals/{id}", Some("signal"), none),
        r(M::PATCH, "/api/v1/signals/{id}", Some("signal"), |_| {
            Some(json!({"result": "win"}))
        }),
        r(M::PUT, "/api/v1/users/{id}/plan", Some("user"), |_| {
            Some(json!({"plan": "premium"}))
        }),
    ]
}

async fn call(
    app: &TestApp,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = app
        .client
        .request(method, format!("{}{path}", app.address))
        .bearer_auth(token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    // Every answer of the walk is checked against the OpenAPI document.
    crate::openapi::send_checked(req).await
}

async fn user(app: &TestApp, name: &str, role: &str) -> String {
    let db = app.inspect_db().await;
    let user = pregonero::auth::repo::create_user(&db, name, role)
        .await
        .expect("user");
    pregonero::auth::repo::create_api_key(&db, &user.id, "walk")
        .await
        .expect("key")
}

/// `POST` as `token` (JSON, or raw bytes with a content type); asserts it was accepted and
/// returns the id found at `pointer` in the answer.
async fn create(app: &TestApp, token: &str, path: &str, body: Body, pointer: &str) -> String {
    let req = app
        .client
        .post(format!("{}{path}", app.address))
        .bearer_auth(token);
    let exact = match &body {
        Body::Raw(_, _, status) => Some(*status),
        Body::Json(_) => None,
    };
    let req = match body {
        Body::Json(v) => req.json(&v),
        Body::Raw(content_type, bytes, _) => req.header("content-type", content_type).body(bytes),
    };
    let (status, answer) = crate::openapi::send_checked(req).await;
    match exact {
        Some(expected) => assert_eq!(status, expected, "{path}: {answer}"),
        None => assert!(status == 201 || status == 202, "{path}: {status} {answer}"),
    }
    answer
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{path}: no {pointer} in {answer}"))
        .to_owned()
}

enum Body {
    Json(Value),
    /// Content type, bytes, and the exact status expected.
    Raw(&'static str, Vec<u8>, u16),
}

/// User A creates one of everything.
async fn create_everything(app: &TestApp, a: &str) -> Resources {
    use Body::{Json, Raw};
    app.telegram.add_bot(BOT_TOKEN, "pregonero_test_bot");
    app.telegram.add_chat(77);
    let channel = create(
        app,
        a,
        "/api/v1/channels",
        Json(json!({"kind": "telegram", "name": "a", "bot_token": BOT_TOKEN})),
        "/id",
    )
    .await;
    let message = create(
        app,
        a,
        "/api/v1/messages",
        Json(json!({"channel_id": channel, "to": "77", "text": "hello"})),
        "/id",
    )
    .await;
    let png = vec![137u8, 80, 78, 71, 13, 10, 26, 10, 0, 0];
    let media = create(
        app,
        a,
        "/api/v1/media?filename=a.png",
        Raw("image/png", png, 201),
        "/id",
    )
    .await;
    let integration = create(
        app,
        a,
        "/api/v1/integrations",
        Json(json!({"channel_id": channel, "name": "a"})),
        "/integration/id",
    )
    .await;
    let rule = create(
        app,
        a,
        "/api/v1/alert-rules",
        Json(json!({"name": "a", "service": "payments", "channel_id": channel, "chat_id": 77})),
        "/id",
    )
    .await;
    let api_key = create(
        app,
        a,
        "/api/v1/api-keys",
        Json(json!({"name": "a"})),
        "/id",
    )
    .await;
    let contact = create(
        app,
        a,
        "/api/v1/contacts",
        Json(json!({"phone": "+34 612 345 678", "name": "A's"})),
        "/id",
    )
    .await;
    let csv = b"telefono,nombre\n+34 699 111 222,Import\n".to_vec();
    let import = create(
        app,
        a,
        "/api/v1/contacts/imports",
        Raw("text/csv", csv, 202),
        "/id",
    )
    .await;
    let template = create(
        app,
        a,
        "/api/v1/templates",
        Json(json!({"name": "a", "body": "Hola {{ nombre }}"})),
        "/id",
    )
    .await;
    let campaign = create(
        app,
        a,
        "/api/v1/campaigns",
        Json(json!({"name": "a", "channel_id": channel, "body": "Hola {{ nombre }}"})),
        "/id",
    )
    .await;
    let hook = create(
        app,
        a,
        "/api/v1/channels",
        Json(
            // A name that never resolves (`.invalid`): nothing is sent, and an operator may not
            // set allow_private_network.
            json!({"kind": "webhook", "name": "events", "url": "https://hooks.invalid/events"}),
        ),
        "/id",
    )
    .await;
    let subscription = create(
        app,
        a,
        "/api/v1/subscriptions",
        Json(json!({"channel_id": hook})),
        "/id",
    )
    .await;
    let token = create(
        app,
        a,
        "/api/v1/signals/profile/token",
        Json(json!({})),
        "/token",
    )
    .await;
    crate::helpers::secret(&token);
    let (status, hook) = crate::helpers::status_and_json(
        app.client
            .post(format!("{}/webhook/u/{token}", app.address))
            .body("Ticker: BINANCE:BTCUSDT"),
    )
    .await;
    assert_eq!(status, 200, "{hook}");
    let signal = hook["signal_id"].as_str().expect("signal id").to_owned();
    let (_, profile) = call(app, a, Method::GET, "/api/v1/signals/profile", None).await;
    let user = profile["user_id"].as_str().expect("user id").to_owned();
    Resources {
        signal,
        user,
        subscription,
        campaign,
        template,
        contact,
        import,
        channel,
        message,
        media,
        integration,
        rule,
        api_key,
    }
}

async fn isolation_walk(backend: Backend) {
    let app = spawn_app(backend).await;
    let a = user(&app, "alice", "operator").await;
    let b = user(&app, "bob", "operator").await;
    let viewer = user(&app, "victor", "viewer").await;
    let res = create_everything(&app, &a).await;

    // B: 404 on every one of A's resources, whatever the method; nothing of A's in B's lists.
    for route in routes().iter().filter(|r| r.resource.is_some()) {
        let id = res.id(route.resource.expect("resource"));
        let path = route.path.replace("{id}", id);
        let (status, body) = call(&app, &b, route.method.clone(), &path, (route.body)(&res)).await;
        assert_eq!(
            status, 404,
            "{} {} as another owner: {body}",
            route.method, route.path
        );
        assert!(
            body["error"]
                .as_str()
                .is_some_and(|e| e.ends_with("-not-found")),
            "{} {}: {body}",
            route.method,
            route.path
        );
    }
    for route in routes()
        .iter()
        .filter(|r| r.method == Method::GET && r.resource.is_none())
    {
        let (status, body) = call(&app, &b, Method::GET, route.path, None).await;
        if route.path == "/api/v1/audit-log" {
            assert_eq!((status, body["error"].as_str()), (403, Some("admin-only")));
            continue;
        }
        assert_eq!(status, 200, "{}: {body}", route.path);
        let text = body.to_string();
        for kind in [
            "channel",
            "message",
            "media",
            "integration",
            "rule",
            "api_key",
            "contact",
            "import",
            "template",
            "campaign",
            "subscription",
            "signal",
        ] {
            assert!(
                !text.contains(res.id(kind)),
                "{} lists A's {kind}",
                route.path
            );
        }
    }

    // The viewer: every change refused before it runs, on any id.
    for route in routes().iter().filter(|r| r.method != Method::GET) {
        let path = match route.resource {
            Some(kind) => route.path.replace("{id}", res.id(kind)),
            None => route.path.to_owned(),
        };
        let (status, body) = call(
            &app,
            &viewer,
            route.method.clone(),
            &path,
            (route.body)(&res),
        )
        .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (403, Some("read-only-role")),
            "{} {} as a viewer",
            route.method,
            route.path
        );
    }

    // The Pingui-compatible routes that take an API key follow the same rules.
    for path in ["/api/createIntegration", "/api/revokeIntegration"] {
        let body = json!({"integrationId": res.integration, "channelId": res.channel});
        let (status, err) = call(&app, &viewer, Method::POST, path, Some(body)).await;
        assert_eq!(
            (status, err["error"].as_str()),
            (403, Some("read-only-role")),
            "{path}"
        );
    }
    let (status, err) = call(
        &app,
        &b,
        Method::POST,
        "/api/revokeIntegration",
        Some(json!({"integrationId": res.integration})),
    )
    .await;
    assert_eq!(
        (status, err["error"].as_str()),
        (404, Some("integration-not-found"))
    );

    // The trading seed's routes follow the same rules: 404 for another owner, A's own for A.
    for path in ["/api/users/{id}/stats", "/api/users/{id}/signals"] {
        let path = path.replace("{id}", &res.user);
        let (status, body) = call(&app, &b, Method::GET, &path, None).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (404, Some("user-not-found")),
            "{path}"
        );
        let (status, body) = call(&app, &a, Method::GET, &path, None).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
    let (status, body) = call(
        &app,
        &b,
        Method::GET,
        &format!("/api/v1/signals?user_id={}", res.user),
        None,
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("user-not-found"))
    );

    // Every refusal above is in the audit log, with who was refused.
    let (_, log) = call(
        &app,
        &app.api_key,
        Method::GET,
        "/api/v1/audit-log?limit=1000",
        None,
    )
    .await;
    let entries = log["items"].as_array().expect("entries");
    assert!(
        entries
            .iter()
            .any(|e| e["action"] == "POST /api/createIntegration"
                && e["status"] == 403
                && e["actor_kind"] == "api_key")
    );
    assert!(
        entries
            .iter()
            .any(|e| e["action"] == "DELETE /api/v1/channels/{id}"
                && e["status"] == 404
                && e["target"]["id"] == res.channel.as_str())
    );

    // The admin sees every owner's resources by id.
    for route in routes()
        .iter()
        .filter(|r| r.method == Method::GET && r.resource.is_some())
    {
        let path = route
            .path
            .replace("{id}", res.id(route.resource.expect("resource")));
        let (status, body) = call(&app, &app.api_key, Method::GET, &path, None).await;
        assert_eq!(status, 200, "admin GET {path}: {body}");
    }
    // … but lists show the caller's own, an admin's too (the audit log aside).
    for route in routes().iter().filter(|r| {
        r.method == Method::GET && r.resource.is_none() && r.path != "/api/v1/audit-log"
    }) {
        let (status, body) = call(&app, &app.api_key, Method::GET, route.path, None).await;
        assert_eq!(status, 200, "admin {}: {body}", route.path);
        let text = body.to_string();
        for kind in [
            "channel",
            "media",
            "integration",
            "contact",
            "template",
            "campaign",
            "signal",
        ] {
            assert!(
                !text.contains(res.id(kind)),
                "the admin's {} lists A's {kind}",
                route.path
            );
        }
    }

    // Nothing above changed A's data: A still sees all of it.
    for route in routes()
        .iter()
        .filter(|r| r.method == Method::GET && r.resource.is_some())
    {
        let path = route
            .path
            .replace("{id}", res.id(route.resource.expect("resource")));
        assert_eq!(
            call(&app, &a, Method::GET, &path, None).await.0,
            200,
            "A GET {path}"
        );
    }

    // A's own changes: each succeeds or answers a documented refusal (both checked against the
    // OpenAPI document by `call`); never 404 on A's own resources, never a server error.
    // Deletions go last (in reverse, dependents before what they hang on: a channel's
    // integrations before the channel), so every other change still finds its resource.
    let (deletions, mut changes): (Vec<_>, Vec<_>) = routes()
        .into_iter()
        .filter(|r| r.method != Method::GET)
        .partition(|r| r.method == Method::DELETE);
    changes.extend(deletions.into_iter().rev());
    // Setting a plan is the admin's (to others it is as if the user did not exist).
    changes.retain(|r| r.path != "/api/v1/users/{id}/plan");
    for route in changes {
        let path = match route.resource {
            Some(kind) => route.path.replace("{id}", res.id(kind)),
            None => route.path.to_owned(),
        };
        let (status, body) = call(&app, &a, route.method.clone(), &path, (route.body)(&res)).await;
        assert!(
            status < 500 && status != 404,
            "A {} {}: {status} {body}",
            route.method,
            route.path
        );
    }
}

on_both_databases!(isolation_walk);

/// The lists of `/api/v1`: every one answers `{items, next_cursor}` and pages by cursor.
const LISTS: &[&str] = &[
    "/api/v1/channels",
    "/api/v1/media",
    "/api/v1/integrations",
    "/api/v1/alert-rules",
    "/api/v1/api-keys",
    "/api/v1/audit-log",
    "/api/v1/contacts",
    "/api/v1/contacts/imports",
    "/api/v1/templates",
    "/api/v1/campaigns",
    "/api/v1/campaigns/{id}/recipients",
    "/api/v1/subscriptions",
    "/api/v1/subscriptions/{id}/dead-letters",
    "/api/v1/signals",
];

/// One list convention: every list is `{"items": [...], "next_cursor": …}` and nothing else;
/// pages of `limit=1` chain by cursor through every row exactly once, the same rows one big
/// page holds; a cursor this server did not give is `400 invalid-cursor`, a limit out of
/// bounds `400 validation-failed`. Every other GET answers an object, never a bare array.
async fn every_list_pages_by_cursor(backend: Backend) {
    let app = spawn_app(backend).await;
    let a = user(&app, "alice", "operator").await;
    let res = create_everything(&app, &a).await;
    // A second key, channel and template, so that pages of one chain there too (the audit log
    // and the contacts' own test page through thousands).
    for (path, body) in [
        ("api-keys", json!({"name": "second"})),
        (
            "templates",
            json!({"name": "second", "body": "hola {{nombre}}"}),
        ),
    ] {
        let (status, body) = call(
            &app,
            &a,
            Method::POST,
            &format!("/api/v1/{path}"),
            Some(body),
        )
        .await;
        assert_eq!(status, 201, "{path}: {body}");
    }
    let mut seen = Vec::new();
    for route in routes().iter().filter(|r| r.method == Method::GET) {
        let path = match route.resource {
            Some(kind) => route.path.replace("{id}", res.id(kind)),
            None => route.path.to_owned(),
        };
        // The audit log is the admins'.
        let token = if route.path == "/api/v1/audit-log" {
            app.api_key.clone()
        } else {
            a.clone()
        };
        let (status, body) = call(&app, &token, Method::GET, &path, None).await;
        if route.path.ends_with("/content") || route.path.ends_with("/errors") {
            continue; // files (the media's bytes, a CSV of refused rows), not JSON
        }
        assert_eq!(status, 200, "{path}: {body}");
        assert!(body.is_object(), "{path} answers an object: {body}");
        if !LISTS.contains(&route.path) {
            assert!(
                body.get("next_cursor").is_none(),
                "{path} is a list: add it"
            );
            continue;
        }
        seen.push(route.path);
        let keys: Vec<&String> = body.as_object().expect("object").keys().collect();
        assert_eq!(keys, ["items", "next_cursor"], "{path}: {body}");
        let sep = if path.contains('?') { '&' } else { '?' };
        let (_, all) = call(
            &app,
            &token,
            Method::GET,
            &format!("{path}{sep}limit=1000"),
            None,
        )
        .await;
        let all = all["items"].as_array().expect("items").clone();
        let mut paged = Vec::new();
        let mut cursor = String::new();
        loop {
            let url = format!("{path}{sep}limit=1&cursor={cursor}");
            let (status, page) = call(&app, &token, Method::GET, &url, None).await;
            assert_eq!(status, 200, "{url}: {page}");
            let items = page["items"].as_array().expect("items");
            assert!(items.len() <= 1, "{url}: {page}");
            paged.extend(items.iter().cloned());
            assert!(paged.len() <= all.len() + 50, "{path} pages past its end");
            match page["next_cursor"].as_str() {
                Some(next) => cursor = next.to_owned(),
                None => break,
            }
        }
        if route.path == "/api/v1/audit-log" {
            // The audit writer may land an earlier request's entry while we page: newest first,
            // it shows on no page after the one it lands before.
            assert!(
                all.iter().all(|e| paged.contains(e)),
                "{path}: a page skipped a row"
            );
            let ids: std::collections::HashSet<String> =
                paged.iter().map(|e| e["id"].to_string()).collect();
            assert_eq!(ids.len(), paged.len(), "{path}: a row on two pages");
        } else {
            assert_eq!(paged, all, "{path}: pages of one hold what one page holds");
        }
        for (query, code) in [
            ("cursor=bm90LW91cnM", "invalid-cursor"),
            ("limit=0", "validation-failed"),
            ("limit=1001", "validation-failed"),
        ] {
            let url = format!("{path}{sep}{query}");
            let (status, err) = call(&app, &token, Method::GET, &url, None).await;
            assert_eq!((status, err["error"].as_str()), (400, Some(code)), "{url}");
        }
    }
    assert_eq!(seen, LISTS, "every list was walked");
}

on_both_databases!(every_list_pages_by_cursor);

/// Every `/api/v1` operation in the OpenAPI document has a row in the walk.
#[test]
fn the_walk_covers_every_api_route() {
    let doc = crate::openapi::document();
    let table: Vec<(String, String)> = routes()
        .iter()
        .map(|r| {
            let template = crate::openapi::template_of(r.path).unwrap_or_default();
            (r.method.as_str().to_owned(), template)
        })
        .collect();
    let mut missing = Vec::new();
    for (path, ops) in doc["paths"].as_object().expect("paths") {
        // A live stream never ends; `live.rs` checks whose events it carries. A WhatsApp Web
        // session needs a scripted phone: `whatsapp_web.rs` walks its routes as another owner.
        if !path.starts_with("/api/v1/")
            || crate::openapi::is_stream(path)
            || path.starts_with("/api/v1/channels/{id}/session")
        {
            continue;
        }
        for method in ops.as_object().expect("operations").keys() {
            let op = (method.to_uppercase(), path.clone());
            if !table.contains(&op) {
                missing.push(format!("{} {}", op.0, op.1));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "routes without an isolation row: {missing:?}"
    );
}
