//! Group commit for events: requests hand their validated events to one writer task, which
//! commits whatever queued up meanwhile in one transaction (multi-row inserts) and then answers
//! every request in it. A semaphore of `events.buffer_capacity` permits bounds the events
//! accepted but not yet committed: when it is exhausted, requests are refused (429) instead of
//! growing memory.
use std::{sync::Arc, time::Instant};

use sea_orm::{DatabaseConnection, EntityTrait, TransactionTrait};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

use crate::entities::events;

/// Requests taken per batch at most (their events all go in one transaction).
const MAX_REQUESTS_PER_BATCH: usize = 512;
/// Rows per INSERT statement (SQLite allows 32,766 bound values; an event row has 7).
const ROWS_PER_STATEMENT: usize = 2_000;

/// Why a submission was not committed.
#[derive(Debug)]
pub enum SubmitError {
    /// The buffer is full: try again shortly.
    Full,
    /// The database refused the batch (down, or a constraint).
    Failed(String),
}

struct Request {
    rows: Vec<events::ActiveModel>,
    reply: oneshot::Sender<Result<(), String>>,
    _permit: OwnedSemaphorePermit,
}

/// Handle to the event writer task. Cheap to clone.
#[derive(Clone)]
pub struct EventWriter {
    tx: mpsc::Sender<Request>,
    permits: Arc<Semaphore>,
    capacity: u32,
}

impl std::fmt::Debug for EventWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventWriter")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl EventWriter {
    /// Starts the writer on the current runtime with room for `capacity` uncommitted events.
    pub fn start(db: DatabaseConnection, capacity: u32) -> Self {
        let (tx, rx) = mpsc::channel(MAX_REQUESTS_PER_BATCH * 4);
        tokio::spawn(run(db, rx));
        Self {
            tx,
            permits: Arc::new(Semaphore::new(capacity as usize)),
            capacity,
        }
    }

    /// Events accepted and not committed yet.
    pub fn in_use(&self) -> u32 {
        self.capacity
            .saturating_sub(u32::try_from(self.permits.available_permits()).unwrap_or(u32::MAX))
    }

    /// Buffer size.
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// Commits `rows`; returns once they are durable.
    pub async fn submit(&self, rows: Vec<events::ActiveModel>) -> Result<(), SubmitError> {
        let n = u32::try_from(rows.len()).unwrap_or(u32::MAX);
        let permit = self
            .permits
            .clone()
            .try_acquire_many_owned(n)
            .map_err(|_| SubmitError::Full)?;
        metrics::gauge!("pregonero_events_buffer_size").set(f64::from(self.in_use()));
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request {
                rows,
                reply,
                _permit: permit,
            })
            .await
            .map_err(|_| SubmitError::Failed("the event writer stopped".into()))?;
        rx.await
            .map_err(|_| SubmitError::Failed("the event writer dropped the request".into()))?
            .map_err(SubmitError::Failed)
    }
}

async fn run(db: DatabaseConnection, mut rx: mpsc::Receiver<Request>) {
    let mut batch = Vec::with_capacity(MAX_REQUESTS_PER_BATCH);
    while rx.recv_many(&mut batch, MAX_REQUESTS_PER_BATCH).await > 0 {
        let started = Instant::now();
        let rows: Vec<_> = batch
            .iter_mut()
            .flat_map(|r| std::mem::take(&mut r.rows))
            .collect();
        let count = rows.len();
        let result = insert(&db, rows).await.map_err(|e| e.to_string());
        metrics::histogram!("pregonero_events_batch_size").record(count as f64);
        metrics::histogram!("pregonero_events_commit_seconds")
            .record(started.elapsed().as_secs_f64());
        match &result {
            Ok(()) => metrics::counter!("pregonero_events_committed_total").increment(count as u64),
            Err(e) => {
                tracing::error!(error = %e, count, "event batch not committed");
                metrics::counter!("pregonero_events_failed_total").increment(count as u64);
            }
        }
        for request in batch.drain(..) {
            let _ = request.reply.send(result.clone());
        }
    }
}

async fn insert(
    db: &DatabaseConnection,
    rows: Vec<events::ActiveModel>,
) -> Result<(), sea_orm::DbErr> {
    let txn = db.begin().await?;
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        events::Entity::insert_many(chunk.to_vec())
            .exec_without_returning(&txn)
            .await?;
    }
    txn.commit().await
}
