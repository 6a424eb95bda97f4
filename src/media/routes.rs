//! `POST /media` (raw body upload) and `GET /media/{id}`.
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::Utc;
use sea_orm::{ActiveModelTrait, EntityTrait, Set};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{auth::Caller, entities::media, error::ApiError, state::AppState};

/// Mounts the media routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/media", web::post().to(upload_media))
        .route("/media/{id}", web::get().to(get_media));
}

#[derive(Deserialize)]
struct UploadQuery {
    filename: Option<String>,
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

async fn upload_media(
    caller: Caller,
    req: HttpRequest,
    query: web::Query<UploadQuery>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let body = read_limited(payload, state.settings.media.max_upload_bytes).await?;
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<mime::Mime>().ok())
        .ok_or_else(|| {
            ApiError::BadRequest(
                "missing-content-type",
                "send the file's MIME type as Content-Type".into(),
            )
        })?;
    if body.is_empty() {
        return Err(ApiError::Unprocessable(
            "empty-upload",
            "the request body is empty".into(),
        ));
    }
    if let Some(name) = &query.filename
        && (name.len() > 255 || name.contains(['/', '\\', '\0']))
    {
        return Err(ApiError::Unprocessable(
            "invalid-filename",
            "filename must be a plain name up to 255 bytes".into(),
        ));
    }
    let id = uuid::Uuid::now_v7().to_string();
    let sha256 = hex::encode(Sha256::digest(&body));
    let size = body.len() as i64;
    state.media.put(&id, body).await?;
    let row = media::ActiveModel {
        id: Set(id.clone()),
        owner_id: Set(caller.user_id.clone()),
        storage_key: Set(id),
        content_type: Set(content_type.essence_str().to_owned()),
        filename: Set(query.into_inner().filename),
        size: Set(size),
        sha256: Set(sha256),
        created_at: Set(Utc::now()),
    }
    .insert(&state.db)
    .await?;
    Ok(HttpResponse::Created().json(MediaView::from(row)))
}

/// Reads the body, refusing it with 413 as soon as it passes `limit` bytes.
async fn read_limited(mut payload: web::Payload, limit: usize) -> Result<web::Bytes, ApiError> {
    use futures::StreamExt;
    let mut buf = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::BadRequest("invalid-body", e.to_string()))?;
        if buf.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge(format!(
                "uploads are limited to {limit} bytes"
            )));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

async fn get_media(
    caller: Caller,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let row = media::Entity::find_by_id(path.into_inner())
        .one(&state.db)
        .await?
        .filter(|m| caller.can_access(&m.owner_id))
        .ok_or_else(|| ApiError::NotFound("media-not-found", "no such media".into()))?;
    Ok(HttpResponse::Ok().json(MediaView::from(row)))
}
