//! `/templates`: parse, authorise, call the service, map its error.
use actix_web::{HttpResponse, delete, get, patch, post, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Compiled, repo::TemplateRow, service};
use crate::{
    auth::Caller,
    domain::{ContactId, MediaId},
    error::ApiError,
    state::AppState,
};

/// `/api/v1/templates` routes.
pub fn configure(cfg: &mut crate::mount::Routes) {
    cfg.service(create)
        .service(list)
        .service(get)
        .service(update)
        .service(delete)
        .service(preview)
        .service(check);
}

/// A message template.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Template)]
struct TemplateView {
    id: String,
    name: String,
    /// Jinja syntax: `Hola {{ sustantivo }} {{ nombre }}`.
    body: String,
    /// A file sent with every message made from it.
    media_id: Option<MediaId>,
    /// The variables the body uses, sorted.
    variables: Vec<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<TemplateRow> for TemplateView {
    fn from(t: TemplateRow) -> Self {
        Self {
            variables: Compiled::new(&t.body)
                .map(|c| c.variables().iter().cloned().collect())
                .unwrap_or_default(),
            id: t.id,
            name: t.name,
            body: t.body,
            media_id: t.media_id,
            created_at: t.created_at,
            updated_at: t.updated_at,
        }
    }
}

/// Create a template (its syntax is checked).
#[utoipa::path(
    tag = "templates",
    responses(
        (status = 201, description = "The template", body = TemplateView),
        (status = 400, description = "`validation-failed` (`name`, `body` required; `invalid-format`, `invalid-template`, `media_id` `not-found`), `invalid-json`, `unsupported-media-type`, `invalid-idempotency-key`"),
        (status = 413, description = "`payload-too-large`"),
        (status = 422, description = "`invalid-body`"),
    )
)]
#[post("/templates")]
async fn create(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<service::Fields>,
) -> Result<HttpResponse, ApiError> {
    let row = service::create(&state, &caller, body.into_inner()).await?;
    Ok(HttpResponse::Created().json(TemplateView::from(row)))
}

/// List the caller's templates, oldest first.
#[utoipa::path(
    tag = "templates",
    params(crate::page::PageQuery),
    responses(
        (status = 200, description = "One page of templates", body = crate::page::Page<TemplateView>),
        (status = 400, description = "`invalid-cursor`, `validation-failed`, `invalid-query`"),
    )
)]
#[get("/templates")]
async fn list(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<crate::page::PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let rows = service::list(&state, &caller, &query.request()?).await?;
    Ok(HttpResponse::Ok().json(rows.map(TemplateView::from)))
}

/// One template.
#[utoipa::path(
    tag = "templates",
    params(("id" = String, Path, description = "The template")),
    responses(
        (status = 200, description = "The template", body = TemplateView),
        (status = 404, description = "`template-not-found`"),
    )
)]
#[get("/templates/{id}")]
async fn get(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let row = service::find(&state, &caller, &id).await?;
    Ok(HttpResponse::Ok().json(TemplateView::from(row)))
}

/// Change a template: the fields given change.
#[utoipa::path(
    tag = "templates",
    params(("id" = String, Path, description = "The template")),
    responses(
        (status = 200, description = "The template", body = TemplateView),
        (status = 400, description = "`validation-failed` (`invalid-format`, `invalid-template`, `media_id` `not-found`), `invalid-json`, `unsupported-media-type`"),
        (status = 404, description = "`template-not-found`"),
        (status = 413, description = "`payload-too-large`"),
        (status = 422, description = "`invalid-body`"),
    )
)]
#[patch("/templates/{id}")]
async fn update(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
    body: web::Json<service::Fields>,
) -> Result<HttpResponse, ApiError> {
    let row = service::update(&state, &caller, &id, body.into_inner()).await?;
    Ok(HttpResponse::Ok().json(TemplateView::from(row)))
}

/// Delete a template.
#[utoipa::path(
    tag = "templates",
    params(("id" = String, Path, description = "The template")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "`template-not-found`"),
    )
)]
#[delete("/templates/{id}")]
async fn delete(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    service::delete(&state, &caller, &id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `{contact_id}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = TemplatePreviewRequest)]
struct PreviewBody {
    /// One of the template owner's contacts.
    contact_id: ContactId,
}

/// The text one contact would get (keys in the order the answer always had).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = TemplatePreview)]
struct PreviewView {
    contact_id: ContactId,
    /// The template's file, sent with the text.
    media_id: Option<MediaId>,
    template_id: String,
    /// The rendered text.
    text: String,
}

/// Render a template for one contact.
///
/// The text that contact would get, or `422 missing-variables` naming what the contact lacks.
#[utoipa::path(
    tag = "templates",
    params(("id" = String, Path, description = "The template")),
    responses(
        (status = 200, description = "The rendered text", body = PreviewView),
        (status = 400, description = "`invalid-json`, `unsupported-media-type`, `invalid-idempotency-key`"),
        (status = 404, description = "`template-not-found`, `contact-not-found`"),
        (status = 413, description = "`payload-too-large`"),
        (status = 422, description = "`missing-variables`, `invalid-template`, `render-failed`, `invalid-body`"),
    )
)]
#[post("/templates/{id}/preview")]
async fn preview(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
    body: web::Json<PreviewBody>,
) -> Result<HttpResponse, ApiError> {
    let p = service::preview(&state, &caller, &id, &body.contact_id).await?;
    Ok(HttpResponse::Ok().json(PreviewView {
        contact_id: p.contact_id,
        media_id: p.template.media_id,
        template_id: p.template.id,
        text: p.text,
    }))
}

/// `{groups}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = TemplateCheckRequest)]
struct CheckBody {
    /// Only contacts of these groups (default: all of the owner's contacts).
    groups: Option<Vec<String>>,
}

/// Check a template against an audience.
///
/// Which of the audience's contacts lack a variable the template uses (opted-out contacts are
/// not in an audience); the first 100 are listed, all are counted.
#[utoipa::path(
    tag = "templates",
    params(("id" = String, Path, description = "The template")),
    responses(
        (status = 200, description = "The report", body = service::Check),
        (status = 400, description = "`invalid-json`, `unsupported-media-type`, `invalid-idempotency-key`"),
        (status = 404, description = "`template-not-found`"),
        (status = 413, description = "`payload-too-large`"),
        (status = 422, description = "`invalid-template`, `invalid-body`"),
    )
)]
#[post("/templates/{id}/check")]
async fn check(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
    body: web::Json<CheckBody>,
) -> Result<HttpResponse, ApiError> {
    let report = service::check(&state, &caller, &id, body.into_inner().groups).await?;
    Ok(HttpResponse::Ok().json(report))
}
