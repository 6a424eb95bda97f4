//! Pacing: when each send of a channel account may leave, so that the provider, counting at
//! arrival, never sees more than the account's and the recipient's limits.
//!
//! [`Pacer`] is the seam; [`LocalPacer`] is the in-process scheduler (one per account, in the
//! account's actor); [`SharedPacer`] adds, when `redis_url` is set, one Redis decision per
//! departure so the provider's windows hold over every replica. Both keep the same semantics:
//! a send is given a departure time that honours the account and its recipient together, is held
//! to it when it leaves, and is moved (never released early) by a freeze or a hold.
mod daily;
mod human;
mod local;
mod shared;

use std::time::{Duration, Instant};

use futures::future::BoxFuture;

pub use human::Jittered;
pub use local::LocalPacer;
pub use shared::{DEAD_ANSWER, LEAVE_WITHIN, SharedPacer, heartbeat};

/// The limits one account must stay under, as the provider counts them. Keys: the account, the
/// (account, recipient) pair, and the account's day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacingLimits {
    /// Sends per second for the whole account (Telegram 30, WhatsApp Cloud 80 less inbound).
    pub account_per_sec: u32,
    /// Kept for the API's `burst` field; the scheduler spaces sends evenly and has no burst.
    pub account_burst: u32,
    /// Time between two sends to one private chat / person (Telegram 1 s, WhatsApp 6 s).
    pub recipient_interval: Duration,
    /// Sends per minute to one group chat (Telegram 20).
    pub group_per_min: u32,
    /// The time a send is first expected to take to reach the provider, until answers measure
    /// it: it widens the planned slot. What keeps the provider's windows is not this guess but
    /// its answers: a send leaves a whole second after the answer to the send `account_per_sec`
    /// departures before it, so network jitter and starved tasks cannot put more than
    /// `account_per_sec` into any second at the provider.
    pub margin: Duration,
    /// Added to every recipient interval, for the same reason.
    pub recipient_margin: Duration,
    /// Sends in any 24 hours (0: no cap). A send past it is deferred until the oldest of the
    /// day's sends is a day old.
    pub daily_cap: u32,
    /// A human's rhythm (WhatsApp Web): each send of the account waits a gap drawn afresh
    /// between the two bounds after the one before it, on top of the limits above.
    pub gap: Option<(Duration, Duration)>,
}

impl PacingLimits {
    /// Least time between two departures to one recipient of `kind`, with the margin.
    pub fn interval(&self, kind: RecipientKind) -> Duration {
        self.recipient_base(kind) + self.recipient_margin
    }

    /// The provider's own least time between two sends to one recipient of `kind`: a send to
    /// the recipient leaves at least this long after the answer to its previous send.
    pub fn recipient_base(&self, kind: RecipientKind) -> Duration {
        match kind {
            RecipientKind::Private => self.recipient_interval,
            RecipientKind::Group => Duration::from_secs(60) / self.group_per_min.max(1),
        }
    }
}

/// Which per-recipient limit applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecipientKind {
    /// A private chat or a phone number.
    Private,
    /// A group chat (Telegram: 20 per minute).
    Group,
}

/// What a rate-limit answer says was exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitScope {
    /// The recipient's limit (WhatsApp 131056): hold that recipient only.
    Recipient,
    /// The account's throughput (WhatsApp 130429): freeze the account and slow it down.
    Account,
    /// The sender's quality (WhatsApp 131048): freeze the account and halve its rate.
    Quality,
    /// The answer does not say (Telegram's 429): hold the recipient; freeze the account when
    /// two recipients are refused within one window, which a per-chat limit cannot explain.
    Unknown,
}

/// Leave to send now.
#[derive(Debug, Clone, Copy)]
pub struct Permit {
    /// How long the send waited for its turn.
    pub waited: Duration,
    /// The departure's number, for [`Pacer::answered`].
    pub seq: u64,
    /// The request must start leaving by then, or not at all (answer it and come again): the
    /// shared pacer counts a dead replica's unanswered departures as arrived a bounded time
    /// after they were decided, which holds only if no request leaves later than this.
    pub leave_by: Option<Instant>,
}

impl Permit {
    /// Whether the send may still leave now.
    pub fn fresh(&self) -> bool {
        self.leave_by.is_none_or(|by| Instant::now() <= by)
    }
}

/// The send's turn is further away than the caller wants to wait: queue it for then.
#[derive(Debug, Clone, Copy)]
pub struct Deferred {
    /// Time from now until the turn it would have had.
    pub wait: Duration,
}

/// Live state of a pacer, for `/health` and the dashboard.
#[derive(Debug, Clone, Copy)]
pub struct PacingState {
    /// When the current freeze ends, if one is in force.
    pub frozen_until: Option<Instant>,
    /// Sends per second the account is held to now (below the limit after rate-limit answers).
    pub rate: f64,
    /// Sends holding a departure time.
    pub waiting: usize,
    /// Sends of the last 24 hours, when a daily cap is set.
    pub sent_today: Option<u32>,
}

/// One account's pacing.
pub trait Pacer: Send + Sync + std::fmt::Debug {
    /// Waits for the turn of a send to `recipient` and returns when it may leave; gives up
    /// with [`Deferred`] when that turn is more than `horizon` away. A future dropped before
    /// it returns gives its turn back.
    fn acquire<'a>(
        &'a self,
        recipient: &'a str,
        kind: RecipientKind,
        horizon: Duration,
    ) -> BoxFuture<'a, Result<Permit, Deferred>>;

    /// Where a send to `recipient` would stand, without taking a turn: `None` when its turn is
    /// within `horizon` (ask with [`Pacer::acquire`]), else the wait until a turn promised to it
    /// (the caller queues it for then without claiming it).
    fn plan(&self, recipient: &str, kind: RecipientKind, horizon: Duration) -> Option<Duration>;

    /// The provider refused a send to `recipient` with a rate limit: hold the recipient or the
    /// account for `retry_after` as `scope` says, and move every turn not yet taken after it.
    fn rate_limited(
        &self,
        recipient: &str,
        kind: RecipientKind,
        retry_after: Duration,
        scope: LimitScope,
    );

    /// The provider answered the send of `permit` (whatever it said): it was counted by now.
    fn answered(&self, permit: &Permit);

    /// Live state.
    fn state(&self) -> PacingState;

    /// Forgets recipients idle long enough to be back at full capacity.
    fn forget_idle(&self);
}
