//! What the API-key cache keeps per key. Its own file: `state` holds the cache, and the
//! extractor, which fills it, imports `state`.
use super::Role;
use crate::domain::UserId;

/// What an API key check found: the owner, role, key id, write scope and expiry.
#[derive(Debug, Clone)]
pub struct KeyCheck {
    /// The key's owner.
    pub user_id: UserId,
    /// The owner's role.
    pub role: Role,
    /// The key's id.
    pub key_id: String,
    /// The key has the `write` scope.
    pub write: bool,
    /// When the key expires, if ever.
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
}
