//! `/templates`: parse, authorise, call the service, map its error.
use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Compiled, repo::TemplateRow, service};
use crate::{
    auth::Caller,
    domain::{ContactId, MediaId},
    error::ApiError,
    state::AppState,
};

/// `/api/v1/templates` routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/templates", web::post().to(create))
        .route("/templates", web::get().to(list))
        .route("/templates/{id}", web::get().to(get))
        .route("/templates/{id}", web::patch().to(update))
        .route("/templates/{id}", web::delete().to(delete))
        .route("/templates/{id}/preview", web::post().to(preview))
        .route("/templates/{id}/check", web::post().to(check));
}

#[derive(Debug, Serialize)]
struct TemplateView {
    id: String,
    name: String,
    body: String,
    media_id: Option<MediaId>,
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

/// `POST /api/v1/templates`.
async fn create(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<service::Fields>,
) -> Result<HttpResponse, ApiError> {
    let row = service::create(&state, &caller, body.into_inner()).await?;
    Ok(HttpResponse::Created().json(TemplateView::from(row)))
}

/// `GET /api/v1/templates`.
async fn list(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<crate::page::PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let rows = service::list(&state, &caller, &query.request()?).await?;
    Ok(HttpResponse::Ok().json(rows.map(TemplateView::from)))
}

/// `GET /api/v1/templates/{id}`.
async fn get(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let row = service::find(&state, &caller, &id).await?;
    Ok(HttpResponse::Ok().json(TemplateView::from(row)))
}

/// `PATCH /api/v1/templates/{id}`.
async fn update(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
    body: web::Json<service::Fields>,
) -> Result<HttpResponse, ApiError> {
    let row = service::update(&state, &caller, &id, body.into_inner()).await?;
    Ok(HttpResponse::Ok().json(TemplateView::from(row)))
}

/// `DELETE /api/v1/templates/{id}`.
async fn delete(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    service::delete(&state, &caller, &id).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PreviewBody {
    contact_id: ContactId,
}

/// `POST /api/v1/templates/{id}/preview {contact_id}`: the text that contact would get, or
/// `422 missing-variables` naming what the contact lacks.
async fn preview(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
    body: web::Json<PreviewBody>,
) -> Result<HttpResponse, ApiError> {
    let p = service::preview(&state, &caller, &id, &body.contact_id).await?;
    Ok(HttpResponse::Ok().json(json!({
        "template_id": p.template.id, "contact_id": p.contact_id, "text": p.text,
        "media_id": p.template.media_id,
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckBody {
    /// Only contacts of these groups (default: all of the owner's contacts).
    groups: Option<Vec<String>>,
}

/// `POST /api/v1/templates/{id}/check {groups}`: which of the audience's contacts lack a
/// variable the template uses (opted-out contacts are not in an audience).
async fn check(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
    body: web::Json<CheckBody>,
) -> Result<HttpResponse, ApiError> {
    let report = service::check(&state, &caller, &id, body.into_inner().groups).await?;
    Ok(HttpResponse::Ok().json(report))
}
