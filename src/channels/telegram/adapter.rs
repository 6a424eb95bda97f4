//! The Telegram kind: a bot token checked with `getMe`, chats as addresses, the bot's updates
//! read for as long as its actor lives.
use std::{sync::Arc, time::Duration};

use futures::future::BoxFuture;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::TelegramClient;
use crate::domain::ChannelId;
use crate::{
    channels::{
        ChannelError, OutboundMessage, Receipt, UpdatesConfig,
        adapter::{self, Address, ChannelAdapter, Connection, LimitsInput, NewAccount, SetupError},
        updates::{self, LeaseTerm},
    },
    config::Settings,
    domain::TelegramChat,
    pacing::{LimitScope, PacingLimits, RecipientKind},
};

/// The kind's name.
pub const KIND: &str = "telegram";

/// Telegram bots.
pub struct TelegramAdapter {
    /// For calls made while serving a request (`getMe` at setup).
    api: TelegramClient,
    /// For the accounts' actors: pooled connections belong to the runtime that opened them, and
    /// the HTTP workers' runtimes end before deliveries do on shutdown.
    actors: TelegramClient,
}

impl TelegramAdapter {
    /// An adapter with one client for request handlers and one for the actors.
    pub fn new(api: TelegramClient, actors: TelegramClient) -> Self {
        Self { api, actors }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Fields {
    bot_token: Option<String>,
}

/// Whether `t` has the shape @BotFather gives (`123456:ABC…`).
fn valid_bot_token(t: &str) -> bool {
    let Some((id, secret)) = t.split_once(':') else {
        return false;
    };
    !id.is_empty()
        && id.bytes().all(|b| b.is_ascii_digit())
        && (20..=100).contains(&secret.len())
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl ChannelAdapter for TelegramAdapter {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn address(&self) -> Address {
        Address::Chat
    }

    fn setup<'a>(
        &'a self,
        fields: Map<String, Value>,
    ) -> BoxFuture<'a, Result<NewAccount, SetupError>> {
        Box::pin(async move {
            let fields: Fields = adapter::fields(fields)?;
            let token = fields.bot_token.unwrap_or_default();
            if !valid_bot_token(&token) {
                return Err(SetupError::Invalid(
                    "invalid-bot-token",
                    "bot_token must look like `123456:ABC…` as given by @BotFather".into(),
                ));
            }
            let bot = self.api.get_me(&token).await.map_err(|e| match e {
                ChannelError::Unauthorized { .. } | ChannelError::Permanent { .. } => {
                    SetupError::Invalid(
                        "bot-token-rejected",
                        "Telegram rejected the bot token (getMe failed)".into(),
                    )
                }
                other => SetupError::Unreachable(format!(
                    "could not check the token with Telegram: {other}"
                )),
            })?;
            Ok(NewAccount {
                connection: self
                    .connect(&token)
                    .map_err(|e| SetupError::Unreachable(e.to_string()))?,
                credentials: token,
                external_id: Some(bot.id.to_string()),
                username: bot.username,
                reveal: Map::new(),
            })
        })
    }

    fn connect(&self, credentials: &str) -> anyhow::Result<Arc<dyn Connection>> {
        Ok(Arc::new(Bot {
            token: SecretString::from(credentials.to_owned()),
            client: self.actors.clone(),
        }))
    }

    fn limits(&self, o: &LimitsInput, s: &Settings) -> PacingLimits {
        PacingLimits {
            account_per_sec: o.per_second.unwrap_or(s.telegram.bot_rate_per_sec),
            account_burst: o.burst.unwrap_or(s.telegram.bot_burst),
            recipient_interval: Duration::from_secs(1)
                / o.per_chat_per_second
                    .unwrap_or(s.telegram.chat_rate_per_sec)
                    .max(1),
            group_per_min: o
                .per_group_per_minute
                .unwrap_or(s.telegram.group_rate_per_min),
            margin: Duration::from_millis(s.delivery.pacing_margin_ms),
            recipient_margin: Duration::from_millis(s.delivery.recipient_margin_ms),
            daily_cap: o.per_day.unwrap_or(0),
            gap: None,
        }
    }

    /// Multipart uploads: 10 MB photos, 50 MB anything else.
    fn media_limit(&self, content_type: &str) -> Result<Option<u64>, String> {
        const MB: u64 = 1024 * 1024;
        Ok(Some(if content_type.starts_with("image/") {
            10 * MB
        } else {
            50 * MB
        }))
    }

    fn recipient(&self, to: &str) -> Result<String, String> {
        TelegramChat::parse(to)?;
        Ok(to.to_owned())
    }

    fn contact_address(
        &self,
        _phone: &str,
        telegram_chat_id: Option<&str>,
    ) -> Result<String, &'static str> {
        telegram_chat_id
            .map(str::to_owned)
            .ok_or("no-telegram-chat")
    }
}

/// One bot's connection.
struct Bot {
    token: SecretString,
    client: TelegramClient,
}

impl Connection for Bot {
    fn send<'a>(
        &'a self,
        msg: &'a OutboundMessage,
    ) -> BoxFuture<'a, Result<Receipt, ChannelError>> {
        Box::pin(self.client.send(self.token.expose_secret(), msg))
    }

    fn recipient_kind(&self, to: &str) -> RecipientKind {
        if TelegramChat::parse(to).is_ok_and(|c| c.is_group()) {
            RecipientKind::Group
        } else {
            RecipientKind::Private
        }
    }

    // A 429 does not say whether the chat's limit or the bot's was hit: the pacer decides.
    fn rate_limit_scope(&self) -> LimitScope {
        LimitScope::Unknown
    }

    fn background(
        &self,
        channel_id: &ChannelId,
        updates: Option<UpdatesConfig>,
        term: LeaseTerm,
    ) -> Option<BoxFuture<'static, ()>> {
        let cfg = updates?;
        Some(Box::pin(updates::run(
            channel_id.clone(),
            self.token.clone(),
            self.client.clone(),
            cfg,
            term,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::valid_bot_token;

    #[test]
    fn bot_token_shape() {
        assert!(valid_bot_token("123456:ABCdefGhIJKlmNoPQRsTUVwxyZ0123456"));
        assert!(!valid_bot_token("nope"));
        assert!(!valid_bot_token(":ABCdefGhIJKlmNoPQRsTUVwxyZ"));
        assert!(!valid_bot_token("12a:ABCdefGhIJKlmNoPQRsTUVwxyZ"));
    }
}
