//! Per-tool, per-caller rate limits (GCRA).
//!
//! Each rate-limited tool owns one keyed limiter; the key is the caller
//! ([`Principal::caller_id`](crate::Principal::caller_id)). The state of a caller is one number,
//! its theoretical arrival time (TAT): a call at `now` passes when `max(TAT, now) - now` is
//! within the burst tolerance, and then pushes the TAT one emission interval further. A check
//! runs under the lock of one of [`SHARDS`] small tables, so the limit is exact under
//! concurrency: with `rate = 10`, exactly 10 of 100 simultaneous calls get through.
//!
//! The tables are our own open-addressing tables rather than a general-purpose map, built so
//! that a check with a million tracked callers, whose state is mostly out of cache, costs one
//! cache miss:
//! - a bucket is one 64-byte cache line of four (caller id, TAT) slots, so key and value come
//!   in one line where a map with separate control bytes costs two misses;
//! - a table is at most half full, so a caller is almost always in its home bucket.
//!
//! Caller ids are already uniformly distributed random-keyed hashes, so they index the tables
//! directly. `table` holds the table.

use std::{
    sync::{LazyLock, Mutex},
    time::{Duration, Instant},
};

use crate::{Rate, principal::CallerId};

pub(crate) mod in_flight;
#[cfg(feature = "redis")]
pub(crate) mod redis;
mod table;

use table::{EMPTY, Table};

/// Tables per limiter, picked by the low bits of the caller id.
const SHARDS: usize = 16;

/// The clock: nanoseconds since the first use, monotonic.
fn now_ns() -> u64 {
    static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);
    EPOCH.elapsed().as_nanos() as u64
}

/// The limiter of one tool.
pub(crate) struct ToolLimiter {
    rate: Rate,
    /// Nanoseconds between two calls at the sustained rate.
    emission: u64,
    /// How far ahead of now a caller's TAT may be: the burst minus one call.
    tolerance: u64,
    shards: Box<[Shard]>,
}

/// One table and its lock, alone on a cache line: threads checking callers of different
/// shards do not pass a shared line back and forth.
#[repr(align(64))]
struct Shard(Mutex<Table>);

impl ToolLimiter {
    /// A limiter for `rate`, or `None` if the rate cannot be represented (zero calls, or more
    /// than one call per nanosecond) — the macro rejects both at compile time.
    pub(crate) fn new(rate: Rate) -> Option<Self> {
        if rate.calls == 0 {
            return None;
        }
        let emission = u64::try_from(rate.per.as_nanos() / u128::from(rate.calls)).ok()?;
        if emission == 0 {
            return None;
        }
        let tolerance = emission.checked_mul(u64::from(rate.calls - 1))?;
        Some(Self {
            rate,
            emission,
            tolerance,
            shards: (0..SHARDS)
                .map(|_| Shard(Mutex::new(Table::new())))
                .collect(),
        })
    }

    /// The rate this limiter enforces.
    pub(crate) fn rate(&self) -> Rate {
        self.rate
    }

    /// Counts a call by `caller`; `Err` holds how long until the next call would pass.
    pub(crate) fn check(&self, caller: CallerId) -> Result<(), Duration> {
        // The caller id 0 is stored as 1: two callers sharing a budget once in 2^64 is an
        // acceptable price for not storing a flag.
        let key = caller.get().max(EMPTY + 1);
        let mut table = self.shard(key).lock().unwrap_or_else(|e| e.into_inner());
        // The clock is read under the lock, so TATs of one caller are updated in time order.
        let now = now_ns();
        let stored = table.tat(key, now);
        let tat = (*stored).max(now);
        let ahead = tat - now;
        if ahead > self.tolerance {
            return Err(Duration::from_nanos(ahead - self.tolerance));
        }
        *stored = tat + self.emission;
        Ok(())
    }

    /// Drops the state of callers whose budget is full again (their TAT has passed): they are
    /// indistinguishable from callers never seen. Called periodically, so idle callers cost
    /// no memory.
    pub(crate) fn forget_idle_callers(&self) {
        for Shard(shard) in self.shards.iter() {
            let now = now_ns();
            let mut table = shard.lock().unwrap_or_else(|e| e.into_inner());
            table.retain(|tat| tat > now);
        }
    }

    fn shard(&self, key: u64) -> &Mutex<Table> {
        // The table index uses the high bits multiplied by its size; take the shard from the
        // low bits so the two stay independent.
        &self.shards[(key as usize) % SHARDS].0
    }

    /// How many callers the limiter tracks (tests).
    #[cfg(test)]
    pub(crate) fn tracked_callers(&self) -> usize {
        self.shards
            .iter()
            .map(|Shard(s)| s.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }
}

/// Whole seconds a client should wait, rounded up so that retrying after it always passes.
pub(crate) fn retry_after_seconds(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn per_minute(calls: u32) -> ToolLimiter {
        ToolLimiter::new(Rate {
            calls,
            per: Duration::from_secs(60),
        })
        .unwrap()
    }

    #[test]
    fn allows_the_burst_then_refuses_with_a_wait() {
        let limiter = per_minute(10);
        let alice = CallerId::of("jwt:alice");
        for _ in 0..10 {
            assert!(limiter.check(alice).is_ok());
        }
        let wait = limiter.check(alice).unwrap_err();
        assert!(
            wait > Duration::from_secs(5) && wait <= Duration::from_secs(6),
            "{wait:?}"
        );
        assert_eq!(retry_after_seconds(wait), 6);
    }

    #[test]
    fn callers_have_separate_budgets() {
        let limiter = per_minute(1);
        assert!(limiter.check(CallerId::of("a")).is_ok());
        assert!(limiter.check(CallerId::of("b")).is_ok());
        assert!(limiter.check(CallerId::of("a")).is_err());
        assert_eq!(limiter.tracked_callers(), 2);
    }

    #[test]
    fn exact_under_contention() {
        let limiter = std::sync::Arc::new(per_minute(10));
        let caller = CallerId::of("api_key:bot");
        let passed: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let limiter = limiter.clone();
                    s.spawn(move || (0..25).filter(|_| limiter.check(caller).is_ok()).count())
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(passed, 10);
    }

    #[test]
    fn each_shard_has_its_own_cache_lines() {
        assert_eq!(align_of::<Shard>(), 64);
        assert!(size_of::<Shard>().is_multiple_of(64));
    }

    #[test]
    fn unrepresentable_rates_are_refused() {
        assert!(
            ToolLimiter::new(Rate {
                calls: 0,
                per: Duration::from_secs(1)
            })
            .is_none()
        );
        assert!(
            ToolLimiter::new(Rate {
                calls: u32::MAX,
                per: Duration::from_secs(1)
            })
            .is_none()
        );
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_seconds(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_seconds(Duration::from_secs(2)), 2);
        assert_eq!(retry_after_seconds(Duration::ZERO), 0);
    }

    #[test]
    fn many_callers_grow_the_tables_and_keep_their_budgets() {
        let limiter = per_minute(2);
        let callers: Vec<CallerId> = (0..20_000)
            .map(|i| CallerId::of(&format!("jwt:u{i}")))
            .collect();
        for &c in &callers {
            assert!(limiter.check(c).is_ok());
            assert!(limiter.check(c).is_ok());
        }
        assert_eq!(limiter.tracked_callers(), callers.len());
        for &c in &callers {
            assert!(
                limiter.check(c).is_err(),
                "each caller's burst of 2 is spent"
            );
        }
    }

    #[test]
    fn idle_callers_are_forgotten_busy_ones_kept() {
        let limiter = ToolLimiter::new(Rate {
            calls: 1,
            per: Duration::from_millis(50),
        })
        .unwrap();
        let busy = ToolLimiter::new(Rate {
            calls: 1,
            per: Duration::from_secs(3600),
        })
        .unwrap();
        for i in 0..100 {
            assert!(limiter.check(CallerId::of(&format!("a{i}"))).is_ok());
            assert!(busy.check(CallerId::of(&format!("a{i}"))).is_ok());
        }
        std::thread::sleep(Duration::from_millis(60));
        limiter.forget_idle_callers();
        busy.forget_idle_callers();
        assert_eq!(limiter.tracked_callers(), 0, "every budget is full again");
        assert_eq!(busy.tracked_callers(), 100);
        assert!(
            busy.check(CallerId::of("a7")).is_err(),
            "state survives the rebuild"
        );
    }
}
