//! Per-account pacing: recipient bucket, then account bucket, and a freeze after a 429.
use std::{
    num::NonZeroU32,
    sync::Mutex,
    time::{Duration, Instant},
};

use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};

/// The rates one account may use.
#[derive(Debug, Clone, Copy)]
pub struct PacingLimits {
    /// Sends per second for the whole account.
    pub account_per_sec: u32,
    /// Burst above the account rate.
    pub account_burst: u32,
    /// Time between two sends to one private chat (Telegram 1 s, WhatsApp 6 s).
    pub recipient_interval: Duration,
    /// Sends per minute to one group chat.
    pub group_per_min: u32,
}

/// GCRA buckets (`governor`) for one account plus its freeze-until instant.
///
/// The recipient bucket is waited on first so a slow recipient does not burn account capacity
/// that another recipient could have used.
pub struct Pacer {
    account: DefaultDirectRateLimiter,
    private: DefaultKeyedRateLimiter<String>,
    groups: DefaultKeyedRateLimiter<String>,
    frozen_until: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for Pacer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pacer")
            .field("frozen_until", &self.frozen_until())
            .finish_non_exhaustive()
    }
}

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN)
}

impl Pacer {
    /// Builds the buckets for `limits`.
    pub fn new(limits: PacingLimits) -> Self {
        Self {
            account: RateLimiter::direct(
                Quota::per_second(nz(limits.account_per_sec)).allow_burst(nz(limits.account_burst)),
            ),
            private: RateLimiter::keyed(
                Quota::with_period(limits.recipient_interval.max(Duration::from_millis(1)))
                    .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
                    .allow_burst(nz(1)),
            ),
            groups: RateLimiter::keyed(
                Quota::per_minute(nz(limits.group_per_min)).allow_burst(nz(1)),
            ),
            frozen_until: Mutex::new(None),
        }
    }

    /// Waits until `recipient` and then the account may send; returns how long it waited.
    pub async fn wait_turn(&self, recipient: &str, is_group: bool) -> Duration {
        let start = Instant::now();
        self.wait_unfrozen().await;
        let key = recipient.to_owned();
        if is_group {
            self.groups.until_key_ready(&key).await;
        } else {
            self.private.until_key_ready(&key).await;
        }
        self.account.until_ready().await;
        // A 429 seen by another send while we waited in the buckets freezes us too.
        self.wait_unfrozen().await;
        start.elapsed()
    }

    async fn wait_unfrozen(&self) {
        while let Some(until) = self.frozen_until() {
            let now = Instant::now();
            if until <= now {
                break;
            }
            tokio::time::sleep(until - now).await;
        }
    }

    /// Stops all sends on this account for `d` (a provider 429).
    pub fn freeze(&self, d: Duration) {
        let until = Instant::now() + d;
        if let Ok(mut guard) = self.frozen_until.lock()
            && guard.is_none_or(|cur| cur < until)
        {
            *guard = Some(until);
        }
    }

    /// When the current freeze ends, if one is in force.
    pub fn frozen_until(&self) -> Option<Instant> {
        self.frozen_until
            .lock()
            .ok()
            .and_then(|g| *g)
            .filter(|until| *until > Instant::now())
    }

    /// Forgets recipients idle long enough to be back at full capacity.
    pub fn forget_idle(&self) {
        self.private.retain_recent();
        self.groups.retain_recent();
        self.private.shrink_to_fit();
        self.groups.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn recipient_bucket_spaces_sends_to_one_chat() {
        let pacer = Pacer::new(PacingLimits {
            account_per_sec: 1000,
            account_burst: 1,
            recipient_interval: Duration::from_millis(100),
            group_per_min: 20,
        });
        pacer.wait_turn("1", false).await;
        let waited = pacer.wait_turn("1", false).await;
        assert!(waited >= Duration::from_millis(80), "{waited:?}");
        let other = pacer.wait_turn("2", false).await;
        assert!(other < Duration::from_millis(50), "{other:?}");
    }

    #[tokio::test]
    async fn freeze_holds_every_send() {
        let pacer = Pacer::new(PacingLimits {
            account_per_sec: 1000,
            account_burst: 10,
            recipient_interval: Duration::from_millis(100),
            group_per_min: 20,
        });
        pacer.freeze(Duration::from_millis(150));
        let waited = pacer.wait_turn("1", false).await;
        assert!(waited >= Duration::from_millis(140), "{waited:?}");
    }
}
