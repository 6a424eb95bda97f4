//! Group commit for sends the provider accepted: every delivery that gets a provider id hands
//! it to one writer task, which records whatever has queued up meanwhile in a single
//! transaction of three multi-row statements (the messages' `sending → sent`, their `sent`
//! events, their rollup deltas) plus the listeners' writes.
//!
//! Why: recording a send alone took a transaction of five statements, a third of the round
//! trips of a delivery and most of its CPU (`docs/benchmarks.md`, replicas). With many
//! deliveries in flight the batches form by themselves while the previous one commits; an
//! idle server writes batches of one, as before.
//!
//! A batch that fails answers every sender with the error; each then records its send alone,
//! with the delivery job's own retries ([`super::deliver`]), so one bad row never costs the
//! others their record.
use chrono::Utc;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, TransactionTrait, Value};
use tokio::sync::{mpsc, oneshot};

use super::hooks::{Listeners, Outcome};
use super::repo::MessageRow;
use crate::domain::{HistoryKind, MessageStatus};

/// Most sends recorded in one transaction (a power of two: the statements' texts repeat).
const MAX_BATCH: usize = 128;
/// Sends waiting for the writer before senders wait for room.
const CHANNEL_CAPACITY: usize = 1024;

struct Sent {
    msg: MessageRow,
    provider_message_id: String,
    reply: oneshot::Sender<Result<(), String>>,
}

/// Handle to the writer task. Cheap to clone.
#[derive(Clone)]
pub struct SentWriter {
    tx: mpsc::Sender<Sent>,
}

impl std::fmt::Debug for SentWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SentWriter")
    }
}

impl SentWriter {
    /// Starts the writer on the current runtime; it ends when every handle is dropped.
    pub fn start(db: DatabaseConnection, listeners: Listeners) -> Self {
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        tokio::spawn(run(db, listeners, rx));
        Self { tx }
    }

    /// Records that the provider accepted `msg` as `provider_message_id`; returns once it is
    /// committed, with the listeners' writes.
    pub async fn record(&self, msg: MessageRow, provider_message_id: String) -> anyhow::Result<()> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Sent {
                msg,
                provider_message_id,
                reply,
            })
            .await
            .map_err(|_| anyhow::anyhow!("the outcome writer stopped"))?;
        rx.await
            .map_err(|_| anyhow::anyhow!("the outcome writer dropped the send"))?
            .map_err(|e| anyhow::anyhow!("send not recorded: {e}"))
    }
}

async fn run(db: DatabaseConnection, listeners: Listeners, mut rx: mpsc::Receiver<Sent>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        metrics::histogram!("pregonero_outcome_batch_size").record(batch.len() as f64);
        let result = write(&db, &listeners, &batch)
            .await
            .map_err(|e| e.to_string());
        if let Err(e) = &result {
            tracing::warn!(sends = batch.len(), error = %e, "could not record a batch of sends; each is recorded alone");
        }
        for sent in batch.drain(..) {
            let _ = sent.reply.send(result.clone());
        }
    }
}

async fn write(
    db: &DatabaseConnection,
    listeners: &Listeners,
    batch: &[Sent],
) -> Result<(), DbErr> {
    let txn = db.begin().await?;
    let backend = txn.get_database_backend();
    let now = Utc::now();
    for chunk in crate::db::pow2_chunks(batch.iter().collect()) {
        for statement in statements(&chunk, now) {
            let (sql, values) = statement;
            txn.execute_raw(crate::db::statement(backend, &sql, values))
                .await?;
        }
    }
    for sent in batch {
        let outcome = Outcome::Sent {
            provider_message_id: sent.provider_message_id.clone(),
        };
        listeners.record(&txn, &sent.msg, &outcome).await?;
    }
    txn.commit().await
}

/// The three statements that record `chunk`, with `?` placeholders: `sending → sent` (a
/// message no longer `sending`, taken back by the sweep meanwhile, is left alone, as
/// [`super::repo::mark_sent`] does), one `sent` attempt event each, one rollup delta each.
fn statements(chunk: &[&Sent], now: chrono::DateTime<Utc>) -> Vec<(String, Vec<Value>)> {
    let n = chunk.len();
    let placeholders = |per_row: &str| vec![per_row; n].join(", ");
    let day = now.format("%Y-%m-%d").to_string();

    let mut update = String::from("UPDATE messages SET provider_message_id = CASE id");
    let mut values: Vec<Value> = Vec::with_capacity(3 * n + 4);
    for sent in chunk {
        update.push_str(" WHEN ? THEN ?");
        values.push(sent.msg.id.to_string().into());
        values.push(sent.provider_message_id.clone().into());
    }
    update.push_str(&format!(
        " END, status = ?, sent_at = ?, locked_until = NULL, locked_by = NULL, updated_at = ? \
         WHERE status = ? AND id IN ({})",
        placeholders("?")
    ));
    values.push(MessageStatus::Sent.as_str().into());
    values.push(now.into());
    values.push(now.into());
    values.push(MessageStatus::Sending.as_str().into());
    values.extend(chunk.iter().map(|s| Value::from(s.msg.id.to_string())));

    let events = format!(
        "INSERT INTO message_events (message_id, at, kind, outcome, error_code, detail) VALUES {}",
        placeholders("(?, ?, ?, ?, NULL, NULL)")
    );
    let mut event_values: Vec<Value> = Vec::with_capacity(4 * n);
    for sent in chunk {
        event_values.push(sent.msg.id.to_string().into());
        event_values.push(now.into());
        event_values.push(HistoryKind::Attempt.as_str().into());
        event_values.push("sent".into());
    }

    let deltas = format!(
        "INSERT INTO stats_deltas (owner_id, contact_id, day, sent, errors) VALUES {}",
        placeholders("(?, ?, ?, 1, 0)")
    );
    let mut delta_values: Vec<Value> = Vec::with_capacity(3 * n);
    for sent in chunk {
        delta_values.push(sent.msg.owner_id.to_string().into());
        delta_values.push(sent.msg.contact_id.as_ref().map(ToString::to_string).into());
        delta_values.push(day.clone().into());
    }
    vec![
        (update, values),
        (events, event_values),
        (deltas, delta_values),
    ]
}
