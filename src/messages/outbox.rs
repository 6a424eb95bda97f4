//! The outbox's door: every single message (API send, alert) is admitted here, once.
//!
//! Without an idempotency key a message goes through the batching writer (one commit and one
//! job push for everything that arrived meanwhile). With a key it is written alone, so that a
//! request racing another with the same key rolls back only itself and answers with the
//! winner's message.
use super::{
    dispatch, is_unique_violation,
    repo::{self, MessageRow},
    writer::{Admission, Admitted},
};
use crate::{integrations, state::AppState};

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
    state: &AppState,
    owner_id: &str,
    key: Option<&str>,
) -> anyhow::Result<Option<MessageRow>> {
    match key {
        Some(key) => Ok(repo::find_by_idempotency_key(&state.db, owner_id, key).await?),
        None => Ok(None),
    }
}

/// Admits one message.
pub async fn admit(state: &AppState, pending: Pending) -> anyhow::Result<Admit> {
    let Pending { message, quota } = pending;
    let (owner_id, key) = (message.owner_id.clone(), message.idempotency_key.clone());
    let row = message.into_row(chrono::Utc::now());
    let Some(key) = key else {
        return Ok(match state.ledger.admit(Admission { row, quota }).await? {
            Admitted::Accepted(msg) => Admit::Accepted(*msg),
            Admitted::Refused => Admit::Refused,
        });
    };
    use sea_orm::TransactionTrait;
    let txn = state.db.begin().await?;
    if let Some(integration) = &quota
        && !integrations::repo::take_quota(&txn, integration, state.clock.today()).await?
    {
        txn.rollback().await?;
        return Ok(Admit::Refused);
    }
    match repo::insert_in(&txn, row).await {
        Ok(msg) => {
            txn.commit().await?;
            dispatch(&state.db, &state.queue, &msg.id).await;
            Ok(Admit::Accepted(msg))
        }
        Err(e) if is_unique_violation(&e) => {
            // Two requests raced with one key: the loser answers with the winner's message.
            txn.rollback().await?;
            let existing = repo::find_by_idempotency_key(&state.db, &owner_id, &key)
                .await?
                .ok_or_else(|| anyhow::anyhow!("idempotency row vanished"))?;
            Ok(Admit::Replayed(existing))
        }
        Err(e) => Err(e.into()),
    }
}
