//! Circuit breaker around event storage (the seed's: CLOSED → OPEN → HALF_OPEN).
//!
//! `breaker_failures` failed commits in a row open it; while open, `POST /events` is refused at
//! once with `503 storage-unavailable` and a `Retry-After` instead of queueing work the database
//! cannot take. After `breaker_open_secs` it half-opens: requests go through again and their
//! batches are the probes; `breaker_successes` good commits close it, one failure opens it again.
//! Time is read from the server [`Clock`], so tests move it instead of waiting.
use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};

use crate::clock::Clock;

/// The breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    /// Normal: every request is tried.
    Closed,
    /// Refusing at once until the open period ends.
    Open,
    /// Letting requests through as probes.
    HalfOpen,
}

impl CircuitState {
    /// The name used in `/health` and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half-open",
        }
    }

    /// The `pregonero_events_circuit_state` gauge value.
    pub fn gauge(self) -> f64 {
        match self {
            Self::Closed => 0.0,
            Self::HalfOpen => 1.0,
            Self::Open => 2.0,
        }
    }
}

#[derive(Debug)]
struct Inner {
    state: CircuitState,
    failures: u32,
    successes: u32,
    open_until: DateTime<Utc>,
}

/// A circuit breaker shared by the writer (which records outcomes) and the routes (which ask).
#[derive(Debug)]
pub struct Breaker {
    clock: Clock,
    open_after: u32,
    close_after: u32,
    open_for: Duration,
    inner: Mutex<Inner>,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(clock: Clock, open_after: u32, close_after: u32, open_secs: u64) -> Self {
        Self {
            clock,
            open_after: open_after.max(1),
            close_after: close_after.max(1),
            open_for: Duration::seconds(i64::try_from(open_secs).unwrap_or(i64::MAX / 1_000)),
            inner: Mutex::new(Inner {
                state: CircuitState::Closed,
                failures: 0,
                successes: 0,
                open_until: DateTime::<Utc>::MIN_UTC,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `Ok` when a request may try the database now; while open, the seconds until it half-opens.
    pub fn admit(&self) -> Result<(), u64> {
        let mut inner = self.lock();
        if inner.state == CircuitState::Open {
            let now = self.clock.now();
            if now < inner.open_until {
                let left = (inner.open_until - now).num_milliseconds();
                return Err(u64::try_from((left + 999) / 1_000).unwrap_or(1).max(1));
            }
            inner.state = CircuitState::HalfOpen;
            inner.successes = 0;
            tracing::info!("event storage circuit half-open: probing the database");
        }
        Ok(())
    }

    /// A commit succeeded.
    pub fn success(&self) {
        let mut inner = self.lock();
        match inner.state {
            CircuitState::Closed => inner.failures = 0,
            CircuitState::HalfOpen => {
                inner.successes += 1;
                if inner.successes >= self.close_after {
                    inner.state = CircuitState::Closed;
                    inner.failures = 0;
                    tracing::info!("event storage circuit closed: the database is back");
                }
            }
            // A batch that started before the breaker opened: the open period still runs.
            CircuitState::Open => {}
        }
    }

    /// A commit failed.
    pub fn failure(&self) {
        let mut inner = self.lock();
        let open = match inner.state {
            CircuitState::Closed => {
                inner.failures += 1;
                inner.failures >= self.open_after
            }
            CircuitState::HalfOpen => true,
            CircuitState::Open => false,
        };
        if open {
            inner.state = CircuitState::Open;
            inner.open_until = self.clock.now() + self.open_for;
            tracing::warn!(
                open_secs = self.open_for.num_seconds(),
                "event storage circuit open: refusing events until the database answers again"
            );
        }
    }

    /// The current state (an open breaker whose period ended reads as half-open).
    pub fn state(&self) -> CircuitState {
        let inner = self.lock();
        if inner.state == CircuitState::Open && self.clock.now() >= inner.open_until {
            return CircuitState::HalfOpen;
        }
        inner.state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_consecutive_failures_and_closes_after_probes() {
        let clock = Clock::system();
        let b = Breaker::new(clock.clone(), 3, 2, 30);
        b.failure();
        b.failure();
        b.success(); // resets the run
        b.failure();
        b.failure();
        assert_eq!(b.state(), CircuitState::Closed);
        b.failure();
        assert_eq!(b.state(), CircuitState::Open);
        assert_eq!(b.admit(), Err(30));
        clock.advance(Duration::seconds(31));
        assert_eq!(b.admit(), Ok(()));
        assert_eq!(b.state(), CircuitState::HalfOpen);
        b.success();
        assert_eq!(b.state(), CircuitState::HalfOpen);
        b.success();
        assert_eq!(b.state(), CircuitState::Closed);
    }

    #[test]
    fn a_failed_probe_opens_it_again() {
        let clock = Clock::system();
        let b = Breaker::new(clock.clone(), 1, 2, 10);
        b.failure();
        clock.advance(Duration::seconds(11));
        assert_eq!(b.admit(), Ok(()));
        b.failure();
        assert_eq!(b.state(), CircuitState::Open);
        assert!(b.admit().is_err());
    }
}
