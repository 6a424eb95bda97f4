//! The WhatsApp Cloud API kind: a number's ids and secrets, E.164 phones as addresses, media
//! uploaded once per number, the callback path Meta is given.
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::future::BoxFuture;
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::{MediaRef, WaCredentials, WhatsAppClient, media_limit};
use crate::domain::ChannelId;
use crate::{
    channels::{
        ChannelError, MediaPayload, OutboundMessage, Receipt,
        adapter::{self, Address, ChannelAdapter, Connection, LimitsInput, NewAccount, SetupError},
    },
    config::Settings,
    pacing::{LimitScope, PacingLimits},
};

/// The kind's name.
pub const KIND: &str = "whatsapp_cloud";

/// WhatsApp's per-recipient margin: Meta's pair rate is approximate ("about 1 per 6 s"), so it
/// gets more room than `delivery.recipient_margin_ms` alone.
pub const PAIR_RATE_MARGIN: Duration = Duration::from_millis(250);

/// WhatsApp Business Cloud API numbers.
pub struct WhatsAppCloudAdapter {
    client: WhatsAppClient,
}

impl WhatsAppCloudAdapter {
    /// An adapter whose numbers use `client`.
    pub fn new(client: WhatsAppClient) -> Self {
        Self { client }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Fields {
    phone_number_id: Option<String>,
    access_token: Option<String>,
    app_secret: Option<String>,
    verify_token: Option<String>,
}

impl ChannelAdapter for WhatsAppCloudAdapter {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn address(&self) -> Address {
        Address::Phone
    }

    fn setup<'a>(
        &'a self,
        fields: Map<String, Value>,
    ) -> BoxFuture<'a, Result<NewAccount, SetupError>> {
        Box::pin(async move {
            let f: Fields = adapter::fields(fields)?;
            let creds = whatsapp_credentials(
                f.phone_number_id,
                f.access_token,
                f.app_secret,
                f.verify_token,
            )?;
            let mut reveal = Map::new();
            reveal.insert(
                "verify_token".into(),
                Value::String(creds.verify_token.expose_secret().to_owned()),
            );
            let credentials = creds.to_json();
            Ok(NewAccount {
                external_id: Some(creds.phone_number_id.clone()),
                username: None,
                reveal,
                connection: Arc::new(Number::new(creds, self.client.clone())),
                credentials,
            })
        })
    }

    fn connect(&self, credentials: &str) -> anyhow::Result<Arc<dyn Connection>> {
        let creds = WaCredentials::from_json(credentials)?;
        Ok(Arc::new(Number::new(creds, self.client.clone())))
    }

    fn limits(&self, o: &LimitsInput, s: &Settings) -> PacingLimits {
        PacingLimits {
            account_per_sec: o.per_second.unwrap_or(s.whatsapp.number_rate_per_sec),
            account_burst: o.burst.unwrap_or(s.whatsapp.number_burst),
            recipient_interval: Duration::from_secs(
                o.per_recipient_interval_secs
                    .unwrap_or(s.whatsapp.recipient_interval_secs),
            ),
            group_per_min: 1,
            margin: Duration::from_millis(s.delivery.pacing_margin_ms),
            recipient_margin: Duration::from_millis(s.delivery.recipient_margin_ms)
                .max(PAIR_RATE_MARGIN),
            daily_cap: o.per_day.unwrap_or(0),
            gap: None,
        }
    }

    fn recipient(&self, to: &str) -> Result<String, String> {
        crate::channels::whatsapp::e164_recipient(to)
    }

    fn contact_address(&self, phone: &str, _: Option<&str>) -> Result<String, &'static str> {
        Ok(phone.to_owned())
    }

    fn provider_templates(&self) -> bool {
        true
    }

    fn aliases(&self) -> &'static [&'static str] {
        &["whatsapp"]
    }

    /// [W-MTYPES]: 5 MB images, 16 MB video and audio, 100 MB documents.
    fn media_limit(&self, content_type: &str) -> Result<Option<u64>, String> {
        media_limit(content_type)
            .map(|(_, max)| Some(max as u64))
            .ok_or_else(|| {
                format!(
                    "WhatsApp cannot send {content_type}: images must be JPEG or PNG, videos MP4 or 3GPP"
                )
            })
    }

    fn check_media(&self, content_type: &str, size: u64) -> Result<(), (&'static str, String)> {
        match media_limit(content_type) {
            Some((_, max)) if size <= max as u64 => Ok(()),
            Some((kind, max)) => Err((
                "media-too-large",
                format!("WhatsApp sends a {kind} of at most {max} bytes"),
            )),
            None => Err((
                "media-type-unsupported",
                format!("WhatsApp cannot send {content_type}"),
            )),
        }
    }

    fn webhook_path(&self, channel_id: &ChannelId) -> Option<String> {
        Some(format!("/whatsapp/webhook/{channel_id}"))
    }
}

/// Validates a Cloud API number's fields; a missing verify token is generated.
fn whatsapp_credentials(
    phone_number_id: Option<String>,
    access_token: Option<String>,
    app_secret: Option<String>,
    verify_token: Option<String>,
) -> Result<WaCredentials, SetupError> {
    let invalid = |code: &'static str, why: &str| Err(SetupError::Invalid(code, why.into()));
    let phone_number_id = phone_number_id.unwrap_or_default();
    if phone_number_id.is_empty()
        || phone_number_id.len() > 32
        || !phone_number_id.bytes().all(|b| b.is_ascii_digit())
    {
        return invalid(
            "invalid-phone-number-id",
            "phone_number_id must be the numeric id Meta shows for the number",
        );
    }
    let printable =
        |s: &str| !s.is_empty() && s.len() <= 1024 && s.bytes().all(|b| b.is_ascii_graphic());
    let access_token = access_token.unwrap_or_default();
    if !printable(&access_token) {
        return invalid(
            "invalid-access-token",
            "access_token is required (a system-user token)",
        );
    }
    let app_secret = app_secret.unwrap_or_default();
    if !printable(&app_secret) {
        return invalid(
            "invalid-app-secret",
            "app_secret is required (it signs webhook calls)",
        );
    }
    let verify_token = match verify_token {
        Some(t) if printable(&t) => t,
        Some(_) => {
            return invalid(
                "invalid-verify-token",
                "verify_token must be printable ASCII",
            );
        }
        None => crate::crypto::random_urlsafe(24),
    };
    Ok(WaCredentials {
        phone_number_id,
        access_token: access_token.into(),
        app_secret: app_secret.into(),
        verify_token: verify_token.into(),
    })
}

/// One number's connection.
struct Number {
    creds: Arc<WaCredentials>,
    client: WhatsAppClient,
    /// Our media id → the number's uploaded media id (Meta keeps uploads 30 days; this map lives
    /// as long as the number's actor, far less).
    uploads: Mutex<HashMap<String, String>>,
}

impl Number {
    fn new(creds: WaCredentials, client: WhatsAppClient) -> Self {
        Self {
            creds: Arc::new(creds),
            client,
            uploads: Mutex::default(),
        }
    }

    /// The number's media id for `media`, uploading it the first time.
    async fn uploaded(&self, media: &MediaPayload) -> Result<String, ChannelError> {
        let cached = self
            .uploads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&media.key)
            .cloned();
        if let Some(id) = cached {
            return Ok(id);
        }
        let id = self.client.upload_media(&self.creds, media).await?;
        self.uploads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(media.key.clone(), id.clone());
        Ok(id)
    }
}

impl Connection for Number {
    fn send<'a>(
        &'a self,
        msg: &'a OutboundMessage,
    ) -> BoxFuture<'a, Result<Receipt, ChannelError>> {
        Box::pin(async move {
            let uploaded = match &msg.media {
                Some(media) if media.link.is_none() => Some(self.uploaded(media).await?),
                _ => None,
            };
            let media_ref = match (&msg.media, &uploaded) {
                (
                    Some(MediaPayload {
                        link: Some(link), ..
                    }),
                    _,
                ) => Some(MediaRef::Link(link)),
                (_, Some(id)) => Some(MediaRef::Id(id)),
                _ => None,
            };
            self.client.send(&self.creds, msg, media_ref).await
        })
    }

    // 130429 (and 4, HTTP 429) is the number's throughput; 131056 comes as RecipientLimited.
    fn rate_limit_scope(&self) -> LimitScope {
        LimitScope::Account
    }
}
