//! A human's rhythm on top of any pacer: WhatsApp Web numbers send one message, then wait a gap
//! drawn afresh between two bounds (never a fixed one, CHANNELS.md §3), then the next. The gap is
//! this process's: a session runs on one replica at a time (its lease), and sends leave from it.
use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::future::BoxFuture;
use rand::Rng;

use super::{Deferred, LimitScope, Pacer, PacingState, Permit, RecipientKind};

/// [`Pacer`] that adds a jittered gap between the account's sends.
#[derive(Debug)]
pub struct Jittered {
    inner: Arc<dyn Pacer>,
    gap: (Duration, Duration),
    /// The earliest the next send may leave.
    next: Mutex<Instant>,
}

impl Jittered {
    /// `inner`, with a gap between `gap.0` and `gap.1` after every send.
    pub fn new(inner: Arc<dyn Pacer>, gap: (Duration, Duration)) -> Self {
        let (lo, hi) = (gap.0.min(gap.1), gap.0.max(gap.1));
        Self {
            inner,
            gap: (lo, hi),
            next: Mutex::new(Instant::now()),
        }
    }

    fn draw(&self) -> Duration {
        let (lo, hi) = self.gap;
        if hi <= lo {
            return lo;
        }
        rand::rng().random_range(lo..=hi)
    }

    fn wait(&self) -> Duration {
        let next = *self.next.lock().unwrap_or_else(|e| e.into_inner());
        next.saturating_duration_since(Instant::now())
    }
}

impl Pacer for Jittered {
    fn acquire<'a>(
        &'a self,
        recipient: &'a str,
        kind: RecipientKind,
        horizon: Duration,
    ) -> BoxFuture<'a, Result<Permit, Deferred>> {
        Box::pin(async move {
            // Take the slot under the lock, so two sends never share one gap.
            let wait = {
                let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
                let now = Instant::now();
                let at = (*next).max(now);
                let wait = at - now;
                if wait > horizon {
                    return Err(Deferred { wait });
                }
                *next = at + self.draw();
                wait
            };
            tokio::time::sleep(wait).await;
            let mut permit = self
                .inner
                .acquire(recipient, kind, horizon.saturating_sub(wait))
                .await?;
            permit.waited += wait;
            Ok(permit)
        })
    }

    fn plan(&self, recipient: &str, kind: RecipientKind, horizon: Duration) -> Option<Duration> {
        let wait = self.wait();
        if wait > horizon {
            return Some(wait);
        }
        self.inner.plan(recipient, kind, horizon)
    }

    fn rate_limited(
        &self,
        recipient: &str,
        kind: RecipientKind,
        retry_after: Duration,
        scope: LimitScope,
    ) {
        self.inner.rate_limited(recipient, kind, retry_after, scope);
    }

    fn answered(&self, permit: &Permit) {
        self.inner.answered(permit);
    }

    fn state(&self) -> PacingState {
        self.inner.state()
    }

    fn forget_idle(&self) {
        self.inner.forget_idle();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pacing::{LocalPacer, PacingLimits};

    fn limits() -> PacingLimits {
        PacingLimits {
            account_per_sec: 1000,
            account_burst: 1,
            recipient_interval: Duration::ZERO,
            group_per_min: 60,
            margin: Duration::ZERO,
            recipient_margin: Duration::ZERO,
            daily_cap: 0,
            gap: None,
        }
    }

    #[tokio::test]
    async fn sends_are_spaced_by_a_gap_within_the_bounds_and_never_the_same() {
        let gap = (Duration::from_millis(30), Duration::from_millis(60));
        let pacer = Jittered::new(Arc::new(LocalPacer::new(limits())), gap);
        let start = Instant::now();
        let mut times = Vec::new();
        for i in 0..20 {
            pacer
                .acquire(
                    &format!("+3460000{i:04}"),
                    RecipientKind::Private,
                    Duration::from_secs(2),
                )
                .await
                .expect("within the horizon");
            times.push(start.elapsed());
        }
        let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
        // Each turn is at least the lower bound after the one before it. Timers wake late, never
        // early, and a late wake-up shortens the next measured gap without moving the schedule:
        // so the n-th send leaves at least n lower bounds after the first.
        for (n, t) in times.iter().enumerate() {
            assert!(*t >= gap.0 * n as u32, "send {n} at {t:?}: {times:?}");
        }
        let distinct: std::collections::HashSet<_> = gaps.iter().map(|g| g.as_millis()).collect();
        assert!(distinct.len() > 5, "gaps are drawn afresh: {gaps:?}");
        let total = times.last().copied().unwrap_or_default();
        assert!(total < Duration::from_millis(19 * 60 + 500), "{total:?}");
    }

    #[tokio::test]
    async fn a_turn_beyond_the_horizon_is_deferred_without_taking_a_slot() {
        let gap = (Duration::from_secs(40), Duration::from_secs(40));
        let pacer = Jittered::new(Arc::new(LocalPacer::new(limits())), gap);
        pacer
            .acquire(
                "+34600000001",
                RecipientKind::Private,
                Duration::from_secs(5),
            )
            .await
            .expect("first send leaves at once");
        let deferred = pacer
            .acquire(
                "+34600000002",
                RecipientKind::Private,
                Duration::from_secs(5),
            )
            .await
            .expect_err("the next is 40 s away");
        assert!(deferred.wait > Duration::from_secs(39), "{deferred:?}");
        let planned = pacer
            .plan(
                "+34600000002",
                RecipientKind::Private,
                Duration::from_secs(5),
            )
            .expect("planned for later, not now");
        assert!(planned <= deferred.wait && planned > Duration::from_secs(39));
    }
}
