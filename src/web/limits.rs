//! Request rate limits: each request counts against one bucket, its credential's or its client
//! address's, so one noisy client is refused (`429 rate-limited`, `Retry-After`) before it can
//! slow the others. Answers carry the IETF `RateLimit-Policy` and `RateLimit` fields
//! (draft-ietf-httpapi-ratelimit-headers-09): `"key";q=200;w=2` and `"key";r=57;t=2`.
//!
//! The buckets live in this process (GCRA, `governor`), so on several replicas a client's limit
//! is per replica.
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
    /// The limits `settings` describe.
    pub fn new(settings: &RateLimitSettings) -> Self {
        Self {
            per_key: Policy::new("key", settings.per_key),
            per_ip: Policy::new("ip", settings.per_ip),
            ingest: Policy::new("ingest", settings.ingest),
            hasher: std::collections::hash_map::RandomState::new(),
            started: Instant::now(),
            swept_at: AtomicU64::new(0),
        }
    }

    fn check(&self, req: &ServiceRequest, state: &AppState) -> Option<Decision<'_>> {
        let class = class(req.method(), req.path());
        if class == Class::Exempt {
            return None;
        }
        // The credential's hash, without copying it: the header, else the session cookie.
        let credential = match req.headers().get("authorization") {
            Some(value) => Some(self.hasher.hash_one((0u8, value.as_bytes()))),
            None => req
                .cookie(crate::auth::session::COOKIE)
                .map(|c| self.hasher.hash_one((0u8, c.value().as_bytes()))),
        };
        let policy = match (class, credential) {
            (Class::Ingest, _) => &self.ingest,
            (_, Some(_)) => &self.per_key,
            (_, None) => &self.per_ip,
        };
        let key = match credential {
            Some(key) => key,
            // The trading webhook's token is its path: one bucket per user, whatever the
            // address (TradingView sends every user's alerts from the same four).
            None if req.path().starts_with("/webhook/u/") => {
                self.hasher.hash_one((1u8, req.path()))
            }
            None => {
                let ip = crate::client_ip::client_ip(req.request(), &state.trusted_proxies);
                self.hasher.hash_one((2u8, ip))
            }
        };
        self.sweep();
        Some(match policy.buckets.check_key(&key) {
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
        })
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
    let Some(decision) = limits.check(&req, &state) else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body);
    };
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
