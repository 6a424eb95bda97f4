//! What the sign-in and API key routes do: the OpenID Connect round trip, the local password
//! login with its lockout, and API keys.
use chrono::{DateTime, Duration, Utc};

use super::{
    AuthError, Caller,
    extractor::role_of,
    repo::{self, KeyRow, NewKey, PendingLogin, SCOPES, UserRow},
    session,
};
use crate::domain::UserId;
use crate::page::{Page, PageRequest};
use crate::{crypto, error::FieldError, state::AppState};

/// A pending login older than this is refused at the callback.
const LOGIN_TTL: Duration = Duration::minutes(10);

/// Where to send the browser to sign in at the provider (authorization code with PKCE). Only
/// local paths are kept as `return_to`: an absolute or protocol-relative URL would make the
/// callback an open redirect.
pub async fn start_oidc_login(
    state: &AppState,
    return_to: Option<&str>,
) -> Result<String, AuthError> {
    let oidc = state.oidc.as_ref().ok_or(AuthError::OidcDisabled)?;
    let return_to = return_to
        .filter(|p| p.starts_with('/') && !p.starts_with("//") && !p.contains('\\'))
        .unwrap_or("/")
        .to_owned();
    let start = oidc.start_login().await?;
    let now = state.clock.now();
    let login = PendingLogin {
        id: crypto::hash_token(&start.state),
        pkce_verifier: state.cipher.encrypt(&start.pkce_verifier)?,
        nonce: start.nonce,
        return_to,
        created_at: now,
    };
    // Logins abandoned at the provider are cleaned up here rather than by a job.
    repo::insert_login(&state.db, login, now - LOGIN_TTL).await?;
    Ok(start.url)
}

/// A signed-in browser: who, its session cookie value and CSRF token, and where to go.
pub struct SignedIn {
    /// The user.
    pub user: UserRow,
    /// The session cookie's value.
    pub session: String,
    /// The token session requests must send.
    pub csrf: String,
    /// Local path to go to.
    pub return_to: String,
}

/// The provider sent the browser back: take the pending login once, exchange the code, map the
/// identity to a user with a role, open a session.
pub async fn finish_oidc_login(
    state: &AppState,
    code: &str,
    login_state: &str,
) -> Result<SignedIn, AuthError> {
    let oidc = state.oidc.as_ref().ok_or(AuthError::OidcDisabled)?;
    let pending = repo::take_login(&state.db, &crypto::hash_token(login_state))
        .await?
        .filter(|p| state.clock.now() - p.created_at <= LOGIN_TTL)
        .ok_or(AuthError::InvalidState)?;
    let verifier = state.cipher.decrypt(&pending.pkce_verifier)?;
    let tokens = oidc.finish_login(code, verifier, &pending.nonce).await?;
    let role = role_of(state, &tokens.identity).ok_or(AuthError::NoRole)?;
    let user =
        repo::upsert_oidc_user(&state.db, &tokens.identity, role, state.clock.now(), true).await?;
    let (session, csrf) = session::create(state, &user.id, "oidc", Some(&tokens))
        .await
        .map_err(AuthError::Session)?;
    tracing::info!(user_id = %user.id, role = %user.role, "signed in through OpenID Connect");
    Ok(SignedIn {
        user,
        session,
        csrf,
        return_to: pending.return_to,
    })
}

/// An argon2id hash of a random string, verified against for unknown user names.
static DUMMY_HASH: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    repo::hash_password(&crypto::random_urlsafe(16)).unwrap_or_default()
});

/// The local form: user name and password, locked out per name and per address after
/// repeated failures; the same work is done for an unknown name, so timing reveals nothing.
pub async fn local_login(
    state: &AppState,
    username: &str,
    password: String,
    ip: &str,
) -> Result<SignedIn, AuthError> {
    if state.oidc.is_some() {
        return Err(AuthError::LocalLoginDisabled);
    }
    let keys = [format!("user:{username}"), format!("ip:{ip}")];
    if let Some(secs) = state.lockout.locked(&keys).await {
        return Err(AuthError::TooManyAttempts(secs));
    }
    let user = repo::local_user(&state.db, username).await?;
    let stored = match &user {
        Some(u) => u.password_hash.clone().unwrap_or_default(),
        None => DUMMY_HASH.clone(),
    };
    // argon2 takes tens of milliseconds of CPU: keep it off the HTTP worker thread.
    let ok = tokio::task::spawn_blocking(move || repo::verify_password(&password, &stored))
        .await
        .unwrap_or(false);
    let Some(user) = user.filter(|_| ok) else {
        state.lockout.fail(&keys).await;
        tracing::warn!(ip = %ip, "failed local login");
        return Err(AuthError::InvalidLogin);
    };
    state.lockout.succeed(&keys[0]).await;
    repo::touch_login(&state.db, &user.id, state.clock.now()).await?;
    let (session, csrf) = session::create(state, &user.id, "local", None)
        .await
        .map_err(AuthError::Session)?;
    Ok(SignedIn {
        user,
        session,
        csrf,
        return_to: "/".into(),
    })
}

/// The caller's user row.
pub async fn me(state: &AppState, caller: &Caller) -> Result<UserRow, AuthError> {
    repo::find_user(&state.db, &caller.user_id)
        .await?
        .ok_or(AuthError::UnknownUser)
}

/// A new key for the caller (default scopes `read write`, [`repo::DEFAULT_SCOPES`]); the token
/// is returned once.
pub async fn create_key(
    state: &AppState,
    caller: &Caller,
    name: &str,
    scopes: Option<Vec<String>>,
    expires_in_days: Option<u32>,
) -> Result<(KeyRow, String), AuthError> {
    let mut errors = Vec::new();
    let name = name.trim();
    if name.is_empty() || name.len() > 100 {
        errors.push(FieldError::new(
            "name",
            "invalid-format",
            "1 to 100 characters",
        ));
    }
    let scopes = scopes.unwrap_or_else(|| repo::DEFAULT_SCOPES.map(str::to_owned).to_vec());
    if scopes.is_empty() || scopes.iter().any(|s| !SCOPES.contains(&s.as_str())) {
        errors.push(FieldError::new(
            "scopes",
            "invalid-format",
            "a non-empty list of `read`, `write`, `events:write` and `events:read`",
        ));
    }
    if expires_in_days.is_some_and(|d| d == 0 || d > 3650) {
        errors.push(FieldError::new(
            "expires_in_days",
            "invalid-format",
            "1 to 3650",
        ));
    }
    if !errors.is_empty() {
        return Err(AuthError::Invalid(errors));
    }
    let scopes: Vec<String> = SCOPES
        .iter()
        .filter(|s| scopes.iter().any(|x| x == *s))
        .map(|s| (*s).to_owned())
        .collect();
    let expires_at: Option<DateTime<Utc>> =
        expires_in_days.map(|d| state.clock.now() + Duration::days(i64::from(d)));
    Ok(repo::create_key(
        &state.db,
        &caller.user_id,
        NewKey {
            name,
            scopes: &scopes,
            expires_at,
        },
    )
    .await?)
}

/// The keys of the caller (an admin may name another owner), newest first.
pub async fn list_keys(
    state: &AppState,
    caller: &Caller,
    owner_id: Option<&UserId>,
    page: &PageRequest,
) -> Result<Page<KeyRow>, AuthError> {
    let owner = match owner_id {
        Some(o) if caller.is_admin() => o,
        _ => &caller.user_id,
    };
    Ok(repo::keys_of(&state.db, owner, page).await?)
}

/// The key `id` if the caller may see it.
pub async fn find_key(state: &AppState, caller: &Caller, id: &str) -> Result<KeyRow, AuthError> {
    repo::find_key(&state.db, id)
        .await?
        .filter(|k| caller.can_access(&k.owner_id))
        .ok_or_else(|| AuthError::KeyNotFound(id.to_owned()))
}

/// Revokes the key at once (it is kept and listed as revoked); this node forgets it now,
/// other replicas within their cache's second.
pub async fn revoke_key(state: &AppState, caller: &Caller, id: &str) -> Result<(), AuthError> {
    let key = find_key(state, caller, id).await?;
    if key.revoked_at.is_none() {
        repo::revoke_key(&state.db, key, state.clock.now()).await?;
        state.api_keys.clear();
    }
    Ok(())
}
