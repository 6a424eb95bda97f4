//! `GET /openapi.json`, the API as OpenAPI 3.1 (docs/openapi.json, compiled in), and
//! `GET /docs/`, Swagger UI over it. Swagger UI's files are compiled into the binary too
//! (utoipa-swagger-ui's `vendored` build), so the interactive docs work with no network.
use std::sync::LazyLock;

use actix_web::{HttpResponse, web};
use utoipa_swagger_ui::SwaggerUi;

/// The document, parsed once.
static SPEC: LazyLock<serde_json::Value> = LazyLock::new(|| {
    serde_json::from_str(include_str!("../../docs/openapi.json"))
        .unwrap_or_else(|e| serde_json::json!({"error": format!("docs/openapi.json: {e}")}))
});

/// Mounts `/openapi.json`, `/docs` and `/docs/…`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/docs",
        web::get().to(|| async {
            HttpResponse::Found()
                .insert_header(("Location", "/docs/"))
                .finish()
        }),
    )
    .service(SwaggerUi::new("/docs/{_:.*}").external_url_unchecked("/openapi.json", SPEC.clone()));
}
