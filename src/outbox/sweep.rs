//! Recovery sweep: re-enqueues messages whose job was lost and takes back expired leases; and
//! the purge of finished jobs from the queue's table.
//!
//! A message row is written before its job is pushed, so a crash in between leaves a queued row
//! with no job; a worker killed mid-send leaves a `sending` row with a lease. Both are found here.
//! Duplicate jobs are harmless: only one can claim the row.
use std::time::Duration;

use chrono::Utc;

use super::{Outbox, repo};

/// Rows handled per sweep pass.
const BATCH: u64 = 1000;
/// A row without a job is left alone this long: the request that wrote it may still be pushing it.
const FRESH_SECS: i64 = 5;

/// One pass; returns how many messages were re-enqueued.
pub async fn sweep_once(state: &Outbox) -> anyhow::Result<usize> {
    sweep_pass(state, chrono::Duration::seconds(FRESH_SECS)).await
}

/// A pass that leaves alone rows without a job younger than `fresh`.
async fn sweep_pass(state: &Outbox, fresh: chrono::Duration) -> anyhow::Result<usize> {
    let now = Utc::now();
    let requeued = repo::requeue_expired(&state.db, now).await?;
    if requeued > 0 {
        tracing::warn!(requeued, "took back messages whose worker lease expired");
    }
    let stale_before =
        now - chrono::Duration::seconds(state.settings.delivery.lease_secs as i64 * 2);
    let fresh_before = now - fresh;
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
pub async fn run_periodically(state: Outbox) {
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

/// At start, before this run's workers: what this node's earlier runs held is void (they are
/// dead: a node runs one process). Messages they were sending go back to the queue and the jobs
/// their workers had locked are unlocked, so work cut by a crash resumes within seconds instead
/// of waiting for leases and heartbeats to expire. Returns (messages, jobs).
pub async fn recover_own(state: &Outbox, worker_prefix: &str) -> anyhow::Result<(u64, u64)> {
    let messages = repo::release_node(&state.db, &state.node_name).await?;
    let jobs = state.queue.release_locked_by(worker_prefix).await?;
    // Rows committed but not yet pushed when the process died have no job: push them now,
    // however young (a row another node is pushing right now only gets a harmless duplicate).
    while sweep_pass(state, chrono::Duration::zero()).await? == BATCH as usize {}
    Ok((messages, jobs))
}

/// Hands back what this node was sending (clean shutdown).
pub async fn release_leases(state: &Outbox) -> anyhow::Result<u64> {
    Ok(repo::release_node(&state.db, &state.node_name).await?)
}

/// Finished jobs deleted per statement (a first pass over a long history runs in chunks).
const PURGE_CHUNK: u64 = 5000;

/// Deletes the queue's finished jobs older than `delivery.keep_finished_jobs_secs`; returns
/// how many.
pub async fn purge_once(state: &Outbox) -> anyhow::Result<u64> {
    let keep = Duration::from_secs(state.settings.delivery.keep_finished_jobs_secs);
    let mut total = 0;
    loop {
        let n = state.queue.purge_finished(keep, PURGE_CHUNK).await?;
        total += n;
        if n < PURGE_CHUNK {
            return Ok(total);
        }
    }
}

/// Jobs deleted between two vacuums of the queue's table ([`super::Queue::vacuum`]): at a
/// sustained 400 messages/s, one vacuum every 25 s or so, of a table of about a minute of jobs.
const VACUUM_AFTER: u64 = 10_000;

/// Runs [`purge_once`] every half of the retention (between 1 and 30 s), so the queue's table
/// holds about one retention's worth of finished jobs; and vacuums it after every
/// [`VACUUM_AFTER`] jobs deleted.
pub async fn purge_periodically(state: Outbox) {
    let keep = state.settings.delivery.keep_finished_jobs_secs;
    let every = Duration::from_secs((keep / 2).clamp(1, 30));
    let mut since_vacuum = 0;
    loop {
        tokio::time::sleep(every).await;
        match purge_once(&state).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::debug!(deleted = n, "deleted finished delivery jobs");
                since_vacuum += n;
            }
            Err(e) => tracing::warn!(error = ?e, "could not delete finished delivery jobs"),
        }
        if since_vacuum >= VACUUM_AFTER {
            since_vacuum = 0;
            let started = std::time::Instant::now();
            // A role that does not own the table gets a warning from PostgreSQL, not an error:
            // autovacuum's job then.
            match state.queue.vacuum().await {
                Ok(()) => tracing::debug!(
                    took_ms = started.elapsed().as_millis() as u64,
                    "vacuumed the delivery queue's table"
                ),
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "could not vacuum the delivery queue's table")
                }
            }
        }
    }
}
