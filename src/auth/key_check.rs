//! What the API-key cache keeps per key. Its own file: `state` holds the cache, and the
//! extractor, which fills it, imports `state`.
use super::Role;
use crate::domain::UserId;

/// What an API key check found: the owner, role, key id, scopes and expiry.
#[derive(Debug, Clone)]
pub struct KeyCheck {
    /// The key's owner.
    pub user_id: UserId,
    /// The owner's role.
    pub role: Role,
    /// The key's id.
    pub key_id: String,
    /// What the key may do.
    pub scopes: Scopes,
    /// When the key expires, if ever.
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// The scopes of an API key, stored space-separated in `api_keys.scopes`.
///
/// - `read`: `GET` on `/api/v1`; `write`: everything else there that the owner's role allows.
/// - `events:write`: `POST /events` and `/events/batch`; `events:read`: `GET /events`. Apart, so
///   that the key configured in every service that sends events can do nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Scopes(u8);

impl Scopes {
    /// `read`.
    pub const READ: Self = Self(1);
    /// `write`.
    pub const WRITE: Self = Self(2);
    /// `events:write`.
    pub const EVENTS_WRITE: Self = Self(4);
    /// `events:read`.
    pub const EVENTS_READ: Self = Self(8);
    /// Every scope, by name, in the order they are stored.
    pub const ALL: [(&'static str, Self); 4] = [
        ("read", Self::READ),
        ("write", Self::WRITE),
        ("events:write", Self::EVENTS_WRITE),
        ("events:read", Self::EVENTS_READ),
    ];

    /// The scopes named in `list` (space-separated; unknown names are ignored).
    pub fn parse(list: &str) -> Self {
        list.split_whitespace()
            .filter_map(Self::named)
            .fold(Self::default(), |a, b| Self(a.0 | b.0))
    }

    /// The scope called `name`.
    pub fn named(name: &str) -> Option<Self> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
    }

    /// The names of these scopes, space-separated (as stored).
    pub fn name(self) -> String {
        Self::ALL
            .iter()
            .filter(|(_, s)| self.contains(*s))
            .map(|(n, _)| *n)
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Whether every scope of `other` is here.
    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
}

#[cfg(test)]
mod tests {
    use super::Scopes;

    #[test]
    fn scopes_parse_from_their_stored_form() {
        let s = Scopes::parse("read events:write bogus");
        assert!(s.contains(Scopes::READ));
        assert!(s.contains(Scopes::EVENTS_WRITE));
        assert!(!s.contains(Scopes::WRITE));
        assert!(!s.contains(Scopes::EVENTS_READ));
        assert_eq!(Scopes::parse(""), Scopes::default());
        assert_eq!(s.name(), "read events:write");
    }
}
