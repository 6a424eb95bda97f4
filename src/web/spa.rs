//! The dashboard: a small single-page app (`frontend/`) compiled into the binary, so the server
//! needs no files next to it. No inline script or style: the CSP allows only this origin.
use actix_web::{HttpResponse, web};

const INDEX: &str = include_str!("../../frontend/index.html");
const APP_JS: &str = include_str!("../../frontend/app.js");
const APP_CSS: &str = include_str!("../../frontend/app.css");

/// `GET /`, `/app.js`, `/app.css`.
pub fn configure(cfg: &mut crate::mount::Routes) {
    cfg.route(
        "/",
        web::get().to(|| asset("text/html; charset=utf-8", INDEX)),
    )
    .route(
        "/app.js",
        web::get().to(|| asset("text/javascript; charset=utf-8", APP_JS)),
    )
    .route(
        "/app.css",
        web::get().to(|| asset("text/css; charset=utf-8", APP_CSS)),
    );
}

async fn asset(content_type: &'static str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .insert_header((
            "Content-Security-Policy",
            "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ))
        .insert_header(("Referrer-Policy", "same-origin"))
        .body(body)
}
