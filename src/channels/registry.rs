//! `ChannelRegistry`: the supervisor of account actors — starts them at boot and on create,
//! stops them on delete, and restarts any that died (a panic ends an actor's task, which
//! `actix::Supervisor` alone cannot recover from).
use std::sync::Arc;

use actix::prelude::*;

use super::{
    AccountActor, AccountSnapshot, Pacer, PacingLimits, UpdatesConfig,
    account::{GetSnapshot, Retire},
    adapter::Connection,
    running::{Running, Sender},
};
use crate::domain::ChannelId;

/// Everything needed to (re)start an account actor.
#[derive(Clone)]
pub struct AccountSpec {
    /// Channel account id.
    pub id: ChannelId,
    /// Its kind's name (for metrics and logs).
    pub kind: &'static str,
    /// The live connection (decrypted secrets, kept in memory only).
    pub connection: Arc<dyn Connection>,
    /// Pacing for this account.
    pub limits: PacingLimits,
}

/// Owns the map from channel account id to its running actor ([`Running`], which deliveries
/// read; the registry is its only writer).
#[derive(Default)]
pub struct ChannelRegistry {
    running: Running,
    updates: Option<UpdatesConfig>,
    /// With Redis: the store every replica paces through, and the key for recipients there.
    shared_pacing: Option<(crate::shared::Shared, [u8; 32])>,
}

impl ChannelRegistry {
    /// An empty registry that lists the accounts it runs in `running`.
    pub fn new(running: Running) -> Self {
        Self {
            running,
            ..Self::default()
        }
    }

    /// An empty registry whose accounts pace over every replica through `shared` (recipients
    /// keyed there by HMAC under `key`), listed in `running`.
    pub fn shared(shared: crate::shared::Shared, key: [u8; 32], running: Running) -> Self {
        Self {
            shared_pacing: Some((shared, key)),
            running,
            ..Self::default()
        }
    }

    fn pacer(&self, spec: &AccountSpec) -> Arc<dyn Pacer> {
        let inner: Arc<dyn Pacer> = match &self.shared_pacing {
            Some((shared, key)) => Arc::new(crate::pacing::SharedPacer::new(
                spec.limits,
                shared.clone(),
                spec.id.as_str(),
                *key,
            )),
            None => Arc::new(crate::pacing::LocalPacer::new(spec.limits)),
        };
        match spec.limits.gap {
            Some(gap) => Arc::new(crate::pacing::Jittered::new(inner, gap)),
            None => inner,
        }
    }

    /// Starts an actor for the account (with the pacer of any earlier one) and lists it.
    fn spawn(
        &self,
        id: &ChannelId,
        kind: &'static str,
        connection: Arc<dyn Connection>,
        pacer: Arc<dyn Pacer>,
    ) -> Addr<AccountActor> {
        let updates = self.updates.clone();
        let (actor_id, actor_connection, actor_pacer) =
            (id.clone(), connection.clone(), pacer.clone());
        let actor = actix::Supervisor::start(move |_| {
            AccountActor::new(actor_id, actor_connection, actor_pacer, updates)
        });
        self.running.insert(Sender {
            id: id.clone(),
            kind,
            connection,
            pacer,
            actor: actor.clone(),
        });
        actor
    }
}

/// How often the registry looks for account actors that died.
const WATCH_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

impl Actor for ChannelRegistry {
    type Context = Context<Self>;

    /// Watches its actors: one that died (a panic ends its supervisor too) is started again
    /// within [`WATCH_EVERY`], with its update reader, even when no send asks for it (a bot
    /// that only answers commands would otherwise stop reading them).
    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(WATCH_EVERY, |this, _| {
            for account in this.running.all() {
                if !account.actor_alive() {
                    this.restart(account);
                }
            }
        });
    }
}

impl ChannelRegistry {
    /// Starts a new actor for a running account whose actor died, with the same connection
    /// and pacer (a restart cannot reset a freeze).
    fn restart(&mut self, account: Sender) -> Addr<AccountActor> {
        tracing::warn!(channel_id = %account.id, "account actor died; restarting it");
        metrics::counter!("pregonero_actor_restarts_total", "actor" => "account").increment(1);
        self.spawn(&account.id, account.kind, account.connection, account.pacer)
    }
}

impl Supervised for ChannelRegistry {}

/// From now on, actors read their bot's updates with `UpdatesConfig` (send before `Register`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct EnableUpdates(pub UpdatesConfig);

/// Stops every account actor (process shutdown): pollers end and hand back their leases.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopAll;

impl Handler<EnableUpdates> for ChannelRegistry {
    type Result = ();

    fn handle(&mut self, EnableUpdates(cfg): EnableUpdates, _: &mut Self::Context) {
        self.updates = Some(cfg);
    }
}

impl Handler<StopAll> for ChannelRegistry {
    type Result = ();

    fn handle(&mut self, _: StopAll, _: &mut Self::Context) {
        self.updates = None;
        for account in self.running.take_all() {
            account.actor.do_send(Retire);
        }
        metrics::gauge!("pregonero_channel_accounts").set(0.0);
    }
}

/// Starts the actor of an account (nothing if it already runs).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Register(pub AccountSpec);

/// Stops the actor of an account.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Unregister(pub ChannelId);

/// The live actor of an account, restarted first if it had died.
#[derive(Message)]
#[rtype(result = "Option<Addr<AccountActor>>")]
pub struct Lookup(pub ChannelId);

/// The ids of the accounts this process runs.
#[derive(Message)]
#[rtype(result = "Vec<ChannelId>")]
pub struct Known;

impl Handler<Known> for ChannelRegistry {
    type Result = Vec<ChannelId>;

    fn handle(&mut self, _: Known, _: &mut Self::Context) -> Self::Result {
        self.running.all().into_iter().map(|a| a.id).collect()
    }
}

/// Live state of every account.
#[derive(Message)]
#[rtype(result = "Vec<AccountSnapshot>")]
pub struct Snapshot;

impl Handler<Register> for ChannelRegistry {
    type Result = ();

    fn handle(&mut self, Register(spec): Register, _: &mut Self::Context) {
        // Accounts never change once stored; a second registration (a delivery and the periodic
        // sync both starting an account added elsewhere) must not replace the pacer, which
        // remembers the account's recent sends.
        if self.running.get(&spec.id).is_some() {
            return;
        }
        let pacer = self.pacer(&spec);
        self.spawn(&spec.id, spec.kind, spec.connection, pacer);
        metrics::gauge!("pregonero_channel_accounts").set(self.running.len() as f64);
    }
}

impl Handler<Unregister> for ChannelRegistry {
    type Result = ();

    fn handle(&mut self, Unregister(id): Unregister, _: &mut Self::Context) {
        if let Some(account) = self.running.remove(&id) {
            account.actor.do_send(Retire);
        }
        metrics::gauge!("pregonero_channel_accounts").set(self.running.len() as f64);
    }
}

impl Handler<Lookup> for ChannelRegistry {
    type Result = Option<Addr<AccountActor>>;

    fn handle(&mut self, Lookup(id): Lookup, _: &mut Self::Context) -> Self::Result {
        let account = self.running.get(&id)?;
        if account.actor_alive() {
            return Some(account.actor);
        }
        Some(self.restart(account))
    }
}

impl Handler<Snapshot> for ChannelRegistry {
    type Result = ResponseFuture<Vec<AccountSnapshot>>;

    fn handle(&mut self, _: Snapshot, _: &mut Self::Context) -> Self::Result {
        let addrs: Vec<_> = self
            .running
            .all()
            .into_iter()
            .map(|a| (a.id, a.actor))
            .collect();
        Box::pin(async move {
            let mut out = Vec::with_capacity(addrs.len());
            for (id, addr) in addrs {
                let snap = addr.send(GetSnapshot).await.unwrap_or(AccountSnapshot {
                    id,
                    frozen_for_secs: None,
                    rate_per_sec: None,
                });
                out.push(snap);
            }
            out
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::time::Duration;

    use futures::future::BoxFuture;

    use super::*;
    use crate::channels::{ChannelError, Crash, OutboundMessage, Receipt};
    use crate::pacing::LimitScope;

    /// A provider that takes every send at once, counted.
    #[derive(Default)]
    struct Counting(AtomicUsize);

    impl Connection for Counting {
        fn send<'a>(
            &'a self,
            _: &'a OutboundMessage,
        ) -> BoxFuture<'a, Result<Receipt, ChannelError>> {
            let n = self.0.fetch_add(1, SeqCst);
            Box::pin(async move {
                Ok(Receipt {
                    provider_message_id: format!("sent-{n}"),
                })
            })
        }

        fn rate_limit_scope(&self) -> LimitScope {
            LimitScope::Account
        }
    }

    fn spec(id: &str, connection: Arc<Counting>) -> AccountSpec {
        AccountSpec {
            id: id.into(),
            kind: "test",
            connection,
            limits: PacingLimits {
                account_per_sec: 1000,
                account_burst: 1,
                recipient_interval: Duration::ZERO,
                group_per_min: 20,
                margin: Duration::ZERO,
                recipient_margin: Duration::ZERO,
                daily_cap: 0,
                gap: None,
            },
        }
    }

    #[test]
    fn running_lists_exactly_the_accounts_the_registry_runs() {
        actix::System::new().block_on(async {
            // Arrange: two accounts.
            let running = Running::default();
            let registry = ChannelRegistry::new(running.clone()).start();
            let (a, b) = (Arc::new(Counting::default()), Arc::new(Counting::default()));
            registry
                .send(Register(spec("a", a.clone())))
                .await
                .expect("registry");
            registry
                .send(Register(spec("b", b.clone())))
                .await
                .expect("registry");
            let msg = OutboundMessage {
                id: None,
                recipient: "34600000001".into(),
                text: "hola".into(),
                parse_mode: None,
                media: None,
                template: None,
            };
            let horizon = Duration::from_secs(1);

            // A send through the listing reaches that account's connection only.
            let sender = running.get(&"a".into()).expect("a is listed");
            assert!(sender.actor_alive());
            sender.deliver(&msg, horizon).await.expect("sent");
            assert_eq!((a.0.load(SeqCst), b.0.load(SeqCst)), (1, 0));

            // Its actor dies: sends go on with the same connection; a lookup starts a new actor
            // and the listing follows.
            let _ = sender.actor.send(Crash).await;
            for _ in 0..100 {
                if !sender.actor_alive() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert!(!sender.actor_alive(), "the crashed actor is gone");
            sender.deliver(&msg, horizon).await.expect("sent");
            assert_eq!(a.0.load(SeqCst), 2);
            let restarted = registry.send(Lookup("a".into())).await.expect("registry");
            assert!(restarted.is_some_and(|addr| addr.connected()));
            assert!(running.get(&"a".into()).expect("listed").actor_alive());

            // It dies again and nothing asks for it: the registry's watch starts it again.
            let sender = running.get(&"a".into()).expect("listed");
            let _ = sender.actor.send(Crash).await;
            let mut revived = false;
            for _ in 0..300 {
                tokio::time::sleep(Duration::from_millis(10)).await;
                let current = running.get(&"a".into()).expect("listed");
                if !sender.actor_alive() && current.actor_alive() {
                    revived = true;
                    break;
                }
            }
            assert!(
                revived,
                "the registry did not restart the dead actor by itself"
            );

            // Unregistered: no longer listed, the other stays; stopping all empties the list.
            registry
                .send(Unregister("a".into()))
                .await
                .expect("registry");
            assert!(running.get(&"a".into()).is_none());
            assert!(running.get(&"b".into()).is_some());
            registry.send(StopAll).await.expect("registry");
            assert!(running.get(&"b".into()).is_none());
        });
    }
}
