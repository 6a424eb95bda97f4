//! Request rate limits per credential and per client address, with the IETF `RateLimit`
//! fields, and CORS (off by default, allowed origins only).
use std::time::Duration;

use pregonero::config::LimitSettings;
use reqwest::{Method, Response};
use serde_json::Value;

use crate::helpers::{Backend, TestApp, spawn_app, spawn_app_with};

async fn get(app: &TestApp, path: &str, key: Option<&str>) -> Response {
    let mut req = app.client.get(format!("{}{path}", app.address));
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    req.send().await.expect("request")
}

fn header(res: &Response, name: &str) -> Option<String> {
    res.headers()
        .get(name)
        .map(|_| crate::helpers::header(res, name))
}

async fn a_noisy_key_is_refused_and_another_key_is_not(backend: Backend) {
    // Arrange: 1 request a second with bursts of 5, per key; 3 at once per address.
    let app = spawn_app_with(backend, |s| {
        s.rate_limit.per_key = LimitSettings {
            per_second: 1,
            burst: 5,
        };
        s.rate_limit.per_ip = LimitSettings {
            per_second: 1,
            burst: 3,
        };
    })
    .await;
    let admin = pregonero::auth::repo::user_named(&app.state.db, "admin")
        .await
        .expect("query")
        .expect("admin");
    let other = pregonero::auth::repo::create_api_key(&app.state.db, &admin.id, "quiet")
        .await
        .expect("key");

    // Act + Assert: five pass, counting down; the sixth is refused with the fields.
    for left in (0..5).rev() {
        let res = get(&app, "/api/v1/channels", Some(&app.api_key)).await;
        assert_eq!(res.status().as_u16(), 200);
        assert_eq!(
            header(&res, "ratelimit-policy").as_deref(),
            Some("\"key\";q=5;w=5")
        );
        let fields = header(&res, "ratelimit").expect("RateLimit");
        assert!(
            fields.starts_with(&format!("\"key\";r={left};t=")),
            "{fields}"
        );
    }
    let refused = get(&app, "/api/v1/channels", Some(&app.api_key)).await;
    assert_eq!(refused.status().as_u16(), 429);
    let retry: u64 = header(&refused, "retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    assert!(
        header(&refused, "ratelimit")
            .expect("RateLimit")
            .starts_with("\"key\";r=0;t=")
    );
    let body: Value = refused.json().await.expect("json");
    assert_eq!(body["error"], "rate-limited");

    // Another key has its own bucket; health and metrics are never limited.
    let res = get(&app, "/api/v1/channels", Some(&other)).await;
    assert_eq!(res.status().as_u16(), 200);
    assert!(
        header(&res, "ratelimit")
            .expect("RateLimit")
            .starts_with("\"key\";r=4;")
    );
    for _ in 0..10 {
        let res = get(&app, "/health", None).await;
        assert_eq!(res.status().as_u16(), 200);
        assert!(header(&res, "ratelimit").is_none());
    }

    // A refused credential's 401 (the auth middleware's) carries the fields too.
    let res = get(&app, "/api/v1/channels", Some("pgk_not-a-key")).await;
    assert_eq!(res.status().as_u16(), 401);
    assert!(
        header(&res, "ratelimit")
            .expect("RateLimit on a 401")
            .starts_with("\"key\";r="),
        "{:?}",
        header(&res, "ratelimit")
    );
    let body: Value = res.json().await.expect("json");
    assert!(body["error"].is_string(), "{body}");

    // Requests without credentials count per address.
    for _ in 0..3 {
        let res = get(&app, "/auth/me", None).await;
        assert_eq!(res.status().as_u16(), 401);
        assert!(
            header(&res, "ratelimit")
                .expect("RateLimit")
                .starts_with("\"ip\";")
        );
    }
    assert_eq!(get(&app, "/auth/me", None).await.status().as_u16(), 429);

    // The refused key gets through again once its Retry-After has passed.
    tokio::time::sleep(Duration::from_secs(retry)).await;
    let res = get(&app, "/api/v1/channels", Some(&app.api_key)).await;
    assert_eq!(res.status().as_u16(), 200);
}

fn preflight(app: &TestApp, origin: &str) -> reqwest::RequestBuilder {
    app.client
        .request(Method::OPTIONS, format!("{}/api/v1/channels", app.address))
        .header("Origin", origin)
        .header("Access-Control-Request-Method", "GET")
        .header("Access-Control-Request-Headers", "authorization")
}

async fn get_from(app: &TestApp, origin: &str) -> Response {
    app.client
        .get(format!("{}/api/v1/channels", app.address))
        .bearer_auth(&app.api_key)
        .header("Origin", origin)
        .send()
        .await
        .expect("request")
}

async fn cors_is_off_by_default(backend: Backend) {
    // Arrange
    let app = spawn_app(backend).await;

    // Act
    let pre = preflight(&app, "https://app.example.com")
        .send()
        .await
        .expect("preflight");
    let res = get_from(&app, "https://app.example.com").await;

    // Assert: no CORS fields, so browsers keep other sites' scripts out.
    assert!(header(&pre, "access-control-allow-origin").is_none());
    assert!(header(&res, "access-control-allow-origin").is_none());
}

async fn cors_allows_only_the_configured_origins(backend: Backend) {
    // Arrange
    let app = spawn_app_with(backend, |s| {
        s.cors.allowed_origins = vec!["https://app.example.com".into()];
    })
    .await;

    // Act
    let pre = preflight(&app, "https://app.example.com")
        .send()
        .await
        .expect("preflight");
    let evil = preflight(&app, "https://evil.example.net")
        .send()
        .await
        .expect("preflight");
    let res = get_from(&app, "https://app.example.com").await;

    // Assert
    assert!(pre.status().is_success(), "{}", pre.status());
    assert_eq!(
        header(&pre, "access-control-allow-origin").as_deref(),
        Some("https://app.example.com")
    );
    let allowed = header(&pre, "access-control-allow-headers")
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(allowed.contains("authorization"), "{allowed}");
    assert!(header(&evil, "access-control-allow-origin").is_none());
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(
        header(&res, "access-control-allow-origin").as_deref(),
        Some("https://app.example.com")
    );
    let exposed = header(&res, "access-control-expose-headers")
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(exposed.contains("ratelimit"), "{exposed}");
}

crate::on_both_databases!(
    a_noisy_key_is_refused_and_another_key_is_not,
    cors_is_off_by_default,
    cors_allows_only_the_configured_origins,
);

/// Two replicas on one Redis share a credential's bucket: what one replica took, the other does
/// not give again. Another credential's bucket is its own.
#[actix_web::test]
async fn replicas_share_a_limit_through_redis() {
    let Some(redis) = crate::helpers::redis_url() else {
        return;
    };
    // Both replicas hold the same secret key, as replicas must (the bucket keys derive from it).
    let key = pregonero::crypto::Cipher::generate_key();
    let tweak = |s: &mut pregonero::config::Settings| {
        s.redis_url = Some(redis.clone().into());
        s.secret_key = Some(key.clone().into());
        s.rate_limit.per_key = LimitSettings {
            per_second: 1,
            burst: 3,
        };
    };
    let a = spawn_app_with(Backend::Sqlite, tweak).await;
    let b = spawn_app_with(Backend::Sqlite, tweak).await;
    let noisy = format!("prg_noisy_{}", uuid::Uuid::new_v4().simple());

    // Act: the burst on replica A (the limit counts before the credential is checked).
    for _ in 0..3 {
        let res = get(&a, "/api/v1/channels", Some(&noisy)).await;
        assert_eq!(res.status().as_u16(), 401);
    }

    // Assert: replica B refuses the same credential; another one passes there.
    let refused = get(&b, "/api/v1/channels", Some(&noisy)).await;
    assert_eq!(refused.status().as_u16(), 429);
    assert!(header(&refused, "retry-after").is_some());
    let other = get(&b, "/api/v1/channels", Some(&b.api_key)).await;
    assert_eq!(other.status().as_u16(), 200);
}

/// With Redis unreachable the server still serves and still limits, in process, without each
/// request waiting for Redis.
#[actix_web::test]
async fn without_redis_limits_fall_back_to_the_process() {
    let app = spawn_app_with(Backend::Sqlite, |s| {
        // Nothing listens on port 1.
        s.redis_url = Some("redis://127.0.0.1:1".to_owned().into());
        s.rate_limit.per_key = LimitSettings {
            per_second: 1,
            burst: 3,
        };
    })
    .await;
    let started = std::time::Instant::now();
    for _ in 0..3 {
        let res = get(&app, "/api/v1/channels", Some(&app.api_key)).await;
        assert_eq!(res.status().as_u16(), 200);
    }
    let refused = get(&app, "/api/v1/channels", Some(&app.api_key)).await;
    assert_eq!(refused.status().as_u16(), 429);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "requests waited for Redis: {:?}",
        started.elapsed()
    );
}

/// A Redis of this test's own, on a free port: stopped and started again as the test says.
pub(crate) struct OwnRedis {
    pub(crate) port: u16,
    child: Option<std::process::Child>,
}

impl OwnRedis {
    /// A redis-server of this test's own, on a port nothing else listens on.
    pub(crate) fn on_a_free_port() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        Self::start(port)
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub(crate) fn start(port: u16) -> Self {
        let child = std::process::Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "redis did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            port,
            child: Some(child),
        }
    }

    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Redis restarted under running replicas: while it is gone they keep serving (limits in
/// process); once it is back they share buckets again, with no restart of theirs.
#[actix_web::test]
async fn replicas_survive_a_redis_restart() {
    if crate::helpers::redis_url().is_none() {
        return; // no redis-server here
    }
    let mut redis = OwnRedis::on_a_free_port();
    let key = pregonero::crypto::Cipher::generate_key();
    let tweak = |s: &mut pregonero::config::Settings| {
        s.redis_url = Some(redis.url().into());
        s.secret_key = Some(key.clone().into());
        s.rate_limit.per_key = LimitSettings {
            per_second: 1,
            burst: 3,
        };
    };
    let a = spawn_app_with(Backend::Sqlite, tweak).await;
    let b = spawn_app_with(Backend::Sqlite, tweak).await;

    let health = |app: &TestApp| {
        let req = app.client.get(format!("{}/health", app.address));
        async move {
            req.send()
                .await
                .expect("health")
                .json::<Value>()
                .await
                .expect("json")
        }
    };
    assert_eq!(health(&a).await["redis"], "ok");

    // Redis gone: both still answer, and each still limits on its own.
    redis.stop();
    let gone = health(&a).await;
    assert!(
        gone["redis"]
            .as_str()
            .is_some_and(|r| r.starts_with("unavailable")),
        "{gone}"
    );
    for _ in 0..3 {
        assert_eq!(
            get(&a, "/api/v1/channels", Some(&a.api_key))
                .await
                .status()
                .as_u16(),
            200
        );
    }
    assert_eq!(
        get(&a, "/api/v1/channels", Some(&a.api_key))
            .await
            .status()
            .as_u16(),
        429
    );

    // Redis back (empty, as after a restart without persistence): within the retry pause the
    // replicas use it again and share buckets.
    let _redis = OwnRedis::start(redis.port);
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let noisy = format!("prg_noisy_{}", uuid::Uuid::new_v4().simple());
    for _ in 0..3 {
        assert_eq!(
            get(&a, "/api/v1/channels", Some(&noisy))
                .await
                .status()
                .as_u16(),
            401
        );
    }
    assert_eq!(
        get(&b, "/api/v1/channels", Some(&noisy))
            .await
            .status()
            .as_u16(),
        429,
        "the replicas share Redis again"
    );
}

/// How many `PING`s this Redis has answered.
async fn pings(shared: &pregonero::shared::Shared) -> i64 {
    let info: String = shared
        .info("commandstats")
        .await
        .expect("INFO commandstats");
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_ping:calls="))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The shared store's pool does not `PING` a connection before each call (a round trip per
/// call), and still survives a Redis restart: the connections the restart killed are all
/// retired once one call has found its socket gone, so a caller sees one failure, not one per
/// pooled connection.
#[actix_web::test]
async fn the_redis_pool_neither_pings_each_call_nor_keeps_dead_connections() {
    if crate::helpers::redis_url().is_none() {
        return; // no redis-server here
    }
    let mut redis = OwnRedis::on_a_free_port();
    let shared = pregonero::shared::Shared::new(&redis.url()).expect("url");
    let key = format!("pregonero:test:{}", uuid::Uuid::new_v4().simple());
    let every = Duration::from_millis(1);
    // Eight connections in the pool.
    let calls = (0..8).map(|_| shared.gcra(&key, every, 1_000));
    for d in futures::future::join_all(calls).await {
        d.expect("redis");
    }
    let before = pings(&shared).await;
    for _ in 0..100 {
        shared.gcra(&key, every, 1_000).await.expect("redis");
    }
    let after = pings(&shared).await;
    assert_eq!(after - before, 0, "PINGs for 100 calls");

    redis.stop();
    redis = OwnRedis::start(redis.port);
    let mut failed = 0;
    for _ in 0..20 {
        if shared.gcra(&key, every, 1_000).await.is_err() {
            failed += 1;
        }
    }
    assert!(failed <= 1, "{failed} of 20 calls failed after the restart");
    drop(redis);
}
