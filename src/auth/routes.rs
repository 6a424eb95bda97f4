//! Sign-in routes (`/auth/*`: Keycloak login and callback, local password login, logout, who am
//! I) and the API key and audit log routes under `/api/v1`.
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Duration, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, Set,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{
    Caller, Via, audit,
    extractor::{check_csrf, no_role, resolve, role_of},
    oidc::OidcError,
    repo::{self, NewKey, SCOPES},
    session,
};
use crate::{
    crypto,
    entities::{api_keys, oidc_logins, users},
    error::{ApiError, FieldError},
    state::AppState,
};

/// A pending login older than this is refused at the callback.
const LOGIN_TTL: Duration = Duration::minutes(10);

/// `/auth/*` (mounted at the root, outside `/api/v1`).
pub fn configure_auth(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/auth")
            .wrap(actix_web::middleware::from_fn(audit::middleware))
            .route("/config", web::get().to(auth_config))
            .route("/login", web::get().to(oidc_login))
            .route("/login", web::post().to(local_login))
            .route("/callback", web::get().to(oidc_callback))
            .route("/logout", web::post().to(logout))
            .route("/me", web::get().to(me)),
    );
}

/// `/api/v1` routes of this module.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api-keys", web::post().to(create_key))
        .route("/api-keys", web::get().to(list_keys))
        .route("/api-keys/{id}", web::get().to(get_key))
        .route("/api-keys/{id}", web::delete().to(revoke_key))
        .route("/audit-log", web::get().to(audit::list));
}

/// `GET /auth/config`: how browsers sign in here (`oidc` or `local`).
async fn auth_config(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "mode": if state.oidc.is_some() { "oidc" } else { "local" },
        "login_url": if state.oidc.is_some() { "/auth/login" } else { "" },
    }))
}

#[derive(Debug, Deserialize)]
struct LoginQuery {
    /// Local path to return to after login (default `/`).
    return_to: Option<String>,
}

fn oidc_disabled() -> ApiError {
    ApiError::NotFound(
        "oidc-not-configured",
        "this server has no OpenID provider (oidc.issuer_url); sign in with POST /auth/login"
            .into(),
    )
}

/// `GET /auth/login`: sends the browser to Keycloak (authorization code with PKCE).
async fn oidc_login(
    state: web::Data<AppState>,
    query: web::Query<LoginQuery>,
) -> Result<HttpResponse, ApiError> {
    let oidc = state.oidc.as_ref().ok_or_else(oidc_disabled)?;
    // Only local paths: an absolute or protocol-relative URL would make this an open redirect.
    let return_to = query
        .return_to
        .as_deref()
        .filter(|p| p.starts_with('/') && !p.starts_with("//") && !p.contains('\\'))
        .unwrap_or("/")
        .to_owned();
    let start = oidc.start_login().await.map_err(oidc_error)?;
    oidc_logins::ActiveModel {
        id: Set(crypto::hash_token(&start.state)),
        pkce_verifier: Set(state
            .cipher
            .encrypt(&start.pkce_verifier)
            .map_err(ApiError::Unexpected)?),
        nonce: Set(start.nonce),
        return_to: Set(return_to),
        created_at: Set(state.clock.now()),
    }
    .insert(&state.db)
    .await?;
    // Logins abandoned at the provider are cleaned up here rather than by a job.
    oidc_logins::Entity::delete_many()
        .filter(oidc_logins::Column::CreatedAt.lt(state.clock.now() - LOGIN_TTL))
        .exec(&state.db)
        .await?;
    Ok(HttpResponse::Found()
        .insert_header(("Location", start.url))
        .insert_header(("Cache-Control", "no-store"))
        .finish())
}

#[derive(Debug, Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

fn oidc_error(e: OidcError) -> ApiError {
    match e {
        OidcError::Unavailable(_) => ApiError::BadGateway("oidc-unavailable", e.to_string()),
        OidcError::CodeRejected(_) => ApiError::BadRequest("code-rejected", e.to_string()),
        OidcError::RefreshRejected(_) => ApiError::Unauthorized("session-expired", e.to_string()),
        OidcError::Expired => ApiError::Unauthorized(
            "id-token-expired",
            "the ID token from the OpenID provider has expired; sign in again".into(),
        ),
        OidcError::NonceMismatch => ApiError::Unauthorized("invalid-nonce", e.to_string()),
        OidcError::Invalid(_) => ApiError::Unauthorized("invalid-id-token", e.to_string()),
    }
}

/// `GET /auth/callback`: Keycloak sends the browser back here with `code` and `state`.
async fn oidc_callback(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<CallbackQuery>,
) -> Result<HttpResponse, ApiError> {
    let oidc = state.oidc.as_ref().ok_or_else(oidc_disabled)?;
    if let Some(error) = &query.error {
        return Err(ApiError::BadRequest(
            "login-refused",
            format!(
                "the OpenID provider refused the login: {error}{}",
                query
                    .error_description
                    .as_deref()
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default()
            ),
        ));
    }
    let (Some(code), Some(login_state)) = (&query.code, &query.state) else {
        return Err(ApiError::BadRequest(
            "invalid-callback",
            "the callback needs `code` and `state`".into(),
        ));
    };
    let invalid_state = || {
        ApiError::BadRequest(
            "invalid-state",
            "unknown, used or expired login state; start again at /auth/login".into(),
        )
    };
    let id = crypto::hash_token(login_state);
    let pending = oidc_logins::Entity::find_by_id(id.clone())
        .one(&state.db)
        .await?
        .ok_or_else(invalid_state)?;
    // Single use: whoever deletes the row owns the login, so a replayed callback gets nothing.
    let deleted = oidc_logins::Entity::delete_by_id(id)
        .exec(&state.db)
        .await?;
    if deleted.rows_affected != 1 || state.clock.now() - pending.created_at > LOGIN_TTL {
        return Err(invalid_state());
    }
    let verifier = state
        .cipher
        .decrypt(&pending.pkce_verifier)
        .map_err(ApiError::Unexpected)?;
    let tokens = oidc
        .finish_login(code, verifier, &pending.nonce)
        .await
        .map_err(oidc_error)?;
    let role = role_of(&state, &tokens.identity).ok_or_else(no_role)?;
    let now = state.clock.now();
    let user = repo::upsert_oidc_user(&state.db, &tokens.identity, role, now, true).await?;
    let (value, csrf) = session::create(&state, &user.id, "oidc", Some(&tokens)).await?;
    name_actor(&req, &user, csrf);
    tracing::info!(user_id = %user.id, role = %user.role, "signed in through OpenID Connect");
    Ok(HttpResponse::SeeOther()
        .cookie(session::cookie(&state, value))
        .insert_header(("Location", pending.return_to))
        .insert_header(("Cache-Control", "no-store"))
        .finish())
}

/// Lets the audit middleware name a user who just signed in.
fn name_actor(req: &HttpRequest, user: &users::Model, csrf: String) {
    Caller {
        user_id: user.id.clone(),
        role: user.role.clone(),
        via: Via::Session { csrf },
    }
    .name_in_audit(req);
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LocalLogin {
    username: String,
    password: String,
}

impl std::fmt::Debug for LocalLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalLogin")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// `POST /auth/login` (local mode): the admin's user name and password; sets the session cookie.
async fn local_login(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<LocalLogin>,
) -> Result<HttpResponse, ApiError> {
    if state.oidc.is_some() {
        return Err(ApiError::NotFound(
            "local-login-disabled",
            "this server signs in through its OpenID provider: GET /auth/login".into(),
        ));
    }
    let LocalLogin { username, password } = body.into_inner();
    let ip = req
        .peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default();
    let keys = [format!("user:{username}"), format!("ip:{ip}")];
    if let Some(secs) = state.lockout.locked(&keys) {
        return Err(ApiError::Limited {
            status: actix_web::http::StatusCode::TOO_MANY_REQUESTS,
            code: "too-many-attempts",
            message: format!("too many failed logins; try again in {secs} s"),
            retry_after: secs,
            resets_at: None,
        });
    }
    let user = repo::local_user(&state.db, &username).await?;
    let ok = match &user {
        Some(u) => {
            let stored = u.password_hash.clone().unwrap_or_default();
            // argon2 takes tens of milliseconds of CPU: keep it off the HTTP worker thread.
            tokio::task::spawn_blocking(move || repo::verify_password(&password, &stored))
                .await
                .unwrap_or(false)
        }
        None => {
            // Same work for an unknown name, so timing does not reveal which names exist.
            let _ =
                tokio::task::spawn_blocking(move || repo::verify_password(&password, &DUMMY_HASH))
                    .await;
            false
        }
    };
    let Some(user) = user.filter(|_| ok) else {
        state.lockout.fail(&keys);
        tracing::warn!(ip = %ip, "failed local login");
        return Err(ApiError::Unauthorized(
            "invalid-login",
            "wrong user name or password".into(),
        ));
    };
    state.lockout.succeed(&keys[0]);
    repo::touch_login(&state.db, &user.id, state.clock.now()).await?;
    let (value, csrf) = session::create(&state, &user.id, "local", None).await?;
    name_actor(&req, &user, csrf.clone());
    Ok(HttpResponse::Ok()
        .cookie(session::cookie(&state, value))
        .json(json!({
            "user": { "id": user.id, "name": user.name, "role": user.role },
            "csrf_token": csrf,
        })))
}

/// An argon2id hash of a random string, verified against for unknown user names.
static DUMMY_HASH: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    repo::hash_password(&crypto::random_urlsafe(16)).unwrap_or_default()
});

/// `POST /auth/logout`: ends the session (CSRF token required) and returns the provider's
/// logout URL, if any, for the browser to visit (RP-initiated logout).
async fn logout(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let Some(cookie) = req.cookie(session::COOKIE) else {
        return Ok(HttpResponse::Ok()
            .cookie(session::removal(&state))
            .json(json!({ "logout_url": null })));
    };
    if let Ok(caller) = session::load(&state, cookie.value()).await {
        check_csrf(&caller, req.headers())?;
        caller.name_in_audit(&req);
    }
    let id_token = session::delete(&state, cookie.value()).await?;
    let logout_url = match &state.oidc {
        Some(oidc) => oidc.logout_url(id_token.as_deref()).await,
        None => None,
    };
    Ok(HttpResponse::Ok()
        .cookie(session::removal(&state))
        .json(json!({ "logout_url": logout_url })))
}

/// `GET /auth/me`: the signed-in user, with the CSRF token that session requests must send.
async fn me(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let caller = resolve(&state, &req).await?;
    let user = users::Entity::find_by_id(caller.user_id.clone())
        .one(&state.db)
        .await?
        .ok_or(ApiError::InvalidCredentials)?;
    let csrf = match &caller.via {
        Via::Session { csrf } => Some(csrf.clone()),
        _ => None,
    };
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(json!({
            "id": user.id,
            "name": user.name,
            "email": user.email,
            "role": user.role,
            "via": caller.kind(),
            "csrf_token": csrf,
        })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKey {
    name: String,
    /// Default: `["read", "write"]`.
    scopes: Option<Vec<String>>,
    /// Lifetime in days; none means it does not expire.
    expires_in_days: Option<u32>,
}

#[derive(Debug, Serialize)]
struct KeyView {
    id: String,
    owner_id: String,
    name: String,
    prefix: String,
    scopes: Vec<String>,
    created_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    last_used_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
}

impl From<api_keys::Model> for KeyView {
    fn from(k: api_keys::Model) -> Self {
        Self {
            scopes: k.scopes.split_whitespace().map(str::to_owned).collect(),
            id: k.id,
            owner_id: k.owner_id,
            name: k.name,
            prefix: k.prefix,
            created_at: k.created_at,
            expires_at: k.expires_at,
            last_used_at: k.last_used_at,
            revoked_at: k.revoked_at,
        }
    }
}

fn field(name: &str, code: &'static str, message: &str) -> FieldError {
    FieldError {
        field: name.into(),
        code,
        message: message.into(),
    }
}

/// `POST /api/v1/api-keys`: a new key for the caller; the token is in this answer only.
async fn create_key(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<CreateKey>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let mut errors = Vec::new();
    let name = body.name.trim();
    if name.is_empty() || name.len() > 100 {
        errors.push(field("name", "invalid-format", "1 to 100 characters"));
    }
    let scopes = body
        .scopes
        .unwrap_or_else(|| SCOPES.map(str::to_owned).to_vec());
    if scopes.is_empty() || scopes.iter().any(|s| !SCOPES.contains(&s.as_str())) {
        errors.push(field(
            "scopes",
            "invalid-format",
            "a non-empty list of `read` and `write`",
        ));
    }
    if body.expires_in_days.is_some_and(|d| d == 0 || d > 3650) {
        errors.push(field("expires_in_days", "invalid-format", "1 to 3650"));
    }
    if !errors.is_empty() {
        return Err(ApiError::Invalid(errors));
    }
    let mut scopes: Vec<String> = SCOPES
        .iter()
        .filter(|s| scopes.iter().any(|x| x == *s))
        .map(|s| (*s).to_owned())
        .collect();
    scopes.dedup();
    let expires_at = body
        .expires_in_days
        .map(|d| state.clock.now() + Duration::days(i64::from(d)));
    let (row, token) = repo::create_key(
        &state.db,
        &caller.user_id,
        NewKey {
            name,
            scopes: &scopes,
            expires_at,
        },
    )
    .await?;
    let mut view = serde_json::to_value(KeyView::from(row)).map_err(anyhow::Error::from)?;
    view["token"] = json!(token);
    Ok(HttpResponse::Created().json(view))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListKeys {
    /// Admins only: another user's keys.
    owner_id: Option<String>,
}

/// `GET /api/v1/api-keys`: the caller's keys (never their tokens), newest first.
async fn list_keys(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<ListKeys>,
) -> Result<HttpResponse, ApiError> {
    let owner = match &query.owner_id {
        Some(o) if caller.is_admin() => o.clone(),
        _ => caller.user_id.clone(),
    };
    let keys: Vec<KeyView> = api_keys::Entity::find()
        .filter(api_keys::Column::OwnerId.eq(owner))
        .order_by_desc(api_keys::Column::CreatedAt)
        .all(&state.db)
        .await?
        .into_iter()
        .map(KeyView::from)
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "api_keys": keys })))
}

async fn find_key(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<api_keys::Model, ApiError> {
    api_keys::Entity::find_by_id(id.to_owned())
        .one(&state.db)
        .await?
        .filter(|k| caller.can_access(&k.owner_id))
        .ok_or_else(|| ApiError::NotFound("api-key-not-found", format!("no API key {id}")))
}

/// `GET /api/v1/api-keys/{id}`.
async fn get_key(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let key = find_key(&state, &caller, &id).await?;
    Ok(HttpResponse::Ok().json(KeyView::from(key)))
}

/// `DELETE /api/v1/api-keys/{id}`: revokes the key at once (kept, listed as revoked).
async fn revoke_key(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let key = find_key(&state, &caller, &id).await?;
    if key.revoked_at.is_none() {
        let mut active = key.into_active_model();
        active.revoked_at = Set(Some(state.clock.now()));
        active.update(&state.db).await?;
        state.api_keys.clear();
    }
    Ok(HttpResponse::NoContent().finish())
}
