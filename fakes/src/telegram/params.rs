//! Request parameters: query string, JSON, urlencoded and multipart bodies merged into one map.

use std::collections::HashMap;

use actix_multipart::Multipart;
use actix_web::http::header;
use actix_web::{HttpRequest, web};
use futures::StreamExt;
use serde_json::{Map, Value};

use super::error::ApiError;
use super::{BODY_LIMIT, FileRef};

/// Multipart parts larger than this (or binary, or with a file name) are uploads, not text.
const TEXT_PART_LIMIT: usize = 1024 * 1024;

/// A multipart file part.
#[derive(Clone, Debug)]
pub(super) struct Upload {
    filename: Option<String>,
    bytes: usize,
}

/// All request parameters: query string and body merged (body wins).
#[derive(Debug, Default)]
pub(super) struct Params {
    pub(super) fields: Map<String, Value>,
    pub(super) uploads: HashMap<String, Upload>,
}

impl Params {
    /// A parameter as a string (`null` counts as absent, other JSON values are stringified).
    pub(super) fn string(&self, key: &str) -> Option<String> {
        match self.fields.get(key)? {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        }
    }

    /// The file given in `field`: an upload, `attach://<part>`, a URL or a file_id.
    pub(super) fn file(&self, field: &str) -> Option<FileRef> {
        let upload = |u: &Upload| FileRef::Upload {
            filename: u.filename.clone(),
            bytes: u.bytes,
        };
        if let Some(u) = self.uploads.get(field) {
            return Some(upload(u));
        }
        let value = self.string(field)?;
        let value = value.trim();
        if value.is_empty() {
            None
        } else if let Some(part) = value.strip_prefix("attach://") {
            self.uploads.get(part).map(upload)
        } else if value.starts_with("http://") || value.starts_with("https://") {
            Some(FileRef::Url(value.to_owned()))
        } else {
            Some(FileRef::FileId(value.to_owned()))
        }
    }
}

/// Merges the query string and the body (JSON, urlencoded or multipart) into [`Params`].
pub(super) async fn read_params(
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<Params, ApiError> {
    let mut params = Params::default();
    merge_urlencoded(&mut params, req.query_string())?;

    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if content_type.starts_with("multipart/") {
        return read_multipart(req, payload, params).await;
    }

    let body = read_body(payload).await?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(params);
    }
    if content_type.starts_with("application/json") {
        merge_json(&mut params, &body)?;
    } else if content_type.starts_with("application/x-www-form-urlencoded") {
        let body = std::str::from_utf8(&body)
            .map_err(|_| ApiError::bad_request("can't parse request body"))?;
        merge_urlencoded(&mut params, body)?;
    } else if merge_json(&mut params, &body).is_err()
        && let Ok(body) = std::str::from_utf8(&body)
    {
        // Unknown content type: a JSON object if it parses, else urlencoded if it parses.
        let _ignored = merge_urlencoded(&mut params, body);
    }
    Ok(params)
}

async fn read_body(mut payload: web::Payload) -> Result<Vec<u8>, ApiError> {
    let mut body = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request(format!("can't read body: {e}")))?;
        if body.len() + chunk.len() > BODY_LIMIT {
            return Err(ApiError::new(413, "Request Entity Too Large"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn merge_urlencoded(params: &mut Params, query: &str) -> Result<(), ApiError> {
    if query.is_empty() {
        return Ok(());
    }
    let pairs = web::Query::<Vec<(String, String)>>::from_query(query)
        .map_err(|_| ApiError::bad_request("can't parse parameters"))?
        .into_inner();
    for (key, value) in pairs {
        params.fields.insert(key, Value::String(value));
    }
    Ok(())
}

fn merge_json(params: &mut Params, body: &[u8]) -> Result<(), ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => {
            params.fields.extend(map);
            Ok(())
        }
        _ => Err(ApiError::bad_request("can't parse JSON object")),
    }
}

/// Reads a multipart body: text parts become string fields; parts with a file name, a binary
/// content type, non-UTF-8 data or more than [`TEXT_PART_LIMIT`] bytes become [`Upload`]s
/// (only their length is kept).
async fn read_multipart(
    req: &HttpRequest,
    payload: web::Payload,
    mut params: Params,
) -> Result<Params, ApiError> {
    let bad = |e: actix_multipart::MultipartError| {
        ApiError::bad_request(format!("can't parse multipart body: {e}"))
    };
    let mut multipart = Multipart::new(req.headers(), payload);
    while let Some(field) = multipart.next().await {
        let mut field = field.map_err(bad)?;
        let name = field.name().map(str::to_owned);
        let filename = field
            .content_disposition()
            .and_then(|cd| cd.get_filename())
            .map(str::to_owned);
        let binary_type = field.content_type().is_some_and(|mime| {
            let essence = mime.essence_str();
            !(essence.starts_with("text/") || essence == "application/json")
        });
        let mut is_file = filename.is_some() || binary_type;
        let mut data = Vec::new();
        let mut bytes = 0usize;
        while let Some(chunk) = field.next().await {
            let chunk = chunk.map_err(bad)?;
            bytes += chunk.len();
            if !is_file {
                if data.len() + chunk.len() > TEXT_PART_LIMIT {
                    is_file = true;
                    data = Vec::new();
                } else {
                    data.extend_from_slice(&chunk);
                }
            }
        }
        let Some(name) = name else {
            continue;
        };
        if !is_file && let Ok(text) = String::from_utf8(data) {
            params.fields.insert(name, Value::String(text));
            continue;
        }
        params.uploads.insert(name, Upload { filename, bytes });
    }
    Ok(params)
}
