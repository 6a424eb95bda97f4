//! The in-process scheduler: one timeline of departures per account.
//!
//! A send reserves its departure `t ≥ max(now, freeze, recipient's next free time)` at the first
//! account slot that keeps every reserved or departed send at least a slot from it, so
//! waiters are served in order and a recipient that must wait does not hold the account back
//! (later sends to other recipients take the free slots before it). When the send leaves, the
//! departure is checked once more against what really left: the provider answered the send
//! `rate` departures ago a whole second before this one can arrive (it counted it before it
//! answered; while no answer came back it may still be on its way, however late its departure
//! was, so the next send waits for that answer); the recipient's last departure is an interval
//! ago; the account's last one is most of a slot ago), so a late timer or a starved task can
//! delay a send but never bunch sends together. A freeze or a hold moves every turn not yet taken and
//! lays them out again, so nothing bursts when it ends. A slot is `(1 s + d) / rate`, `d` being the
//! average time the provider took to count a send, so the plan follows the network.
use std::{
    collections::{BTreeSet, HashMap, VecDeque},
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use futures::future::BoxFuture;

use super::{
    Deferred, LimitScope, Pacer, PacingLimits, PacingState, Permit, RecipientKind, daily::DailyCap,
};

/// Multiplier of the account's rate after a refusal whose scope is unknown.
const DECREASE_UNKNOWN: f64 = 0.9;
/// Multiplier after an account throughput limit.
const DECREASE_ACCOUNT: f64 = 0.75;
/// Multiplier after a quality limit.
const DECREASE_QUALITY: f64 = 0.5;
/// Share of the configured rate given back for every window without a refusal.
const INCREASE_STEP: f64 = 0.05;
/// The rate never falls under this share of the configured one.
const MIN_RATE_SHARE: f64 = 0.1;
/// Two departures are never closer than this share of a slot: after a late timer the sends
/// that were due catch up at this pace instead of leaving together.
const CATCH_UP_GAP: f64 = 0.8;
/// Weight of one answer in the average delay to the provider.
const DELAY_WEIGHT: f64 = 0.1;
/// How often a send whose window hangs on an unanswered departure looks again.
const ANSWER_POLL: Duration = Duration::from_millis(5);
/// A departure never answered (its send was dropped mid-call) counts as answered this late, so
/// a lost answer can slow the account down but never stop it.
const ANSWER_LOST: Duration = Duration::from_secs(60);

type Ticket = (Instant, u64);

#[derive(Debug)]
struct Reservation {
    at: Instant,
    recipient: Arc<str>,
    kind: RecipientKind,
}

#[derive(Debug, Clone, Copy)]
struct Departure {
    seq: u64,
    at: Instant,
    /// When its answer came back: the provider counted it by then. Until then it may still be
    /// on its way (a task starved of CPU can write the request long after its turn).
    answered: Option<Instant>,
}

impl Departure {
    /// The latest the provider can have counted it, if that is known at `now`.
    fn counted_by(&self, now: Instant) -> Option<Instant> {
        self.answered
            .or_else(|| Some(self.at + ANSWER_LOST).filter(|lost| *lost <= now))
    }
}

#[derive(Debug, Default)]
struct Recipient {
    /// The latest turn promised to a send of this recipient that was handed back (deferred).
    promised_until: Option<Instant>,
    last_departed: Option<Instant>,
    /// The number of its last departure, to find that send's answer.
    last_seq: Option<u64>,
    pending: BTreeSet<Ticket>,
    held_until: Option<Instant>,
}

#[derive(Debug)]
struct Timeline {
    limits: PacingLimits,
    /// Sends per window now (AIMD: cut on refusals, raised step by step while calm).
    rate: f64,
    reserved: BTreeSet<Ticket>,
    tickets: HashMap<u64, Reservation>,
    /// What really left, oldest first; at most `account_per_sec` entries.
    departed: VecDeque<Departure>,
    /// Expected time from a departure to its answer (the margin until answers come back),
    /// averaged: it sets the plan's slot.
    delay: Duration,
    next_seq: u64,
    recipients: HashMap<Arc<str>, Recipient>,
    frozen_until: Option<Instant>,
    /// Recent refusals of unknown scope: when and to whom.
    strikes: VecDeque<(Instant, Arc<str>)>,
    /// Since when the rate was last changed.
    calm_since: Instant,
    next_id: u64,
    /// The latest turn promised to a send handed back because the account had no slot.
    promised_until: Option<Instant>,
}

impl Timeline {
    fn new(limits: PacingLimits) -> Self {
        Self {
            limits,
            rate: f64::from(limits.account_per_sec.max(1)),
            reserved: BTreeSet::new(),
            tickets: HashMap::new(),
            departed: VecDeque::new(),
            delay: limits.margin,
            next_seq: 0,
            recipients: HashMap::new(),
            frozen_until: None,
            strikes: VecDeque::new(),
            calm_since: Instant::now(),
            next_id: 0,
            promised_until: None,
        }
    }

    /// The turn to promise a send whose real turn `at` is too far to wait for: after every turn
    /// promised before it, of its recipient when the recipient's limit is what holds it back,
    /// else of the account. Without this, every send handed back at once was promised the same
    /// turn, came back together, and was handed back again: a flood to one chat went round the
    /// queue every few seconds (`/api/alert` fell from ~6,000 to ~200 accepted per second).
    fn promise(
        &mut self,
        recipient: &str,
        kind: RecipientKind,
        at: Instant,
        now: Instant,
    ) -> Instant {
        let slot = self.slot();
        let ready = self.recipient_ready(recipient, kind, now);
        if ready + slot >= at {
            let interval = self.limits.interval(kind);
            let r = self.recipients.entry(Arc::from(recipient)).or_default();
            let promised = r.promised_until.map_or(at, |p| at.max(p + interval));
            r.promised_until = Some(promised);
            promised
        } else {
            let promised = self.promised_until.map_or(at, |p| at.max(p + slot));
            self.promised_until = Some(promised);
            promised
        }
    }

    fn max_rate(&self) -> f64 {
        f64::from(self.limits.account_per_sec.max(1))
    }

    /// Planned time between two departures of the account.
    fn slot(&self) -> Duration {
        (Duration::from_secs(1) + self.delay).div_f64(self.rate)
    }

    /// How many departures one window may hold now.
    fn cap(&self) -> usize {
        (self.rate.floor() as usize).max(1)
    }

    /// The earliest time ≥ `from` that is a whole slot away from every reserved and departed send.
    fn first_free(&self, from: Instant) -> Instant {
        let slot = self.slot();
        let mut at = from;
        if let Some(last) = self.departed.back() {
            at = at.max(last.at + slot);
        }
        let start = at.checked_sub(slot).unwrap_or(at);
        for &(t, _) in self.reserved.range((start, 0)..) {
            if t >= at + slot {
                break;
            }
            if t + slot > at {
                at = t + slot;
            }
        }
        at
    }

    /// When the recipient may next be sent to, given what left and what is reserved.
    fn recipient_ready(&self, key: &str, kind: RecipientKind, now: Instant) -> Instant {
        let interval = self.limits.interval(kind);
        let mut at = now;
        if let Some(until) = self.frozen_until {
            at = at.max(until);
        }
        if let Some(r) = self.recipients.get(key) {
            if let Some(until) = r.held_until {
                at = at.max(until);
            }
            if let Some(d) = r.last_departed {
                at = at.max(d + interval);
            }
            if let Some(&(t, _)) = r.pending.last() {
                at = at.max(t + interval);
            }
        }
        at
    }

    fn place(
        &mut self,
        id: u64,
        recipient: Arc<str>,
        kind: RecipientKind,
        now: Instant,
    ) -> Instant {
        let ready = self.recipient_ready(&recipient, kind, now);
        let at = self.first_free(ready);
        self.reserved.insert((at, id));
        self.recipients
            .entry(recipient.clone())
            .or_default()
            .pending
            .insert((at, id));
        self.tickets.insert(
            id,
            Reservation {
                at,
                recipient,
                kind,
            },
        );
        at
    }

    fn reserve(&mut self, recipient: &str, kind: RecipientKind, now: Instant) -> (u64, Instant) {
        let id = self.next_id;
        self.next_id += 1;
        let key = match self.recipients.get_key_value(recipient) {
            Some((k, _)) => k.clone(),
            None => Arc::from(recipient),
        };
        (id, self.place(id, key, kind, now))
    }

    fn unplace(&mut self, id: u64) -> Option<Reservation> {
        let res = self.tickets.remove(&id)?;
        self.reserved.remove(&(res.at, id));
        if let Some(r) = self.recipients.get_mut(&res.recipient) {
            r.pending.remove(&(res.at, id));
        }
        Some(res)
    }

    fn cancel(&mut self, id: u64) {
        self.unplace(id);
    }

    /// When a send may leave that must arrive `gap` after the provider counted departure `seq`,
    /// if that is later than `now`. Not answered yet, it may still be on its way: look again
    /// when its answer usually comes, then every few milliseconds until it does. A departure
    /// that fell out of the window's record is long counted.
    fn after_answer(&self, seq: Option<u64>, gap: Duration, now: Instant) -> Option<Instant> {
        let i = self.departed.binary_search_by_key(&seq?, |d| d.seq).ok()?;
        let d = &self.departed[i];
        let free = match d.counted_by(now) {
            Some(counted) => counted + gap,
            None => (d.at + self.delay + gap).max(now + ANSWER_POLL),
        };
        (free > now).then_some(free)
    }

    /// `Ok` with the departure's number when the send may leave now (and records it), else the
    /// time to check again.
    fn try_depart(&mut self, id: u64, now: Instant) -> Result<u64, Instant> {
        let seq = self.next_seq;
        let Some(res) = self.tickets.get(&id) else {
            return Ok(seq);
        };
        if res.at > now {
            return Err(res.at);
        }
        if let Some(until) = self.frozen_until.filter(|u| *u > now) {
            return Err(until);
        }
        if let Some(last) = self.departed.back() {
            let free = last.at + self.slot().mul_f64(CATCH_UP_GAP);
            if free > now {
                return Err(free);
            }
        }
        let cap = self.cap();
        if self.departed.len() >= cap {
            // The provider counted it by its answer at the latest; a second later it is out of
            // the provider's window.
            let oldest = self.departed[self.departed.len() - cap].seq;
            if let Some(free) = self.after_answer(Some(oldest), Duration::from_secs(1), now) {
                return Err(free);
            }
        }
        let interval = self.limits.interval(res.kind);
        if let Some(r) = self.recipients.get(&res.recipient) {
            if let Some(until) = r.held_until.filter(|u| *u > now) {
                return Err(until);
            }
            if let Some(free) = r.last_departed.map(|d| d + interval).filter(|f| *f > now) {
                return Err(free);
            }
            if let Some(free) =
                self.after_answer(r.last_seq, self.limits.recipient_base(res.kind), now)
            {
                return Err(free);
            }
        }
        let Some(res) = self.unplace(id) else {
            return Ok(seq);
        };
        self.next_seq += 1;
        self.departed.push_back(Departure {
            seq,
            at: now,
            answered: None,
        });
        while self.departed.len() > self.limits.account_per_sec.max(1) as usize {
            self.departed.pop_front();
        }
        let r = self.recipients.entry(res.recipient).or_default();
        r.last_departed = Some(now);
        r.last_seq = Some(seq);
        self.calm_step(now);
        Ok(seq)
    }

    /// The provider answered departure `seq` at `at`: it was counted by then.
    fn answered(&mut self, seq: u64, at: Instant) {
        let Ok(i) = self.departed.binary_search_by_key(&seq, |d| d.seq) else {
            return;
        };
        let d = &mut self.departed[i];
        if d.answered.is_some() {
            return;
        }
        d.answered = Some(at);
        let delay = at.saturating_duration_since(d.at);
        self.delay = self.delay.mul_f64(1.0 - DELAY_WEIGHT) + delay.mul_f64(DELAY_WEIGHT);
    }

    /// Additive increase: one step back towards the configured rate per calm window.
    fn calm_step(&mut self, now: Instant) {
        if self.rate < self.max_rate()
            && now.duration_since(self.calm_since) >= Duration::from_secs(1)
        {
            self.rate = (self.rate + self.max_rate() * INCREASE_STEP).min(self.max_rate());
            self.calm_since = now;
        }
    }

    fn decrease(&mut self, factor: f64, now: Instant) {
        self.rate = (self.rate * factor).max(self.max_rate() * MIN_RATE_SHARE);
        self.calm_since = now;
    }

    /// Lays out again, in their order, the turns not yet taken (of one recipient, or all).
    fn respace(&mut self, only: Option<&str>, now: Instant) {
        let mut moved: Vec<(Instant, u64)> = match only {
            Some(key) => self
                .recipients
                .get(key)
                .map(|r| r.pending.iter().copied().collect())
                .unwrap_or_default(),
            None => self.reserved.iter().copied().collect(),
        };
        moved.sort();
        let taken: Vec<_> = moved
            .into_iter()
            .filter_map(|(_, id)| self.unplace(id).map(|r| (id, r)))
            .collect();
        for (id, res) in taken {
            self.place(id, res.recipient, res.kind, now);
        }
    }

    fn rate_limited(
        &mut self,
        recipient: &str,
        retry_after: Duration,
        scope: LimitScope,
        now: Instant,
    ) {
        let until = now + retry_after;
        let freeze = match scope {
            LimitScope::Recipient => false,
            LimitScope::Account => {
                self.decrease(DECREASE_ACCOUNT, now);
                true
            }
            LimitScope::Quality => {
                self.decrease(DECREASE_QUALITY, now);
                true
            }
            LimitScope::Unknown => {
                let horizon = Duration::from_secs(1).max(retry_after);
                while self
                    .strikes
                    .front()
                    .is_some_and(|(t, _)| now.duration_since(*t) > horizon)
                {
                    self.strikes.pop_front();
                }
                let other = self.strikes.iter().any(|(_, r)| &**r != recipient);
                self.strikes.push_back((now, Arc::from(recipient)));
                if other {
                    self.strikes.clear();
                    self.decrease(DECREASE_ACCOUNT, now);
                    true
                } else {
                    self.decrease(DECREASE_UNKNOWN, now);
                    false
                }
            }
        };
        if freeze {
            self.frozen_until = Some(self.frozen_until.map_or(until, |f| f.max(until)));
            self.respace(None, now);
        } else {
            let key = match self.recipients.get_key_value(recipient) {
                Some((k, _)) => k.clone(),
                None => Arc::from(recipient),
            };
            let r = self.recipients.entry(key).or_default();
            r.held_until = Some(r.held_until.map_or(until, |h| h.max(until)));
            // The account's slots freed by the held sends go to others at once; the rate cut
            // above makes the rest of the timeline sparser from the next reservation on.
            self.respace(Some(recipient), now);
        }
    }

    fn forget_idle(&mut self, now: Instant) {
        let longest = self
            .limits
            .interval(RecipientKind::Private)
            .max(self.limits.interval(RecipientKind::Group));
        self.recipients.retain(|_, r| {
            !r.pending.is_empty()
                || r.held_until.is_some_and(|h| h > now)
                || r.promised_until.is_some_and(|p| p > now)
                || r.last_departed
                    .is_some_and(|d| now.duration_since(d) < longest)
        });
        self.recipients.shrink_to_fit();
        if self.frozen_until.is_some_and(|f| f <= now) {
            self.frozen_until = None;
        }
    }
}

/// The in-process [`Pacer`]: one timeline behind a mutex (held for microseconds, never across
/// an await).
#[derive(Debug)]
pub struct LocalPacer {
    timeline: Mutex<Timeline>,
    daily: Mutex<DailyCap>,
}

impl LocalPacer {
    /// A pacer for `limits`.
    pub fn new(limits: PacingLimits) -> Self {
        Self {
            timeline: Mutex::new(Timeline::new(limits)),
            daily: Mutex::new(DailyCap::new(limits.daily_cap, Instant::now())),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Timeline> {
        self.timeline.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn day(&self) -> MutexGuard<'_, DailyCap> {
        self.daily.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Gives a turn back if the waiting future is dropped before it leaves.
struct Turn<'a> {
    pacer: &'a LocalPacer,
    id: u64,
    done: bool,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.pacer.lock().cancel(self.id);
            self.pacer.day().give_back();
        }
    }
}

impl Pacer for LocalPacer {
    fn acquire<'a>(
        &'a self,
        recipient: &'a str,
        kind: RecipientKind,
        horizon: Duration,
    ) -> BoxFuture<'a, Result<Permit, Deferred>> {
        Box::pin(async move {
            let start = Instant::now();
            // The day's place first: a send past the cap waits for the day to roll.
            if let Err(wait) = self.day().take(start) {
                return Err(Deferred { wait });
            }
            let (id, _) = self.lock().reserve(recipient, kind, start);
            let mut turn = Turn {
                pacer: self,
                id,
                done: false,
            };
            loop {
                let now = Instant::now();
                let next = self.lock().try_depart(id, now);
                match next {
                    Ok(seq) => {
                        turn.done = true;
                        return Ok(Permit {
                            waited: now.duration_since(start),
                            seq,
                            leave_by: None,
                        });
                    }
                    Err(at) if at.duration_since(now) > horizon => {
                        // Dropping `turn` gives the slot back; the promise keeps the sends
                        // handed back in order.
                        let promised = self.lock().promise(recipient, kind, at, now);
                        return Err(Deferred {
                            wait: promised.duration_since(now),
                        });
                    }
                    Err(at) => tokio::time::sleep_until(at.into()).await,
                }
            }
        })
    }

    fn plan(&self, recipient: &str, kind: RecipientKind, horizon: Duration) -> Option<Duration> {
        let now = Instant::now();
        if let Err(wait) = self.day().check(now) {
            return Some(wait);
        }
        let mut t = self.lock();
        let at = t.first_free(t.recipient_ready(recipient, kind, now));
        if at.saturating_duration_since(now) <= horizon {
            return None;
        }
        Some(t.promise(recipient, kind, at, now).duration_since(now))
    }

    fn rate_limited(
        &self,
        recipient: &str,
        _kind: RecipientKind,
        retry_after: Duration,
        scope: LimitScope,
    ) {
        self.lock()
            .rate_limited(recipient, retry_after, scope, Instant::now());
    }

    fn answered(&self, permit: &Permit) {
        self.lock().answered(permit.seq, Instant::now());
    }

    fn state(&self) -> PacingState {
        let t = self.lock();
        let now = Instant::now();
        PacingState {
            frozen_until: t.frozen_until.filter(|f| *f > now),
            rate: t.rate / (Duration::from_secs(1) + t.delay).as_secs_f64(),
            waiting: t.tickets.len(),
            sent_today: (t.limits.daily_cap > 0).then(|| self.day().used(now)),
        }
    }

    fn forget_idle(&self) {
        self.lock().forget_idle(Instant::now());
    }
}

#[cfg(test)]
mod tests;
