//! Messages: accept a send request, keep its ledger row and history, answer its status.
pub mod outbox;
pub mod repo;
mod routes;
pub mod stats;
pub mod writer;

pub use routes::configure;
pub(crate) use routes::{idempotency_key, is_unique_violation, replayed, validate_content};

use sea_orm::DatabaseConnection;

use crate::jobs::Queue;

/// Pushes the delivery job of a freshly inserted message. If the push fails the row stays
/// queued without a job and the recovery sweep enqueues it, so this only logs.
pub async fn dispatch(db: &DatabaseConnection, queue: &Queue, message_id: &str) {
    let result = match queue.push(message_id, std::time::Duration::ZERO).await {
        Ok(()) => repo::mark_enqueued(db, &[message_id.to_owned()])
            .await
            .map_err(anyhow::Error::from),
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        tracing::warn!(%message_id, error = ?e, "enqueue failed; the sweep will retry");
    }
    metrics::counter!("pregonero_messages_accepted_total").increment(1);
}
