//! Password attempts: counted before they are verified, locked per (account, source), and
//! slowed for unknown browsers when guessing spreads over sources (see the parent module).
//! With the `redis` feature the counts may be shared by replicas (`redis`): Redis then decides,
//! with the same rules, and these tables are kept current to decide while it does not answer.

#[cfg(feature = "redis")]
use std::sync::Arc;
use std::{
    hash::{BuildHasher, RandomState},
    net::{IpAddr, Ipv4Addr},
    sync::Mutex,
    time::{Duration, Instant},
};

use super::{Count, Lockout, Table, address_key, lock};

/// Where a password attempt comes from: a browser proving an earlier sign-in to the account
/// (its device cookie's id), or else its address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Source {
    /// A trusted browser of the account.
    Device([u8; 16]),
    /// An address (normalised by [`address_key`]).
    Address(IpAddr),
}

/// Failures of one account, or of one address across accounts, from sources without a device
/// cookie.
#[derive(Debug, Clone, Copy)]
struct Spread {
    /// Failures and attempts in flight in the window; `locked_until` is the end of slow mode.
    count: Count,
    /// Who made the window's first attempt: a source (for an account) or an account (for an
    /// address), as a hash.
    first: u64,
    /// Whether attempts in the window came from more than one of them. A single guesser never
    /// triggers slow mode: its own (account, source) lock stops it first.
    several: bool,
    /// In slow mode: when the next attempt may be admitted.
    next_admission: Instant,
}

impl Spread {
    fn fresh(now: Instant) -> Self {
        Self {
            count: Count::fresh(now),
            first: 0,
            several: false,
            next_admission: now,
        }
    }

    fn roll(&mut self, now: Instant, policy: &Lockout) {
        let before = self.count.window_start;
        self.count.roll(now, policy);
        if self.count.window_start != before {
            self.several = false;
        }
    }

    /// Whether an attempt may start now (and, in slow mode, when the next may).
    fn admits(&self, now: Instant) -> Result<(), Duration> {
        if self.count.locked(now).is_some() && now < self.next_admission {
            return Err(self.next_admission - now);
        }
        Ok(())
    }

    fn reserve(&mut self, party: u64, now: Instant, policy: &Lockout) {
        if self.count.locked(now).is_some() {
            self.next_admission = now + policy.admission_interval();
        }
        if self.count.failures == 0 && !self.several {
            self.first = party;
        } else if party != self.first {
            self.several = true;
        }
        self.count.failures = self.count.failures.saturating_add(1);
    }

    fn give_back(&mut self) {
        self.count.failures = self.count.failures.saturating_sub(1);
    }

    fn failed(&mut self, now: Instant, policy: &Lockout) {
        if self.several
            && self.count.failures >= policy.max_failures
            && self.count.locked(now).is_none()
        {
            self.count.locked_until = Some(now + policy.duration);
            self.next_admission = now + policy.admission_interval();
        }
    }
}

/// The tables of a [`PasswordGuard`].
#[derive(Debug, Default)]
struct GuardTables {
    pairs: Table<(Box<str>, Source), Count>,
    accounts: Table<Box<str>, Spread>,
    addresses: Table<IpAddr, Spread>,
}

/// What one call of [`PasswordGuard::step`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Checks whether an attempt may start and, if so, counts it: the tables decide.
    Decide,
    /// Counts an attempt Redis admitted, so that the tables stay current for when Redis stops
    /// answering.
    #[cfg(feature = "redis")]
    Mirror,
}

/// The moment of a step, on both clocks: the local tables measure with [`Instant`], Redis
/// with each replica's Unix wall clock in milliseconds.
#[derive(Debug, Clone, Copy)]
struct Now {
    instant: Instant,
    #[cfg(feature = "redis")]
    unix_ms: u64,
}

impl Now {
    fn current() -> Self {
        Self {
            instant: Instant::now(),
            #[cfg(feature = "redis")]
            unix_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        }
    }
}

/// Counts password attempts per (account, source), before they are verified; see [the module
/// docs](self).
#[derive(Debug)]
pub(crate) struct PasswordGuard {
    policy: Lockout,
    tables: Mutex<GuardTables>,
    hasher: RandomState,
    /// The replicas' common counts, when the builder was given them.
    #[cfg(feature = "redis")]
    shared: Option<Arc<redis::SharedPasswords>>,
    /// Counts the (account, source) pairs this guard locks (set once, by a server that counts).
    #[cfg(feature = "metrics")]
    lockouts: std::sync::OnceLock<::metrics::Counter>,
}

impl PasswordGuard {
    pub(crate) fn new(policy: Lockout) -> Self {
        Self {
            policy,
            tables: Mutex::default(),
            hasher: RandomState::new(),
            #[cfg(feature = "redis")]
            shared: None,
            #[cfg(feature = "metrics")]
            lockouts: std::sync::OnceLock::new(),
        }
    }

    /// Counts each lock this guard puts on an (account, source) pair on `lockouts`.
    #[cfg(feature = "metrics")]
    pub(crate) fn count_lockouts_on(&self, lockouts: ::metrics::Counter) {
        let _ = self.lockouts.set(lockouts);
    }

    /// Counts attempts in Redis too, shared by every replica naming the same Redis and prefix
    /// (see [`RedisLockout`](crate::RedisLockout)).
    #[cfg(feature = "redis")]
    pub(crate) fn shared(mut self, shared: Option<Arc<redis::SharedPasswords>>) -> Self {
        self.shared = shared;
        self
    }

    /// Starts an attempt to sign in to `account` (compared case-insensitively) from `addr`,
    /// with the browser's device id if its device cookie vouches for the account. The attempt
    /// counts as a failure from now on, until [`Attempt::succeeded`] gives it back; `Err` is how
    /// long to wait when the attempt may not be made at all.
    ///
    /// When the guard is shared, Redis decides (one script call checks and counts the attempt
    /// against every replica's attempts), and an admitted attempt is counted in this replica's
    /// tables as well, so that they are current when Redis stops answering. When Redis does not
    /// answer in time the tables decide (a warning is logged at most every 10 s).
    pub(crate) async fn begin(
        &self,
        account: &str,
        addr: Option<IpAddr>,
        device: Option<[u8; 16]>,
    ) -> Result<Attempt<'_>, Duration> {
        self.begin_at(account, addr, device, Now::current()).await
    }

    async fn begin_at(
        &self,
        account: &str,
        addr: Option<IpAddr>,
        device: Option<[u8; 16]>,
        now: Now,
    ) -> Result<Attempt<'_>, Duration> {
        let mut attempt = Attempt {
            guard: self,
            account: account.to_ascii_lowercase().into_boxed_str(),
            source: match device {
                Some(id) => Source::Device(id),
                None => Source::Address(address_key(addr.unwrap_or(Ipv4Addr::UNSPECIFIED.into()))),
            },
            address: addr.map(address_key),
            // Resolved already until it is reserved below: a refused attempt counts nothing.
            done: true,
            #[cfg(feature = "redis")]
            shared: None,
        };
        if self.policy.is_disabled() {
            return Ok(attempt);
        }
        #[cfg(feature = "redis")]
        if let Some(shared) = &self.shared {
            let keys = shared.keys(&attempt.account, attempt.source, attempt.address);
            match shared.begin(&keys, &self.policy, now.unix_ms).await {
                Ok(Ok(())) => {
                    // Redis counted it; so do the tables, whatever they would say.
                    let _ = self.step(&attempt, now.instant, Step::Mirror);
                    attempt.shared = Some(redis::SharedAttempt::new(shared.clone(), keys));
                    attempt.done = false;
                    return Ok(attempt);
                }
                Ok(Err(wait)) => return Err(wait),
                // Not answered (already logged): the tables decide alone.
                Err(()) => {}
            }
        }
        self.step(&attempt, now.instant, Step::Decide)?;
        attempt.done = false;
        Ok(attempt)
    }

    /// Checks whether `attempt` may start and counts it in this replica's tables, or only
    /// counts it.
    fn step(&self, attempt: &Attempt<'_>, now: Instant, step: Step) -> Result<(), Duration> {
        let policy = self.policy;
        let trusted = matches!(attempt.source, Source::Device(_));
        let source_party = self.hasher.hash_one(attempt.source);
        let account_party = self.hasher.hash_one(&attempt.account);
        let mut tables = lock(&self.tables);
        let GuardTables {
            pairs,
            accounts,
            addresses,
        } = &mut *tables;
        // Check everything first, then reserve, so a refusal consumes nothing.
        let mut pair = pairs.entry(
            (attempt.account.clone(), attempt.source),
            || Count::fresh(now),
            |c| c.stale(now, &policy),
        );
        if let Some(pair) = pair.as_deref_mut() {
            pair.roll(now, &policy);
            if step == Step::Decide {
                if let Some(wait) = pair.locked(now) {
                    return Err(wait);
                }
                if pair.failures >= policy.max_failures {
                    // Every attempt of this window is spent or still being verified.
                    return Err(policy.window.saturating_sub(now - pair.window_start));
                }
            }
        }
        let mut spreads: [Option<(&mut Spread, u64)>; 2] = [None, None];
        if !trusted {
            spreads[0] = accounts
                .entry(
                    attempt.account.clone(),
                    || Spread::fresh(now),
                    |s| s.count.stale(now, &policy),
                )
                .map(|s| (s, source_party));
            if let Some(address) = attempt.address {
                spreads[1] = addresses
                    .entry(
                        address,
                        || Spread::fresh(now),
                        |s| s.count.stale(now, &policy),
                    )
                    .map(|s| (s, account_party));
            }
        }
        for (spread, _) in spreads.iter_mut().flatten() {
            spread.roll(now, &policy);
            if step == Step::Decide {
                spread.admits(now)?;
            }
        }
        if let Some(pair) = pair {
            pair.failures = pair.failures.saturating_add(1);
        }
        for (spread, party) in spreads.into_iter().flatten() {
            spread.reserve(party, now, &policy);
        }
        Ok(())
    }

    /// Resolves `attempt` in this replica's tables; returns how long its pair is now locked,
    /// if this failure locked it.
    fn resolve_local(
        &self,
        attempt: &Attempt<'_>,
        resolution: Resolution,
        now: Instant,
    ) -> Option<Duration> {
        let policy = &self.policy;
        let mut tables = lock(&self.tables);
        let GuardTables {
            pairs,
            accounts,
            addresses,
        } = &mut *tables;
        let key = (attempt.account.clone(), attempt.source);
        let mut wait = None;
        match resolution {
            Resolution::Succeeded => {
                pairs.entries.remove(&key);
            }
            Resolution::Abandoned => {
                if let Some(pair) = pairs.entries.get_mut(&key) {
                    pair.failures = pair.failures.saturating_sub(1);
                }
            }
            Resolution::Failed => {
                if let Some(pair) = pairs.entries.get_mut(&key)
                    && pair.locked(now).is_none()
                    && pair.failures >= policy.max_failures
                {
                    pair.lock(now, policy);
                    wait = Some(policy.duration);
                    #[cfg(feature = "metrics")]
                    if let Some(lockouts) = self.lockouts.get() {
                        lockouts.increment(1);
                    }
                }
            }
        }
        if matches!(attempt.source, Source::Address(_)) {
            let spreads = [
                accounts.entries.get_mut(&attempt.account),
                attempt.address.and_then(|a| addresses.entries.get_mut(&a)),
            ];
            for spread in spreads.into_iter().flatten() {
                match resolution {
                    Resolution::Failed => spread.failed(now, policy),
                    Resolution::Succeeded | Resolution::Abandoned => spread.give_back(),
                }
            }
        }
        wait
    }
}

/// A password attempt that counts as a failure until it is resolved. Dropping it unresolved
/// (the request was abandoned while the password was being checked) leaves it counted, and
/// resolves it as failed (in Redis on a task of its own).
#[derive(Debug)]
pub(crate) struct Attempt<'a> {
    guard: &'a PasswordGuard,
    account: Box<str>,
    source: Source,
    address: Option<IpAddr>,
    done: bool,
    /// Where the attempt is counted in Redis, when it is.
    #[cfg(feature = "redis")]
    shared: Option<redis::SharedAttempt>,
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resolution {
    Succeeded,
    Failed,
    Abandoned,
}

impl Attempt<'_> {
    /// The password was right: the pair's failures are forgiven (a user who mistyped twice
    /// starts afresh) and this attempt is given back to the account and address. Earlier
    /// failures of *other* sources stay: a legitimate sign-in must not reset a guesser's count.
    pub(crate) async fn succeeded(mut self) {
        self.resolve(Resolution::Succeeded, Now::current()).await;
    }

    /// The password was wrong; returns how long the pair is now locked, if it is.
    pub(crate) async fn failed(mut self) -> Option<Duration> {
        self.resolve(Resolution::Failed, Now::current()).await
    }

    /// The password could not be checked (the server was busy, the store failed): the attempt
    /// is given back entirely.
    pub(crate) async fn abandon(mut self) {
        self.resolve(Resolution::Abandoned, Now::current()).await;
    }

    /// Resolves the attempt in the tables, then in Redis if it was counted there (Redis's answer
    /// then decides). The Redis step runs on a task of its own, so that it completes even when
    /// the request is abandoned meanwhile.
    async fn resolve(&mut self, resolution: Resolution, now: Now) -> Option<Duration> {
        if std::mem::replace(&mut self.done, true) {
            return None;
        }
        let local = self.guard.resolve_local(self, resolution, now.instant);
        #[cfg(feature = "redis")]
        if let Some(shared) = self.shared.take()
            && let Ok(common) = shared
                .resolve(resolution, self.guard.policy, now.unix_ms)
                .await
        {
            return common;
        }
        local
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let now = Now::current();
        self.guard
            .resolve_local(self, Resolution::Failed, now.instant);
        #[cfg(feature = "redis")]
        if let Some(shared) = self.shared.take() {
            shared.resolve_later(Resolution::Failed, self.guard.policy, now.unix_ms);
        }
    }
}

#[cfg(feature = "redis")]
pub(crate) mod redis;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::FailureThrottle;

    fn policy(max: u32) -> Lockout {
        Lockout::new(max, Duration::from_secs(60), Duration::from_secs(300))
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[cfg(feature = "metrics")]
    #[tokio::test]
    async fn each_lock_is_counted_once() {
        let metrics = crate::metrics::PrometheusMetrics::new();
        let registrar = metrics.for_server("password-test");
        let guard = PasswordGuard::new(policy(3));
        guard.count_lockouts_on(crate::metrics::lockouts(&registrar, "password"));
        let addr = Some(ip("10.0.0.9"));
        let mut locked = 0;
        for _ in 0..6 {
            if let Ok(attempt) = guard.begin("bob", addr, None).await
                && attempt.failed().await.is_some()
            {
                locked += 1;
            }
        }
        assert_eq!(
            locked, 1,
            "the third failure locks; later attempts are refused"
        );
        let series = r#"mcp_gatekeeper_lockouts_total{server="password-test",kind="password"} 1"#;
        let text = metrics.render();
        assert!(text.lines().any(|l| l == series), "{text}");
    }

    #[tokio::test]
    async fn disabled_never_throttles_or_locks() {
        let throttle = FailureThrottle::new(Lockout::disabled());
        let guard = PasswordGuard::new(Lockout::disabled());
        for _ in 0..1000 {
            assert_eq!(throttle.record_failure(ip("10.0.0.1")), None);
            let attempt = guard
                .begin("alice", Some(ip("10.0.0.1")), None)
                .await
                .unwrap();
            assert_eq!(attempt.failed().await, None);
        }
    }

    #[tokio::test]
    async fn attempts_are_counted_before_they_are_verified() {
        let guard = PasswordGuard::new(policy(10));
        let addr = Some(ip("10.0.0.1"));
        // A hundred parallel attempts: ten may be verified, the rest are refused at once.
        let mut admitted = Vec::new();
        for _ in 0..100 {
            admitted.extend(guard.begin("alice", addr, None).await.ok());
        }
        assert_eq!(admitted.len(), 10);
        let mut locked = None;
        for attempt in admitted {
            locked = locked.or(attempt.failed().await);
        }
        assert_eq!(locked, Some(Duration::from_secs(300)));
        assert!(
            guard.begin("ALICE", addr, None).await.is_err(),
            "case-insensitive"
        );
    }

    #[tokio::test]
    async fn a_success_forgives_its_pair_and_gives_its_attempt_back() {
        let guard = PasswordGuard::new(policy(3));
        let addr = Some(ip("10.0.0.1"));
        for _ in 0..2 {
            assert_eq!(
                guard
                    .begin("alice", addr, None)
                    .await
                    .unwrap()
                    .failed()
                    .await,
                None
            );
        }
        guard
            .begin("alice", addr, None)
            .await
            .unwrap()
            .succeeded()
            .await;
        for _ in 0..2 {
            assert_eq!(
                guard
                    .begin("alice", addr, None)
                    .await
                    .unwrap()
                    .failed()
                    .await,
                None
            );
        }
        assert!(
            guard
                .begin("alice", addr, None)
                .await
                .unwrap()
                .failed()
                .await
                .is_some()
        );
        assert!(guard.begin("alice", addr, None).await.is_err());
    }

    #[tokio::test]
    async fn abandoned_attempts_are_given_back_and_dropped_ones_count() {
        let guard = PasswordGuard::new(policy(2));
        let addr = Some(ip("10.0.0.1"));
        for _ in 0..5 {
            guard
                .begin("alice", addr, None)
                .await
                .unwrap()
                .abandon()
                .await;
        }
        drop(guard.begin("alice", addr, None).await.unwrap());
        drop(guard.begin("alice", addr, None).await.unwrap());
        assert!(
            guard.begin("alice", addr, None).await.is_err(),
            "dropped = failed"
        );
    }

    #[tokio::test]
    async fn one_guesser_locks_only_its_own_pair() {
        let guard = PasswordGuard::new(policy(3));
        let guesser = Some(ip("10.0.0.66"));
        for _ in 0..3 {
            let _ = guard
                .begin("alice", guesser, None)
                .await
                .unwrap()
                .failed()
                .await;
        }
        assert!(guard.begin("alice", guesser, None).await.is_err());
        // Alice elsewhere, and Bob at the guesser's address, are not affected.
        for _ in 0..5 {
            guard
                .begin("alice", Some(ip("10.0.0.7")), None)
                .await
                .unwrap()
                .succeeded()
                .await;
            guard
                .begin("bob", guesser, None)
                .await
                .unwrap()
                .succeeded()
                .await;
        }
    }

    #[tokio::test]
    async fn guessing_from_several_addresses_slows_the_account_for_unknown_browsers_only() {
        let guard = PasswordGuard::new(policy(4));
        for n in 1..=2 {
            let addr = Some(ip(&format!("10.0.1.{n}")));
            for _ in 0..2 {
                let _ = guard
                    .begin("alice", addr, None)
                    .await
                    .unwrap()
                    .failed()
                    .await;
            }
        }
        // Slow mode: one attempt from an unknown source per 300 s / 4, the first one interval
        // after the failure that started it.
        let wait = guard
            .begin("alice", Some(ip("10.0.2.2")), None)
            .await
            .unwrap_err();
        assert!(wait <= Duration::from_secs(75) && wait > Duration::from_secs(70));
        // A browser that signed in to the account before is never slowed.
        for _ in 0..20 {
            guard
                .begin("alice", Some(ip("10.0.2.2")), Some([7; 16]))
                .await
                .unwrap()
                .succeeded()
                .await;
        }
        // Other accounts are not slowed.
        guard
            .begin("bob", Some(ip("10.0.2.2")), None)
            .await
            .unwrap()
            .succeeded()
            .await;
    }

    #[tokio::test]
    async fn spraying_many_accounts_slows_the_address_for_unknown_browsers_only() {
        let guard = PasswordGuard::new(policy(4));
        let sprayer = Some(ip("10.0.3.1"));
        for account in ["a", "b", "c", "d"] {
            let _ = guard
                .begin(account, sprayer, None)
                .await
                .unwrap()
                .failed()
                .await;
        }
        assert!(guard.begin("f", sprayer, None).await.is_err());
        assert!(guard.begin("f", sprayer, Some([1; 16])).await.is_ok());
        assert!(guard.begin("f", Some(ip("10.0.3.2")), None).await.is_ok());
    }
}
