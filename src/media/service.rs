//! What the media routes do: store an upload checked against its channel, list, find, link,
//! open and delete.
use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt};

use super::{
    GetError, Library, MediaError, PutError, SNIFF_BYTES, content_matches,
    repo::{self, MediaRow, NewMedia},
};
use crate::domain::{MediaId, UserId};
use crate::page::{Page, PageRequest};
use crate::{auth::Caller, media::ByteStream, state::AppState};

/// Stores an upload: the filename checked, the size held to `media.max_upload_bytes` and to
/// `channel`'s limit for the type, the first bytes sniffed against the declared type. No row
/// is left without its file, nor a file without its row.
pub async fn upload<S>(
    state: &AppState,
    caller: &Caller,
    channel: Option<&str>,
    content_type: &mime::Mime,
    filename: Option<String>,
    mut body: S,
) -> Result<MediaRow, MediaError>
where
    S: Stream<Item = Result<Bytes, String>> + Unpin,
{
    if let Some(name) = &filename
        && (name.is_empty()
            || name.len() > 255
            || name.contains(['/', '\\', '\0', '"', '\r', '\n']))
    {
        return Err(MediaError::InvalidFilename);
    }
    let content_type = content_type.essence_str().to_owned();
    let mut limit = state.settings.media.max_upload_bytes as u64;
    if let Some(name) = channel {
        let adapter = state.adapters.named(name).ok_or_else(|| {
            MediaError::UnknownChannel(format!("whatsapp, {}", state.adapters.kinds().join(", ")))
        })?;
        let channel_limit = adapter
            .media_limit(&content_type)
            .map_err(MediaError::UnsupportedForChannel)?;
        limit = limit.min(channel_limit.unwrap_or(u64::MAX));
    }
    // The first bytes decide whether the declared type is believable.
    let mut head = BytesMut::new();
    while head.len() < SNIFF_BYTES {
        match body.next().await {
            Some(chunk) => head.extend_from_slice(&chunk.map_err(MediaError::Body)?),
            None => break,
        }
    }
    if head.is_empty() {
        return Err(MediaError::Empty);
    }
    if !content_matches(&content_type, &head) {
        return Err(MediaError::ContentMismatch(content_type));
    }
    let body = futures::stream::iter([Ok(head.freeze())]).chain(body);
    save(
        state,
        &caller.user_id,
        &content_type,
        filename,
        limit,
        channel,
        body,
    )
    .await
}

/// Stores a file the server made for `owner_id` (a chart snapshot), as an upload would be.
pub async fn store_for(
    state: &AppState,
    owner_id: &UserId,
    content_type: &str,
    filename: String,
    bytes: Bytes,
) -> Result<MediaRow, MediaError> {
    if !content_matches(content_type, &bytes) {
        return Err(MediaError::ContentMismatch(content_type.to_owned()));
    }
    let limit = state.settings.media.max_upload_bytes as u64;
    let body = futures::stream::iter([Ok::<_, String>(bytes)]);
    save(
        state,
        owner_id,
        content_type,
        Some(filename),
        limit,
        None,
        body,
    )
    .await
}

/// Writes the file, then its row; no row is left without its file, nor a file without its row.
async fn save<S>(
    state: &AppState,
    owner_id: &UserId,
    content_type: &str,
    filename: Option<String>,
    limit: u64,
    channel: Option<&str>,
    body: S,
) -> Result<MediaRow, MediaError>
where
    S: Stream<Item = Result<Bytes, String>> + Unpin,
{
    let id = MediaId::generate();
    let stored = state
        .media
        .put(id.as_str(), content_type, limit, body)
        .await
        .map_err(|e| match e {
            PutError::TooLarge(limit) => MediaError::TooLarge {
                limit,
                channel: channel.map(str::to_owned),
            },
            PutError::Body(e) => MediaError::Body(e),
            PutError::Store(e) => MediaError::StoreUnavailable(e),
        })?;
    let row = repo::insert(
        &state.db,
        NewMedia {
            id: &id,
            owner_id,
            content_type,
            filename,
            size: stored.size,
            sha256: stored.sha256,
            now: Utc::now(),
        },
    )
    .await;
    match row {
        Ok(row) => Ok(row),
        Err(e) => {
            // No row, no file: never leave an orphan in the store.
            let _ = state.media.delete(id.as_str()).await;
            Err(e.into())
        }
    }
}

/// A page of the caller's own media (an admin's too, as every list; they open others' by id),
/// newest first.
pub async fn list(
    state: &AppState,
    caller: &Caller,
    page: &PageRequest,
) -> Result<Page<MediaRow>, MediaError> {
    Ok(repo::list(&state.db, &caller.user_id, page).await?)
}

/// The media `id` if the caller may see it.
pub async fn find(state: &AppState, caller: &Caller, id: &MediaId) -> Result<MediaRow, MediaError> {
    repo::find(&state.db, id)
        .await?
        .filter(|m| caller.can_access(&m.owner_id))
        .ok_or(MediaError::NotFound)
}

/// The media a signed link grants, if its signature holds and it has not expired.
pub async fn find_signed(
    state: &AppState,
    id: &MediaId,
    expires: i64,
    signature: &str,
) -> Result<MediaRow, MediaError> {
    if !super::verify_link(&state.cipher, id, expires, signature, Utc::now()) {
        return Err(MediaError::InvalidLink);
    }
    repo::find(&state.db, id).await?.ok_or(MediaError::NotFound)
}

/// The file's bytes as a stream.
pub async fn open(state: &AppState, row: &MediaRow) -> Result<ByteStream, MediaError> {
    state
        .media
        .open(&row.storage_key)
        .await
        .map_err(|e| match e {
            GetError::NotFound(_) => MediaError::FileMissing,
            GetError::Store(e) => MediaError::StoreUnavailable(e),
        })
}

/// A time-limited URL for the file (see [`Library::link`]).
pub async fn link(
    state: &AppState,
    row: &MediaRow,
    base: &str,
) -> Result<(String, DateTime<Utc>), MediaError> {
    Library::of(state)
        .link(row, base)
        .await
        .map_err(MediaError::StoreUnavailable)
}

/// Deletes the file, unless a template, an unfinished campaign or an unsent message uses it.
pub async fn delete(state: &AppState, caller: &Caller, id: &MediaId) -> Result<(), MediaError> {
    let row = find(state, caller, id).await?;
    let uses = repo::uses(&state.db, &row.id).await?;
    if uses.any() {
        return Err(MediaError::InUse {
            templates: uses.templates,
            campaigns: uses.campaigns,
            unsent: uses.unsent,
        });
    }
    repo::delete(&state.db, &row.id).await?;
    if let Err(e) = state.media.delete(&row.storage_key).await {
        tracing::warn!(media_id = %row.id, error = %format!("{e:#}"), "media row deleted but its file could not be removed");
    }
    Ok(())
}
