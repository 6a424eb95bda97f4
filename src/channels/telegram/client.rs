//! Calls to `<base>/bot<token>/<method>`; the token never reaches a log or an error message.
use std::time::Duration;

use reqwest::multipart::{Form, Part};
use serde::Deserialize;
use serde_json::{Value, json};

use super::Update;
use crate::channels::{ChannelError, OutboundMessage, Receipt};

/// `getMe`'s answer, the parts we keep.
#[derive(Debug, Clone, Deserialize)]
pub struct BotUser {
    /// The bot's user id.
    pub id: i64,
    /// The bot's @username (without @).
    pub username: Option<String>,
    /// Display name.
    pub first_name: String,
}

#[derive(Debug, Deserialize)]
struct Envelope {
    ok: bool,
    result: Option<Value>,
    error_code: Option<u16>,
    description: Option<String>,
    parameters: Option<ResponseParameters>,
}

#[derive(Debug, Deserialize)]
struct ResponseParameters {
    retry_after: Option<u64>,
    migrate_to_chat_id: Option<i64>,
}

/// A Bot API client bound to one base URL (the real one, a local Bot API server, or a fake).
#[derive(Debug, Clone)]
pub struct TelegramClient {
    http: reqwest::Client,
    base_url: String,
}

impl TelegramClient {
    /// Builds a client with the given per-call timeout.
    pub fn new(base_url: &str, timeout: Duration) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("pregonero/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
        })
    }

    fn url(&self, token: &str, method: &str) -> String {
        format!("{}/bot{}/{}", self.base_url, token, method)
    }

    /// Checks a token and returns the bot it belongs to.
    pub async fn get_me(&self, token: &str) -> Result<BotUser, ChannelError> {
        let req = self.http.get(self.url(token, "getMe"));
        let result = self.call(req).await?;
        serde_json::from_value(result).map_err(|e| ChannelError::Transient {
            code: "provider-bad-response",
            detail: format!("getMe result: {e}"),
        })
    }

    /// Long-polls for updates after `offset`, waiting up to `timeout` seconds for one.
    pub async fn get_updates(
        &self,
        token: &str,
        offset: Option<i64>,
        timeout: u64,
    ) -> Result<Vec<Update>, ChannelError> {
        let mut body = json!({
            "timeout": timeout,
            "limit": 100,
            "allowed_updates": ["message", "my_chat_member"],
        });
        if let Some(offset) = offset {
            body["offset"] = json!(offset);
        }
        let req = self
            .http
            .post(self.url(token, "getUpdates"))
            .timeout(Duration::from_secs(timeout + 15))
            .json(&body);
        let result = self.call(req).await?;
        serde_json::from_value(result).map_err(|e| ChannelError::Transient {
            code: "provider-bad-response",
            detail: format!("getUpdates result: {e}"),
        })
    }

    /// Registers `url` as the bot's webhook; Telegram echoes `secret` in
    /// `X-Telegram-Bot-Api-Secret-Token` on every call.
    pub async fn set_webhook(
        &self,
        token: &str,
        url: &str,
        secret: &str,
    ) -> Result<(), ChannelError> {
        let body = json!({
            "url": url,
            "secret_token": secret,
            "allowed_updates": ["message", "my_chat_member"],
        });
        let req = self.http.post(self.url(token, "setWebhook")).json(&body);
        self.call(req).await.map(|_| ())
    }

    /// Removes the bot's webhook (so `getUpdates` works); pending updates are kept.
    pub async fn delete_webhook(&self, token: &str) -> Result<(), ChannelError> {
        let req = self
            .http
            .post(self.url(token, "deleteWebhook"))
            .json(&json!({"drop_pending_updates": false}));
        self.call(req).await.map(|_| ())
    }

    /// Sends text, or a photo/document with caption when the message carries media.
    pub async fn send(&self, token: &str, msg: &OutboundMessage) -> Result<Receipt, ChannelError> {
        let req = match &msg.media {
            None => {
                let mut body = json!({"chat_id": msg.recipient, "text": msg.text});
                if let Some(mode) = &msg.parse_mode {
                    body["parse_mode"] = json!(mode);
                }
                self.http.post(self.url(token, "sendMessage")).json(&body)
            }
            Some(media) => {
                let (method, field) = if media.content_type.starts_with("image/") {
                    ("sendPhoto", "photo")
                } else {
                    ("sendDocument", "document")
                };
                let part = Part::bytes(media.bytes.to_vec())
                    .file_name(media.filename.clone())
                    .mime_str(&media.content_type)
                    .map_err(|e| ChannelError::Permanent {
                        code: "invalid-media",
                        detail: e.to_string(),
                    })?;
                let mut form = Form::new()
                    .text("chat_id", msg.recipient.clone())
                    .part(field, part);
                if !msg.text.is_empty() {
                    form = form.text("caption", msg.text.clone());
                }
                if let Some(mode) = &msg.parse_mode {
                    form = form.text("parse_mode", mode.clone());
                }
                self.http.post(self.url(token, method)).multipart(form)
            }
        };
        let result = self.call(req).await?;
        let id = result
            .get("message_id")
            .and_then(Value::as_i64)
            .ok_or_else(|| ChannelError::Transient {
                code: "provider-bad-response",
                detail: "Message without message_id".into(),
            })?;
        Ok(Receipt {
            provider_message_id: id.to_string(),
        })
    }

    async fn call(&self, req: reqwest::RequestBuilder) -> Result<Value, ChannelError> {
        let res = req.send().await.map_err(|e| {
            // `without_url` keeps the bot token (part of the URL) out of the error text.
            let e = e.without_url();
            let code = if e.is_timeout() {
                "provider-timeout"
            } else {
                "network-error"
            };
            ChannelError::Transient {
                code,
                detail: e.to_string(),
            }
        })?;
        let status = res.status();
        let bytes = res.bytes().await.map_err(|e| ChannelError::Transient {
            code: "network-error",
            detail: e.without_url().to_string(),
        })?;
        let envelope: Envelope = match serde_json::from_slice(&bytes) {
            Ok(env) => env,
            Err(_) => return Err(classify(status.as_u16(), "non-JSON answer", None)),
        };
        if envelope.ok {
            return Ok(envelope.result.unwrap_or(Value::Null));
        }
        let code = envelope.error_code.unwrap_or(status.as_u16());
        let description = envelope.description.unwrap_or_default();
        Err(classify(code, &description, envelope.parameters.as_ref()))
    }
}

/// Maps a Bot API error to its scope, matching on substrings as CHANNELS.md advises.
fn classify(code: u16, description: &str, params: Option<&ResponseParameters>) -> ChannelError {
    let detail = description.to_owned();
    let lower = description.to_ascii_lowercase();
    if let Some(new_chat_id) = params.and_then(|p| p.migrate_to_chat_id) {
        return ChannelError::Migrated { new_chat_id };
    }
    match code {
        429 => {
            let secs = params.and_then(|p| p.retry_after).unwrap_or(1).max(1);
            ChannelError::RateLimited {
                retry_after: Duration::from_secs(secs),
            }
        }
        401 => ChannelError::Unauthorized { detail },
        403 => {
            let code = if lower.contains("blocked") {
                "bot-blocked"
            } else if lower.contains("deactivated") {
                "user-deactivated"
            } else if lower.contains("kicked") {
                "bot-kicked"
            } else {
                "forbidden"
            };
            ChannelError::Permanent { code, detail }
        }
        400 => {
            let code = if lower.contains("chat not found") {
                "chat-not-found"
            } else if lower.contains("parse entities") {
                "invalid-markup"
            } else if lower.contains("too long") {
                "text-too-long"
            } else if lower.contains("file") || lower.contains("url") || lower.contains("photo") {
                "invalid-media"
            } else {
                "bad-request"
            };
            ChannelError::Permanent { code, detail }
        }
        409 => ChannelError::Permanent {
            code: "conflict",
            detail,
        },
        413 => ChannelError::Permanent {
            code: "media-too-large",
            detail,
        },
        500..=599 => ChannelError::Transient {
            code: "provider-unavailable",
            detail: format!("{code} {detail}"),
        },
        _ => ChannelError::Permanent {
            code: "provider-rejected",
            detail: format!("{code} {detail}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_follows_channels_md() {
        let p = ResponseParameters {
            retry_after: Some(5),
            migrate_to_chat_id: None,
        };
        assert!(matches!(
            classify(429, "Too Many Requests: retry after 5", Some(&p)),
            ChannelError::RateLimited { retry_after } if retry_after == Duration::from_secs(5)
        ));
        assert_eq!(
            classify(400, "Bad Request: chat not found", None).code(),
            "chat-not-found"
        );
        assert_eq!(
            classify(403, "Forbidden: bot was blocked by the user", None).code(),
            "bot-blocked"
        );
        assert_eq!(
            classify(403, "Unauthorized: bot was blocked by the user", None).code(),
            "bot-blocked"
        );
        assert!(classify(502, "Bad Gateway", None).is_retryable());
        assert!(!classify(400, "Bad Request: message is too long", None).is_retryable());
        assert!(matches!(
            classify(401, "Unauthorized", None),
            ChannelError::Unauthorized { .. }
        ));
    }
}
