//! `/api/v1/contacts` (CRUD) and `/api/v1/contacts/imports` (CSV upload, progress, error report).
use std::collections::BTreeMap;

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
    QuerySelect, Set,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use super::{csv_reader, spawn_import, upload_path};
use crate::{
    auth::Caller,
    domain::PhoneNumber,
    entities::{contact_import_errors, contact_imports, contacts},
    error::{ApiError, FieldError},
    state::AppState,
};

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
    id: String,
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

impl From<contacts::Model> for ContactView {
    fn from(c: contacts::Model) -> Self {
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

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound("contact-not-found", format!("no contact `{id}`"))
}

async fn find(state: &AppState, caller: &Caller, id: &str) -> Result<contacts::Model, ApiError> {
    contacts::Entity::find_by_id(id.to_owned())
        .one(&state.db)
        .await?
        .filter(|c| caller.can_access(&c.owner_id))
        .ok_or_else(|| not_found(id))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ContactBody {
    phone: Option<String>,
    name: Option<String>,
    noun: Option<String>,
    group: Option<String>,
    telegram_chat_id: Option<String>,
    attributes: Option<BTreeMap<String, String>>,
    /// `true` records an opt-out; `false` is refused (only the contact can opt in again).
    opted_out: Option<bool>,
    /// Region for a phone without `+country` (default `contacts.default_region`).
    default_region: Option<String>,
}

fn field(name: &str, code: &'static str, message: impl Into<String>) -> FieldError {
    FieldError {
        field: name.into(),
        code,
        message: message.into(),
    }
}

/// Validates a body; returns the normalised phone (if given).
fn validate(state: &AppState, body: &ContactBody) -> Result<Option<PhoneNumber>, ApiError> {
    let mut errors = Vec::new();
    let region_code = body
        .default_region
        .clone()
        .unwrap_or_else(|| state.settings.contacts.default_region.clone());
    let region = csv_reader::region(&region_code);
    if region.is_none() {
        errors.push(field(
            "default_region",
            "invalid-format",
            "an ISO 3166 region such as ES",
        ));
    }
    let mut phone = None;
    if let (Some(raw), Some(region)) = (&body.phone, region) {
        match csv_reader::normalise_phone(raw, region) {
            Ok(p) => phone = Some(p),
            Err(e) => errors.push(field("phone", "invalid-format", e.message)),
        }
    }
    for (name, value) in [
        ("name", &body.name),
        ("noun", &body.noun),
        ("group", &body.group),
        ("telegram_chat_id", &body.telegram_chat_id),
    ] {
        if value
            .as_ref()
            .is_some_and(|v| v.chars().count() > csv_reader::MAX_FIELD_CHARS)
        {
            errors.push(field(
                name,
                "too-long",
                format!("at most {} characters", csv_reader::MAX_FIELD_CHARS),
            ));
        }
    }
    if body.opted_out == Some(false) {
        errors.push(field(
            "opted_out",
            "invalid-format",
            "an opt-out cannot be undone here; the contact must opt in again",
        ));
    }
    if errors.is_empty() {
        Ok(phone)
    } else {
        Err(ApiError::Invalid(errors))
    }
}

/// `POST /api/v1/contacts`.
async fn create(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<ContactBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let phone = validate(&state, &body)?.ok_or_else(|| {
        ApiError::Invalid(vec![field("phone", "required", "a phone is required")])
    })?;
    let existing = contacts::Entity::find()
        .filter(contacts::Column::OwnerId.eq(caller.user_id.clone()))
        .filter(contacts::Column::Phone.eq(phone.as_str()))
        .one(&state.db)
        .await?;
    if let Some(c) = existing {
        return Err(ApiError::Conflict(
            "contact-exists",
            format!("contact {} already has {phone}; PATCH it instead", c.id),
        ));
    }
    let now = state.clock.now();
    let row = contacts::ActiveModel {
        id: Set(uuid::Uuid::now_v7().to_string()),
        owner_id: Set(caller.user_id.clone()),
        phone: Set(phone.into_string()),
        name: Set(body.name),
        noun: Set(body.noun),
        group_name: Set(body.group),
        telegram_chat_id: Set(body.telegram_chat_id),
        attributes: Set(body
            .attributes
            .filter(|a| !a.is_empty())
            .map(|a| serde_json::to_string(&a).unwrap_or_default())),
        opted_out: Set(body.opted_out.unwrap_or(false)),
        opted_out_at: Set(body.opted_out.filter(|o| *o).map(|_| now)),
        source: Set(Some("api".into())),
        created_at: Set(now),
        updated_at: Set(now),
        last_inbound_at: Set(None),
    }
    .insert(&state.db)
    .await?;
    Ok(HttpResponse::Created().json(ContactView::from(row)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    group: Option<String>,
    opted_out: Option<bool>,
    /// Contacts after this id (paging: pass the last id seen).
    after: Option<String>,
    limit: Option<u64>,
}

/// `GET /api/v1/contacts?group=&opted_out=&after=&limit=`: the caller's contacts by id.
async fn list(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let mut q = contacts::Entity::find()
        .filter(contacts::Column::OwnerId.eq(caller.user_id.clone()))
        .order_by_asc(contacts::Column::Id);
    if let Some(group) = query.group {
        q = q.filter(contacts::Column::GroupName.eq(group));
    }
    if let Some(opted_out) = query.opted_out {
        q = q.filter(contacts::Column::OptedOut.eq(opted_out));
    }
    if let Some(after) = query.after {
        q = q.filter(contacts::Column::Id.gt(after));
    }
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let rows = q.limit(limit).all(&state.db).await?;
    let next = (rows.len() as u64 == limit)
        .then(|| rows.last().map(|c| c.id.clone()))
        .flatten();
    let contacts: Vec<ContactView> = rows.into_iter().map(ContactView::from).collect();
    Ok(HttpResponse::Ok().json(json!({ "contacts": contacts, "next_after": next })))
}

/// `GET /api/v1/contacts/{id}`.
async fn get(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(ContactView::from(find(&state, &caller, &id).await?)))
}

/// `PATCH /api/v1/contacts/{id}`: the fields given change; `opted_out: true` records an opt-out.
async fn update(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
    body: web::Json<ContactBody>,
) -> Result<HttpResponse, ApiError> {
    let contact = find(&state, &caller, &id).await?;
    let body = body.into_inner();
    let phone = validate(&state, &body)?;
    if let Some(phone) = &phone
        && *phone != contact.phone
        && contacts::Entity::find()
            .filter(contacts::Column::OwnerId.eq(contact.owner_id.clone()))
            .filter(contacts::Column::Phone.eq(phone.as_str()))
            .one(&state.db)
            .await?
            .is_some()
    {
        return Err(ApiError::Conflict(
            "contact-exists",
            format!("another contact already has {phone}"),
        ));
    }
    let now = state.clock.now();
    let was_opted_out = contact.opted_out;
    let mut active = contact.into_active_model();
    if let Some(phone) = phone {
        active.phone = Set(phone.into_string());
    }
    if let Some(v) = body.name {
        active.name = Set(Some(v));
    }
    if let Some(v) = body.noun {
        active.noun = Set(Some(v));
    }
    if let Some(v) = body.group {
        active.group_name = Set(Some(v));
    }
    if let Some(v) = body.telegram_chat_id {
        active.telegram_chat_id = Set(Some(v));
    }
    if let Some(a) = body.attributes {
        active.attributes =
            Set((!a.is_empty()).then(|| serde_json::to_string(&a).unwrap_or_default()));
    }
    if body.opted_out == Some(true) && !was_opted_out {
        active.opted_out = Set(true);
        active.opted_out_at = Set(Some(now));
    }
    active.updated_at = Set(now);
    let row = active.update(&state.db).await?;
    Ok(HttpResponse::Ok().json(ContactView::from(row)))
}

/// `DELETE /api/v1/contacts/{id}`.
async fn delete(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let contact = find(&state, &caller, &id).await?;
    contacts::Entity::delete_by_id(contact.id)
        .exec(&state.db)
        .await?;
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

impl From<contact_imports::Model> for ImportView {
    fn from(i: contact_imports::Model) -> Self {
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
    mut payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let region_code = query
        .default_region
        .unwrap_or_else(|| state.settings.contacts.default_region.clone())
        .to_ascii_uppercase();
    if csv_reader::region(&region_code).is_none() {
        return Err(ApiError::Invalid(vec![field(
            "default_region",
            "invalid-format",
            "an ISO 3166 region such as ES",
        )]));
    }
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !(content_type.starts_with("text/csv")
        || content_type.starts_with("text/plain")
        || content_type.starts_with("application/octet-stream")
        || content_type.starts_with("application/vnd.ms-excel"))
    {
        return Err(ApiError::BadRequest(
            "unsupported-media-type",
            "send the CSV file itself as the body with Content-Type: text/csv".into(),
        ));
    }
    let filename = query.filename.unwrap_or_else(|| "contacts.csv".into());
    if filename.len() > 255 || filename.contains(['/', '\\', '\0']) {
        return Err(ApiError::Unprocessable(
            "invalid-filename",
            "filename must be a plain name up to 255 bytes".into(),
        ));
    }
    let id = uuid::Uuid::now_v7().to_string();
    let path = upload_path(&state, &id);
    let limit = state.settings.contacts.max_import_bytes;
    let stored = async {
        let io = |e: std::io::Error| ApiError::Unexpected(anyhow::Error::from(e));
        tokio::fs::create_dir_all(path.parent().unwrap_or(&path))
            .await
            .map_err(io)?;
        let mut file = tokio::fs::File::create(&path).await.map_err(io)?;
        let mut size = 0u64;
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|e| ApiError::BadRequest("invalid-body", e.to_string()))?;
            size += chunk.len() as u64;
            if size > limit {
                return Err(ApiError::PayloadTooLarge(format!(
                    "imports are limited to {limit} bytes (contacts.max_import_bytes)"
                )));
            }
            file.write_all(&chunk).await.map_err(io)?;
        }
        file.sync_all().await.map_err(io)?;
        if size == 0 {
            return Err(ApiError::Unprocessable(
                "empty-upload",
                "the request body is empty".into(),
            ));
        }
        Ok::<_, ApiError>(())
    }
    .await;
    if let Err(e) = stored {
        let _ = tokio::fs::remove_file(&path).await;
        return Err(e);
    }
    // The header is checked now, so a file that cannot work is refused at once.
    let header_check = {
        let path = path.clone();
        let region = csv_reader::region(&region_code);
        tokio::task::spawn_blocking(move || -> Result<(), String> {
            let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
            let region = region.ok_or("region")?;
            csv_reader::ContactsCsv::new(file, region)
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(anyhow::Error::from)?
    };
    if let Err(why) = header_check {
        let _ = tokio::fs::remove_file(&path).await;
        return Err(ApiError::Unprocessable("invalid-csv", why));
    }
    let import = contact_imports::ActiveModel {
        id: Set(id),
        owner_id: Set(caller.user_id.clone()),
        node: Set(state.node_name.clone()),
        filename: Set(filename),
        default_region: Set(region_code),
        status: Set("running".into()),
        total_rows: Set(0),
        imported: Set(0),
        failed: Set(0),
        error: Set(None),
        created_at: Set(state.clock.now()),
        finished_at: Set(None),
    }
    .insert(&state.db)
    .await?;
    spawn_import(state.get_ref().clone(), import.clone());
    Ok(HttpResponse::Accepted()
        .insert_header((
            "Location",
            format!("/api/v1/contacts/imports/{}", import.id),
        ))
        .json(ImportView::from(import)))
}

async fn find_import(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<contact_imports::Model, ApiError> {
    contact_imports::Entity::find_by_id(id.to_owned())
        .one(&state.db)
        .await?
        .filter(|i| caller.can_access(&i.owner_id))
        .ok_or_else(|| ApiError::NotFound("import-not-found", format!("no import `{id}`")))
}

/// `GET /api/v1/contacts/imports`: the caller's imports, newest first.
async fn list_imports(
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let rows = contact_imports::Entity::find()
        .filter(contact_imports::Column::OwnerId.eq(caller.user_id.clone()))
        .order_by_desc(contact_imports::Column::CreatedAt)
        .limit(100)
        .all(&state.db)
        .await?;
    let imports: Vec<ImportView> = rows.into_iter().map(ImportView::from).collect();
    Ok(HttpResponse::Ok().json(json!({ "imports": imports })))
}

/// `GET /api/v1/contacts/imports/{id}`: status and counters (they grow while it runs).
async fn get_import(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(ImportView::from(find_import(&state, &caller, &id).await?)))
}

/// `GET /api/v1/contacts/imports/{id}/errors`: the refused rows as CSV
/// (`row,phone,error,message`), in file order.
async fn import_errors(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let import = find_import(&state, &caller, &id).await?;
    let rows = contact_import_errors::Entity::find()
        .filter(contact_import_errors::Column::ImportId.eq(import.id.clone()))
        .order_by_asc(contact_import_errors::Column::RowNumber)
        .all(&state.db)
        .await?;
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
