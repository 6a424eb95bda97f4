//! The outbox: the delivery core. It owns a message's life — admission (with idempotency),
//! the queue, the delivery job that claims and sends, the outcome and recovery — and knows no
//! feature: features take part through [`hooks`].
//!
//! Layout: `repo` (the ledger's SQL), `writer` (group commit of admissions), `queue` (apalis),
//! `claims` (group claim of due messages), `deliver` (the job), `outcomes` (group commit of accepted sends), `receipts` (group commit
//! of delivery and read receipts), `sweep` (recovery), `workers` (the runtime they run on),
//! `stats` (per-day counters), `hooks` (the traits features implement).
//!
//! Every single message (API send, alert) is admitted here, once ([`admit`]).
//! Without an idempotency key a message goes through the batching writer (one commit and one
//! job push for everything that arrived meanwhile). With a key it is written alone, so that a
//! request racing another with the same key rolls back only itself and answers with the
//! winner's message.
use std::sync::Arc;

use actix::Addr;
use sea_orm::DatabaseConnection;

pub mod claims;
pub mod deliver;
pub mod hooks;
mod in_flight;
pub mod outcomes;
mod queue;
pub mod receipts;
pub mod repo;
pub mod stats;
pub mod sweep;
mod workers;
pub mod writer;

pub use in_flight::InFlight;
pub use queue::Queue;
pub use workers::{Periodic, Workers};

use hooks::{Attachments, Listeners, Quotas};
use repo::MessageRow;
use writer::{Admission, Admitted, LedgerWriter};

use crate::{
    channels::{Adapters, ChannelRegistry},
    clock::Clock,
    config::Settings,
    db::is_unique_violation,
    domain::{MessageId, UserId},
};

/// The delivery core's handles: what admitting, delivering and recovering messages needs, and
/// nothing of any feature (features take part through [`Listeners`], [`Quotas`] and
/// [`Attachments`]).
#[derive(Clone)]
pub struct Outbox {
    /// sea-orm connection (SQLite or PostgreSQL).
    pub db: DatabaseConnection,
    /// Delivery queue.
    pub queue: Queue,
    /// Supervisor of the channel account actors.
    pub registry: Addr<ChannelRegistry>,
    /// The accounts the registry runs, as deliveries send through them.
    pub running: crate::channels::Running,
    /// The channel kinds.
    pub adapters: Adapters,
    /// Decrypts channel credentials.
    pub cipher: crate::crypto::Cipher,
    /// Settings in force.
    pub settings: Arc<Settings>,
    /// Name of this process for leases and worker names.
    pub node_name: String,
    /// Deliveries running in this process.
    pub in_flight: InFlight,
    /// "Now" for quotas.
    pub clock: Clock,
    /// Batched writes of new messages.
    pub ledger: LedgerWriter,
    /// Daily allowances admission takes from.
    pub quotas: Arc<dyn Quotas>,
    /// Features' part in the lifecycle.
    pub listeners: Listeners,
    /// Attached files.
    pub attachments: Arc<dyn Attachments>,
    /// Batched records of accepted sends (the delivery workers' runtime starts it; `None`:
    /// each send is recorded in its own transaction).
    pub sent: Option<outcomes::SentWriter>,
    /// Batched claims of due messages (the delivery workers' runtime starts it; `None`: each
    /// delivery claims alone).
    pub claims: Option<claims::Claimer>,
    /// Batched records of delivery and read receipts (started with the HTTP side, which
    /// receives them; `None`: each is applied in its own transaction).
    pub receipts: Option<receipts::ReceiptWriter>,
}

impl Outbox {
    /// What starting and stopping this process's channel accounts needs.
    pub fn accounts(&self) -> crate::channels::sync::Accounts {
        crate::channels::sync::Accounts {
            db: self.db.clone(),
            cipher: self.cipher.clone(),
            adapters: self.adapters.clone(),
            settings: self.settings.clone(),
            registry: self.registry.clone(),
        }
    }
}

/// What admitting a message came to.
#[derive(Debug)]
pub enum Admit {
    /// Stored and queued for delivery.
    Accepted(MessageRow),
    /// The key was used before: the message the first request created (the caller compares
    /// request hashes).
    Replayed(MessageRow),
    /// The integration's daily quota is used up, or the integration is not active.
    Refused,
}

/// A message waiting to be admitted.
pub struct Pending {
    /// The message.
    pub message: repo::NewMessage,
    /// The integration whose daily quota it takes one from (alerts).
    pub quota: Option<String>,
}

/// The message an earlier request stored under `key`, if any (checked before anything else, so
/// a replay answers even when the request would no longer validate).
pub async fn earlier(
    outbox: &Outbox,
    owner_id: &UserId,
    key: Option<&str>,
) -> anyhow::Result<Option<MessageRow>> {
    match key {
        Some(key) => Ok(repo::find_by_idempotency_key(&outbox.db, owner_id, key).await?),
        None => Ok(None),
    }
}

/// Admits one message.
pub async fn admit(outbox: &Outbox, pending: Pending) -> anyhow::Result<Admit> {
    let Pending { message, quota } = pending;
    let (owner_id, key) = (message.owner_id.clone(), message.idempotency_key.clone());
    let now = chrono::Utc::now();
    let row = message.into_row(now);
    let Some(key) = key else {
        return Ok(match outbox.ledger.admit(Admission { row, quota }).await? {
            Admitted::Accepted(msg) => Admit::Accepted(*msg),
            Admitted::Refused => Admit::Refused,
        });
    };
    use sea_orm::{ConnectionTrait, TransactionTrait};
    let txn = outbox.db.begin().await?;
    if let Some(take) = quota.as_deref().and_then(|integration| {
        outbox.quotas.take(
            txn.get_database_backend(),
            integration,
            outbox.clock.today(),
            1,
        )
    }) && txn.execute_raw(take).await?.rows_affected() != 1
    {
        txn.rollback().await?;
        return Ok(Admit::Refused);
    }
    match insert_in(outbox, &txn, row, now).await {
        Ok(inserted) => {
            txn.commit().await?;
            let msg = inserted.message.clone();
            committed(outbox, inserted).await;
            Ok(Admit::Accepted(msg))
        }
        Err(InsertError::Db(e)) if is_unique_violation(&e) => {
            // Two requests raced with one key: the loser answers with the winner's message.
            txn.rollback().await?;
            let existing = repo::find_by_idempotency_key(&outbox.db, &owner_id, &key)
                .await?
                .ok_or_else(|| anyhow::anyhow!("idempotency row vanished"))?;
            Ok(Admit::Replayed(existing))
        }
        Err(InsertError::Db(e)) => Err(e.into()),
        Err(InsertError::Other(e)) => Err(e),
    }
}

/// A message written in a caller's transaction, waiting for [`committed`].
#[derive(Debug)]
pub struct Inserted {
    /// The stored row.
    pub message: MessageRow,
    /// Its job was written in the same transaction (SQLite).
    pushed: bool,
}

/// Why [`insert_in`] failed.
#[derive(Debug, thiserror::Error)]
pub enum InsertError {
    /// The row (a unique violation when an idempotency key was taken).
    #[error(transparent)]
    Db(#[from] sea_orm::DbErr),
    /// The job's statement.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// Writes one message inside the caller's transaction: on SQLite with its delivery job, so
/// both commit together (as the batching writer does); elsewhere [`committed`] pushes the job
/// once the caller has committed. A feature that stores something with its message (a signal)
/// pays for one transaction instead of two.
pub async fn insert_in(
    outbox: &Outbox,
    txn: &sea_orm::DatabaseTransaction,
    mut row: crate::entities::messages::ActiveModel,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Inserted, InsertError> {
    use sea_orm::ConnectionTrait;
    let pushed = outbox.queue.pushes_in_transaction();
    if pushed {
        row.enqueued_at = sea_orm::Set(Some(now));
    }
    let message = repo::insert_in(txn, row).await?;
    if pushed
        && let Some(push) =
            Queue::push_statement(&[(message.id.clone(), std::time::Duration::ZERO)])?
    {
        txn.execute_raw(push).await?;
    }
    Ok(Inserted { message, pushed })
}

/// After the transaction of [`insert_in`] committed: pushes the job where it was not written
/// with the row (a failed push is left to the sweep).
pub async fn committed(outbox: &Outbox, inserted: Inserted) {
    if inserted.pushed {
        metrics::counter!("pregonero_messages_accepted_total").increment(1);
    } else {
        dispatch(&outbox.db, &outbox.queue, &inserted.message.id).await;
    }
}

/// Pushes the delivery job of a freshly inserted message. If the push fails the row stays
/// queued without a job and the recovery sweep enqueues it, so this only logs.
pub async fn dispatch(db: &DatabaseConnection, queue: &Queue, message_id: &MessageId) {
    let result = match queue.push(message_id, std::time::Duration::ZERO).await {
        Ok(()) => repo::mark_enqueued(db, std::slice::from_ref(message_id))
            .await
            .map_err(anyhow::Error::from),
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        tracing::warn!(%message_id, error = ?e, "enqueue failed; the sweep will retry");
    }
    metrics::counter!("pregonero_messages_accepted_total").increment(1);
}
