//! Throttling of local password logins: after `max_failures` failed attempts for one user name
//! or from one client address, further attempts are refused for `lockout`. Counted in this
//! process, and with Redis (`redis_url`) in Redis too, so the lock holds on every replica: a key
//! is locked when either count says so (Redis down, the process's count still locks).
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
    /// The replicas' store, and the key its entries are named with (HMAC: no user name or
    /// address in Redis).
    shared: Option<(crate::shared::Shared, [u8; 32])>,
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
            shared: None,
        }
    }

    /// Also counts in Redis, under keys made with `key`.
    pub fn shared(mut self, shared: Option<crate::shared::Shared>, key: [u8; 32]) -> Self {
        self.shared = shared.map(|s| (s, key));
        self
    }

    fn shared_key(key: &[u8; 32], name: &str) -> String {
        format!(
            "pregonero:lock:{}",
            hex::encode(&crate::crypto::hmac_sha256(key, name.as_bytes())[..16])
        )
    }

    /// Seconds until one of `keys` unlocks, if any is locked here or, with Redis, anywhere.
    pub async fn locked(&self, keys: &[String]) -> Option<u64> {
        let mut secs = self.locked_here(keys);
        if let Some((shared, key)) = &self.shared {
            for k in keys {
                match shared.count(&Self::shared_key(key, k)).await {
                    Ok((n, ttl)) if n >= self.max_failures => {
                        secs = secs.max(Some(ttl.max(1)));
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "Redis does not answer: the login lockout counts in this process only");
                        break;
                    }
                }
            }
        }
        secs
    }

    fn locked_here(&self, keys: &[String]) -> Option<u64> {
        let now = Instant::now();
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        keys.iter()
            .filter_map(|k| entries.get(k))
            .filter(|e| e.failures >= self.max_failures)
            .filter_map(|e| (e.since + self.lockout).checked_duration_since(now))
            .map(|left| left.as_secs().max(1))
            .max()
    }

    /// Counts a failure against each key, here and (with Redis) for every replica.
    pub async fn fail(&self, keys: &[String]) {
        self.fail_here(keys);
        if let Some((shared, key)) = &self.shared {
            for k in keys {
                let name = Self::shared_key(key, k);
                if let Err(e) = shared
                    .count_failure(&name, self.lockout.as_secs(), self.max_failures)
                    .await
                {
                    tracing::warn!(error = %e, "Redis does not answer: the login lockout counts in this process only");
                    break;
                }
            }
        }
    }

    fn fail_here(&self, keys: &[String]) {
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
    pub async fn succeed(&self, key: &str) {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
        if let Some((shared, k)) = &self.shared
            && let Err(e) = shared.forget(&Self::shared_key(k, key)).await
        {
            tracing::warn!(error = %e, "Redis does not answer: a login's lockout count stays there until it expires");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn locks_after_max_failures_and_only_that_key() {
        let l = Lockout::new(3, Duration::from_secs(60));
        let a = vec!["user:a".to_owned()];
        let b = vec!["user:b".to_owned()];
        for _ in 0..2 {
            l.fail(&a).await;
        }
        assert_eq!(l.locked(&a).await, None);
        l.fail(&a).await;
        assert!(l.locked(&a).await.is_some_and(|s| s > 0 && s <= 60));
        assert_eq!(l.locked(&b).await, None);
        l.succeed("user:a").await;
        assert_eq!(l.locked(&a).await, None);
    }
}
