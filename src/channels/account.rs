//! `AccountActor`: one per channel account; owns its connection (credentials and client) and
//! its pacer.
//!
//! Durability is not its job: a message it loses in a crash is retried by its delivery job.
use std::{sync::Arc, time::Duration};

use actix::prelude::*;

use super::{
    ChannelError, OutboundMessage, Pacer, Receipt, UpdatesConfig, adapter::Connection, updates,
};
use crate::domain::ChannelId;
use crate::{
    pacing::{Deferred, LimitScope, Permit},
    telemetry::redact,
};

/// How often idle recipient buckets are dropped.
const FORGET_IDLE_EVERY: Duration = Duration::from_secs(60);
/// How far past its horizon a pacer may answer before the wait is dropped (and the send comes
/// back later): the pacer's own answer at the horizon is preferred to this cut.
const ACQUIRE_SLACK: Duration = Duration::from_millis(100);
/// When a send whose departure went stale before it could leave comes again.
const STALE_RETRY: Duration = Duration::from_millis(100);

/// Sends one message, waiting for the account's and the recipient's turn first; a turn further
/// away than the duration (the horizon) answers [`ChannelError::Deferred`] without sending.
#[derive(Message)]
#[rtype(result = "Result<Receipt, ChannelError>")]
pub struct Deliver(pub OutboundMessage, pub Duration);

/// Where a send to each of these recipients would stand, in order (see
/// [`crate::pacing::Pacer::plan`]). One message for a whole batch: the ledger writer waits for
/// the answer inside its cycle.
#[derive(Message)]
#[rtype(result = "Vec<Option<Duration>>")]
pub struct Plan(pub Vec<String>, pub Duration);

/// Fault injection for tests and chaos drills: the actor panics while handling it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Crash;

/// Asks for the account's live state.
#[derive(Message)]
#[rtype(result = "AccountSnapshot")]
pub struct GetSnapshot;

/// Live state of one account actor.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AccountSnapshot {
    /// Channel account id.
    pub id: ChannelId,
    /// Seconds left of a 429 freeze, if any.
    pub frozen_for_secs: Option<f64>,
    /// Sends per second the account is paced at now (lower than its limit after 429s).
    pub rate_per_sec: Option<f64>,
}

/// Owns one channel account (Telegram bot, WhatsApp number): its connection and its pacer.
pub struct AccountActor {
    id: ChannelId,
    kind: &'static str,
    connection: Arc<dyn Connection>,
    pacer: Arc<dyn Pacer>,
    updates: Option<UpdatesConfig>,
    updates_task: Option<actix::prelude::SpawnHandle>,
    /// Set by [`Retire`]: a supervisor restart after it must not start anything again.
    retired: bool,
    /// The polling lease term this actor's poller holds.
    lease_term: updates::LeaseTerm,
}

/// Stops the actor for good (account deleted, process stopping): its update reader ends with it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Retire;

impl AccountActor {
    /// An actor for account `id`; `pacer` outlives restarts so a restart cannot reset a freeze.
    pub fn new(
        id: ChannelId,
        kind: &'static str,
        connection: Arc<dyn Connection>,
        pacer: Arc<dyn Pacer>,
        updates: Option<UpdatesConfig>,
    ) -> Self {
        Self {
            id,
            kind,
            connection,
            pacer,
            updates,
            updates_task: None,
            retired: false,
            lease_term: Default::default(),
        }
    }
}

impl Actor for AccountActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if self.retired {
            // Restarted by the supervisor because an address is still held: idle until it goes.
            return;
        }
        tracing::debug!(channel_id = %self.id, "account actor started");
        ctx.run_interval(FORGET_IDLE_EVERY, |act, _| act.pacer.forget_idle());
        // The connection's background task (a bot's update reader) is a future of this actor:
        // it stops when the actor stops (deleted account, shutdown) and starts again when the
        // supervisor restarts it.
        if let Some(fut) =
            self.connection
                .background(&self.id, self.updates.clone(), self.lease_term.clone())
        {
            self.updates_task = Some(ctx.spawn(actix::fut::wrap_future(fut)));
        }
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        if let Some(cfg) = self.updates.clone()
            && self.updates_task.take().is_some()
            && cfg.mode == crate::config::UpdatesMode::Polling
        {
            // Hand the polling lease back so another node takes over at once (only the term this
            // actor set: a replacement actor on this node may already hold a newer one).
            let term = self
                .lease_term
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            if let Some(until) = term {
                let (lease, node) = (updates::poll_lease(&self.id), cfg.node.clone());
                actix::spawn(async move {
                    let _ = crate::leases::release(&cfg.db, &lease, &node, until).await;
                });
            }
        }
        tracing::debug!(channel_id = %self.id, "account actor stopped");
    }
}

impl Supervised for AccountActor {
    fn restarting(&mut self, _: &mut Self::Context) {
        self.updates_task = None;
        tracing::warn!(channel_id = %self.id, "account actor restarting");
        metrics::counter!("pregonero_actor_restarts_total", "actor" => "account").increment(1);
    }
}

impl Handler<Plan> for AccountActor {
    type Result = Vec<Option<Duration>>;

    fn handle(&mut self, Plan(recipients, horizon): Plan, _: &mut Self::Context) -> Self::Result {
        recipients
            .iter()
            .map(|recipient| {
                let kind = self.connection.recipient_kind(recipient);
                self.pacer.plan(recipient, kind, horizon)
            })
            .collect()
    }
}

impl Handler<Deliver> for AccountActor {
    type Result = ResponseFuture<Result<Receipt, ChannelError>>;

    fn handle(&mut self, Deliver(msg, horizon): Deliver, _: &mut Self::Context) -> Self::Result {
        let connection = self.connection.clone();
        let pacer = self.pacer.clone();
        let channel_id = self.id.clone();
        let channel = self.kind;
        Box::pin(async move {
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
            let answer = Answer {
                pacer: &*pacer,
                permit,
            };
            let result = connection.send(&msg).await;
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
        })
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

impl Handler<Retire> for AccountActor {
    type Result = ();

    fn handle(&mut self, _: Retire, ctx: &mut Self::Context) {
        self.retired = true;
        ctx.stop();
    }
}

impl Handler<Crash> for AccountActor {
    type Result = ();

    fn handle(&mut self, _: Crash, _: &mut Self::Context) {
        panic!("fault injection: account actor {} asked to crash", self.id);
    }
}

impl Handler<GetSnapshot> for AccountActor {
    type Result = MessageResult<GetSnapshot>;

    fn handle(&mut self, _: GetSnapshot, _: &mut Self::Context) -> Self::Result {
        let pacing = self.pacer.state();
        let frozen_for_secs = pacing.frozen_until.map(|until| {
            until
                .saturating_duration_since(std::time::Instant::now())
                .as_secs_f64()
        });
        MessageResult(AccountSnapshot {
            id: self.id.clone(),
            frozen_for_secs,
            rate_per_sec: Some(pacing.rate),
        })
    }
}
