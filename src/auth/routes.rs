//! Sign-in routes (`/auth/*`: Keycloak login and callback, local password login, logout, who am
//! I) and the API key and audit log routes under `/api/v1`.
use actix_web::{HttpRequest, HttpResponse, delete, get, post, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa_actix_web::scope;

use super::{
    AuthError, Caller, Role, Via, audit,
    extractor::{check_csrf, resolve},
    repo::{KeyRow, UserRow},
    service, session,
};
use crate::domain::UserId;
use crate::page::{Page, PageQuery};
use crate::{error::ApiError, state::AppState};

/// `/auth/*` (mounted at the root, outside `/api/v1`).
pub fn configure_auth(cfg: &mut crate::mount::Routes) {
    cfg.service(
        scope("/auth")
            .wrap(actix_web::middleware::from_fn(audit::middleware))
            .service(auth_config)
            .service(oidc_login)
            .service(local_login)
            .service(oidc_callback)
            .service(logout)
            .service(me),
    );
}

/// `/api/v1` routes of this module.
pub fn configure(cfg: &mut crate::mount::Routes) {
    cfg.service(create_key)
        .service(list_keys)
        .service(get_key)
        .service(revoke_key)
        .service(audit::list);
}

/// How browsers sign in here.
#[derive(Serialize, utoipa::ToSchema)]
struct AuthConfig {
    /// `oidc` (Keycloak) or `local` (user name and password).
    mode: &'static str,
    /// Where to send the browser to sign in (`/auth/login`); empty in local mode.
    login_url: &'static str,
}

/// How browsers sign in here (`oidc` or `local`).
#[utoipa::path(
    tag = "auth",
    responses(
        (status = 200, description = "The sign-in mode", body = AuthConfig),
    )
)]
#[get("/config")]
async fn auth_config(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(AuthConfig {
        mode: if state.oidc.is_some() {
            "oidc"
        } else {
            "local"
        },
        login_url: if state.oidc.is_some() {
            "/auth/login"
        } else {
            ""
        },
    })
}

/// `?return_to=`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct LoginQuery {
    /// Local path to return to after login (default `/`).
    return_to: Option<String>,
}

/// Send the browser to Keycloak to sign in (authorization code with PKCE).
#[utoipa::path(
    tag = "auth",
    params(LoginQuery),
    responses(
        (status = 302, description = "To the OpenID provider's login page (`Location`)"),
        (status = 400, description = "`invalid-query`"),
        (status = 404, description = "`oidc-not-configured`: local mode; sign in with POST /auth/login"),
        (status = 502, description = "`oidc-unavailable`"),
    )
)]
#[get("/login")]
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

/// What the OpenID provider sends the browser back with.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct CallbackQuery {
    /// The authorization code.
    code: Option<String>,
    /// The login's `state`, as sent to the provider.
    state: Option<String>,
    /// The provider's error code, when it refused the login.
    error: Option<String>,
    /// The provider's explanation of `error`.
    error_description: Option<String>,
}

/// Finish a Keycloak sign-in: the provider sends the browser back here with `code` and `state`.
///
/// Opens a session (cookie) and sends the browser to the `return_to` of the login.
#[utoipa::path(
    tag = "auth",
    params(CallbackQuery),
    responses(
        (status = 303, description = "Signed in: the session cookie is set; on to `return_to` (`Location`)"),
        (status = 400, description = "`login-refused`, `invalid-callback`, `invalid-state`, `code-rejected`, `invalid-query`"),
        (status = 401, description = "`invalid-id-token`, `id-token-expired`, `invalid-nonce`"),
        (status = 403, description = "`no-role`: the user has none of the roles admin, operator or viewer"),
        (status = 404, description = "`oidc-not-configured`: local mode"),
        (status = 502, description = "`oidc-unavailable`"),
    )
)]
#[get("/callback")]
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

/// The local admin's credentials.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct LocalLogin {
    /// The user name.
    username: String,
    /// The password.
    #[schema(format = Password)]
    password: String,
}

impl std::fmt::Debug for LocalLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalLogin")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// The signed-in user, as the answer to a local login names it.
#[derive(Serialize, utoipa::ToSchema)]
struct SignedInUser {
    id: UserId,
    name: String,
    /// `admin`, `operator` or `viewer`.
    role: String,
}

/// A local login's answer.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = LocalLoginResult)]
struct LoginAnswer {
    user: SignedInUser,
    /// Send it as `X-CSRF-Token` on every session request that changes something.
    csrf_token: String,
}

/// Sign in with a user name and password (local mode); sets the session cookie.
#[utoipa::path(
    tag = "auth",
    responses(
        (status = 200, description = "Signed in: the session cookie is set", body = LoginAnswer),
        (status = 400, description = "`invalid-json`, `unsupported-media-type`"),
        (status = 401, description = "`invalid-login`: wrong user name or password"),
        (status = 404, description = "`local-login-disabled`: this server signs in through its OpenID provider"),
        (status = 413, description = "`payload-too-large`"),
        (status = 422, description = "`invalid-body`"),
        (status = 429, description = "`too-many-attempts`: too many failed logins for this name or address (`Retry-After`); `rate-limited`"),
    )
)]
#[post("/login")]
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
        .json(LoginAnswer {
            user: SignedInUser {
                id: user.id,
                name: user.name,
                role: user.role,
            },
            csrf_token: signed_in.csrf,
        }))
}

/// A logout's answer.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = LogoutResult)]
struct LogoutAnswer {
    /// The OpenID provider's logout URL for the browser to visit (RP-initiated logout); null
    /// in local mode or without a session.
    logout_url: Option<String>,
}

/// Sign out: ends the session (CSRF token required).
///
/// Returns the provider's logout URL, if any, for the browser to visit (RP-initiated logout).
#[utoipa::path(
    tag = "auth",
    params(("X-CSRF-Token" = Option<String>, Header, description = "The session's CSRF token (from GET /auth/me)")),
    responses(
        (status = 200, description = "Signed out: the session cookie is removed", body = LogoutAnswer),
        (status = 403, description = "`csrf-failed`: missing or wrong X-CSRF-Token"),
    )
)]
#[post("/logout")]
async fn logout(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let Some(cookie) = req.cookie(session::COOKIE) else {
        return Ok(HttpResponse::Ok()
            .cookie(session::removal(&state))
            .json(LogoutAnswer { logout_url: None }));
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
        .json(LogoutAnswer { logout_url }))
}

/// The caller, as `GET /auth/me` shows it.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = CurrentUser)]
struct MeView {
    id: UserId,
    name: String,
    email: Option<String>,
    /// `admin`, `operator` or `viewer`.
    role: String,
    /// How the caller authenticated: `session`, `api_key` or `bearer`.
    via: &'static str,
    /// The session's CSRF token (send it as `X-CSRF-Token`); null for other credentials.
    csrf_token: Option<String>,
}

/// The signed-in user, with the CSRF token that session requests must send.
#[utoipa::path(
    tag = "auth",
    responses(
        (status = 200, description = "The caller", body = MeView),
        (status = 401, description = "`missing-credentials`, `invalid-credentials`, `session-expired`, `api-key-revoked`, `api-key-expired`, `token-expired`, `invalid-token`"),
        (status = 403, description = "`no-role`"),
        (status = 502, description = "`oidc-unavailable`: the OpenID provider cannot check a bearer token"),
    )
)]
#[get("/me")]
async fn me(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let caller = resolve(&state, &req).await?;
    let user = service::me(&state, &caller).await?;
    let csrf = match &caller.via {
        Via::Session { csrf } => Some(csrf.clone()),
        _ => None,
    };
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(MeView {
            id: user.id,
            name: user.name,
            email: user.email,
            role: user.role,
            via: caller.kind(),
            csrf_token: csrf,
        }))
}

/// A new API key.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NewApiKey)]
struct CreateKey {
    /// 1 to 100 characters.
    name: String,
    /// Any of `read`, `write`, `events:write`, `events:read`. Default: `["read", "write"]`.
    scopes: Option<Vec<String>>,
    /// Lifetime in days, 1 to 3650; none means it does not expire.
    expires_in_days: Option<u32>,
}

/// An API key (never its token).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = ApiKey)]
struct KeyView {
    id: String,
    owner_id: UserId,
    name: String,
    /// The token's first characters, to recognise it.
    prefix: String,
    /// `read`, `write`, `events:write`, `events:read`.
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

/// A new API key with its token.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = CreatedApiKey)]
struct CreatedKey {
    #[serde(flatten)]
    key: KeyView,
    /// The key itself (`prg_…`): shown in this answer only.
    token: String,
}

/// Create an API key for the caller; the token is in this answer only.
#[utoipa::path(
    tag = "api-keys",
    responses(
        (status = 201, description = "The key, with its token", body = CreatedKey),
        (status = 400, description = "`validation-failed` (name, scopes, expires_in_days), `invalid-json`, `unsupported-media-type`"),
        (status = 413, description = "`payload-too-large`"),
        (status = 422, description = "`invalid-body`"),
    )
)]
#[post("/api-keys")]
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
    Ok(HttpResponse::Created().json(CreatedKey {
        key: KeyView::from(row),
        token,
    }))
}

/// `?owner_id=&cursor=&limit=`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListKeys {
    /// Admins only: another user's keys.
    owner_id: Option<UserId>,
    /// `next_cursor` of the page before.
    cursor: Option<String>,
    /// Rows per page, 1 to 1000 (default 100).
    limit: Option<u64>,
}

/// List the caller's API keys (never their tokens), newest first.
#[utoipa::path(
    tag = "api-keys",
    params(ListKeys),
    responses(
        (status = 200, description = "One page of keys", body = Page<KeyView>),
        (status = 400, description = "`invalid-cursor`, `validation-failed`, `invalid-query`"),
    )
)]
#[get("/api-keys")]
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

/// One API key (never its token).
#[utoipa::path(
    tag = "api-keys",
    params(("id" = String, Path, description = "The API key's id")),
    responses(
        (status = 200, description = "The key", body = KeyView),
        (status = 404, description = "`api-key-not-found`"),
    )
)]
#[get("/api-keys/{id}")]
async fn get_key(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let key = service::find_key(&state, &caller, &id).await?;
    Ok(HttpResponse::Ok().json(KeyView::from(key)))
}

/// Revoke an API key at once (it is kept, listed as revoked).
#[utoipa::path(
    tag = "api-keys",
    params(("id" = String, Path, description = "The API key's id")),
    responses(
        (status = 204, description = "Revoked (or already revoked)"),
        (status = 404, description = "`api-key-not-found`"),
    )
)]
#[delete("/api-keys/{id}")]
async fn revoke_key(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    service::revoke_key(&state, &caller, &id).await?;
    Ok(HttpResponse::NoContent().finish())
}
