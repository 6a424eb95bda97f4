//! The webhook kind: a URL and a signing secret; any string as the recipient (the receiver
//! decides what it means); JSON POSTs, paced per account like any other kind.
use std::{sync::Arc, time::Duration};

use futures::future::BoxFuture;
use reqwest::{StatusCode, Url, header};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::{
    guard::{self, Guarded},
    sign::{SIGNATURE_HEADER, signature},
};
use crate::{
    channels::{
        ChannelError, OutboundMessage, Receipt,
        adapter::{self, Address, ChannelAdapter, Connection, LimitsInput, NewAccount, SetupError},
    },
    config::Settings,
    pacing::{LimitScope, PacingLimits},
};

/// The kind's name.
pub const KIND: &str = "webhook";
/// Posts per second to one URL unless the account says otherwise.
const DEFAULT_PER_SECOND: u32 = 20;
/// One POST's time limit (a timeout is retried with backoff).
const TIMEOUT: Duration = Duration::from_secs(10);
/// The longest recipient (`to`) a webhook message may carry.
const MAX_RECIPIENT: usize = 256;

/// Outgoing webhooks.
pub struct WebhookAdapter {
    /// Refuses hosts that resolve to this server's own networks.
    guarded: reqwest::Client,
    /// For accounts created with `allow_private_network`.
    open: reqwest::Client,
}

impl WebhookAdapter {
    /// An adapter with its two HTTP clients (neither follows redirects: a redirect could lead
    /// to a private address).
    pub fn new() -> anyhow::Result<Self> {
        let client = |allow_private| {
            reqwest::Client::builder()
                .timeout(TIMEOUT)
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!("Pregonero/", env!("CARGO_PKG_VERSION"), " webhook"))
                .dns_resolver(Arc::new(Guarded { allow_private }))
                .build()
        };
        Ok(Self {
            guarded: client(false)?,
            open: client(true)?,
        })
    }

    fn hook(&self, stored: Stored) -> anyhow::Result<Hook> {
        let url = Url::parse(&stored.url)?;
        guard::check_url(&url, stored.allow_private_network).map_err(anyhow::Error::msg)?;
        Ok(Hook {
            client: if stored.allow_private_network {
                self.open.clone()
            } else {
                self.guarded.clone()
            },
            url,
            secret: stored.secret,
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Fields {
    url: Option<String>,
    secret: Option<String>,
    allow_private_network: Option<bool>,
}

/// What is stored, encrypted.
#[derive(Serialize, Deserialize)]
struct Stored {
    url: String,
    secret: String,
    allow_private_network: bool,
}

impl ChannelAdapter for WebhookAdapter {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn address(&self) -> Address {
        Address::Any
    }

    fn setup<'a>(
        &'a self,
        fields: Map<String, Value>,
    ) -> BoxFuture<'a, Result<NewAccount, SetupError>> {
        Box::pin(async move {
            let f: Fields = adapter::fields(fields)?;
            let allow = f.allow_private_network.unwrap_or(false);
            let raw = f.url.unwrap_or_default();
            let url = Url::parse(&raw)
                .ok()
                .filter(|u| raw.len() <= 2048 && matches!(u.scheme(), "http" | "https"))
                .ok_or_else(|| {
                    SetupError::Invalid(
                        "invalid-webhook-url",
                        "url must be an absolute http:// or https:// URL of at most 2048 characters"
                            .into(),
                    )
                })?;
            guard::check_url(&url, allow)
                .map_err(|why| SetupError::Invalid("webhook-url-forbidden", why))?;
            if !allow && let Some(host) = url.host_str() {
                // A name is checked now for a clear answer, and again at every connection.
                let port = url.port_or_known_default().unwrap_or(80);
                let addrs: Vec<_> = tokio::net::lookup_host((host, port))
                    .await
                    .map(|a| a.collect())
                    .unwrap_or_default();
                if !addrs.is_empty() && !addrs.iter().any(|a| guard::public(a.ip())) {
                    return Err(SetupError::Invalid(
                        "webhook-url-forbidden",
                        format!(
                            "{host} resolves only to loopback, private, link-local or reserved \
                             addresses; set allow_private_network to send there"
                        ),
                    ));
                }
            }
            let secret = match f.secret {
                Some(s)
                    if (16..=256).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_graphic()) =>
                {
                    s
                }
                Some(_) => {
                    return Err(SetupError::Invalid(
                        "invalid-signing-secret",
                        "secret must be 16 to 256 printable ASCII characters".into(),
                    ));
                }
                None => format!("whsec_{}", crate::crypto::random_urlsafe(32)),
            };
            let stored = Stored {
                url: url.to_string(),
                secret: secret.clone(),
                allow_private_network: allow,
            };
            let credentials = serde_json::to_string(&stored)
                .map_err(|e| SetupError::Invalid("invalid-channel-fields", e.to_string()))?;
            let hook = self
                .hook(stored)
                .map_err(|e| SetupError::Invalid("invalid-webhook-url", e.to_string()))?;
            let mut reveal = Map::new();
            reveal.insert("signing_secret".into(), Value::String(secret));
            Ok(NewAccount {
                credentials,
                external_id: Some(url.host_str().unwrap_or_default().to_owned()),
                username: None,
                reveal,
                connection: Arc::new(hook),
            })
        })
    }

    fn connect(&self, credentials: &str) -> anyhow::Result<Arc<dyn Connection>> {
        let stored: Stored = serde_json::from_str(credentials)
            .map_err(|_| anyhow::anyhow!("stored webhook credentials are not valid JSON"))?;
        Ok(Arc::new(self.hook(stored)?))
    }

    fn limits(&self, o: &LimitsInput, s: &Settings) -> PacingLimits {
        PacingLimits {
            account_per_sec: o.per_second.unwrap_or(DEFAULT_PER_SECOND),
            account_burst: o.burst.unwrap_or(1),
            recipient_interval: Duration::ZERO,
            group_per_min: 60,
            margin: Duration::from_millis(s.delivery.pacing_margin_ms),
            recipient_margin: Duration::ZERO,
            daily_cap: o.per_day.unwrap_or(0),
            gap: None,
        }
    }

    fn recipient(&self, to: &str) -> Result<String, String> {
        if to.is_empty() || to.len() > MAX_RECIPIENT || to.chars().any(char::is_control) {
            return Err(format!(
                "a webhook recipient is 1 to {MAX_RECIPIENT} characters without control characters"
            ));
        }
        Ok(to.to_owned())
    }

    fn contact_address(&self, phone: &str, _: Option<&str>) -> Result<String, &'static str> {
        Ok(phone.to_owned())
    }
}

/// One account's endpoint.
struct Hook {
    client: reqwest::Client,
    url: Url,
    secret: String,
}

/// The `parse_mode` of a message whose text is a JSON document to post as it is (status
/// events are made so).
pub const RAW_JSON: &str = "application/json";

/// The JSON each message is posted as.
fn payload(msg: &OutboundMessage) -> Value {
    if msg.parse_mode.as_deref() == Some(RAW_JSON)
        && let Ok(doc) = serde_json::from_str::<Value>(&msg.text)
    {
        return doc;
    }
    json!({
        "type": "message",
        "id": msg.id,
        "to": msg.recipient,
        "text": msg.text,
        "parse_mode": msg.parse_mode,
        "media": msg.media.as_ref().map(|m| json!({
            "id": m.key,
            "content_type": m.content_type,
            "filename": m.filename,
            "size": m.bytes.len(),
            "url": m.link,
        })),
        "sent_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    })
}

/// Whether `e` (or what caused it) is the guard refusing a private address.
fn refused_by_guard(e: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.to_string().contains(guard::REFUSED) {
            return true;
        }
        source = err.source();
    }
    false
}

impl Connection for Hook {
    fn send<'a>(
        &'a self,
        msg: &'a OutboundMessage,
    ) -> BoxFuture<'a, Result<Receipt, ChannelError>> {
        Box::pin(async move {
            let body = serde_json::to_vec(&payload(msg)).map_err(|e| ChannelError::Permanent {
                code: "invalid-payload",
                detail: e.to_string(),
            })?;
            let t = chrono::Utc::now().timestamp();
            let mut req = self
                .client
                .post(self.url.clone())
                .header(header::CONTENT_TYPE, "application/json")
                .header(
                    SIGNATURE_HEADER,
                    signature(self.secret.as_bytes(), t, &body),
                );
            if let Some(id) = &msg.id {
                req = req.header("X-Pregonero-Message-Id", id.as_str());
            }
            let res = match req.body(body).send().await {
                Ok(res) => res,
                Err(e) if refused_by_guard(&e) => {
                    return Err(ChannelError::Permanent {
                        code: "webhook-url-forbidden",
                        detail: guard::REFUSED.into(),
                    });
                }
                Err(e) => {
                    return Err(ChannelError::Transient {
                        code: if e.is_timeout() {
                            "webhook-timeout"
                        } else {
                            "webhook-unreachable"
                        },
                        detail: e.without_url().to_string(),
                    });
                }
            };
            let status = res.status();
            if status.is_success() {
                return Ok(Receipt {
                    provider_message_id: msg
                        .id
                        .as_ref()
                        .map_or_else(|| format!("http-{}", status.as_u16()), ToString::to_string),
                });
            }
            let detail = format!("the endpoint answered HTTP {}", status.as_u16());
            Err(match status {
                StatusCode::TOO_MANY_REQUESTS => ChannelError::RateLimited {
                    retry_after: res
                        .headers()
                        .get(header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map_or(Duration::from_secs(1), |s| {
                            Duration::from_secs(s.clamp(1, 3600))
                        }),
                },
                StatusCode::REQUEST_TIMEOUT | StatusCode::TOO_EARLY => ChannelError::Transient {
                    code: "webhook-server-error",
                    detail,
                },
                s if s.is_server_error() => ChannelError::Transient {
                    code: "webhook-server-error",
                    detail,
                },
                StatusCode::GONE => ChannelError::Permanent {
                    code: "webhook-gone",
                    detail,
                },
                _ => ChannelError::Permanent {
                    code: "webhook-rejected",
                    detail,
                },
            })
        })
    }

    // A receiver's 429 is about the endpoint, not one recipient.
    fn rate_limit_scope(&self) -> LimitScope {
        LimitScope::Account
    }
}
