//! The WhatsApp Web kind: a number linked as a device of the owner's phone (QR or pairing code),
//! E.164 phones as addresses, a careful human's pacing by default.
use std::{sync::Arc, time::Duration};

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::session::{self, WebContext};
use crate::domain::ChannelId;
use crate::{
    channels::{
        ChannelError, OutboundMessage, Receipt, UpdatesConfig,
        adapter::{self, Address, ChannelAdapter, Connection, LimitsInput, NewAccount, SetupError},
        updates::LeaseTerm,
        whatsapp::media_limit,
    },
    config::Settings,
    pacing::{LimitScope, PacingLimits},
};

/// The kind's name.
pub const KIND: &str = "whatsapp_web";

pub use super::session::DEFAULT_PER_DAY;
/// Default gap between two sends of a number, drawn afresh each time (WAHA: 30–60 s).
pub const DEFAULT_GAP_SECS: (f64, f64) = (30.0, 60.0);
/// Default least time between two messages to one person.
pub const DEFAULT_RECIPIENT_SECS: u64 = 60;

/// WhatsApp Web numbers, run by [`session::run`].
pub struct WhatsAppWebAdapter {
    ctx: WebContext,
}

impl WhatsAppWebAdapter {
    /// The kind, with what its sessions share.
    pub fn new(ctx: WebContext) -> Self {
        Self { ctx }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Fields {
    /// Pair by code for this number instead of by QR.
    pair_phone: Option<String>,
}

/// What is stored as the account's credentials: nothing secret (the session's keys live in
/// `wa_session_store`), only how to pair at first start.
#[derive(Serialize, Deserialize, Default)]
struct Stored {
    #[serde(default)]
    pair_phone: Option<String>,
}

/// Checks a phone number given for pairing by code: E.164, `+` and 8–15 digits.
pub fn pair_phone(raw: &str) -> Result<String, SetupError> {
    let cleaned: String = raw
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '(' | ')' | '.'))
        .collect();
    let digits = cleaned.strip_prefix('+').unwrap_or(&cleaned);
    if (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) {
        Ok(format!("+{digits}"))
    } else {
        Err(SetupError::Invalid(
            "invalid-pair-phone",
            "pair_phone must be the number to link, in international form (+34…)".into(),
        ))
    }
}

impl ChannelAdapter for WhatsAppWebAdapter {
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
            let stored = Stored {
                pair_phone: f.pair_phone.as_deref().map(pair_phone).transpose()?,
            };
            let credentials = serde_json::to_string(&stored).unwrap_or_default();
            Ok(NewAccount {
                external_id: None,
                username: None,
                reveal: Map::new(),
                connection: Arc::new(WebNumber::new(self.ctx.clone(), stored.pair_phone)),
                credentials,
            })
        })
    }

    fn connect(&self, credentials: &str) -> anyhow::Result<Arc<dyn Connection>> {
        let stored: Stored = serde_json::from_str(credentials)
            .map_err(|_| anyhow::anyhow!("stored WhatsApp Web settings are not valid JSON"))?;
        Ok(Arc::new(WebNumber::new(
            self.ctx.clone(),
            stored.pair_phone,
        )))
    }

    fn limits(&self, o: &LimitsInput, s: &Settings) -> PacingLimits {
        let secs = |v: f64| Duration::try_from_secs_f64(v.clamp(0.0, 86_400.0)).unwrap_or_default();
        let lo = secs(o.min_gap_secs.unwrap_or(DEFAULT_GAP_SECS.0));
        let hi = secs(o.max_gap_secs.unwrap_or(DEFAULT_GAP_SECS.1)).max(lo);
        PacingLimits {
            // The gap paces the number; this only caps it when gaps are set below a second.
            account_per_sec: o.per_second.unwrap_or(if lo >= Duration::from_secs(1) {
                1
            } else {
                50
            }),
            account_burst: 1,
            recipient_interval: Duration::from_secs(
                o.per_recipient_interval_secs
                    .unwrap_or(DEFAULT_RECIPIENT_SECS),
            ),
            group_per_min: 1,
            margin: Duration::from_millis(s.delivery.pacing_margin_ms),
            recipient_margin: Duration::from_millis(s.delivery.recipient_margin_ms),
            daily_cap: o.per_day.unwrap_or(DEFAULT_PER_DAY),
            gap: (!hi.is_zero()).then_some((lo, hi)),
        }
    }

    fn recipient(&self, to: &str) -> Result<String, String> {
        crate::channels::whatsapp::e164_recipient(to)
    }

    fn contact_address(&self, phone: &str, _: Option<&str>) -> Result<String, &'static str> {
        Ok(phone.to_owned())
    }

    fn media_limit(&self, content_type: &str) -> Result<Option<u64>, String> {
        media_limit(content_type)
            .map(|(_, max)| Some(max as u64))
            .ok_or_else(|| format!("WhatsApp cannot send {content_type}"))
    }
}

/// One linked number.
struct WebNumber {
    ctx: WebContext,
    pair_phone: Option<String>,
    /// Set when its actor starts the session (before any send).
    channel_id: std::sync::OnceLock<ChannelId>,
}

impl WebNumber {
    fn new(ctx: WebContext, pair_phone: Option<String>) -> Self {
        Self {
            ctx,
            pair_phone,
            channel_id: std::sync::OnceLock::new(),
        }
    }
}

impl Connection for WebNumber {
    fn send<'a>(
        &'a self,
        msg: &'a OutboundMessage,
    ) -> BoxFuture<'a, Result<Receipt, ChannelError>> {
        Box::pin(async move {
            let Some(channel_id) = self.channel_id.get() else {
                return Err(ChannelError::Transient {
                    code: "whatsapp-web-no-session",
                    detail: "a WhatsApp Web send needs its channel".into(),
                });
            };
            let id = self.ctx.sessions.get(channel_id).send(msg).await?;
            Ok(Receipt {
                provider_message_id: id,
            })
        })
    }

    fn ready(&self) -> Result<(), Duration> {
        match self.channel_id.get() {
            Some(id) => self.ctx.sessions.get(id).ready(),
            None => Err(super::session::NOT_CONNECTED_RETRY),
        }
    }

    fn rate_limit_scope(&self) -> LimitScope {
        LimitScope::Account
    }

    fn background(
        &self,
        channel_id: &ChannelId,
        _updates: Option<UpdatesConfig>,
        _term: LeaseTerm,
    ) -> Option<BoxFuture<'static, ()>> {
        let _ = self.channel_id.set(channel_id.clone());
        let (ctx, id) = (self.ctx.clone(), channel_id.clone());
        let pair_phone = self.pair_phone.clone();
        Some(Box::pin(async move {
            let owner = match crate::channels::repo::find(&ctx.db, &id).await {
                Ok(Some(row)) => row.owner_id,
                Ok(None) => return,
                Err(e) => {
                    tracing::error!(channel_id = %id, error = %e, "cannot read the WhatsApp Web channel");
                    return;
                }
            };
            if pair_phone.is_some() {
                ctx.sessions.get(&id).pair_next_with(pair_phone);
            }
            session::run(ctx, id, owner).await;
        }))
    }
}
