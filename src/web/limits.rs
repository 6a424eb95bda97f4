//! Request rate limits: each request counts against one bucket, its credential's or its client
//! address's, so one noisy client is refused (`429 rate-limited`, `Retry-After`) before it can
//! slow the others. Answers carry the IETF `RateLimit-Policy` and `RateLimit` fields
//! (draft-ietf-httpapi-ratelimit-headers-09): `"key";q=200;w=2` and `"key";r=57;t=2`.
//!
//! The buckets are GCRA buckets. With `redis_url` set they live in Redis (one atomic script per
//! request, `crate::shared`), so a client's limit holds across every replica; the bucket's key
//! is an HMAC of the credential (or address) under a key derived from the server's secret key,
//! the same on every replica and useless to whoever reads Redis. Without Redis, or while it does
//! not answer (a warning says so), they live in this process (`governor`).
use std::{
    hash::BuildHasher,
    num::NonZeroU32,
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use actix_web::{
    ResponseError,
    body::{BoxBody, MessageBody},
    dev::{ServiceRequest, ServiceResponse},
    http::{
        Method, StatusCode,
        header::{HeaderName, HeaderValue},
    },
    middleware::Next,
    web,
};
use governor::{
    Quota, RateLimiter,
    clock::{Clock, DefaultClock},
    middleware::StateInformationMiddleware,
    state::keyed::DefaultKeyedStateStore,
};

use crate::{
    config::{LimitSettings, RateLimitSettings},
    error::ApiError,
    state::AppState,
};

type Buckets =
    RateLimiter<u64, DefaultKeyedStateStore<u64>, DefaultClock, StateInformationMiddleware>;

/// How often idle buckets are dropped (a bucket back to full is the same as none).
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// One limit and its buckets.
struct Policy {
    /// `key`, `ip` or `ingest` (the policy's name in the headers and metrics).
    name: &'static str,
    buckets: Buckets,
    /// `RateLimit-Policy` value.
    header: HeaderValue,
    burst: u32,
    per_second: u32,
}

impl Policy {
    fn new(name: &'static str, limit: LimitSettings) -> Self {
        let per_second = NonZeroU32::new(limit.per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(limit.burst).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::per_second(per_second).allow_burst(burst);
        // The bucket refills from empty in `burst / rate` seconds: its window.
        let window = burst.get().div_ceil(per_second.get());
        let header = HeaderValue::from_str(&format!("\"{name}\";q={burst};w={window}"))
            .unwrap_or_else(|_| HeaderValue::from_static("\"default\""));
        Self {
            name,
            buckets: RateLimiter::keyed(quota).with_middleware::<StateInformationMiddleware>(),
            header,
            burst: burst.get(),
            per_second: per_second.get(),
        }
    }

    /// Seconds until a bucket with `remaining` requests left is full again.
    fn refill_secs(&self, remaining: u32) -> u32 {
        self.burst
            .saturating_sub(remaining)
            .div_ceil(self.per_second)
    }
}

/// The request limits of this process (`rate_limit` settings).
pub struct RequestLimits {
    per_key: Policy,
    per_ip: Policy,
    ingest: Policy,
    /// Keys the buckets by a keyed hash of the credential: no secret is kept, and nobody can
    /// choose credentials that share a bucket with someone else's.
    hasher: std::collections::hash_map::RandomState,
    started: Instant,
    /// Milliseconds after `started` of the last sweep.
    swept_at: AtomicU64,
    /// The replicas' shared buckets, when Redis is configured.
    shared: Option<crate::shared::Shared>,
    /// Keys the shared buckets (HMAC), derived from the secret key: equal on every replica.
    shared_key: [u8; 32],
    /// Milliseconds after `started` of the last "Redis unavailable" warning.
    warned_at: AtomicU64,
    /// Milliseconds after `started` until which Redis is not asked (it failed just before):
    /// while it is down, requests do not each wait for it to time out.
    shared_down_until: AtomicU64,
}

/// How long limits stay in process after Redis failed to answer, before asking it again.
const SHARED_RETRY: Duration = Duration::from_secs(2);

/// Who a request counts for: a credential, a trading webhook's path, or a client address.
struct Subject<'s, 'r> {
    policy: &'s Policy,
    tag: u8,
    bytes: std::borrow::Cow<'r, [u8]>,
}

/// Which limit a request falls under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// Not limited.
    Exempt,
    /// Everything else.
    General,
    /// What clients send at volume: `POST /events`, `/events/batch`, `/api/v1/messages`,
    /// `/api/alert`, and `/webhook/u/{token}`.
    Ingest,
}

fn class(method: &Method, path: &str) -> Class {
    match path {
        "/live" | "/ready" | "/health" | "/metrics" | "/" | "/app.js" | "/app.css" => Class::Exempt,
        "/events" | "/events/batch" | "/api/v1/messages" | "/api/alert"
            if method == Method::POST =>
        {
            Class::Ingest
        }
        _ if path.starts_with("/webhook/u/") => Class::Ingest,
        // The providers' own calls (checked by their signatures), and signed media links
        // (fetched by the providers while a campaign sends).
        _ if path.starts_with("/telegram/webhook/")
            || path.starts_with("/whatsapp/webhook/")
            || path.starts_with("/media/") =>
        {
            Class::Exempt
        }
        _ => Class::General,
    }
}

/// What a check decided.
struct Decision<'a> {
    policy: &'a Policy,
    /// Requests left in the bucket after this one.
    remaining: u32,
    /// When refused: how long until one request fits.
    wait: Option<Duration>,
}

impl RequestLimits {
    /// The limits `settings` describe; in Redis when `shared` is given (its bucket keys made
    /// with `shared_key`).
    pub fn new(
        settings: &RateLimitSettings,
        shared: Option<crate::shared::Shared>,
        shared_key: [u8; 32],
    ) -> Self {
        Self {
            per_key: Policy::new("key", settings.per_key),
            per_ip: Policy::new("ip", settings.per_ip),
            ingest: Policy::new("ingest", settings.ingest),
            hasher: std::collections::hash_map::RandomState::new(),
            started: Instant::now(),
            swept_at: AtomicU64::new(0),
            shared,
            shared_key,
            warned_at: AtomicU64::new(0),
            shared_down_until: AtomicU64::new(0),
        }
    }

    /// Which bucket `req` counts against, if any.
    fn subject<'s, 'r>(
        &'s self,
        req: &'r ServiceRequest,
        state: &AppState,
    ) -> Option<Subject<'s, 'r>> {
        use std::borrow::Cow;
        let class = class(req.method(), req.path());
        if class == Class::Exempt {
            return None;
        }
        // The credential, without copying it: the header, else the session cookie.
        let credential: Option<Cow<'r, [u8]>> = match req.headers().get("authorization") {
            Some(value) => Some(Cow::Borrowed(value.as_bytes())),
            None => req
                .cookie(crate::auth::session::COOKIE)
                .map(|c| Cow::Owned(c.value().as_bytes().to_vec())),
        };
        let policy = match (class, &credential) {
            (Class::Ingest, _) => &self.ingest,
            (_, Some(_)) => &self.per_key,
            (_, None) => &self.per_ip,
        };
        let (tag, bytes) = match credential {
            Some(bytes) => (0u8, bytes),
            // The trading webhook's token is its path: one bucket per user, whatever the
            // address (TradingView sends every user's alerts from the same four).
            None if req.path().starts_with("/webhook/u/") => {
                (1u8, Cow::Borrowed(req.path().as_bytes()))
            }
            None => {
                let ip = crate::client_ip::client_ip(req.request(), &state.trusted_proxies);
                // No address (a Unix socket, a test): one bucket for all such requests.
                let text = ip.map(|ip| ip.to_string()).unwrap_or_default();
                (2u8, Cow::Owned(text.into_bytes()))
            }
        };
        Some(Subject { policy, tag, bytes })
    }

    /// Decides in Redis when it is configured and answers, else in this process.
    async fn decide<'s>(&'s self, subject: Subject<'s, '_>) -> Decision<'s> {
        let now_ms = || self.started.elapsed().as_millis() as u64;
        if let Some(shared) = &self.shared
            && now_ms() >= self.shared_down_until.load(Ordering::Relaxed)
        {
            let mac = crate::crypto::hmac_sha256(
                &self.shared_key,
                &[&[subject.tag][..], &subject.bytes].concat(),
            );
            let key = format!(
                "pregonero:rl:{}:{}",
                subject.policy.name,
                hex::encode(&mac[..16])
            );
            let p = subject.policy;
            let interval = Duration::from_secs(1) / p.per_second.max(1);
            match shared.gcra(&key, interval, p.burst).await {
                Ok(d) => {
                    return Decision {
                        policy: p,
                        remaining: d.remaining,
                        wait: (!d.allowed).then_some(d.wait),
                    };
                }
                Err(e) => {
                    self.shared_down_until.store(
                        now_ms() + SHARED_RETRY.as_millis() as u64,
                        Ordering::Relaxed,
                    );
                    self.warn_unshared(&e);
                }
            }
        }
        self.check_local(subject)
    }

    /// Logs, at most every 30 s, that limits fell back to this process.
    fn warn_unshared(&self, e: &anyhow::Error) {
        let now = self.started.elapsed().as_millis() as u64;
        let last = self.warned_at.load(Ordering::Relaxed);
        if (last == 0 || now.saturating_sub(last) >= 30_000)
            && self
                .warned_at
                .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(error = %e, "Redis does not answer: request rate limits are per process until it does");
        }
    }

    fn check_local<'s>(&'s self, subject: Subject<'s, '_>) -> Decision<'s> {
        let policy = subject.policy;
        let key = self.hasher.hash_one((subject.tag, &*subject.bytes));
        self.sweep();
        match policy.buckets.check_key(&key) {
            Ok(snapshot) => Decision {
                policy,
                remaining: snapshot.remaining_burst_capacity(),
                wait: None,
            },
            Err(not_until) => Decision {
                policy,
                remaining: 0,
                wait: Some(not_until.wait_time_from(policy.buckets.clock().now())),
            },
        }
    }

    /// Drops the buckets that are full again, at most every [`SWEEP_EVERY`], so memory follows
    /// the clients seen lately, not every client ever seen.
    fn sweep(&self) {
        let now = self.started.elapsed().as_millis() as u64;
        let last = self.swept_at.load(Ordering::Relaxed);
        if now.saturating_sub(last) < SWEEP_EVERY.as_millis() as u64
            || self
                .swept_at
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        for policy in [&self.per_key, &self.per_ip, &self.ingest] {
            policy.buckets.retain_recent();
            policy.buckets.shrink_to_fit();
        }
    }
}

fn add_headers(
    headers: &mut actix_web::http::header::HeaderMap,
    decision: &Decision<'_>,
    reset: u32,
) {
    headers.insert(
        HeaderName::from_static("ratelimit-policy"),
        decision.policy.header.clone(),
    );
    if let Ok(value) = HeaderValue::from_str(&format!(
        "\"{}\";r={};t={reset}",
        decision.policy.name, decision.remaining
    )) {
        headers.insert(HeaderName::from_static("ratelimit"), value);
    }
}

/// Middleware: refuses a request over its bucket's limit with `429 rate-limited`, before any
/// credential check or body read; every limited answer carries the `RateLimit` fields.
pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let limits = req.app_data::<web::Data<RequestLimits>>().cloned();
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let (Some(limits), Some(state)) = (limits, state) else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body);
    };
    let Some(subject) = limits.subject(&req, &state) else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body);
    };
    let decision = limits.decide(subject).await;
    if let Some(wait) = decision.wait {
        metrics::counter!("pregonero_requests_limited_total", "policy" => decision.policy.name)
            .increment(1);
        let retry_after = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let retry_after = retry_after.max(1);
        let error = ApiError::Limited {
            status: StatusCode::TOO_MANY_REQUESTS,
            code: "rate-limited",
            message: format!(
                "too many requests for this {}; retry in {retry_after} s",
                match decision.policy.name {
                    "ip" => "address",
                    _ => "credential",
                }
            ),
            retry_after,
            resets_at: None,
        };
        let mut response = error.error_response();
        add_headers(
            response.headers_mut(),
            &decision,
            u32::try_from(retry_after).unwrap_or(u32::MAX),
        );
        return Ok(req.into_response(response));
    }
    let reset = decision.policy.refill_secs(decision.remaining);
    // (An inner middleware's refusal must be a rendered answer to get the fields: an error is
    // rendered by actix after this middleware. `auth::authenticate` answers its 401s itself.)
    let mut res = next.call(req).await?.map_into_boxed_body();
    add_headers(res.headers_mut(), &decision, reset);
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_fall_under_their_limits() {
        let post = Method::POST;
        let get = Method::GET;
        assert_eq!(class(&get, "/health"), Class::Exempt);
        assert_eq!(class(&post, "/telegram/webhook/abc"), Class::Exempt);
        assert_eq!(class(&get, "/media/m1/content"), Class::Exempt);
        assert_eq!(class(&post, "/events"), Class::Ingest);
        assert_eq!(class(&get, "/events"), Class::General);
        assert_eq!(class(&post, "/api/v1/messages"), Class::Ingest);
        assert_eq!(class(&get, "/api/v1/messages/m1"), Class::General);
        assert_eq!(class(&post, "/webhook/u/pgs_x"), Class::Ingest);
        assert_eq!(class(&get, "/api/v1/media"), Class::General);
        assert_eq!(class(&post, "/auth/login"), Class::General);
    }

    #[test]
    fn the_policy_header_names_the_bucket_and_its_window() {
        let p = Policy::new(
            "key",
            LimitSettings {
                per_second: 100,
                burst: 250,
            },
        );
        assert_eq!(p.header, "\"key\";q=250;w=3");
        assert_eq!(p.refill_secs(250), 0);
        assert_eq!(p.refill_secs(0), 3);
    }
}
