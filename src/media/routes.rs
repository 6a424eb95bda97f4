//! `POST /media` (raw body or multipart), listing, metadata, downloads (proxied), links
//! (presigned or signed), deletion; and the public `GET /media/{id}/content` signed links.
use actix_web::{HttpRequest, HttpResponse, http::header, web};
use bytes::{Bytes, BytesMut};
use chrono::Utc;
use futures::{Stream, StreamExt, TryStreamExt};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};
use serde::{Deserialize, Serialize};

use super::{GetError, PutError, SNIFF_BYTES, content_matches};
use crate::{
    auth::Caller,
    entities::{campaigns, media, messages, templates},
    error::ApiError,
    state::AppState,
};

/// Mounts the authenticated media routes (under `/api/v1`).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/media", web::post().to(upload_media))
        .route("/media", web::get().to(list_media))
        .route("/media/{id}", web::get().to(get_media))
        .route("/media/{id}", web::delete().to(delete_media))
        .route("/media/{id}/content", web::get().to(download))
        .route("/media/{id}/url", web::get().to(media_url));
}

/// Mounts the signed-link download at the root (no credentials: the signature is the grant).
pub fn configure_public(cfg: &mut web::ServiceConfig) {
    cfg.route("/media/{id}/content", web::get().to(signed_download));
}

#[derive(Deserialize)]
struct UploadQuery {
    filename: Option<String>,
    /// Check the file against this channel kind's limits (`whatsapp`, `telegram`, any kind).
    channel: Option<String>,
}

#[derive(Serialize)]
struct MediaView {
    id: String,
    content_type: String,
    filename: Option<String>,
    size: i64,
    sha256: String,
    created_at: chrono::DateTime<Utc>,
}

impl From<media::Model> for MediaView {
    fn from(m: media::Model) -> Self {
        Self {
            id: m.id,
            content_type: m.content_type,
            filename: m.filename,
            size: m.size,
            sha256: m.sha256,
            created_at: m.created_at,
        }
    }
}

fn parse_mime(value: &str) -> Result<mime::Mime, ApiError> {
    value.parse::<mime::Mime>().map_err(|_| {
        ApiError::BadRequest(
            "invalid-content-type",
            format!("{value:?} is not a MIME type"),
        )
    })
}

fn check_filename(name: &str) -> Result<(), ApiError> {
    if name.is_empty() || name.len() > 255 || name.contains(['/', '\\', '\0', '"', '\r', '\n']) {
        return Err(ApiError::Unprocessable(
            "invalid-filename",
            "filename must be a plain name up to 255 bytes".into(),
        ));
    }
    Ok(())
}

/// Upload: the file as the raw body (`Content-Type` its type, `?filename=`), or as the `file`
/// part of a `multipart/form-data` form. The body streams to the store; it is refused with 413
/// as soon as it passes `media.max_upload_bytes` or the `?channel=`'s limit for its type.
async fn upload_media(
    caller: Caller,
    req: HttpRequest,
    query: web::Query<UploadQuery>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let declared = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            ApiError::BadRequest(
                "missing-content-type",
                "send the file's MIME type as Content-Type, or a multipart/form-data form".into(),
            )
        })?;
    let declared = parse_mime(declared)?;
    if declared.essence_str() == "multipart/form-data" {
        let mut form = actix_multipart::Multipart::new(req.headers(), payload);
        while let Some(field) = form.next().await {
            let mut field =
                field.map_err(|e| ApiError::BadRequest("invalid-multipart", e.to_string()))?;
            if field.name() != Some("file") {
                // Drain other fields (bounded by the same limit).
                while let Some(chunk) = field.next().await {
                    chunk.map_err(|e| ApiError::BadRequest("invalid-multipart", e.to_string()))?;
                }
                continue;
            }
            let content_type = field.content_type().cloned().ok_or_else(|| {
                ApiError::BadRequest(
                    "missing-content-type",
                    "the `file` part needs a Content-Type".into(),
                )
            })?;
            let filename = query.filename.clone().or_else(|| {
                field
                    .content_disposition()
                    .and_then(|cd| cd.get_filename())
                    .map(str::to_owned)
            });
            let body = (&mut field).map_err(|e| e.to_string());
            return store_upload(&state, &caller, &query, content_type, filename, body).await;
        }
        return Err(ApiError::BadRequest(
            "missing-file",
            "the form has no `file` part".into(),
        ));
    }
    if let Some(length) = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && length > state.settings.media.max_upload_bytes as u64
    {
        return Err(too_large(
            state.settings.media.max_upload_bytes as u64,
            None,
        ));
    }
    let filename = query.filename.clone();
    let body = payload.map_err(|e| e.to_string());
    store_upload(&state, &caller, &query, declared, filename, body).await
}

/// 503 with `Retry-After`; the store's own message is logged, not returned.
fn store_unavailable(e: &anyhow::Error) -> ApiError {
    tracing::error!(error = %format!("{e:#}"), "media store failed");
    ApiError::unavailable(
        "media-store-unavailable",
        "the media store did not answer; try again shortly",
        5,
    )
}

fn too_large(limit: u64, channel: Option<&str>) -> ApiError {
    let scope = match channel {
        Some(kind) => format!("{kind}'s limit for this type"),
        None => "media.max_upload_bytes".to_owned(),
    };
    ApiError::PayloadTooLarge(format!("the file is larger than {limit} bytes ({scope})"))
}

async fn store_upload<S>(
    state: &AppState,
    caller: &Caller,
    query: &UploadQuery,
    content_type: mime::Mime,
    filename: Option<String>,
    mut body: S,
) -> Result<HttpResponse, ApiError>
where
    S: Stream<Item = Result<Bytes, String>> + Unpin,
{
    if let Some(name) = &filename {
        check_filename(name)?;
    }
    let content_type = content_type.essence_str().to_owned();
    let mut limit = state.settings.media.max_upload_bytes as u64;
    if let Some(name) = &query.channel {
        let adapter = state.adapters.named(name).ok_or_else(|| {
            ApiError::BadRequest(
                "invalid-query",
                format!(
                    "channel must be one of: whatsapp, {}",
                    state.adapters.kinds().join(", ")
                ),
            )
        })?;
        let channel_limit = adapter
            .media_limit(&content_type)
            .map_err(|why| ApiError::Unprocessable("unsupported-media-type-for-channel", why))?;
        limit = limit.min(channel_limit.unwrap_or(u64::MAX));
    }
    // The first bytes decide whether the declared type is believable.
    let mut head = BytesMut::new();
    while head.len() < SNIFF_BYTES {
        match body.next().await {
            Some(chunk) => {
                head.extend_from_slice(&chunk.map_err(|e| ApiError::BadRequest("invalid-body", e))?)
            }
            None => break,
        }
    }
    if head.is_empty() {
        return Err(ApiError::Unprocessable(
            "empty-upload",
            "the file is empty".into(),
        ));
    }
    if !content_matches(&content_type, &head) {
        return Err(ApiError::Unprocessable(
            "content-type-mismatch",
            format!("the file's contents are not {content_type}"),
        ));
    }
    let body = futures::stream::iter([Ok(head.freeze())]).chain(body);
    let id = uuid::Uuid::now_v7().to_string();
    let stored = state
        .media
        .put(&id, &content_type, limit, body)
        .await
        .map_err(|e| match e {
            PutError::TooLarge(limit) => too_large(limit, query.channel.as_deref()),
            PutError::Body(e) => ApiError::BadRequest("invalid-body", e),
            PutError::Store(e) => store_unavailable(&e),
        })?;
    let row = media::ActiveModel {
        id: Set(id.clone()),
        owner_id: Set(caller.user_id.clone()),
        storage_key: Set(id.clone()),
        content_type: Set(content_type),
        filename: Set(filename),
        size: Set(i64::try_from(stored.size).unwrap_or(i64::MAX)),
        sha256: Set(stored.sha256),
        created_at: Set(Utc::now()),
    }
    .insert(&state.db)
    .await;
    match row {
        Ok(row) => Ok(HttpResponse::Created().json(MediaView::from(row))),
        Err(e) => {
            // No row, no file: never leave an orphan in the store.
            let _ = state.media.delete(&id).await;
            Err(e.into())
        }
    }
}

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<u64>,
    offset: Option<u64>,
}

async fn list_media(
    caller: Caller,
    query: web::Query<ListQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let limit = query.limit.unwrap_or(50).clamp(1, 200);
    let mut select = media::Entity::find().order_by_desc(media::Column::CreatedAt);
    if !caller.is_admin() {
        select = select.filter(media::Column::OwnerId.eq(caller.user_id.clone()));
    }
    let total = select.clone().count(&state.db).await?;
    let rows = select
        .offset(query.offset.unwrap_or(0))
        .limit(limit)
        .all(&state.db)
        .await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "items": rows.into_iter().map(MediaView::from).collect::<Vec<_>>(),
        "total": total,
    })))
}

async fn find_owned(
    state: &AppState,
    caller: &Caller,
    id: String,
) -> Result<media::Model, ApiError> {
    media::Entity::find_by_id(id)
        .one(&state.db)
        .await?
        .filter(|m| caller.can_access(&m.owner_id))
        .ok_or_else(|| ApiError::NotFound("media-not-found", "no such media".into()))
}

async fn get_media(
    caller: Caller,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let row = find_owned(&state, &caller, path.into_inner()).await?;
    Ok(HttpResponse::Ok().json(MediaView::from(row)))
}

/// The file itself, through this server (for the dashboard).
async fn download(
    caller: Caller,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let row = find_owned(&state, &caller, path.into_inner()).await?;
    stream_file(&state, &row).await
}

#[derive(Deserialize)]
struct SignedQuery {
    expires: i64,
    signature: String,
}

/// A signed link (from `GET /api/v1/media/{id}/url`, or sent to a provider that fetches media).
async fn signed_download(
    path: web::Path<String>,
    query: web::Query<SignedQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    if !super::verify_link(
        &state.cipher,
        &id,
        query.expires,
        &query.signature,
        Utc::now(),
    ) {
        return Err(ApiError::Forbidden(
            "invalid-link",
            "the link is expired or its signature does not match".into(),
        ));
    }
    let row = media::Entity::find_by_id(id)
        .one(&state.db)
        .await?
        .ok_or_else(|| ApiError::NotFound("media-not-found", "no such media".into()))?;
    stream_file(&state, &row).await
}

async fn stream_file(state: &AppState, row: &media::Model) -> Result<HttpResponse, ApiError> {
    let body = state
        .media
        .open(&row.storage_key)
        .await
        .map_err(|e| match e {
            GetError::NotFound(_) => ApiError::NotFound(
                "media-file-missing",
                "the file is missing from the media store".into(),
            ),
            GetError::Store(e) => store_unavailable(&e),
        })?;
    let mut res = HttpResponse::Ok();
    res.content_type(row.content_type.as_str())
        .no_chunking(u64::try_from(row.size).unwrap_or(0))
        .insert_header((header::CACHE_CONTROL, "private, max-age=3600"))
        .insert_header(("X-Content-Type-Options", "nosniff"));
    if let Some(name) = &row.filename {
        res.insert_header((
            header::CONTENT_DISPOSITION,
            format!("inline; filename=\"{name}\""),
        ));
    }
    Ok(res.streaming(body))
}

#[derive(Serialize)]
struct LinkView {
    url: String,
    expires_at: chrono::DateTime<Utc>,
}

/// A time-limited URL for the file: presigned by S3, or signed by this server (at
/// `auth.public_url`, else at the address the request came to).
async fn media_url(
    caller: Caller,
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let row = find_owned(&state, &caller, path.into_inner()).await?;
    let base = match &state.settings.auth.public_url {
        Some(url) => url.clone(),
        None => {
            let info = req.connection_info();
            format!("{}://{}", info.scheme(), info.host())
        }
    };
    let (url, expires_at) = super::Library::of(&state)
        .link(&row, &base)
        .await
        .map_err(|e| store_unavailable(&e))?;
    Ok(HttpResponse::Ok().json(LinkView { url, expires_at }))
}

/// Deletes the file, unless a template, an unfinished campaign or an unsent message uses it.
async fn delete_media(
    caller: Caller,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let row = find_owned(&state, &caller, path.into_inner()).await?;
    let in_templates = templates::Entity::find()
        .filter(templates::Column::MediaId.eq(row.id.clone()))
        .count(&state.db)
        .await?;
    let in_campaigns = campaigns::Entity::find()
        .filter(campaigns::Column::MediaId.eq(row.id.clone()))
        .filter(campaigns::Column::Status.is_not_in(["completed", "cancelled"]))
        .count(&state.db)
        .await?;
    let unsent = messages::Entity::find()
        .filter(messages::Column::MediaId.eq(row.id.clone()))
        .filter(messages::Column::Status.is_in(["pending", "queued", "sending"]))
        .count(&state.db)
        .await?;
    if in_templates + in_campaigns + unsent > 0 {
        return Err(ApiError::Conflict(
            "media-in-use",
            format!(
                "still used by {in_templates} templates, {in_campaigns} unfinished campaigns and {unsent} unsent messages"
            ),
        ));
    }
    media::Entity::delete_by_id(row.id.clone())
        .exec(&state.db)
        .await?;
    if let Err(e) = state.media.delete(&row.storage_key).await {
        tracing::warn!(media_id = %row.id, error = %format!("{e:#}"), "media row deleted but its file could not be removed");
    }
    Ok(HttpResponse::NoContent().finish())
}
