//! How features take part in a message's life without the delivery core knowing them.
//!
//! The core (outbox, delivery job, channels) calls these traits; features implement them and
//! are registered once at start-up (`startup.rs`). The core imports no feature: contacts veto
//! sends to people who opted out, integrations follow a migrated chat and pause an unreachable
//! one, subscriptions turn outcomes into status events — each from its own folder.
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use futures::future::BoxFuture;
use sea_orm::{DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, Statement};

use super::{Outbox, repo::MessageRow};
use crate::channels::{ChannelError, MediaPayload};
use crate::domain::{ChannelId, MediaId, UserId};

/// What happened to a message.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The provider accepted it.
    Sent {
        /// The provider's id for it.
        provider_message_id: String,
    },
    /// The provider reported it delivered to the device.
    Delivered {
        /// When, by the provider's clock.
        at: DateTime<Utc>,
    },
    /// The provider reported it read.
    Read {
        /// When, by the provider's clock.
        at: DateTime<Utc>,
    },
    /// Given up on: a permanent error, attempts exhausted, or a failure reported later.
    Failed {
        /// Stable error code.
        code: String,
        /// What the provider or we said.
        detail: String,
    },
    /// Not sent on purpose (a listener vetoed it).
    Skipped {
        /// Stable reason code.
        code: String,
    },
    /// The chat moved (Telegram group → supergroup); the message goes on to `to`.
    Migrated {
        /// The new chat id.
        to: String,
    },
}

impl Outcome {
    /// The status-event name integrators see (`sent`, `delivered`, `read`, `failed`,
    /// `skipped`), or `None` for an outcome that is no status.
    pub fn event(&self) -> Option<&'static str> {
        match self {
            Outcome::Sent { .. } => Some("sent"),
            Outcome::Delivered { .. } => Some("delivered"),
            Outcome::Read { .. } => Some("read"),
            Outcome::Failed { .. } => Some("failed"),
            Outcome::Skipped { .. } => Some("skipped"),
            Outcome::Migrated { .. } => None,
        }
    }
}

/// A reason not to send a claimed message.
#[derive(Debug, Clone)]
pub struct Veto {
    /// Stable reason code (`opted-out`).
    pub code: &'static str,
    /// For people.
    pub detail: String,
}

/// A [`Veto`] the delivery core checks inside the statement that claims a message, one round
/// trip fewer per delivery than [`Listener::veto`].
#[derive(Debug, Clone, Copy)]
pub struct SqlVeto {
    /// A boolean SQL expression over the claimed row (its columns written `messages.<column>`),
    /// true when the message must not be sent; valid in SQLite and PostgreSQL alike.
    pub condition: &'static str,
    /// Stable reason code (`opted-out`).
    pub code: &'static str,
    /// For people.
    pub detail: &'static str,
}

impl SqlVeto {
    /// The veto it stands for.
    pub fn veto(&self) -> Veto {
        Veto {
            code: self.code,
            detail: self.detail.to_owned(),
        }
    }
}

/// A message a contact sent us (WhatsApp inbound).
#[derive(Debug, Clone)]
pub struct Inbound<'a> {
    /// Owner of the number that received it.
    pub owner_id: &'a UserId,
    /// The number that received it.
    pub channel_id: &'a ChannelId,
    /// Sender, E.164.
    pub from: &'a str,
    /// Text (or button label).
    pub text: &'a str,
    /// When, by the provider's clock.
    pub at: DateTime<Utc>,
}

/// A feature's part in the message lifecycle. Every method has a do-nothing default.
pub trait Listener: Send + Sync {
    /// A name for logs.
    fn name(&self) -> &'static str;

    /// Before a claimed message is sent: a reason not to send it.
    fn veto<'a>(
        &'a self,
        _db: &'a DatabaseConnection,
        _msg: &'a MessageRow,
    ) -> BoxFuture<'a, Result<Option<Veto>, DbErr>> {
        Box::pin(async { Ok(None) })
    }

    /// [`Listener::veto`] as SQL, checked by the claim itself. A message claimed that way is
    /// not asked [`Listener::veto`] of this listener again, so both must say the same.
    fn veto_sql(&self) -> Option<SqlVeto> {
        None
    }

    /// Inside the transaction that records `outcome`: writes that must land with it (or not
    /// at all).
    fn record<'a>(
        &'a self,
        _txn: &'a DatabaseTransaction,
        _msg: &'a MessageRow,
        _outcome: &'a Outcome,
    ) -> BoxFuture<'a, Result<(), DbErr>> {
        Box::pin(async { Ok(()) })
    }

    /// After that transaction committed: follow-ups whose failure must not undo the outcome
    /// (pushing jobs, pausing integrations). Errors are logged.
    fn after<'a>(
        &'a self,
        _outbox: &'a Outbox,
        _msg: &'a MessageRow,
        _outcome: &'a Outcome,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async { Ok(()) })
    }

    /// A contact wrote to one of our numbers.
    fn inbound<'a>(
        &'a self,
        _db: &'a DatabaseConnection,
        _message: &'a Inbound<'a>,
    ) -> BoxFuture<'a, Result<(), DbErr>> {
        Box::pin(async { Ok(()) })
    }

    /// An account stopped being able to send until its owner acts (a WhatsApp Web number
    /// logged out, taken over or barred): stop using it. Errors are logged.
    fn account_down<'a>(
        &'a self,
        _outbox: &'a Outbox,
        _down: &'a AccountDown<'a>,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async { Ok(()) })
    }
}

/// An account that cannot send (or, [`Down::Back`], can again).
#[derive(Debug)]
pub struct AccountDown<'a> {
    /// Its owner.
    pub owner_id: &'a UserId,
    /// The account.
    pub channel_id: &'a ChannelId,
    /// Why, for people (`logged out on the phone…`).
    pub reason: &'a str,
    /// Whether it needs its owner, or comes back by itself.
    pub kind: Down,
}

/// What kind of down an [`AccountDown`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Down {
    /// It cannot send until its owner acts (logged out, replaced, failed, a ban coming): its
    /// campaigns pause.
    NeedsOwner,
    /// Disconnected for a while; it reconnects by itself and its messages wait meanwhile.
    Unreachable,
    /// Connected again after an [`Down::Unreachable`].
    Back,
}

/// The registered listeners, called in registration order.
#[derive(Clone, Default)]
pub struct Listeners(Arc<Vec<Arc<dyn Listener>>>);

impl Listeners {
    /// The set of `listeners`.
    pub fn new(listeners: Vec<Arc<dyn Listener>>) -> Self {
        Self(Arc::new(listeners))
    }

    /// The first veto of any listener.
    pub async fn veto(
        &self,
        db: &DatabaseConnection,
        msg: &MessageRow,
    ) -> Result<Option<Veto>, DbErr> {
        for l in self.0.iter() {
            if let Some(v) = l.veto(db, msg).await? {
                return Ok(Some(v));
            }
        }
        Ok(None)
    }

    /// The vetoes the claim checks itself ([`Listener::veto_sql`]), in listener order.
    pub fn veto_sql(&self) -> Vec<SqlVeto> {
        self.0.iter().filter_map(|l| l.veto_sql()).collect()
    }

    /// [`Listeners::veto`] of the listeners without a [`Listener::veto_sql`], for a message
    /// whose claim checked those.
    pub async fn veto_rest(
        &self,
        db: &DatabaseConnection,
        msg: &MessageRow,
    ) -> Result<Option<Veto>, DbErr> {
        for l in self.0.iter().filter(|l| l.veto_sql().is_none()) {
            if let Some(v) = l.veto(db, msg).await? {
                return Ok(Some(v));
            }
        }
        Ok(None)
    }

    /// Every listener's writes for `outcome`, in `txn`.
    pub async fn record(
        &self,
        txn: &DatabaseTransaction,
        msg: &MessageRow,
        outcome: &Outcome,
    ) -> Result<(), DbErr> {
        for l in self.0.iter() {
            l.record(txn, msg, outcome).await?;
        }
        Ok(())
    }

    /// Every listener's follow-up for a committed `outcome`; failures are logged.
    pub async fn after(&self, outbox: &Outbox, msg: &MessageRow, outcome: &Outcome) {
        for l in self.0.iter() {
            if let Err(e) = l.after(outbox, msg, outcome).await {
                tracing::warn!(listener = l.name(), message_id = %msg.id, error = ?e, "follow-up of a message outcome failed");
            }
        }
    }

    /// Every listener hears that an account is down.
    pub async fn account_down(&self, outbox: &Outbox, down: &AccountDown<'_>) {
        for l in self.0.iter() {
            if let Err(e) = l.account_down(outbox, down).await {
                tracing::warn!(listener = l.name(), channel_id = %down.channel_id, error = ?e, "follow-up of an account going down failed");
            }
        }
    }

    /// Every listener hears an inbound message.
    pub async fn inbound(
        &self,
        db: &DatabaseConnection,
        message: &Inbound<'_>,
    ) -> Result<(), DbErr> {
        for l in self.0.iter() {
            l.inbound(db, message).await?;
        }
        Ok(())
    }
}

/// Daily allowances that admission takes from (integrations' alert quotas).
pub trait Quotas: Send + Sync {
    /// The statement that takes `n` from `key`'s allowance for `day` if all `n` fit: the take
    /// succeeded when it changed exactly one row, and took nothing otherwise. `None`: nothing to
    /// take from, every take fits. (A statement rather than a call, so that the batching writer
    /// runs it on whichever connection holds its transaction.)
    fn take(&self, backend: DbBackend, key: &str, day: NaiveDate, n: i32) -> Option<Statement>;
}

/// No allowances: every take fits (a server without quota owners, tests).
pub struct Unlimited;

impl Quotas for Unlimited {
    fn take(&self, _: DbBackend, _: &str, _: NaiveDate, _: i32) -> Option<Statement> {
        None
    }
}

/// Where a message's attached file comes from (the media library).
pub trait Attachments: Send + Sync {
    /// The file of `media_id`, ready to send. A file that is gone is a permanent error; a store
    /// that does not answer, a transient one.
    fn payload<'a>(
        &'a self,
        media_id: &'a MediaId,
    ) -> BoxFuture<'a, Result<MediaPayload, ChannelError>>;
}
