//! Sign-in and API key errors; each has one stable code and one status.
use super::oidc::OidcError;
use crate::error::{ApiError, FieldError};

/// What a sign-in or API key request can come to, short of success.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No OpenID provider is configured.
    #[error("this server has no OpenID provider (oidc.issuer_url); sign in with POST /auth/login")]
    OidcDisabled,
    /// An OpenID provider is configured, so the local form is off.
    #[error("this server signs in through its OpenID provider: GET /auth/login")]
    LocalLoginDisabled,
    /// The provider sent the browser back with an error.
    #[error("the OpenID provider refused the login: {0}")]
    LoginRefused(String),
    /// The callback lacks `code` or `state`.
    #[error("the callback needs `code` and `state`")]
    InvalidCallback,
    /// The `state` is unknown, used or expired.
    #[error("unknown, used or expired login state; start again at /auth/login")]
    InvalidState,
    /// The provider failed or refused the code or token.
    #[error(transparent)]
    Oidc(#[from] OidcError),
    /// Too many failed local logins for this name or address.
    #[error("too many failed logins; try again in {0} s")]
    TooManyAttempts(u64),
    /// Wrong user name or password.
    #[error("wrong user name or password")]
    InvalidLogin,
    /// The user has none of our roles.
    #[error("your account has none of the roles admin, operator or viewer; ask an administrator")]
    NoRole,
    /// The user behind a session or key is gone.
    #[error("invalid or revoked API key")]
    UnknownUser,
    /// No such key (or another owner's).
    #[error("no API key {0}")]
    KeyNotFound(String),
    /// Fields failed validation.
    #[error("{} invalid field(s)", .0.len())]
    Invalid(Vec<FieldError>),
    /// Sessions answer with the server's own errors.
    #[error(transparent)]
    Session(ApiError),
    /// The database or the cipher failed.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<sea_orm::DbErr> for AuthError {
    fn from(e: sea_orm::DbErr) -> Self {
        Self::Unexpected(e.into())
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        let why = e.to_string();
        match e {
            AuthError::OidcDisabled => ApiError::NotFound("oidc-not-configured", why),
            AuthError::LocalLoginDisabled => ApiError::NotFound("local-login-disabled", why),
            AuthError::LoginRefused(_) => ApiError::BadRequest("login-refused", why),
            AuthError::InvalidCallback => ApiError::BadRequest("invalid-callback", why),
            AuthError::InvalidState => ApiError::BadRequest("invalid-state", why),
            AuthError::Oidc(e) => match e {
                OidcError::Unavailable(_) => ApiError::BadGateway("oidc-unavailable", why),
                OidcError::CodeRejected(_) => ApiError::BadRequest("code-rejected", why),
                OidcError::RefreshRejected(_) => ApiError::Unauthorized("session-expired", why),
                OidcError::Expired => ApiError::Unauthorized(
                    "id-token-expired",
                    "the ID token from the OpenID provider has expired; sign in again".into(),
                ),
                OidcError::NonceMismatch => ApiError::Unauthorized("invalid-nonce", why),
                OidcError::Invalid(_) => ApiError::Unauthorized("invalid-id-token", why),
            },
            AuthError::TooManyAttempts(secs) => ApiError::Limited {
                status: actix_web::http::StatusCode::TOO_MANY_REQUESTS,
                code: "too-many-attempts",
                message: why,
                retry_after: secs,
                resets_at: None,
            },
            AuthError::InvalidLogin => ApiError::Unauthorized("invalid-login", why),
            AuthError::NoRole => ApiError::Forbidden("no-role", why),
            AuthError::UnknownUser => ApiError::InvalidCredentials,
            AuthError::KeyNotFound(_) => ApiError::NotFound("api-key-not-found", why),
            AuthError::Invalid(fields) => ApiError::Invalid(fields),
            AuthError::Session(e) => e,
            AuthError::Unexpected(e) => ApiError::Unexpected(e),
        }
    }
}
