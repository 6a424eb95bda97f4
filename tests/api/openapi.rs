//! The OpenAPI document is generated from the code (src/web/docs.rs); these tests hold it to the
//! server's real behaviour:
//! - `docs/openapi.json` is exactly what the code generates (so the file never drifts);
//! - every operation documents its answers, every error answers problem details, every `$ref`
//!   resolves, and no route is mounted around the generator;
//! - live answers match the document: [`check`] validates a real answer (its status must be
//!   documented for the operation, its body must match that status's schema). The tenant walk
//!   (`isolation.rs`, every `/api/v1` operation as owner, stranger, viewer and admin),
//!   `status_and_json` and [`every_other_route_answers_as_documented`] call it.
use std::{
    collections::HashMap,
    sync::{LazyLock, Mutex},
};

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{BOT_TOKEN, Backend, spawn_app};

/// The document the server serves.
pub fn document() -> &'static Value {
    pregonero::web::docs::document()
}

/// Whether `GET path` answers an endless `text/event-stream` (its body is never read whole).
pub fn is_stream(path: &str) -> bool {
    !document()["paths"][path]["get"]["responses"]["200"]["content"]["text/event-stream"].is_null()
}

/// Validators compiled once per (operation, status).
static VALIDATORS: LazyLock<Mutex<HashMap<String, std::sync::Arc<jsonschema::Validator>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// The documented path template `path` (no query) falls under: literal segments must match,
/// `{param}` takes any one segment; the template with the most literal segments wins.
pub fn template_of(path: &str) -> Option<String> {
    let path = path.split('?').next().unwrap_or(path);
    let segments: Vec<&str> = path.split('/').collect();
    let mut best: Option<(usize, &String)> = None;
    for template in document()["paths"].as_object()?.keys() {
        let t: Vec<&str> = template.split('/').collect();
        if t.len() != segments.len() {
            continue;
        }
        let mut literal = 0;
        let fits = t.iter().zip(&segments).all(|(t, s)| {
            if t.starts_with('{') && t.ends_with('}') {
                !s.is_empty()
            } else {
                literal += 1;
                t == s
            }
        });
        if fits && best.is_none_or(|(n, _)| literal > n) {
            best = Some((literal, template));
        }
    }
    best.map(|(_, t)| t.clone())
}

/// Panics unless this answer is one the document describes for `method path`: its status is
/// documented, and a JSON body matches that status's schema.
pub fn check(method: &Method, path: &str, status: u16, content_type: Option<&str>, body: &[u8]) {
    let doc = document();
    let template = template_of(path).unwrap_or_else(|| panic!("{method} {path}: not documented"));
    let op = &doc["paths"][&template][method.as_str().to_lowercase()];
    assert!(
        op.is_object(),
        "{method} {template}: no such operation in the document"
    );
    let mut response = op["responses"]
        .get(status.to_string())
        .or_else(|| op["responses"].get("default"))
        .unwrap_or_else(|| {
            panic!(
                "{method} {template} answered {status}, which it does not document: {}",
                String::from_utf8_lossy(&body[..body.len().min(400)])
            )
        });
    if let Some(r) = response["$ref"].as_str() {
        response = resolve(doc, r);
    }
    let Some(content) = response["content"].as_object() else {
        return;
    };
    let media_type = content_type
        .and_then(|c| c.split(';').next())
        .map(str::trim)
        .unwrap_or("");
    if body.is_empty() {
        // An empty answer (a webhook's bare 200) has no body to check.
        return;
    }
    let Some(entry) = content.get(media_type).or_else(|| {
        // A documented wildcard (`image/*`, `*/*`) covers its kind.
        content.iter().find_map(|(k, v)| {
            let prefix = k.strip_suffix('*')?;
            (k == "*/*" || media_type.starts_with(prefix)).then_some(v)
        })
    }) else {
        panic!(
            "{method} {template} answered {status} as `{media_type}`; the document says {:?}",
            content.keys().collect::<Vec<_>>()
        );
    };
    let is_json = media_type == "application/json" || media_type.ends_with("+json");
    let Some(schema) = entry.get("schema").filter(|_| is_json) else {
        return;
    };
    let key = format!("{method} {template} {status} {media_type}");
    let validator = {
        let mut cache = VALIDATORS.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .entry(key.clone())
            .or_insert_with(|| {
                let mut root = schema.clone();
                if let Some(obj) = root.as_object_mut() {
                    obj.insert("components".into(), doc["components"].clone());
                }
                std::sync::Arc::new(
                    jsonschema::draft202012::new(&root)
                        .unwrap_or_else(|e| panic!("{key}: the schema does not compile: {e}")),
                )
            })
            .clone()
    };
    let instance: Value = serde_json::from_slice(body).unwrap_or_else(|e| {
        panic!(
            "{key}: the body is not JSON ({e}): {}",
            String::from_utf8_lossy(body)
        )
    });
    let errors: Vec<String> = validator
        .iter_errors(&instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .take(5)
        .collect();
    assert!(
        errors.is_empty(),
        "{key}: the answer does not match its schema: {errors:#?}\nbody: {}",
        serde_json::to_string(&instance).unwrap_or_default()
    );
}

/// Sends `req`, checks the answer against the document, and returns its status and JSON body.
pub async fn send_checked(req: reqwest::RequestBuilder) -> (u16, Value) {
    let (client, req) = req.build_split();
    let req = req.expect("a request");
    let (method, path) = (req.method().clone(), req.url().path().to_owned());
    let res = client.execute(req).await.expect("request");
    let status = res.status().as_u16();
    let content_type = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = res.bytes().await.expect("body");
    check(&method, &path, status, content_type.as_deref(), &bytes);
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// Every `.rs` file under `src/`: its path from the crate's root (`src/web/docs.rs`) and text.
pub fn rust_sources() -> Vec<(String, String)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut stack = vec![root.join("src")];
    let mut out = Vec::new();
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(root).expect("inside").to_string_lossy();
                let text = std::fs::read_to_string(&path).expect("read");
                out.push((rel.into_owned(), text));
            }
        }
    }
    out
}

fn resolve<'a>(doc: &'a Value, reference: &str) -> &'a Value {
    let pointer = reference.trim_start_matches('#');
    doc.pointer(pointer)
        .unwrap_or_else(|| panic!("{reference} does not resolve"))
}

/// `docs/openapi.json` is what the code generates (`pregonero openapi > docs/openapi.json`).
#[test]
fn docs_openapi_json_is_the_generated_document() {
    let committed: Value = serde_json::from_str(include_str!("../../docs/openapi.json"))
        .expect("docs/openapi.json is JSON");
    assert!(
        &committed == document(),
        "docs/openapi.json is stale: run `cargo run -q -- openapi > docs/openapi.json`"
    );
}

/// Every operation says what it answers; errors are problem details; every `$ref` resolves.
#[test]
fn every_operation_documents_its_answers() {
    let doc = document();
    let mut problems = Vec::new();
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("operations") {
            operations += 1;
            let name = format!("{} {path}", method.to_uppercase());
            if op["summary"].as_str().is_none_or(str::is_empty) {
                problems.push(format!("{name}: no summary (the handler's doc comment)"));
            }
            if op["tags"].as_array().is_none_or(Vec::is_empty) {
                problems.push(format!("{name}: no tag"));
            }
            let responses = op["responses"].as_object().expect("responses");
            let success: Vec<_> = responses
                .iter()
                .filter(|(s, _)| s.starts_with('2') || s.starts_with('3'))
                .collect();
            if success.is_empty() {
                problems.push(format!("{name}: no success answer"));
            }
            for (status, r) in success {
                let has_body = r["content"]
                    .as_object()
                    .is_some_and(|c| c.values().all(|m| m.get("schema").is_some()));
                if !has_body && !matches!(status.as_str(), "204" | "302" | "303") {
                    problems.push(format!("{name}: {status} has no body schema"));
                }
            }
            for (status, r) in responses {
                if !(status.starts_with('4') || status.starts_with('5')) {
                    continue;
                }
                let r = match r["$ref"].as_str() {
                    Some(reference) => resolve(doc, reference),
                    None => r,
                };
                if r["content"]["application/problem+json"].is_null() {
                    problems.push(format!("{name}: {status} is not problem details"));
                }
                if r["description"].as_str().is_none_or(str::is_empty) {
                    problems.push(format!("{name}: {status} does not say which codes"));
                }
            }
            if matches!(method.as_str(), "put" | "patch") && op["requestBody"].is_null() {
                problems.push(format!("{name}: no request body"));
            }
        }
    }
    let text = doc.to_string();
    for (i, _) in text.match_indices("\"$ref\":\"") {
        let rest = &text[i + 8..];
        let reference = &rest[..rest.find('"').expect("end of ref")];
        if doc.pointer(reference.trim_start_matches('#')).is_none() {
            problems.push(format!("{reference} does not resolve"));
        }
    }
    assert!(operations >= 95, "only {operations} operations documented");
    assert!(problems.is_empty(), "{problems:#?}");
}

/// The error codes the document names are ones the server really answers (each is a literal in
/// src/), and each under one status only: one code, one status, whichever route answers it.
/// (Field codes named in parentheses, such as `validation-failed` (`too-long`), do not count.)
#[test]
fn documented_error_codes_are_real_and_have_one_status() {
    let doc = document();
    let mut literals = std::collections::HashSet::new();
    for (_, text) in rust_sources() {
        for piece in text.split('"').skip(1).step_by(2) {
            literals.insert(piece.to_owned());
        }
    }
    let mut statuses: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        Default::default();
    let mut invented = std::collections::BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("operations") {
            for (status, r) in op["responses"].as_object().expect("responses") {
                if !(status.starts_with('4') || status.starts_with('5')) {
                    continue;
                }
                let r = match r["$ref"].as_str() {
                    Some(reference) => resolve(doc, reference),
                    None => r,
                };
                // Drop parenthesised asides: they name field codes and fields.
                let mut text = String::new();
                let mut depth = 0;
                for ch in r["description"].as_str().unwrap_or_default().chars() {
                    match ch {
                        '(' => depth += 1,
                        ')' => depth -= 1,
                        c if depth == 0 => text.push(c),
                        _ => {}
                    }
                }
                for code in text.split('`').skip(1).step_by(2) {
                    let is_code = code.len() > 3
                        && code.contains('-')
                        && code.chars().all(|c| c.is_ascii_lowercase() || c == '-');
                    if !is_code {
                        continue;
                    }
                    if !literals.contains(code) {
                        invented.insert(format!("{code} ({} {path})", method.to_uppercase()));
                    }
                    statuses
                        .entry(code.to_owned())
                        .or_default()
                        .insert(status.clone());
                }
            }
        }
    }
    assert!(statuses.len() > 80, "only {} codes found", statuses.len());
    assert!(
        invented.is_empty(),
        "codes the server never answers: {invented:#?}"
    );
    let split: Vec<_> = statuses.iter().filter(|(_, s)| s.len() > 1).collect();
    assert!(
        split.is_empty(),
        "codes under more than one status: {split:#?}"
    );
}

/// No route is mounted around the generator: every handler is mounted with `.service(handler)`
/// (its `#[get("/…")]` is what `#[utoipa::path]` documents). Only the document itself, Swagger
/// UI and the dashboard's files may use `.route(…)`.
#[test]
fn no_route_escapes_the_document() {
    let allowed = ["src/web/docs.rs", "src/web/spa.rs"];
    let mut found = Vec::new();
    for (rel, text) in rust_sources() {
        if allowed.contains(&rel.as_str()) {
            continue;
        }
        // Test modules build their own little apps; only the server's routes count.
        let text = text.split("#[cfg(test)]").next().unwrap_or("");
        for needle in [".route(", "web::resource(", "web::scope(", "Resource::new("] {
            if text.contains(needle) {
                found.push(format!("{rel}: {needle}"));
            }
        }
    }
    assert!(
        found.is_empty(),
        "routes mounted outside the OpenAPI generator: {found:?}"
    );
}

/// The routes outside `/api/v1` (operations, seeds' routes, webhooks, sign-in, dashboard),
/// called with real requests; every answer is checked against the document.
async fn every_other_route_answers_as_documented(backend: Backend) {
    let app = spawn_app(backend).await;
    let base = app.address.clone();
    let c = &app.client;
    let key = app.api_key.clone();
    app.telegram.add_bot(BOT_TOKEN, "pregonero_test_bot");
    app.telegram.add_chat(77);
    let channel = app.create_bot(None).await;
    let mut called = Vec::new();
    let mut call = async |req: reqwest::RequestBuilder| {
        let (status, body) = send_checked(req).await;
        called.push(status);
        (status, body)
    };

    for path in ["/live", "/ready", "/health", "/metrics"] {
        call(c.get(format!("{base}{path}"))).await;
    }
    // Events (an ingest key of the admin's own).
    let (_, created) = call(
        c.post(format!("{base}/api/v1/api-keys"))
            .bearer_auth(&key)
            .json(&json!({"name": "ingest", "scopes": ["events:write", "events:read"]})),
    )
    .await;
    let ingest = created["token"].as_str().unwrap_or(&key).to_owned();
    crate::helpers::secret(&ingest);
    let event = json!({"service": "payments", "level": "error", "message": "boom"});
    call(
        c.post(format!("{base}/events"))
            .bearer_auth(&ingest)
            .json(&event),
    )
    .await;
    call(
        c.post(format!("{base}/events/batch"))
            .bearer_auth(&ingest)
            .json(&json!([event, event])),
    )
    .await;
    call(
        c.get(format!("{base}/events?service=payments"))
            .bearer_auth(&ingest),
    )
    .await;
    call(c.post(format!("{base}/events")).json(&event)).await;

    // Pingui: a setup token makes an integration; its token sends an alert.
    let (_, setup) = call(
        c.post(format!("{base}/api/v1/integrations"))
            .bearer_auth(&key)
            .json(&json!({"channel_id": channel, "name": "p"})),
    )
    .await;
    let (_, created) = call(
        c.post(format!("{base}/api/createIntegration"))
            .bearer_auth(&key)
            .json(&json!({"channelId": channel, "chatId": "77"})),
    )
    .await;
    let token = created["token"]
        .as_str()
        .or(setup["token"].as_str())
        .unwrap_or_default()
        .to_owned();
    crate::helpers::secret(&token);
    let (_, alert) = call(
        c.post(format!("{base}/api/alert"))
            .bearer_auth(&token)
            .json(&json!({"message": "disk full"})),
    )
    .await;
    let alert_id = alert["id"].as_str().unwrap_or("x").to_owned();
    call(
        c.get(format!("{base}/api/alert/{alert_id}"))
            .bearer_auth(&token),
    )
    .await;
    call(
        c.get(format!("{base}/api/integrations/77"))
            .bearer_auth(&key),
    )
    .await;
    call(
        c.post(format!("{base}/api/revokeIntegration"))
            .bearer_auth(&key)
            .json(&json!({"integrationId": created["integrationId"]})),
    )
    .await;
    call(
        c.post(format!("{base}/api/alert"))
            .json(&json!({"message": "x"})),
    )
    .await;

    // Trading: the webhook, then the seed's reads.
    let (_, minted) = call(
        c.post(format!("{base}/api/v1/signals/profile/token"))
            .bearer_auth(&key)
            .json(&json!({})),
    )
    .await;
    let hook = minted["token"].as_str().unwrap_or("x").to_owned();
    crate::helpers::secret(&hook);
    call(
        c.post(format!("{base}/webhook/u/{hook}"))
            .body("Ticker: BINANCE:BTCUSDT\nSide: BUY\nPrice: 42000"),
    )
    .await;
    call(c.post(format!("{base}/webhook/u/nope")).body("x")).await;
    let (_, profile) = call(
        c.get(format!("{base}/api/v1/signals/profile"))
            .bearer_auth(&key),
    )
    .await;
    let user = profile["user_id"].as_str().unwrap_or("x").to_owned();
    call(
        c.get(format!("{base}/api/users/{user}/stats"))
            .bearer_auth(&key),
    )
    .await;
    call(
        c.get(format!("{base}/api/users/{user}/signals"))
            .bearer_auth(&key),
    )
    .await;

    // Provider webhooks: Telegram's update, WhatsApp's verification and a refused callback.
    call(
        c.post(format!("{base}/telegram/webhook/{channel}"))
            .json(&json!({"update_id": 1})),
    )
    .await;
    call(c.get(format!(
        "{base}/whatsapp/webhook/{channel}?hub.mode=subscribe&hub.verify_token=x&hub.challenge=1"
    )))
    .await;
    call(
        c.post(format!("{base}/whatsapp/webhook/{channel}"))
            .json(&json!({"object": "whatsapp_business_account", "entry": []})),
    )
    .await;

    // Media by signed link.
    let (_, media) = call(
        c.post(format!("{base}/api/v1/media?filename=a.png"))
            .bearer_auth(&key)
            .header("content-type", "image/png")
            .body(vec![137u8, 80, 78, 71, 13, 10, 26, 10, 0, 0]),
    )
    .await;
    let media_id = media["id"].as_str().unwrap_or("x").to_owned();
    let (_, link) = call(
        c.get(format!("{base}/api/v1/media/{media_id}/url"))
            .bearer_auth(&key),
    )
    .await;
    if let Some(url) = link["url"].as_str() {
        let url = if url.starts_with("http") {
            url.to_owned()
        } else {
            format!("{base}{url}")
        };
        call(c.get(url)).await;
    }
    call(c.get(format!("{base}/media/{media_id}/content?expires=1&sig=00"))).await;

    // Sign-in (local mode) and the seed dashboard's routes.
    call(c.get(format!("{base}/auth/config"))).await;
    call(c.get(format!("{base}/auth/me"))).await;
    call(c.get(format!("{base}/auth/login"))).await;
    call(
        c.post(format!("{base}/auth/login"))
            .json(&json!({"username": "admin", "password": "wrong"})),
    )
    .await;
    call(c.get(format!("{base}/auth/callback?code=x&state=y"))).await;
    call(c.post(format!("{base}/auth/logout"))).await;
    for view in [
        "current-month",
        "timeline",
        "by-group",
        "by-contact",
        "nope",
    ] {
        call(c.get(format!("{base}/dashboard/{view}")).bearer_auth(&key)).await;
    }
    call(c.get(format!("{base}/connection-status")).bearer_auth(&key)).await;
    call(c.delete(format!("{base}/cache/user")).bearer_auth(&key)).await;
    call(
        c.post(format!("{base}/send-messages"))
            .bearer_auth(&key)
            .json(&json!({})),
    )
    .await;
    let _ = Method::GET;
    assert!(called.len() >= 40, "{} answers checked", called.len());
}

crate::on_both_databases!(every_other_route_answers_as_documented);
