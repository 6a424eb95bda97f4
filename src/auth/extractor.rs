//! `Caller`: the authenticated user behind a request, from an API key, a Keycloak bearer token
//! or a browser session cookie; and the `/api/v1` middleware that enforces roles, key scopes
//! and CSRF before any handler runs.
use std::future::{Ready, ready};

use actix_web::{
    FromRequest, HttpMessage, HttpRequest,
    body::{EitherBody, MessageBody},
    dev::{Payload, ServiceRequest, ServiceResponse},
    http::Method,
    middleware::Next,
    web,
};

use super::{
    Role,
    audit::ActorSlot,
    key_check::Scopes,
    oidc::{Identity, OidcError},
    repo, session,
};
use crate::{crypto, domain::UserId, error::ApiError, state::AppState};

/// The user a request acts for.
#[derive(Debug, Clone)]
pub struct Caller {
    /// `users.id`.
    pub user_id: UserId,
    /// What the caller may do.
    pub role: Role,
    /// How the caller proved who they are.
    pub via: Via,
}

/// The credentials a request came with.
#[derive(Debug, Clone)]
pub enum Via {
    /// An API key (`prg_…`).
    ApiKey {
        /// `api_keys.id`.
        key_id: String,
        /// What the key may do.
        scopes: Scopes,
    },
    /// A browser session cookie.
    Session {
        /// The session's CSRF token, expected in `X-CSRF-Token` on mutating requests.
        csrf: String,
    },
    /// A Keycloak access token.
    Bearer,
    /// An integration token (Pingui routes; acts for the integration's owner).
    IntegrationToken,
}

impl Caller {
    /// Whether the caller is an admin (sees and changes every owner's data).
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// Whether the caller may see a resource owned by `owner_id`. Routes answer 404, not 403,
    /// when this is false, so a resource's existence does not leak to other owners.
    pub fn can_access(&self, owner_id: &UserId) -> bool {
        self.is_admin() || &self.user_id == owner_id
    }

    /// `api_key`, `session` or `bearer` (for the audit log).
    pub fn kind(&self) -> &'static str {
        match self.via {
            Via::ApiKey { .. } => "api_key",
            Via::Session { .. } => "session",
            Via::Bearer => "bearer",
            Via::IntegrationToken => "integration_token",
        }
    }

    /// 403 unless the caller may change things: viewers and read-only API keys may not.
    pub fn ensure_can_write(&self) -> Result<(), ApiError> {
        self.ensure_can_change(Scopes::WRITE)
    }

    /// 403 unless the caller's role may change things and, for an API key, it has `scope`
    /// (`write` on `/api/v1`, `events:write` for events).
    pub fn ensure_can_change(&self, scope: Scopes) -> Result<(), ApiError> {
        if self.role == Role::Viewer {
            return Err(ApiError::Forbidden(
                "read-only-role",
                "you are a viewer: you can read but not change anything".into(),
            ));
        }
        self.ensure_key_scope(scope)
    }

    /// 403 for an API key without the `read` scope (an ingest key, say) on a read.
    pub fn ensure_can_read(&self) -> Result<(), ApiError> {
        self.ensure_key_scope(Scopes::READ)
    }

    /// 403 `insufficient-scope` for an API key without `scope`; other credentials pass (their
    /// role decides).
    pub fn ensure_key_scope(&self, scope: Scopes) -> Result<(), ApiError> {
        match self.via {
            Via::ApiKey { scopes, .. } if !scopes.contains(scope) => Err(ApiError::Forbidden(
                "insufficient-scope",
                format!("this API key lacks the `{}` scope", scope.name()),
            )),
            _ => Ok(()),
        }
    }

    /// Names this caller in the audit entry of the current request, if it is audited.
    pub fn name_in_audit(&self, req: &HttpRequest) {
        let slot = req.extensions().get::<ActorSlot>().cloned();
        if let Some(slot) = slot {
            slot.set(self);
        }
    }
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(
            req.extensions()
                .get::<Caller>()
                .cloned()
                .ok_or(ApiError::MissingCredentials),
        )
    }
}

/// The token of an `Authorization: Bearer <token>` header; 401 `missing-credentials` without one.
pub fn bearer_token(headers: &actix_web::http::header::HeaderMap) -> Result<&str, ApiError> {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(ApiError::MissingCredentials)
}

/// The caller of API key `token`, reused for a second: three reads per request were most of what
/// an API call cost. Revoking a key on this node clears the cache; elsewhere it takes a second.
pub async fn api_key(state: &AppState, token: &str) -> Result<Caller, ApiError> {
    let hash = crate::crypto::hash_token(token);
    let now = state.clock.now();
    if let Some(k) = state.api_keys.get(&hash)
        && k.expires_at.is_none_or(|t| t > now)
    {
        return Ok(Caller {
            user_id: k.user_id,
            role: k.role,
            via: Via::ApiKey {
                key_id: k.key_id,
                scopes: k.scopes,
            },
        });
    }
    let (caller, expires_at) = repo::authenticate(&state.db, token, now).await?;
    if let Via::ApiKey { key_id, scopes } = &caller.via {
        let check = super::key_check::KeyCheck {
            user_id: caller.user_id.clone(),
            role: caller.role,
            key_id: key_id.clone(),
            scopes: *scopes,
            expires_at,
        };
        state.api_keys.put(hash, check);
    }
    Ok(caller)
}

/// Who is calling: `Authorization: Bearer` (API key or Keycloak access token) first, else the
/// session cookie.
pub async fn resolve(state: &AppState, req: &HttpRequest) -> Result<Caller, ApiError> {
    if req.headers().contains_key("authorization") {
        let token = bearer_token(req.headers())?;
        if token.starts_with("prg_") {
            return api_key(state, token).await;
        }
        let Some(oidc) = &state.oidc else {
            return Err(ApiError::InvalidCredentials);
        };
        let identity = oidc
            .verify_access_token(token)
            .await
            .map_err(|e| bearer_error(&e))?;
        let role = role_of(state, &identity).ok_or_else(no_role)?;
        let user =
            repo::upsert_oidc_user(&state.db, &identity, role, state.clock.now(), false).await?;
        return Ok(Caller {
            user_id: user.id,
            role: Role::stored(&user.role),
            via: Via::Bearer,
        });
    }
    match req.cookie(session::COOKIE) {
        Some(cookie) => session::load(state, cookie.value()).await,
        None => Err(ApiError::MissingCredentials),
    }
}

fn bearer_error(e: &OidcError) -> ApiError {
    match e {
        OidcError::Expired => {
            ApiError::Unauthorized("token-expired", "the access token has expired".into())
        }
        OidcError::Unavailable(_) => ApiError::BadGateway(
            "oidc-unavailable",
            "the OpenID provider cannot be reached to check this token".into(),
        ),
        other => ApiError::Unauthorized("invalid-token", other.to_string()),
    }
}

/// The role a Keycloak identity gets here: its strongest role of ours, else `oidc.default_role`.
pub(super) fn role_of(state: &AppState, identity: &Identity) -> Option<Role> {
    identity.role.or_else(|| {
        state
            .settings
            .oidc
            .default_role
            .as_deref()
            .and_then(Role::parse)
    })
}

/// 403 for a Keycloak user with none of our roles.
pub(super) fn no_role() -> ApiError {
    super::AuthError::NoRole.into()
}

/// Middleware for `/api/v1`: resolves the caller before any body is read (so a request without
/// valid credentials gets 401 whatever else is wrong with it), then refuses changes by viewers,
/// by read-only keys, and by session requests without the CSRF token.
///
/// A refusal is answered here, not returned as an error for actix to render later: so the outer
/// middleware (the request limits' `RateLimit` fields, the audit) see it as the answer it is.
pub async fn authenticate<B: MessageBody>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error> {
    let checked = async {
        let state = req
            .app_data::<web::Data<AppState>>()
            .cloned()
            .ok_or_else(|| ApiError::Unexpected(anyhow::anyhow!("AppState missing")))?;
        let caller = resolve(&state, req.request()).await?;
        // Named before the checks below, so the audit log shows whoever was refused.
        caller.name_in_audit(req.request());
        if is_mutating(req.method()) {
            check_csrf(&caller, req.headers())?;
            caller.ensure_can_write()?;
        } else {
            caller.ensure_can_read()?;
        }
        Ok::<_, ApiError>(caller)
    }
    .await;
    match checked {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.call(req)
                .await
                .map(ServiceResponse::map_into_left_body)
        }
        Err(refused) => {
            let answer = actix_web::ResponseError::error_response(&refused);
            Ok(req.into_response(answer).map_into_right_body())
        }
    }
}

/// Anything but GET, HEAD and OPTIONS.
pub fn is_mutating(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Session requests that change something must echo the session's CSRF token in `X-CSRF-Token`
/// (a cross-site form or script cannot read it). API keys and bearer tokens are not sent by
/// browsers on their own, so they need none.
pub fn check_csrf(
    caller: &Caller,
    headers: &actix_web::http::header::HeaderMap,
) -> Result<(), ApiError> {
    let Via::Session { csrf } = &caller.via else {
        return Ok(());
    };
    let sent = headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if crypto::constant_time_eq(sent.as_bytes(), csrf.as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "csrf-failed",
            "missing or wrong X-CSRF-Token header; read it from GET /auth/me".into(),
        ))
    }
}
