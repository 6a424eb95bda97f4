//! Throttling of local password logins: after `max_failures` failed attempts for one user name
//! or from one client address, further attempts are refused for `lockout` (per process).
use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

/// Failed-login counters by key (`user:<name>`, `ip:<address>`).
#[derive(Debug)]
pub struct Lockout {
    max_failures: u32,
    lockout: Duration,
    entries: Mutex<HashMap<String, Entry>>,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    since: Instant,
}

impl Lockout {
    /// `max_failures` failures within `lockout` lock a key for `lockout`.
    pub fn new(max_failures: u32, lockout: Duration) -> Self {
        Self {
            max_failures,
            lockout,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Seconds until one of `keys` unlocks, if any is locked.
    pub fn locked(&self, keys: &[String]) -> Option<u64> {
        let now = Instant::now();
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        keys.iter()
            .filter_map(|k| entries.get(k))
            .filter(|e| e.failures >= self.max_failures)
            .filter_map(|e| (e.since + self.lockout).checked_duration_since(now))
            .map(|left| left.as_secs().max(1))
            .max()
    }

    /// Counts a failure against each key.
    pub fn fail(&self, keys: &[String]) {
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        // Old entries go, so the map stays as small as the recent failures.
        entries.retain(|_, e| now.duration_since(e.since) < self.lockout);
        for k in keys {
            let e = entries.entry(k.clone()).or_insert(Entry {
                failures: 0,
                since: now,
            });
            e.failures += 1;
            if e.failures == self.max_failures {
                // The lock lasts `lockout` from the failure that triggered it.
                e.since = now;
            }
        }
    }

    /// Clears the user's counter after a successful login (the address keeps its count).
    pub fn succeed(&self, key: &str) {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_after_max_failures_and_only_that_key() {
        let l = Lockout::new(3, Duration::from_secs(60));
        let a = vec!["user:a".to_owned()];
        let b = vec!["user:b".to_owned()];
        for _ in 0..2 {
            l.fail(&a);
        }
        assert_eq!(l.locked(&a), None);
        l.fail(&a);
        assert!(l.locked(&a).is_some_and(|s| s > 0 && s <= 60));
        assert_eq!(l.locked(&b), None);
        l.succeed("user:a");
        assert_eq!(l.locked(&a), None);
    }
}
