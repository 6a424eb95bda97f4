//! Calls to the WhatsApp Business Cloud API (`<base>/<phone_number_id>/messages` and `/media`),
//! with CHANNELS.md §2's error classes. The access token travels in a header only.
use std::time::Duration;

use reqwest::multipart::{Form, Part};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::{Value, json};

use super::WaCredentials;
use crate::channels::{ChannelError, MediaPayload, OutboundMessage, ProviderTemplate, Receipt};

#[derive(Debug, Deserialize)]
struct ErrorEnvelope {
    error: GraphError,
}

#[derive(Debug, Deserialize)]
struct GraphError {
    code: Option<i64>,
    message: Option<String>,
    error_data: Option<ErrorData>,
}

#[derive(Debug, Deserialize)]
struct ErrorData {
    details: Option<String>,
}

/// A Cloud API client bound to one base URL (Graph API with its version, or a fake).
#[derive(Debug, Clone)]
pub struct WhatsAppClient {
    http: reqwest::Client,
    base_url: String,
    throughput_backoff: Duration,
    quality_backoff: Duration,
}

/// Largest media per kind (CHANNELS.md [W-MTYPES]); `None` if WhatsApp cannot send the type.
pub fn media_limit(content_type: &str) -> Option<(&'static str, usize)> {
    const MB: usize = 1024 * 1024;
    match content_type {
        "image/jpeg" | "image/png" => Some(("image", 5 * MB)),
        "image/webp" => Some(("sticker", 500 * 1024)),
        "video/mp4" | "video/3gpp" => Some(("video", 16 * MB)),
        t if t.starts_with("audio/") => Some(("audio", 16 * MB)),
        t if t.starts_with("image/") || t.starts_with("video/") => None,
        _ => Some(("document", 100 * MB)),
    }
}

impl WhatsAppClient {
    /// Builds a client; the two back-offs are how long a number pauses after 130429 and 131048.
    pub fn new(
        base_url: &str,
        timeout: Duration,
        throughput_backoff: Duration,
        quality_backoff: Duration,
    ) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("pregonero/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            throughput_backoff,
            quality_backoff,
        })
    }

    fn url(&self, creds: &WaCredentials, what: &str) -> String {
        format!("{}/{}/{what}", self.base_url, creds.phone_number_id)
    }

    /// Uploads a file to the number's media store (kept 30 days) and returns its media id.
    pub async fn upload_media(
        &self,
        creds: &WaCredentials,
        media: &MediaPayload,
    ) -> Result<String, ChannelError> {
        let part = Part::bytes(media.bytes.to_vec())
            .file_name(media.filename.clone())
            .mime_str(&media.content_type)
            .map_err(|e| ChannelError::Permanent {
                code: "invalid-media",
                detail: e.to_string(),
            })?;
        let form = Form::new()
            .text("messaging_product", "whatsapp")
            .text("type", media.content_type.clone())
            .part("file", part);
        let req = self
            .http
            .post(self.url(creds, "media"))
            .bearer_auth(creds.access_token.expose_secret())
            .multipart(form);
        let value = self.call(req).await?;
        value
            .get("id")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| ChannelError::Transient {
                code: "provider-bad-response",
                detail: "media upload answer without id".into(),
            })
    }

    /// Sends text, an approved template, or media (by a media id from [`Self::upload_media`],
    /// or by a link Meta fetches).
    pub async fn send(
        &self,
        creds: &WaCredentials,
        msg: &OutboundMessage,
        media: Option<MediaRef<'_>>,
    ) -> Result<Receipt, ChannelError> {
        let body = message_body(msg, media);
        let req = self
            .http
            .post(self.url(creds, "messages"))
            .bearer_auth(creds.access_token.expose_secret())
            .json(&body);
        let value = self.call(req).await?;
        let id = value
            .pointer("/messages/0/id")
            .and_then(Value::as_str)
            .filter(|id| !id.is_empty() && id.len() <= 128)
            .ok_or_else(|| ChannelError::Transient {
                code: "provider-bad-response",
                detail: "send answer without messages[0].id".into(),
            })?;
        Ok(Receipt {
            provider_message_id: id.to_owned(),
        })
    }

    async fn call(&self, req: reqwest::RequestBuilder) -> Result<Value, ChannelError> {
        let res = req.send().await.map_err(|e| {
            let e = e.without_url();
            ChannelError::Transient {
                code: if e.is_timeout() {
                    "provider-timeout"
                } else {
                    "network-error"
                },
                detail: e.to_string(),
            }
        })?;
        let status = res.status().as_u16();
        let bytes = res.bytes().await.map_err(|e| ChannelError::Transient {
            code: "network-error",
            detail: e.without_url().to_string(),
        })?;
        if (200..300).contains(&status) {
            return serde_json::from_slice(&bytes).map_err(|e| ChannelError::Transient {
                code: "provider-bad-response",
                detail: format!("non-JSON answer: {e}"),
            });
        }
        let (code, detail) = match serde_json::from_slice::<ErrorEnvelope>(&bytes) {
            Ok(ErrorEnvelope { error }) => {
                let details = error.error_data.and_then(|d| d.details);
                let message = error.message.unwrap_or_default();
                let detail = match details {
                    Some(d) if !d.is_empty() => format!("{message}: {d}"),
                    _ => message,
                };
                (error.code, detail)
            }
            Err(_) => (None, format!("HTTP {status}")),
        };
        Err(classify(
            status,
            code,
            detail,
            self.throughput_backoff,
            self.quality_backoff,
        ))
    }
}

/// How a message names its media (CHANNELS.md [W-MEDIA]: exactly one of `id` and `link`).
#[derive(Debug, Clone, Copy)]
pub enum MediaRef<'a> {
    /// Uploaded to the number's `/media` endpoint.
    Id(&'a str),
    /// A URL Meta downloads.
    Link(&'a str),
}

impl MediaRef<'_> {
    fn object(self) -> Value {
        match self {
            MediaRef::Id(id) => json!({ "id": id }),
            MediaRef::Link(link) => json!({ "link": link }),
        }
    }
}

fn message_body(msg: &OutboundMessage, media_ref: Option<MediaRef<'_>>) -> Value {
    let mut body = json!({
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": msg.recipient,
    });
    if let Some(ProviderTemplate {
        name,
        language,
        params,
    }) = &msg.template
    {
        let mut components = Vec::new();
        if let Some(media_ref) = media_ref
            && let Some(media) = &msg.media
            && let Some((kind, _)) = media_limit(&media.content_type)
        {
            components.push(json!({"type": "header", "parameters": [
                {"type": kind, kind: media_ref.object()}
            ]}));
        }
        if !params.is_empty() {
            let parameters: Vec<_> = params
                .iter()
                .map(|p| json!({"type": "text", "text": p}))
                .collect();
            components.push(json!({"type": "body", "parameters": parameters}));
        }
        body["type"] = json!("template");
        body["template"] = json!({
            "name": name,
            "language": {"code": language},
            "components": components,
        });
        return body;
    }
    match (media_ref, &msg.media) {
        (Some(media_ref), Some(media)) => {
            let kind = media_limit(&media.content_type).map_or("document", |(k, _)| k);
            let kind = if kind == "sticker" { "image" } else { kind };
            let mut object = media_ref.object();
            if !msg.text.is_empty() && kind != "audio" {
                object["caption"] = json!(msg.text);
            }
            if kind == "document" {
                object["filename"] = json!(media.filename);
            }
            body["type"] = json!(kind);
            body[kind] = object;
        }
        _ => {
            body["type"] = json!("text");
            body["text"] = json!({"preview_url": false, "body": msg.text});
        }
    }
    body
}

/// Maps a Graph API error to its scope (CHANNELS.md §2 "Error classes"): branch on `code`,
/// not on the HTTP status.
fn classify(
    status: u16,
    code: Option<i64>,
    detail: String,
    throughput_backoff: Duration,
    quality_backoff: Duration,
) -> ChannelError {
    let permanent = |code: &'static str| ChannelError::Permanent {
        code,
        detail: detail.clone(),
    };
    match code {
        // Throughput (130429) and app call limit (4): pause the whole number.
        Some(130429 | 4) => ChannelError::RateLimited {
            retry_after: throughput_backoff,
        },
        // Pair rate: back off this recipient only (4^X s, counted by the caller).
        Some(131056) => ChannelError::RecipientLimited {
            retry_after: Duration::from_secs(4),
        },
        // Spam / quality limit: slow down.
        Some(131048) => ChannelError::Throttled {
            retry_after: quality_backoff,
        },
        Some(80007 | 131057 | 1 | 2 | 131000 | 131016) => ChannelError::Transient {
            code: "provider-unavailable",
            detail: format!("({}) {detail}", code.unwrap_or_default()),
        },
        Some(131047) => ChannelError::Permanent {
            code: "outside-service-window",
            detail: format!(
                "the contact has not written to this number in the last 24 h, so only an \
                 approved template can be sent ({detail})"
            ),
        },
        Some(131026) => permanent("undeliverable"),
        Some(131049) => permanent("ecosystem-engagement"),
        Some(131050) => permanent("opted-out-of-marketing"),
        Some(131051..=131053) => permanent("invalid-media"),
        Some(100 | 131008 | 131009) => permanent("invalid-parameter"),
        Some(132000..=132999) => permanent("template-error"),
        Some(133010) => permanent("number-not-registered"),
        Some(190 | 0 | 10 | 200..=299 | 368 | 131031 | 131042) => ChannelError::Unauthorized {
            detail: format!("({}) {detail}", code.unwrap_or_default()),
        },
        _ if status == 401 => ChannelError::Unauthorized { detail },
        _ if status == 429 => ChannelError::RateLimited {
            retry_after: throughput_backoff,
        },
        _ if status >= 500 => ChannelError::Transient {
            code: "provider-unavailable",
            detail: format!("HTTP {status}: {detail}"),
        },
        _ => ChannelError::Permanent {
            code: "provider-rejected",
            detail: match code {
                Some(c) => format!("({c}) {detail}"),
                None => detail,
            },
        },
    }
}

/// What a `failed` status webhook's error code means for the message (same table as sends).
pub fn classify_status_error(code: Option<i64>, detail: String) -> ChannelError {
    classify(400, code, detail, Duration::ZERO, Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(code: i64) -> ChannelError {
        classify(
            400,
            Some(code),
            "x".into(),
            Duration::from_secs(1),
            Duration::from_secs(60),
        )
    }

    #[test]
    fn classification_follows_channels_md() {
        assert!(matches!(c(130429), ChannelError::RateLimited { .. }));
        assert!(matches!(c(4), ChannelError::RateLimited { .. }));
        assert!(matches!(c(131056), ChannelError::RecipientLimited { .. }));
        assert!(matches!(c(131048), ChannelError::Throttled { .. }));
        assert_eq!(c(131047).code(), "outside-service-window");
        assert!(!c(131047).is_retryable());
        assert_eq!(c(132001).code(), "template-error");
        assert_eq!(c(131026).code(), "undeliverable");
        for code in [190, 368, 131031] {
            assert!(
                matches!(c(code), ChannelError::Unauthorized { .. }),
                "{code}"
            );
        }
        assert!(c(131000).is_retryable());
        assert!(classify(503, None, "x".into(), Duration::ZERO, Duration::ZERO).is_retryable());
    }

    #[test]
    fn text_template_and_media_bodies() {
        let mut msg = OutboundMessage {
            id: None,
            recipient: "+34600111222".into(),
            text: "Hola".into(),
            parse_mode: None,
            media: None,
            template: None,
        };
        let text = message_body(&msg, None);
        assert_eq!(text["type"], "text");
        assert_eq!(text["text"]["body"], "Hola");
        msg.media = Some(MediaPayload {
            key: "m1".into(),
            bytes: bytes::Bytes::from_static(b"x"),
            content_type: "image/png".into(),
            filename: "a.png".into(),
            link: None,
        });
        let image = message_body(&msg, Some(MediaRef::Id("MID")));
        assert_eq!(image["image"]["id"], "MID");
        assert_eq!(image["image"]["caption"], "Hola");
        msg.template = Some(ProviderTemplate {
            name: "promo".into(),
            language: "es".into(),
            params: vec!["Ana".into()],
        });
        let linked = message_body(
            &msg,
            Some(MediaRef::Link("https://s3.example/a.png?X-Amz-Signature=1")),
        );
        let header = &linked["template"]["components"][0]["parameters"][0]["image"];
        assert_eq!(header["link"], "https://s3.example/a.png?X-Amz-Signature=1");
        assert!(header.get("id").is_none());
        let tpl = message_body(&msg, Some(MediaRef::Id("MID")));
        assert_eq!(
            tpl["template"]["components"][1]["parameters"][0]["text"],
            "Ana"
        );
        assert_eq!(
            tpl["template"]["components"][0]["parameters"][0]["image"]["id"],
            "MID"
        );
    }
}
