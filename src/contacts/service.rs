//! What the contact routes do: validate and store contacts, start imports, report on them.
use std::collections::BTreeMap;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use super::{
    ContactError, csv_reader,
    repo::{self, ContactFields, ImportErrorRow, ImportRow, ListFilter, StoredContact},
    spawn_import, upload_path,
};
use crate::domain::ContactId;
use crate::{auth::Caller, domain::PhoneNumber, error::FieldError, state::AppState};

/// A contact as the API takes it, for a create (phone required) or an update (any field).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ContactChange)]
pub struct ContactBody {
    /// Any format: `+country` or `00country`, else `default_region` applies. Required to create.
    phone: Option<String>,
    /// Its name (`nombre` in templates).
    name: Option<String>,
    /// The seed's `sustantivo` (`noun` in templates).
    noun: Option<String>,
    /// Its group, for audiences.
    group: Option<String>,
    /// The Telegram chat to reach it on.
    telegram_chat_id: Option<String>,
    /// Free attributes, usable in templates (`{}` clears them).
    attributes: Option<BTreeMap<String, String>>,
    /// `true` records an opt-out; `false` is refused (only the contact can opt in again).
    opted_out: Option<bool>,
    /// Region for a phone without `+country` (default `contacts.default_region`).
    #[schema(example = "ES")]
    default_region: Option<String>,
}

/// Validates a body; returns its fields with the phone normalised.
fn validate(state: &AppState, body: ContactBody) -> Result<ContactFields, ContactError> {
    let mut errors = Vec::new();
    let region_code = body
        .default_region
        .clone()
        .unwrap_or_else(|| state.settings.contacts.default_region.clone());
    let region = csv_reader::region(&region_code);
    if region.is_none() {
        errors.push(FieldError::new(
            "default_region",
            "invalid-format",
            "an ISO 3166 region such as ES",
        ));
    }
    let mut phone: Option<PhoneNumber> = None;
    if let (Some(raw), Some(region)) = (&body.phone, region) {
        match csv_reader::normalise_phone(raw, region) {
            Ok(p) => phone = Some(p),
            Err(e) => errors.push(FieldError::new("phone", "invalid-format", e.message)),
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
            errors.push(FieldError::new(
                name,
                "too-long",
                format!("at most {} characters", csv_reader::MAX_FIELD_CHARS),
            ));
        }
    }
    if body.opted_out == Some(false) {
        errors.push(FieldError::new(
            "opted_out",
            "invalid-format",
            "an opt-out cannot be undone here; the contact must opt in again",
        ));
    }
    if !errors.is_empty() {
        return Err(ContactError::Invalid(errors));
    }
    Ok(ContactFields {
        phone: phone.map(PhoneNumber::into_string),
        name: body.name,
        noun: body.noun,
        group: body.group,
        telegram_chat_id: body.telegram_chat_id,
        attributes: body.attributes,
        opted_out: body.opted_out,
    })
}

/// The contact `id` if the caller may see it.
pub async fn find(
    state: &AppState,
    caller: &Caller,
    id: &ContactId,
) -> Result<StoredContact, ContactError> {
    repo::find(&state.db, id)
        .await?
        .filter(|c| caller.can_access(&c.owner_id))
        .ok_or_else(|| ContactError::NotFound(id.to_string()))
}

/// Stores a new contact of the caller's; its phone must be new to them.
pub async fn create(
    state: &AppState,
    caller: &Caller,
    body: ContactBody,
) -> Result<StoredContact, ContactError> {
    let fields = validate(state, body)?;
    let Some(phone) = fields.phone.clone() else {
        return Err(ContactError::Invalid(vec![FieldError::new(
            "phone",
            "required",
            "a phone is required",
        )]));
    };
    if let Some(c) = repo::find_by_phone(&state.db, &caller.user_id, &phone).await? {
        return Err(ContactError::Exists(format!(
            "contact {} already has {phone}; PATCH it instead",
            c.id
        )));
    }
    Ok(repo::insert(&state.db, &caller.user_id, fields, "api", state.clock.now()).await?)
}

/// A page of the caller's contacts by id, and the cursor of the next page when it is full.
pub async fn list(
    state: &AppState,
    caller: &Caller,
    filter: ListFilter,
    page: &crate::page::PageRequest,
) -> Result<crate::page::Page<StoredContact>, ContactError> {
    Ok(repo::list(&state.db, &caller.user_id, filter, page).await?)
}

/// Changes the fields given; `opted_out: true` records an opt-out.
pub async fn update(
    state: &AppState,
    caller: &Caller,
    id: &ContactId,
    body: ContactBody,
) -> Result<StoredContact, ContactError> {
    let contact = find(state, caller, id).await?;
    let fields = validate(state, body)?;
    if let Some(phone) = &fields.phone
        && *phone != contact.phone
        && repo::find_by_phone(&state.db, &contact.owner_id, phone)
            .await?
            .is_some()
    {
        return Err(ContactError::Exists(format!(
            "another contact already has {phone}"
        )));
    }
    Ok(repo::update(&state.db, contact, fields, state.clock.now()).await?)
}

/// Deletes a contact.
pub async fn delete(state: &AppState, caller: &Caller, id: &ContactId) -> Result<(), ContactError> {
    let contact = find(state, caller, id).await?;
    Ok(repo::delete(&state.db, &contact.id).await?)
}

/// An upload to import.
pub struct Upload<'a> {
    /// `Content-Type` as sent.
    pub content_type: &'a str,
    /// Name given (default `contacts.csv`).
    pub filename: Option<String>,
    /// Region for phones without `+country` (default `contacts.default_region`).
    pub default_region: Option<String>,
}

/// Streams the upload to disk (up to `contacts.max_import_bytes`), checks its header, records
/// the import and starts it in the background.
pub async fn start_import<S>(
    state: &AppState,
    caller: &Caller,
    upload: Upload<'_>,
    mut body: S,
) -> Result<ImportRow, ContactError>
where
    S: Stream<Item = Result<Bytes, String>> + Unpin,
{
    let region_code = upload
        .default_region
        .unwrap_or_else(|| state.settings.contacts.default_region.clone())
        .to_ascii_uppercase();
    let Some(region) = csv_reader::region(&region_code) else {
        return Err(ContactError::Invalid(vec![FieldError::new(
            "default_region",
            "invalid-format",
            "an ISO 3166 region such as ES",
        )]));
    };
    let ct = upload.content_type;
    if !(ct.starts_with("text/csv")
        || ct.starts_with("text/plain")
        || ct.starts_with("application/octet-stream")
        || ct.starts_with("application/vnd.ms-excel"))
    {
        return Err(ContactError::UnsupportedMediaType);
    }
    let filename = upload.filename.unwrap_or_else(|| "contacts.csv".into());
    if filename.len() > 255 || filename.contains(['/', '\\', '\0']) {
        return Err(ContactError::InvalidFilename);
    }
    let id = uuid::Uuid::now_v7().to_string();
    let path = upload_path(state, &id);
    let limit = state.settings.contacts.max_import_bytes;
    let stored = async {
        tokio::fs::create_dir_all(path.parent().unwrap_or(&path)).await?;
        let mut file = tokio::fs::File::create(&path).await?;
        let mut size = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(ContactError::Body)?;
            size += chunk.len() as u64;
            if size > limit {
                return Err(ContactError::TooLarge(limit));
            }
            file.write_all(&chunk).await?;
        }
        file.sync_all().await?;
        if size == 0 {
            return Err(ContactError::Empty);
        }
        Ok(())
    }
    .await;
    if let Err(e) = stored {
        let _ = tokio::fs::remove_file(&path).await;
        return Err(e);
    }
    // The header is checked now, so a file that cannot work is refused at once.
    let header_check = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || -> Result<(), String> {
            let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
            csv_reader::ContactsCsv::new(file, region)
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(anyhow::Error::from)?
    };
    if let Err(why) = header_check {
        let _ = tokio::fs::remove_file(&path).await;
        return Err(ContactError::InvalidCsv(why));
    }
    let import = repo::insert_import(
        &state.db,
        &id,
        &caller.user_id,
        &state.node_name,
        &filename,
        &region_code,
        state.clock.now(),
    )
    .await?;
    spawn_import(state.clone(), import.clone());
    Ok(import)
}

/// The import `id` if the caller may see it.
pub async fn find_import(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<ImportRow, ContactError> {
    repo::find_import(&state.db, id)
        .await?
        .filter(|i| caller.can_access(&i.owner_id))
        .ok_or_else(|| ContactError::ImportNotFound(id.to_owned()))
}

/// The caller's latest 100 imports, newest first.
pub async fn list_imports(
    state: &AppState,
    caller: &Caller,
    page: &crate::page::PageRequest,
) -> Result<crate::page::Page<ImportRow>, ContactError> {
    Ok(repo::list_imports(&state.db, &caller.user_id, page).await?)
}

/// An import and its refused rows, in file order.
pub async fn import_errors(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<(ImportRow, Vec<ImportErrorRow>), ContactError> {
    let import = find_import(state, caller, id).await?;
    let rows = repo::import_errors(&state.db, &import.id).await?;
    Ok((import, rows))
}
