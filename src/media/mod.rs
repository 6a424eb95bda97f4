//! Media: uploads checked against the channel they are meant for, stored in a [`MediaStore`]
//! (a local folder by default, or S3), metadata in `media`, and links for the dashboard and for
//! providers that fetch by URL (presigned S3 URLs, or links to this server signed with HMAC).
mod error;
mod local;
pub mod repo;
mod routes;
mod s3;
pub mod service;
pub mod store;

use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};

pub use error::MediaError;
pub use local::LocalMediaStore;
pub use routes::{configure, configure_public};
pub use s3::S3MediaStore;
pub use store::{ByteStream, GetError, MediaStore, PutError, Stored};

use crate::{
    channels::{ChannelError, MediaPayload},
    config::MediaDelivery,
    crypto::{Cipher, constant_time_eq, hmac_sha256},
    domain::{MediaId, UserId},
    outbox::hooks::Attachments,
    state::AppState,
};

/// Whether the first bytes of a file agree with its declared type, for the types whose
/// signature is well known (others pass).
pub fn content_matches(content_type: &str, head: &[u8]) -> bool {
    match content_type {
        "image/jpeg" => head.starts_with(&[0xFF, 0xD8, 0xFF]),
        "image/png" => head.starts_with(b"\x89PNG\r\n\x1a\n"),
        "image/gif" => head.starts_with(b"GIF87a") || head.starts_with(b"GIF89a"),
        "image/webp" => head.len() >= 12 && &head[..4] == b"RIFF" && &head[8..12] == b"WEBP",
        "application/pdf" => head.starts_with(b"%PDF-"),
        "video/mp4" | "video/3gpp" => head.len() >= 8 && &head[4..8] == b"ftyp",
        _ => true,
    }
}

/// Bytes needed by [`content_matches`].
pub const SNIFF_BYTES: usize = 12;

/// `owner_id`'s media `id` (what a message, a template or a campaign may attach).
pub async fn find_owned(
    db: &impl sea_orm::ConnectionTrait,
    owner_id: &UserId,
    id: &MediaId,
) -> Result<Option<repo::MediaRow>, sea_orm::DbErr> {
    Ok(repo::find(db, id)
        .await?
        .filter(|m| &m.owner_id == owner_id))
}

/// The media library as the delivery core sees it: rows, files and links.
#[derive(Clone)]
pub struct Library {
    /// Where `media` rows live.
    pub db: sea_orm::DatabaseConnection,
    /// Where the files live.
    pub store: std::sync::Arc<MediaStore>,
    /// Signs links to this server.
    pub cipher: Cipher,
    /// `media.link_ttl_secs`, `whatsapp.send_media_as`, the public URL.
    pub settings: std::sync::Arc<crate::config::Settings>,
}

impl Library {
    /// The library of `state`.
    pub fn of(state: &AppState) -> Self {
        Self {
            db: state.db.clone(),
            store: state.media.clone(),
            cipher: state.cipher.clone(),
            settings: state.settings.clone(),
        }
    }

    /// Loads a media row and its bytes for delivery. A file that is gone fails the message; a
    /// store that does not answer is worth retrying.
    pub async fn load(&self, id: &MediaId) -> Result<(repo::MediaRow, Bytes), ChannelError> {
        let unavailable = |detail: String| ChannelError::Transient {
            code: "media-store-unavailable",
            detail,
        };
        let gone = |detail: String| ChannelError::Permanent {
            code: "media-unavailable",
            detail,
        };
        let meta = repo::find(&self.db, id)
            .await
            .map_err(|e| unavailable(e.to_string()))?
            .ok_or_else(|| gone(format!("media {id} was deleted")))?;
        match self.store.get(&meta.storage_key).await {
            Ok(bytes) => Ok((meta, bytes)),
            Err(GetError::NotFound(_)) => Err(gone(format!("the file of media {id} is missing"))),
            Err(GetError::Store(e)) => Err(unavailable(format!("{e:#}"))),
        }
    }

    /// A URL for `meta` valid for `media.link_ttl_secs`: presigned by S3, or a link to this
    /// server's `/media/{id}/content` (at `base`) signed with HMAC.
    pub async fn link(
        &self,
        meta: &repo::MediaRow,
        base: &str,
    ) -> anyhow::Result<(String, DateTime<Utc>)> {
        let ttl = Duration::from_secs(self.settings.media.link_ttl_secs);
        let expires = Utc::now() + chrono::Duration::from_std(ttl)?;
        if let Some(url) = self
            .store
            .presigned_get(&meta.storage_key, ttl, &meta.content_type)
            .await?
        {
            return Ok((url, expires));
        }
        let expires_ts = expires.timestamp();
        let signature = sign_link(&self.cipher, &meta.id, expires_ts);
        Ok((
            format!(
                "{}/media/{}/content?expires={expires_ts}&signature={signature}",
                base.trim_end_matches('/'),
                meta.id
            ),
            expires,
        ))
    }
}

impl Attachments for Library {
    fn payload<'a>(
        &'a self,
        media_id: &'a MediaId,
    ) -> futures::future::BoxFuture<'a, Result<MediaPayload, ChannelError>> {
        Box::pin(async move {
            let (meta, bytes) = self.load(media_id).await?;
            // Only WhatsApp reads the link; Telegram always gets the bytes.
            let link = if self.settings.whatsapp.send_media_as == MediaDelivery::Link {
                // Settings validation makes sure `auth.public_url` is set for the local store.
                let (url, _) = self
                    .link(&meta, &self.settings.public_base_url())
                    .await
                    .map_err(|e| ChannelError::Transient {
                        code: "media-store-unavailable",
                        detail: format!("{e:#}"),
                    })?;
                Some(url)
            } else {
                None
            };
            Ok(MediaPayload {
                key: meta.id.into_string(),
                bytes,
                content_type: meta.content_type,
                filename: meta.filename.unwrap_or_else(|| "file".into()),
                link,
            })
        })
    }
}

fn sign_link(cipher: &Cipher, id: &MediaId, expires: i64) -> String {
    let key = cipher.derive("media-links/v1");
    hex::encode(hmac_sha256(&key, format!("{id}\n{expires}").as_bytes()))
}

/// Whether a signed link is authentic and not expired.
pub fn verify_link(
    cipher: &Cipher,
    id: &MediaId,
    expires: i64,
    signature: &str,
    now: DateTime<Utc>,
) -> bool {
    expires >= now.timestamp()
        && constant_time_eq(
            sign_link(cipher, id, expires).as_bytes(),
            signature.as_bytes(),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffing_catches_a_mislabelled_file() {
        assert!(content_matches("image/png", b"\x89PNG\r\n\x1a\n...."));
        assert!(!content_matches("image/png", b"%PDF-1.7"));
        assert!(content_matches("application/pdf", b"%PDF-1.7"));
        assert!(!content_matches("image/jpeg", b"GIF89a"));
        assert!(content_matches("text/csv", b"a,b"));
    }

    #[test]
    fn signed_links_expire_and_bind_the_id() {
        let cipher = Cipher::new(&[7; 32]).expect("32-byte key");
        let now = Utc::now();
        let exp = now.timestamp() + 60;
        let sig = sign_link(&cipher, &"m1".into(), exp);
        assert!(verify_link(&cipher, &"m1".into(), exp, &sig, now));
        assert!(!verify_link(&cipher, &"m2".into(), exp, &sig, now));
        assert!(!verify_link(&cipher, &"m1".into(), exp + 1, &sig, now));
        assert!(!verify_link(
            &cipher,
            &"m1".into(),
            exp,
            &sig,
            now + chrono::Duration::seconds(61)
        ));
    }
}
