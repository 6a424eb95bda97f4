//! `/api/v1/contacts` (CRUD) and `/api/v1/contacts/imports` (CSV upload, progress, error report):
//! parse, authorise, call the service, map its error.
use actix_web::{HttpRequest, HttpResponse, delete, get, patch, post, web};
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{
    repo::{ImportRow, ListFilter, StoredContact},
    service::{self, ContactBody, Upload},
};
use crate::domain::ContactId;
use crate::page::{Page, PageQuery};
use crate::{auth::Caller, error::ApiError, state::AppState};

/// Mounts the routes (the static `imports` paths before `{id}`).
pub fn configure(cfg: &mut crate::mount::Routes) {
    cfg.service(start_import)
        .service(list_imports)
        .service(get_import)
        .service(import_errors)
        .service(create)
        .service(list)
        .service(get)
        .service(update)
        .service(delete);
}

/// A contact of the caller's.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Contact)]
struct ContactView {
    id: ContactId,
    /// E.164.
    phone: String,
    name: Option<String>,
    /// The seed's `sustantivo`.
    noun: Option<String>,
    group: Option<String>,
    telegram_chat_id: Option<String>,
    /// Free attributes (strings), usable in templates.
    #[schema(value_type = std::collections::BTreeMap<String, String>)]
    attributes: Value,
    opted_out: bool,
    opted_out_at: Option<DateTime<Utc>>,
    /// `api`, or `import:<id>` for a contact an import wrote.
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

/// Create a contact (its phone normalised to E.164).
#[utoipa::path(
    tag = "contacts",
    responses(
        (status = 201, description = "The contact", body = ContactView),
        (status = 400, description = "`validation-failed` (`phone` required or unreadable, `default_region`, too long fields, `opted_out: false`), `invalid-json`, `unsupported-media-type`, `invalid-idempotency-key`"),
        (status = 409, description = "`contact-exists`: another of your contacts has this phone (PATCH it instead); `idempotency-key-reused`, `idempotency-key-in-use`"),
        (status = 413, description = "`payload-too-large`"),
        (status = 422, description = "`invalid-body`"),
    )
)]
#[post("/contacts")]
async fn create(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<ContactBody>,
) -> Result<HttpResponse, ApiError> {
    let row = service::create(&state, &caller, body.into_inner()).await?;
    Ok(HttpResponse::Created().json(ContactView::from(row)))
}

/// `?q=&group=&opted_out=&cursor=&limit=`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Only contacts whose name or phone contains this text (case-insensitive; at most 100
    /// characters).
    q: Option<String>,
    /// Only contacts of this group.
    group: Option<String>,
    /// Only contacts that opted out (`true`) or did not (`false`).
    opted_out: Option<bool>,
    /// `next_cursor` of the page before.
    cursor: Option<String>,
    /// Rows per page, 1 to 1000 (default 100).
    limit: Option<u64>,
}

/// List the caller's contacts, oldest first.
#[utoipa::path(
    tag = "contacts",
    params(ListQuery),
    responses(
        (status = 200, description = "One page of contacts", body = Page<ContactView>),
        (status = 400, description = "`invalid-cursor`, `validation-failed`, `invalid-query`"),
    )
)]
#[get("/contacts")]
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
    let search = query
        .q
        .map(|q| q.trim().to_owned())
        .filter(|q| !q.is_empty());
    if search.as_ref().is_some_and(|q| q.chars().count() > 100) {
        return Err(ApiError::Invalid(vec![crate::error::FieldError::new(
            "q",
            "too-long",
            "at most 100 characters",
        )]));
    }
    let filter = ListFilter {
        search,
        group: query.group,
        opted_out: query.opted_out,
    };
    let rows = service::list(&state, &caller, filter, &page).await?;
    Ok(HttpResponse::Ok().json(rows.map(ContactView::from)))
}

/// One contact.
#[utoipa::path(
    tag = "contacts",
    params(ContactId),
    responses(
        (status = 200, description = "The contact", body = ContactView),
        (status = 404, description = "`contact-not-found`"),
    )
)]
#[get("/contacts/{id}")]
async fn get(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<ContactId>,
) -> Result<HttpResponse, ApiError> {
    let row = service::find(&state, &caller, &id).await?;
    Ok(HttpResponse::Ok().json(ContactView::from(row)))
}

/// Change a contact: the fields given change; `opted_out: true` records an opt-out.
#[utoipa::path(
    tag = "contacts",
    params(ContactId),
    responses(
        (status = 200, description = "The contact", body = ContactView),
        (status = 400, description = "`validation-failed` (`phone` unreadable, `default_region`, too long fields, `opted_out: false`), `invalid-json`, `unsupported-media-type`"),
        (status = 404, description = "`contact-not-found`"),
        (status = 409, description = "`contact-exists`: another of your contacts has this phone"),
        (status = 413, description = "`payload-too-large`"),
        (status = 422, description = "`invalid-body`"),
    )
)]
#[patch("/contacts/{id}")]
async fn update(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<ContactId>,
    body: web::Json<ContactBody>,
) -> Result<HttpResponse, ApiError> {
    let row = service::update(&state, &caller, &id, body.into_inner()).await?;
    Ok(HttpResponse::Ok().json(ContactView::from(row)))
}

/// Delete a contact.
#[utoipa::path(
    tag = "contacts",
    params(ContactId),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "`contact-not-found`"),
    )
)]
#[delete("/contacts/{id}")]
async fn delete(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<ContactId>,
) -> Result<HttpResponse, ApiError> {
    service::delete(&state, &caller, &id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// A CSV import of contacts and its progress.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = ContactImport)]
pub(super) struct ImportView {
    id: String,
    filename: String,
    /// Region read for phones without `+country`.
    default_region: String,
    /// `running`, `completed` or `failed`.
    status: String,
    /// Rows read so far (all of them once finished).
    total_rows: i64,
    /// Rows written as contacts.
    imported: i64,
    /// Rows refused (see `errors_url`).
    failed: i64,
    /// Why the import failed as a whole.
    error: Option<String>,
    created_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
    /// The refused rows as CSV.
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

/// `?filename=&default_region=`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ImportQuery {
    /// The file's name, kept with the import (default `contacts.csv`).
    filename: Option<String>,
    /// ISO 3166 region for phones without `+country` (default `contacts.default_region`).
    #[param(example = "ES")]
    default_region: Option<String>,
}

/// Import contacts from a CSV file sent as the body.
///
/// The upload streams to disk (up to `contacts.max_import_bytes`); `202` as soon as it is stored
/// and its header checked, then the import runs in the background: follow it at
/// `GET /api/v1/contacts/imports/{id}` (the `Location`).
#[utoipa::path(
    tag = "contacts",
    params(ImportQuery),
    request_body(
        description = "The CSV file itself (a header row: `telefono`/`phone`, `nombre`/`name`, `sustantivo`/`noun`, `grupo`/`group`, …; other columns become attributes)",
        content(
            (String = "text/csv"),
            (String = "text/plain"),
            (String = "application/octet-stream"),
            (String = "application/vnd.ms-excel"),
        )
    ),
    responses(
        (status = 202, description = "Stored; importing", body = ImportView,
            headers(("Location" = String, description = "The import, to follow its progress"))),
        (status = 400, description = "`unsupported-media-type` (not sent as a CSV body), `validation-failed` (`default_region`), `invalid-body-stream`, `invalid-query`, `invalid-idempotency-key`"),
        (status = 413, description = "`payload-too-large`: over `contacts.max_import_bytes`"),
        (status = 422, description = "`invalid-filename`, `empty-upload`, `invalid-csv` (its header cannot be read as contacts)"),
    )
)]
#[post("/contacts/imports")]
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

/// List the caller's imports, newest first.
#[utoipa::path(
    tag = "contacts",
    params(PageQuery),
    responses(
        (status = 200, description = "One page of imports", body = Page<ImportView>),
        (status = 400, description = "`invalid-cursor`, `validation-failed`, `invalid-query`"),
    )
)]
#[get("/contacts/imports")]
async fn list_imports(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let rows = service::list_imports(&state, &caller, &query.request()?).await?;
    Ok(HttpResponse::Ok().json(rows.map(ImportView::from)))
}

/// One import: its status and counters (they grow while it runs).
#[utoipa::path(
    tag = "contacts",
    params(("id" = String, Path, description = "The import")),
    responses(
        (status = 200, description = "The import", body = ImportView),
        (status = 404, description = "`import-not-found`"),
    )
)]
#[get("/contacts/imports/{id}")]
async fn get_import(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let import = service::find_import(&state, &caller, &id).await?;
    Ok(HttpResponse::Ok().json(ImportView::from(import)))
}

/// The refused rows of an import as CSV (`row,phone,error,message`), in file order.
#[utoipa::path(
    tag = "contacts",
    params(("id" = String, Path, description = "The import")),
    responses(
        (status = 200, description = "The refused rows, as an attachment", content_type = "text/csv", body = String),
        (status = 404, description = "`import-not-found`"),
    )
)]
#[get("/contacts/imports/{id}/errors")]
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
