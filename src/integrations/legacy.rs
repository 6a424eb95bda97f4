//! Integrations imported from Pingui, and the tokens their clients already hold.
//!
//! `pregonero import pingui` reads Pingui's SQLite database (its `Integrations` table: `id,
//! chatId, tokenHash, scope, rateLimit, status`) and creates one of our integrations per row on
//! a Telegram bot of ours, keeping its chat and status. Pingui signed its clients' tokens as HS256
//! JWTs with `JWT_SECRET`; the import keeps that secret, encrypted with the server's key, beside
//! each imported integration, so an old token keeps working here:
//!
//! - its signature must check with the imported secret (any other token is `401 invalid-token`);
//! - it must belong to an imported integration: its SHA-256 is the `tokenHash` Pingui kept, or,
//!   when Pingui hashed otherwise, its claims name the integration (`integrationId`,
//!   `integration_id`, `id` or `sub`) or, naming none, its chat (`chatId`) holds exactly one;
//!   a `chatId` claim must match the integration's chat either way;
//! - its `exp`, when it has one, is checked against the server's clock;
//! - the integration must not be revoked here: revoking it (our API, the dashboard, or Pingui's
//!   own `POST /api/revokeIntegration`) ends the old token like ours.
//!
//! What such a token may do is the imported integration's scopes (Pingui's `scope` mapped to
//! ours, see [`map_scope`]), never more than our own tokens could.
use anyhow::{Context, bail};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait,
    QueryFilter, QuerySelect, Set, TransactionTrait,
};
use serde_json::Value;

use super::{
    Status,
    repo::{self, IntegrationRow, NewIntegration},
    token_cache::TokenCaller,
    tokens::{self, Claims},
};
use crate::{
    crypto::{self, Cipher},
    domain::{ChannelId, UserId},
    entities::legacy_tokens,
    error::ApiError,
    state::AppState,
};

/// `source` of rows imported from Pingui.
pub const PINGUI: &str = "pingui";
/// `iss` given to the claims of an accepted Pingui token (they had none of ours).
pub const PINGUI_ISSUER: &str = "pingui";
/// Purpose of the key the secrets' fingerprints are keyed with.
const FINGERPRINT_PURPOSE: &str = "legacy-secret/v1";
/// Claims that may name a Pingui integration, in the order they are tried.
const ID_CLAIMS: [&str; 4] = ["integrationId", "integration_id", "id", "sub"];
/// Claims that may name a Pingui chat.
const CHAT_CLAIMS: [&str; 2] = ["chatId", "chat_id"];
/// Rows whose secret is tried for one token, at most (claims pick the rows before any check).
const MAX_CANDIDATES: u64 = 8;

/// Our scopes for a Pingui `scope` value: its words (split on spaces, commas, colons) that name
/// something ours do — `alert`/`send`/`write` → `alert:send`, `read` → `integration:read`,
/// `revoke` → `integration:revoke`, `admin`/`all`/`*` → all three. A value naming none of them
/// (Pingui gave every token every route) maps to all three.
pub fn map_scope(scope: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let mut add = |s: &'static str| {
        if !out.contains(&s) {
            out.push(s);
        }
    };
    for word in scope
        .split(|c: char| c.is_whitespace() || c == ',' || c == ':' || c == ';')
        .map(str::to_ascii_lowercase)
    {
        match word.as_str() {
            "alert" | "alerts" | "send" | "write" => add(tokens::ALERT_SEND),
            "read" | "integration" | "integrations" => add(tokens::INTEGRATION_READ),
            "revoke" => add(tokens::INTEGRATION_REVOKE),
            "admin" | "all" | "*" => tokens::INTEGRATION_SCOPES.into_iter().for_each(&mut add),
            _ => {}
        }
    }
    if out.is_empty() {
        tokens::INTEGRATION_SCOPES.join(" ")
    } else {
        // Stable order, as our own tokens list them.
        tokens::INTEGRATION_SCOPES
            .into_iter()
            .filter(|s| out.contains(s))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// One row of Pingui's `Integrations` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinguiRow {
    /// Its id there.
    pub id: String,
    /// Its Telegram chat.
    pub chat_id: String,
    /// The token hash it kept.
    pub token_hash: Option<String>,
    /// Its scope.
    pub scope: String,
    /// `active`, `pending` or `revoked`.
    pub status: String,
}

/// Reads Pingui's integrations from its SQLite file (opened read-only; Pingui may keep running).
pub fn read_pingui(path: &std::path::Path) -> anyhow::Result<Vec<PinguiRow>> {
    use rusqlite::{OpenFlags, types::Value as Sql};
    let conn = rusqlite::Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("cannot open {} as a SQLite database", path.display()))?;
    let text = |v: Sql| match v {
        Sql::Null => None,
        Sql::Integer(i) => Some(i.to_string()),
        Sql::Real(f) => Some(f.to_string()),
        Sql::Text(t) => Some(t),
        Sql::Blob(b) => Some(String::from_utf8_lossy(&b).into_owned()),
    };
    let mut stmt = conn
        .prepare("SELECT id, chatId, tokenHash, scope, status FROM Integrations ORDER BY id")
        .context("no Pingui `Integrations` table (id, chatId, tokenHash, scope, status) in it")?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, Sql>(0)?,
                r.get::<_, Sql>(1)?,
                r.get::<_, Sql>(2)?,
                r.get::<_, Sql>(3)?,
                r.get::<_, Sql>(4)?,
            ))
        })?
        .map(|row| {
            let (id, chat, hash, scope, status) = row?;
            Ok(PinguiRow {
                id: text(id).unwrap_or_default(),
                chat_id: text(chat).unwrap_or_default(),
                token_hash: text(hash)
                    .map(|h| h.trim().to_ascii_lowercase())
                    .filter(|h| !h.is_empty()),
                scope: text(scope).unwrap_or_default(),
                status: text(status).unwrap_or_else(|| "pending".into()),
            })
        })
        .collect::<Result<Vec<_>, rusqlite::Error>>()?;
    Ok(rows)
}

/// What to import, and where to.
#[derive(Debug)]
pub struct ImportPingui {
    /// Pingui's `JWT_SECRET`.
    pub jwt_secret: String,
    /// Who owns the imported integrations.
    pub owner_id: UserId,
    /// The Telegram bot (our channel account) that delivers their alerts.
    pub channel_id: ChannelId,
    /// Alerts per day of each (Pingui's was 10).
    pub daily_quota: i32,
}

/// What an import did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ImportReport {
    /// Integrations created, by status: active, pending, revoked.
    pub imported: [u64; 3],
    /// Rows imported by an earlier run (same Pingui installation, same id): left as they are.
    pub already: u64,
    /// Rows refused, with why (Pingui's id first).
    pub refused: Vec<(String, String)>,
}

/// The fingerprint of a Pingui installation's secret.
fn fingerprint(cipher: &Cipher, secret: &str) -> String {
    hex::encode(crypto::hmac_sha256(
        &cipher.derive(FINGERPRINT_PURPOSE),
        secret.as_bytes(),
    ))
}

/// Imports `rows` as integrations of `to.owner_id` on `to.channel_id`: each row in its own
/// transaction (a refused row leaves nothing behind and stops nothing else); a row imported
/// before is left alone, so the import can run again after it was interrupted.
pub async fn import_pingui(
    db: &DatabaseConnection,
    cipher: &Cipher,
    rows: Vec<PinguiRow>,
    to: &ImportPingui,
    now: DateTime<Utc>,
) -> anyhow::Result<ImportReport> {
    if to.jwt_secret.is_empty() {
        bail!("the Pingui JWT secret is empty");
    }
    let print = fingerprint(cipher, &to.jwt_secret);
    let mut report = ImportReport::default();
    for row in rows {
        let status = match row.status.to_ascii_lowercase().as_str() {
            "active" => Status::Active,
            "pending" => Status::Pending,
            "revoked" => Status::Revoked,
            other => {
                report
                    .refused
                    .push((row.id, format!("unknown status `{other}`")));
                continue;
            }
        };
        if row.id.is_empty() || row.chat_id.parse::<i64>().is_err() {
            report.refused.push((
                row.id.clone(),
                format!("chatId `{}` is not a Telegram chat id", row.chat_id),
            ));
            continue;
        }
        let known = legacy_tokens::Entity::find()
            .filter(legacy_tokens::Column::Source.eq(PINGUI))
            .filter(legacy_tokens::Column::SecretFingerprint.eq(&print))
            .filter(legacy_tokens::Column::LegacyId.eq(&row.id))
            .one(db)
            .await?;
        if known.is_some() {
            report.already += 1;
            continue;
        }
        let secret = cipher.encrypt(&to.jwt_secret)?;
        let txn = db.begin().await?;
        let created = repo::insert(
            &txn,
            NewIntegration {
                owner_id: to.owner_id.clone(),
                channel_id: to.channel_id.clone(),
                name: format!("Pingui #{}", row.id),
                chat_id: Some(row.chat_id.clone()),
                scopes: map_scope(&row.scope),
                daily_quota: to.daily_quota,
                link: None,
            },
            now,
        )
        .await?;
        if status != Status::Pending {
            repo::transition(
                &txn,
                &created.id,
                &[Status::Pending],
                status,
                Some("imported from Pingui"),
                now,
            )
            .await?;
        }
        legacy_tokens::ActiveModel {
            integration_id: Set(created.id.clone()),
            source: Set(PINGUI.into()),
            legacy_id: Set(row.id.clone()),
            chat_id: Set(Some(row.chat_id.clone())),
            token_hash: Set(row.token_hash.clone()),
            secret: Set(secret),
            secret_fingerprint: Set(print.clone()),
            imported_at: Set(now),
        }
        .insert(&txn)
        .await?;
        txn.commit().await?;
        report.imported[match status {
            Status::Active => 0,
            Status::Revoked => 2,
            _ => 1,
        }] += 1;
    }
    Ok(report)
}

/// The claims of a JWT, read without checking it (to pick the rows whose secret checks it).
fn unverified_claims(token: &str) -> Option<serde_json::Map<String, Value>> {
    let mut parts = token.split('.');
    let (_, payload, _, None) = (parts.next()?, parts.next()?, parts.next()?, parts.next()) else {
        return None;
    };
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

/// A claim as text (Pingui's ids and chats are numbers).
fn claim_text(claims: &serde_json::Map<String, Value>, names: &[&str]) -> Option<String> {
    names.iter().find_map(|n| match claims.get(*n)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    })
}

/// The imported rows a token may belong to: by its hash first, else by what its claims name.
async fn candidates(
    db: &impl ConnectionTrait,
    token: &str,
    claims: &serde_json::Map<String, Value>,
) -> Result<Vec<legacy_tokens::Model>, DbErr> {
    let by_hash = legacy_tokens::Entity::find()
        .filter(legacy_tokens::Column::TokenHash.eq(crypto::hash_token(token)))
        .limit(MAX_CANDIDATES)
        .all(db)
        .await?;
    if !by_hash.is_empty() {
        return Ok(by_hash);
    }
    let chat = claim_text(claims, &CHAT_CLAIMS);
    let rows = match (claim_text(claims, &ID_CLAIMS), &chat) {
        (Some(id), _) => {
            legacy_tokens::Entity::find()
                .filter(legacy_tokens::Column::LegacyId.eq(id))
                .limit(MAX_CANDIDATES)
                .all(db)
                .await?
        }
        (None, Some(chat)) => {
            let rows = legacy_tokens::Entity::find()
                .filter(legacy_tokens::Column::ChatId.eq(chat.as_str()))
                .limit(MAX_CANDIDATES)
                .all(db)
                .await?;
            // A chat with several imported integrations names none of them.
            if rows.len() == 1 { rows } else { Vec::new() }
        }
        (None, None) => Vec::new(),
    };
    Ok(rows
        .into_iter()
        .filter(|r| chat.is_none() || r.chat_id == chat)
        .collect())
}

/// Checks a token that is not ours as a Pingui one: `Ok(None)` when it is not one (the caller
/// answers `invalid-token`); the integration it acts for otherwise.
pub async fn authenticate(state: &AppState, token: &str) -> Result<Option<TokenCaller>, ApiError> {
    let Ok(header) = jsonwebtoken::decode_header(token) else {
        return Ok(None);
    };
    if header.alg != Algorithm::HS256 {
        return Ok(None);
    }
    let Some(claims) = unverified_claims(token) else {
        return Ok(None);
    };
    let mut validation = Validation::new(Algorithm::HS256);
    validation.validate_exp = false; // the server's clock decides, below
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    for row in candidates(&state.db, token, &claims).await? {
        let Ok(secret) = state.cipher.decrypt(&row.secret) else {
            tracing::warn!(integration_id = %row.integration_id, "an imported Pingui secret does not decrypt with the server's keys");
            continue;
        };
        let key = DecodingKey::from_secret(secret.as_bytes());
        if jsonwebtoken::decode::<Value>(token, &key, &validation).is_err() {
            continue;
        }
        let now = state.clock.now();
        let exp = claims.get("exp").and_then(Value::as_i64);
        if exp.is_some_and(|e| e <= now.timestamp()) {
            return Err(ApiError::Unauthorized(
                "token-expired",
                "this token has expired; issue a new one".into(),
            ));
        }
        let integration: IntegrationRow = repo::find(&state.db, &row.integration_id)
            .await?
            .filter(|i| i.status != Status::Revoked.as_str())
            .ok_or_else(|| {
                ApiError::Unauthorized(
                    "token-revoked",
                    "this token or its integration was revoked".into(),
                )
            })?;
        let claims = Claims {
            iss: PINGUI_ISSUER.into(),
            sub: integration.id.clone(),
            jti: crypto::hash_token(token),
            typ: tokens::KIND_ACCESS.into(),
            scope: integration.scopes.clone(),
            iat: claims.get("iat").and_then(Value::as_i64).unwrap_or(0),
            exp,
        };
        return Ok(Some(TokenCaller {
            claims,
            integration,
        }));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pingui_scopes_map_to_ours_and_never_beyond() {
        assert_eq!(map_scope("alert:send"), "alert:send");
        assert_eq!(map_scope("send,read"), "alert:send integration:read");
        assert_eq!(
            map_scope("admin"),
            "alert:send integration:read integration:revoke"
        );
        assert_eq!(
            map_scope(""),
            "alert:send integration:read integration:revoke"
        );
        assert_eq!(
            map_scope("telegram"),
            "alert:send integration:read integration:revoke"
        );
    }

    #[test]
    fn claims_are_read_only_from_three_part_tokens() {
        let payload = URL_SAFE_NO_PAD.encode(r#"{"chatId": -100123, "id": 7}"#);
        let claims = unverified_claims(&format!("e30.{payload}.sig")).expect("claims");
        assert_eq!(
            claim_text(&claims, &CHAT_CLAIMS).as_deref(),
            Some("-100123")
        );
        assert_eq!(claim_text(&claims, &ID_CLAIMS).as_deref(), Some("7"));
        assert!(unverified_claims("a.b").is_none());
        assert!(unverified_claims(&format!("e30.{payload}.sig.more")).is_none());
    }
}
