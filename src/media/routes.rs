//! `POST /media` (raw body or multipart), listing, metadata, downloads (proxied), links
//! (presigned or signed), deletion; and the public `GET /media/{id}/content` signed links.
use actix_web::{HttpRequest, HttpResponse, delete, get, http::header, post, web};
use chrono::Utc;
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use super::{MediaError, repo::MediaRow, service};
use crate::domain::MediaId;
use crate::page::{Page, PageQuery};
use crate::{auth::Caller, error::ApiError, state::AppState};

/// Mounts the authenticated media routes (under `/api/v1`).
pub fn configure(cfg: &mut crate::mount::Routes) {
    cfg.service(upload_media)
        .service(list_media)
        .service(get_media)
        .service(delete_media)
        .service(download)
        .service(media_url);
}

/// Mounts the signed-link download at the root (no credentials: the signature is the grant).
pub fn configure_public(cfg: &mut crate::mount::Routes) {
    cfg.service(signed_download);
}

/// `?filename=&channel=`.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct UploadQuery {
    /// The file's name (a plain name up to 255 bytes); for a form, it overrides the part's.
    filename: Option<String>,
    /// Check the file against this channel kind's limits (`whatsapp`, `telegram`, any kind).
    channel: Option<String>,
}

/// The `multipart/form-data` form of an upload (other fields are ignored).
#[derive(utoipa::ToSchema)]
#[schema(as = MediaUploadForm)]
#[allow(dead_code)] // documents the form; the handler reads it as a stream
struct UploadForm {
    /// The file, with its own `Content-Type` (and filename, unless `?filename=` gives one).
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
}

/// A stored file.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Media)]
struct MediaView {
    id: MediaId,
    /// Its MIME type (the essence, without parameters).
    content_type: String,
    filename: Option<String>,
    /// Bytes.
    size: i64,
    /// Hex SHA-256 of the contents.
    sha256: String,
    created_at: chrono::DateTime<Utc>,
}

impl From<MediaRow> for MediaView {
    fn from(m: MediaRow) -> Self {
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

/// Upload a file.
///
/// The file as the raw body (`Content-Type` its type, `?filename=`), or as the `file` part of a
/// `multipart/form-data` form. The body streams to the store; it is refused with 413 as soon as
/// it passes `media.max_upload_bytes` or the `?channel=`'s limit for its type.
#[utoipa::path(
    tag = "media",
    params(UploadQuery),
    request_body(
        description = "The file itself with its type as `Content-Type`, or a form with a `file` part",
        content(
            (String = "*/*"),
            (UploadForm = "multipart/form-data"),
        )
    ),
    responses(
        (status = 201, description = "Stored", body = MediaView),
        (status = 400, description = "`missing-content-type`, `invalid-content-type`, `invalid-multipart`, `missing-file`, `invalid-body-stream`, `invalid-query` (also an unknown `channel`), `invalid-idempotency-key`"),
        (status = 413, description = "`payload-too-large`: over `media.max_upload_bytes` or the channel's limit for the type"),
        (status = 422, description = "`invalid-filename`, `empty-upload`, `content-type-mismatch`, `unsupported-media-type-for-channel`"),
        (status = 503, description = "`media-store-unavailable`"),
    )
)]
#[post("/media")]
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
            let row = service::upload(
                &state,
                &caller,
                query.channel.as_deref(),
                &content_type,
                filename,
                body,
            )
            .await?;
            return Ok(HttpResponse::Created().json(MediaView::from(row)));
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
        return Err(MediaError::TooLarge {
            limit: state.settings.media.max_upload_bytes as u64,
            channel: None,
        }
        .into());
    }
    let filename = query.filename.clone();
    let body = payload.map_err(|e| e.to_string());
    let row = service::upload(
        &state,
        &caller,
        query.channel.as_deref(),
        &declared,
        filename,
        body,
    )
    .await?;
    Ok(HttpResponse::Created().json(MediaView::from(row)))
}

/// List the caller's files, newest first.
#[utoipa::path(
    tag = "media",
    params(PageQuery),
    responses(
        (status = 200, description = "One page of files", body = Page<MediaView>),
        (status = 400, description = "`invalid-cursor`, `validation-failed`, `invalid-query`"),
    )
)]
#[get("/media")]
async fn list_media(
    caller: Caller,
    query: web::Query<PageQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let rows = service::list(&state, &caller, &query.request()?).await?;
    Ok(HttpResponse::Ok().json(rows.map(MediaView::from)))
}

/// One file's metadata.
#[utoipa::path(
    tag = "media",
    params(MediaId),
    responses(
        (status = 200, description = "The file's metadata", body = MediaView),
        (status = 404, description = "`media-not-found`"),
    )
)]
#[get("/media/{id}")]
async fn get_media(
    caller: Caller,
    path: web::Path<MediaId>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let row = service::find(&state, &caller, &path).await?;
    Ok(HttpResponse::Ok().json(MediaView::from(row)))
}

/// Download a file, through this server (for the dashboard).
#[utoipa::path(
    tag = "media",
    params(MediaId),
    responses(
        (status = 200, description = "The file, as its own type (inline when a browser can show it safely, else an attachment)",
            content(
                (String = "application/*"),
                (String = "audio/*"),
                (String = "image/*"),
                (String = "text/*"),
                (String = "video/*"),
                (String = "*/*"),
            ),
            headers(("Content-Disposition" = String, description = "`inline` or `attachment`, with the filename"))),
        (status = 404, description = "`media-not-found`, `media-file-missing`"),
        (status = 503, description = "`media-store-unavailable`"),
    )
)]
#[get("/media/{id}/content")]
async fn download(
    caller: Caller,
    path: web::Path<MediaId>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let row = service::find(&state, &caller, &path).await?;
    stream_file(&state, &row).await
}

/// `?expires=&signature=` of a signed link.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct SignedQuery {
    /// Unix time the link expires at.
    expires: i64,
    /// The link's HMAC signature.
    signature: String,
}

/// Download a file through a signed link.
///
/// The link comes from `GET /api/v1/media/{id}/url`, or is sent to a provider that fetches
/// media. No credentials: the signature is the grant.
#[utoipa::path(
    tag = "media",
    params(MediaId, SignedQuery),
    responses(
        (status = 200, description = "The file, as its own type (inline when a browser can show it safely, else an attachment)",
            content(
                (String = "application/*"),
                (String = "audio/*"),
                (String = "image/*"),
                (String = "text/*"),
                (String = "video/*"),
                (String = "*/*"),
            ),
            headers(("Content-Disposition" = String, description = "`inline` or `attachment`, with the filename"))),
        (status = 400, description = "`invalid-query`: `expires` and `signature` are required"),
        (status = 403, description = "`invalid-link`: expired, or its signature does not match"),
        (status = 404, description = "`media-not-found`, `media-file-missing`"),
        (status = 503, description = "`media-store-unavailable`"),
    )
)]
#[get("/media/{id}/content")]
async fn signed_download(
    path: web::Path<MediaId>,
    query: web::Query<SignedQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let row = service::find_signed(&state, &path, query.expires, &query.signature).await?;
    stream_file(&state, &row).await
}

/// Sends a stored file. It is served from the API's own origin, so it must never run there:
/// no script or plugin runs in it (`Content-Security-Policy: sandbox`), its type is not sniffed,
/// and anything but a picture, sound, video or PDF is a download, not a page (an uploaded
/// `text/html` or SVG would otherwise act with the viewer's session).
async fn stream_file(state: &AppState, row: &MediaRow) -> Result<HttpResponse, ApiError> {
    let body = service::open(state, row).await?;
    let mut res = HttpResponse::Ok();
    res.content_type(row.content_type.as_str())
        .no_chunking(u64::try_from(row.size).unwrap_or(0))
        .insert_header((header::CACHE_CONTROL, "private, max-age=3600"))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .insert_header(("Content-Security-Policy", "default-src 'none'; sandbox"));
    let disposition = if shows_inline(&row.content_type) {
        "inline"
    } else {
        "attachment"
    };
    match &row.filename {
        Some(name) => res.insert_header((
            header::CONTENT_DISPOSITION,
            format!("{disposition}; filename=\"{name}\""),
        )),
        None => res.insert_header((header::CONTENT_DISPOSITION, disposition)),
    };
    Ok(res.streaming(body))
}

/// Types a browser shows without running anything in them.
fn shows_inline(content_type: &str) -> bool {
    let ct = content_type.to_ascii_lowercase();
    let essence = ct.split(';').next().unwrap_or("").trim();
    matches!(
        essence,
        "image/png" | "image/jpeg" | "image/gif" | "image/webp" | "application/pdf"
    ) || essence.starts_with("audio/")
        || essence.starts_with("video/")
}

/// A time-limited link to a file.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = MediaLink)]
struct LinkView {
    /// Presigned S3 GET, or a signed link to this server's `/media/{id}/content`.
    url: String,
    /// When the link stops working.
    expires_at: chrono::DateTime<Utc>,
}

/// Get a time-limited link to a file.
///
/// Presigned by S3, or signed by this server (at `auth.public_url`, else at the address the
/// request came to).
#[utoipa::path(
    tag = "media",
    params(MediaId),
    responses(
        (status = 200, description = "The link", body = LinkView),
        (status = 404, description = "`media-not-found`"),
        (status = 503, description = "`media-store-unavailable`"),
    )
)]
#[get("/media/{id}/url")]
async fn media_url(
    caller: Caller,
    req: HttpRequest,
    path: web::Path<MediaId>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let row = service::find(&state, &caller, &path).await?;
    let base = crate::client_ip::request_base(
        &req,
        state.settings.auth.public_url.as_deref(),
        &state.trusted_proxies,
    );
    let (url, expires_at) = service::link(&state, &row, &base).await?;
    Ok(HttpResponse::Ok().json(LinkView { url, expires_at }))
}

/// Delete a file that no template, unfinished campaign or unsent message uses.
#[utoipa::path(
    tag = "media",
    params(MediaId),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "`media-not-found`"),
        (status = 409, description = "`media-in-use`: a template, an unfinished campaign or an unsent message attaches it"),
    )
)]
#[delete("/media/{id}")]
async fn delete_media(
    caller: Caller,
    path: web::Path<MediaId>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    service::delete(&state, &caller, &path).await?;
    Ok(HttpResponse::NoContent().finish())
}
