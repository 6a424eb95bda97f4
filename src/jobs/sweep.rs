//! Recovery sweep: re-enqueues messages whose job was lost and takes back expired leases.
//!
//! A message row is written before its job is pushed, so a crash in between leaves a queued row
//! with no job; a worker killed mid-send leaves a `sending` row with a lease. Both are found here.
//! Duplicate jobs are harmless: only one can claim the row.
use std::time::Duration;

use chrono::Utc;

use crate::{messages::repo, state::AppState};

/// Rows handled per sweep pass.
const BATCH: u64 = 1000;
/// A row without a job is left alone this long: the request that wrote it may still be pushing it.
const FRESH_SECS: i64 = 5;

/// One pass; returns how many messages were re-enqueued.
pub async fn sweep_once(state: &AppState) -> anyhow::Result<usize> {
    let now = Utc::now();
    let requeued = repo::requeue_expired(&state.db, now).await?;
    if requeued > 0 {
        tracing::warn!(requeued, "took back messages whose worker lease expired");
    }
    let stale_before =
        now - chrono::Duration::seconds(state.settings.delivery.lease_secs as i64 * 2);
    let fresh_before = now - chrono::Duration::seconds(FRESH_SECS);
    let stranded = repo::stranded(&state.db, fresh_before, stale_before, BATCH).await?;
    let mut ids = Vec::with_capacity(stranded.len());
    for (id, next_attempt_at) in stranded {
        let delay = (next_attempt_at - now).to_std().unwrap_or_default();
        state.queue.push(&id, delay).await?;
        ids.push(id);
    }
    repo::mark_enqueued(&state.db, &ids).await?;
    Ok(ids.len())
}

/// Runs [`sweep_once`] now and then every `delivery.sweep_interval_secs`.
pub async fn run_periodically(state: AppState) {
    let every = Duration::from_secs(state.settings.delivery.sweep_interval_secs.max(1));
    loop {
        match sweep_once(&state).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(enqueued = n, "recovery sweep re-enqueued messages"),
            Err(e) => tracing::error!(error = ?e, "recovery sweep failed"),
        }
        tokio::time::sleep(every).await;
    }
}

/// Hands back what this node was sending (clean shutdown).
pub async fn release_leases(state: &AppState) -> anyhow::Result<u64> {
    Ok(repo::release_node(&state.db, &state.node_name).await?)
}
