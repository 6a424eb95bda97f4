//! Shared error plumbing: the error body (RFC 9457 problem details) and `error_chain_fmt`.
use actix_web::{HttpResponse, ResponseError, http::StatusCode};
use serde::Serialize;

/// Media type of every error answer (RFC 9457).
pub const PROBLEM_JSON: &str = "application/problem+json";

/// The body of every 4xx/5xx answer: RFC 9457 problem details (`type`, `title`, `status`,
/// `detail`; `instance`, the request's id as `urn:uuid:…`, is added on the way out), with our
/// stable kebab-case `error` code and `message` (the same text as `detail`) as extension members.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody<'a> {
    /// `urn:pregonero:problem:<error>`: the problem type, one per code.
    #[serde(rename = "type")]
    pub kind: String,
    /// The status's reason phrase (the same for every occurrence of a code).
    pub title: &'static str,
    /// The HTTP status.
    pub status: u16,
    /// What happened this time.
    pub detail: String,
    /// Stable machine-readable code, e.g. `channel-not-found`.
    pub error: &'a str,
    /// Human-readable explanation (as `detail`; kept for the clients written before it).
    pub message: String,
    /// Seconds to wait before retrying (429 and 503 answers; also in `Retry-After`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
    /// When an exhausted quota starts again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resets_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Field-level problems (`validation-failed`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
}

/// One invalid field of a request.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct FieldError {
    /// JSON path of the field, e.g. `service` or `[3].timestamp`.
    pub field: String,
    /// Stable code: `required`, `invalid-type`, `invalid-format`, `too-long`, `too-large`,
    /// `invalid-characters`, `in-future`, `too-old`, `unknown-field`.
    pub code: &'static str,
    /// What is wrong.
    pub message: String,
}

impl FieldError {
    /// `field` is wrong (`code`): `message`.
    pub fn new(field: impl Into<String>, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            code,
            message: message.into(),
        }
    }
}

impl<'a> ErrorBody<'a> {
    /// A body with only a status, a code and a message.
    pub fn new(status: StatusCode, error: &'a str, message: impl Into<String>) -> Self {
        let message = message.into();
        Self {
            kind: format!("urn:pregonero:problem:{error}"),
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail: message.clone(),
            error,
            message,
            retry_after: None,
            resets_at: None,
            errors: None,
        }
    }

    /// The answer: this body as `application/problem+json`, with `status`.
    pub fn respond(&self) -> HttpResponse {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        HttpResponse::build(status)
            .content_type(PROBLEM_JSON)
            .body(self.json())
    }

    fn json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Writes an error and its chain of causes, one per line (for `Debug`).
pub fn error_chain_fmt(
    e: &impl std::error::Error,
    f: &mut std::fmt::Formatter<'_>,
) -> std::fmt::Result {
    writeln!(f, "{e}")?;
    let mut current = e.source();
    while let Some(cause) = current {
        writeln!(f, "Caused by:\n\t{cause}")?;
        current = cause.source();
    }
    Ok(())
}

/// Errors shared by every route: auth, request shape, and the unexpected.
#[derive(thiserror::Error)]
pub enum ApiError {
    /// No or malformed `Authorization` header.
    #[error("missing or malformed Authorization header; send `Authorization: Bearer <api key>`")]
    MissingCredentials,
    /// The key is unknown or revoked.
    #[error("invalid or revoked API key")]
    InvalidCredentials,
    /// The credentials were recognised but cannot be used (expired, revoked, wrong kind).
    #[error("{1}")]
    Unauthorized(&'static str, String),
    /// Authenticated, but not allowed to do this.
    #[error("{1}")]
    Forbidden(&'static str, String),
    /// Over a limit: 429 (quota, rate) or 503 (server saturated), with `Retry-After`.
    #[error("{message}")]
    Limited {
        /// 429 or 503.
        status: StatusCode,
        /// Stable code.
        code: &'static str,
        /// What happened and when to come back.
        message: String,
        /// Seconds until a retry may succeed.
        retry_after: u64,
        /// When a quota resets, if that is the limit.
        resets_at: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// Request body or parameters are not what the route takes.
    #[error("{1}")]
    BadRequest(&'static str, String),
    /// Fields failed validation (400 `validation-failed` with the list).
    #[error("{} invalid field(s)", .0.len())]
    Invalid(Vec<FieldError>),
    /// A well-formed request that fails a rule.
    #[error("{1}")]
    Unprocessable(&'static str, String),
    /// The resource does not exist or belongs to someone else.
    #[error("{1}")]
    NotFound(&'static str, String),
    /// The request conflicts with the current state.
    #[error("{1}")]
    Conflict(&'static str, String),
    /// Body too large.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// A provider (Telegram, WhatsApp) could not be reached or answered badly.
    #[error("{1}")]
    BadGateway(&'static str, String),
    /// A bug or an unreachable backend; the cause is logged, not returned.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl std::fmt::Debug for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        error_chain_fmt(self, f)
    }
}

impl ApiError {
    /// `503` with `Retry-After`: the server cannot take the request now (a backend down, a queue
    /// full); nothing was kept, and the same request may succeed after `retry_after` seconds.
    pub fn unavailable(code: &'static str, message: impl Into<String>, retry_after: u64) -> Self {
        ApiError::Limited {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code,
            message: message.into(),
            retry_after,
            resets_at: None,
        }
    }

    /// The stable code sent as `error`.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::MissingCredentials => "missing-credentials",
            ApiError::InvalidCredentials => "invalid-credentials",
            ApiError::Unauthorized(code, _)
            | ApiError::Forbidden(code, _)
            | ApiError::Limited { code, .. }
            | ApiError::BadRequest(code, _)
            | ApiError::Unprocessable(code, _)
            | ApiError::NotFound(code, _)
            | ApiError::Conflict(code, _)
            | ApiError::BadGateway(code, _) => code,
            ApiError::PayloadTooLarge(_) => "payload-too-large",
            ApiError::Invalid(_) => "validation-failed",
            ApiError::Unexpected(_) => "internal-error",
        }
    }
}

impl From<sea_orm::DbErr> for ApiError {
    fn from(e: sea_orm::DbErr) -> Self {
        ApiError::Unexpected(anyhow::Error::new(e).context("database error"))
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::MissingCredentials
            | ApiError::InvalidCredentials
            | ApiError::Unauthorized(..) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(..) => StatusCode::FORBIDDEN,
            ApiError::Limited { status, .. } => *status,
            ApiError::BadRequest(..) | ApiError::Invalid(_) => StatusCode::BAD_REQUEST,
            ApiError::Unprocessable(..) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::NotFound(..) => StatusCode::NOT_FOUND,
            ApiError::Conflict(..) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BadGateway(..) => StatusCode::BAD_GATEWAY,
            ApiError::Unexpected(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let message = match self {
            ApiError::Unexpected(e) => {
                tracing::error!(error = ?e, "request failed");
                "internal error; see the server log for the request id".to_owned()
            }
            other => other.to_string(),
        };
        let mut res = HttpResponse::build(self.status_code());
        if matches!(
            self,
            ApiError::MissingCredentials
                | ApiError::InvalidCredentials
                | ApiError::Unauthorized(..)
        ) {
            res.insert_header(("WWW-Authenticate", "Bearer"));
        }
        let mut body = ErrorBody::new(self.status_code(), self.code(), message);
        if let ApiError::Invalid(errors) = self {
            body.errors = Some(errors.clone());
        }
        if let ApiError::Limited {
            retry_after,
            resets_at,
            ..
        } = self
        {
            res.insert_header(("Retry-After", retry_after.to_string()));
            body.retry_after = Some(*retry_after);
            body.resets_at = *resets_at;
        }
        res.content_type(PROBLEM_JSON).body(body.json())
    }
}

/// Turns actix's JSON extractor errors into `400 invalid-json` with our body shape.
pub fn json_error_handler(
    err: actix_web::error::JsonPayloadError,
    _: &actix_web::HttpRequest,
) -> actix_web::Error {
    use actix_web::error::JsonPayloadError as J;
    let api = match &err {
        J::OverflowKnownLength { .. } | J::Overflow { .. } => {
            ApiError::PayloadTooLarge(err.to_string())
        }
        J::ContentType => ApiError::BadRequest(
            "unsupported-media-type",
            "expected Content-Type: application/json".into(),
        ),
        J::Deserialize(e) if e.is_data() => ApiError::Unprocessable("invalid-body", e.to_string()),
        _ => ApiError::BadRequest("invalid-json", err.to_string()),
    };
    api.into()
}

/// Turns query-string extractor errors into `400 invalid-query`.
pub fn query_error_handler(
    err: actix_web::error::QueryPayloadError,
    _: &actix_web::HttpRequest,
) -> actix_web::Error {
    ApiError::BadRequest("invalid-query", err.to_string()).into()
}

/// Turns path extractor errors into `404 not-found`.
pub fn path_error_handler(
    err: actix_web::error::PathError,
    _: &actix_web::HttpRequest,
) -> actix_web::Error {
    ApiError::NotFound("not-found", err.to_string()).into()
}
