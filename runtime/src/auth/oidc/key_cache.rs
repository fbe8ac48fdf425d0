//! An identity provider's key set, kept current without ever letting a request storm, a key
//! rotation or an outage of the provider become an outage of this server.
//!
//! The policy (DESIGN.md 39) is the one the best JWKS clients converged on:
//! - the set is cached for the provider's `Cache-Control: max-age`, clamped to
//!   [`min_lifetime`, `max_lifetime`] (default 10 minutes without one), and refreshed in the
//!   background at four fifths of that, so requests never wait for a routine refresh;
//! - a token whose `kid` is not in the set may start one refetch per cool-down (default 30 s);
//!   every request that arrives while a fetch is running waits for that one fetch (at most the
//!   request deadline), so N concurrent requests cause one fetch, and a flood of forged `kid`s
//!   costs the provider one request per cool-down;
//! - when fetching fails, the last good set stays in use for up to `max_staleness` past its
//!   lifetime (logged at every failed attempt), retried with a backoff from 5 s to 5 minutes;
//!   past that bound tokens are refused as unverifiable (`503`), never accepted unchecked.
//!
//! [`CacheState`] is the policy alone, driven by the times it is given, so its unit tests
//! control the clock; [`KeyCache`] runs it with Tokio's clock and the provider's answers.

use std::{
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use futures::{
    FutureExt as _,
    future::{BoxFuture, Shared},
};
use tokio::time::Instant;
use url::Url;

use super::{
    fetch::Fetcher,
    keys::{KeySet, SigningKey},
};
use crate::auth::JwtAlgorithm;

/// The shortest wait before a failed fetch is retried.
const RETRY_MIN: Duration = Duration::from_secs(5);
/// The longest.
const RETRY_MAX: Duration = Duration::from_secs(300);

/// How long a key set is trusted, and how often it may be fetched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CachePolicy {
    /// The lifetime of a set served without `max-age`.
    pub(crate) default_lifetime: Duration,
    /// `max-age` is clamped to at least this...
    pub(crate) min_lifetime: Duration,
    /// ...and at most this.
    pub(crate) max_lifetime: Duration,
    /// The least time between two refetches started by unknown `kid`s.
    pub(crate) unknown_key_cooldown: Duration,
    /// How long past its lifetime a set stays in use while the provider cannot be reached.
    pub(crate) max_staleness: Duration,
}

impl Default for CachePolicy {
    fn default() -> Self {
        Self {
            default_lifetime: Duration::from_secs(600),
            min_lifetime: Duration::from_secs(60),
            max_lifetime: Duration::from_secs(24 * 60 * 60),
            unknown_key_cooldown: Duration::from_secs(30),
            max_staleness: Duration::from_secs(24 * 60 * 60),
        }
    }
}

impl CachePolicy {
    /// How long a set fetched with `max_age` is fresh.
    fn lifetime(&self, max_age: Option<Duration>) -> Duration {
        max_age
            .unwrap_or(self.default_lifetime)
            .clamp(self.min_lifetime, self.max_lifetime)
    }
}

/// The cache policy's state: the keys, when they were fetched, and when to fetch next.
pub(crate) struct CacheState {
    keys: Arc<KeySet>,
    /// Until when the keys are fresh.
    fresh_until: Instant,
    /// When the background refresh should run next.
    next_refresh: Instant,
    /// When an unknown `kid` last started a refetch.
    last_forced: Option<Instant>,
    /// Failed fetches since the last success.
    failures: u32,
}

impl CacheState {
    /// The state after the first successful fetch, at `now`.
    pub(crate) fn new(
        keys: KeySet,
        max_age: Option<Duration>,
        now: Instant,
        policy: &CachePolicy,
    ) -> Self {
        let mut state = Self {
            keys: Arc::new(KeySet::default()),
            fresh_until: now,
            next_refresh: now,
            last_forced: None,
            failures: 0,
        };
        state.fetched(keys, max_age, now, policy);
        state
    }

    /// A fetch at `now` succeeded.
    pub(crate) fn fetched(
        &mut self,
        keys: KeySet,
        max_age: Option<Duration>,
        now: Instant,
        policy: &CachePolicy,
    ) {
        let lifetime = policy.lifetime(max_age);
        self.keys = Arc::new(keys);
        self.fresh_until = now + lifetime;
        self.next_refresh = now + lifetime - lifetime / 5;
        self.failures = 0;
    }

    /// A fetch at `now` failed; returns how long the keys have been stale (zero while fresh).
    pub(crate) fn failed(&mut self, now: Instant) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let backoff = RETRY_MIN
            .saturating_mul(1 << (self.failures - 1).min(16))
            .min(RETRY_MAX);
        self.next_refresh = now + backoff;
        now.saturating_duration_since(self.fresh_until)
    }

    /// The keys, unless they are stale beyond the policy's bound at `now`.
    pub(crate) fn usable(&self, now: Instant, policy: &CachePolicy) -> Option<&Arc<KeySet>> {
        (now <= self.fresh_until + policy.max_staleness).then_some(&self.keys)
    }

    /// Whether an unknown `kid` may start a refetch at `now`; if so, the cool-down starts.
    pub(crate) fn may_refetch_for_unknown_key(
        &mut self,
        now: Instant,
        policy: &CachePolicy,
    ) -> bool {
        let allowed = self
            .last_forced
            .is_none_or(|at| now.saturating_duration_since(at) >= policy.unknown_key_cooldown);
        if allowed {
            self.last_forced = Some(now);
        }
        allowed
    }

    /// When the background refresh should run next.
    pub(crate) fn next_refresh(&self) -> Instant {
        self.next_refresh
    }
}

/// Why a token's key could not be had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyError {
    /// The provider's current set has no such key (a forged or foreign token).
    Unknown,
    /// The keys cannot be had now: stale beyond the bound, or the fetch outlasted the deadline.
    Unavailable,
}

/// Counters of one cache, for [`OidcStats`](super::OidcStats).
#[derive(Default)]
pub(crate) struct KeyCounters {
    pub(crate) fetches: AtomicU64,
    pub(crate) failed_fetches: AtomicU64,
    pub(crate) unknown_key_refetches: AtomicU64,
}

/// One provider's key set, with the fetches that keep it current.
pub(crate) struct KeyCache {
    issuer: Arc<str>,
    /// `jwks_uri`; discovery may move it.
    source: Mutex<Url>,
    fetcher: Arc<Fetcher>,
    policy: CachePolicy,
    allowed: Vec<JwtAlgorithm>,
    state: Mutex<CacheState>,
    /// The fetch running now, which every request needing it joins.
    in_flight: Mutex<Option<Shared<BoxFuture<'static, ()>>>>,
    pub(crate) counters: KeyCounters,
}

impl KeyCache {
    /// Fetches the set at `source` for the first time.
    ///
    /// # Errors
    /// When the set cannot be fetched or holds no usable key: a server must not start with a
    /// provider it cannot verify a single token of.
    pub(crate) async fn load(
        issuer: Arc<str>,
        source: Url,
        fetcher: Arc<Fetcher>,
        policy: CachePolicy,
        allowed: Vec<JwtAlgorithm>,
    ) -> Result<Self, String> {
        let fetched = fetcher
            .get(&source)
            .await
            .map_err(|e| format!("the key set at {source} {e}"))?;
        let parsed = KeySet::parse(&fetched.body, &allowed)
            .map_err(|e| format!("the key set at {source} is {e}"))?;
        if parsed.keys.len() == 0 {
            return Err(format!(
                "the key set at {source} has no key this server can verify with{}",
                describe_ignored(&parsed.ignored)
            ));
        }
        log_ignored(&issuer, &parsed.ignored);
        tracing::info!(
            target: "mcp_gatekeeper::auth",
            issuer = &*issuer,
            keys = ?parsed.keys.kids(),
            "identity provider keys loaded"
        );
        let state = CacheState::new(parsed.keys, fetched.max_age, Instant::now(), &policy);
        let counters = KeyCounters::default();
        counters.fetches.store(1, Ordering::Relaxed);
        Ok(Self {
            issuer,
            source: Mutex::new(source),
            fetcher,
            policy,
            allowed,
            state: Mutex::new(state),
            in_flight: Mutex::new(None),
            counters,
        })
    }

    /// Points the cache at a new `jwks_uri` (discovery found it moved); the next fetch uses it.
    pub(crate) fn set_source(&self, source: Url) {
        *lock(&self.source) = source;
    }

    /// When the background refresh should run next.
    pub(crate) fn next_refresh(&self) -> Instant {
        lock(&self.state).next_refresh()
    }

    /// The key for a token signed with `algorithm` under `kid`, refetching the set (once per
    /// cool-down, joined by every concurrent request) when it has no such key, and waiting for
    /// a fetch at most `deadline`.
    pub(crate) async fn key(
        self: &Arc<Self>,
        kid: Option<&str>,
        algorithm: JwtAlgorithm,
        deadline: Duration,
    ) -> Result<Arc<SigningKey>, KeyError> {
        let now = Instant::now();
        let running = {
            let mut state = lock(&self.state);
            if let Some(key) = state
                .usable(now, &self.policy)
                .and_then(|keys| keys.find(kid, algorithm))
            {
                return Ok(key);
            }
            // Its own statement: a guard in the `match` would live through `refresh`, which
            // takes the same lock.
            let running = lock(&self.in_flight).clone();
            match running {
                Some(running) => running,
                None if state.may_refetch_for_unknown_key(now, &self.policy) => {
                    drop(state);
                    self.counters
                        .unknown_key_refetches
                        .fetch_add(1, Ordering::Relaxed);
                    self.refresh()
                }
                None if state.usable(now, &self.policy).is_some() => {
                    return Err(KeyError::Unknown);
                }
                None => return Err(KeyError::Unavailable),
            }
        };
        if tokio::time::timeout(deadline, running).await.is_err() {
            return Err(KeyError::Unavailable);
        }
        let state = lock(&self.state);
        match state.usable(Instant::now(), &self.policy) {
            Some(keys) => keys.find(kid, algorithm).ok_or(KeyError::Unknown),
            None => Err(KeyError::Unavailable),
        }
    }

    /// The fetch running now, or a new one; it runs to its end in a task of its own, whoever
    /// stops waiting for it.
    pub(crate) fn refresh(self: &Arc<Self>) -> Shared<BoxFuture<'static, ()>> {
        let mut slot = lock(&self.in_flight);
        if let Some(running) = slot.as_ref() {
            return running.clone();
        }
        let cache = self.clone();
        // The task clears the slot when done; it cannot before the slot is filled below, since
        // that takes the lock held here.
        let task = tokio::spawn(async move {
            cache.fetch().await;
            *lock(&cache.in_flight) = None;
        });
        let running = async move {
            let _ = task.await;
        }
        .boxed()
        .shared();
        *slot = Some(running.clone());
        running
    }

    /// One fetch, and what it does to the state.
    async fn fetch(&self) {
        let source = lock(&self.source).clone();
        self.counters.fetches.fetch_add(1, Ordering::Relaxed);
        let result = match self.fetcher.get(&source).await {
            Ok(fetched) => match KeySet::parse(&fetched.body, &self.allowed) {
                Ok(parsed) if parsed.keys.len() > 0 => Ok((parsed, fetched.max_age)),
                Ok(parsed) => Err(format!(
                    "has no usable key{}",
                    describe_ignored(&parsed.ignored)
                )),
                Err(e) => Err(format!("is {e}")),
            },
            Err(e) => Err(e.to_string()),
        };
        let now = Instant::now();
        let mut state = lock(&self.state);
        match result {
            Ok((parsed, max_age)) => {
                let before = state.keys.kids().join(",");
                state.fetched(parsed.keys, max_age, now, &self.policy);
                let after: Vec<String> = state.keys.kids().into_iter().map(str::to_owned).collect();
                drop(state);
                log_ignored(&self.issuer, &parsed.ignored);
                if before != after.join(",") {
                    tracing::info!(
                        target: "mcp_gatekeeper::auth",
                        issuer = &*self.issuer,
                        keys = ?after,
                        "identity provider keys changed"
                    );
                }
            }
            Err(error) => {
                let stale_for = state.failed(now);
                let usable = state.usable(now, &self.policy).is_some();
                drop(state);
                self.counters.failed_fetches.fetch_add(1, Ordering::Relaxed);
                // The last good keys stay in use, up to the staleness bound; say so at every
                // failure, so that an outage is visible long before the bound.
                tracing::warn!(
                    target: "mcp_gatekeeper::auth",
                    issuer = &*self.issuer,
                    jwks_uri = %source,
                    %error,
                    stale_seconds = stale_for.as_secs(),
                    keys_still_used = usable,
                    "identity provider key set not refreshed"
                );
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn describe_ignored(ignored: &[(String, &'static str)]) -> String {
    if ignored.is_empty() {
        return String::new();
    }
    let keys: Vec<String> = ignored
        .iter()
        .map(|(kid, why)| format!("{kid}: {why}"))
        .collect();
    format!(" (ignored: {})", keys.join("; "))
}

fn log_ignored(issuer: &str, ignored: &[(String, &'static str)]) {
    if !ignored.is_empty() {
        tracing::debug!(
            target: "mcp_gatekeeper::auth",
            issuer,
            ignored = %describe_ignored(ignored),
            "identity provider keys ignored"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> KeySet {
        KeySet::default()
    }

    fn at(start: Instant, secs: u64) -> Instant {
        start + Duration::from_secs(secs)
    }

    #[test]
    fn max_age_is_honoured_within_bounds_and_refreshed_ahead() {
        let policy = CachePolicy::default();
        let t0 = Instant::now();
        for (max_age, lifetime) in [
            (None, 600),
            (Some(3600), 3600),
            (Some(5), 60),
            (Some(0), 60),
            (Some(10 * 24 * 3600), 24 * 3600),
        ] {
            let state = CacheState::new(keys(), max_age.map(Duration::from_secs), t0, &policy);
            assert_eq!(state.fresh_until, at(t0, lifetime), "{max_age:?}");
            assert_eq!(
                state.next_refresh(),
                at(t0, lifetime * 4 / 5),
                "{max_age:?}"
            );
        }
    }

    #[test]
    fn unknown_keys_refetch_once_per_cooldown() {
        let policy = CachePolicy::default();
        let t0 = Instant::now();
        let mut state = CacheState::new(keys(), None, t0, &policy);
        assert!(state.may_refetch_for_unknown_key(t0, &policy));
        for secs in [0, 1, 29] {
            assert!(
                !state.may_refetch_for_unknown_key(at(t0, secs), &policy),
                "{secs}"
            );
        }
        assert!(state.may_refetch_for_unknown_key(at(t0, 30), &policy));
        assert!(!state.may_refetch_for_unknown_key(at(t0, 59), &policy));
        // A successful background refresh does not reset the cool-down.
        state.fetched(keys(), None, at(t0, 40), &policy);
        assert!(!state.may_refetch_for_unknown_key(at(t0, 45), &policy));
        assert!(state.may_refetch_for_unknown_key(at(t0, 60), &policy));
    }

    #[test]
    fn stale_keys_stay_usable_up_to_the_bound_and_failures_back_off() {
        let policy = CachePolicy {
            max_staleness: Duration::from_secs(3600),
            ..CachePolicy::default()
        };
        let t0 = Instant::now();
        let mut state = CacheState::new(keys(), None, t0, &policy);
        // The provider goes down at the first background refresh (480 s).
        let mut now = state.next_refresh();
        let mut waits = Vec::new();
        for _ in 0..9 {
            state.failed(now);
            waits.push(state.next_refresh().duration_since(now).as_secs());
            now = state.next_refresh();
        }
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(state.failed(at(t0, 600 + 10)), Duration::from_secs(10));
        assert!(state.usable(at(t0, 600 + 3600), &policy).is_some());
        assert!(state.usable(at(t0, 600 + 3601), &policy).is_none());
        // The provider is back: fresh again, backoff forgotten.
        state.fetched(keys(), None, at(t0, 5000), &policy);
        assert!(state.usable(at(t0, 5000), &policy).is_some());
        state.failed(at(t0, 6000));
        assert_eq!(state.next_refresh(), at(t0, 6005));
    }
}
