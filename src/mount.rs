//! What a feature's `configure` mounts its routes on: actix's `ServiceConfig`, wrapped by
//! utoipa-actix-web so that each `.service(handler)` also adds the handler's `#[utoipa::path]`
//! to the OpenAPI document (`web::docs`). A leaf module: features import it, and `web` imports
//! the features, without an import circle between them.

/// The route table a feature's `configure(cfg: &mut Routes)` adds to.
pub type Routes<'a> = utoipa_actix_web::service_config::ServiceConfig<'a>;
