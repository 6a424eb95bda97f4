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
    store::DbStore,
};
use crate::{
    channels::{ChannelError, OutboundMessage},
    crypto::Cipher,
    domain::{ChannelId, Receipt, UserId},
    leases,
    live::{Live, LiveEvent},
    outbox::{
        Outbox,
        hooks::{AccountDown, Inbound},
    },
};

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
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
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
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
    /// When WhatsApp last refused messages (a burst is a sign of a ban coming).
    refusals: Mutex<std::collections::VecDeque<Instant>>,
    /// What the owner asked for last, and the bell that wakes the driver for it.
    command: Mutex<Option<Command>>,
    restart: Notify,
}

/// What the owner can ask a session for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Command {
    /// Start again now (a new QR, or a code for the phone set with it).
    Restart,
    /// Unlink the device from the phone and forget its keys.
    Logout,
}

impl Session {
    fn new(channel_id: ChannelId) -> Self {
        Self {
            view: Mutex::new(SessionView::new(channel_id)),
            link: Mutex::new(None),
            pair_phone: Mutex::new(None),
            unacked: Mutex::new(HashMap::new()),
            refusals: Mutex::new(std::collections::VecDeque::new()),
            command: Mutex::new(None),
            restart: Notify::new(),
        }
    }

    /// What the API shows.
    pub fn view(&self) -> SessionView {
        let mut v = lock(&self.view).clone();
        v.awaiting_ack = lock(&self.unacked).len();
        v
    }

    /// Restarts the session, pairing by code for `pair_phone` when given.
    pub fn restart(&self, pair_phone: Option<String>) {
        self.pair_next_with(pair_phone);
        *lock(&self.command) = Some(Command::Restart);
        self.restart.notify_one();
    }

    /// Unlinks the device from the phone; the session then waits in `logged_out`.
    pub fn logout(&self) {
        *lock(&self.command) = Some(Command::Logout);
        self.restart.notify_one();
    }

    fn take_command(&self) -> Option<Command> {
        lock(&self.command).take()
    }

    /// Pairs by code for `pair_phone` at the next start that needs a pairing.
    pub fn pair_next_with(&self, pair_phone: Option<String>) {
        *lock(&self.pair_phone) = pair_phone;
    }

    /// Sends through the live connection.
    pub async fn send(&self, msg: &OutboundMessage) -> Result<String, ChannelError> {
        let state = lock(&self.view).state;
        let link = lock(&self.link).clone();
        let link = match (state, link) {
            (SessionState::Connected, Some(link)) => link,
            // Pairing, reconnecting, run by another replica, or waiting for its owner (logged
            // out, replaced, failed): nothing is lost and nothing counts as an attempt; the
            // message waits in the queue until the number sends again (its campaigns pause).
            _ => {
                return Err(ChannelError::Deferred {
                    wait: NOT_CONNECTED_RETRY,
                });
            }
        };
        let id = link.send(&msg.recipient, msg).await?;
        lock(&self.unacked).insert(id.clone(), Instant::now());
        Ok(id)
    }
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

    /// Forgets a deleted channel's session.
    pub fn remove(&self, channel_id: &ChannelId) {
        lock(&self.0).remove(channel_id);
    }
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
    /// The ledger and listeners (set once the server is built).
    pub outbox: Arc<OnceLock<Outbox>>,
    /// Whether this replica runs sessions (worker replicas do).
    pub runs_sessions: bool,
    /// How long a replica's hold on a session lasts without renewal.
    pub lease: Duration,
    /// A send without the server's ack after this marks the connection a zombie.
    pub ack_timeout: Duration,
    /// Restarts in a row (without reaching `connected`) before the session is `failed`.
    pub max_restarts: u32,
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
    /// Wait for the owner in this state.
    Wait(SessionState, String),
    /// The lease went to another replica.
    LostLease,
}

/// Ends a session's connection when its driver is dropped (the account actor stopped: the
/// channel was deleted, or the server shuts down) and hands its lease back, so another replica
/// takes the session over at once rather than after the lease runs out.
struct StopOnDrop {
    session: Arc<Session>,
    db: DatabaseConnection,
    lease: String,
    node: String,
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let link = lock(&self.session.link).take();
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (db, lease, node) = (self.db.clone(), self.lease.clone(), self.node.clone());
        rt.spawn(async move {
            if let Some(link) = link {
                link.stop().await;
                let _ = leases::release_any(&db, &lease, &node).await;
            }
        });
    }
}

/// Runs channel `channel_id`'s session until the account actor stops.
pub async fn run(ctx: WebContext, channel_id: ChannelId, owner: UserId) {
    let session = ctx.sessions.get(&channel_id);
    let lease = lease_name(&channel_id);
    let _stop = StopOnDrop {
        session: session.clone(),
        db: ctx.db.clone(),
        lease: lease.clone(),
        node: ctx.node.clone(),
    };
    let mut restarts = 0u32;
    loop {
        if !ctx.runs_sessions {
            set_state(&ctx, &owner, &session, SessionState::Standby, None);
            return;
        }
        match take_lease(&ctx, &lease).await {
            Some(_) => {}
            None => {
                set_state(&ctx, &owner, &session, SessionState::Standby, None);
                tokio::select! {
                    _ = tokio::time::sleep(ctx.lease / 3) => {}
                    _ = session.restart.notified() => { session.take_command(); }
                }
                continue;
            }
        }
        let end = connect_once(&ctx, &channel_id, &owner, &session, &lease).await;
        let link = lock(&session.link).take();
        if let Some(link) = link {
            link.stop().await;
        }
        lock(&session.unacked).clear();
        match end {
            RunEnd::Now => restarts = 0,
            RunEnd::LostLease => restarts = 0,
            RunEnd::Retry(why) => {
                restarts += 1;
                lock(&session.view).restarts = restarts;
                if restarts > ctx.max_restarts {
                    let why = format!("gave up after {} restarts: {why}", ctx.max_restarts);
                    wait_for_owner(&ctx, &owner, &session, &lease, SessionState::Failed, why).await;
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
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = session.restart.notified() => {
                        restarts = 0;
                        if session.take_command() == Some(Command::Logout) {
                            let _ = DbStore::new(ctx.db.clone(), &channel_id, ctx.cipher.clone())
                                .wipe()
                                .await;
                            wait_for_owner(&ctx, &owner, &session, &lease, SessionState::LoggedOut,
                                "unlinked by its owner; pair again".into()).await;
                        }
                    }
                }
            }
            RunEnd::Wait(state, why) => {
                wait_for_owner(&ctx, &owner, &session, &lease, state, why).await;
                restarts = 0;
            }
        }
    }
}

async fn take_lease(ctx: &WebContext, lease: &str) -> Option<DateTime<Utc>> {
    let now = Utc::now();
    let until = (now + chrono::Duration::from_std(ctx.lease).ok()?).trunc_subsecs(0);
    match leases::acquire(&ctx.db, lease, &ctx.node, now, until).await {
        Ok(true) => Some(until),
        Ok(false) => None,
        Err(e) => {
            tracing::warn!(error = %e, "cannot renew a WhatsApp Web session lease");
            None
        }
    }
}

/// Sits in an end state until the owner restarts the session (the lease is handed back so
/// nothing runs meanwhile).
async fn wait_for_owner(
    ctx: &WebContext,
    owner: &UserId,
    session: &Session,
    lease: &str,
    state: SessionState,
    why: String,
) {
    tracing::warn!(channel_id = %lock(&session.view).channel_id, state = ?state, reason = %why, "WhatsApp Web session waits for its owner");
    set_state(ctx, owner, session, state, Some(why.clone()));
    let _ = leases::release_any(&ctx.db, lease, &ctx.node).await;
    account_down(ctx, owner, session, &why).await;
    loop {
        session.restart.notified().await;
        match session.take_command() {
            Some(Command::Logout) => {
                let channel_id = lock(&session.view).channel_id.clone();
                let _ = DbStore::new(ctx.db.clone(), &channel_id, ctx.cipher.clone())
                    .wipe()
                    .await;
                lock(&session.view).phone = None;
                set_state(
                    ctx,
                    owner,
                    session,
                    SessionState::LoggedOut,
                    Some("unlinked by its owner; pair again".into()),
                );
            }
            _ => return,
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
    let (tx, mut rx) = mpsc::unbounded_channel();
    let link = match ctx.engine.start(store.clone(), pair_phone, tx).await {
        Ok(link) => link,
        Err(e) => return RunEnd::Retry(format!("could not start: {e}")),
    };
    *lock(&session.link) = Some(link.clone());
    let mut renew = tokio::time::interval(ctx.lease / 3);
    renew.tick().await;
    let mut check = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            event = rx.recv() => {
                let Some(event) = event else {
                    return RunEnd::Retry("the connection ended".into());
                };
                if let Some(end) = on_event(ctx, channel_id, owner, session, &store, event).await {
                    return end;
                }
            }
            _ = renew.tick() => {
                if take_lease(ctx, lease).await.is_none() {
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
            }
            _ = session.restart.notified() => match session.take_command() {
                Some(Command::Logout) => {
                    let link = lock(&session.link).take();
                    if let Some(link) = link {
                        link.logout().await;
                    }
                    let _ = store.wipe().await;
                    lock(&session.view).phone = None;
                    return RunEnd::Wait(
                        SessionState::LoggedOut,
                        "unlinked by its owner; pair again".into(),
                    );
                }
                _ => return RunEnd::Now,
            },
        }
    }
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
            // The device is gone from the phone: its keys are worthless now.
            let _ = store.wipe().await;
            lock(&session.view).phone = None;
            return Some(RunEnd::Wait(
                SessionState::LoggedOut,
                format!("logged out on the phone ({detail}); pair again"),
            ));
        }
        WaEvent::Replaced => {
            return Some(RunEnd::Wait(
                SessionState::Replaced,
                "another client took this session over; restart it here to take it back".into(),
            ));
        }
        WaEvent::TemporaryBan { code, expire } => {
            return Some(RunEnd::Wait(
                SessionState::Failed,
                format!(
                    "temporary-ban {code}: WhatsApp barred this number from sending for {} min",
                    expire.as_secs() / 60
                ),
            ));
        }
        WaEvent::ConnectFailure { detail } => return Some(RunEnd::Retry(detail)),
        WaEvent::ServerAck { id, error } => {
            lock(&session.unacked).remove(&id);
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
                    account_down(ctx, owner, session, &why).await;
                }
            }
        }
        WaEvent::Receipt { ids, seen } => {
            let receipt = match seen {
                Seen::Delivered => Receipt::Delivered,
                Seen::Read => Receipt::Read,
            };
            for id in ids {
                lock(&session.unacked).remove(&id);
                status(ctx, channel_id, &id, receipt, None).await;
            }
        }
        WaEvent::Inbound { from, text } => {
            if let Some(outbox) = ctx.outbox.get() {
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
async fn account_down(ctx: &WebContext, owner: &UserId, session: &Session, reason: &str) {
    let Some(outbox) = ctx.outbox.get() else {
        return;
    };
    let channel_id = lock(&session.view).channel_id.clone();
    let down = AccountDown {
        owner_id: owner,
        channel_id: &channel_id,
        reason,
    };
    outbox.listeners.account_down(&outbox.db, &down).await;
}

/// Moves a message of this number along (a receipt, or WhatsApp's refusal).
async fn status(
    ctx: &WebContext,
    channel_id: &ChannelId,
    provider_id: &str,
    receipt: Receipt,
    error: Option<ChannelError>,
) {
    let Some(outbox) = ctx.outbox.get() else {
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

/// Tells the owner's dashboards (`channel.session` live event).
fn publish(ctx: &WebContext, owner: &UserId, view: SessionView) {
    let live = ctx.live.clone();
    let event = LiveEvent {
        owner: owner.clone(),
        kind: "channel.session".into(),
        data: serde_json::to_value(&view).unwrap_or_default(),
    };
    tokio::spawn(async move { live.publish(event).await });
}
