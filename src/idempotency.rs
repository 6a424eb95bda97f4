//! `Idempotency-Key` on every creating `POST` (campaigns, `/send-messages`, contacts, imports,
//! templates, integrations, channels, API keys, media…), with the semantics of
//! `POST /api/v1/messages`: a retry with the same key and body gets the first answer again
//! (`Idempotent-Replayed: true`) and creates nothing; the same key with another body is
//! `409 idempotency-key-reused`; a retry while the first request still runs is
//! `409 idempotency-key-in-use` with `Retry-After: 1`.
//!
//! - Keys are their owner's and kept for [`KEEP`]. Only successful answers are kept: after an
//!   error the same key may be used again, so a request refused for a bad body can be fixed.
//!   They are kept encrypted: some hold a secret shown once (a new API key's token).
//! - The body is hashed as it streams into the handler, never buffered here. A multipart body
//!   (an upload) is identified by its method and path only: its boundary differs on every
//!   send, so two sends of the same file never hash alike.
//! - Messages and events keep their keys on their own rows (their routes handle the header).
use std::sync::{Arc, Mutex};

use actix_web::{
    HttpMessage, HttpRequest, HttpResponse,
    body::{BoxBody, MessageBody},
    dev::{Payload, ServiceRequest, ServiceResponse},
    http::{Method, StatusCode, header},
    middleware::Next,
    web,
};
use chrono::{DateTime, Duration, Utc};
use futures::StreamExt;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter,
    sea_query::OnConflict,
};
use sha2::{Digest, Sha256};

use crate::{
    auth::Caller, domain::UserId, entities::idempotency_keys as keys, error::ApiError,
    state::AppState,
};

/// Longest `Idempotency-Key` accepted.
const MAX_IDEMPOTENCY_KEY: usize = 255;

/// The request's `Idempotency-Key`: `None` without one; 400 `invalid-idempotency-key` unless it
/// is 1 to 255 visible ASCII characters.
pub fn header_key(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    let Some(value) = req.headers().get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY)
        .ok_or_else(|| {
            ApiError::BadRequest(
                "invalid-idempotency-key",
                format!(
                    "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters"
                ),
            )
        })?;
    Ok(Some(key.to_owned()))
}

/// How long an answer is replayed.
pub const KEEP: Duration = Duration::hours(24);

/// A first request that never finished (its process died) frees its key after this long.
const ABANDONED: Duration = Duration::minutes(10);

/// Largest answer kept; a bigger one is sent but not kept (no creating route answers that much).
const MAX_ANSWER: usize = 1024 * 1024;

/// Routes that keep their keys themselves.
fn handles_own_keys(path: &str) -> bool {
    path == "/api/v1/messages"
}

/// Where a key stands.
enum Claim {
    /// Ours now: run the request.
    New,
    /// Answered before.
    Done(keys::Model),
    /// Another request with it is running.
    Running,
}

async fn claim(
    db: &DatabaseConnection,
    owner: &UserId,
    key: &str,
    now: DateTime<Utc>,
) -> Result<Claim, DbErr> {
    for _ in 0..2 {
        let inserted = keys::Entity::insert(keys::ActiveModel {
            owner_id: Set(owner.clone()),
            key: Set(key.to_owned()),
            request_hash: Set(None),
            status: Set(None),
            content_type: Set(None),
            body: Set(None),
            created_at: Set(now),
            completed_at: Set(None),
        })
        .on_conflict(
            OnConflict::columns([keys::Column::OwnerId, keys::Column::Key])
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(db)
        .await;
        match inserted {
            Ok(n) if n > 0 => return Ok(Claim::New),
            Ok(_) | Err(DbErr::RecordNotInserted) => {}
            Err(e) => return Err(e),
        }
        let Some(row) = keys::Entity::find_by_id((owner.clone(), key.to_owned()))
            .one(db)
            .await?
        else {
            continue;
        };
        let expired = row.created_at < now - KEEP
            || (row.completed_at.is_none() && row.created_at < now - ABANDONED);
        if expired {
            // Only that row: a request that claimed the key meanwhile keeps it.
            keys::Entity::delete_many()
                .filter(keys::Column::OwnerId.eq(owner))
                .filter(keys::Column::Key.eq(key))
                .filter(keys::Column::CreatedAt.eq(row.created_at))
                .exec(db)
                .await?;
            continue;
        }
        return Ok(if row.completed_at.is_some() {
            Claim::Done(row)
        } else {
            Claim::Running
        });
    }
    Ok(Claim::Running)
}

async fn release(db: &DatabaseConnection, owner: &UserId, key: &str) {
    let deleted = keys::Entity::delete_many()
        .filter(keys::Column::OwnerId.eq(owner))
        .filter(keys::Column::Key.eq(key))
        .filter(keys::Column::CompletedAt.is_null())
        .exec(db)
        .await;
    if let Err(e) = deleted {
        tracing::warn!(error = %e, "could not free an idempotency key; it frees itself in 10 minutes");
    }
}

/// The request's fingerprint so far: method and path, then the body as it streams.
fn fingerprint(req: &ServiceRequest) -> (Sha256, bool) {
    let mut hash = Sha256::new();
    hash.update(req.method().as_str());
    hash.update(b" ");
    hash.update(req.path());
    hash.update(b"\n");
    let multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.to_ascii_lowercase().starts_with("multipart/"));
    (hash, !multipart)
}

fn replay(row: &keys::Model, cipher: &crate::crypto::Cipher) -> Result<HttpResponse, ApiError> {
    let status = row
        .status
        .and_then(|s| StatusCode::from_u16(u16::try_from(s).ok()?).ok())
        .unwrap_or(StatusCode::OK);
    let mut res = HttpResponse::build(status);
    res.insert_header(("Idempotent-Replayed", "true"));
    if let Some(ct) = &row.content_type {
        res.insert_header((header::CONTENT_TYPE, ct.as_str()));
    }
    let body = match &row.body {
        Some(sealed) => cipher.decrypt(sealed).map_err(ApiError::Unexpected)?,
        None => String::new(),
    };
    Ok(res.body(body))
}

fn in_use() -> ApiError {
    ApiError::Limited {
        status: StatusCode::CONFLICT,
        code: "idempotency-key-in-use",
        message: "a request with this Idempotency-Key is still running; retry shortly".into(),
        retry_after: 1,
        resets_at: None,
    }
}

fn reused() -> ApiError {
    ApiError::Conflict(
        "idempotency-key-reused",
        "this Idempotency-Key was used for another request (path or body); use a new key".into(),
    )
}

/// Middleware for the creating routes: see the module's docs. Runs after authentication.
pub async fn middleware(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    if req.method() != Method::POST
        || !req.headers().contains_key("idempotency-key")
        || handles_own_keys(req.path())
    {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body);
    }
    let Some(key) = header_key(req.request())? else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body);
    };
    let state = req
        .app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| ApiError::Unexpected(anyhow::anyhow!("AppState missing")))?;
    let owner = match req.extensions().get::<Caller>() {
        Some(caller) => caller.user_id.clone(),
        None => return Err(ApiError::MissingCredentials.into()),
    };
    let (mut hash, with_body) = fingerprint(&req);
    match claim(&state.db, &owner, &key, state.clock.now())
        .await
        .map_err(ApiError::from)?
    {
        Claim::Running => return Err(in_use().into()),
        Claim::Done(row) => {
            if with_body {
                let mut payload = req.take_payload();
                while let Some(chunk) = payload.next().await {
                    hash.update(&chunk?);
                }
            }
            let same = row.request_hash.as_deref() == Some(hex::encode(hash.finalize()).as_str());
            if !same {
                return Err(reused().into());
            }
            return Ok(req.into_response(replay(&row, &state.cipher)?));
        }
        Claim::New => {}
    }
    // The first request: hash its body as the handler reads it.
    let hash = Arc::new(Mutex::new(hash));
    if with_body {
        let seen = hash.clone();
        let payload = req.take_payload().map(move |chunk| {
            if let (Ok(bytes), Ok(mut h)) = (&chunk, seen.lock()) {
                h.update(bytes);
            }
            chunk
        });
        req.set_payload(Payload::Stream {
            payload: Box::pin(payload),
        });
    }
    let res = match next.call(req).await {
        Ok(res) if res.status().is_success() => res,
        other => {
            release(&state.db, &owner, &key).await;
            return other.map(ServiceResponse::map_into_boxed_body);
        }
    };
    let (http_req, res) = res.into_parts();
    let status = res.status();
    let content_type = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let (head, body) = res.into_parts();
    let bytes = match actix_web::body::to_bytes_limited(body, MAX_ANSWER).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(e)) => {
            release(&state.db, &owner, &key).await;
            let e: Box<dyn std::error::Error> = e.into();
            return Err(ApiError::Unexpected(anyhow::anyhow!("answer body: {e}")).into());
        }
        Err(_) => {
            release(&state.db, &owner, &key).await;
            tracing::warn!("an answer over 1 MiB was not kept for its Idempotency-Key");
            return Err(ApiError::Unexpected(anyhow::anyhow!("answer too large to keep")).into());
        }
    };
    let digest = hash
        .lock()
        .map(|h| hex::encode(h.clone().finalize()))
        .unwrap_or_default();
    // Answers can hold secrets shown once (a new API key's token, a webhook secret): kept
    // encrypted, like every secret at rest.
    let sealed = match state.cipher.encrypt(&String::from_utf8_lossy(&bytes)) {
        Ok(sealed) => sealed,
        Err(e) => {
            release(&state.db, &owner, &key).await;
            tracing::warn!(error = %e, "could not encrypt an idempotent answer; not kept");
            return Ok(ServiceResponse::new(
                http_req,
                head.set_body(BoxBody::new(bytes)),
            ));
        }
    };
    let kept = keys::Entity::update_many()
        .col_expr(
            keys::Column::RequestHash,
            sea_orm::sea_query::Expr::value(digest),
        )
        .col_expr(
            keys::Column::Status,
            sea_orm::sea_query::Expr::value(status.as_u16() as i16),
        )
        .col_expr(
            keys::Column::ContentType,
            sea_orm::sea_query::Expr::value(content_type),
        )
        .col_expr(keys::Column::Body, sea_orm::sea_query::Expr::value(sealed))
        .col_expr(
            keys::Column::CompletedAt,
            sea_orm::sea_query::Expr::value(state.clock.now()),
        )
        .filter(keys::Column::OwnerId.eq(&owner))
        .filter(keys::Column::Key.eq(&key))
        .exec(&state.db)
        .await;
    if let Err(e) = kept {
        // The request did its work; a retry will find the key running, then free after 10 min.
        tracing::warn!(error = %e, "could not keep the answer of an idempotent request");
    }
    Ok(ServiceResponse::new(
        http_req,
        head.set_body(BoxBody::new(bytes)),
    ))
}

/// Deletes the keys older than [`KEEP`] (the scheduled cleanup).
pub async fn purge(db: &DatabaseConnection, now: DateTime<Utc>) -> Result<u64, DbErr> {
    keys::Entity::delete_many()
        .filter(keys::Column::CreatedAt.lt(now - KEEP))
        .exec(db)
        .await
        .map(|r| r.rows_affected)
}
