//! The server's notion of "now" for quotas, link and token expiry and the scheduler.
//!
//! It is the system clock plus an offset that is zero in production. Tests move the offset to
//! cross midnight or expire a link without waiting; everything that reads the time for those
//! decisions goes through [`Clock::now`].
use std::sync::{
    Arc,
    atomic::{AtomicI64, Ordering},
};

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, Utc};

/// System time plus a shared, adjustable offset. Cheap to clone; clones share the offset.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    offset_ms: Arc<AtomicI64>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self::default()
    }

    /// The current time.
    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + Duration::milliseconds(self.offset_ms.load(Ordering::Relaxed))
    }

    /// The current UTC day.
    pub fn today(&self) -> NaiveDate {
        self.now().date_naive()
    }

    /// Moves this clock (and its clones) forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.offset_ms
            .fetch_add(by.num_milliseconds(), Ordering::Relaxed);
    }

    /// Makes this clock read `at` now (it keeps running from there).
    pub fn set(&self, at: DateTime<Utc>) {
        let offset = (at - Utc::now()).num_milliseconds();
        self.offset_ms.store(offset, Ordering::Relaxed);
    }
}

/// The next time after `now` at which the UTC wall clock reads `at`.
pub fn next_time_of_day(now: DateTime<Utc>, at: NaiveTime) -> DateTime<Utc> {
    let today = now.date_naive().and_time(at).and_utc();
    if today > now {
        today
    } else {
        today + Duration::days(1)
    }
}

/// The start of the next UTC day after `now`.
pub fn next_midnight(now: DateTime<Utc>) -> DateTime<Utc> {
    next_time_of_day(now, NaiveTime::MIN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_move_now_and_are_shared() {
        let clock = Clock::system();
        let other = clock.clone();
        let before = Utc::now();
        clock.advance(Duration::days(2));
        assert!(other.now() - before >= Duration::days(2));
        let target = "2030-01-01T23:59:00Z"
            .parse::<DateTime<Utc>>()
            .expect("date");
        clock.set(target);
        assert!((other.now() - target).num_seconds().abs() <= 1);
    }

    #[test]
    fn next_time_of_day_is_strictly_after() {
        let t = "2030-01-01T03:00:00Z"
            .parse::<DateTime<Utc>>()
            .expect("date");
        let three = NaiveTime::from_hms_opt(3, 0, 0).expect("time");
        assert_eq!(next_time_of_day(t, three), t + Duration::days(1));
        assert_eq!(
            next_midnight(t),
            "2030-01-02T00:00:00Z"
                .parse::<DateTime<Utc>>()
                .expect("date")
        );
    }
}
