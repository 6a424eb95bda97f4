//! Group claim: the deliveries that start together claim their messages with one statement.
//!
//! apalis hands a worker its due jobs a batch at a time and they start at once; each claimed
//! its message with a statement of its own (`UPDATE … RETURNING`), one round trip per message.
//! Every delivery now asks one claimer task, which claims whatever has queued up meanwhile
//! with one statement ([`super::repo::claim_due_many`]); while it waits for the database the
//! next batch forms. An idle server claims batches of one, as before.
//!
//! A batch that fails answers every delivery with the error; each then claims alone
//! ([`super::repo::claim_due`]), so one batch's trouble never costs the others more than that.
use std::{collections::HashMap, time::Duration};

use chrono::{DateTime, Utc};
use sea_orm::DatabaseConnection;
use tokio::sync::{mpsc, oneshot};

use super::hooks::Listeners;
use super::repo::{self, MessageRow};
use crate::domain::MessageId;

/// Most messages claimed by one statement (a power of two: see `claim_due_many`).
const MAX_BATCH: usize = 64;
/// Claims waiting for the claimer before deliveries wait for room.
const CHANNEL_CAPACITY: usize = 1024;

/// What a delivery gets: its message as it was before the claim and the first SQL veto that
/// holds for it (`None` when it was not queued, not due yet or taken), and its lease's end.
pub type Claimed = (Option<(MessageRow, Option<usize>)>, DateTime<Utc>);

struct Claim {
    id: MessageId,
    reply: oneshot::Sender<Result<Claimed, String>>,
}

/// Handle to the claimer task. Cheap to clone.
#[derive(Clone)]
pub struct Claimer {
    tx: mpsc::Sender<Claim>,
}

impl std::fmt::Debug for Claimer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Claimer")
    }
}

impl Claimer {
    /// Starts the claimer on the current runtime, claiming for `node` with leases of `lease`;
    /// it ends when every handle is dropped.
    pub fn start(
        db: DatabaseConnection,
        listeners: Listeners,
        node: String,
        lease: Duration,
    ) -> Self {
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        tokio::spawn(run(db, listeners, node, lease, rx));
        Self { tx }
    }

    /// Claims message `id` if it is due, with whatever other claims came meanwhile.
    pub async fn claim(&self, id: &MessageId) -> anyhow::Result<Claimed> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Claim {
                id: id.clone(),
                reply,
            })
            .await
            .map_err(|_| anyhow::anyhow!("the claimer stopped"))?;
        rx.await
            .map_err(|_| anyhow::anyhow!("the claimer dropped the claim"))?
            .map_err(|e| anyhow::anyhow!("claim not made: {e}"))
    }
}

async fn run(
    db: DatabaseConnection,
    listeners: Listeners,
    node: String,
    lease: Duration,
    mut rx: mpsc::Receiver<Claim>,
) {
    let vetoes = listeners.veto_sql();
    let lease = chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX);
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        metrics::histogram!("pregonero_claim_batch_size").record(batch.len() as f64);
        let now = Utc::now();
        let lease_until = now + lease;
        let ids: Vec<MessageId> = batch.iter().map(|c| c.id.clone()).collect();
        match repo::claim_due_many(&db, &ids, &node, now, lease_until, &vetoes).await {
            Ok(claimed) => {
                let mut claimed: HashMap<MessageId, (MessageRow, Option<usize>)> = claimed
                    .into_iter()
                    .map(|(msg, veto)| (msg.id.clone(), (msg, veto)))
                    .collect();
                for claim in batch.drain(..) {
                    let row = claimed.remove(&claim.id);
                    let _ = claim.reply.send(Ok((row, lease_until)));
                }
            }
            Err(e) => {
                let e = e.to_string();
                tracing::warn!(claims = batch.len(), error = %e, "could not claim a batch of messages; each claims alone");
                for claim in batch.drain(..) {
                    let _ = claim.reply.send(Err(e.clone()));
                }
            }
        }
    }
}
