//! WhatsApp Business Cloud API adapter: credentials, the client and the webhook receiver.
mod adapter;
mod client;
pub mod webhook;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

pub use adapter::{KIND, WhatsAppCloudAdapter};
pub use client::{MediaRef, WhatsAppClient, classify_status_error, media_limit};

/// A WhatsApp recipient given through the API: E.164, `+` and 8 to 15 digits (both WhatsApp
/// kinds address people so).
pub fn e164_recipient(to: &str) -> Result<String, String> {
    let digits = to.strip_prefix('+').unwrap_or_default();
    if (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) {
        Ok(to.to_owned())
    } else {
        Err(format!("`{to}` is not an E.164 phone number"))
    }
}

/// A Cloud API number's secrets, kept encrypted at rest as one JSON document.
#[derive(Clone)]
pub struct WaCredentials {
    /// Meta's id of the number (`/<phone_number_id>/messages`).
    pub phone_number_id: String,
    /// System-user access token.
    pub access_token: SecretString,
    /// App secret: key of the webhooks' `X-Hub-Signature-256`.
    pub app_secret: SecretString,
    /// Our answer to Meta's webhook verification (`hub.verify_token`).
    pub verify_token: SecretString,
}

impl std::fmt::Debug for WaCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WaCredentials")
            .field("phone_number_id", &self.phone_number_id)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize)]
struct Stored {
    phone_number_id: String,
    access_token: String,
    app_secret: String,
    verify_token: String,
}

impl WaCredentials {
    /// The plaintext JSON that gets encrypted.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&Stored {
            phone_number_id: self.phone_number_id.clone(),
            access_token: self.access_token.expose_secret().to_owned(),
            app_secret: self.app_secret.expose_secret().to_owned(),
            verify_token: self.verify_token.expose_secret().to_owned(),
        })
        .unwrap_or_default()
    }

    /// Reads what [`Self::to_json`] wrote.
    pub fn from_json(s: &str) -> anyhow::Result<Self> {
        let stored: Stored = serde_json::from_str(s)
            .map_err(|_| anyhow::anyhow!("stored WhatsApp credentials are not valid JSON"))?;
        Ok(Self {
            phone_number_id: stored.phone_number_id,
            access_token: stored.access_token.into(),
            app_secret: stored.app_secret.into(),
            verify_token: stored.verify_token.into(),
        })
    }
}
