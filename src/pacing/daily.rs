//! The daily cap: at most `cap` departures of one account in any 24 hours.
//!
//! Counted in one-minute buckets over a rolling day (a cap per calendar day would allow twice
//! the cap around midnight). A send takes its place when it asks for a turn and gives it back if
//! it does not leave, so sends waiting together can never go over the cap.
use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

const BUCKET: Duration = Duration::from_secs(60);
const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// Departures of the last 24 hours, per minute.
#[derive(Debug)]
pub(super) struct DailyCap {
    cap: u32,
    origin: Instant,
    /// (minute since `origin`, departures in it), oldest first.
    buckets: VecDeque<(u64, u32)>,
    total: u32,
}

impl DailyCap {
    pub(super) fn new(cap: u32, origin: Instant) -> Self {
        Self {
            cap,
            origin,
            buckets: VecDeque::new(),
            total: 0,
        }
    }

    fn minute(&self, at: Instant) -> u64 {
        (at.saturating_duration_since(self.origin).as_secs()) / BUCKET.as_secs()
    }

    fn expire(&mut self, now: Instant) {
        let day_minutes = DAY.as_secs() / BUCKET.as_secs();
        let current = self.minute(now);
        while let Some(&(m, n)) = self.buckets.front() {
            if m + day_minutes > current {
                break;
            }
            self.total -= n;
            self.buckets.pop_front();
        }
    }

    /// Whether a send at `now` would fit, or how long until one would.
    pub(super) fn check(&mut self, now: Instant) -> Result<(), Duration> {
        if self.cap == 0 {
            return Ok(());
        }
        self.expire(now);
        if self.total >= self.cap {
            let oldest = self.buckets.front().map_or(0, |&(m, _)| m);
            let frees = self.origin + BUCKET * (oldest as u32 + 1) + DAY;
            return Err(frees.saturating_duration_since(now).max(BUCKET / 60));
        }
        Ok(())
    }

    /// Takes a place for a send at `now`, or says how long until one frees up.
    pub(super) fn take(&mut self, now: Instant) -> Result<(), Duration> {
        if self.cap == 0 {
            return Ok(());
        }
        self.check(now)?;
        let minute = self.minute(now);
        match self.buckets.back_mut() {
            Some((m, n)) if *m == minute => *n += 1,
            _ => self.buckets.push_back((minute, 1)),
        }
        self.total += 1;
        Ok(())
    }

    /// Gives back a place taken for a send that did not leave.
    pub(super) fn give_back(&mut self) {
        if self.cap == 0 {
            return;
        }
        if let Some((_, n)) = self.buckets.back_mut() {
            *n -= 1;
            self.total -= 1;
            if *n == 0 {
                self.buckets.pop_back();
            }
        }
    }

    /// Departures counted in the last 24 hours.
    pub(super) fn used(&mut self, now: Instant) -> u32 {
        self.expire(now);
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_holds_over_any_day_and_frees_as_the_day_rolls() {
        let t0 = Instant::now();
        let mut cap = DailyCap::new(3, t0);
        assert!(cap.take(t0).is_ok());
        assert!(cap.take(t0 + Duration::from_secs(3600)).is_ok());
        assert!(cap.take(t0 + Duration::from_secs(7200)).is_ok());
        let refused = cap
            .take(t0 + Duration::from_secs(7300))
            .expect_err("over the cap");
        // The first departure's minute leaves the window a day after it.
        assert!(
            refused <= DAY && refused > DAY - Duration::from_secs(7300 + 60),
            "{refused:?}"
        );
        assert!(cap.take(t0 + DAY + BUCKET).is_ok(), "a day later");
        assert_eq!(cap.used(t0 + DAY + BUCKET), 3);
    }

    #[test]
    fn a_place_given_back_is_free_again() {
        let t0 = Instant::now();
        let mut cap = DailyCap::new(1, t0);
        assert!(cap.take(t0).is_ok());
        assert!(cap.take(t0).is_err());
        cap.give_back();
        assert!(cap.take(t0).is_ok());
    }

    #[test]
    fn no_cap_never_refuses() {
        let t0 = Instant::now();
        let mut cap = DailyCap::new(0, t0);
        for _ in 0..10_000 {
            assert!(cap.take(t0).is_ok());
        }
    }
}
