//! The accounts this process runs, as senders reach them: a send waits for its turn and calls
//! the provider in the sender's own task, with the account's pacer and connection, instead of
//! through the account actor's mailbox (a delivery job crossed to the actors' thread and back
//! twice per message, for the actor's address and for the send: four of the fourteen context
//! switches a delivered message cost).
//!
//! The actors still own their accounts: the registry starts, restarts and retires them and is
//! the only writer of this map, whose entries hold the same connection and pacer (the pacer
//! outlives an actor's restarts, so no path can reset a freeze). An actor's update reader and
//! snapshots stay in the actor.
use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::Duration,
};

use actix::Addr;

use super::{AccountActor, ChannelError, OutboundMessage, Pacer, Receipt, adapter::Connection};
use crate::domain::ChannelId;
use crate::{
    pacing::{Deferred, LimitScope, Permit},
    telemetry::redact,
};

/// How far past its horizon a pacer may answer before the wait is dropped (and the send comes
/// back later): the pacer's own answer at the horizon is preferred to this cut.
const ACQUIRE_SLACK: Duration = Duration::from_millis(100);
/// When a send whose departure went stale before it could leave comes again.
const STALE_RETRY: Duration = Duration::from_millis(100);

/// The running accounts by id (written by the registry only).
#[derive(Clone, Default)]
pub struct Running(Arc<RwLock<HashMap<ChannelId, Sender>>>);

impl Running {
    /// The sender of account `id`, if this process runs it.
    pub fn get(&self, id: &ChannelId) -> Option<Sender> {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }

    fn map(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<ChannelId, Sender>> {
        self.0.write().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn insert(&self, sender: Sender) {
        self.map().insert(sender.id.clone(), sender);
    }

    pub(super) fn remove(&self, id: &ChannelId) -> Option<Sender> {
        self.map().remove(id)
    }

    /// Every running account, taken off the list.
    pub(super) fn take_all(&self) -> Vec<Sender> {
        self.map().drain().map(|(_, sender)| sender).collect()
    }

    /// Every running account.
    pub(super) fn all(&self) -> Vec<Sender> {
        let map = self.0.read().unwrap_or_else(|e| e.into_inner());
        map.values().cloned().collect()
    }

    pub(super) fn len(&self) -> usize {
        self.0.read().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// One running account as a sender uses it.
#[derive(Clone)]
pub struct Sender {
    pub(super) id: ChannelId,
    pub(super) kind: &'static str,
    pub(super) connection: Arc<dyn Connection>,
    pub(super) pacer: Arc<dyn Pacer>,
    pub(super) actor: Addr<AccountActor>,
}

impl Sender {
    /// Whether the account's actor runs (a dead one is restarted by
    /// [`super::Lookup`]; its sends go on meanwhile).
    pub fn actor_alive(&self) -> bool {
        self.actor.connected()
    }

    /// Has `registry` start the account's actor again if it died (its update reader with it).
    /// Sends need not wait for it: they go on with the same pacer and connection.
    pub async fn revive(&self, registry: &Addr<super::ChannelRegistry>) {
        if !self.actor_alive() {
            let _ = registry.send(super::Lookup(self.id.clone())).await;
        }
    }

    /// Where a send to each of these recipients would stand, in order (see
    /// [`crate::pacing::Pacer::plan`]).
    pub fn plan(&self, recipients: &[String], horizon: Duration) -> Vec<Option<Duration>> {
        recipients
            .iter()
            .map(|recipient| {
                let kind = self.connection.recipient_kind(recipient);
                self.pacer.plan(recipient, kind, horizon)
            })
            .collect()
    }

    /// Sends one message, waiting for the account's and the recipient's turn first; a turn
    /// further away than `horizon` answers [`ChannelError::Deferred`] without sending.
    pub async fn deliver(
        &self,
        msg: &OutboundMessage,
        horizon: Duration,
    ) -> Result<Receipt, ChannelError> {
        let (connection, pacer, channel_id, channel) =
            (&*self.connection, &*self.pacer, &self.id, self.kind);
        if let Err(wait) = connection.ready() {
            metrics::counter!("pregonero_sends_total", "channel" => channel, "outcome" => "deferred")
                .increment(1);
            return Err(ChannelError::Deferred { wait });
        }
        let kind = connection.recipient_kind(&msg.recipient);
        // The horizon is a promise to the delivery (its lease counts on it): a pacer that
        // overruns it (a slow Redis call at the end of the wait) is dropped, which gives its
        // turn back, and the send comes again later.
        let acquired = tokio::time::timeout(
            horizon + ACQUIRE_SLACK,
            pacer.acquire(&msg.recipient, kind, horizon),
        )
        .await
        .unwrap_or(Err(Deferred {
            wait: ACQUIRE_SLACK,
        }));
        let permit = match acquired {
            Ok(permit) => permit,
            Err(deferred) => {
                metrics::counter!("pregonero_sends_total", "channel" => channel, "outcome" => "deferred")
                    .increment(1);
                return Err(ChannelError::Deferred {
                    wait: deferred.wait,
                });
            }
        };
        metrics::histogram!("pregonero_pacing_wait_seconds", "channel" => channel)
            .record(permit.waited.as_secs_f64());
        if !permit.fresh() {
            // Stalled between the shared pacer's decision and here: other replicas may
            // already count this departure as arrived, so it must not leave now.
            pacer.answered(&permit);
            tracing::warn!(%channel_id, "send held up past its departure: paced again");
            metrics::counter!("pregonero_sends_total", "channel" => channel, "outcome" => "deferred")
                .increment(1);
            return Err(ChannelError::Deferred { wait: STALE_RETRY });
        }
        // Answered however the call ends, even when this future is dropped mid-call: the
        // pacer holds the account's window until it knows the provider has counted it.
        let answer = Answer { pacer, permit };
        let result = connection.send(msg).await;
        drop(answer);
        let scope = connection.rate_limit_scope();
        let outcome = match &result {
            Ok(_) => "sent",
            Err(ChannelError::RateLimited { retry_after }) => {
                tracing::warn!(%channel_id, ?retry_after, ?scope, "provider rate limit");
                pacer.rate_limited(&msg.recipient, kind, *retry_after, scope);
                "rate_limited"
            }
            Err(ChannelError::Throttled { retry_after }) => {
                tracing::warn!(%channel_id, ?retry_after, "provider quality limit: slowing the account down");
                pacer.rate_limited(&msg.recipient, kind, *retry_after, LimitScope::Quality);
                "throttled"
            }
            Err(ChannelError::RecipientLimited { retry_after }) => {
                pacer.rate_limited(&msg.recipient, kind, *retry_after, LimitScope::Recipient);
                "recipient_rate_limited"
            }
            Err(e) if e.is_retryable() => "retryable_error",
            Err(_) => "permanent_error",
        };
        metrics::counter!("pregonero_sends_total", "channel" => channel, "outcome" => outcome)
            .increment(1);
        tracing::debug!(%channel_id, to = %redact(&msg.recipient), outcome, "provider call");
        result
    }
}

/// Tells the pacer a send was answered when it is dropped.
struct Answer<'a> {
    pacer: &'a dyn Pacer,
    permit: Permit,
}

impl Drop for Answer<'_> {
    fn drop(&mut self) {
        self.pacer.answered(&self.permit);
    }
}
