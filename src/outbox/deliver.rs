//! The delivery job: claim a queued message, send it through its account, record the outcome.
//!
//! Every state change is written in one transaction with the event that explains it.
use crate::domain::ChannelStatus;
use crate::domain::HistoryKind;
use std::time::Duration;

use anyhow::Context;
use apalis::prelude::{BoxDynError, Data};
use chrono::Utc;
use rand::Rng;
use sea_orm::TransactionTrait;
use serde::{Deserialize, Serialize};

use super::{
    Outbox,
    hooks::Outcome,
    repo::{self, MessageRow},
    stats,
};
use crate::channels::{ChannelError, OutboundMessage, Receipt};
use crate::domain::MessageId;

/// Rate-limit answers tolerated within one attempt before the message goes back to the queue.
const MAX_RATE_LIMITS_PER_ATTEMPT: u32 = 10;
/// What a claimed delivery keeps of its lease for the provider's answer and the record of the
/// send (which waits for the database until 2 s before the lease ends): a turn is waited for
/// only in what is left. A send that left after its lease ran out could be taken by another
/// worker and sent twice (the three-replica test saw one during a Redis restart, 5 s lease).
const SEND_MARGIN: Duration = Duration::from_millis(2500);
/// A job that arrives this early for its message sleeps instead of re-queueing.
const MAX_INLINE_WAIT: Duration = Duration::from_secs(5);

/// Payload: the message to deliver (all else is read from its row).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeliverJob {
    /// `messages.id`.
    pub message_id: MessageId,
}

/// apalis entry point. The delivery runs in its own task: if apalis drops this future on
/// shutdown, the delivery still records its outcome (shutdown waits for it through `in_flight`).
///
/// A delivery whose database did not answer before it claimed anything runs again here, once
/// it does, for up to [`UNCLAIMED_RETRY_FOR`]: handed back to apalis, the job would fail in a
/// queue that lives in that same database, stay locked to a worker that apalis restarts under
/// a new name, and wait for apalis's heartbeat timeout or the sweep's rule for lost jobs (two
/// leases).
pub async fn handle(job: DeliverJob, state: Data<Outbox>) -> Result<(), BoxDynError> {
    let state: Outbox = (*state).clone();
    let running = state.in_flight.enter();
    let task = tokio::spawn(async move {
        let _running = running;
        let started = std::time::Instant::now();
        let mut pause = Duration::from_millis(100);
        loop {
            let e = match perform(&state, &job.message_id).await {
                Ok(()) => return Ok(()),
                Err(Interrupted::Unclaimed(e))
                    if crate::db::unreachable(&e)
                        && started.elapsed() + pause < UNCLAIMED_RETRY_FOR =>
                {
                    tracing::debug!(message_id = %job.message_id, error = %format!("{e:#}"), "delivery not started: the database does not answer; trying again shortly");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                    continue;
                }
                Err(Interrupted::Unclaimed(e) | Interrupted::Held(e)) => e,
            };
            tracing::error!(message_id = %job.message_id, error = ?e, "delivery job failed; apalis will retry it");
            return Err(e);
        }
    });
    Ok(task.await??)
}

/// How long a delivery whose claim failed (the database did not answer) keeps trying in its
/// own task before the job goes back to apalis.
const UNCLAIMED_RETRY_FOR: Duration = Duration::from_secs(30);

/// How a delivery ended without an outcome (infrastructure errors: the database).
#[derive(Debug)]
pub enum Interrupted {
    /// Before its message was claimed: nothing changed, it may run again at once.
    Unclaimed(anyhow::Error),
    /// After: the message stays claimed until its lease runs out (the database did not come
    /// back in time to hand it back, or refused a statement, or the provider has it and its
    /// record failed).
    Held(anyhow::Error),
}

/// Marks the error of a send the provider accepted and that could not be recorded: its message
/// must not be handed back (it would be sent again).
#[derive(Debug)]
struct SentUnrecorded;

impl std::fmt::Display for SentUnrecorded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("sent, and the send could not be recorded")
    }
}

/// Exponential backoff with jitter: base·2^(attempt-1), capped, then a random 50–100 % of it.
pub fn backoff(attempt: u32, base_ms: u64, max_ms: u64) -> Duration {
    let exp = base_ms.saturating_mul(1u64 << attempt.saturating_sub(1).min(32));
    let capped = exp.min(max_ms).max(1);
    let jittered = rand::rng().random_range(capped / 2..=capped);
    Duration::from_millis(jittered)
}

/// One delivery attempt of one message.
#[tracing::instrument(skip_all, fields(message_id = %id))]
pub async fn perform(state: &Outbox, id: &MessageId) -> Result<(), Interrupted> {
    let Some(claim) = claim(state, id).await.map_err(Interrupted::Unclaimed)? else {
        return Ok(());
    };
    let lease_until = claim.lease_until;
    match deliver_claimed(state, claim).await {
        Ok(()) => Ok(()),
        // Sent: handing it back would send it again. And a statement the database refused
        // would refuse it again: handed back, the message would come round at once, forever.
        Err(e) if e.downcast_ref::<SentUnrecorded>().is_some() || !crate::db::unreachable(&e) => {
            Err(Interrupted::Held(e))
        }
        Err(e) => {
            if hand_back(state, id, lease_until).await {
                tracing::warn!(message_id = %id, error = %format!("{e:#}"), "delivery interrupted before the send: message handed back to the queue");
                Ok(())
            } else {
                Err(Interrupted::Held(e))
            }
        }
    }
}

/// A claimed message, with what is known of the listeners' vetoes.
struct Claim {
    msg: MessageRow,
    /// `Some`: the claim checked the SQL vetoes (the first that holds, by index) and the rest
    /// are still to ask; `None`: every listener is still to ask.
    sql_veto: Option<Option<usize>>,
    /// Until when no other worker takes it (the sweep takes back expired leases).
    lease_until: chrono::DateTime<Utc>,
}

/// Claims message `id` if it is queued and due (a job that comes a little early waits for it);
/// `None` when there is nothing to do.
async fn claim(state: &Outbox, id: &MessageId) -> anyhow::Result<Option<Claim>> {
    let lease =
        || Utc::now() + chrono::Duration::seconds(state.settings.delivery.lease_secs as i64);
    // Most jobs find their message due: claimed, read and checked against the listeners' SQL
    // vetoes in one statement, with the other deliveries that start meanwhile (`claims`).
    // (The claimer warned once for a whole batch that failed.)
    let batched = match &state.claims {
        Some(claimer) => claimer
            .claim(id)
            .await
            .inspect_err(|e| tracing::debug!(error = %e, "claiming alone"))
            .ok(),
        None => None,
    };
    let (claimed, lease_until) = match batched {
        Some(claimed) => claimed,
        None => {
            let lease_until = lease();
            let claimed = repo::claim_due(
                &state.db,
                id,
                &state.node_name,
                Utc::now(),
                lease_until,
                &state.listeners.veto_sql(),
            )
            .await?;
            (claimed, lease_until)
        }
    };
    if let Some((msg, vetoed)) = claimed {
        return Ok(Some(Claim {
            msg,
            sql_veto: Some(vetoed),
            lease_until,
        }));
    }
    let Some(msg) = repo::find(&state.db, id).await? else {
        return Ok(None);
    };
    if msg.status != crate::domain::MessageStatus::Queued.as_str() {
        return Ok(None);
    }
    let early = (msg.next_attempt_at - Utc::now())
        .to_std()
        .unwrap_or_default();
    if early > MAX_INLINE_WAIT {
        state.queue.push(id, early).await?;
        return Ok(None);
    }
    tokio::time::sleep(early).await;
    let lease_until = lease();
    if !repo::claim(&state.db, id, &state.node_name, lease_until).await? {
        return Ok(None);
    }
    Ok(Some(Claim {
        msg,
        sql_veto: None,
        lease_until,
    }))
}

/// Puts a claimed message that was not sent back in the queue (`sending → queued`, with a new
/// job), trying while its lease leaves room; whether it did. After that its lease frees it.
async fn hand_back(state: &Outbox, id: &MessageId, lease_until: chrono::DateTime<Utc>) -> bool {
    let until = lease_until - chrono::Duration::from_std(SEND_MARGIN).unwrap_or_default();
    let mut pause = Duration::from_millis(100);
    loop {
        match repo::release(&state.db, id, &state.node_name).await {
            Ok(false) => return false,
            Ok(true) => break,
            Err(e)
                if Utc::now() + chrono::Duration::from_std(pause).unwrap_or_default() < until =>
            {
                tracing::debug!(message_id = %id, error = %e, "could not hand the message back yet");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            Err(_) => return false,
        }
    }
    // Without a job, the sweep pushes one within its interval.
    if let Err(e) = state.queue.push(id, Duration::ZERO).await {
        tracing::warn!(message_id = %id, error = %format!("{e:#}"), "handed back without a job: the recovery sweep will push one");
    }
    true
}

/// Delivers a claimed message and records the outcome.
async fn deliver_claimed(state: &Outbox, claim: Claim) -> anyhow::Result<()> {
    let Claim {
        msg,
        sql_veto,
        mut lease_until,
    } = claim;
    let id = &msg.id;
    let lease =
        || Utc::now() + chrono::Duration::seconds(state.settings.delivery.lease_secs as i64);
    let veto = match sql_veto {
        Some(Some(i)) => Some(state.listeners.veto_sql()[i].veto()),
        Some(None) => state.listeners.veto_rest(&state.db, &msg).await?,
        None => state.listeners.veto(&state.db, &msg).await?,
    };
    let attempt = u32::try_from(msg.attempts + 1).unwrap_or(u32::MAX);
    // A listener may stop it now (a campaign contact who opted out after the campaign started
    // is never sent to).
    if let Some(veto) = veto {
        let outcome = Outcome::Skipped {
            code: veto.code.to_owned(),
        };
        let txn = state.db.begin().await?;
        repo::mark_skipped(&txn, id, veto.code, &veto.detail).await?;
        repo::record(&txn, id, HistoryKind::Skipped, None, Some(veto.code), None).await?;
        state.listeners.record(&txn, &msg, &outcome).await?;
        txn.commit().await?;
        state.listeners.after(state, &msg, &outcome).await;
        return Ok(());
    }

    let mut outbound = match outbound(state, &msg).await {
        Ok(o) => o,
        Err(e @ ChannelError::Transient { .. }) => {
            return retry_later(state, &msg, attempt, &e).await;
        }
        Err(e) => return fail(state, &msg, &e, false).await,
    };
    let mut sender = state.running.get(&msg.channel_id);
    if sender.is_none() && state.accounts().start_one(&msg.channel_id).await? {
        // Added through another replica since this one last looked.
        sender = state.running.get(&msg.channel_id);
    }
    let Some(sender) = sender else {
        let e = ChannelError::Permanent {
            code: "channel-not-found",
            detail: "the channel account was deleted".into(),
        };
        return fail(state, &msg, &e, false).await;
    };
    sender.revive(&state.registry).await;

    // A delivery waits for its turn at most half its lease: one that waited out its lease could
    // be taken by another worker and sent twice (the three-replica test saw it with a 5 s lease
    // and the default 5 s horizon).
    let base_horizon = Duration::from_millis(state.settings.delivery.pacing_horizon_ms)
        .min(Duration::from_secs(state.settings.delivery.lease_secs) / 2);
    let mut rate_limits = 0;
    loop {
        // The send must leave while the lease still has room for the provider's answer and the
        // record (SEND_MARGIN): slow steps before it (a loaded database, a Redis restart) take
        // from the wait for a turn, never from that room. The sender holds the pacer to it.
        let room = (lease_until - Utc::now())
            .to_std()
            .unwrap_or_default()
            .saturating_sub(SEND_MARGIN);
        let horizon = base_horizon.min(room);
        let result = sender.deliver(&outbound, horizon).await;
        if let Err(ChannelError::Deferred { wait }) = result {
            // Its turn is far off (a busy group, a frozen account): free the delivery slot and
            // come back a little before the turn. Nothing was sent: not an attempt.
            return come_back(state, id, wait, horizon).await;
        }
        // A pair-rate or quality limit waits longer for each such answer in a row; read that
        // count before the transaction: in SQLite a transaction that reads and then writes fails
        // at once (no busy wait) if another connection wrote in between.
        let hits = match &result {
            Err(e @ (ChannelError::RecipientLimited { .. } | ChannelError::Throttled { .. })) => {
                repo::count_outcomes(&state.db, id, e.code()).await? as u32
            }
            _ => 0,
        };
        let result = match result {
            // The provider has it now: record that, whatever the database does meanwhile.
            Ok(Receipt {
                provider_message_id,
            }) => {
                return record_sent(state, &msg, provider_message_id, lease_until)
                    .await
                    .context(SentUnrecorded);
            }
            Err(e) => e,
        };
        let txn = state.db.begin().await?;
        match result {
            ChannelError::RateLimited { retry_after } => {
                rate_limits += 1;
                let detail = format!("retry after {}s", retry_after.as_secs());
                let code = Some("rate-limited");
                repo::record(
                    &txn,
                    id,
                    HistoryKind::Attempt,
                    Some("rate_limited"),
                    code,
                    Some(&detail),
                )
                .await?;
                if rate_limits >= MAX_RATE_LIMITS_PER_ATTEMPT {
                    let at = Utc::now() + chrono::Duration::from_std(retry_after)?;
                    repo::schedule_retry(&txn, id, at, "rate-limited", &detail, true).await?;
                    txn.commit().await?;
                    state.queue.push(id, retry_after).await?;
                    return Ok(());
                }
                // The pacer froze the account; the next send waits the freeze out.
                lease_until = lease();
                repo::extend_lease(&txn, id, lease_until).await?;
                txn.commit().await?;
            }
            e @ (ChannelError::RecipientLimited { retry_after }
            | ChannelError::Throttled { retry_after }) => {
                // Only this message waits: 4^n × base for the n-th pair-rate hit in a row
                // (CHANNELS.md), the account's pause for a quality limit. Not an attempt.
                let delay = match e {
                    ChannelError::RecipientLimited { .. } => {
                        retry_after.saturating_mul(4u32.saturating_pow(hits.min(6)))
                    }
                    _ => retry_after,
                };
                let detail = format!("retry in {}s", delay.as_secs());
                repo::record(
                    &txn,
                    id,
                    HistoryKind::Attempt,
                    Some("rate_limited"),
                    Some(e.code()),
                    Some(&detail),
                )
                .await?;
                let at = Utc::now() + chrono::Duration::from_std(delay)?;
                repo::schedule_retry(&txn, id, at, e.code(), &detail, true).await?;
                txn.commit().await?;
                state.queue.push(id, delay).await?;
                return Ok(());
            }
            ChannelError::Migrated { new_chat_id } => {
                let to = new_chat_id.to_string();
                let code = Some("chat-migrated");
                repo::record(
                    &txn,
                    id,
                    HistoryKind::Attempt,
                    Some("migrated"),
                    code,
                    Some(&to),
                )
                .await?;
                repo::set_recipient(&txn, id, &to).await?;
                // Listeners read the chat it moved from in `msg.recipient`.
                let from = MessageRow {
                    recipient: outbound.recipient.clone(),
                    ..msg.clone()
                };
                let outcome = Outcome::Migrated { to: to.clone() };
                state.listeners.record(&txn, &from, &outcome).await?;
                txn.commit().await?;
                state.listeners.after(state, &from, &outcome).await;
                outbound.recipient = to;
            }
            e @ ChannelError::Transient { .. } => {
                drop(txn);
                return retry_later(state, &msg, attempt, &e).await;
            }
            e => {
                drop(txn);
                if let ChannelError::Unauthorized { detail } = &e {
                    crate::channels::repo::set_status(
                        &state.db,
                        &msg.channel_id,
                        ChannelStatus::Unauthorized,
                        detail,
                    )
                    .await?;
                    tracing::error!(channel_id = %msg.channel_id, "provider rejected the account's credentials");
                }
                return fail(state, &msg, &e, true).await;
            }
        }
    }
}

/// Records a send the provider accepted. It has the message now, so a database that does not
/// answer is waited for (with backoff, until shortly before the message's lease ends: the lease
/// keeps every other worker off it) rather than failing the job: apalis would run it again and
/// the recipient would get the message twice.
async fn record_sent(
    state: &Outbox,
    msg: &MessageRow,
    provider_message_id: String,
    lease_until: chrono::DateTime<Utc>,
) -> anyhow::Result<()> {
    let until = lease_until - chrono::Duration::seconds(2);
    let mut pause = Duration::from_millis(100);
    // First in a batch with the sends that finished meanwhile; alone if that batch failed.
    if let Some(writer) = &state.sent {
        match writer
            .record(msg.clone(), provider_message_id.clone())
            .await
        {
            Ok(()) => {
                metrics::counter!("pregonero_messages_total", "status" => "sent").increment(1);
                let outcome = Outcome::Sent {
                    provider_message_id,
                };
                state.listeners.after(state, msg, &outcome).await;
                return Ok(());
            }
            Err(e) => {
                tracing::warn!(message_id = %msg.id, error = %e, "sent, but its batch was not recorded: recording it alone");
            }
        }
    }
    loop {
        match try_record_sent(state, msg, &provider_message_id).await {
            Ok(outcome) => {
                metrics::counter!("pregonero_messages_total", "status" => "sent").increment(1);
                state.listeners.after(state, msg, &outcome).await;
                return Ok(());
            }
            Err(e) if Utc::now() + chrono::Duration::from_std(pause)? < until => {
                tracing::warn!(message_id = %msg.id, error = %e, "sent, but the database does not answer: recording it again shortly");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e),
        }
    }
}

async fn try_record_sent(
    state: &Outbox,
    msg: &MessageRow,
    provider_message_id: &str,
) -> anyhow::Result<Outcome> {
    let txn = state.db.begin().await?;
    repo::mark_sent(&txn, &msg.id, provider_message_id).await?;
    repo::record(
        &txn,
        &msg.id,
        HistoryKind::Attempt,
        Some("sent"),
        None,
        None,
    )
    .await?;
    stats::bump(&txn, msg, Utc::now(), 1, 0).await?;
    let outcome = Outcome::Sent {
        provider_message_id: provider_message_id.to_owned(),
    };
    state.listeners.record(&txn, msg, &outcome).await?;
    txn.commit().await?;
    Ok(outcome)
}

/// Puts a claimed message back in the queue for shortly before its turn, `wait` from now:
/// nothing was sent, so it is not an attempt.
async fn come_back(
    state: &Outbox,
    id: &MessageId,
    wait: Duration,
    horizon: Duration,
) -> anyhow::Result<()> {
    let delay = wait.saturating_sub(horizon / 2);
    repo::defer(
        &state.db,
        id,
        Utc::now() + chrono::Duration::from_std(delay)?,
    )
    .await?;
    state.queue.push(id, delay).await?;
    Ok(())
}

/// A retryable failure: back off and re-queue, or give up after `delivery.max_attempts`.
async fn retry_later(
    state: &Outbox,
    msg: &MessageRow,
    attempt: u32,
    e: &ChannelError,
) -> anyhow::Result<()> {
    let id = &msg.id;
    let detail = e.to_string();
    let txn = state.db.begin().await?;
    repo::record(
        &txn,
        id,
        HistoryKind::Attempt,
        Some("retryable_error"),
        Some(e.code()),
        Some(&detail),
    )
    .await?;
    if attempt >= state.settings.delivery.max_attempts {
        let detail = format!("gave up after {attempt} attempts: {e}");
        repo::mark_failed(&txn, id, e.code(), &detail).await?;
        stats::bump(&txn, msg, Utc::now(), 0, 1).await?;
        repo::record(
            &txn,
            id,
            HistoryKind::Failed,
            Some("exhausted"),
            Some(e.code()),
            Some(&detail),
        )
        .await?;
        let outcome = Outcome::Failed {
            code: e.code().to_owned(),
            detail,
        };
        state.listeners.record(&txn, msg, &outcome).await?;
        txn.commit().await?;
        metrics::counter!("pregonero_messages_total", "status" => "failed").increment(1);
        state.listeners.after(state, msg, &outcome).await;
        return Ok(());
    }
    let d = &state.settings.delivery;
    let delay = backoff(attempt, d.backoff_base_ms, d.backoff_max_ms);
    let at = Utc::now() + chrono::Duration::from_std(delay)?;
    repo::schedule_retry(&txn, id, at, e.code(), &detail, false).await?;
    let when = format!("in {delay:?}");
    repo::record(
        &txn,
        id,
        HistoryKind::RetryScheduled,
        None,
        Some(e.code()),
        Some(&when),
    )
    .await?;
    txn.commit().await?;
    state.queue.push(id, delay).await?;
    Ok(())
}

/// `sending → failed` for a permanent error; `attempted` records the provider call that gave it.
async fn fail(
    state: &Outbox,
    msg: &MessageRow,
    e: &ChannelError,
    attempted: bool,
) -> anyhow::Result<()> {
    let id = &msg.id;
    let detail = e.to_string();
    let code = Some(e.code());
    let txn = state.db.begin().await?;
    if attempted {
        repo::record(
            &txn,
            id,
            HistoryKind::Attempt,
            Some("permanent_error"),
            code,
            Some(&detail),
        )
        .await?;
    }
    repo::mark_failed(&txn, id, e.code(), &detail).await?;
    repo::record(
        &txn,
        id,
        HistoryKind::Failed,
        Some("permanent"),
        code,
        Some(&detail),
    )
    .await?;
    stats::bump(&txn, msg, Utc::now(), 0, 1).await?;
    let outcome = Outcome::Failed {
        code: e.code().to_owned(),
        detail,
    };
    state.listeners.record(&txn, msg, &outcome).await?;
    txn.commit().await?;
    metrics::counter!("pregonero_messages_total", "status" => "failed").increment(1);
    state.listeners.after(state, msg, &outcome).await;
    Ok(())
}

async fn outbound(state: &Outbox, msg: &MessageRow) -> Result<OutboundMessage, ChannelError> {
    let media = match &msg.media_id {
        None => None,
        Some(media_id) => Some(state.attachments.payload(media_id).await?),
    };
    let template = match &msg.provider_template {
        None => None,
        Some(json) => Some(
            serde_json::from_str(json).map_err(|e| ChannelError::Permanent {
                code: "invalid-template",
                detail: format!("stored provider template is unreadable: {e}"),
            })?,
        ),
    };
    Ok(OutboundMessage {
        id: Some(msg.id.clone()),
        recipient: msg.recipient.clone(),
        text: msg.body.clone(),
        parse_mode: msg.parse_mode.clone(),
        media,
        template,
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
