//! The seam between the delivery core and the providers: one [`ChannelAdapter`] per channel kind
//! (one folder under `src/channels/`), registered in [`Adapters`]. Nothing outside a kind's folder
//! matches on a kind: callers ask the adapter.
use std::{collections::BTreeMap, sync::Arc};

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{ChannelError, OutboundMessage, Receipt, UpdatesConfig, updates::LeaseTerm};
use crate::domain::ChannelId;
use crate::{
    config::Settings,
    pacing::{LimitScope, PacingLimits, RecipientKind},
};

/// How a channel kind addresses people.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Address {
    /// E.164 phone numbers (WhatsApp).
    Phone,
    /// Chat ids and `@usernames` linked through the bot (Telegram).
    Chat,
    /// Any string the receiving end understands (outgoing webhooks).
    Any,
}

/// Pacing overrides for one account; unset fields use the server defaults.
#[derive(Debug, Default, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ChannelLimitsInput)]
pub struct LimitsInput {
    /// Sends per second for the account.
    pub per_second: Option<u32>,
    /// Burst above `per_second`.
    pub burst: Option<u32>,
    /// Sends per second to one private chat.
    pub per_chat_per_second: Option<u32>,
    /// Sends per minute to one group.
    pub per_group_per_minute: Option<u32>,
    /// Seconds between two messages to one WhatsApp recipient.
    pub per_recipient_interval_secs: Option<u64>,
    /// Sends in any 24 hours (none by default; WhatsApp Web: 50, a new number's warm-up).
    pub per_day: Option<u32>,
    /// WhatsApp Web: least seconds between two sends of the number (a fresh random gap between
    /// this and `max_gap_secs` each time; default 30; fractions allowed).
    pub min_gap_secs: Option<f64>,
    /// WhatsApp Web: most seconds between two sends of the number (default 60).
    pub max_gap_secs: Option<f64>,
}

/// A new account checked by its adapter, ready to be stored and started.
pub struct NewAccount {
    /// The secrets to store encrypted (the adapter reads them back in [`ChannelAdapter::connect`]).
    pub credentials: String,
    /// The provider's id of the account (bot id, phone number id).
    pub external_id: Option<String>,
    /// A display handle (`@bot_username`).
    pub username: Option<String>,
    /// Fields shown once, in the answer that created the account (a generated verify token).
    pub reveal: Map<String, Value>,
    /// The live connection.
    pub connection: Arc<dyn Connection>,
}

/// Why an account could not be set up.
#[derive(Debug)]
pub enum SetupError {
    /// A field is missing or malformed, or the provider refused the credentials (422).
    Invalid(&'static str, String),
    /// The provider could not be asked (502).
    Unreachable(String),
}

/// Reads a kind's own fields of `POST /channels` (its struct refuses unknown ones).
pub fn fields<T: serde::de::DeserializeOwned>(fields: Map<String, Value>) -> Result<T, SetupError> {
    serde_json::from_value(Value::Object(fields))
        .map_err(|e| SetupError::Invalid("invalid-channel-fields", e.to_string()))
}

/// One channel kind.
pub trait ChannelAdapter: Send + Sync {
    /// The kind's name in the database and the API (`telegram`).
    fn kind(&self) -> &'static str;

    /// How it addresses people.
    fn address(&self) -> Address;

    /// Checks the kind's own fields of `POST /channels` (unknown ones are refused), with the
    /// provider where it can be asked, and returns what to store.
    fn setup<'a>(
        &'a self,
        fields: Map<String, Value>,
    ) -> BoxFuture<'a, Result<NewAccount, SetupError>>;

    /// The live connection of a stored account, from its decrypted credentials.
    fn connect(&self, credentials: &str) -> anyhow::Result<Arc<dyn Connection>>;

    /// The account's limits: its overrides over the server defaults.
    fn limits(&self, overrides: &LimitsInput, settings: &Settings) -> PacingLimits;

    /// Checks a recipient given through the API. [`Address::Phone`] kinds get it already
    /// normalised to E.164 by the caller (the contacts' normaliser, with the default region).
    fn recipient(&self, to: &str) -> Result<String, String>;

    /// A contact's address on this kind, or the stable reason it has none.
    fn contact_address(
        &self,
        phone: &str,
        telegram_chat_id: Option<&str>,
    ) -> Result<String, &'static str>;

    /// Whether messages may carry a provider-approved template.
    fn provider_templates(&self) -> bool {
        false
    }

    /// Whether a file of this type and size can be sent, or the stable code and why not.
    fn check_media(&self, content_type: &str, size: u64) -> Result<(), (&'static str, String)> {
        match self.media_limit(content_type) {
            Ok(Some(max)) if size > max => Err((
                "media-too-large",
                format!("this channel sends a file of this type of at most {max} bytes"),
            )),
            Ok(_) => Ok(()),
            Err(why) => Err(("media-type-unsupported", why)),
        }
    }

    /// The largest file of `content_type` the kind sends (`None`: only the server's upload
    /// limit applies), or why it sends no such file. Uploads made for the kind are held to it.
    fn media_limit(&self, _content_type: &str) -> Result<Option<u64>, String> {
        Ok(None)
    }

    /// Other names users may give the kind (`?channel=whatsapp` for `whatsapp_cloud`).
    fn aliases(&self) -> &'static [&'static str] {
        &[]
    }

    /// The path under this server where the provider calls back, if the kind has one.
    fn webhook_path(&self, _channel_id: &ChannelId) -> Option<String> {
        None
    }
}

/// One account's live connection to its provider, owned by its account actor.
pub trait Connection: Send + Sync {
    /// One provider call (after pacing).
    fn send<'a>(&'a self, msg: &'a OutboundMessage)
    -> BoxFuture<'a, Result<Receipt, ChannelError>>;

    /// Whether a send could leave now, before the pacer gives it a turn: `Err(wait)` defers it
    /// (not an attempt, no pacing turn taken), e.g. a WhatsApp Web number that is not connected
    /// or has used up its day.
    fn ready(&self) -> Result<(), std::time::Duration> {
        Ok(())
    }

    /// Which per-recipient limit applies to `to`.
    fn recipient_kind(&self, _to: &str) -> RecipientKind {
        RecipientKind::Private
    }

    /// What a [`ChannelError::RateLimited`] answer of this provider says was exceeded.
    fn rate_limit_scope(&self) -> LimitScope;

    /// A task that lives as long as the account's actor (reading a bot's updates, keeping a
    /// session), if the kind has one.
    fn background(
        &self,
        _channel_id: &ChannelId,
        _updates: Option<UpdatesConfig>,
        _term: LeaseTerm,
    ) -> Option<BoxFuture<'static, ()>> {
        None
    }
}

/// The channel kinds this server knows, by name.
#[derive(Clone, Default)]
pub struct Adapters(BTreeMap<&'static str, Arc<dyn ChannelAdapter>>);

impl Adapters {
    /// Adds a kind (the one registration line a new channel needs, in `startup.rs`).
    pub fn with(mut self, adapter: impl ChannelAdapter + 'static) -> Self {
        self.0.insert(adapter.kind(), Arc::new(adapter));
        self
    }

    /// The adapter a user means by `name`: its kind or one of its aliases.
    pub fn named(&self, name: &str) -> Option<&Arc<dyn ChannelAdapter>> {
        self.get(name)
            .or_else(|| self.0.values().find(|a| a.aliases().contains(&name)))
    }

    /// The adapter of `kind`.
    pub fn get(&self, kind: &str) -> Option<&Arc<dyn ChannelAdapter>> {
        self.0.get(kind)
    }

    /// The names of every kind, for error messages.
    pub fn kinds(&self) -> Vec<&'static str> {
        self.0.keys().copied().collect()
    }
}
