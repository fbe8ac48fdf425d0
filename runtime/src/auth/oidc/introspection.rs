//! RFC 7662 token introspection: asking the identity provider about a token this server cannot
//! verify by itself (an opaque token), or about a JWT the provider may have revoked.
//!
//! Every answer costs the provider a request, so the work one caller can cause is bounded:
//! - answers are cached under a keyed hash of the token (HMAC-SHA256 with a key made at start:
//!   no token is kept in memory, and nobody outside can aim at a cache slot); an active answer
//!   at most until the token's `exp` and at most the configured TTL, an inactive one for
//!   [`INACTIVE_TTL`] as inactive (never as active), a failed exchange not at all;
//! - concurrent requests with the same token share one exchange (single-flight);
//! - at most [`MAX_CONCURRENT`] exchanges run at once, and each address may start at most
//!   `per_address_per_minute` of them (cache hits are free);
//! - a request waits for an exchange at most the deadline.
//!
//! When the provider cannot be reached, the request is refused with `503` (fail closed) and the
//! refusal is audited like any other.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use aws_lc_rs::hmac;
use futures::{
    FutureExt as _,
    future::{BoxFuture, Shared},
};
use tokio::sync::Semaphore;
use url::Url;

use super::fetch::{ClientAuthentication, Fetcher};
use crate::{
    Principal,
    auth::{AuthError, jwt::TokenRules, jwt::claims::Claims, lockout::address_key},
};

/// How long an inactive answer is remembered (a client looping on a revoked token asks the
/// provider once per this).
pub(crate) const INACTIVE_TTL: Duration = Duration::from_secs(10);
/// Exchanges with the provider at once.
const MAX_CONCURRENT: usize = 16;
/// Cached answers kept; a full cache drops its expired entries, then all.
const MAX_CACHED: usize = 20_000;
/// Addresses tracked for the per-address budget.
const MAX_ADDRESSES: usize = 100_000;

/// What the provider said about a token, as this server decides on it.
#[derive(Clone)]
enum Answer {
    Active(Arc<Principal>),
    Refused(AuthError),
}

struct Cached {
    answer: Answer,
    until: Instant,
}

/// An exchange in flight, which every request with the same token joins; `None` when the
/// provider could not be asked or did not answer usably.
type Exchange = Shared<BoxFuture<'static, Option<Answer>>>;

/// Counters, for [`OidcStats`](super::OidcStats).
#[derive(Default)]
pub(crate) struct IntrospectionCounters {
    pub(crate) cache_hits: AtomicU64,
    pub(crate) cache_misses: AtomicU64,
    pub(crate) exchanges: AtomicU64,
    pub(crate) failed_exchanges: AtomicU64,
}

/// The client of one provider's introspection endpoint.
pub(crate) struct Introspector {
    issuer: Arc<str>,
    endpoint: Mutex<Url>,
    method: ClientAuthentication,
    client_id: String,
    secret: String,
    fetcher: Arc<Fetcher>,
    rules: TokenRules,
    ttl: Duration,
    per_address_per_minute: u32,
    digest_key: hmac::Key,
    cache: Mutex<HashMap<[u8; 32], Cached>>,
    in_flight: Mutex<HashMap<[u8; 32], Exchange>>,
    permits: Arc<Semaphore>,
    addresses: Mutex<HashMap<IpAddr, (Instant, u32)>>,
    pub(crate) counters: IntrospectionCounters,
}

/// What an [`Introspector`] is made of.
pub(crate) struct IntrospectorConfig {
    pub(crate) issuer: Arc<str>,
    pub(crate) endpoint: Url,
    pub(crate) method: ClientAuthentication,
    pub(crate) client_id: String,
    pub(crate) secret: String,
    pub(crate) rules: TokenRules,
    pub(crate) ttl: Duration,
    pub(crate) per_address_per_minute: u32,
}

impl Introspector {
    pub(crate) fn new(config: IntrospectorConfig, fetcher: Arc<Fetcher>) -> Self {
        let mut key = [0u8; 32];
        rand::fill(&mut key);
        Self {
            issuer: config.issuer,
            endpoint: Mutex::new(config.endpoint),
            method: config.method,
            client_id: config.client_id,
            secret: config.secret,
            fetcher,
            rules: config.rules,
            ttl: config.ttl,
            per_address_per_minute: config.per_address_per_minute,
            digest_key: hmac::Key::new(hmac::HMAC_SHA256, &key),
            cache: Mutex::default(),
            in_flight: Mutex::default(),
            permits: Arc::new(Semaphore::new(MAX_CONCURRENT)),
            addresses: Mutex::default(),
            counters: IntrospectionCounters::default(),
        }
    }

    /// Points the client at a new endpoint (discovery found it moved).
    pub(crate) fn set_endpoint(&self, endpoint: Url) {
        *lock(&self.endpoint) = endpoint;
    }

    /// The principal `token` speaks for, as the provider says (or said recently); `client` is
    /// the caller's address, which pays for the exchange when the answer is not cached.
    pub(crate) async fn introspect(
        self: &Arc<Self>,
        token: &str,
        client: Option<IpAddr>,
        deadline: Duration,
    ) -> Result<Arc<Principal>, AuthError> {
        let digest = self.digest(token);
        let now = Instant::now();
        if let Some(answer) = self.cached(&digest, now) {
            self.counters.cache_hits.fetch_add(1, Ordering::Relaxed);
            return into_result(answer);
        }
        self.counters.cache_misses.fetch_add(1, Ordering::Relaxed);
        let running = lock(&self.in_flight).get(&digest).cloned();
        let running = match running {
            Some(running) => running,
            None => {
                if let Some(client) = client
                    && !self.charge(client, now)
                {
                    return Err(AuthError::unavailable(
                        "Too many new tokens from this address to check; retry later",
                    ));
                }
                self.start(digest, token.to_owned())
            }
        };
        match tokio::time::timeout(deadline, running).await {
            Ok(Some(answer)) => into_result(answer),
            Ok(None) | Err(_) => Err(unreachable()),
        }
    }

    /// Starts the exchange for the token with `digest`, or joins the one running.
    fn start(self: &Arc<Self>, digest: [u8; 32], token: String) -> Exchange {
        let mut in_flight = lock(&self.in_flight);
        if let Some(running) = in_flight.get(&digest) {
            return running.clone();
        }
        let this = self.clone();
        let task = tokio::spawn(async move {
            let answer = this.exchange(&token).await;
            if let Some(answer) = &answer {
                this.remember(digest, answer.clone());
            }
            lock(&this.in_flight).remove(&digest);
            answer
        });
        let running = async move { task.await.ok().flatten() }.boxed().shared();
        in_flight.insert(digest, running.clone());
        running
    }

    /// Asks the provider; `None` when it could not be asked or did not answer usably.
    async fn exchange(&self, token: &str) -> Option<Answer> {
        // Holding a permit bounds the exchanges in flight; waiting for one is bounded by the
        // caller's deadline (the task is then still queued, and its answer cached).
        let _permit = self.permits.clone().acquire_owned().await.ok()?;
        self.counters.exchanges.fetch_add(1, Ordering::Relaxed);
        let endpoint = lock(&self.endpoint).clone();
        let form = [("token", token), ("token_type_hint", "access_token")];
        let result = self
            .fetcher
            .post_form(&endpoint, &self.client_id, &self.secret, self.method, &form)
            .await;
        let claims = match result {
            Ok(fetched) => serde_json::from_slice::<Claims>(&fetched.body)
                .map_err(|_| "answered something other than a JSON object".to_owned()),
            Err(error) => Err(error.to_string()),
        };
        let claims = match claims {
            Ok(claims) => claims,
            Err(error) => {
                self.counters
                    .failed_exchanges
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    target: "mcp_gatekeeper::auth",
                    issuer = &*self.issuer,
                    introspection_endpoint = %endpoint,
                    %error,
                    "token introspection failed; the request is refused"
                );
                return None;
            }
        };
        Some(
            match self.rules.introspected(&claims, crate::auth::jwt::now()) {
                Ok(principal) => Answer::Active(Arc::new(principal)),
                Err(error) => Answer::Refused(error),
            },
        )
    }

    fn digest(&self, token: &str) -> [u8; 32] {
        let tag = hmac::sign(&self.digest_key, token.as_bytes());
        let mut digest = [0u8; 32];
        digest.copy_from_slice(tag.as_ref());
        digest
    }

    fn cached(&self, digest: &[u8; 32], now: Instant) -> Option<Answer> {
        let cache = lock(&self.cache);
        let entry = cache.get(digest)?;
        (now < entry.until).then(|| entry.answer.clone())
    }

    /// Caches `answer`: an active one until the token expires and at most the TTL, a refusal
    /// for [`INACTIVE_TTL`].
    fn remember(&self, digest: [u8; 32], answer: Answer) {
        let now = Instant::now();
        let ttl = match &answer {
            Answer::Active(principal) => {
                let left = principal
                    .expires_at()
                    .and_then(|at| at.duration_since(std::time::SystemTime::now()).ok())
                    .unwrap_or(self.ttl);
                left.min(self.ttl)
            }
            Answer::Refused(_) => INACTIVE_TTL,
        };
        if ttl.is_zero() {
            return;
        }
        let mut cache = lock(&self.cache);
        if cache.len() >= MAX_CACHED {
            cache.retain(|_, entry| entry.until > now);
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
        }
        cache.insert(
            digest,
            Cached {
                answer,
                until: now + ttl,
            },
        );
    }

    /// Counts one exchange against `client`'s budget; `false` when it is spent.
    fn charge(&self, client: IpAddr, now: Instant) -> bool {
        const WINDOW: Duration = Duration::from_secs(60);
        let mut addresses = lock(&self.addresses);
        if addresses.len() >= MAX_ADDRESSES {
            addresses.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
            if addresses.len() >= MAX_ADDRESSES {
                // A hundred thousand addresses asked within a minute: the concurrency bound
                // still holds; this address is simply not tracked.
                return true;
            }
        }
        let (start, count) = addresses.entry(address_key(client)).or_insert((now, 0));
        if now.duration_since(*start) >= WINDOW {
            *start = now;
            *count = 0;
        }
        if *count >= self.per_address_per_minute {
            return false;
        }
        *count += 1;
        true
    }
}

fn into_result(answer: Answer) -> Result<Arc<Principal>, AuthError> {
    match answer {
        Answer::Active(principal) => Ok(principal),
        Answer::Refused(error) => Err(error),
    }
}

fn unreachable() -> AuthError {
    AuthError::unavailable(
        "The identity provider cannot be reached to check this token; retry later",
    )
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
