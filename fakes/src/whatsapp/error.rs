//! The Graph API error envelope and the WhatsApp error codes the fake gives.

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use rand::Rng;
use rand::distr::Alphanumeric;
use serde_json::json;

/// Invalid OAuth access token (HTTP 401).
pub(super) const AUTH: i64 = 190;
/// Invalid parameter.
pub(super) const INVALID_PARAMETER: i64 = 100;
/// The URL names no known endpoint.
pub(super) const UNKNOWN_PATH: i64 = 2500;
/// Throughput: too many messages from the number.
pub(super) const RATE_LIMIT: i64 = 130_429;
/// Too many messages to one recipient.
pub(super) const PAIR_RATE_LIMIT: i64 = 131_056;
/// Outside the 24 h customer-service window.
pub(super) const RE_ENGAGEMENT: i64 = 131_047;
/// The recipient can't get the message.
pub(super) const UNDELIVERABLE: i64 = 131_026;
/// Media upload / media type error.
pub(super) const MEDIA_UPLOAD: i64 = 131_053;
/// Template parameter count mismatch.
pub(super) const TEMPLATE_PARAMS: i64 = 132_000;
/// No such template in that language.
pub(super) const TEMPLATE_MISSING: i64 = 132_001;

/// Meta's title for `code` (the text after `(#code)` in `message`).
pub(super) fn title(code: i64) -> &'static str {
    match code {
        0 => "AuthException",
        1 => "API Unknown",
        2 => "API Service",
        4 => "API Too Many Calls",
        10 => "Permission Denied",
        AUTH => "Invalid OAuth access token",
        INVALID_PARAMETER => "Invalid parameter",
        368 => "Temporarily blocked for policies violations",
        UNKNOWN_PATH => "Unknown path components",
        80_007 => "Rate limit issues",
        RATE_LIMIT => "Rate limit hit",
        131_000 => "Something went wrong",
        131_008 => "Required parameter is missing",
        131_009 => "Parameter value is not valid",
        131_016 => "Service unavailable",
        UNDELIVERABLE => "Message Undeliverable",
        131_031 => "Account has been locked",
        131_042 => "Business eligibility payment issue",
        RE_ENGAGEMENT => "Re-engagement message",
        131_048 => "Spam rate limit hit",
        131_049 => "This message was not delivered to maintain healthy ecosystem engagement",
        131_050 => "User has stopped marketing messages",
        131_051 => "Unsupported message type",
        131_052 => "Media download error",
        MEDIA_UPLOAD => "Media upload error",
        PAIR_RATE_LIMIT => "(Business Account, Consumer Account) pair rate limit hit",
        131_057 => "Account in maintenance mode",
        TEMPLATE_PARAMS => "Number of parameters does not match the expected number of params",
        TEMPLATE_MISSING => "Template name does not exist in the translation",
        133_010 => "Phone number not registered",
        _ => "Fake injected error",
    }
}

/// Meta-like `fbtrace_id`: 23 random alphanumerics starting with `A`.
fn fbtrace_id() -> String {
    let tail: String = rand::rng()
        .sample_iter(Alphanumeric)
        .take(22)
        .map(char::from)
        .collect();
    format!("A{tail}")
}

/// An error answer: `{"error":{"message":"(#CODE) title","type":"OAuthException","code":CODE,
/// "error_data":{"messaging_product":"whatsapp","details":…},"fbtrace_id":…}}`.
#[derive(Clone, Debug)]
pub(super) struct ApiError {
    /// HTTP status: 400, except 401 for 190 (and whatever [`ApiError::with_status`] says).
    status: u16,
    pub(super) code: i64,
    details: String,
}

impl ApiError {
    /// `code` with HTTP 400 (401 for 190).
    pub(super) fn new(code: i64, details: impl Into<String>) -> Self {
        Self {
            status: if code == AUTH { 401 } else { 400 },
            code,
            details: details.into(),
        }
    }

    /// Error 100 (invalid parameter).
    pub(super) fn invalid(details: impl Into<String>) -> Self {
        Self::new(INVALID_PARAMETER, details)
    }

    /// Error 190 for a missing or wrong token, or an unknown phone number id.
    pub(super) fn auth() -> Self {
        Self::new(
            AUTH,
            "Invalid OAuth access token - Cannot parse access token",
        )
    }

    /// Overrides the HTTP status (injected failures).
    pub(super) fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    pub(super) fn respond(&self) -> HttpResponse {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST);
        HttpResponse::build(status).json(json!({
            "error": {
                "message": format!("(#{}) {}", self.code, title(self.code)),
                "type": "OAuthException",
                "code": self.code,
                "error_data": {
                    "messaging_product": "whatsapp",
                    "details": self.details,
                },
                "fbtrace_id": fbtrace_id(),
            }
        }))
    }
}
