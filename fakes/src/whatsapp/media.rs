//! Media upload (`POST /{version}/{phone_number_id}/media`, multipart) and its size limits.

use actix_multipart::Multipart;
use actix_web::{HttpRequest, web};
use futures::StreamExt;

use super::error::{self, ApiError};

/// Largest JPEG / PNG image (5 MiB).
pub const MAX_IMAGE_UPLOAD: usize = 5 * 1024 * 1024;
/// Largest MP4 / 3GPP video or audio file (16 MiB).
pub const MAX_AUDIO_VIDEO_UPLOAD: usize = 16 * 1024 * 1024;
/// Largest WebP sticker (500 KiB, the animated-sticker limit).
pub const MAX_STICKER_UPLOAD: usize = 500 * 1024;
/// Largest document, any other content type (100 MiB).
pub const MAX_DOCUMENT_UPLOAD: usize = 100 * 1024 * 1024;

/// Text fields longer than this are refused.
const TEXT_FIELD_LIMIT: usize = 64 * 1024;

/// An uploaded file (only its metadata is kept).
#[derive(Clone, Debug)]
pub(super) struct Media {
    /// The number that uploaded it (media ids are usable by that number only).
    pub(super) phone_number_id: String,
}

/// The size limit for a content type; `None` for image and video types WhatsApp refuses.
pub(super) fn limit_for(mime: &str) -> Option<usize> {
    let mime = mime.trim().to_ascii_lowercase();
    match mime.as_str() {
        "image/jpeg" | "image/png" => Some(MAX_IMAGE_UPLOAD),
        "image/webp" => Some(MAX_STICKER_UPLOAD),
        "video/mp4" | "video/3gpp" => Some(MAX_AUDIO_VIDEO_UPLOAD),
        m if m.starts_with("audio/") => Some(MAX_AUDIO_VIDEO_UPLOAD),
        m if m.starts_with("image/") || m.starts_with("video/") => None,
        _ => Some(MAX_DOCUMENT_UPLOAD),
    }
}

/// What a multipart upload carried.
#[derive(Debug, Default)]
pub(super) struct Upload {
    pub(super) messaging_product: Option<String>,
    /// The `type` field.
    pub(super) declared_type: Option<String>,
    /// The `file` part's content type and size, if there was one.
    pub(super) file: Option<(Option<String>, usize)>,
}

/// Reads the whole multipart body (file data is counted, not kept).
pub(super) async fn read_upload(
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<Upload, ApiError> {
    let bad = |e: actix_multipart::MultipartError| {
        ApiError::invalid(format!("Could not parse the multipart body: {e}"))
    };
    let mut upload = Upload::default();
    let mut multipart = Multipart::new(req.headers(), payload);
    while let Some(field) = multipart.next().await {
        let mut field = field.map_err(bad)?;
        let name = field.name().map(str::to_owned).unwrap_or_default();
        let content_type = field.content_type().map(|m| m.essence_str().to_owned());
        let mut data = Vec::new();
        let mut bytes = 0usize;
        while let Some(chunk) = field.next().await {
            let chunk = chunk.map_err(bad)?;
            bytes += chunk.len();
            if name != "file" && data.len() < TEXT_FIELD_LIMIT {
                data.extend_from_slice(&chunk);
            }
        }
        let text = || String::from_utf8_lossy(&data).trim().to_owned();
        match name.as_str() {
            "file" => upload.file = Some((content_type, bytes)),
            "messaging_product" => upload.messaging_product = Some(text()),
            "type" => upload.declared_type = Some(text()),
            _ => {}
        }
    }
    Ok(upload)
}

/// Checks an upload; returns its content type and size.
pub(super) fn check(upload: Upload) -> Result<(String, usize), ApiError> {
    match upload.messaging_product.as_deref() {
        Some("whatsapp") => {}
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "Param messaging_product must be one of {{WHATSAPP}} - got \"{other}\"."
            )));
        }
        None => {
            return Err(ApiError::invalid(
                "The parameter messaging_product is required.",
            ));
        }
    }
    let (part_type, bytes) = upload
        .file
        .ok_or_else(|| ApiError::invalid("The parameter file is required."))?;
    let mime = part_type
        .filter(|t| t != "application/octet-stream")
        .or(upload.declared_type)
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "application/octet-stream".to_owned());
    let limit = limit_for(&mime).ok_or_else(|| {
        ApiError::new(
            error::MEDIA_UPLOAD,
            format!("Unsupported media type {mime}"),
        )
    })?;
    if bytes > limit {
        return Err(ApiError::new(
            error::MEDIA_UPLOAD,
            format!("Media file size {bytes} bytes is over the {limit} bytes limit for {mime}"),
        ));
    }
    Ok((mime, bytes))
}
