//! The delivery job: claim a queued message, have its account actor send it, record the outcome.
use std::time::Duration;

use apalis::prelude::{BoxDynError, Data};
use chrono::Utc;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::{
    channels::{ChannelError, Deliver, Lookup, MediaPayload, OutboundMessage, Receipt},
    media,
    messages::repo::{self, MessageRow},
    state::AppState,
};

/// Rate-limit answers tolerated within one attempt before the message goes back to the queue.
const MAX_RATE_LIMITS_PER_ATTEMPT: u32 = 10;
/// A job that arrives this early for its message sleeps instead of re-queueing.
const MAX_INLINE_WAIT: Duration = Duration::from_secs(5);

/// Payload: the message to deliver (all else is read from its row).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeliverJob {
    /// `messages.id`.
    pub message_id: String,
}

/// apalis entry point.
pub async fn handle(job: DeliverJob, state: Data<AppState>) -> Result<(), BoxDynError> {
    perform(&state, &job.message_id).await.map_err(|e| {
        tracing::error!(message_id = %job.message_id, error = ?e, "delivery job failed; apalis will retry it");
        e.into()
    })
}

/// Exponential backoff with jitter: base·2^(attempt-1), capped, then a random 50–100 % of it.
pub fn backoff(attempt: u32, base_ms: u64, max_ms: u64) -> Duration {
    let exp = base_ms.saturating_mul(1u64 << attempt.saturating_sub(1).min(32));
    let capped = exp.min(max_ms).max(1);
    let jittered = rand::rng().random_range(capped / 2..=capped);
    Duration::from_millis(jittered)
}

/// One delivery attempt of one message. Errors here are infrastructure errors (database), not provider ones.
#[tracing::instrument(skip_all, fields(message_id = %id))]
pub async fn perform(state: &AppState, id: &str) -> anyhow::Result<()> {
    let Some(msg) = repo::find(&state.db, id).await? else {
        return Ok(());
    };
    if msg.status != "queued" {
        return Ok(());
    }
    let early = (msg.next_attempt_at - Utc::now())
        .to_std()
        .unwrap_or_default();
    if early > MAX_INLINE_WAIT {
        state.queue.push(id, early).await?;
        return Ok(());
    }
    tokio::time::sleep(early).await;
    let lease =
        || Utc::now() + chrono::Duration::seconds(state.settings.delivery.lease_secs as i64);
    if !repo::claim(&state.db, id, &state.node_name, lease()).await? {
        return Ok(());
    }
    let attempt = u32::try_from(msg.attempts + 1).unwrap_or(u32::MAX);

    let mut outbound = match outbound(state, &msg).await {
        Ok(o) => o,
        Err(e) => return fail(state, &msg, e).await,
    };
    let Some(actor) = state.registry.send(Lookup(msg.channel_id.clone())).await? else {
        let e = ChannelError::Permanent {
            code: "channel-not-found",
            detail: "the channel account was deleted".into(),
        };
        return fail(state, &msg, e).await;
    };

    let mut rate_limits = 0;
    loop {
        let result = actor
            .send(Deliver(outbound.clone()))
            .await
            .unwrap_or_else(|e| {
                Err(ChannelError::Transient {
                    code: "actor-unavailable",
                    detail: e.to_string(),
                })
            });
        match result {
            Ok(Receipt {
                provider_message_id,
            }) => {
                repo::mark_sent(&state.db, id, &provider_message_id).await?;
                repo::record(&state.db, id, "attempt", Some("sent"), None, None).await?;
                metrics::counter!("pregonero_messages_total", "status" => "sent").increment(1);
                return Ok(());
            }
            Err(ChannelError::RateLimited { retry_after }) => {
                rate_limits += 1;
                let detail = format!("retry after {}s", retry_after.as_secs());
                repo::record(
                    &state.db,
                    id,
                    "attempt",
                    Some("rate_limited"),
                    Some("rate-limited"),
                    Some(&detail),
                )
                .await?;
                if rate_limits >= MAX_RATE_LIMITS_PER_ATTEMPT {
                    let at = Utc::now() + chrono::Duration::from_std(retry_after)?;
                    repo::schedule_retry(&state.db, id, at, "rate-limited", &detail, true).await?;
                    state.queue.push(id, retry_after).await?;
                    return Ok(());
                }
                // The actor froze the account; the next send waits the freeze out.
                repo::extend_lease(&state.db, id, lease()).await?;
            }
            Err(ChannelError::Migrated { new_chat_id }) => {
                let to = new_chat_id.to_string();
                repo::record(
                    &state.db,
                    id,
                    "attempt",
                    Some("migrated"),
                    Some("chat-migrated"),
                    Some(&to),
                )
                .await?;
                repo::set_recipient(&state.db, id, &to).await?;
                outbound.recipient = to;
            }
            Err(e @ ChannelError::Transient { .. }) => {
                repo::record(
                    &state.db,
                    id,
                    "attempt",
                    Some("retryable_error"),
                    Some(e.code()),
                    Some(&e.to_string()),
                )
                .await?;
                let max = state.settings.delivery.max_attempts;
                if attempt >= max {
                    let detail = format!("gave up after {attempt} attempts: {e}");
                    repo::mark_failed(&state.db, id, e.code(), &detail).await?;
                    repo::record(
                        &state.db,
                        id,
                        "failed",
                        Some("exhausted"),
                        Some(e.code()),
                        Some(&detail),
                    )
                    .await?;
                    metrics::counter!("pregonero_messages_total", "status" => "failed")
                        .increment(1);
                    return Ok(());
                }
                let d = &state.settings.delivery;
                let delay = backoff(attempt, d.backoff_base_ms, d.backoff_max_ms);
                let at = Utc::now() + chrono::Duration::from_std(delay)?;
                repo::schedule_retry(&state.db, id, at, e.code(), &e.to_string(), false).await?;
                repo::record(
                    &state.db,
                    id,
                    "retry_scheduled",
                    None,
                    Some(e.code()),
                    Some(&format!("in {delay:?}")),
                )
                .await?;
                state.queue.push(id, delay).await?;
                return Ok(());
            }
            Err(e) => {
                if let ChannelError::Unauthorized { detail } = &e {
                    crate::channels::repo::set_status(
                        &state.db,
                        &msg.channel_id,
                        "unauthorized",
                        detail,
                    )
                    .await?;
                    tracing::error!(channel_id = %msg.channel_id, "provider rejected the account's credentials");
                }
                repo::record(
                    &state.db,
                    id,
                    "attempt",
                    Some("permanent_error"),
                    Some(e.code()),
                    Some(&e.to_string()),
                )
                .await?;
                return fail(state, &msg, e).await;
            }
        }
    }
}

async fn fail(state: &AppState, msg: &MessageRow, e: ChannelError) -> anyhow::Result<()> {
    repo::mark_failed(&state.db, &msg.id, e.code(), &e.to_string()).await?;
    repo::record(
        &state.db,
        &msg.id,
        "failed",
        Some("permanent"),
        Some(e.code()),
        Some(&e.to_string()),
    )
    .await?;
    metrics::counter!("pregonero_messages_total", "status" => "failed").increment(1);
    Ok(())
}

async fn outbound(state: &AppState, msg: &MessageRow) -> Result<OutboundMessage, ChannelError> {
    let media = match &msg.media_id {
        None => None,
        Some(media_id) => {
            let (meta, bytes) =
                media::load(state, media_id)
                    .await
                    .map_err(|e| ChannelError::Permanent {
                        code: "media-unavailable",
                        detail: format!("{e:#}"),
                    })?;
            Some(MediaPayload {
                bytes,
                content_type: meta.content_type,
                filename: meta.filename.unwrap_or_else(|| "file".into()),
            })
        }
    };
    Ok(OutboundMessage {
        recipient: msg.recipient.clone(),
        text: msg.body.clone(),
        parse_mode: msg.parse_mode.clone(),
        media,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        for _ in 0..100 {
            let first = backoff(1, 1000, 60_000);
            assert!((500..=1000).contains(&first.as_millis()), "{first:?}");
            let tenth = backoff(10, 1000, 60_000);
            assert!((30_000..=60_000).contains(&tenth.as_millis()), "{tenth:?}");
        }
    }
}
