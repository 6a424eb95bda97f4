//! The workers: apalis runs the delivery job, beside the recovery sweep and the purge (and the
//! features' schedule, `crate::scheduled`, handed in as [`Periodic`]).
//!
//! Workers run on their own multi-thread tokio runtime (a dedicated thread), so job handlers never
//! compete with the actix System's thread; they reach actors through `Addr::send`.

use std::time::Duration;

use apalis::prelude::*;
use tokio::sync::oneshot;

use super::{Queue, deliver, sweep};

use futures::future::BoxFuture;
use sea_orm::DatabaseConnection;

use super::Outbox;

/// Periodic work of features run beside the workers, on their runtime and pool (the schedule):
/// given the workers' database and queue, the futures to spawn.
pub type Periodic =
    Box<dyn FnOnce(DatabaseConnection, Queue) -> Vec<BoxFuture<'static, ()>> + Send>;

/// A running set of workers; [`Workers::shutdown`] drains them.
pub struct Workers {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Workers {
    /// Starts the delivery worker, the periodic sweep and `periodic` for `state`, on their own
    /// runtime and their own database pool (so the HTTP side's shutdown cannot break their
    /// connections).
    pub fn start(state: Outbox, periodic: Periodic) -> anyhow::Result<Self> {
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<anyhow::Result<()>>();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("pregonero-jobs")
            .enable_all()
            .build()?;
        let thread = std::thread::Builder::new()
            .name("pregonero-jobs-main".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let opened = async {
                        let db = crate::db::open(&state.settings).await?;
                        let queue = Queue::attach(&db, &state.settings, false).await?;
                        anyhow::Ok((db, queue))
                    };
                    match opened.await {
                        Ok((db, queue)) => {
                            let _ = ready_tx.send(Ok(()));
                            let extra = periodic(db.clone(), queue.clone());
                            // Sends are recorded in batches on this runtime's pool.
                            let sent = Some(super::outcomes::SentWriter::start(
                                db.clone(),
                                state.listeners.clone(),
                            ));
                            // And due messages claimed in batches.
                            let claims = Some(super::claims::Claimer::start(
                                db.clone(),
                                state.listeners.clone(),
                                state.node_name.clone(),
                                Duration::from_secs(state.settings.delivery.lease_secs),
                            ));
                            run(
                                Outbox {
                                    db,
                                    queue,
                                    sent,
                                    claims,
                                    ..state
                                },
                                extra,
                                stop_rx,
                            )
                            .await;
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                        }
                    }
                });
            })?;
        ready_rx
            .recv()
            .map_err(|_| anyhow::anyhow!("job runtime ended during start-up"))??;
        Ok(Self {
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// Stops taking jobs, waits for in-flight ones (up to the grace period), hands back leases.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

/// Wakes an idle worker every `delivery.poll_interval_ms` to look for due jobs.
///
/// apalis-core 1.0's `IntervalStrategy` re-arms its timer without polling it, so after its first
/// tick nothing woke an idle worker until something else did (a heartbeat, another job's
/// completion): a job pushed to an idle queue waited 10 s or more. This strategy leaves a timer
/// armed after every tick.
struct PollEvery {
    every: Duration,
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl PollEvery {
    fn new(every: Duration) -> Self {
        Self {
            every,
            sleep: Box::pin(tokio::time::sleep(every)),
        }
    }
}

impl PollStrategy for PollEvery {
    fn poll_drive(
        &mut self,
        cx: &mut std::task::Context<'_>,
        _: &PollSnapshot,
    ) -> std::task::Poll<Option<()>> {
        use std::future::Future;
        if self.sleep.as_mut().poll(cx).is_pending() {
            return std::task::Poll::Pending;
        }
        self.sleep
            .as_mut()
            .reset(tokio::time::Instant::now() + self.every);
        // Polling the re-armed timer registers this waker for the next tick.
        let _ = self.sleep.as_mut().poll(cx);
        std::task::Poll::Ready(Some(()))
    }
}

/// When the worker is restarted (it lost its database), the jobs its previous incarnation had
/// fetched stay locked to that name: they are unlocked as soon as the database answers, so the
/// deliveries they stand for do not wait for apalis's orphan timeout (ten heartbeats: 25 s with
/// a 5 s lease; a PostgreSQL restart under a running campaign once left its last messages 28 s
/// late). Only the fetched jobs not yet started: those running go on in this process and are
/// freed by apalis's heartbeat timeout (handing one out again would be harmless, only one job
/// can claim a message, but needless).
fn release_previous(queue: &Queue, base: &str, restarts: usize) {
    let Some(previous) = restarts.checked_sub(1) else {
        return;
    };
    let queue = queue.clone();
    let name = format!("{base}-{previous}");
    tokio::spawn(async move {
        for _ in 0..RELEASE_TRIES {
            match queue.release_worker(&name).await {
                Ok(0) => return,
                Ok(jobs) => {
                    tracing::warn!(worker = %name, jobs, "released the jobs of a restarted worker");
                    return;
                }
                Err(e) => {
                    tracing::debug!(worker = %name, error = %format!("{e:#}"), "jobs of a restarted worker not released yet");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    });
}

/// How many times (a second apart) a restarted worker's jobs are asked back before apalis's own
/// heartbeat timeout is left to do it.
const RELEASE_TRIES: u32 = 60;

async fn run(state: Outbox, extra: Vec<BoxFuture<'static, ()>>, stop: oneshot::Receiver<()>) {
    let settings = state.settings.delivery.clone();
    // Workers of every run of this node are named `deliver-<node>~<run>-<restarts>` (`~` never
    // appears in a host name, so no other node's workers share the prefix).
    let own_workers = format!("deliver-{}~", state.node_name);
    match sweep::recover_own(&state, &own_workers).await {
        Ok((0, 0)) => {}
        Ok((messages, jobs)) => {
            tracing::warn!(
                messages,
                jobs,
                "took back what this node's earlier run held when it stopped"
            )
        }
        Err(e) => tracing::error!(error = ?e, "could not take back this node's earlier claims"),
    }
    let sweeper = tokio::spawn(sweep::run_periodically(state.clone()));
    let purger = tokio::spawn(sweep::purge_periodically(state.clone()));
    let folder = tokio::spawn(super::stats::fold_periodically(state.db.clone()));
    let extra: Vec<_> = extra.into_iter().map(tokio::spawn).collect();
    let poll = Duration::from_millis(settings.poll_interval_ms);
    let grace = Duration::from_secs(settings.shutdown_grace_secs);
    // apalis refuses a worker name seen alive within the last heartbeats, so each run (and each
    // restart) gets its own; a dead run's jobs are re-enqueued by surviving workers and our sweep.
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let base = format!("{own_workers}{}", &run_id[..8]);
    let monitor = Monitor::new()
        // Not `shutdown_timeout`: its timer starts when the monitor is built, so after `grace` of
        // uptime every shutdown skipped apalis's graceful close and left buffered jobs locked to a
        // dead worker until heartbeat expiry. An async block starts counting when first polled,
        // i.e. when shutdown begins.
        .with_terminator(async move { tokio::time::sleep(grace).await })
        // A worker that lost its database restarts (after a pause) instead of ending deliveries.
        .should_restart(|worker, error| {
            tracing::error!(worker = %worker.name(), %error, restarts = worker.restarts(), "delivery worker failed; restarting");
            std::thread::sleep(Duration::from_millis(500));
            true
        });
    let monitor = match state.queue.clone() {
        Queue::Sqlite(storage) => {
            let state = state.clone();
            let base = base.clone();
            monitor.register(move |restarts| {
                release_previous(&state.queue, &base, restarts);
                WorkerBuilder::new(format!("{base}-{restarts}"))
                    .backend(storage.clone().poll_with_strategy(PollEvery::new(poll)))
                    .concurrency(settings.concurrency)
                    .parallelize(tokio::spawn)
                    .data(state.clone())
                    .build(deliver::handle)
            })
        }
        Queue::Postgres(storage) => {
            let state = state.clone();
            let base = base.clone();
            monitor.register(move |restarts| {
                release_previous(&state.queue, &base, restarts);
                WorkerBuilder::new(format!("{base}-{restarts}"))
                    .backend(storage.clone().poll_with_strategy(PollEvery::new(poll)))
                    .concurrency(settings.concurrency)
                    .parallelize(tokio::spawn)
                    .data(state.clone())
                    .build(deliver::handle)
            })
        }
    };
    let signal = async {
        let _ = stop.await;
        Ok(())
    };
    if let Err(e) = monitor.run_with_signal(signal).await {
        tracing::error!(error = %e, "job monitor stopped with an error");
    }
    sweeper.abort();
    purger.abort();
    folder.abort();
    for task in extra {
        task.abort();
    }
    // Spawned deliveries outlive the monitor; let them record their outcome before leases go back.
    if !state.in_flight.wait_idle(grace).await {
        tracing::warn!(
            running = state.in_flight.count(),
            "grace period over with deliveries still running"
        );
    }
    match sweep::release_leases(&state).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(released = n, "handed back in-flight messages"),
        Err(e) => tracing::error!(error = ?e, "could not hand back in-flight messages"),
    }
    // Close the workers' pool now rather than when the runtime drops it, so no connection of a
    // stopped process lingers (with SQLite, a lingering one can hold the write lock).
    if let Err(e) = state.db.clone().close().await {
        tracing::warn!(error = %e, "closing the workers' database pool");
    }
    tracing::info!("workers stopped");
}
