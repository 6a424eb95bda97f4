//! HTTP surface: route table, operational endpoints and cross-cutting middleware.
mod accounts;
pub mod docs;
mod health;
pub mod limits;
pub mod metrics;
mod sessions;
mod spa;

use actix_web::HttpResponse;
use utoipa_actix_web::scope;

pub use crate::mount::Routes;

use crate::{
    auth, campaigns, channels, contacts, dashboard, error::ErrorBody, events, integrations, media,
    messages, templates,
};

/// The operational routes only: what a worker-only replica (`serve --no-http`) serves, so it
/// can be probed and scraped like the others.
pub fn configure_operations(cfg: &mut Routes) {
    cfg.service(health::live)
        .service(health::ready)
        .service(health::health)
        .service(metrics::render);
}

/// Mounts every route: operations at the root, the API under `/api/v1`.
pub fn configure(cfg: &mut Routes) {
    // Routes are tried in order: the hottest one (`POST /events`, a static path) goes first so
    // it does not pay for the dynamic patterns' regex matching below.
    cfg.configure(crate::compat::events::configure)
        .configure(configure_operations)
        // The API before the dynamic root routes: its prefix is one string comparison.
        .service(
            scope("/api/v1")
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
                .configure(sessions::configure)
                .configure(integrations::configure)
                .configure(media::configure)
                .configure(events::configure_rules)
                .configure(crate::subscriptions::configure)
                .configure(crate::signals::configure)
                .configure(crate::live::configure),
        )
        .service(integrations::telegram_webhook)
        .service(channels::whatsapp::webhook::verify)
        .service(channels::whatsapp::webhook::receive)
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
