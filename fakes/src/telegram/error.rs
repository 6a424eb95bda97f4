//! Telegram's error envelope.

use std::fmt::Display;
use std::time::Duration;

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use serde_json::{Value, json};

/// An error answer: HTTP status == `error_code`.
#[derive(Debug)]
pub(super) struct ApiError {
    code: u16,
    description: String,
    parameters: Option<Value>,
}

impl ApiError {
    pub(super) fn new(code: u16, description: impl Into<String>) -> Self {
        Self {
            code,
            description: description.into(),
            parameters: None,
        }
    }

    pub(super) fn bad_request(detail: impl Display) -> Self {
        Self::new(400, format!("Bad Request: {detail}"))
    }

    pub(super) fn chat_not_found() -> Self {
        Self::bad_request("chat not found")
    }

    /// 429 with `retry_after` = the wait rounded up to whole seconds, at least 1.
    pub(super) fn too_many_requests(wait: Duration) -> Self {
        let secs = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
        Self {
            code: 429,
            description: format!("Too Many Requests: retry after {secs}"),
            parameters: Some(json!({ "retry_after": secs })),
        }
    }

    /// An injected failure with `status` (its canonical reason as description; a 429 gets
    /// Telegram's 429 shape with `retry_after` 1).
    pub(super) fn injected(status: u16) -> Self {
        if status == 429 {
            return Self::too_many_requests(Duration::from_secs(1));
        }
        let reason = StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("Internal Server Error");
        Self::new(status, reason)
    }

    pub(super) fn respond(&self) -> HttpResponse {
        let status = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut body = json!({
            "ok": false,
            "error_code": self.code,
            "description": self.description,
        });
        if let (Some(parameters), Some(obj)) = (&self.parameters, body.as_object_mut()) {
            obj.insert("parameters".to_owned(), parameters.clone());
        }
        HttpResponse::build(status).json(body)
    }
}
