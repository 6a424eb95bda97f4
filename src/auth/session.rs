//! Server-side browser sessions: the cookie holds a random value, the database its SHA-256, the
//! CSRF token, and (for Keycloak logins) the encrypted refresh and ID tokens.
use actix_web::cookie::{Cookie, SameSite, time::Duration as CookieDuration};
use chrono::{DateTime, Duration, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter, Set, sea_query::Expr,
};
use secrecy::ExposeSecret;

use super::{
    Caller, Role, Via,
    extractor::{no_role, role_of},
    oidc::{OidcError, Tokens},
    repo,
};
use crate::domain::UserId;
use crate::{
    crypto,
    entities::{sessions, users},
    error::ApiError,
    state::AppState,
};

/// Name of the session cookie.
pub const COOKIE: &str = "pregonero_session";
/// Tokens are refreshed when they expire within this time.
const REFRESH_MARGIN: Duration = Duration::seconds(60);
/// `last_seen_at` and the sliding expiry are written at most this often.
const TOUCH_EVERY: Duration = Duration::seconds(60);

/// A new session for `user_id`; returns the cookie value (shown to the browser only) and the
/// CSRF token.
pub async fn create(
    state: &AppState,
    user_id: &UserId,
    kind: &str,
    tokens: Option<&Tokens>,
) -> Result<(String, String), ApiError> {
    let value = crypto::random_urlsafe(32);
    let csrf = crypto::random_urlsafe(24);
    let now = state.clock.now();
    let encrypt = |s: &str| state.cipher.encrypt(s).map_err(ApiError::Unexpected);
    sessions::ActiveModel {
        id: Set(crypto::hash_token(&value)),
        user_id: Set(user_id.to_owned()),
        kind: Set(kind.to_owned()),
        csrf_token: Set(csrf.clone()),
        refresh_token: Set(tokens
            .and_then(|t| t.refresh_token.as_ref())
            .map(|t| encrypt(t.expose_secret()))
            .transpose()?),
        id_token: Set(tokens
            .and_then(|t| t.id_token.as_deref())
            .map(encrypt)
            .transpose()?),
        token_expires_at: Set(tokens.and_then(|t| t.expires_at)),
        expires_at: Set(now + ttl(state)),
        created_at: Set(now),
        last_seen_at: Set(now),
    }
    .insert(&state.db)
    .await?;
    Ok((value, csrf))
}

fn ttl(state: &AppState) -> Duration {
    Duration::seconds(i64::try_from(state.settings.auth.session_ttl_secs).unwrap_or(i64::MAX / 2))
}

fn expired() -> ApiError {
    ApiError::Unauthorized(
        "session-expired",
        "your session has ended; sign in again".into(),
    )
}

/// The session behind a cookie value; refreshes Keycloak tokens that are about to expire.
pub async fn load(state: &AppState, value: &str) -> Result<Caller, ApiError> {
    let id = crypto::hash_token(value);
    let now = state.clock.now();
    let Some(mut row) = sessions::Entity::find_by_id(id.clone())
        .one(&state.db)
        .await?
    else {
        return Err(expired());
    };
    if row.expires_at <= now {
        sessions::Entity::delete_by_id(id).exec(&state.db).await?;
        return Err(expired());
    }
    let Some(mut user) = users::Entity::find_by_id(row.user_id.clone())
        .one(&state.db)
        .await?
    else {
        return Err(expired());
    };
    if row.kind == "oidc"
        && row
            .token_expires_at
            .is_some_and(|exp| exp - REFRESH_MARGIN <= now)
    {
        (row, user) = refresh(state, row, user, now).await?;
    }
    if now - row.last_seen_at > TOUCH_EVERY {
        sessions::Entity::update_many()
            .col_expr(sessions::Column::LastSeenAt, Expr::value(now))
            .col_expr(sessions::Column::ExpiresAt, Expr::value(now + ttl(state)))
            .filter(sessions::Column::Id.eq(row.id.clone()))
            .exec(&state.db)
            .await?;
    }
    Ok(Caller {
        user_id: user.id,
        role: Role::stored(&user.role),
        via: Via::Session {
            csrf: row.csrf_token,
        },
    })
}

/// Uses the refresh token. A refused refresh (session ended at Keycloak) ends ours too; an
/// unreachable provider keeps the session until its tokens have actually expired.
async fn refresh(
    state: &AppState,
    row: sessions::Model,
    user: users::Model,
    now: DateTime<Utc>,
) -> Result<(sessions::Model, users::Model), ApiError> {
    // One refresh at a time in this process: a rotated refresh token is single-use.
    let _guard = state.refresh_lock.lock().await;
    let Some(row) = sessions::Entity::find_by_id(row.id.clone())
        .one(&state.db)
        .await?
    else {
        return Err(expired());
    };
    if row
        .token_expires_at
        .is_none_or(|exp| exp - REFRESH_MARGIN > now)
    {
        return Ok((row, user)); // another request refreshed it meanwhile
    }
    let (Some(oidc), Some(stored)) = (&state.oidc, row.refresh_token.as_deref()) else {
        return end(state, &row.id).await;
    };
    let refresh_token = state.cipher.decrypt(stored).map_err(ApiError::Unexpected)?;
    match oidc.refresh(&refresh_token).await {
        Ok(tokens) => {
            let Some(role) = role_of(state, &tokens.identity) else {
                sessions::Entity::delete_by_id(row.id.clone())
                    .exec(&state.db)
                    .await?;
                return Err(no_role());
            };
            let user =
                repo::upsert_oidc_user(&state.db, &tokens.identity, role, now, false).await?;
            let mut active = row.into_active_model();
            if let Some(t) = &tokens.refresh_token {
                active.refresh_token = Set(Some(
                    state
                        .cipher
                        .encrypt(t.expose_secret())
                        .map_err(ApiError::Unexpected)?,
                ));
            }
            if let Some(t) = &tokens.id_token {
                active.id_token = Set(Some(state.cipher.encrypt(t).map_err(ApiError::Unexpected)?));
            }
            active.token_expires_at = Set(tokens.expires_at);
            let row = active.update(&state.db).await?;
            tracing::info!(user_id = %user.id, "session tokens refreshed");
            Ok((row, user))
        }
        Err(OidcError::Unavailable(e)) if row.token_expires_at.is_some_and(|exp| exp > now) => {
            tracing::warn!(error = %e, "could not refresh session tokens; will retry");
            Ok((row, user))
        }
        Err(e) => {
            tracing::info!(error = %e, "session refresh refused; session ended");
            end(state, &row.id).await
        }
    }
}

async fn end<T>(state: &AppState, id: &str) -> Result<T, ApiError> {
    sessions::Entity::delete_by_id(id.to_owned())
        .exec(&state.db)
        .await?;
    Err(expired())
}

/// Deletes the session behind a cookie value; returns its encrypted-then-decrypted ID token
/// (for the provider's logout) if it had one.
pub async fn delete(state: &AppState, value: &str) -> Result<Option<String>, ApiError> {
    let id = crypto::hash_token(value);
    let row = sessions::Entity::find_by_id(id.clone())
        .one(&state.db)
        .await?;
    sessions::Entity::delete_by_id(id).exec(&state.db).await?;
    Ok(row
        .and_then(|r| r.id_token)
        .and_then(|t| state.cipher.decrypt(&t).ok()))
}

/// The session cookie: `HttpOnly`, `SameSite=Lax`, `Secure` when the public URL is HTTPS.
pub fn cookie(state: &AppState, value: String) -> Cookie<'static> {
    let secure = state.settings.public_base_url().starts_with("https://");
    Cookie::build(COOKIE, value)
        .path("/")
        .http_only(true)
        .secure(secure)
        .same_site(SameSite::Lax)
        .max_age(CookieDuration::seconds(
            i64::try_from(state.settings.auth.session_ttl_secs).unwrap_or(i64::MAX / 2),
        ))
        .finish()
}

/// A cookie that removes the session cookie.
pub fn removal(state: &AppState) -> Cookie<'static> {
    let mut c = cookie(state, String::new());
    c.make_removal();
    c
}
