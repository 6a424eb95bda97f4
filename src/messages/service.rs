//! What the messages API does: check a send against its channel, admit it through the
//! outbox (idempotent by key), and read a message's history.
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::MessageError;
use crate::{
    auth::Caller,
    channels::{self, Address},
    domain::{ChannelId, MediaId, MessageId, PARSE_MODES, PhoneError, PhoneNumber, UserId},
    outbox::{
        self,
        repo::{self, EventRow, MessageRow},
    },
    state::AppState,
};

/// Longest text Telegram takes in `sendMessage`.
const MAX_TEXT: usize = 4096;
/// Longest caption Telegram takes with media.
const MAX_CAPTION: usize = 1024;

/// A send as the API takes it. Its canonical JSON (fields in this order) is the request hash
/// an `Idempotency-Key` is bound to.
#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NewMessage)]
pub struct SendRequest {
    /// One of the caller's channel accounts.
    channel_id: ChannelId,
    /// The recipient: a chat id or `@channel` (Telegram), a phone number (WhatsApp; read with
    /// `contacts.default_region` when it has no `+country`), …
    to: String,
    /// The text, up to 4096 characters (a caption of up to 1024 with `media_id`). Required
    /// without `media_id`.
    #[serde(default)]
    #[schema(max_length = 4096)]
    text: String,
    /// `HTML`, `MarkdownV2` or `Markdown`.
    parse_mode: Option<String>,
    /// One of the caller's files, sent with the text as its caption.
    media_id: Option<MediaId>,
}

/// How a send ended.
pub enum Sent {
    /// Stored and queued.
    Accepted(MessageRow),
    /// The same key and body came before: the message that request created.
    Replayed(MessageRow),
}

/// The SHA-256 of a request's canonical JSON.
fn request_hash(body: &SendRequest) -> Result<String, MessageError> {
    let canonical = serde_json::to_vec(body).map_err(anyhow::Error::from)?;
    Ok(hex::encode(Sha256::digest(canonical)))
}

/// A repeat of the request that created `existing`, or 409 if its body differs.
pub fn same_request(existing: &MessageRow, hash: &str) -> Result<(), MessageError> {
    if existing.request_hash.as_deref() == Some(hash) {
        Ok(())
    } else {
        Err(MessageError::KeyReused)
    }
}

/// Checks and admits one send; with a key, a repeat answers the first request's message.
pub async fn send(
    state: &AppState,
    caller: &Caller,
    mut body: SendRequest,
    key: Option<String>,
) -> Result<Sent, MessageError> {
    body.to = body.to.trim().to_owned();
    let hash = request_hash(&body)?;
    if let Some(existing) = outbox::earlier(&state.outbox, &caller.user_id, key.as_deref()).await? {
        same_request(&existing, &hash)?;
        return Ok(Sent::Replayed(existing));
    }
    let recipient = validate(&body, caller, state).await?;
    let message = repo::NewMessage {
        owner_id: caller.user_id.clone(),
        channel_id: body.channel_id,
        recipient,
        body: body.text,
        parse_mode: body.parse_mode,
        media_id: body.media_id,
        idempotency_key: key,
        request_hash: Some(hash.clone()),
        integration_id: None,
    };
    let pending = outbox::Pending {
        message,
        quota: None,
    };
    match outbox::admit(&state.outbox, pending).await? {
        outbox::Admit::Accepted(msg) => Ok(Sent::Accepted(msg)),
        outbox::Admit::Replayed(existing) => {
            same_request(&existing, &hash)?;
            Ok(Sent::Replayed(existing))
        }
        outbox::Admit::Refused => Err(MessageError::Unexpected(anyhow::anyhow!(
            "a message without a quota was refused"
        ))),
    }
}

/// A message of the caller's and its history.
pub async fn find(
    state: &AppState,
    caller: &Caller,
    id: &MessageId,
) -> Result<(MessageRow, Vec<EventRow>), MessageError> {
    let msg = repo::find(&state.db, id)
        .await?
        .filter(|m| caller.can_access(&m.owner_id))
        .ok_or(MessageError::NotFound)?;
    let events = repo::events(&state.db, &msg.id).await?;
    Ok((msg, events))
}

/// Checks the message; returns the recipient in the channel's canonical form (a Telegram chat
/// as given, a WhatsApp phone in E.164 read with `contacts.default_region`).
async fn validate(
    body: &SendRequest,
    caller: &Caller,
    state: &AppState,
) -> Result<String, MessageError> {
    let recipient = canonical_recipient(state, &caller.user_id, &body.channel_id, &body.to).await?;
    validate_content(
        state,
        &caller.user_id,
        &body.text,
        body.parse_mode.as_deref(),
        body.media_id.as_ref(),
    )
    .await?;
    Ok(recipient)
}

/// `to` in the canonical form of the owner's channel `channel_id` (a Telegram chat as given, a
/// WhatsApp phone in E.164 read with `contacts.default_region`).
pub async fn canonical_recipient(
    state: &AppState,
    owner_id: &UserId,
    channel_id: &ChannelId,
    to_raw: &str,
) -> Result<String, MessageError> {
    let channel = find_owned_cached(state, owner_id, channel_id)
        .await?
        .ok_or_else(|| MessageError::ChannelNotFound(channel_id.clone()))?;
    let adapter = state
        .adapters
        .get(&channel.kind)
        .ok_or_else(|| MessageError::UnknownKind(channel.id.clone()))?;
    let to = match adapter.address() {
        // Phones are normalised to E.164 with the default region first; other addresses are
        // the adapter's to check.
        Address::Phone => {
            let region = crate::domain::region(&state.settings.contacts.default_region)
                .ok_or_else(|| {
                    MessageError::Unexpected(anyhow::anyhow!(
                        "contacts.default_region is not a region"
                    ))
                })?;
            PhoneNumber::parse(to_raw, region)
                .map_err(|e| {
                    MessageError::InvalidRecipient(
                        match e {
                            PhoneError::Unparsable => format!("`{}` is not a phone number", to_raw),
                            PhoneError::Invalid => format!(
                                "`{}` is not a valid phone number (read as {region:?} when it has no +country)",
                                to_raw
                            ),
                        },
                    )
                })?
                .into_string()
        }
        _ => to_raw.to_owned(),
    };
    adapter
        .recipient(&to)
        .map_err(MessageError::InvalidRecipient)
}

/// Checks text, caption, parse mode and media ownership against Telegram's limits.
pub async fn validate_content(
    state: &AppState,
    owner_id: &UserId,
    text: &str,
    parse_mode: Option<&str>,
    media_id: Option<&MediaId>,
) -> Result<(), MessageError> {
    let len = text.chars().count();
    match media_id {
        None if text.trim().is_empty() => return Err(MessageError::TextEmpty),
        None if len > MAX_TEXT => return Err(MessageError::TextTooLong(len, MAX_TEXT)),
        Some(_) if len > MAX_CAPTION => {
            return Err(MessageError::CaptionTooLong(len, MAX_CAPTION));
        }
        _ => {}
    }
    if let Some(mode) = parse_mode
        && !PARSE_MODES.contains(&mode)
    {
        return Err(MessageError::InvalidParseMode(PARSE_MODES.join(", ")));
    }
    if let Some(media_id) = media_id {
        crate::media::find_owned(&state.db, owner_id, media_id)
            .await?
            .ok_or_else(|| MessageError::MediaNotFound(media_id.clone()))?;
    }
    Ok(())
}

/// The caller's account `id`, reused for a second on the request path (deleting an account on
/// this node clears the cache).
async fn find_owned_cached(
    state: &AppState,
    owner_id: &UserId,
    id: &ChannelId,
) -> Result<Option<channels::repo::ChannelRow>, sea_orm::DbErr> {
    let key = (owner_id.clone(), id.clone());
    if let Some(row) = state.channel_rows.get(&key) {
        return Ok(Some(row));
    }
    let row = channels::repo::find_owned(&state.db, owner_id, id).await?;
    if let Some(row) = &row {
        state.channel_rows.put(key, row.clone());
    }
    Ok(row)
}
