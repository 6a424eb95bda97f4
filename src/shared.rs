//! The store replicas share when `redis_url` is set (Redis, through a `bb8-redis` pool): one
//! atomic GCRA decision per request, so a limit holds across every replica. The pool connects
//! lazily and reconnects by itself: a server starts, and keeps serving, while Redis is down;
//! callers fall back to their in-process limits and say so in the log.
use std::time::Duration;

use bb8_redis::{RedisConnectionManager, bb8, redis};

/// GCRA (generic cell rate algorithm) on one key, timed by Redis's own clock so every replica
/// sees one timeline. `KEYS[1]`: the bucket; `ARGV[1]`: emission interval (µs, 1 s / rate);
/// `ARGV[2]`: burst. Returns `{allowed (0/1), remaining, wait µs}`. The key holds the
/// theoretical arrival time and expires when the bucket is full again.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = interval * (tonumber(ARGV[2]) - 1)
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
if tat - now > tolerance then
  return {0, 0, tat - now - tolerance}
end
local new_tat = tat + interval
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil((new_tat - now) / 1000) + 1)
return {1, math.floor((now + tolerance + interval - new_tat) / interval), 0}
";

/// A failure counter: `INCR`, and the key expires `ARGV[1]` seconds after its first failure and
/// again from the failure that reaches `ARGV[2]` (a lock lasts that long from the failure that
/// set it). Returns the count.
const COUNT_FAILURE: &str = r"
local n = redis.call('INCR', KEYS[1])
if n == 1 or n == tonumber(ARGV[2]) then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return n
";

/// How long a caller waits for a pooled connection before falling back (Redis down or slow).
const CHECKOUT_TIMEOUT: Duration = Duration::from_millis(250);

/// `call`'s answer, or an error when Redis does not give it within [`CHECKOUT_TIMEOUT`].
async fn timed<T>(call: impl Future<Output = redis::RedisResult<T>>) -> anyhow::Result<T> {
    Ok(tokio::time::timeout(CHECKOUT_TIMEOUT, call)
        .await
        .map_err(|_| anyhow::anyhow!("redis did not answer in {CHECKOUT_TIMEOUT:?}"))??)
}

/// One GCRA decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether this request fits.
    pub allowed: bool,
    /// Requests left in the bucket after this one.
    pub remaining: u32,
    /// When refused: how long until one fits.
    pub wait: Duration,
}

/// The shared store.
#[derive(Clone)]
pub struct Shared {
    pool: bb8::Pool<RedisConnectionManager>,
    gcra: std::sync::Arc<redis::Script>,
    count_failure: std::sync::Arc<redis::Script>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Shared(redis)")
    }
}

impl Shared {
    /// A pool on `url` (nothing is connected yet).
    pub fn new(url: &str) -> anyhow::Result<Self> {
        let manager = RedisConnectionManager::new(url)?;
        let pool = bb8::Pool::builder()
            .max_size(16)
            .connection_timeout(CHECKOUT_TIMEOUT)
            .build_unchecked(manager);
        Ok(Self {
            pool,
            gcra: std::sync::Arc::new(redis::Script::new(GCRA)),
            count_failure: std::sync::Arc::new(redis::Script::new(COUNT_FAILURE)),
        })
    }

    /// Takes one from the bucket `key` (one every `interval` sustained, `burst` at once),
    /// atomically across every replica; an error when Redis cannot answer in time.
    pub async fn gcra(
        &self,
        key: &str,
        interval: Duration,
        burst: u32,
    ) -> anyhow::Result<Decision> {
        let mut conn = self.conn().await?;
        let interval = u64::try_from(interval.as_micros()).unwrap_or(u64::MAX);
        let (allowed, remaining, wait): (i64, i64, i64) = tokio::time::timeout(
            CHECKOUT_TIMEOUT,
            self.gcra
                .key(key)
                .arg(interval.max(1))
                .arg(burst.max(1))
                .invoke_async(&mut *conn),
        )
        .await
        .map_err(|_| anyhow::anyhow!("redis did not answer in {CHECKOUT_TIMEOUT:?}"))??;
        Ok(Decision {
            allowed: allowed == 1,
            remaining: u32::try_from(remaining.max(0)).unwrap_or(u32::MAX),
            wait: Duration::from_micros(u64::try_from(wait.max(0)).unwrap_or(0)),
        })
    }

    /// A connection, or an error when none comes within the timeout.
    async fn conn(&self) -> anyhow::Result<bb8::PooledConnection<'_, RedisConnectionManager>> {
        self.pool
            .get()
            .await
            .map_err(|e| anyhow::anyhow!("redis unavailable: {e}"))
    }

    /// Counts a failure on `key` (see [`COUNT_FAILURE`]); the count.
    pub async fn count_failure(
        &self,
        key: &str,
        window_secs: u64,
        lock_at: u32,
    ) -> anyhow::Result<u32> {
        let mut conn = self.conn().await?;
        let n: i64 = tokio::time::timeout(
            CHECKOUT_TIMEOUT,
            self.count_failure
                .key(key)
                .arg(window_secs.max(1))
                .arg(lock_at)
                .invoke_async(&mut *conn),
        )
        .await??;
        Ok(u32::try_from(n.max(0)).unwrap_or(u32::MAX))
    }

    /// The count on `key` and the seconds until it expires (0, 0 when there is none).
    pub async fn count(&self, key: &str) -> anyhow::Result<(u32, u64)> {
        let mut conn = self.conn().await?;
        let (n, ttl): (Option<i64>, i64) = tokio::time::timeout(
            CHECKOUT_TIMEOUT,
            redis::pipe()
                .cmd("GET")
                .arg(key)
                .cmd("TTL")
                .arg(key)
                .query_async(&mut *conn),
        )
        .await??;
        Ok((
            u32::try_from(n.unwrap_or(0).max(0)).unwrap_or(u32::MAX),
            u64::try_from(ttl.max(0)).unwrap_or(0),
        ))
    }

    /// Forgets `key`.
    pub async fn forget(&self, key: &str) -> anyhow::Result<()> {
        let _: i64 = self.command(redis::cmd("DEL").arg(key)).await?;
        Ok(())
    }

    /// Runs one command, within the timeout.
    async fn command<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> anyhow::Result<T> {
        let mut conn = self.conn().await?;
        timed(cmd.query_async(&mut *conn)).await
    }

    /// Runs `script` (atomic on the server) with `keys` and integer `args`; its integer list.
    pub async fn eval(
        &self,
        script: &redis::Script,
        keys: &[&str],
        args: &[i64],
    ) -> anyhow::Result<Vec<i64>> {
        let mut conn = self.conn().await?;
        let mut call = script.prepare_invoke();
        for k in keys {
            call.key(*k);
        }
        for a in args {
            call.arg(*a);
        }
        timed(call.invoke_async(&mut *conn)).await
    }

    /// Publishes `payload` on the pub/sub `channel`.
    pub async fn publish(&self, channel: &str, payload: &str) -> anyhow::Result<()> {
        let _: i64 = self
            .command(redis::cmd("PUBLISH").arg(channel).arg(payload))
            .await?;
        Ok(())
    }

    /// Sets `key` (to 1) for `ttl_ms` milliseconds.
    pub async fn set_px(&self, key: &str, ttl_ms: u64) -> anyhow::Result<()> {
        self.command(
            redis::cmd("SET")
                .arg(key)
                .arg(1)
                .arg("PX")
                .arg(ttl_ms.max(1)),
        )
        .await
    }

    /// Whether Redis answers now.
    pub async fn ping(&self) -> anyhow::Result<()> {
        let mut conn = self.pool.get().await.map_err(|e| anyhow::anyhow!("{e}"))?;
        let _: String = redis::cmd("PING").query_async(&mut *conn).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Redis the test suite runs against (scripts/services.sh), unless it said to skip.
    fn redis() -> Option<Shared> {
        if let Ok(reason) = std::env::var("TEST_SKIP_REDIS") {
            eprintln!("SKIPPED Redis test: {reason}");
            return None;
        }
        let url =
            std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        Some(Shared::new(&url).expect("redis url"))
    }

    /// One bucket, two replicas (two pools): a burst of 3 per minute is 3 in all, and the
    /// fourth is told how long to wait (a third of a minute, one emission interval).
    #[tokio::test]
    async fn a_bucket_is_one_for_every_replica() {
        let (Some(a), Some(b)) = (redis(), redis()) else {
            return;
        };
        let key = format!("pregonero:test:{}", uuid::Uuid::new_v4().simple());
        let every = Duration::from_secs(20);
        let mut left = Vec::new();
        for shared in [&a, &b, &a] {
            let d = shared.gcra(&key, every, 3).await.expect("redis");
            assert!(d.allowed, "{d:?}");
            left.push(d.remaining);
        }
        assert_eq!(left, [2, 1, 0]);
        let refused = b.gcra(&key, every, 3).await.expect("redis");
        assert!(!refused.allowed);
        assert!(
            refused.wait > Duration::from_secs(19) && refused.wait <= every,
            "{refused:?}"
        );
        a.forget(&key).await.expect("forget");
    }

    /// Failure counts: the lock's expiry starts at the first failure and again at the one that
    /// locks; forgetting clears them.
    #[tokio::test]
    async fn failures_count_and_expire() {
        let Some(s) = redis() else {
            return;
        };
        let key = format!("pregonero:test:{}", uuid::Uuid::new_v4().simple());
        for n in 1..=3 {
            assert_eq!(s.count_failure(&key, 60, 3).await.expect("redis"), n);
        }
        let (n, ttl) = s.count(&key).await.expect("redis");
        assert_eq!(n, 3);
        assert!(ttl > 0 && ttl <= 60, "{ttl}");
        s.forget(&key).await.expect("forget");
        assert_eq!(s.count(&key).await.expect("redis"), (0, 0));
    }
}
