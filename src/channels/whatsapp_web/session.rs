//! One WhatsApp Web number's session: a state machine run by its account actor (it starts with
//! the actor and is aborted with it; the actor's supervisor restarts both).
//!
//! `starting` → `pairing` (QR or code) → `connected` ⇄ `reconnecting`, and the ends that wait
//! for the owner: `logged_out` (401: the device was removed on the phone), `replaced` (440:
//! another client took over; we do not fight it), `failed` (QR expired, or restarts used up).
//! `standby` means another replica holds the session's lease and runs it.
//!
//! A connection that takes sends but acknowledges none within `whatsapp_web.ack_timeout_secs`
//! is a zombie: it is restarted. Restarts back off like WhatsApp Web (Fibonacci seconds, ±10 %,
//! capped at 15 minutes).
use std::{
    collections::HashMap,
    sync::{Arc, Mutex, OnceLock},
    time::{Duration, Instant},
};

use chrono::{DateTime, SubsecRound, Utc};
use rand::Rng;
use sea_orm::DatabaseConnection;
use serde::Serialize;
use tokio::sync::{Notify, mpsc};

use super::{
    engine::{Engine, Link, Seen, WaEvent},
    store::{DbStore, SessionCommand},
};
use crate::{
    channels::{ChannelError, OutboundMessage},
    crypto::Cipher,
    domain::{ChannelId, Receipt, UserId},
    leases,
    live::{Live, LiveEvent},
    outbox::{
        Outbox,
        hooks::{AccountDown, Down, Inbound},
    },
};

/// A new number's daily cap once warmed up (vendors' warm-up advice is 20–50 a day,
/// CHANNELS.md §3); the channel's `per_day` overrides it.
pub const DEFAULT_PER_DAY: u32 = 50;
/// How long a send to a number that is not connected waits before it asks again.
pub const NOT_CONNECTED_RETRY: Duration = Duration::from_secs(10);
/// Refusals by WhatsApp (463, 479, …) within [`REFUSAL_WINDOW`] that pause the number's
/// campaigns: a burst of them comes before a ban.
pub const REFUSAL_BURST: usize = 5;
/// See [`REFUSAL_BURST`].
pub const REFUSAL_WINDOW: Duration = Duration::from_secs(600);
/// Longest back-off between restarts (WhatsApp Web's cap).
const MAX_BACKOFF: Duration = Duration::from_secs(900);

/// Where a session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    /// Connecting with a stored device.
    Starting,
    /// Waiting for the phone: a QR to scan or a code to type.
    Pairing,
    /// Logged in; sends go out.
    Connected,
    /// The connection dropped; it comes back by itself.
    Reconnecting,
    /// The device was removed on the phone (401): pair again.
    LoggedOut,
    /// Another client took the session over (440): restart it to take it back.
    Replaced,
    /// Gave up (QR expired, or restarts used up): restart it.
    Failed,
    /// Another replica runs this session.
    Standby,
}

impl SessionState {
    /// Whether the session waits for its owner (it does not restart by itself).
    pub fn waits_for_owner(self) -> bool {
        matches!(self, Self::LoggedOut | Self::Replaced | Self::Failed)
    }
}

/// What the API and the dashboard show of a session.
#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct SessionView {
    /// The WhatsApp Web number's channel id.
    pub channel_id: ChannelId,
    /// Where it stands.
    pub state: SessionState,
    /// The current QR's text (render it as a QR code), while pairing by QR.
    pub qr: Option<String>,
    /// The current QR as an SVG data URL (`<img src>`), while pairing by QR.
    pub qr_url: Option<String>,
    /// When the current QR or code stops working.
    pub expires_at: Option<DateTime<Utc>>,
    /// The code to type on the phone, while pairing by phone number.
    pub pair_code: Option<String>,
    /// The linked number, E.164.
    pub phone: Option<String>,
    /// The name the phone shows for this account.
    pub push_name: Option<String>,
    /// Since when it has been in this state.
    pub since: DateTime<Utc>,
    /// Why it is in this state, when it is an end or a drop.
    pub detail: Option<String>,
    /// Restarts in a row without reaching `connected`.
    pub restarts: u32,
    /// Sends waiting for the server's ack.
    pub awaiting_ack: usize,
    /// A sign of trouble while it still sends (`ban-risk: …`); its campaigns were paused.
    pub warning: Option<String>,
    /// Messages sent in the last 24 hours.
    pub sent_today: u32,
    /// How many it may send in 24 hours now (the warm-up grows it to `per_day`); null: no cap.
    pub cap_today: Option<u32>,
    /// When the device was linked (the warm-up counts days from it).
    pub linked_at: Option<DateTime<Utc>>,
}

impl SessionView {
    fn new(channel_id: ChannelId) -> Self {
        Self {
            channel_id,
            state: SessionState::Starting,
            qr: None,
            qr_url: None,
            expires_at: None,
            pair_code: None,
            phone: None,
            push_name: None,
            since: Utc::now(),
            detail: None,
            restarts: 0,
            awaiting_ack: 0,
            warning: None,
            sent_today: 0,
            cap_today: None,
            linked_at: None,
        }
    }
}

/// One session's shared state: the driver writes it, the API and the sends read it.
pub struct Session {
    view: Mutex<SessionView>,
    link: Mutex<Option<Arc<dyn Link>>>,
    /// A phone number to pair by code at the next start.
    pair_phone: Mutex<Option<String>>,
    /// Sent message ids waiting for the server's ack, with when they left.
    unacked: Mutex<HashMap<String, Instant>>,
    /// Acks that arrived before their send's call returned (recent ones only).
    early_acks: Mutex<std::collections::HashSet<String>>,
    /// Whether the current run pairs by code (WhatsApp still sends QR refs meanwhile).
    by_code: std::sync::atomic::AtomicBool,
    /// The number's sends of the last 24 hours (from the ledger at each connect) and its cap
    /// today: durable across restarts and replicas, unlike the pacer's own count.
    day: Mutex<DayCount>,
    /// When WhatsApp last refused messages (a burst is a sign of a ban coming).
    refusals: Mutex<std::collections::VecDeque<Instant>>,
    /// Wakes the driver when this replica's API left it a command.
    restart: Notify,
    /// The lease term this replica last set (released on stop, only if still ours).
    term: Mutex<Option<DateTime<Utc>>>,
    /// Held by the running driver until its connection has stopped, so a restarted actor never
    /// connects the same device while the old connection is still closing.
    run_lock: Arc<tokio::sync::Mutex<()>>,
    /// Whether a driver on this replica runs the session now (else the API reads the view the
    /// running replica stored).
    driving: std::sync::atomic::AtomicBool,
    /// Latest view for the writer that stores it.
    view_tx: tokio::sync::watch::Sender<Option<SessionView>>,
    /// The stores of the latest connection runs, which their library instances may still
    /// write through (a stopped run's detached tasks): all fenced before the keys are deleted.
    runs: Mutex<std::collections::VecDeque<DbStore>>,
}

impl Session {
    fn new(channel_id: ChannelId) -> Self {
        Self {
            view: Mutex::new(SessionView::new(channel_id)),
            link: Mutex::new(None),
            pair_phone: Mutex::new(None),
            unacked: Mutex::new(HashMap::new()),
            early_acks: Mutex::new(std::collections::HashSet::new()),
            by_code: std::sync::atomic::AtomicBool::new(false),
            refusals: Mutex::new(std::collections::VecDeque::new()),
            day: Mutex::new(DayCount::default()),
            restart: Notify::new(),
            term: Mutex::new(None),
            run_lock: Arc::default(),
            driving: std::sync::atomic::AtomicBool::new(false),
            view_tx: tokio::sync::watch::Sender::new(None),
            runs: Mutex::new(std::collections::VecDeque::new()),
        }
    }

    /// What the API shows.
    pub fn view(&self) -> SessionView {
        let mut v = lock(&self.view).clone();
        v.awaiting_ack = lock(&self.unacked).len();
        let now = Utc::now();
        let mut day = lock(&self.day);
        day.expire(now);
        v.sent_today = day.sends.len() as u32;
        v.cap_today = Some(day.cap(now)).filter(|c| *c > 0);
        v.linked_at = day.linked_at;
        v
    }

    /// Loads the day's sends from the ledger and the cap's inputs (at each connect).
    async fn load_day(&self, ctx: &WebContext, store: &DbStore) -> anyhow::Result<()> {
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
        let channel_id = lock(&self.view).channel_id.clone();
        let row = crate::channels::repo::find(&ctx.db, &channel_id).await?;
        let per_day = row
            .as_ref()
            .and_then(|r| crate::channels::repo::stored_limits(r).per_day)
            .unwrap_or(DEFAULT_PER_DAY);
        let now = Utc::now();
        store.set_linked_at(now, false).await?;
        let linked_at = store.linked_at().await?;
        use crate::entities::messages;
        let sent: Vec<Option<DateTime<Utc>>> = messages::Entity::find()
            .select_only()
            .column(messages::Column::SentAt)
            .filter(messages::Column::ChannelId.eq(channel_id.clone()))
            .filter(messages::Column::SentAt.gte(now - chrono::Duration::hours(24)))
            .order_by_asc(messages::Column::SentAt)
            .into_tuple()
            .all(&ctx.db)
            .await?;
        let mut day = lock(&self.day);
        day.sends = sent.into_iter().flatten().collect();
        day.per_day = per_day;
        day.warmup = ctx.warmup;
        day.linked_at = linked_at;
        Ok(())
    }

    /// Wakes this replica's driver to read the command left in the database.
    pub fn wake(&self) {
        self.restart.notify_one();
    }

    /// Whether a driver on this replica runs the session now.
    pub fn driving(&self) -> bool {
        self.driving.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Pairs by code for `pair_phone` at the next start that needs a pairing.
    pub fn pair_next_with(&self, pair_phone: Option<String>) {
        *lock(&self.pair_phone) = pair_phone;
    }

    /// WhatsApp acknowledged message `id` (an ack can come before its send's call returns).
    fn acked(&self, id: &str) {
        let mut early = lock(&self.early_acks);
        if lock(&self.unacked).remove(id).is_none() {
            if early.len() >= 1024 {
                early.clear();
            }
            early.insert(id.to_owned());
        }
    }

    /// Whether a send could leave now: connected, and a place left in the day.
    pub fn ready(&self) -> Result<(), Duration> {
        let connected =
            lock(&self.view).state == SessionState::Connected && lock(&self.link).is_some();
        if !connected {
            // Pairing, reconnecting, run by another replica, or waiting for its owner (logged
            // out, replaced, failed): nothing is lost and nothing counts as an attempt; the
            // message waits in the queue until the number sends again (its campaigns pause).
            return Err(NOT_CONNECTED_RETRY);
        }
        lock(&self.day).check(Utc::now())
    }

    /// Sends through the live connection.
    pub async fn send(&self, msg: &OutboundMessage) -> Result<String, ChannelError> {
        self.ready()
            .map_err(|wait| ChannelError::Deferred { wait })?;
        let Some(link) = lock(&self.link).clone() else {
            return Err(ChannelError::Deferred {
                wait: NOT_CONNECTED_RETRY,
            });
        };
        // Counted before the call: its server ack may be read before the call returns.
        let started = Instant::now();
        let result = link.send(&msg.recipient, msg).await;
        if let Ok(id) = &result {
            lock(&self.day).sends.push_back(Utc::now());
            let mut acked = lock(&self.early_acks);
            if !acked.remove(id) {
                lock(&self.unacked).insert(id.clone(), started);
            }
        }
        result
    }
}

/// Sends in the last 24 hours, oldest first, and what caps them: the number's `per_day`, grown
/// into by the warm-up from the day it was linked.
#[derive(Debug, Default)]
struct DayCount {
    sends: std::collections::VecDeque<DateTime<Utc>>,
    per_day: u32,
    warmup: (u32, u32),
    linked_at: Option<DateTime<Utc>>,
}

impl DayCount {
    /// Today's cap (0: none).
    fn cap(&self, now: DateTime<Utc>) -> u32 {
        let days = self.linked_at.map_or(0, |at| (now - at).num_days());
        warmup_cap(self.per_day, self.warmup, days)
    }

    fn expire(&mut self, now: DateTime<Utc>) {
        let day = chrono::Duration::hours(24);
        while self.sends.front().is_some_and(|t| *t + day <= now) {
            self.sends.pop_front();
        }
    }

    /// `Ok` when one more send fits now, else how long until one does.
    fn check(&mut self, now: DateTime<Utc>) -> Result<(), Duration> {
        self.expire(now);
        let cap = self.cap(now) as usize;
        if cap == 0 || self.sends.len() < cap {
            return Ok(());
        }
        let mut frees = self.sends[self.sends.len() - cap] + chrono::Duration::hours(24);
        // While warming up, the cap grows at the next day since linking: look again then.
        if let Some(at) = self.linked_at
            && (cap as u32) < self.per_day
        {
            let days = (now - at).num_days();
            frees = frees.min(at + chrono::Duration::days(days + 1));
        }
        // And at least hourly (a setting may have changed).
        let wait = (frees - now).to_std().unwrap_or_default();
        Err(wait.clamp(Duration::from_secs(1), Duration::from_secs(3600)))
    }
}

/// The number's daily cap on day `days` after linking: the warm-up ramp up to `per_day`.
pub fn warmup_cap(per_day: u32, (first, step): (u32, u32), days: i64) -> u32 {
    if first == 0 || per_day == 0 {
        return per_day;
    }
    let days = u32::try_from(days.max(0)).unwrap_or(u32::MAX);
    first.saturating_add(step.saturating_mul(days)).min(per_day)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Every session this replica knows, by channel.
#[derive(Clone, Default)]
pub struct Sessions(Arc<Mutex<HashMap<ChannelId, Arc<Session>>>>);

impl Sessions {
    /// The session of `channel_id` (created idle on first use).
    pub fn get(&self, channel_id: &ChannelId) -> Arc<Session> {
        lock(&self.0)
            .entry(channel_id.clone())
            .or_insert_with(|| Arc::new(Session::new(channel_id.clone())))
            .clone()
    }

    /// The session of `channel_id`, if this replica knows it.
    pub fn peek(&self, channel_id: &ChannelId) -> Option<Arc<Session>> {
        lock(&self.0).get(channel_id).cloned()
    }

    /// Forgets a deleted channel's session.
    pub fn remove(&self, channel_id: &ChannelId) {
        lock(&self.0).remove(channel_id);
    }
}

/// The session as the replica running it shows it: this one's when it runs it here, else the
/// view the running replica stored (for a standby or API-only replica).
pub async fn current_view(
    sessions: &Sessions,
    db: &DatabaseConnection,
    cipher: &Cipher,
    id: &ChannelId,
) -> SessionView {
    let session = sessions.get(id);
    let here = session.view();
    if session.driving() {
        return here;
    }
    match DbStore::new(db.clone(), id, cipher.clone())
        .stored_view::<SessionView>()
        .await
    {
        Ok(Some(mut stored)) => {
            // Counted by the replica that sends; this one knows none.
            stored.awaiting_ack = 0;
            match leases::find(db, &lease_name(id)).await {
                Ok(lease) => unattended(stored, lease, Utc::now()),
                // Without the lease the stored view is the best there is.
                Err(_) => stored,
            }
        }
        _ => here,
    }
}

/// What a stored view says now, given the session's lease: a view is as live as its runner.
/// With no replica holding the lease (the server that ran it stopped or died, no worker
/// replica is up, or a new one has not taken it yet), it neither is connected nor shows a QR
/// that still works, whatever the last runner stored; it is `starting` until a replica drives
/// it. The ends that wait for the owner stay as they are: they wait whoever runs the session.
fn unattended(
    mut stored: SessionView,
    lease: Option<crate::entities::leases::Model>,
    now: DateTime<Utc>,
) -> SessionView {
    let ended = match &lease {
        Some(l) if l.expires_at >= now => return stored,
        Some(l) => Some(l.expires_at),
        None => None,
    };
    if stored.state.waits_for_owner() {
        return stored;
    }
    stored.state = SessionState::Starting;
    stored.since = ended.unwrap_or(stored.since).min(now);
    stored.detail =
        Some("no replica runs this session now: it resumes when a worker replica takes it".into());
    stored.qr = None;
    stored.qr_url = None;
    stored.expires_at = None;
    stored.pair_code = None;
    stored
}

/// What every session driver of this process shares.
#[derive(Clone)]
pub struct WebContext {
    /// The database (sessions' stores, leases, the ledger).
    pub db: DatabaseConnection,
    /// Encrypts the stores.
    pub cipher: Cipher,
    /// This replica's name (lease holder).
    pub node: String,
    /// The protocol.
    pub engine: Arc<dyn Engine>,
    /// The sessions the API reads.
    pub sessions: Sessions,
    /// Dashboard updates.
    pub live: Live,
    /// The ledger and listeners, set once the server is built. Weak: the outbox holds the
    /// adapters, which hold this context; a strong handle would keep every database pool of a
    /// stopped server alive.
    pub outbox: std::sync::Weak<OnceLock<Outbox>>,
    /// Whether this replica runs sessions (worker replicas do).
    pub runs_sessions: bool,
    /// How long a replica's hold on a session lasts without renewal.
    pub lease: Duration,
    /// A send without the server's ack after this marks the connection a zombie.
    pub ack_timeout: Duration,
    /// Restarts in a row (without reaching `connected`) before the session is `failed`.
    pub max_restarts: u32,
    /// A drop not back after this long is reported to the owner (and its end too).
    pub drop_alert: Duration,
    /// Warm-up: the daily cap on the day the number was linked, and its daily growth.
    pub warmup: (u32, u32),
}

impl std::fmt::Debug for WebContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebContext")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

/// The lease that makes one replica the runner of a session.
pub fn lease_name(channel_id: &ChannelId) -> String {
    format!("whatsapp-web:{channel_id}")
}

/// Back-off before restart `n` (1-based): Fibonacci seconds ±10 %, capped at 900 s.
pub fn backoff(n: u32) -> Duration {
    let (mut a, mut b) = (1u64, 1u64);
    for _ in 1..n.min(40) {
        (a, b) = (b, a.saturating_add(b));
    }
    let base = Duration::from_secs(a).min(MAX_BACKOFF);
    base.mul_f64(rand::rng().random_range(0.9..=1.1))
}

/// How one connection run ended.
enum RunEnd {
    /// Restart after a back-off (counts toward `max_restarts`).
    Retry(String),
    /// Restart now (the owner asked).
    Now,
    /// Wait for the owner in this state (deleting the device's keys first when `true`).
    Wait(SessionState, String, bool),
    /// The lease went to another replica.
    LostLease,
}

/// Ends a session's connection when its driver is dropped (the account actor stopped: the
/// channel was deleted, or the server shuts down) and hands its lease term back, so another
/// replica takes the session over at once. A deleted channel's device is unlinked from the
/// phone and its keys deleted, after the connection has stopped (it writes as it closes).
struct StopOnDrop {
    session: Arc<Session>,
    ctx: WebContext,
    channel_id: ChannelId,
    lease: String,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
    writer: tokio::task::JoinHandle<()>,
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.writer.abort();
        self.session
            .driving
            .store(false, std::sync::atomic::Ordering::Relaxed);
        let link = lock(&self.session.link).take();
        let term = lock(&self.session.term).take();
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (ctx, channel_id, lease, guard, session) = (
            self.ctx.clone(),
            self.channel_id.clone(),
            self.lease.clone(),
            self.guard.take(),
            self.session.clone(),
        );
        rt.spawn(async move {
            let deleted = matches!(
                crate::channels::repo::find(&ctx.db, &channel_id).await,
                Ok(None)
            );
            if let Some(link) = link {
                if deleted {
                    link.logout().await;
                } else {
                    link.stop().await;
                }
            }
            if deleted {
                let store = DbStore::new(ctx.db.clone(), &channel_id, ctx.cipher.clone());
                wipe(&session, &store).await;
            }
            if let Some(until) = term {
                let _ = leases::release(&ctx.db, &lease, &ctx.node, until).await;
            }
            drop(guard);
        });
    }
}

/// How many runs' stores a session keeps to fence (older runs' tasks are long done).
const FENCED_RUNS: usize = 8;

/// Deletes the session's keys: first every recent run's store is fenced (a library instance
/// still closing, or a stopped run's detached task, would otherwise write keys back), then the
/// rows go.
async fn wipe(session: &Session, store: &DbStore) {
    let runs: Vec<DbStore> = lock(&session.runs).drain(..).collect();
    for run in runs {
        run.fence().await;
    }
    let _ = store.wipe().await;
}

/// Follows a session's views for drops: a connected number that is reconnecting.
#[derive(Debug, Default)]
struct DropWatch {
    /// It was connected (a reconnect after that is a drop, not a first connection).
    was_connected: bool,
    /// The drop going on: since when, and why.
    down: Option<(Instant, String)>,
    /// Whether the owner was told of it.
    told: bool,
}

impl DropWatch {
    /// When the current drop becomes worth telling, if there is one not told yet.
    fn deadline(&self, after: Duration) -> Option<Instant> {
        self.down
            .as_ref()
            .filter(|_| !self.told)
            .map(|(since, _)| *since + after)
    }

    /// The drop is overdue: what to tell.
    fn overdue(&mut self) -> String {
        self.told = true;
        let (since, why) = self.down.clone().unwrap_or((Instant::now(), String::new()));
        format!("for {} s: {why}", since.elapsed().as_secs())
    }

    /// Takes in a new view; true when a drop the owner was told of has ended.
    fn saw(&mut self, view: &SessionView) -> bool {
        match view.state {
            SessionState::Connected => {
                let back = self.told;
                *self = Self {
                    was_connected: true,
                    ..Self::default()
                };
                back
            }
            SessionState::Reconnecting | SessionState::Starting if self.was_connected => {
                if self.down.is_none() {
                    let why = view
                        .detail
                        .clone()
                        .unwrap_or_else(|| "the connection dropped".into());
                    self.down = Some((Instant::now(), why));
                }
                false
            }
            // Pairing, ends that need the owner (told as such), another replica's turn.
            _ => {
                *self = Self::default();
                false
            }
        }
    }
}

/// Runs channel `channel_id`'s session until the account actor stops.
pub async fn run(ctx: WebContext, channel_id: ChannelId, owner: UserId) {
    let session = ctx.sessions.get(&channel_id);
    // A previous driver of this session on this replica (a restarted actor) must have closed
    // its connection first.
    let guard = session.run_lock.clone().lock_owned().await;
    let lease = lease_name(&channel_id);
    let store = DbStore::new(ctx.db.clone(), &channel_id, ctx.cipher.clone());
    // The view, as the other replicas' APIs read it (the latest one wins; standby is not stored).
    // Also where a drop that lasts is noticed: the owner is told, and told again when it ends.
    let mut views = session.view_tx.subscribe();
    let writer_store = store.clone();
    let (wctx, wowner, wsession) = (ctx.clone(), owner.clone(), session.clone());
    let writer = tokio::spawn(async move {
        let mut drops = DropWatch::default();
        loop {
            let changed = match drops.deadline(wctx.drop_alert) {
                Some(at) => match tokio::time::timeout_at(at.into(), views.changed()).await {
                    Ok(changed) => changed,
                    Err(_) => {
                        let why = drops.overdue();
                        account_down(&wctx, &wowner, &wsession, &why, Down::Unreachable).await;
                        continue;
                    }
                },
                None => views.changed().await,
            };
            if changed.is_err() {
                break;
            }
            let view = views.borrow_and_update().clone();
            let Some(view) = view else { continue };
            if drops.saw(&view) {
                account_down(&wctx, &wowner, &wsession, "connected again", Down::Back).await;
            }
            if view.state != SessionState::Standby {
                let _ = writer_store.store_view(&view).await;
            }
        }
    });
    let _stop = StopOnDrop {
        session: session.clone(),
        ctx: ctx.clone(),
        channel_id: channel_id.clone(),
        lease: lease.clone(),
        guard: Some(guard),
        writer,
    };
    let mut restarts = 0u32;
    loop {
        if !ctx.runs_sessions {
            return;
        }
        if !take_lease(&ctx, &session, &lease).await {
            session
                .driving
                .store(false, std::sync::atomic::Ordering::Relaxed);
            set_state(&ctx, &owner, &session, SessionState::Standby, None);
            tokio::select! {
                _ = tokio::time::sleep(ctx.lease / 3) => {}
                _ = session.restart.notified() => {}
            }
            continue;
        }
        if !session
            .driving
            .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            // Taken just now: until this replica says where the session stands, the stored
            // view is the last runner's (a restarted server's first `starting` changes nothing
            // in its own view, so it would not be published, and the API showed the stopped
            // server's "connected" through the whole reconnect).
            publish(&ctx, &owner, session.view());
        }
        let end = connect_once(&ctx, &channel_id, &owner, &session, &lease).await;
        let link = lock(&session.link).take();
        if let Some(link) = link {
            link.stop().await;
        }
        lock(&session.unacked).clear();
        let end = match end {
            // The device is gone from the phone: its keys are worthless now (deleted once the
            // connection has stopped, as it writes while closing).
            RunEnd::Wait(state, why, true) => {
                wipe(&session, &store).await;
                lock(&session.view).phone = None;
                RunEnd::Wait(state, why, false)
            }
            other => other,
        };
        match end {
            RunEnd::Now | RunEnd::LostLease => restarts = 0,
            RunEnd::Retry(why) => {
                restarts += 1;
                lock(&session.view).restarts = restarts;
                if restarts > ctx.max_restarts {
                    let why = format!("gave up after {} restarts: {why}", ctx.max_restarts);
                    wait_for_owner(
                        &ctx,
                        &owner,
                        &session,
                        &store,
                        &lease,
                        SessionState::Failed,
                        why,
                    )
                    .await;
                    restarts = 0;
                    continue;
                }
                let pause = backoff(restarts);
                tracing::warn!(%channel_id, restarts, pause_ms = pause.as_millis() as u64, reason = %why, "WhatsApp Web session restarts");
                set_state(
                    &ctx,
                    &owner,
                    &session,
                    SessionState::Reconnecting,
                    Some(why),
                );
                let until = tokio::time::Instant::now() + pause;
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep_until(until) => break,
                        _ = session.restart.notified() => {}
                        _ = tokio::time::sleep(COMMAND_POLL) => {}
                    }
                    match next_command(&session, &store).await {
                        Some(c) if c.logout => {
                            wipe(&session, &store).await;
                            lock(&session.view).phone = None;
                            wait_for_owner(
                                &ctx,
                                &owner,
                                &session,
                                &store,
                                &lease,
                                SessionState::LoggedOut,
                                "unlinked by its owner; pair again".into(),
                            )
                            .await;
                            restarts = 0;
                            break;
                        }
                        Some(_) => {
                            restarts = 0;
                            break;
                        }
                        None => {}
                    }
                }
            }
            RunEnd::Wait(state, why, _) => {
                wait_for_owner(&ctx, &owner, &session, &store, &lease, state, why).await;
                restarts = 0;
            }
        }
    }
}

/// How often a driver looks for a command left by another replica's API.
const COMMAND_POLL: Duration = Duration::from_secs(2);

/// The command left for this session, if any (a restart's phone is kept for the next pairing).
async fn next_command(session: &Session, store: &DbStore) -> Option<SessionCommand> {
    let command = store.take_command().await.ok().flatten()?;
    if !command.logout {
        session.pair_next_with(command.pair_phone.clone());
    }
    Some(command)
}

/// Takes or renews the session's lease for this replica; remembers the term.
async fn take_lease(ctx: &WebContext, session: &Session, lease: &str) -> bool {
    let now = Utc::now();
    let Ok(span) = chrono::Duration::from_std(ctx.lease) else {
        return false;
    };
    let until = (now + span).trunc_subsecs(0);
    match leases::acquire(&ctx.db, lease, &ctx.node, now, until).await {
        Ok(true) => {
            *lock(&session.term) = Some(until);
            true
        }
        Ok(false) => false,
        Err(e) => {
            tracing::warn!(error = %e, "cannot renew a WhatsApp Web session lease");
            false
        }
    }
}

/// Sits in an end state until the owner restarts the session. It keeps the lease meanwhile, so
/// no other replica starts it behind the owner's back (a replaced session taken back, a banned
/// number retried); when it loses the lease it returns, and the caller stands by.
async fn wait_for_owner(
    ctx: &WebContext,
    owner: &UserId,
    session: &Session,
    store: &DbStore,
    lease: &str,
    state: SessionState,
    why: String,
) {
    tracing::warn!(channel_id = %lock(&session.view).channel_id, state = ?state, reason = %why, "WhatsApp Web session waits for its owner");
    set_state(ctx, owner, session, state, Some(why.clone()));
    account_down(ctx, owner, session, &why, Down::NeedsOwner).await;
    let mut renew = tokio::time::interval(ctx.lease / 3);
    renew.tick().await;
    loop {
        tokio::select! {
            _ = renew.tick() => {
                if !take_lease(ctx, session, lease).await {
                    return;
                }
                continue;
            }
            _ = session.restart.notified() => {}
            _ = tokio::time::sleep(COMMAND_POLL) => {}
        }
        match next_command(session, store).await {
            Some(c) if c.logout => {
                wipe(session, store).await;
                lock(&session.view).phone = None;
                set_state(
                    ctx,
                    owner,
                    session,
                    SessionState::LoggedOut,
                    Some("unlinked by its owner; pair again".into()),
                );
            }
            Some(_) => return,
            None => {}
        }
    }
}

async fn connect_once(
    ctx: &WebContext,
    channel_id: &ChannelId,
    owner: &UserId,
    session: &Arc<Session>,
    lease: &str,
) -> RunEnd {
    let store = DbStore::new(ctx.db.clone(), channel_id, ctx.cipher.clone());
    match store.rekey().await {
        Ok(0) => {}
        Ok(n) => {
            tracing::info!(%channel_id, records = n, "WhatsApp Web session moved to the current secret key")
        }
        Err(e) => return RunEnd::Retry(format!("cannot read the stored session: {e}")),
    }
    let paired = store.paired().await.unwrap_or(false);
    // A stored device reconnects; only a new pairing uses the code's phone.
    let pair_phone = if paired {
        None
    } else {
        lock(&session.pair_phone).clone()
    };
    {
        let mut v = lock(&session.view);
        v.qr = None;
        v.qr_url = None;
        v.pair_code = None;
        v.expires_at = None;
    }
    set_state(
        ctx,
        owner,
        session,
        if paired {
            SessionState::Starting
        } else {
            SessionState::Pairing
        },
        None,
    );
    session
        .by_code
        .store(pair_phone.is_some(), std::sync::atomic::Ordering::Relaxed);
    {
        let mut runs = lock(&session.runs);
        if runs.len() >= FENCED_RUNS {
            runs.pop_front();
        }
        runs.push_back(store.clone());
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let link = match ctx.engine.start(store.clone(), pair_phone, tx).await {
        Ok(link) => link,
        Err(e) => return RunEnd::Retry(format!("could not start: {e}")),
    };
    *lock(&session.link) = Some(link.clone());
    let end = drive(ctx, channel_id, owner, session, lease, &store, rx).await;
    // Another replica owns the session now: this run's late writes would overwrite its records.
    // (A logout's stores are fenced by `wipe`, with every recent run's.)
    if matches!(end, RunEnd::LostLease) {
        store.fence().await;
    }
    end
}

/// Runs one connection until it ends.
async fn drive(
    ctx: &WebContext,
    channel_id: &ChannelId,
    owner: &UserId,
    session: &Arc<Session>,
    lease: &str,
    store: &DbStore,
    mut rx: mpsc::UnboundedReceiver<WaEvent>,
) -> RunEnd {
    let mut renew = tokio::time::interval(ctx.lease / 3);
    renew.tick().await;
    let mut check = tokio::time::interval(COMMAND_POLL);
    loop {
        tokio::select! {
            event = rx.recv() => {
                let Some(event) = event else {
                    return RunEnd::Retry("the connection ended".into());
                };
                if let Some(end) = on_event(ctx, channel_id, owner, session, store, event).await {
                    return end;
                }
            }
            _ = renew.tick() => {
                if !take_lease(ctx, session, lease).await {
                    tracing::warn!(%channel_id, "lost the WhatsApp Web session's lease; another replica runs it");
                    return RunEnd::LostLease;
                }
            }
            _ = check.tick() => {
                let oldest = lock(&session.unacked).values().min().copied();
                if oldest.is_some_and(|t| t.elapsed() > ctx.ack_timeout) {
                    return RunEnd::Retry(format!(
                        "zombie connection: a send had no server ack within {} s",
                        ctx.ack_timeout.as_secs()
                    ));
                }
                if let Some(end) = command_end(session, store).await {
                    return end;
                }
            }
            _ = session.restart.notified() => {
                if let Some(end) = command_end(session, store).await {
                    return end;
                }
            }
        }
    }
}

/// What a command left for a running session does to the run.
async fn command_end(session: &Session, store: &DbStore) -> Option<RunEnd> {
    let command = next_command(session, store).await?;
    if !command.logout {
        return Some(RunEnd::Now);
    }
    let link = lock(&session.link).take();
    if let Some(link) = link {
        link.logout().await;
    }
    Some(RunEnd::Wait(
        SessionState::LoggedOut,
        "unlinked by its owner; pair again".into(),
        true,
    ))
}

async fn on_event(
    ctx: &WebContext,
    channel_id: &ChannelId,
    owner: &UserId,
    session: &Session,
    store: &DbStore,
    event: WaEvent,
) -> Option<RunEnd> {
    match event {
        // While pairing by code WhatsApp still rotates QR refs: the code is what is shown.
        WaEvent::Qr { .. } if session.by_code.load(std::sync::atomic::Ordering::Relaxed) => {}
        WaEvent::Qr { code, timeout } => {
            {
                let mut v = lock(&session.view);
                v.qr_url = Some(super::qr::svg_data_url(&code));
                v.qr = Some(code);
                v.pair_code = None;
                v.expires_at = chrono::Duration::from_std(timeout)
                    .ok()
                    .map(|t| Utc::now() + t);
            }
            set_state(ctx, owner, session, SessionState::Pairing, None);
        }
        WaEvent::PairCode { code, timeout } => {
            {
                let mut v = lock(&session.view);
                v.pair_code = Some(code);
                v.qr = None;
                v.qr_url = None;
                v.expires_at = chrono::Duration::from_std(timeout)
                    .ok()
                    .map(|t| Utc::now() + t);
            }
            set_state(ctx, owner, session, SessionState::Pairing, None);
        }
        WaEvent::QrExhausted => {
            return Some(RunEnd::Wait(
                SessionState::Failed,
                "qr-expired: no phone scanned the QR in time; restart to get a new one".into(),
                false,
            ));
        }
        WaEvent::PairCodeExpired => return Some(RunEnd::Now),
        WaEvent::PairCodeFailed { detail } => {
            return Some(RunEnd::Wait(
                SessionState::Failed,
                format!("pair-code-refused: {detail}; check the number, or pair by QR"),
                false,
            ));
        }
        WaEvent::Paired { phone } => {
            tracing::info!(%channel_id, "WhatsApp Web device linked");
            let mut v = lock(&session.view);
            v.phone = Some(phone);
            v.qr = None;
            v.qr_url = None;
            v.pair_code = None;
            v.expires_at = None;
        }
        WaEvent::Connected => {
            if let Err(e) = session.load_day(ctx, store).await {
                tracing::warn!(%channel_id, error = %e, "cannot count the number's sends of the day");
            }
            if let Ok(Some(device)) =
                whatsapp_rust::wacore::store::traits::DeviceStore::load(store).await
            {
                let mut v = lock(&session.view);
                if let Some(pn) = &device.pn {
                    v.phone = Some(format!("+{}", pn.user));
                }
                if !device.push_name.is_empty() {
                    v.push_name = Some(device.push_name.clone());
                }
            }
            {
                let mut v = lock(&session.view);
                v.restarts = 0;
                if v.state != SessionState::Connected {
                    v.warning = None;
                }
                v.qr = None;
                v.qr_url = None;
                v.pair_code = None;
                v.expires_at = None;
            }
            set_state(ctx, owner, session, SessionState::Connected, None);
        }
        WaEvent::Disconnected { detail } => {
            // What was in flight may never be acknowledged now: not a zombie's sign.
            lock(&session.unacked).clear();
            if lock(&session.view).state == SessionState::Connected {
                set_state(
                    ctx,
                    owner,
                    session,
                    SessionState::Reconnecting,
                    Some(detail),
                );
            }
        }
        WaEvent::LoggedOut { detail } => {
            return Some(RunEnd::Wait(
                SessionState::LoggedOut,
                format!("logged out on the phone ({detail}); pair again"),
                true,
            ));
        }
        WaEvent::Replaced => {
            return Some(RunEnd::Wait(
                SessionState::Replaced,
                "another client took this session over; restart it here to take it back".into(),
                false,
            ));
        }
        WaEvent::TemporaryBan { code, expire } => {
            return Some(RunEnd::Wait(
                SessionState::Failed,
                format!(
                    "temporary-ban {code}: WhatsApp barred this number from sending for {} min",
                    expire.as_secs() / 60
                ),
                false,
            ));
        }
        WaEvent::ConnectFailure { detail } => return Some(RunEnd::Retry(detail)),
        WaEvent::ServerAck { id, error } => {
            session.acked(&id);
            if let Some(code) = error {
                let err = ChannelError::Permanent {
                    code: "whatsapp-web-refused",
                    detail: format!("WhatsApp refused the message (error {code})"),
                };
                status(ctx, channel_id, &id, Receipt::Failed, Some(err)).await;
                let burst = {
                    let mut r = lock(&session.refusals);
                    r.push_back(Instant::now());
                    while r.front().is_some_and(|t| t.elapsed() > REFUSAL_WINDOW) {
                        r.pop_front();
                    }
                    let burst = r.len() >= REFUSAL_BURST;
                    if burst {
                        r.clear();
                    }
                    burst
                };
                if burst {
                    let why = format!(
                        "ban-risk: WhatsApp refused {REFUSAL_BURST} messages within {} minutes",
                        REFUSAL_WINDOW.as_secs() / 60
                    );
                    tracing::warn!(%channel_id, reason = %why, "WhatsApp Web number shows signs of a ban");
                    lock(&session.view).warning = Some(why.clone());
                    publish(ctx, owner, session.view());
                    account_down(ctx, owner, session, &why, Down::NeedsOwner).await;
                }
            }
        }
        WaEvent::Receipt { ids, seen } => {
            let receipt = match seen {
                Seen::Delivered => Receipt::Delivered,
                Seen::Read => Receipt::Read,
            };
            for id in ids {
                session.acked(&id);
                status(ctx, channel_id, &id, receipt, None).await;
            }
        }
        WaEvent::Inbound { from, text } => {
            if let Some(cell) = ctx.outbox.upgrade()
                && let Some(outbox) = cell.get()
            {
                let message = Inbound {
                    owner_id: owner,
                    channel_id,
                    from: &from,
                    text: &text,
                    at: Utc::now(),
                };
                if let Err(e) = outbox.listeners.inbound(&outbox.db, &message).await {
                    tracing::warn!(%channel_id, error = %e, "inbound WhatsApp Web message not recorded");
                }
            }
        }
        WaEvent::Ended => return Some(RunEnd::Retry("the connection ended".into())),
    }
    None
}

/// Tells every feature that the number cannot send (its campaigns pause).
async fn account_down(
    ctx: &WebContext,
    owner: &UserId,
    session: &Session,
    reason: &str,
    kind: Down,
) {
    let Some(cell) = ctx.outbox.upgrade() else {
        return;
    };
    let Some(outbox) = cell.get() else {
        return;
    };
    let channel_id = lock(&session.view).channel_id.clone();
    let down = AccountDown {
        owner_id: owner,
        channel_id: &channel_id,
        reason,
        kind,
    };
    outbox.listeners.account_down(outbox, &down).await;
}

/// Moves a message of this number along (a receipt, or WhatsApp's refusal).
async fn status(
    ctx: &WebContext,
    channel_id: &ChannelId,
    provider_id: &str,
    receipt: Receipt,
    error: Option<ChannelError>,
) {
    let Some(cell) = ctx.outbox.upgrade() else {
        return;
    };
    let Some(outbox) = cell.get() else {
        return;
    };
    // The ack can beat the commit that records the send's id: look again briefly.
    for pause_ms in [0u64, 50, 200, 1000] {
        tokio::time::sleep(Duration::from_millis(pause_ms)).await;
        match crate::outbox::repo::apply_provider_status(
            &outbox.db,
            &outbox.listeners,
            channel_id,
            provider_id,
            receipt,
            Utc::now(),
            error.clone(),
        )
        .await
        {
            Ok(crate::outbox::repo::StatusApplied::Known(heard)) => {
                if let Some(heard) = heard {
                    let (msg, outcome) = heard.as_ref();
                    outbox.listeners.after(outbox, msg, outcome).await;
                }
                return;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(%channel_id, error = %e, "WhatsApp Web status not recorded");
                return;
            }
        }
    }
}

fn set_state(
    ctx: &WebContext,
    owner: &UserId,
    session: &Session,
    state: SessionState,
    detail: Option<String>,
) {
    let view = {
        let mut v = lock(&session.view);
        if v.state == state && v.detail == detail && state != SessionState::Pairing {
            return;
        }
        if v.state != state {
            v.since = Utc::now();
        }
        v.state = state;
        v.detail = detail;
        if !matches!(state, SessionState::Pairing) {
            v.qr = None;
            v.qr_url = None;
            v.pair_code = None;
            v.expires_at = None;
        }
        v.clone()
    };
    metrics::counter!("pregonero_whatsapp_web_transitions_total", "state" => format!("{state:?}"))
        .increment(1);
    publish(ctx, owner, view);
}

/// Tells the owner's dashboards (`channel.session` live event) and the other replicas.
fn publish(ctx: &WebContext, owner: &UserId, view: SessionView) {
    if let Some(session) = ctx.sessions.peek(&view.channel_id) {
        session.view_tx.send_replace(Some(view.clone()));
    }
    let live = ctx.live.clone();
    let event = LiveEvent {
        owner: owner.clone(),
        kind: "channel.session".into(),
        data: serde_json::to_value(&view).unwrap_or_default(),
    };
    tokio::spawn(async move { live.publish(event).await });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stored view is shown as stored while a replica holds the session's lease; once the
    /// lease ended or was given back, a live state becomes `starting` without its QR, and an
    /// end that waits for the owner stays.
    #[test]
    fn a_stored_view_is_as_live_as_its_lease() {
        let now = Utc::now();
        let mut connected = SessionView::new(ChannelId::from("c"));
        connected.state = SessionState::Connected;
        connected.phone = Some("+34611222333".into());
        let lease = |secs: i64| crate::entities::leases::Model {
            name: lease_name(&ChannelId::from("c")),
            holder: "node-a".into(),
            expires_at: now + chrono::Duration::seconds(secs),
        };
        let live = unattended(connected.clone(), Some(lease(5)), now);
        assert_eq!(live.state, SessionState::Connected);
        assert_eq!(live.detail, None);

        let gone = unattended(connected.clone(), Some(lease(-3)), now);
        assert_eq!(gone.state, SessionState::Starting);
        assert_eq!(gone.since, now - chrono::Duration::seconds(3));
        assert_eq!(
            gone.phone.as_deref(),
            Some("+34611222333"),
            "the number stays"
        );
        assert!(gone.detail.is_some_and(|d| d.contains("no replica")));

        let mut pairing = SessionView::new(ChannelId::from("c"));
        pairing.state = SessionState::Pairing;
        pairing.qr = Some("2@ref".into());
        pairing.qr_url = Some("data:image/svg+xml;base64,".into());
        let released = unattended(pairing, None, now);
        assert_eq!(released.state, SessionState::Starting);
        assert!(
            released.qr.is_none() && released.qr_url.is_none(),
            "a dead QR is not shown"
        );

        let mut logged_out = connected;
        logged_out.state = SessionState::LoggedOut;
        assert_eq!(
            unattended(logged_out, None, now).state,
            SessionState::LoggedOut
        );
    }

    #[test]
    fn the_warm_up_grows_the_cap_to_per_day() {
        assert_eq!(warmup_cap(50, (20, 15), 0), 20);
        assert_eq!(warmup_cap(50, (20, 15), 1), 35);
        assert_eq!(warmup_cap(50, (20, 15), 2), 50);
        assert_eq!(warmup_cap(50, (20, 15), 400), 50);
        assert_eq!(warmup_cap(50, (0, 15), 0), 50, "no warm-up");
        assert_eq!(warmup_cap(10, (20, 15), 0), 10, "never above per_day");
    }

    #[test]
    fn a_full_day_frees_a_place_when_its_oldest_send_is_a_day_old() {
        let now = Utc::now();
        let mut day = DayCount {
            per_day: 3,
            warmup: (0, 0),
            ..DayCount::default()
        };
        for m in [23 * 60 + 30, 600, 60] {
            day.sends.push_back(now - chrono::Duration::minutes(m));
        }
        let wait = day.check(now).expect_err("full");
        assert!((29 * 60..=30 * 60).contains(&wait.as_secs()), "{wait:?}");
        day.sends.pop_front();
        day.sends.push_front(now - chrono::Duration::hours(20));
        let wait = day.check(now).expect_err("full");
        assert_eq!(wait.as_secs(), 3600, "looks again at least hourly");
        day.sends.pop_front();
        assert!(day.check(now).is_ok());
        day.sends.push_front(now - chrono::Duration::hours(25));
        assert!(
            day.check(now).is_ok(),
            "a send over a day old does not count"
        );
        assert_eq!(day.sends.len(), 2);
    }

    #[test]
    fn restarts_back_off_like_whatsapp_web() {
        let secs: Vec<u64> = (1..=8).map(|n| backoff(n).as_millis() as u64).collect();
        for (got, want) in secs.iter().zip([1u64, 1, 2, 3, 5, 8, 13, 21]) {
            let want = want * 1000;
            assert!(*got >= want * 9 / 10 && *got <= want * 11 / 10, "{secs:?}");
        }
        assert!(
            backoff(40) <= Duration::from_secs(990),
            "capped at 15 minutes ±10 %"
        );
    }
}
