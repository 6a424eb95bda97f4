//! The API as OpenAPI 3.1, generated from the code: each handler's `#[utoipa::path]` (next to its
//! `#[get("/…")]`, so the route and its documentation are one declaration) and the `ToSchema` of
//! the types it takes and answers, collected by utoipa-actix-web as [`super::configure`] mounts
//! the routes. The conventions every route shares (problem+json errors, `401`, `429` with its
//! headers, the viewer's `403`, `Idempotency-Key`, security) are added here once, from the same
//! rules the middleware applies, instead of being repeated on ~100 handlers.
//!
//! Served at `GET /openapi.json`, and explorable at `GET /docs/` with Swagger UI, whose files are
//! compiled into the binary (utoipa-swagger-ui's `vendored` build): no network needed.
//! `pregonero openapi` prints the same document; `docs/openapi.json` is that output, and a test
//! fails when it is stale.
use std::sync::LazyLock;

use actix_web::{HttpResponse, web};
use serde_json::{Map, Value, json};
use utoipa::OpenApi;
use utoipa_actix_web::AppExt;
use utoipa_swagger_ui::{Config, SwaggerUi};

use crate::error::{ErrorBody, FieldError};

/// What the generated part cannot say: title, description, shared components.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Pregonero",
        description = "Self-hosted multi-channel messaging server. Prose, examples and every \
            error code: docs/api.md. Errors are RFC 9457 problem details \
            (application/problem+json) with a stable kebab-case `error` code. Lists answer \
            {items, next_cursor} and page with ?cursor=&limit=. Explore it at /docs/.",
        license(name = "AGPL-3.0-or-later")
    ),
    components(schemas(ErrorBody, FieldError))
)]
struct Base;

/// The document, built once (on first use).
pub static DOCUMENT: LazyLock<Value> = LazyLock::new(build);

/// The OpenAPI document of every route [`super::configure`] mounts.
pub fn document() -> &'static Value {
    &DOCUMENT
}

fn build() -> Value {
    let (_, api) = actix_web::App::new()
        .into_utoipa_app()
        .openapi(Base::openapi())
        .configure(super::configure)
        .split_for_parts();
    let mut doc = serde_json::to_value(&api).unwrap_or_else(|e| json!({"error": e.to_string()}));
    conventions(&mut doc);
    doc
}

/// Mounts `/openapi.json`, `/docs` and `/docs/…`.
pub fn configure(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.route("/openapi.json", web::get().to(serve))
        .route(
            "/docs",
            web::get().to(|| async {
                HttpResponse::Found()
                    .insert_header(("Location", "/docs/"))
                    .finish()
            }),
        )
        .map(|c| c.service(SwaggerUi::new("/docs/{_:.*}").config(Config::from("/openapi.json"))));
}

async fn serve() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-cache"))
        .json(document())
}

/// Routes that take no credentials of ours (they have their own, or none).
fn is_open(path: &str) -> bool {
    path.starts_with("/auth/")
        || path.starts_with("/webhook/")
        || path.starts_with("/telegram/")
        || path.starts_with("/whatsapp/")
        || path == "/media/{id}/content"
        || is_operational(path)
}

/// Exempt from request limits and credentials: probes and scraping.
fn is_operational(path: &str) -> bool {
    matches!(path, "/live" | "/ready" | "/health" | "/metrics")
}

/// Adds what every route shares to each operation, as the middleware applies it.
fn conventions(doc: &mut Value) {
    let info = &mut doc["info"];
    info["version"] = json!(env!("CARGO_PKG_VERSION"));
    doc["servers"] = json!([{"url": "/", "description": "this server (the page's own origin)"}]);
    let components = doc["components"].as_object_mut().map(std::mem::take);
    let mut components = components.unwrap_or_default();
    shared_components(&mut components);
    doc["components"] = Value::Object(components);

    unique_operation_ids(doc);
    let Some(paths) = doc["paths"].as_object_mut() else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for (method, op) in item.iter_mut() {
            let responses = op["responses"].as_object_mut().map(std::mem::take);
            let mut responses = responses.unwrap_or_default();
            let api = path.starts_with("/api/v1/");
            if api {
                op["security"] = json!([{"apiKey": []}, {"keycloakBearer": []}, {"session": []}]);
                default_response(
                    &mut responses,
                    "401",
                    "`missing-credentials`, `invalid-credentials`: no usable credentials",
                );
                if method != "get" {
                    add_code(
                        &mut responses,
                        "403",
                        "`read-only-role`: the caller's role (viewer) may not change anything",
                    );
                }
                add_code(
                    &mut responses,
                    "403",
                    "`insufficient-scope`: the API key lacks the scope (read, write)",
                );
                if method == "post" {
                    let params = op["parameters"].as_array_mut().map(std::mem::take);
                    let mut params = params.unwrap_or_default();
                    // `/messages` keeps its keys on its rows and documents the header itself.
                    if !params.iter().any(|p| p["name"] == "Idempotency-Key") {
                        params.push(json!({"$ref": "#/components/parameters/IdempotencyKey"}));
                    }
                    op["parameters"] = Value::Array(params);
                    add_code(
                        &mut responses,
                        "400",
                        "`invalid-idempotency-key`: longer than 255 characters or not visible ASCII",
                    );
                    default_response(
                        &mut responses,
                        "409",
                        "`idempotency-key-reused`, `idempotency-key-in-use`",
                    );
                }
            }
            if !is_operational(path) {
                // Every route but the probes is under the request limits: its own 429s (quotas)
                // also carry the limit's headers.
                let limited = responses
                    .entry("429")
                    .or_insert_with(|| json!({"$ref": "#/components/responses/RateLimited"}));
                if let Some(own) = limited.as_object_mut().filter(|r| !r.contains_key("$ref")) {
                    let description = own["description"].as_str().unwrap_or_default();
                    if !description.contains("rate-limited") {
                        own["description"] = json!(format!(
                            "{description}; `rate-limited`: over the request rate limit"
                        ));
                    }
                    own.insert(
                        "headers".into(),
                        json!({
                            "Retry-After": {"$ref": "#/components/headers/Retry-After"},
                            "RateLimit": {"$ref": "#/components/headers/RateLimit"},
                            "RateLimit-Policy": {"$ref": "#/components/headers/RateLimit-Policy"}
                        }),
                    );
                }
            }
            if !is_open(path) && !api && !responses.contains_key("401") {
                default_response(&mut responses, "401", "no usable credentials");
            }
            for (status, response) in responses.iter_mut() {
                problem_content(status, response);
            }
            op["responses"] = Value::Object(responses);
        }
    }
}

/// Handlers are named for what they do in their module (`list`, `create`): where two modules
/// use the same name, the operation id gets its tag (`list_campaigns`), and the path if needed.
fn unique_operation_ids(doc: &mut Value) {
    let Some(paths) = doc["paths"].as_object_mut() else {
        return;
    };
    let mut seen = std::collections::HashMap::<String, usize>::new();
    for item in paths.values() {
        for op in item.as_object().into_iter().flat_map(|o| o.values()) {
            if let Some(id) = op["operationId"].as_str() {
                *seen.entry(id.to_owned()).or_default() += 1;
            }
        }
    }
    let mut taken = std::collections::HashSet::new();
    for (path, item) in paths.iter_mut() {
        for (method, op) in item.as_object_mut().into_iter().flat_map(|o| o.iter_mut()) {
            let id = op["operationId"].as_str().unwrap_or(method).to_owned();
            let mut unique = id.clone();
            if seen.get(&id).copied().unwrap_or(0) > 1 {
                let tag = op["tags"][0].as_str().unwrap_or("api").replace('-', "_");
                unique = format!("{id}_{tag}");
            }
            if !taken.insert(unique.clone()) {
                let from_path: String = path
                    .split('/')
                    .filter(|s| !s.is_empty() && !s.starts_with('{'))
                    .collect::<Vec<_>>()
                    .join("_")
                    .replace('-', "_");
                unique = format!("{method}_{from_path}");
                taken.insert(unique.clone());
            }
            op["operationId"] = json!(unique);
        }
    }
}

/// Adds `status` with `description` unless the route documents it itself.
fn default_response(responses: &mut Map<String, Value>, status: &str, description: &str) {
    responses
        .entry(status)
        .or_insert_with(|| json!({"description": description}));
}

/// Adds `code` to what `status` says (or adds `status` with it).
fn add_code(responses: &mut Map<String, Value>, status: &str, code: &str) {
    match responses.get_mut(status) {
        Some(r) => {
            let description = r["description"].as_str().unwrap_or_default();
            let name = code.split(':').next().unwrap_or(code);
            if !description.contains(name) {
                r["description"] = json!(format!("{description}; {code}"));
            }
        }
        None => {
            responses.insert(status.into(), json!({"description": code}));
        }
    }
}

/// Errors without a documented body answer problem details; 429 and 503 say when to retry.
fn problem_content(status: &str, response: &mut Value) {
    if !status.starts_with('4') && !status.starts_with('5') {
        return;
    }
    let Some(r) = response.as_object_mut() else {
        return;
    };
    if r.contains_key("$ref") {
        return;
    }
    r.entry("content").or_insert_with(
        || json!({"application/problem+json": {"schema": {"$ref": "#/components/schemas/Error"}}}),
    );
    if status == "429" || status == "503" {
        r.entry("headers").or_insert_with(
            || json!({"Retry-After": {"$ref": "#/components/headers/Retry-After"}}),
        );
    }
}

/// Security schemes, the shared parameter, headers and responses; `instance` on errors.
fn shared_components(c: &mut Map<String, Value>) {
    if let Some(error) = c
        .get_mut("schemas")
        .and_then(|s| s.get_mut("Error"))
        .and_then(|e| e.get_mut("properties"))
        .and_then(Value::as_object_mut)
    {
        error.insert(
            "instance".into(),
            json!({"type": "string", "description": "urn:uuid:<request id> (also X-Request-Id)"}),
        );
    }
    c.insert(
        "securitySchemes".into(),
        json!({
            "apiKey": {"type": "http", "scheme": "bearer", "description": "An owner's API key (prg_…), created with POST /api/v1/api-keys, printed on first start, or by `pregonero admin create-api-key`. Scopes: read (GET) and write; events:write and events:read for /events."},
            "integrationToken": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT", "description": "An integration token (HS256 JWT with scopes alert:send, integration:read, integration:revoke) or a one-time setup token (integration:create)."},
            "keycloakBearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT", "description": "A Keycloak access token for this realm (RS256; iss, aud = oidc.audience or the client id, exp checked). Roles from realm_access.roles / resource_access.<client>.roles."},
            "session": {"type": "apiKey", "in": "cookie", "name": "pregonero_session", "description": "Browser session from /auth/callback (Keycloak) or POST /auth/login (local mode). Mutating requests must also send X-CSRF-Token (from GET /auth/me)."}
        }),
    );
    c.insert(
        "parameters".into(),
        json!({"IdempotencyKey": {
            "name": "Idempotency-Key", "in": "header", "required": false,
            "schema": {"type": "string", "minLength": 1, "maxLength": 255},
            "description": "Same key, route and body within 24 h: the first answer again (Idempotent-Replayed: true), nothing else done. Same key, other body or route: 409 idempotency-key-reused; while the first runs: 409 idempotency-key-in-use."
        }}),
    );
    c.insert(
        "headers".into(),
        json!({
            "RateLimit": {"description": "IETF draft-ietf-httpapi-ratelimit-headers-09: `\"<policy>\";r=<requests left>;t=<seconds until full>` (policies `key`, `ip`, `ingest`)", "schema": {"type": "string"}},
            "RateLimit-Policy": {"description": "`\"<policy>\";q=<bucket size>;w=<seconds to refill from empty>`", "schema": {"type": "string"}},
            "Retry-After": {"description": "seconds until a retry may succeed", "schema": {"type": "integer"}}
        }),
    );
    let responses = c.entry("responses").or_insert_with(|| json!({}));
    responses["RateLimited"] = json!({
        "description": "`rate-limited`: over the request rate limit of the credential or address (docs/api.md, Request rate limits); `quota-exhausted` and similar per-route limits say so in their detail",
        "headers": {
            "Retry-After": {"$ref": "#/components/headers/Retry-After"},
            "RateLimit": {"$ref": "#/components/headers/RateLimit"},
            "RateLimit-Policy": {"$ref": "#/components/headers/RateLimit-Policy"}
        },
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    });
}
