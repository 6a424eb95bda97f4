//! The store replicas share when `redis_url` is set (Redis, through a `bb8-redis` pool): one
//! atomic GCRA decision per request, so a limit holds across every replica. The pool connects
//! lazily and reconnects by itself: a server starts, and keeps serving, while Redis is down;
//! callers fall back to their in-process limits and say so in the log.
//!
//! A checked-out connection is not `PING`ed first (bb8's default): that was a round trip for
//! every call, 2.4 per delivered message. bb8-redis never reports a connection broken, so
//! [`Manager`] does: a call that fails other than with Redis's own error reply marks its
//! connection broken (bb8 drops it), and one that finds the socket gone also retires every
//! connection made before (after a Redis restart they are all dead), so a restart costs each
//! caller at most one failed call instead of one per pooled connection.
use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use bb8_redis::{
    RedisConnectionManager,
    bb8::{self, ManageConnection},
    redis::{self, aio::MultiplexedConnection},
};

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

/// bb8-redis's manager, and what it leaves out: telling bb8 a connection is broken.
#[derive(Debug)]
struct Manager {
    inner: RedisConnectionManager,
    /// Bumped when a call finds its socket gone: connections of an older generation are
    /// retired at their next checkout.
    generation: Arc<AtomicU64>,
}

/// A pooled connection.
struct Conn {
    inner: MultiplexedConnection,
    generation: u64,
    broken: bool,
}

impl ManageConnection for Manager {
    type Connection = Conn;
    type Error = redis::RedisError;

    async fn connect(&self) -> Result<Conn, redis::RedisError> {
        let generation = self.generation.load(Ordering::Acquire);
        Ok(Conn {
            inner: self.inner.connect().await?,
            generation,
            broken: false,
        })
    }

    async fn is_valid(&self, conn: &mut Conn) -> Result<(), redis::RedisError> {
        self.inner.is_valid(&mut conn.inner).await
    }

    fn has_broken(&self, conn: &mut Conn) -> bool {
        conn.broken
    }
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
    pool: bb8::Pool<Manager>,
    generation: Arc<AtomicU64>,
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
        let generation = Arc::new(AtomicU64::new(0));
        let manager = Manager {
            inner: RedisConnectionManager::new(url)?,
            generation: generation.clone(),
        };
        let pool = bb8::Pool::builder()
            .max_size(16)
            .connection_timeout(CHECKOUT_TIMEOUT)
            .test_on_check_out(false)
            .build_unchecked(manager);
        Ok(Self {
            pool,
            generation,
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
        let interval = u64::try_from(interval.as_micros()).unwrap_or(u64::MAX);
        let mut call = self.gcra.key(key);
        call.arg(interval.max(1)).arg(burst.max(1));
        let (allowed, remaining, wait): (i64, i64, i64) = self.invoke(call).await?;
        Ok(Decision {
            allowed: allowed == 1,
            remaining: u32::try_from(remaining.max(0)).unwrap_or(u32::MAX),
            wait: Duration::from_micros(u64::try_from(wait.max(0)).unwrap_or(0)),
        })
    }

    /// A connection, or an error when none comes within the timeout. Connections made before
    /// a call last found its socket gone are retired here (at most the pool's size of them).
    async fn conn(&self) -> anyhow::Result<bb8::PooledConnection<'_, Manager>> {
        loop {
            let mut conn = self
                .pool
                .get()
                .await
                .map_err(|e| anyhow::anyhow!("redis unavailable: {e}"))?;
            if conn.generation >= self.generation.load(Ordering::Acquire) {
                return Ok(conn);
            }
            conn.broken = true;
        }
    }

    /// Counts a failure on `key` (see [`COUNT_FAILURE`]); the count.
    pub async fn count_failure(
        &self,
        key: &str,
        window_secs: u64,
        lock_at: u32,
    ) -> anyhow::Result<u32> {
        let mut call = self.count_failure.key(key);
        call.arg(window_secs.max(1)).arg(lock_at);
        let n: i64 = self.invoke(call).await?;
        Ok(u32::try_from(n.max(0)).unwrap_or(u32::MAX))
    }

    /// The count on `key` and the seconds until it expires (0, 0 when there is none).
    pub async fn count(&self, key: &str) -> anyhow::Result<(u32, u64)> {
        let mut pipe = redis::pipe();
        pipe.cmd("GET").arg(key).cmd("TTL").arg(key);
        let (n, ttl): (Option<i64>, i64) = self
            .run(|mut c| Box::pin(async move { pipe.query_async(&mut c).await }))
            .await?;
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

    /// `call`'s answer on a pooled connection, or an error when Redis does not give it within
    /// [`CHECKOUT_TIMEOUT`]; a failure other than Redis's own error reply breaks the connection
    /// (and one that finds the socket gone retires every connection made before it).
    async fn run<'a, T>(
        &self,
        call: impl FnOnce(
            MultiplexedConnection,
        ) -> futures::future::BoxFuture<'a, redis::RedisResult<T>>,
    ) -> anyhow::Result<T> {
        let mut conn = self.conn().await?;
        // (A multiplexed connection is a handle: cloning it is an `Arc`'s count.)
        match tokio::time::timeout(CHECKOUT_TIMEOUT, call(conn.inner.clone())).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => {
                if !matches!(e.kind(), redis::ErrorKind::Server(_)) {
                    conn.broken = true;
                    if e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error() {
                        self.generation
                            .fetch_max(conn.generation + 1, Ordering::AcqRel);
                    }
                }
                Err(e.into())
            }
            Err(_) => {
                conn.broken = true;
                Err(anyhow::anyhow!(
                    "redis did not answer in {CHECKOUT_TIMEOUT:?}"
                ))
            }
        }
    }

    /// Runs one command, within the timeout.
    async fn command<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> anyhow::Result<T> {
        self.run(|mut c| Box::pin(async move { cmd.query_async(&mut c).await }))
            .await
    }

    /// Runs one script invocation (atomic on the server), within the timeout.
    async fn invoke<T: redis::FromRedisValue + Send>(
        &self,
        call: redis::ScriptInvocation<'_>,
    ) -> anyhow::Result<T> {
        self.run(|mut c| Box::pin(async move { call.invoke_async(&mut c).await }))
            .await
    }

    /// Runs `script` (atomic on the server) with `keys` and integer `args`; its integer list.
    pub async fn eval(
        &self,
        script: &redis::Script,
        keys: &[&str],
        args: &[i64],
    ) -> anyhow::Result<Vec<i64>> {
        let mut call = script.prepare_invoke();
        for k in keys {
            call.key(*k);
        }
        for a in args {
            call.arg(*a);
        }
        self.invoke(call).await
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

    /// `INFO <section>`, as Redis writes it.
    pub async fn info(&self, section: &str) -> anyhow::Result<String> {
        self.command(redis::cmd("INFO").arg(section)).await
    }

    /// Whether Redis answers now.
    pub async fn ping(&self) -> anyhow::Result<()> {
        let _: String = self.command(&redis::cmd("PING")).await?;
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
