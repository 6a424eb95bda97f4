//! `AccountActor`: one per channel account; owns its connection (credentials and client) and
//! its pacer.
//!
//! Durability is not its job: a message it loses in a crash is retried by its delivery job.
use std::{sync::Arc, time::Duration};

use actix::prelude::*;

use super::{Pacer, UpdatesConfig, adapter::Connection, updates};
use crate::domain::ChannelId;

/// How often idle recipient buckets are dropped.
const FORGET_IDLE_EVERY: Duration = Duration::from_secs(60);

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
        connection: Arc<dyn Connection>,
        pacer: Arc<dyn Pacer>,
        updates: Option<UpdatesConfig>,
    ) -> Self {
        Self {
            id,
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
