//! How much one caller has in flight at once: tool calls, and open event streams.
//!
//! A rate limit bounds how often a caller starts work; it does not bound how much of it runs at
//! once. A tool that takes a minute, called ten times a second, holds six hundred calls; a
//! client that opens event streams and never closes them holds as many connections. Here each
//! caller has a count of what it holds, taken when the work starts and given back when the
//! [`Permit`] drops, whichever way the work ends (completion, cancellation, a disconnected
//! client): a permit is a value, so no path can forget to release it.
//!
//! A count exists only while it is above zero, so the tables hold at most one entry per caller
//! with something in flight: bounded by the work itself, never by how many callers came before.

use std::{
    collections::HashMap,
    hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState},
    net::IpAddr,
    sync::{Arc, LazyLock, Mutex},
};

use crate::{AuthMethod, Principal};

/// Most tool calls one caller may have in flight, all tools together, unless configured.
pub(crate) const DEFAULT_CALLS_PER_CALLER: u32 = 32;
/// Most open event streams of one caller, unless configured: room for a stream per call in
/// flight and for its sessions' `GET` streams.
pub(crate) const DEFAULT_STREAMS_PER_CALLER: u32 = 64;

/// `limit` if it allows anything; the error names the `setting`.
pub(crate) fn checked(setting: &str, limit: u32) -> Result<u32, crate::ConfigError> {
    if limit == 0 {
        return Err(crate::ConfigError::invalid(format!(
            "{setting} must be at least 1"
        )));
    }
    Ok(limit)
}

/// Tables per limit, picked by the low bits of the key: threads counting different callers
/// rarely wait for one another.
const SHARDS: usize = 16;

/// Counts of what each caller has in flight, each at most `limit`.
pub(crate) struct InFlight {
    limit: u32,
    shards: Box<[Shard]>,
}

/// One table and its lock, alone on a cache line.
#[repr(align(64))]
#[derive(Default)]
struct Shard(Mutex<Counts>);

/// Counts by key. The keys are already random-keyed hashes (caller ids, hashed addresses) that
/// no caller can steer, so they are used as their own hash instead of hashing them again.
type Counts = HashMap<u64, u32, BuildHasherDefault<KeyIsHash>>;

/// The hasher of [`Counts`]: the key itself.
#[derive(Default)]
struct KeyIsHash(u64);

impl Hasher for KeyIsHash {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys are hashed here; fold anything else in rather than panic.
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }

    fn write_u64(&mut self, key: u64) {
        self.0 = key;
    }
}

impl std::fmt::Debug for InFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InFlight")
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl InFlight {
    /// Counts allowing each caller `limit` at once (at least one).
    pub(crate) fn new(limit: u32) -> Arc<Self> {
        Arc::new(Self {
            limit: limit.max(1),
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
        })
    }

    /// The most one caller may have in flight.
    pub(crate) fn limit(&self) -> u32 {
        self.limit
    }

    fn shard(&self, key: InFlightKey) -> &Mutex<Counts> {
        // The top bits pick the shard: the table inside indexes by the low ones.
        &self.shards[(key.0 >> 60) as usize % SHARDS].0
    }

    /// Counts one more for `key`, or `None` when it holds `limit` already.
    pub(crate) fn try_acquire(self: &Arc<Self>, key: InFlightKey) -> Option<Permit> {
        let mut counts = self.shard(key).lock().unwrap_or_else(|e| e.into_inner());
        let count = counts.entry(key.0).or_insert(0);
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        drop(counts);
        Some(Permit {
            counts: self.clone(),
            key,
        })
    }

    /// Counts one more for `key` whatever it holds (for what is bounded elsewhere, and only
    /// counted here so that the limit of what is refused sees it).
    pub(crate) fn acquire(self: &Arc<Self>, key: InFlightKey) -> Permit {
        let mut counts = self.shard(key).lock().unwrap_or_else(|e| e.into_inner());
        *counts.entry(key.0).or_insert(0) += 1;
        drop(counts);
        Permit {
            counts: self.clone(),
            key,
        }
    }

    /// What `key` holds now.
    #[cfg(test)]
    pub(crate) fn held(&self, key: InFlightKey) -> u32 {
        let counts = self.shard(key).lock().unwrap_or_else(|e| e.into_inner());
        counts.get(&key.0).copied().unwrap_or(0)
    }

    /// How many callers hold something now.
    #[cfg(test)]
    fn callers(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.0.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }

    fn release(&self, key: InFlightKey) {
        let mut counts = self.shard(key).lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = counts.get_mut(&key.0) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&key.0);
            }
        }
    }
}

/// Who a count belongs to: the caller, or for anonymous callers (who share one caller id) their
/// address, IPv6 by its /64 network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct InFlightKey(u64);

impl InFlightKey {
    /// The key of `principal` calling from `addr`.
    pub(crate) fn of(principal: &Principal, addr: Option<IpAddr>) -> Self {
        match (principal.method(), addr) {
            (AuthMethod::Anonymous, Some(addr)) => {
                static ADDRESSES: LazyLock<RandomState> = LazyLock::new(RandomState::new);
                Self(ADDRESSES.hash_one(crate::auth::lockout::address_key(addr)))
            }
            _ => Self(principal.caller_id().get()),
        }
    }
}

/// One unit of a caller's count, given back when dropped.
#[derive(Debug)]
pub(crate) struct Permit {
    counts: Arc<InFlight>,
    key: InFlightKey,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.counts.release(self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u64) -> InFlightKey {
        InFlightKey(n)
    }

    #[test]
    fn a_caller_holds_at_most_the_limit_and_gets_it_back_on_drop() {
        let counts = InFlight::new(2);
        let a = counts.try_acquire(key(1)).unwrap();
        let b = counts.try_acquire(key(1)).unwrap();
        assert!(counts.try_acquire(key(1)).is_none());
        // Another caller is not affected.
        let other = counts.try_acquire(key(2)).unwrap();
        drop(a);
        let c = counts.try_acquire(key(1)).unwrap();
        assert_eq!(counts.held(key(1)), 2);
        drop((b, c, other));
        assert_eq!(counts.held(key(1)), 0);
        assert_eq!(counts.callers(), 0, "no entry outlives its last permit");
    }

    #[test]
    fn the_limit_is_exact_under_concurrency() {
        let counts = InFlight::new(7);
        let held: Vec<Option<Permit>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..64)
                .map(|_| scope.spawn(|| counts.try_acquire(key(9))))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(held.iter().filter(|p| p.is_some()).count(), 7);
        drop(held);
        assert_eq!(counts.callers(), 0);
    }

    #[test]
    fn anonymous_callers_count_per_address() {
        let anonymous = Principal::builder(AuthMethod::Anonymous, "anonymous").build();
        let here = Some("127.0.0.2".parse().unwrap());
        let there = Some("127.0.0.3".parse().unwrap());
        assert_ne!(
            InFlightKey::of(&anonymous, here),
            InFlightKey::of(&anonymous, there)
        );
        let net_a = Some("2001:db8::1".parse().unwrap());
        let net_b = Some("2001:db8::2".parse().unwrap());
        assert_eq!(
            InFlightKey::of(&anonymous, net_a),
            InFlightKey::of(&anonymous, net_b)
        );
        let alice = Principal::builder(AuthMethod::ApiKey, "alice").build();
        assert_eq!(
            InFlightKey::of(&alice, here),
            InFlightKey::of(&alice, there)
        );
    }
}
