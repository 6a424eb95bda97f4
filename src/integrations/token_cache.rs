//! Recently verified integration tokens (a second's trust saves two reads per alert).
use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use super::{repo::IntegrationRow, tokens::Claims};
use crate::error::ApiError;

/// A verified integration token and the integration it belongs to.
#[derive(Debug, Clone)]
pub struct TokenCaller {
    /// Its claims.
    pub claims: Claims,
    /// Its integration (never revoked here).
    pub integration: IntegrationRow,
}

impl TokenCaller {
    /// 403 unless the token carries `scope`.
    pub fn require(&self, scope: &str) -> Result<(), ApiError> {
        if self.claims.has_scope(scope) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(
                "insufficient-scope",
                format!("this token lacks the `{scope}` scope"),
            ))
        }
    }
}

/// How long a verified token of an active integration is trusted without reading the database.
/// Safe for alerts: the quota UPDATE re-checks that the integration is still active, so a pause
/// or revocation elsewhere is refused at once; it only saves the two reads per request.
const CACHE_TTL: Duration = Duration::from_secs(1);
/// Entries kept at most (the cache is cleared when full).
const CACHE_MAX: usize = 10_000;

/// Recently verified tokens of active integrations, by the hash of their `jti`.
#[derive(Debug, Default)]
pub struct TokenCache {
    entries: Mutex<HashMap<String, (Instant, TokenCaller)>>,
}

impl TokenCache {
    pub(super) fn get(&self, id_hash: &str) -> Option<TokenCaller> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(id_hash)
            .filter(|(at, _)| at.elapsed() < CACHE_TTL)
            .map(|(_, c)| c.clone())
    }

    pub(super) fn put(&self, id_hash: String, caller: &TokenCaller) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= CACHE_MAX {
            entries.clear();
        }
        entries.insert(id_hash, (Instant::now(), caller.clone()));
    }

    /// Forgets everything (after a revocation or status change made here).
    pub fn clear(&self) {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}
