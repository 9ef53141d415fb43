//! Request rates: a caller may make so many requests per minute on this server — per API token
//! (users and agents alike), and per client address for calls that carry none. Each caller has a
//! token bucket: a burst of a tenth of a minute's worth (at least ten calls, or the whole minute's
//! when that is less), refilled at an even rate. Past it the call is answered RESOURCE_EXHAUSTED
//! before any handler, database read or audit entry runs — after a pause of 100 ms, so a client
//! that floods a server with calls it waits for is slowed to ten calls a second per call in
//! flight, instead of costing the server thousands of refusals a second.

use std::collections::HashMap;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tonic::codegen::http;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tower_layer::Layer;
use tower_service::Service;

use crate::config::RateLimits;

/// Buckets kept at most; past it, full buckets (callers idle for a minute) are forgotten.
const MAX_BUCKETS: usize = 100_000;
/// The pause before a refusal is answered.
const REFUSAL_PAUSE: Duration = Duration::from_millis(100);

/// Who a request counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Caller {
    /// A keyed hash of the `authorization` header: the token itself is not kept.
    Token(u64),
    Address(IpAddr),
    Unknown,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The buckets of every caller of this server; cheap to clone.
#[derive(Clone)]
pub struct RateLimiter {
    inner: Arc<Inner>,
}

struct Inner {
    limits: RateLimits,
    buckets: KeyedBuckets<Caller>,
    hasher: std::collections::hash_map::RandomState,
}

impl RateLimiter {
    pub fn new(limits: RateLimits) -> Self {
        Self {
            inner: Arc::new(Inner {
                limits,
                buckets: KeyedBuckets::default(),
                hasher: Default::default(),
            }),
        }
    }

    fn caller<B>(&self, request: &http::Request<B>) -> Caller {
        if let Some(authorization) = request.headers().get(http::header::AUTHORIZATION) {
            let mut hasher = self.inner.hasher.build_hasher();
            hasher.write(authorization.as_bytes());
            return Caller::Token(hasher.finish());
        }
        let extensions = request.extensions();
        extensions
            .get::<TcpConnectInfo>()
            .and_then(TcpConnectInfo::remote_addr)
            .or_else(|| {
                extensions
                    .get::<TlsConnectInfo<TcpConnectInfo>>()
                    .and_then(|info| info.get_ref().remote_addr())
            })
            .map_or(Caller::Unknown, |address| Caller::Address(address.ip()))
    }

    /// Takes one request from the caller's bucket; `Err` with the caller's limit per minute and
    /// the time until its next request would be allowed, when it is empty.
    fn take(&self, caller: Caller, now: Instant) -> Result<(), (u32, Duration)> {
        let per_minute = match caller {
            Caller::Token(_) => self.inner.limits.requests_per_minute_per_token,
            Caller::Address(_) | Caller::Unknown => {
                self.inner.limits.requests_per_minute_per_address
            }
        };
        self.inner
            .buckets
            .take(caller, per_minute, now)
            .map_err(|wait| (per_minute, wait))
    }
}

/// Token buckets by key, at most [`MAX_BUCKETS`] of them (past it, full buckets are
/// forgotten): a burst of a tenth of a minute's worth (at least ten, or the whole minute's when
/// that is less), refilled at an even rate.
pub struct KeyedBuckets<K> {
    buckets: Mutex<HashMap<K, Bucket>>,
}

impl<K> Default for KeyedBuckets<K> {
    fn default() -> Self {
        Self {
            buckets: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: std::hash::Hash + Eq> KeyedBuckets<K> {
    /// Takes one from `key`'s bucket, which allows `per_minute`; `Err` with the time until
    /// the next would be allowed, when it is empty.
    pub fn take(&self, key: K, per_minute: u32, now: Instant) -> Result<(), Duration> {
        let capacity = f64::from((per_minute / 10).max(per_minute.min(10)));
        let per_second = f64::from(per_minute) / 60.0;
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(&key) {
            buckets.retain(|_, bucket| {
                now.duration_since(bucket.at).as_secs_f64() * per_second + bucket.tokens < capacity
            });
        }
        let bucket = buckets.entry(key).or_insert(Bucket {
            tokens: capacity,
            at: now,
        });
        let refill = now.duration_since(bucket.at).as_secs_f64() * per_second;
        bucket.tokens = (bucket.tokens + refill).min(capacity);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - bucket.tokens) / per_second.max(f64::EPSILON),
            ))
        }
    }
}

/// Refuses requests past their caller's rate (see the module docs).
#[derive(Clone)]
pub struct RateLimitLayer {
    limiter: RateLimiter,
}

impl RateLimitLayer {
    pub fn new(limiter: RateLimiter) -> Self {
        Self { limiter }
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimited<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimited {
            inner,
            limiter: self.limiter.clone(),
        }
    }
}

/// See [`RateLimitLayer`].
#[derive(Clone)]
pub struct RateLimited<S> {
    inner: S,
    limiter: RateLimiter,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, RequestBody, ResponseBody> Service<http::Request<RequestBody>> for RateLimited<S>
where
    S: Service<http::Request<RequestBody>, Response = http::Response<ResponseBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResponseBody: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<RequestBody>) -> Self::Future {
        // Health checks (load balancers, orchestrators) are never refused.
        if request.uri().path().starts_with("/grpc.health.v1.Health/") {
            return Box::pin(self.inner.call(request));
        }
        let caller = self.limiter.caller(&request);
        match self.limiter.take(caller, Instant::now()) {
            Ok(()) => Box::pin(self.inner.call(request)),
            Err((per_minute, wait)) => {
                let status =
                    crate::grpc::rate_limited(per_minute, matches!(caller, Caller::Token(_)), wait);
                Box::pin(async move {
                    tokio::time::sleep(REFUSAL_PAUSE).await;
                    Ok(status.into_http())
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caller_gets_a_burst_then_an_even_rate_and_others_are_not_touched() {
        let limiter = RateLimiter::new(RateLimits {
            requests_per_minute_per_token: 60,
            requests_per_minute_per_address: 6,
            ..Default::default()
        });
        let start = Instant::now();
        let flooding = Caller::Token(1);
        // A burst of ten (a tenth of 60 would be six; at least ten).
        for _ in 0..10 {
            assert_eq!(limiter.take(flooding, start), Ok(()));
        }
        assert!(
            limiter
                .take(flooding, start)
                .is_err_and(|(limit, _)| limit == 60)
        );
        // One more a second.
        assert_eq!(
            limiter.take(flooding, start + Duration::from_millis(500)),
            Err((60, Duration::from_millis(500)))
        );
        assert_eq!(
            limiter.take(flooding, start + Duration::from_secs(1)),
            Ok(())
        );
        // Another token and an address have their own buckets and limits.
        assert_eq!(limiter.take(Caller::Token(2), start), Ok(()));
        let address = Caller::Address("192.0.2.7".parse().expect("address"));
        for _ in 0..6 {
            assert_eq!(limiter.take(address, start), Ok(()));
        }
        assert!(
            limiter
                .take(address, start)
                .is_err_and(|(limit, _)| limit == 6)
        );
    }
}
