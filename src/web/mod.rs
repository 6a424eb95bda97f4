//! HTTP surface: route table, operational endpoints and cross-cutting middleware.
mod accounts;
mod docs;
mod health;
pub mod limits;
pub mod metrics;
mod spa;

use actix_web::{HttpResponse, web};

use crate::{
    auth, campaigns, channels, contacts, dashboard, error::ErrorBody, events, integrations, media,
    messages, templates,
};

/// The operational routes only: what a worker-only replica (`serve --no-http`) serves, so it
/// can be probed and scraped like the others.
pub fn configure_operations(cfg: &mut web::ServiceConfig) {
    cfg.route("/live", web::get().to(health::live))
        .route("/ready", web::get().to(health::ready))
        .route("/health", web::get().to(health::health))
        .route("/metrics", web::get().to(metrics::render));
}

/// Mounts every route: operations at the root, the API under `/api/v1`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    // Routes are tried in order: the hottest one (`POST /events`, a static path) goes first so
    // it does not pay for the dynamic patterns' regex matching below.
    cfg.configure(crate::compat::events::configure)
        .configure(configure_operations)
        // The API before the dynamic root routes: its prefix is one string comparison.
        .service(
            web::scope("/api/v1")
                // After authentication (wraps run last-added first): keys are their owner's.
                .wrap(actix_web::middleware::from_fn(
                    crate::idempotency::middleware,
                ))
                .wrap(actix_web::middleware::from_fn(auth::authenticate))
                .wrap(actix_web::middleware::from_fn(auth::audit::middleware))
                // The hot send route first: each dynamic pattern tried before it costs a regex.
                .configure(messages::configure)
                .configure(auth::routes::configure)
                .configure(contacts::configure)
                .configure(templates::configure)
                .configure(campaigns::configure)
                .configure(dashboard::configure)
                .configure(accounts::configure)
                .configure(integrations::configure)
                .configure(media::configure)
                .configure(events::configure_rules)
                .configure(crate::subscriptions::configure)
                .configure(crate::signals::configure),
        )
        .route(
            "/telegram/webhook/{channel_id}",
            web::post().to(integrations::telegram_webhook),
        )
        .route(
            "/whatsapp/webhook/{channel_id}",
            web::get().to(channels::whatsapp::webhook::verify),
        )
        .route(
            "/whatsapp/webhook/{channel_id}",
            web::post().to(channels::whatsapp::webhook::receive),
        )
        .configure(media::configure_public)
        .configure(crate::compat::trading::configure)
        .configure(crate::compat::pingui::configure)
        .configure(crate::compat::wa_sender::configure)
        .configure(auth::routes::configure_auth)
        .configure(docs::configure)
        .configure(spa::configure);
}

/// JSON 404 for unknown routes.
pub async fn not_found() -> HttpResponse {
    ErrorBody::new(
        actix_web::http::StatusCode::NOT_FOUND,
        "route-not-found",
        "no such route; see docs/api.md",
    )
    .respond()
}
