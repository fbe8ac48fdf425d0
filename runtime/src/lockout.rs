//! Locking out credential guessing: too many failed authentications from one network address
//! within a window refuse every further attempt from it for a while, valid or not.

use std::{
    collections::HashMap,
    hash::Hash,
    net::IpAddr,
    sync::Mutex,
    time::{Duration, Instant},
};

/// When to lock an address out. The default: 10 failed authentications within a minute lock
/// the address out for 5 minutes.
///
/// Failures are counted per client address (IPv6 per /64, since one host usually owns a whole
/// /64). Behind a reverse proxy every request comes from the proxy's address: either let the
/// proxy rate-limit failed logins, or turn this off with [`Lockout::disabled`].
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
    /// Lock an address out for `duration` after `max_failures` failures within `window`.
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
}

#[derive(Debug)]
struct Entry {
    window_start: Instant,
    failures: u32,
    locked_until: Option<Instant>,
}

/// What failures are counted by: a network address, or an account name (client id, username).
pub(crate) trait LockoutKey: Hash + Eq + Clone {
    /// The form under which failures are counted (attempts that must count together map to the
    /// same key).
    fn normalize(self) -> Self;
}

impl LockoutKey for IpAddr {
    fn normalize(self) -> Self {
        key(self)
    }
}

impl LockoutKey for String {
    /// Account names are counted case-insensitively, so `Alice` and `alice` share a budget.
    fn normalize(mut self) -> Self {
        self.make_ascii_lowercase();
        self
    }
}

/// The failure counters of one server (by address unless another key is named).
#[derive(Debug)]
pub(crate) struct LockoutTable<K: LockoutKey = IpAddr> {
    policy: Lockout,
    entries: Mutex<HashMap<K, Entry>>,
}

/// Past this many tracked addresses, stale entries are swept on the next failure.
const SWEEP_ABOVE: usize = 10_000;

impl<K: LockoutKey> LockoutTable<K> {
    pub(crate) fn new(policy: Lockout) -> Self {
        Self {
            policy,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// How long `addr` stays locked out, if it is.
    pub(crate) fn locked(&self, addr: K) -> Option<Duration> {
        if self.policy.is_disabled() {
            return None;
        }
        let now = Instant::now();
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let until = entries.get(&addr.normalize())?.locked_until?;
        until.checked_duration_since(now).filter(|d| !d.is_zero())
    }

    /// Counts a failed authentication; returns the lockout it starts, if it starts one.
    pub(crate) fn record_failure(&self, addr: K) -> Option<Duration> {
        if self.policy.is_disabled() {
            return None;
        }
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() > SWEEP_ABOVE {
            let policy = self.policy;
            entries.retain(|_, e| {
                now.duration_since(e.window_start) < policy.window
                    || e.locked_until.is_some_and(|u| u > now)
            });
        }
        let entry = entries.entry(addr.normalize()).or_insert(Entry {
            window_start: now,
            failures: 0,
            locked_until: None,
        });
        if now.duration_since(entry.window_start) >= self.policy.window {
            entry.window_start = now;
            entry.failures = 0;
        }
        entry.failures = entry.failures.saturating_add(1);
        if entry.failures >= self.policy.max_failures {
            entry.locked_until = Some(now + self.policy.duration);
            entry.failures = 0;
            entry.window_start = now;
            return Some(self.policy.duration);
        }
        None
    }
}

impl<K: LockoutKey> LockoutTable<K> {
    /// Forgets the failures counted for `key` after it succeeded (a user who mistyped a
    /// password twice and then got it right starts afresh). A running lockout is kept: it ends
    /// only when its time is up. Only for account names: an address that succeeds once (an
    /// attacker's own account) must not wipe the failures it made against others.
    pub(crate) fn forgive(&self, key: K) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let key = key.normalize();
        if entries.get(&key).is_some_and(|e| e.locked_until.is_none()) {
            entries.remove(&key);
        }
    }
}

/// IPv4 addresses count alone; IPv6 addresses by their /64 network.
fn key(addr: IpAddr) -> IpAddr {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_out_after_the_limit_and_only_that_address() {
        let table = LockoutTable::<IpAddr>::new(Lockout::new(
            3,
            Duration::from_secs(60),
            Duration::from_secs(30),
        ));
        let attacker: IpAddr = "10.0.0.1".parse().unwrap();
        let bystander: IpAddr = "10.0.0.2".parse().unwrap();
        assert_eq!(table.record_failure(attacker), None);
        assert_eq!(table.record_failure(attacker), None);
        assert!(table.locked(attacker).is_none());
        assert_eq!(
            table.record_failure(attacker),
            Some(Duration::from_secs(30))
        );
        let remaining = table.locked(attacker).unwrap();
        assert!(remaining > Duration::from_secs(29));
        assert!(table.locked(bystander).is_none());
    }

    #[test]
    fn ipv6_counts_per_64() {
        let table = LockoutTable::<IpAddr>::new(Lockout::new(
            2,
            Duration::from_secs(60),
            Duration::from_secs(30),
        ));
        table.record_failure("2001:db8::1".parse().unwrap());
        table.record_failure("2001:db8::ffff:2".parse().unwrap());
        assert!(table.locked("2001:db8::3".parse().unwrap()).is_some());
        assert!(table.locked("2001:db8:0:1::1".parse().unwrap()).is_none());
    }

    #[test]
    fn disabled_never_locks() {
        let table = LockoutTable::<IpAddr>::new(Lockout::disabled());
        let addr: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..1000 {
            assert_eq!(table.record_failure(addr), None);
        }
        assert!(table.locked(addr).is_none());
    }

    #[test]
    fn success_forgives_an_account_but_not_a_running_lockout() {
        let table = LockoutTable::<String>::new(Lockout::new(
            3,
            Duration::from_secs(60),
            Duration::from_secs(30),
        ));
        table.record_failure("Alice".into());
        table.record_failure("alice".into());
        table.forgive("ALICE".into());
        table.record_failure("alice".into());
        table.record_failure("alice".into());
        assert!(
            table.locked("alice".into()).is_none(),
            "the count started afresh"
        );
        table.record_failure("alice".into());
        assert!(table.locked("alice".into()).is_some());
        table.forgive("alice".into());
        assert!(
            table.locked("alice".into()).is_some(),
            "a lockout runs its course"
        );
    }
}
