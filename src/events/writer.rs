//! Group commit for events: requests hand their validated events to a writer task, which
//! commits whatever queued up meanwhile in one transaction and then answers every request in
//! it. On SQLite that is one transaction of multi-row INSERTs; on PostgreSQL one
//! `INSERT … SELECT FROM UNNEST` statement with a column array per field.
//! SQLite has one writer task; PostgreSQL has [`WriterOptions::writers`] of them: requests fill
//! the first writer and spill over to the next while it is behind, so single events share large
//! batches and big request bodies commit in parallel.
//!
//! - A semaphore of `events.buffer_capacity` permits bounds the events accepted but not yet
//!   committed: when it is exhausted, requests are refused (429) instead of growing memory.
//! - In `durable` mode a request is answered after its batch commits. In `buffered` mode it is
//!   answered once queued; a failed batch is retried with backoff, holding its permits (so a
//!   database outage turns into 429s, not lost events or unbounded memory), and on shutdown the
//!   writer commits what it holds for up to the grace period.
//! - A [`Breaker`] watches the commits and refuses requests at once while the database is down.
//! - Committed batches go to the [`RuleEngine`].
use std::{
    collections::{BTreeSet, HashMap},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use sea_orm::{
    ActiveValue, DatabaseBackend, DatabaseConnection, DbErr, EntityTrait, TransactionTrait, sqlx,
};
use tokio::{
    sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch},
    task::JoinHandle,
};

use super::{
    breaker::{Breaker, CircuitState},
    rules::RuleEngine,
};
use crate::{config::Durability, entities::events};

/// Requests taken per batch at most (their events all go in one transaction).
const MAX_REQUESTS_PER_BATCH: usize = 512;
/// Rows per INSERT statement (SQLite allows 32,766 bound values; an event row has 7).
const ROWS_PER_STATEMENT: usize = 2_000;
/// Rows queued for a writer beyond which requests go to the next writer (PostgreSQL).
const SPILL_ROWS: usize = 2_000;
/// How long a batch waits for a database connection before it counts as failed (a pool that
/// cannot connect would otherwise hold every request for its whole acquire timeout).
const BEGIN_TIMEOUT: Duration = Duration::from_secs(2);
/// Backoff between retries of a failed buffered batch.
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// Why a submission was not committed.
#[derive(Debug)]
pub enum SubmitError {
    /// The buffer is full: try again shortly.
    Full,
    /// The circuit breaker is open: the database failed repeatedly; retry after these seconds.
    CircuitOpen(u64),
    /// The database refused the batch (down, or a constraint).
    Failed(String),
}

struct Request {
    rows: Vec<events::ActiveModel>,
    /// `None` in buffered mode: nobody waits, the writer retries until it commits.
    reply: Option<oneshot::Sender<Result<(), String>>>,
    _permit: OwnedSemaphorePermit,
}

/// How the writer behaves (from `events.*` settings).
#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// Uncommitted events held at most.
    pub capacity: u32,
    /// When requests are answered.
    pub durability: Durability,
    /// `false`: each request commits on its own (benchmark baseline).
    pub group_commit: bool,
    /// Writer tasks committing side by side: 1 on SQLite (one writer at a time anyway), a few on
    /// PostgreSQL, which runs concurrent transactions in parallel.
    pub writers: usize,
    /// How long shutdown keeps retrying buffered events that failed to commit.
    pub shutdown_grace: Duration,
}

struct Shared {
    db: DatabaseConnection,
    breaker: Arc<Breaker>,
    rules: Arc<RuleEngine>,
    /// Where each commit is announced (`events.ingested`), for the dashboard's live tail.
    live: Option<crate::live::Live>,
    committed: AtomicU64,
    /// `(when, committed)` at the last throughput sample.
    sample: Mutex<(Instant, u64, f64)>,
}

/// Handle to the event writer task. Cheap to clone.
#[derive(Clone)]
pub struct EventWriter {
    /// One channel per writer task; see [`EventWriter::writer`] for which one a request takes.
    txs: Arc<[mpsc::Sender<Request>]>,
    /// Rows sent to each writer and not taken into a batch yet.
    queued: Arc<[Arc<AtomicUsize>]>,
    permits: Arc<Semaphore>,
    options: WriterOptions,
    shared: Arc<Shared>,
    stop: Arc<watch::Sender<bool>>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl std::fmt::Debug for EventWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventWriter")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl EventWriter {
    /// Starts the writer on the current runtime.
    pub fn start(
        db: DatabaseConnection,
        breaker: Arc<Breaker>,
        rules: Arc<RuleEngine>,
        live: Option<crate::live::Live>,
        options: WriterOptions,
    ) -> Self {
        let (stop, stop_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            db,
            breaker,
            rules,
            live,
            committed: AtomicU64::new(0),
            sample: Mutex::new((Instant::now(), 0, 0.0)),
        });
        let mut txs = Vec::new();
        let mut queued = Vec::new();
        let mut tasks = Vec::new();
        for _ in 0..options.writers.max(1) {
            let (tx, rx) = mpsc::channel(MAX_REQUESTS_PER_BATCH * 4);
            txs.push(tx);
            let rows = Arc::new(AtomicUsize::new(0));
            queued.push(rows.clone());
            tasks.push(tokio::spawn(run(
                shared.clone(),
                rx,
                rows,
                stop_rx.clone(),
                options.shutdown_grace,
            )));
        }
        metrics::gauge!("pregonero_events_buffer_capacity").set(f64::from(options.capacity));
        Self {
            txs: txs.into(),
            queued: queued.into(),
            permits: Arc::new(Semaphore::new(options.capacity as usize)),
            options,
            shared,
            stop: Arc::new(stop),
            tasks: Arc::new(Mutex::new(tasks)),
        }
    }

    /// The writer for `rows` more rows: the first one whose queue holds under
    /// [`SPILL_ROWS`], else the least loaded. Filling one writer first keeps its batches large
    /// (every batch costs a round trip and a commit), and the others only take over while it
    /// is behind, as with batches of 100 events, where several statements in parallel pay off.
    fn writer(&self, rows: usize) -> &mpsc::Sender<Request> {
        let load = |i: usize| self.queued[i].load(Ordering::Relaxed);
        let i = (0..self.txs.len())
            .find(|&i| load(i) < SPILL_ROWS)
            .unwrap_or_else(|| (0..self.txs.len()).min_by_key(|&i| load(i)).unwrap_or(0));
        self.queued[i].fetch_add(rows, Ordering::Relaxed);
        &self.txs[i]
    }

    /// Events accepted and not committed yet.
    pub fn in_use(&self) -> u32 {
        self.options
            .capacity
            .saturating_sub(u32::try_from(self.permits.available_permits()).unwrap_or(u32::MAX))
    }

    /// Buffer size.
    pub fn capacity(&self) -> u32 {
        self.options.capacity
    }

    /// When requests are answered.
    pub fn durability(&self) -> Durability {
        self.options.durability
    }

    /// The storage circuit breaker's state.
    pub fn circuit(&self) -> CircuitState {
        self.shared.breaker.state()
    }

    /// Events committed since start.
    pub fn committed(&self) -> u64 {
        self.shared.committed.load(Ordering::Relaxed)
    }

    /// Commits per second since the previous call at least a second ago (the throughput
    /// between two `/metrics` scrapes).
    pub fn throughput(&self) -> f64 {
        let mut sample = self.shared.sample.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let committed = self.committed();
        let elapsed = now.duration_since(sample.0).as_secs_f64();
        if elapsed >= 1.0 {
            sample.2 = committed.saturating_sub(sample.1) as f64 / elapsed;
            sample.0 = now;
            sample.1 = committed;
        }
        sample.2
    }

    /// Sets the buffer and circuit gauges (called when `/metrics` renders).
    pub fn publish_gauges(&self) {
        let size = f64::from(self.in_use());
        let capacity = f64::from(self.capacity());
        metrics::gauge!("pregonero_events_buffer_size").set(size);
        metrics::gauge!("pregonero_events_buffer_capacity").set(capacity);
        metrics::gauge!("pregonero_events_buffer_utilisation").set(size / capacity.max(1.0));
        metrics::gauge!("pregonero_events_circuit_state").set(self.circuit().gauge());
        metrics::gauge!("pregonero_events_throughput_per_second").set(self.throughput());
    }

    /// `Ok` unless the circuit breaker is open (then the seconds until it half-opens).
    pub fn admit(&self) -> Result<(), u64> {
        self.shared.breaker.admit()
    }

    /// Stores `rows`: durable mode returns once they are committed, buffered mode once they
    /// are queued.
    pub async fn submit(&self, rows: Vec<events::ActiveModel>) -> Result<(), SubmitError> {
        self.shared
            .breaker
            .admit()
            .map_err(SubmitError::CircuitOpen)?;
        let n = u32::try_from(rows.len()).unwrap_or(u32::MAX);
        let permit = self
            .permits
            .clone()
            .try_acquire_many_owned(n)
            .map_err(|_| SubmitError::Full)?;
        if !self.options.group_commit {
            let result = commit(&self.shared, rows).await;
            drop(permit);
            return result.map_err(SubmitError::Failed);
        }
        let stopped = || SubmitError::Failed("the event writer is stopping".into());
        match self.options.durability {
            Durability::Durable => {
                let (reply, rx) = oneshot::channel();
                self.writer(n as usize)
                    .send(Request {
                        rows,
                        reply: Some(reply),
                        _permit: permit,
                    })
                    .await
                    .map_err(|_| stopped())?;
                rx.await
                    .map_err(|_| {
                        SubmitError::Failed("the event writer dropped the request".into())
                    })?
                    .map_err(SubmitError::Failed)
            }
            Durability::Buffered => self
                .writer(n as usize)
                .send(Request {
                    rows,
                    reply: None,
                    _permit: permit,
                })
                .await
                .map_err(|_| stopped()),
        }
    }

    /// Stops taking events, commits what is queued (retrying buffered events for up to the
    /// grace period) and waits for the writer to end.
    pub async fn shutdown(&self) {
        let _ = self.stop.send(true);
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for task in tasks {
            let _ = task.await;
        }
    }
}

async fn run(
    shared: Arc<Shared>,
    mut rx: mpsc::Receiver<Request>,
    queued: Arc<AtomicUsize>,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
) {
    let mut batch = Vec::with_capacity(MAX_REQUESTS_PER_BATCH);
    // Buffered requests whose batch failed: retried until committed (or the grace ends).
    let mut retry: Vec<Request> = Vec::new();
    let mut backoff = RETRY_MIN;
    let mut deadline: Option<Instant> = None;
    loop {
        if retry.is_empty() {
            tokio::select! {
                n = rx.recv_many(&mut batch, MAX_REQUESTS_PER_BATCH) => {
                    if n == 0 { break }
                    let taken: usize = batch.iter().map(|r| r.rows.len()).sum();
                    queued.fetch_sub(taken, Ordering::Relaxed);
                },
                _ = stop.changed(), if deadline.is_none() => {
                    deadline = Some(Instant::now() + grace);
                    rx.close();
                    continue;
                }
            }
        } else {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                let lost: usize = retry.iter().map(|r| r.rows.len()).sum();
                tracing::error!(
                    lost,
                    "stopping with buffered events the database would not take; they are lost"
                );
                metrics::counter!("pregonero_events_dropped_total").increment(lost as u64);
                retry.clear();
                continue;
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                _ = stop.changed(), if deadline.is_none() => {
                    deadline = Some(Instant::now() + grace);
                    rx.close();
                }
            }
            backoff = (backoff * 2).min(RETRY_MAX);
            batch.append(&mut retry);
            while batch.len() < MAX_REQUESTS_PER_BATCH {
                match rx.try_recv() {
                    Ok(request) => {
                        queued.fetch_sub(request.rows.len(), Ordering::Relaxed);
                        batch.push(request);
                    }
                    Err(_) => break,
                }
            }
        }
        // Durable requests hand their rows over; buffered ones keep theirs for a retry.
        let rows: Vec<events::ActiveModel> = batch
            .iter_mut()
            .flat_map(|r| match r.reply {
                Some(_) => std::mem::take(&mut r.rows),
                None => r.rows.clone(),
            })
            .collect();
        let result = commit(&shared, rows).await;
        if result.is_ok() {
            backoff = RETRY_MIN;
        }
        for mut request in batch.drain(..) {
            match (request.reply.take(), &result) {
                (Some(reply), _) => {
                    let _ = reply.send(result.clone());
                }
                (None, Ok(())) => {}
                (None, Err(_)) => retry.push(request),
            }
        }
    }
}

/// Inserts `rows` in one transaction; records the outcome (metrics, breaker) and hands the
/// alert-rule matches of a committed batch to the rule engine.
async fn commit(shared: &Arc<Shared>, rows: Vec<events::ActiveModel>) -> Result<(), String> {
    let started = Instant::now();
    let count = rows.len();
    let matches = shared.rules.matches(&rows);
    let announce = shared.live.as_ref().map(|_| ingested_by_owner(&rows));
    let result = insert(&shared.db, rows).await.map_err(|e| e.to_string());
    metrics::histogram!("pregonero_events_batch_size").record(count as f64);
    metrics::histogram!("pregonero_events_commit_seconds").record(started.elapsed().as_secs_f64());
    match &result {
        Ok(()) => {
            shared.breaker.success();
            shared.committed.fetch_add(count as u64, Ordering::Relaxed);
            metrics::counter!("pregonero_events_committed_total").increment(count as u64);
            if !matches.is_empty() {
                shared.rules.fire_all(matches);
            }
            if let (Some(live), Some(owners)) = (shared.live.clone(), announce) {
                // Off the commit path: a slow Redis must not slow ingestion.
                tokio::spawn(async move {
                    for (owner, (count, services)) in owners {
                        live.publish(crate::live::LiveEvent {
                            owner,
                            kind: "events.ingested".into(),
                            data: serde_json::json!({"count": count, "services": services}),
                        })
                        .await;
                    }
                });
            }
        }
        Err(e) => {
            shared.breaker.failure();
            tracing::error!(error = %e, count, "event batch not committed");
            metrics::counter!("pregonero_events_failed_total").increment(count as u64);
        }
    }
    result
}

/// Per owner: how many events of a batch, and of which services.
type Ingested = HashMap<crate::domain::UserId, (u64, BTreeSet<String>)>;

/// What a batch holds per owner (at most 20 services named each).
fn ingested_by_owner(rows: &[events::ActiveModel]) -> Ingested {
    let mut owners = Ingested::new();
    for row in rows {
        let (ActiveValue::Set(Some(owner)) | ActiveValue::Unchanged(Some(owner))) = &row.owner_id
        else {
            continue;
        };
        let entry = owners.entry(owner.clone()).or_default();
        entry.0 += 1;
        if let ActiveValue::Set(service) | ActiveValue::Unchanged(service) = &row.service
            && entry.1.len() < 20
        {
            entry.1.insert(service.clone());
        }
    }
    owners
}

/// A row whose `event_id` is stored already is skipped: a retried batch whose first commit did
/// land (its answer was lost, as when the connection's runtime stopped at shutdown) must not
/// fail on its own rows forever, and be lost.
fn already_stored() -> sea_orm::sea_query::OnConflict {
    sea_orm::sea_query::OnConflict::column(events::Column::EventId)
        .do_nothing()
        .to_owned()
}

async fn insert(db: &DatabaseConnection, rows: Vec<events::ActiveModel>) -> Result<(), DbErr> {
    if rows.is_empty() {
        return Ok(());
    }
    if let DatabaseBackend::Postgres = db.get_database_backend() {
        return insert_unnest(db, rows).await;
    }
    let txn = tokio::time::timeout(BEGIN_TIMEOUT, db.begin())
        .await
        .map_err(|_| DbErr::Custom("no database connection within 2 s".into()))??;
    let mut rows = rows.into_iter();
    loop {
        let chunk: Vec<_> = rows.by_ref().take(ROWS_PER_STATEMENT).collect();
        if chunk.is_empty() {
            break;
        }
        let inserted = events::Entity::insert_many(chunk)
            .on_conflict(already_stored())
            .exec_without_returning(&txn)
            .await;
        match inserted {
            Ok(_) | Err(DbErr::RecordNotInserted) => {}
            Err(e) => return Err(e),
        }
    }
    txn.commit().await
}

/// PostgreSQL: the whole batch as one `INSERT … SELECT FROM UNNEST` of eight arrays. The
/// statement text never changes, so it is prepared once per connection (a multi-row `VALUES`
/// list with thousands of parameters is parsed and planned anew for every batch), and being a
/// single statement it is atomic without a `BEGIN`/`COMMIT` round trip. Rows stored already are
/// skipped ([`already_stored`]).
async fn insert_unnest(
    db: &DatabaseConnection,
    rows: Vec<events::ActiveModel>,
) -> Result<(), DbErr> {
    const SQL: &str = "INSERT INTO events \
        (event_id, \"timestamp\", service, message, metadata, ingested_at, idempotency_key, \
        owner_id) \
        SELECT * FROM UNNEST($1::varchar[], $2::timestamptz[], $3::varchar[], $4::text[], \
        $5::text[], $6::timestamptz[], $7::varchar[], $8::varchar[]) \
        ON CONFLICT (event_id) DO NOTHING";
    let n = rows.len();
    let mut ids = Vec::with_capacity(n);
    let mut stamps = Vec::with_capacity(n);
    let mut services = Vec::with_capacity(n);
    let mut messages = Vec::with_capacity(n);
    let mut metadata = Vec::with_capacity(n);
    let mut ingested = Vec::with_capacity(n);
    let mut keys = Vec::with_capacity(n);
    let mut owners = Vec::with_capacity(n);
    for row in rows {
        let (
            ActiveValue::Set(id),
            ActiveValue::Set(ts),
            ActiveValue::Set(service),
            ActiveValue::Set(message),
            ActiveValue::Set(meta),
            ActiveValue::Set(at),
            ActiveValue::Set(key),
            ActiveValue::Set(owner),
        ) = (
            row.event_id,
            row.timestamp,
            row.service,
            row.message,
            row.metadata,
            row.ingested_at,
            row.idempotency_key,
            row.owner_id,
        )
        else {
            return Err(DbErr::Custom("event row with a column not set".into()));
        };
        ids.push(id);
        stamps.push(ts);
        services.push(service);
        messages.push(message);
        metadata.push(meta);
        ingested.push(at);
        keys.push(key);
        owners.push(owner.map(String::from));
    }
    let mut conn = tokio::time::timeout(BEGIN_TIMEOUT, db.get_postgres_connection_pool().acquire())
        .await
        .map_err(|_| DbErr::Custom("no database connection within 2 s".into()))?
        .map_err(|e| DbErr::Custom(e.to_string()))?;
    sqlx::query(SQL)
        .bind(ids)
        .bind(stamps)
        .bind(services)
        .bind(messages)
        .bind(metadata)
        .bind(ingested)
        .bind(keys)
        .bind(owners)
        .execute(&mut *conn)
        .await
        .map(|_| ())
        .map_err(|e| DbErr::Custom(e.to_string()))
}
