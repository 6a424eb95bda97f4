//! Integration tokens: HS256 JWTs signed with a key derived from the server's secret key.
//!
//! The JWT says which integration (`sub`), what it may do (`scope`) and until when (`exp`); the
//! database keeps only SHA-256 of its `jti`, so revocation is a row update and a leaked database
//! yields no usable token.
use std::collections::HashSet;

use chrono::{DateTime, Duration, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::crypto;
use crate::domain::IntegrationId;

/// `iss` of every token this server signs.
pub const ISSUER: &str = "pregonero";

/// Send alerts through the integration.
pub const ALERT_SEND: &str = "alert:send";
/// Read the integration (Pingui's `GET /api/integrations/{chatId}`).
pub const INTEGRATION_READ: &str = "integration:read";
/// Revoke the integration (Pingui's `POST /api/revokeIntegration`).
pub const INTEGRATION_REVOKE: &str = "integration:revoke";
/// Finish a chat-started integration (the setup token the bot gives on `/start`).
pub const INTEGRATION_CREATE: &str = "integration:create";

/// Scopes an integration token may carry.
pub const INTEGRATION_SCOPES: [&str; 3] = [ALERT_SEND, INTEGRATION_READ, INTEGRATION_REVOKE];

/// `typ` of a long-lived integration token.
pub const KIND_ACCESS: &str = "access";
/// `typ` of a one-time setup token.
pub const KIND_SETUP: &str = "setup";

/// The claims of an integration token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// Always [`ISSUER`].
    pub iss: String,
    /// Integration id.
    pub sub: IntegrationId,
    /// Random token id; its hash is the `integration_tokens` row id.
    pub jti: String,
    /// [`KIND_ACCESS`] or [`KIND_SETUP`].
    pub typ: String,
    /// Space-separated scopes.
    pub scope: String,
    /// Issued at (Unix seconds).
    pub iat: i64,
    /// Expires at (Unix seconds); absent for tokens that never expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
}

impl Claims {
    /// New claims for `integration_id` with a fresh `jti`.
    pub fn new(
        integration_id: &IntegrationId,
        kind: &str,
        scopes: &str,
        now: DateTime<Utc>,
        ttl: Option<Duration>,
    ) -> Self {
        Self {
            iss: ISSUER.into(),
            sub: integration_id.clone(),
            jti: crypto::random_urlsafe(18),
            typ: kind.into(),
            scope: scopes.into(),
            iat: now.timestamp(),
            exp: ttl.map(|ttl| (now + ttl).timestamp()),
        }
    }

    /// Whether the token carries `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scope.split_whitespace().any(|s| s == scope)
    }

    /// When it expires.
    pub fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.exp.and_then(|e| DateTime::from_timestamp(e, 0))
    }

    /// The stored id: SHA-256 of the `jti`.
    pub fn id_hash(&self) -> String {
        crypto::hash_token(&self.jti)
    }
}

/// Signs and verifies integration tokens.
#[derive(Clone)]
pub struct TokenSigner {
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// Keys derived from previous secret keys: tokens they signed stay valid after a rotation.
    previous: Vec<DecodingKey>,
    validation: Validation,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSigner")
    }
}

impl TokenSigner {
    /// A signer with a 32-byte HMAC key.
    pub fn new(key: &[u8; 32]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        // Expiry is checked against the server's clock by the caller, not the system time.
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.required_spec_claims = HashSet::from(["iss".to_owned(), "sub".to_owned()]);
        Self {
            encoding: EncodingKey::from_secret(key),
            decoding: DecodingKey::from_secret(key),
            previous: Vec::new(),
            validation,
        }
    }

    /// Also accepts tokens signed with these (previous) keys.
    pub fn accepting(mut self, keys: &[[u8; 32]]) -> Self {
        self.previous = keys.iter().map(|k| DecodingKey::from_secret(k)).collect();
        self
    }

    /// The compact JWT for `claims`.
    pub fn sign(&self, claims: &Claims) -> anyhow::Result<String> {
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            claims,
            &self.encoding,
        )?)
    }

    /// The claims of a token this server signed; `None` for anything else (bad signature, other
    /// algorithm, malformed).
    pub fn verify(&self, token: &str) -> Option<Claims> {
        std::iter::once(&self.decoding)
            .chain(&self.previous)
            .find_map(|key| jsonwebtoken::decode::<Claims>(token, key, &self.validation).ok())
            .map(|data| data.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejections() {
        let signer = TokenSigner::new(&[7; 32]);
        let claims = Claims::new(&"int-1".into(), KIND_ACCESS, "alert:send", Utc::now(), None);
        let token = signer.sign(&claims).expect("sign");
        let back = signer.verify(&token).expect("verify");
        assert_eq!(back.sub, "int-1");
        assert!(back.has_scope(ALERT_SEND));
        assert!(!back.has_scope(INTEGRATION_READ));
        assert!(back.exp.is_none());

        let other = TokenSigner::new(&[8; 32]);
        assert!(
            other.verify(&token).is_none(),
            "another key must not verify"
        );
        let mut tampered = token.clone();
        tampered.insert(token.find('.').expect("dot") + 2, 'x');
        assert!(signer.verify(&tampered).is_none());
        // alg=none is refused.
        let none = format!(
            "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.",
            token.split('.').nth(1).expect("payload")
        );
        assert!(signer.verify(&none).is_none());
    }
}
