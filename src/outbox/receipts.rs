//! Group commit for receipts: every webhook that reports a message `sent`, `delivered` or
//! `read` hands it to one writer task, which looks up whatever has queued up
//! meanwhile in one statement and records the changes in one transaction (one conditional
//! update per kind, one insert of their events, the listeners' writes).
//!
//! Why: a campaign's provider reports two receipts per message, and each took a lookup and a
//! transaction of four statements, the larger part of the server's CPU per delivered message
//! (`docs/benchmarks.md`, replicas). Receipts stay idempotent: a timestamp is only set where it
//! is empty, and only the rows the update changed get an event and an outcome.
//!
//! `sent` reports change nothing (the send's answer recorded it) but are looked up with the
//! others, so that one for a message not recorded yet is asked for again. `failed` ones (rare,
//! and they move counters) keep [`super::repo::apply_provider_status`]. A batch that fails answers every webhook with the
//! error; each then applies its receipt alone.
use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter,
    TransactionTrait, Value,
};
use tokio::sync::{mpsc, oneshot};

use super::hooks::{Listeners, Outcome};
use super::repo::{MessageRow, StatusApplied};
use crate::domain::{ChannelId, HistoryKind, Receipt};
use crate::entities::messages;

/// Most receipts handled in one batch (a power of two: the statements' texts repeat).
const MAX_BATCH: usize = 128;
/// Receipts waiting for the writer before webhooks wait for room.
const CHANNEL_CAPACITY: usize = 1024;

struct Heard {
    channel_id: ChannelId,
    provider_id: String,
    receipt: Receipt,
    at: DateTime<Utc>,
    reply: oneshot::Sender<Result<StatusApplied, String>>,
}

/// Handle to the writer task. Cheap to clone.
#[derive(Clone)]
pub struct ReceiptWriter {
    tx: mpsc::Sender<Heard>,
}

impl std::fmt::Debug for ReceiptWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReceiptWriter")
    }
}

impl ReceiptWriter {
    /// Starts the writer on the current runtime; it ends when every handle is dropped.
    pub fn start(db: DatabaseConnection, listeners: Listeners) -> Self {
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        tokio::spawn(run(db, listeners, rx));
        Self { tx }
    }

    /// Whether this writer takes `receipt` (`sent`, `delivered` and `read`).
    pub fn takes(receipt: Receipt) -> bool {
        matches!(receipt, Receipt::Sent | Receipt::Delivered | Receipt::Read)
    }

    /// Applies a `sent`, `delivered` or `read` report as [`super::repo::apply_provider_status`] does;
    /// returns once it is committed.
    pub async fn apply(
        &self,
        channel_id: &ChannelId,
        provider_id: &str,
        receipt: Receipt,
        at: DateTime<Utc>,
    ) -> anyhow::Result<StatusApplied> {
        anyhow::ensure!(Self::takes(receipt), "not a receipt: {}", receipt.as_str());
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Heard {
                channel_id: channel_id.clone(),
                provider_id: provider_id.to_owned(),
                receipt,
                at,
                reply,
            })
            .await
            .map_err(|_| anyhow::anyhow!("the receipt writer stopped"))?;
        rx.await
            .map_err(|_| anyhow::anyhow!("the receipt writer dropped the receipt"))?
            .map_err(|e| anyhow::anyhow!("receipt not recorded: {e}"))
    }
}

async fn run(db: DatabaseConnection, listeners: Listeners, mut rx: mpsc::Receiver<Heard>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        metrics::histogram!("pregonero_receipt_batch_size").record(batch.len() as f64);
        match write(&db, &listeners, &batch).await {
            Ok(answers) => {
                for (heard, answer) in batch.drain(..).zip(answers) {
                    let _ = heard.reply.send(Ok(answer));
                }
            }
            Err(e) => {
                tracing::warn!(receipts = batch.len(), error = %e, "could not record a batch of receipts; each is applied alone");
                let e = e.to_string();
                for heard in batch.drain(..) {
                    let _ = heard.reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// One answer per receipt of `batch`, in its order.
async fn write(
    db: &DatabaseConnection,
    listeners: &Listeners,
    batch: &[Heard],
) -> Result<Vec<StatusApplied>, DbErr> {
    // The messages the receipts name, in one lookup.
    let mut ids: Vec<String> = batch.iter().map(|h| h.provider_id.clone()).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut found: HashMap<(ChannelId, String), MessageRow> = HashMap::new();
    for chunk in crate::db::pow2_chunks(ids) {
        for row in messages::Entity::find()
            .filter(messages::Column::ProviderMessageId.is_in(chunk))
            .all(db)
            .await?
        {
            if let Some(pid) = row.provider_message_id.clone() {
                found.insert((row.channel_id.clone(), pid), row);
            }
        }
    }
    // What each receipt would change: a timestamp not set yet, once per message and kind
    // (the first report in the batch wins, as it would alone).
    let mut answers: Vec<Option<StatusApplied>> = Vec::with_capacity(batch.len());
    let mut changes: Vec<(usize, &MessageRow)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, heard) in batch.iter().enumerate() {
        let Some(msg) = found.get(&(heard.channel_id.clone(), heard.provider_id.clone())) else {
            answers.push(Some(StatusApplied::Unknown));
            continue;
        };
        let stamped = match heard.receipt {
            Receipt::Delivered => msg.delivered_at.is_some(),
            Receipt::Read => msg.read_at.is_some(),
            // Known from the send's answer: nothing to change.
            _ => true,
        };
        if stamped || !seen.insert((msg.id.clone(), heard.receipt)) {
            answers.push(Some(StatusApplied::Known(None)));
            continue;
        }
        answers.push(None);
        changes.push((i, msg));
    }
    if changes.is_empty() {
        return Ok(answers.into_iter().flatten().collect());
    }
    let txn = db.begin().await?;
    let backend = txn.get_database_backend();
    let mut changed = std::collections::HashSet::new();
    for (receipt, column) in [
        (Receipt::Delivered, "delivered_at"),
        (Receipt::Read, "read_at"),
    ] {
        let rows: Vec<_> = changes
            .iter()
            .filter(|(i, _)| batch[*i].receipt == receipt)
            .copied()
            .collect();
        for chunk in crate::db::pow2_chunks(rows) {
            let mut sql = format!("UPDATE messages SET {column} = CASE id");
            let mut values: Vec<Value> = Vec::with_capacity(3 * chunk.len());
            for (i, msg) in &chunk {
                sql.push_str(" WHEN ? THEN ?");
                values.push(msg.id.to_string().into());
                values.push(batch[*i].at.into());
            }
            sql.push_str(&format!(
                " END WHERE {column} IS NULL AND id IN ({}) RETURNING id",
                vec!["?"; chunk.len()].join(", ")
            ));
            values.extend(chunk.iter().map(|(_, m)| Value::from(m.id.to_string())));
            for row in txn
                .query_all_raw(crate::db::statement(backend, &sql, values))
                .await?
            {
                changed.insert((row.try_get::<String>("", "id")?, receipt));
            }
        }
    }
    let recorded: Vec<(usize, &MessageRow)> = changes
        .into_iter()
        .filter(|(i, m)| changed.contains(&(m.id.to_string(), batch[*i].receipt)))
        .collect();
    for chunk in crate::db::pow2_chunks(recorded.clone()) {
        let sql = format!(
            "INSERT INTO message_events (message_id, at, kind, outcome, error_code, detail) VALUES {}",
            vec!["(?, ?, ?, ?, NULL, ?)"; chunk.len()].join(", ")
        );
        let now = Utc::now();
        let mut values: Vec<Value> = Vec::with_capacity(5 * chunk.len());
        for (i, msg) in &chunk {
            values.push(msg.id.to_string().into());
            values.push(now.into());
            values.push(HistoryKind::Status.as_str().into());
            values.push(batch[*i].receipt.as_str().into());
            values.push(format!("at {}", batch[*i].at.to_rfc3339()).into());
        }
        txn.execute_raw(crate::db::statement(backend, &sql, values))
            .await?;
    }
    let mut heard: HashMap<usize, (MessageRow, Outcome)> = HashMap::new();
    for (i, msg) in recorded {
        let at = batch[i].at;
        let outcome = match batch[i].receipt {
            Receipt::Delivered => Outcome::Delivered { at },
            _ => Outcome::Read { at },
        };
        listeners.record(&txn, msg, &outcome).await?;
        heard.insert(i, (msg.clone(), outcome));
    }
    txn.commit().await?;
    Ok(answers
        .into_iter()
        .enumerate()
        .map(|(i, answer)| {
            answer.unwrap_or_else(|| {
                // None: stamped by another replica between the lookup and the update.
                StatusApplied::Known(heard.remove(&i).map(Box::new))
            })
        })
        .collect())
}
