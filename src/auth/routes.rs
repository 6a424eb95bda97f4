//! Sign-in routes (`/auth/*`: Keycloak login and callback, local password login, logout, who am
//! I) and the API key and audit log routes under `/api/v1`.
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{
    AuthError, Caller, Role, Via, audit,
    extractor::{check_csrf, resolve},
    repo::{KeyRow, UserRow},
    service, session,
};
use crate::domain::UserId;
use crate::page::PageQuery;
use crate::{error::ApiError, state::AppState};

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

/// `GET /auth/login`: sends the browser to Keycloak (authorization code with PKCE).
async fn oidc_login(
    state: web::Data<AppState>,
    query: web::Query<LoginQuery>,
) -> Result<HttpResponse, ApiError> {
    let url = service::start_oidc_login(&state, query.return_to.as_deref()).await?;
    Ok(HttpResponse::Found()
        .insert_header(("Location", url))
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

/// `GET /auth/callback`: Keycloak sends the browser back here with `code` and `state`.
async fn oidc_callback(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<CallbackQuery>,
) -> Result<HttpResponse, ApiError> {
    if state.oidc.is_none() {
        return Err(AuthError::OidcDisabled.into());
    }
    if let Some(error) = &query.error {
        let description = query
            .error_description
            .as_deref()
            .map(|d| format!(" ({d})"))
            .unwrap_or_default();
        return Err(AuthError::LoginRefused(format!("{error}{description}")).into());
    }
    let (Some(code), Some(login_state)) = (&query.code, &query.state) else {
        return Err(AuthError::InvalidCallback.into());
    };
    let signed_in = service::finish_oidc_login(&state, code, login_state).await?;
    name_actor(&req, &signed_in.user, signed_in.csrf);
    Ok(HttpResponse::SeeOther()
        .cookie(session::cookie(&state, signed_in.session))
        .insert_header(("Location", signed_in.return_to))
        .insert_header(("Cache-Control", "no-store"))
        .finish())
}

/// Lets the audit middleware name a user who just signed in.
fn name_actor(req: &HttpRequest, user: &UserRow, csrf: String) {
    Caller {
        user_id: user.id.clone(),
        role: Role::stored(&user.role),
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
    let LocalLogin { username, password } = body.into_inner();
    // Behind a proxy, every client would share the proxy's lockout counter.
    let ip = crate::client_ip::client_ip(&req, &state.trusted_proxies)
        .map(|ip| ip.to_string())
        .unwrap_or_default();
    let signed_in = service::local_login(&state, &username, password, &ip).await?;
    let user = signed_in.user;
    name_actor(&req, &user, signed_in.csrf.clone());
    Ok(HttpResponse::Ok()
        .cookie(session::cookie(&state, signed_in.session))
        .json(json!({
            "user": { "id": user.id, "name": user.name, "role": user.role },
            "csrf_token": signed_in.csrf,
        })))
}

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
    let user = service::me(&state, &caller).await?;
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
    owner_id: UserId,
    name: String,
    prefix: String,
    scopes: Vec<String>,
    created_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    last_used_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
}

impl From<KeyRow> for KeyView {
    fn from(k: KeyRow) -> Self {
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

/// `POST /api/v1/api-keys`: a new key for the caller; the token is in this answer only.
async fn create_key(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<CreateKey>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let (row, token) = service::create_key(
        &state,
        &caller,
        &body.name,
        body.scopes,
        body.expires_in_days,
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
    owner_id: Option<UserId>,
    cursor: Option<String>,
    limit: Option<u64>,
}

/// `GET /api/v1/api-keys`: the caller's keys (never their tokens), newest first.
async fn list_keys(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<ListKeys>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let page = PageQuery {
        cursor: query.cursor,
        limit: query.limit,
    }
    .request()?;
    let keys = service::list_keys(&state, &caller, query.owner_id.as_ref(), &page).await?;
    Ok(HttpResponse::Ok().json(keys.map(KeyView::from)))
}

/// `GET /api/v1/api-keys/{id}`.
async fn get_key(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let key = service::find_key(&state, &caller, &id).await?;
    Ok(HttpResponse::Ok().json(KeyView::from(key)))
}

/// `DELETE /api/v1/api-keys/{id}`: revokes the key at once (kept, listed as revoked).
async fn revoke_key(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    service::revoke_key(&state, &caller, &id).await?;
    Ok(HttpResponse::NoContent().finish())
}
