//! The pacer of an account that several replicas send for: the in-process [`LocalPacer`] orders
//! this replica's sends (its timeline, its rate cuts, its plan), and before a send leaves, one
//! Redis script decides for every replica at once whether the provider's windows allow it, on
//! Redis's clock:
//!
//! - the account's window: the departure `cap` sends ago (by any replica) must have been
//!   answered a whole second ago: the provider counted it before it answered, so it has left
//!   the provider's window whatever the network did (the rule the local pacer keeps, here over
//!   every replica's sends); two departures are most of a slot apart;
//! - the recipient: its interval after the previous departure to it, and the provider's own
//!   interval after that send's answer;
//! - a freeze (an account-wide refusal) or a hold (a recipient's), set by whichever replica was
//!   refused, holds every replica;
//! - the daily cap counts every replica's sends.
//!
//! A departure whose answer never comes counts as answered [`ANSWER_LOST`] after it left, or, once
//! its replica is seen dead (its heartbeat, [`heartbeat`], expired), [`DEAD_ANSWER`] after it
//! left: a request starts leaving within [`LEAVE_WITHIN`] of its departure or not at all (the
//! account actor checks [`Permit::fresh`] just before the call), and is given [`ARRIVAL`] to
//! reach the provider, so a replica killed mid-send holds the account up for about a second, not
//! for a request timeout or for its heartbeat's expiry. A live replica taken for dead (its
//! heartbeat late) is safe by the same bound. When Redis is fresh (restarted, emptied), the account starts
//! with a second's pause, so sends that left before cannot share a window with new ones.
//! When Redis does not answer, a send waits for it up to [`REDIS_GRACE`] (a restart), then is
//! paced by the local pacer alone, with a warning, until Redis is back.
use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use bb8_redis::redis;
use futures::future::BoxFuture;

use super::{
    Deferred, LimitScope, LocalPacer, Pacer, PacingLimits, PacingState, Permit, RecipientKind,
};
use crate::shared::Shared;

/// A departure never answered counts as answered this long after it left: longer than any
/// provider call may take (the clients' request timeouts are far shorter), so a send still on
/// its way is never taken for counted.
pub const ANSWER_LOST: Duration = Duration::from_secs(35);
/// How often a send whose window hangs on an answer not recorded yet asks again.
const POLL: Duration = Duration::from_millis(10);
/// Two departures are never closer than this share of a slot.
const GAP_SHARE: f64 = 0.8;
/// At most one "pacing in process" warning per account in this long.
const WARN_EVERY: Duration = Duration::from_secs(30);
/// A send waits this long for an unreachable Redis (a restart) before it is paced in process
/// only…
const REDIS_GRACE: Duration = Duration::from_secs(3);
/// …asking again this often.
const REDIS_RETRY: Duration = Duration::from_millis(100);
/// A replica's heartbeat is renewed this often…
const HEARTBEAT_EVERY: Duration = Duration::from_millis(250);
/// …and a replica whose heartbeat is this old is dead. (With 5 s, a replica killed mid-send
/// stopped every other replica for 4.4 s: its last departure held the account's window until
/// its heartbeat expired.)
const HEARTBEAT_TTL: Duration = Duration::from_millis(1500);
/// A request leaves within this long after the script let it depart, or not at all.
pub const LEAVE_WITHIN: Duration = Duration::from_millis(250);
/// The time a request that has left is given to reach the provider (a dead replica's cannot be
/// answered): above a round trip to the provider's data centre and a lost packet's first
/// retransmission (Linux: 200 ms).
const ARRIVAL: Duration = Duration::from_millis(500);
/// A dead replica's unanswered departure counts as answered this long after it left.
pub const DEAD_ANSWER: Duration = Duration::from_millis(750);
const _: () = assert!(
    LEAVE_WITHIN.as_millis() + ARRIVAL.as_millis() == DEAD_ANSWER.as_millis()
        && DEAD_ANSWER.as_millis() < HEARTBEAT_TTL.as_millis() + 1000
);

/// This process's number among the replicas (random: replicas need no coordination to pick).
static REPLICA: std::sync::LazyLock<u32> =
    std::sync::LazyLock::new(|| rand::random::<u32>() & 0x7fff_ffff);

fn alive_key(replica: u32) -> String {
    format!("pregonero:alive:{replica}")
}

/// Keeps this replica's heartbeat in Redis while the process runs, so that the others count
/// its unanswered sends as soon as it dies (see the module's docs). Start it once per process.
pub fn heartbeat(shared: Shared) {
    let key = alive_key(*REPLICA);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(HEARTBEAT_EVERY);
        loop {
            tick.tick().await;
            if let Err(e) = shared.set_px(&key, HEARTBEAT_TTL.as_millis() as u64).await {
                tracing::debug!(error = %format!("{e:#}"), "pacing heartbeat not renewed");
            }
        }
    });
}

/// Decides a departure. KEYS: 1 the account's recent departures (newest first,
/// `seq:departed:answered` in µs, 0 while unanswered), 2 its departure counter, 3 the
/// recipient, 4 the account's freeze, 5 the account's day. ARGV: 1 window cap, 2 least gap µs,
/// 3 recipient interval µs, 4 provider's recipient interval µs (after the answer), 5 answer
/// lost µs, 6 poll µs, 7 daily cap (0: none), 8 claim (1) or only look (0), 9 departures kept,
/// 10 this replica's number, 11 a dead replica's answer µs. An unanswered departure of a replica
/// whose heartbeat is gone is taken as answered `ARGV[11]` after it left (its process died;
/// what it sent has arrived by then or never will).
/// Returns `{1, seq}` (left) or `{0, wait µs, 1 when the recipient is what waits else 0}`.
const DEPART: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local cap, gap = tonumber(ARGV[1]), tonumber(ARGV[2])
local interval, base = tonumber(ARGV[3]), tonumber(ARGV[4])
local lost, poll = tonumber(ARGV[5]), tonumber(ARGV[6])
local daily, claim, keep = tonumber(ARGV[7]), ARGV[8] == '1', tonumber(ARGV[9])
local me, dead_answer = ARGV[10], tonumber(ARGV[11])
local function dead(rep)
  return rep ~= me and redis.call('EXISTS', 'pregonero:alive:' .. rep) == 0
end
local wait, who = 0, 0
local function later(at, r)
  if at - now > wait then wait, who = at - now, r or 0 end
end
if redis.call('EXISTS', KEYS[2]) == 0 then
  -- A fresh store: what left before it may still be in the provider's window.
  redis.call('SET', KEYS[2], 0)
  redis.call('SET', KEYS[4], now + 1000000, 'PX', 1000)
end
later(tonumber(redis.call('GET', KEYS[4]) or 0))
local r = redis.call('HMGET', KEYS[3], 'dep', 'ans', 'held', 'rep')
local rdep, rans = tonumber(r[1] or 0), tonumber(r[2] or 0)
later(tonumber(r[3] or 0), 1)
if rdep > 0 and rans == 0 and r[4] and dead(r[4]) then
  rans = rdep + dead_answer
  redis.call('HSET', KEYS[3], 'ans', rans)
end
if rdep > 0 then
  later(rdep + interval, 1)
  if rans > 0 then later(rans + base, 1)
  elseif rdep + lost > now then later(now + poll, 1) end
end
local ring = redis.call('LRANGE', KEYS[1], 0, cap - 1)
if #ring > 0 then
  local _, d = string.match(ring[1], '(%d+):(%d+):(%d+):(%d+)')
  later(tonumber(d) + gap)
end
if #ring >= cap then
  local s, d, a, rep = string.match(ring[cap], '(%d+):(%d+):(%d+):(%d+)')
  d, a = tonumber(d), tonumber(a)
  if a == 0 and dead(rep) then
    a = d + dead_answer
    redis.call('LSET', KEYS[1], cap - 1, string.format('%s:%d:%d:%s', s, d, a, rep))
  end
  if a > 0 then later(a + 1000000)
  elseif d + lost <= now then later(d + lost + 1000000)
  else later(now + poll) end
end
if daily > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now - 86400000000)
  if redis.call('ZCARD', KEYS[5]) >= daily then
    local first = redis.call('ZRANGE', KEYS[5], 0, 0, 'WITHSCORES')
    later(tonumber(first[2]) + 86400000000)
  end
end
if wait > 0 or not claim then return {0, wait, who} end
local seq = redis.call('INCR', KEYS[2])
-- (string.format: `..` would write a number of 16 digits with an exponent)
redis.call('LPUSH', KEYS[1], string.format('%d:%d:0:%s', seq, now, me))
redis.call('LTRIM', KEYS[1], 0, keep - 1)
redis.call('PEXPIRE', KEYS[1], math.ceil(lost / 1000) + 2000)
redis.call('HSET', KEYS[3], 'dep', now, 'ans', 0, 'seq', seq, 'rep', me)
redis.call('PEXPIRE', KEYS[3], math.ceil((interval + lost) / 1000) + 1000)
if daily > 0 then
  redis.call('ZADD', KEYS[5], now, seq)
  redis.call('PEXPIRE', KEYS[5], 86460000)
end
return {1, seq}
";

/// Records the answer to departure `ARGV[1]`, which came `ARGV[2]` µs before this call left
/// its replica (so the time the answer waited for a task and a connection is not added to the
/// account's window; never earlier than the departure). KEYS: 1 the account's departures, 2 the
/// recipient. Returns `{found}`.
const ANSWERED: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local at = now - math.max(0, tonumber(ARGV[2]) or 0)
local found = 0
local ring = redis.call('LRANGE', KEYS[1], 0, -1)
for i, e in ipairs(ring) do
  local s, d, a, rep = string.match(e, '(%d+):(%d+):(%d+):(%d+)')
  if s == ARGV[1] then
    if a == '0' then
      redis.call('LSET', KEYS[1], i - 1, string.format('%s:%s:%d:%s', s, d, math.max(at, tonumber(d)), rep))
    end
    found = 1
    break
  end
end
local r = redis.call('HMGET', KEYS[2], 'seq', 'dep')
if r[1] == ARGV[1] then redis.call('HSET', KEYS[2], 'ans', math.max(at, tonumber(r[2] or 0))) end
return {found}
";

/// A refusal: ARGV 1 freeze the account (1) or hold the recipient (0), 2 for how long (µs).
/// KEYS: 1 the account's freeze, 2 the recipient.
const LIMITED: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local span = tonumber(ARGV[2])
local till = now + span
if ARGV[1] == '1' then
  if till > tonumber(redis.call('GET', KEYS[1]) or 0) then
    redis.call('SET', KEYS[1], till, 'PX', math.ceil(span / 1000) + 1000)
  end
else
  if till > tonumber(redis.call('HGET', KEYS[2], 'held') or 0) then
    redis.call('HSET', KEYS[2], 'held', till)
    if redis.call('PTTL', KEYS[2]) < math.ceil(span / 1000) + 1000 then
      redis.call('PEXPIRE', KEYS[2], math.ceil(span / 1000) + 1000)
    end
  end
end
return {1}
";

/// The three scripts, loaded once per process.
struct Scripts {
    depart: redis::Script,
    answered: redis::Script,
    limited: redis::Script,
}

static SCRIPTS: std::sync::LazyLock<Scripts> = std::sync::LazyLock::new(|| Scripts {
    depart: redis::Script::new(DEPART),
    answered: redis::Script::new(ANSWERED),
    limited: redis::Script::new(LIMITED),
});

/// One account's pacing over every replica (see the module's docs).
pub struct SharedPacer {
    local: LocalPacer,
    shared: Shared,
    limits: PacingLimits,
    /// `pregonero:pace:<account>:`.
    prefix: String,
    /// Keys recipients in Redis (HMAC): phone numbers and chat ids never appear there.
    key: [u8; 32],
    /// Local departure number → (shared departure number, recipient key), until answered.
    departures: Mutex<HashMap<u64, (u64, String)>>,
    /// This replica's sends ask Redis one at a time, in the local timeline's order; one held
    /// back by the account (not by its recipient) keeps the turn while it waits.
    turn: tokio::sync::Mutex<()>,
    /// Since when Redis has not answered, if it does not.
    down_since: Mutex<Option<Instant>>,
    warned: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for SharedPacer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedPacer")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// Where a send stands with the other replicas.
enum Gate {
    Go(u64),
    /// Not yet: how long, and whether its recipient (not the account) is what holds it.
    Wait(Duration, bool),
}

impl SharedPacer {
    /// The pacer of `account` with `limits`, shared through `shared`; `key` keys recipients.
    pub fn new(limits: PacingLimits, shared: Shared, account: &str, key: [u8; 32]) -> Self {
        Self {
            local: LocalPacer::new(limits),
            shared,
            limits,
            prefix: format!("pregonero:pace:{account}:"),
            key,
            departures: Mutex::new(HashMap::new()),
            turn: tokio::sync::Mutex::new(()),
            down_since: Mutex::new(None),
            warned: Mutex::new(None),
        }
    }

    fn recipient_key(&self, recipient: &str) -> String {
        let mac = crate::crypto::hmac_sha256(&self.key, recipient.as_bytes());
        format!("{}r:{}", self.prefix, hex::encode(&mac[..16]))
    }

    fn key_of(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    fn us(d: Duration) -> i64 {
        i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
    }

    async fn gate(&self, rkey: &str, kind: RecipientKind, claim: bool) -> anyhow::Result<Gate> {
        let cap = self.limits.account_per_sec.max(1);
        let slot = (Duration::from_secs(1) + self.limits.margin) / cap;
        let (ring, seq, freeze, day) = (
            self.key_of("sent"),
            self.key_of("seq"),
            self.key_of("freeze"),
            self.key_of("day"),
        );
        let out = self
            .shared
            .eval(
                &SCRIPTS.depart,
                &[&ring, &seq, rkey, &freeze, &day],
                &[
                    i64::from(cap),
                    Self::us(slot.mul_f64(GAP_SHARE)),
                    Self::us(self.limits.interval(kind)),
                    Self::us(self.limits.recipient_base(kind)),
                    Self::us(ANSWER_LOST),
                    Self::us(POLL),
                    i64::from(self.limits.daily_cap),
                    i64::from(claim),
                    i64::from(cap),
                    i64::from(*REPLICA),
                    Self::us(DEAD_ANSWER),
                ],
            )
            .await?;
        match out.as_slice() {
            [1, seq] => Ok(Gate::Go(u64::try_from(*seq).unwrap_or(0))),
            [0, wait, who] => Ok(Gate::Wait(
                Duration::from_micros(u64::try_from(*wait).unwrap_or(0)),
                *who == 1,
            )),
            other => anyhow::bail!("unexpected answer from the pacing script: {other:?}"),
        }
    }

    /// How long Redis has not answered (zero from this first failure on).
    fn down_for(&self) -> Duration {
        self.down_since
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(Instant::now)
            .elapsed()
    }

    fn degraded(&self, e: &anyhow::Error) {
        let mut warned = self.warned.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if warned.is_none_or(|at| now.duration_since(at) >= WARN_EVERY) {
            *warned = Some(now);
            tracing::warn!(error = %format!("{e:#}"), pacer = %self.prefix, "redis unavailable: pacing this account in process only; other replicas may add to its rate");
        }
    }

    fn spawn_script(&self, script: &'static redis::Script, keys: [String; 2], args: Vec<i64>) {
        let shared = self.shared.clone();
        let prefix = self.prefix.clone();
        tokio::spawn(async move {
            let keys = [keys[0].as_str(), keys[1].as_str()];
            if let Err(e) = shared.eval(script, &keys, &args).await {
                tracing::warn!(error = %format!("{e:#}"), pacer = %prefix, "could not record a send in redis");
            }
        });
    }
}

/// Hands the local turn back (answered at once) if the send never leaves.
struct Release<'a> {
    local: &'a LocalPacer,
    permit: Permit,
    done: bool,
}

impl Drop for Release<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.local.answered(&self.permit);
        }
    }
}

impl Pacer for SharedPacer {
    fn acquire<'a>(
        &'a self,
        recipient: &'a str,
        kind: RecipientKind,
        horizon: Duration,
    ) -> BoxFuture<'a, Result<Permit, Deferred>> {
        Box::pin(async move {
            let start = Instant::now();
            let permit = self.local.acquire(recipient, kind, horizon).await?;
            let mut release = Release {
                local: &self.local,
                permit,
                done: false,
            };
            let rkey = self.recipient_key(recipient);
            // The whole wait stays within the horizon (the delivery's lease counts on it): past
            // it the send is handed back to come again later.
            let deadline = start + horizon;
            let mut turn = None;
            loop {
                if turn.is_none() {
                    match tokio::time::timeout_at(deadline.into(), self.turn.lock()).await {
                        Ok(guard) => turn = Some(guard),
                        Err(_) => return Err(Deferred { wait: POLL * 10 }),
                    }
                }
                // Taken before the script decides, so `leave_by` bounds the request's start
                // from the departure whatever delays the script's answer.
                let asked = Instant::now();
                let gate = self.gate(&rkey, kind, true).await;
                if gate.is_ok() {
                    *self.down_since.lock().unwrap_or_else(|e| e.into_inner()) = None;
                }
                match gate {
                    Ok(Gate::Go(seq)) => {
                        self.departures
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(permit.seq, (seq, rkey));
                        release.done = true;
                        return Ok(Permit {
                            waited: start.elapsed(),
                            seq: permit.seq,
                            leave_by: Some(asked + LEAVE_WITHIN),
                        });
                    }
                    Ok(Gate::Wait(wait, _)) if Instant::now() + wait > deadline => {
                        return Err(Deferred { wait });
                    }
                    Ok(Gate::Wait(wait, recipient)) => {
                        if recipient {
                            // Others of this replica go meanwhile.
                            turn = None;
                        }
                        tokio::time::sleep(wait).await;
                    }
                    Err(e) if self.down_for() < REDIS_GRACE => {
                        // Redis restarting: a short pause costs less than sending outside the
                        // shared windows.
                        tracing::debug!(error = %format!("{e:#}"), "pacing waits for redis");
                        if Instant::now() + REDIS_RETRY > deadline {
                            return Err(Deferred { wait: REDIS_RETRY });
                        }
                        tokio::time::sleep(REDIS_RETRY).await;
                    }
                    Err(e) => {
                        self.degraded(&e);
                        release.done = true;
                        return Ok(permit);
                    }
                }
            }
        })
    }

    fn plan(&self, recipient: &str, kind: RecipientKind, horizon: Duration) -> Option<Duration> {
        // The local timeline's view: a plan only says when to queue a send, and the gate
        // decides when it really leaves.
        self.local.plan(recipient, kind, horizon)
    }

    fn rate_limited(
        &self,
        recipient: &str,
        kind: RecipientKind,
        retry_after: Duration,
        scope: LimitScope,
    ) {
        let before = self.local.state().frozen_until;
        self.local.rate_limited(recipient, kind, retry_after, scope);
        let after = self.local.state().frozen_until;
        // The local pacer decided what the refusal means (a freeze, or a recipient's hold);
        // every replica is held the same way.
        let freeze = after.is_some() && after != before;
        self.spawn_script(
            &SCRIPTS.limited,
            [self.key_of("freeze"), self.recipient_key(recipient)],
            vec![i64::from(freeze), Self::us(retry_after)],
        );
    }

    fn answered(&self, permit: &Permit) {
        self.local.answered(permit);
        let entry = self
            .departures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&permit.seq);
        if let Some((seq, rkey)) = entry {
            // The answer's age is taken when the script leaves: the wait for this task and for
            // a connection does not widen the account's window.
            let answered_at = Instant::now();
            let shared = self.shared.clone();
            let keys = [self.key_of("sent"), rkey];
            let prefix = self.prefix.clone();
            tokio::spawn(async move {
                let keys = [keys[0].as_str(), keys[1].as_str()];
                let args = [
                    i64::try_from(seq).unwrap_or(0),
                    Self::us(answered_at.elapsed()),
                ];
                if let Err(e) = shared.eval(&SCRIPTS.answered, &keys, &args).await {
                    tracing::warn!(error = %format!("{e:#}"), pacer = %prefix, "could not record a send in redis");
                }
            });
        }
    }

    fn state(&self) -> PacingState {
        self.local.state()
    }

    fn forget_idle(&self) {
        // Every permit is answered (the account actor answers on drop), so `departures` holds
        // only sends still out.
        self.local.forget_idle();
    }
}
