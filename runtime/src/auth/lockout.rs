//! Slowing credential guessing down without handing guessers a way to lock others out.
//!
//! Two kinds of secret get two policies (the whole policy is in DESIGN.md, decision 26):
//!
//! - **High-entropy credentials** (API keys, signed tokens, client secrets) are checked first,
//!   always: a correct one is never refused, whoever failed before from the same address. Only
//!   failures are counted, per address ([`FailureThrottle`]); past the limit a failure is
//!   answered `429` with `Retry-After` instead of `401`. Guessing a 128-bit secret is hopeless
//!   at any rate, so the throttle exists to make clients that loop on a bad credential back
//!   off, never to protect the secret by refusing its owner.
//! - **Passwords** are low-entropy and expensive to check (argon2), so an attempt is counted
//!   *before* it is verified ([`PasswordGuard::begin`]) and given back when it succeeds. The
//!   lock is per (account, source): a guesser at `alice` from one address locks only that
//!   pair. The source is the browser's device cookie when it carries one proving an earlier
//!   sign-in to the account, else the address. Guessing spread over several sources slows the
//!   account (or, for password spraying, the address) down for sources *without* a device
//!   cookie: one attempt per `duration / max_failures`. A user's known browsers keep signing
//!   in at full speed, so a guesser can slow an account down but never block it for everyone.
//!
//! Every table is bounded ([`MAX_TRACKED`] keys); entries are swept when their window has
//! passed, and when a table is still full a key is simply not tracked (which needs a hundred
//! thousand live lockouts first).
//!
//! With the `redis` feature both are shared by replicas (`redis`, `password/redis`): the
//! counts live in Redis, and each replica keeps its own tables current all along, to decide
//! alone while Redis does not answer.

use std::{
    collections::HashMap,
    hash::Hash,
    net::IpAddr,
    sync::{Mutex, MutexGuard},
    time::{Duration, Instant},
};

/// When failures lock a source out. The default: 10 failures within a minute lock it out for 5
/// minutes.
///
/// How it is applied depends on the credential (the README's "Guessing" paragraph and
/// DESIGN.md, decision 12): for API keys, tokens and client secrets it decides when *failures* from an address are
/// answered `429` (a correct credential always passes); for passwords it locks an (account,
/// source) pair, and guessing spread over several sources slows the account down for browsers
/// that never signed in to it.
///
/// Addresses count per IPv4 address and per IPv6 /64 (one host usually owns a whole /64).
/// Behind a reverse proxy, list it with `Gatekeeper::trusted_proxies` so that the client's own
/// address is counted, not the proxy's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lockout {
    max_failures: u32,
    window: Duration,
    duration: Duration,
}

impl Default for Lockout {
    fn default() -> Self {
        Self {
            max_failures: 10,
            window: Duration::from_secs(60),
            duration: Duration::from_secs(300),
        }
    }
}

impl Lockout {
    /// Lock a source out for `duration` after `max_failures` failures within `window`.
    pub fn new(max_failures: u32, window: Duration, duration: Duration) -> Self {
        Self {
            max_failures: max_failures.max(1),
            window,
            duration,
        }
    }

    /// Never lock anyone out.
    pub fn disabled() -> Self {
        Self {
            max_failures: u32::MAX,
            window: Duration::ZERO,
            duration: Duration::ZERO,
        }
    }

    fn is_disabled(&self) -> bool {
        self.max_failures == u32::MAX
    }

    /// In slow mode, one attempt per this interval: `max_failures` per `duration`, the rate a
    /// single locked-out guesser gets anyway.
    #[cfg(feature = "oauth")]
    fn admission_interval(&self) -> Duration {
        self.duration / self.max_failures
    }
}

/// Most keys one table tracks.
pub(crate) const MAX_TRACKED: usize = 100_000;

/// IPv4 addresses count alone; IPv6 addresses by their /64 network.
pub(crate) fn address_key(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => addr,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::V6(segments.into())
            }
        },
    }
}

/// Failures (and attempts in flight) of one key within its window, and its lockout.
#[derive(Debug, Clone, Copy)]
struct Count {
    window_start: Instant,
    failures: u32,
    locked_until: Option<Instant>,
}

impl Count {
    fn fresh(now: Instant) -> Self {
        Self {
            window_start: now,
            failures: 0,
            locked_until: None,
        }
    }

    /// Starts a new window when the old one (or the lockout) is over.
    fn roll(&mut self, now: Instant, policy: &Lockout) {
        let over = match self.locked_until {
            Some(until) => until <= now,
            None => now.duration_since(self.window_start) >= policy.window,
        };
        if over {
            *self = Self::fresh(now);
        }
    }

    /// How long the key stays locked, if it is.
    fn locked(&self, now: Instant) -> Option<Duration> {
        self.locked_until
            .and_then(|until| until.checked_duration_since(now))
            .filter(|d| !d.is_zero())
    }

    /// Whether nothing is left to remember at `now`.
    fn stale(&self, now: Instant, policy: &Lockout) -> bool {
        match self.locked_until {
            Some(until) => until <= now,
            None => now.duration_since(self.window_start) >= policy.window,
        }
    }

    fn lock(&mut self, now: Instant, policy: &Lockout) {
        self.locked_until = Some(now + policy.duration);
        self.failures = 0;
        self.window_start = now;
    }
}

/// A map that never holds more than [`MAX_TRACKED`] keys.
#[derive(Debug)]
struct Table<K, V> {
    entries: HashMap<K, V>,
}

impl<K, V> Default for Table<K, V> {
    fn default() -> Self {
        Self {
            entries: HashMap::new(),
        }
    }
}

impl<K: Hash + Eq, V> Table<K, V> {
    /// The entry for `key`, created with `fresh` if there is room; `None` when the table is
    /// full of live entries (the key is then not tracked).
    fn entry(
        &mut self,
        key: K,
        fresh: impl FnOnce() -> V,
        stale: impl Fn(&V) -> bool,
    ) -> Option<&mut V> {
        if !self.entries.contains_key(&key) && self.entries.len() >= MAX_TRACKED {
            self.entries.retain(|_, v| !stale(v));
            if self.entries.len() >= MAX_TRACKED {
                return None;
            }
        }
        Some(self.entries.entry(key).or_insert_with(fresh))
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update under these locks is a few field writes: a panic cannot leave them half
    // done, so a poisoned lock is still consistent.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------------------------------
// High-entropy credentials
// ---------------------------------------------------------------------------------------------

/// Failed authentications with high-entropy credentials (API keys, tokens, client secrets), per
/// address. Never consulted before a credential is checked: it only decides whether a failure
/// is answered `429` (over the limit) or `401`.
#[derive(Debug)]
pub(crate) struct FailureThrottle {
    policy: Lockout,
    counts: Mutex<Table<IpAddr, Count>>,
    /// The replicas' common count, when the builder was given one.
    #[cfg(feature = "redis")]
    shared: Option<std::sync::Arc<redis::SharedFailures>>,
    /// Counts the addresses this throttle starts refusing (set once, when a server that
    /// counts is built with it).
    #[cfg(feature = "metrics")]
    lockouts: std::sync::OnceLock<::metrics::Counter>,
}

impl FailureThrottle {
    pub(crate) fn new(policy: Lockout) -> Self {
        Self {
            policy,
            counts: Mutex::default(),
            #[cfg(feature = "redis")]
            shared: None,
            #[cfg(feature = "metrics")]
            lockouts: std::sync::OnceLock::new(),
        }
    }

    /// Counts each address this throttle starts refusing on `lockouts`.
    #[cfg(feature = "metrics")]
    pub(crate) fn counting_lockouts(self, lockouts: ::metrics::Counter) -> Self {
        self.count_lockouts_on(lockouts);
        self
    }

    /// Counts each address this throttle starts refusing on `lockouts`, unless a counter was
    /// given already (a throttle shared by servers counts for the first).
    #[cfg(feature = "metrics")]
    pub(crate) fn count_lockouts_on(&self, lockouts: ::metrics::Counter) {
        let _ = self.lockouts.set(lockouts);
    }

    /// Counts failures in Redis too (see [`RedisLockout`](redis::RedisLockout)).
    #[cfg(feature = "redis")]
    pub(crate) fn shared(mut self, shared: Option<std::sync::Arc<redis::SharedFailures>>) -> Self {
        self.shared = shared;
        self
    }

    /// Counts a failure from `addr`, in Redis as well when the throttle is shared; returns how
    /// long failures from it stay throttled. The local count is kept all along, so that it is
    /// up to date when Redis stops answering and this replica falls back to it; while Redis
    /// answers, the longer of the two verdicts holds (they differ only after an outage).
    pub(crate) async fn record(&self, addr: IpAddr) -> Option<Duration> {
        let local = self.record_failure(addr);
        #[cfg(feature = "redis")]
        if let Some(shared) = &self.shared
            && !self.policy.is_disabled()
            && let Ok(common) = shared.record_failure(addr, &self.policy).await
        {
            return common.max(local);
        }
        local
    }

    /// Counts a failure from `addr`; returns how long failures from it stay throttled when the
    /// address is (now) over its limit.
    pub(crate) fn record_failure(&self, addr: IpAddr) -> Option<Duration> {
        if self.policy.is_disabled() {
            return None;
        }
        let now = Instant::now();
        let policy = self.policy;
        let mut counts = lock(&self.counts);
        let count = counts.entry(
            address_key(addr),
            || Count::fresh(now),
            |c| c.stale(now, &policy),
        )?;
        count.roll(now, &policy);
        if let Some(wait) = count.locked(now) {
            return Some(wait);
        }
        count.failures = count.failures.saturating_add(1);
        if count.failures >= policy.max_failures {
            count.lock(now, &policy);
            #[cfg(feature = "metrics")]
            if let Some(lockouts) = self.lockouts.get() {
                lockouts.increment(1);
            }
            return Some(policy.duration);
        }
        None
    }

    /// How long failures from `addr` stay throttled, if they are.
    #[cfg(test)]
    pub(crate) fn throttled(&self, addr: IpAddr) -> Option<Duration> {
        let now = Instant::now();
        lock(&self.counts)
            .entries
            .get(&address_key(addr))
            .and_then(|c| c.locked(now))
    }
}

#[cfg(feature = "oauth")]
mod password;
#[cfg(feature = "redis")]
pub(crate) mod redis;
#[cfg(feature = "oauth")]
pub(crate) use password::PasswordGuard;

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn policy(max: u32) -> Lockout {
        Lockout::new(max, Duration::from_secs(60), Duration::from_secs(300))
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn failures_are_throttled_per_address() {
        let throttle = FailureThrottle::new(policy(3));
        let attacker = ip("10.0.0.1");
        assert_eq!(throttle.record_failure(attacker), None);
        assert_eq!(throttle.record_failure(attacker), None);
        assert_eq!(
            throttle.record_failure(attacker),
            Some(Duration::from_secs(300))
        );
        assert!(throttle.throttled(attacker).unwrap() > Duration::from_secs(299));
        assert!(
            throttle.record_failure(attacker).is_some(),
            "still throttled"
        );
        assert!(throttle.throttled(ip("10.0.0.2")).is_none());
    }

    #[test]
    fn ipv6_counts_per_64() {
        let throttle = FailureThrottle::new(policy(2));
        throttle.record_failure(ip("2001:db8::1"));
        throttle.record_failure(ip("2001:db8::ffff:2"));
        assert!(throttle.throttled(ip("2001:db8::3")).is_some());
        assert!(throttle.throttled(ip("2001:db8:0:1::1")).is_none());
        assert_eq!(address_key(ip("::ffff:10.1.2.3")), ip("10.1.2.3"));
    }

    #[test]
    fn tables_are_bounded() {
        let throttle = FailureThrottle::new(policy(3));
        for n in 0..(MAX_TRACKED as u32 + 10) {
            throttle.record_failure(IpAddr::V4(Ipv4Addr::from(n)));
        }
        assert_eq!(lock(&throttle.counts).entries.len(), MAX_TRACKED);
    }
}
