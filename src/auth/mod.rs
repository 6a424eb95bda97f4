//! Who is calling and what they may do: API keys, Keycloak sessions and bearer tokens, the local
//! admin's password, roles, CSRF, and the audit log.
pub mod audit;
pub mod audit_writer;
mod error;
pub mod extractor;
pub mod key_check;
pub use key_check::Scopes;
pub mod lockout;
pub mod oidc;
pub mod repo;
pub mod routes;
pub mod service;
pub mod session;

pub use error::AuthError;
pub use extractor::{Caller, Via, authenticate, bearer_token};

/// Role names as stored and as they appear in Keycloak tokens.
pub use crate::domain::ROLES;

/// What a user may do. Ordered: a user with several roles gets the strongest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Own data, read only.
    Viewer,
    /// Own data; can send and change.
    Operator,
    /// Everything, every owner's data, users and the audit log.
    Admin,
}

impl Role {
    /// From a role name (`admin`, `operator`, `viewer`); other names are not ours.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "admin" => Some(Self::Admin),
            "operator" => Some(Self::Operator),
            "viewer" => Some(Self::Viewer),
            _ => None,
        }
    }

    /// A stored role; a name this server does not know (a row edited by hand) gets the weakest
    /// role rather than an error on every request.
    pub fn stored(s: &str) -> Self {
        Self::parse(s).unwrap_or_else(|| {
            tracing::warn!(role = s, "unknown stored role; treated as viewer");
            Self::Viewer
        })
    }

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Operator => "operator",
            Self::Viewer => "viewer",
        }
    }
}
