//! `/api/v1/contacts` (CRUD) and `/api/v1/contacts/imports` (CSV upload, progress, error report):
//! parse, authorise, call the service, map its error.
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{
    repo::{ImportRow, ListFilter, StoredContact},
    service::{self, ContactBody, Upload},
};
use crate::domain::ContactId;
use crate::page::PageQuery;
use crate::{auth::Caller, error::ApiError, state::AppState};

/// Mounts the routes (the static `imports` paths before `{id}`).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/contacts/imports", web::post().to(start_import))
        .route("/contacts/imports", web::get().to(list_imports))
        .route("/contacts/imports/{id}", web::get().to(get_import))
        .route(
            "/contacts/imports/{id}/errors",
            web::get().to(import_errors),
        )
        .route("/contacts", web::post().to(create))
        .route("/contacts", web::get().to(list))
        .route("/contacts/{id}", web::get().to(get))
        .route("/contacts/{id}", web::patch().to(update))
        .route("/contacts/{id}", web::delete().to(delete));
}

#[derive(Debug, Serialize)]
struct ContactView {
    id: ContactId,
    phone: String,
    name: Option<String>,
    noun: Option<String>,
    group: Option<String>,
    telegram_chat_id: Option<String>,
    attributes: Value,
    opted_out: bool,
    opted_out_at: Option<DateTime<Utc>>,
    source: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<StoredContact> for ContactView {
    fn from(c: StoredContact) -> Self {
        Self {
            attributes: c
                .attributes
                .as_deref()
                .and_then(|a| serde_json::from_str(a).ok())
                .unwrap_or_else(|| json!({})),
            id: c.id,
            phone: c.phone,
            name: c.name,
            noun: c.noun,
            group: c.group_name,
            telegram_chat_id: c.telegram_chat_id,
            opted_out: c.opted_out,
            opted_out_at: c.opted_out_at,
            source: c.source,
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

/// `POST /api/v1/contacts`.
async fn create(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<ContactBody>,
) -> Result<HttpResponse, ApiError> {
    let row = service::create(&state, &caller, body.into_inner()).await?;
    Ok(HttpResponse::Created().json(ContactView::from(row)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    group: Option<String>,
    opted_out: Option<bool>,
    /// `next_cursor` of the page before.
    cursor: Option<String>,
    limit: Option<u64>,
}

/// `GET /api/v1/contacts?group=&opted_out=&after=&limit=`: the caller's contacts by id.
async fn list(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let page = PageQuery {
        cursor: query.cursor,
        limit: query.limit,
    }
    .request()?;
    let filter = ListFilter {
        group: query.group,
        opted_out: query.opted_out,
    };
    let rows = service::list(&state, &caller, filter, &page).await?;
    Ok(HttpResponse::Ok().json(rows.map(ContactView::from)))
}

/// `GET /api/v1/contacts/{id}`.
async fn get(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<ContactId>,
) -> Result<HttpResponse, ApiError> {
    let row = service::find(&state, &caller, &id).await?;
    Ok(HttpResponse::Ok().json(ContactView::from(row)))
}

/// `PATCH /api/v1/contacts/{id}`: the fields given change; `opted_out: true` records an opt-out.
async fn update(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<ContactId>,
    body: web::Json<ContactBody>,
) -> Result<HttpResponse, ApiError> {
    let row = service::update(&state, &caller, &id, body.into_inner()).await?;
    Ok(HttpResponse::Ok().json(ContactView::from(row)))
}

/// `DELETE /api/v1/contacts/{id}`.
async fn delete(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<ContactId>,
) -> Result<HttpResponse, ApiError> {
    service::delete(&state, &caller, &id).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, Serialize)]
struct ImportView {
    id: String,
    filename: String,
    default_region: String,
    status: String,
    total_rows: i64,
    imported: i64,
    failed: i64,
    error: Option<String>,
    created_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
    errors_url: String,
}

impl From<ImportRow> for ImportView {
    fn from(i: ImportRow) -> Self {
        Self {
            errors_url: format!("/api/v1/contacts/imports/{}/errors", i.id),
            id: i.id,
            filename: i.filename,
            default_region: i.default_region,
            status: i.status,
            total_rows: i.total_rows,
            imported: i.imported,
            failed: i.failed,
            error: i.error,
            created_at: i.created_at,
            finished_at: i.finished_at,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportQuery {
    filename: Option<String>,
    default_region: Option<String>,
}

/// `POST /api/v1/contacts/imports?filename=&default_region=`: the CSV file as the body. The
/// upload streams to disk (up to `contacts.max_import_bytes`); `202` as soon as it is stored,
/// then the import runs in the background: follow it at `GET …/imports/{id}`.
async fn start_import(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    query: web::Query<ImportQuery>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let upload = Upload {
        content_type: req
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or(""),
        filename: query.filename,
        default_region: query.default_region,
    };
    let body = payload.map_err(|e| e.to_string());
    let import = service::start_import(&state, &caller, upload, body).await?;
    Ok(HttpResponse::Accepted()
        .insert_header((
            "Location",
            format!("/api/v1/contacts/imports/{}", import.id),
        ))
        .json(ImportView::from(import)))
}

/// `GET /api/v1/contacts/imports`: the caller's imports, newest first.
async fn list_imports(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let rows = service::list_imports(&state, &caller, &query.request()?).await?;
    Ok(HttpResponse::Ok().json(rows.map(ImportView::from)))
}

/// `GET /api/v1/contacts/imports/{id}`: status and counters (they grow while it runs).
async fn get_import(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let import = service::find_import(&state, &caller, &id).await?;
    Ok(HttpResponse::Ok().json(ImportView::from(import)))
}

/// `GET /api/v1/contacts/imports/{id}/errors`: the refused rows as CSV
/// (`row,phone,error,message`), in file order.
async fn import_errors(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (import, rows) = service::import_errors(&state, &caller, &id).await?;
    let mut out = csv::Writer::from_writer(Vec::new());
    let write = |out: &mut csv::Writer<Vec<u8>>, r: [&str; 4]| {
        out.write_record(r)
            .map_err(|e| ApiError::Unexpected(e.into()))
    };
    write(&mut out, ["row", "phone", "error", "message"])?;
    for r in &rows {
        write(
            &mut out,
            [
                &r.row_number.to_string(),
                r.phone.as_deref().unwrap_or(""),
                &r.code,
                &r.message,
            ],
        )?;
    }
    let body = out
        .into_inner()
        .map_err(|e| ApiError::Unexpected(anyhow::anyhow!("{e}")))?;
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            "Content-Disposition",
            format!("attachment; filename=\"import-{}-errors.csv\"", import.id),
        ))
        .body(body))
}
