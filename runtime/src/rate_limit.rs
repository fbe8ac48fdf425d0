//! Per-tool, per-caller rate limits (GCRA).
//!
//! Each rate-limited tool owns one keyed limiter; the key is the caller
//! ([`Principal::caller_id`](crate::Principal::caller_id)). The state of a caller is one number,
//! its theoretical arrival time (TAT): a call at `now` passes when `max(TAT, now) - now` is
//! within the burst tolerance, and then pushes the TAT one emission interval further. A check
//! runs under the lock of one of [`SHARDS`] small tables, so the limit is exact under
//! concurrency: with `rate = 10`, exactly 10 of 100 simultaneous calls get through.
//!
//! The tables are our own open-addressing tables of 16-byte slots (caller id, TAT) rather than
//! a general-purpose map: a check with a million tracked callers is one probe into memory that
//! is mostly out of cache, and a slot that holds key and value together costs one cache miss
//! where a map with separate control bytes costs two. Caller ids are already uniformly
//! distributed random-keyed hashes, so they index the tables directly.

use std::{
    sync::{LazyLock, Mutex},
    time::{Duration, Instant},
};

use crate::{Rate, principal::CallerId};

/// Tables per limiter, picked by the top bits of the caller id.
const SHARDS: usize = 16;
/// A table grows (by half) when more than this fraction of its slots is used.
const MAX_LOAD: (usize, usize) = (4, 5);
/// Slots of a table before its first growth.
const INITIAL_SLOTS: usize = 64;
/// Stands for "no caller" in a slot. The caller id 0 is stored as 1 (two callers sharing a
/// budget once in 2^64 is an acceptable price for not storing a flag).
const EMPTY: u64 = 0;

/// The clock: nanoseconds since the first use, monotonic.
fn now_ns() -> u64 {
    static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);
    EPOCH.elapsed().as_nanos() as u64
}

/// One caller's state.
#[derive(Clone, Copy)]
struct Slot {
    caller: u64,
    /// Theoretical arrival time, in [`now_ns`] nanoseconds.
    tat: u64,
}

const VACANT: Slot = Slot {
    caller: EMPTY,
    tat: 0,
};

/// An open-addressing table with linear probing.
struct Table {
    slots: Vec<Slot>,
    used: usize,
}

impl Table {
    fn new() -> Self {
        Self {
            slots: vec![VACANT; INITIAL_SLOTS],
            used: 0,
        }
    }

    /// The slot of `caller`, inserting it (with `tat`) if it is not tracked yet.
    fn slot(&mut self, caller: u64, tat: u64) -> &mut Slot {
        if (self.used + 1) * MAX_LOAD.1 > self.slots.len() * MAX_LOAD.0 {
            self.resize(self.slots.len() + self.slots.len() / 2);
        }
        let index = self.find(caller);
        if self.slots[index].caller == EMPTY {
            self.slots[index] = Slot { caller, tat };
            self.used += 1;
        }
        &mut self.slots[index]
    }

    /// The index of `caller`'s slot, or of the empty slot where it would go.
    fn find(&self, caller: u64) -> usize {
        let len = self.slots.len();
        // Multiply-shift maps the hash onto any table size without a division.
        let mut index = ((u128::from(caller) * len as u128) >> 64) as usize;
        loop {
            let slot = self.slots[index];
            if slot.caller == caller || slot.caller == EMPTY {
                return index;
            }
            index += 1;
            if index == len {
                index = 0;
            }
        }
    }

    /// Rebuilds the table with `len` slots, keeping the callers `keep` accepts.
    fn rebuild(&mut self, len: usize, keep: impl Fn(&Slot) -> bool) {
        let old = std::mem::replace(&mut self.slots, vec![VACANT; len.max(INITIAL_SLOTS)]);
        self.used = 0;
        for slot in old.into_iter().filter(|s| s.caller != EMPTY && keep(s)) {
            let index = self.find(slot.caller);
            self.slots[index] = slot;
            self.used += 1;
        }
    }

    fn resize(&mut self, len: usize) {
        self.rebuild(len, |_| true);
    }
}

/// The limiter of one tool.
pub(crate) struct ToolLimiter {
    rate: Rate,
    /// Nanoseconds between two calls at the sustained rate.
    emission: u64,
    /// How far ahead of now a caller's TAT may be: the burst minus one call.
    tolerance: u64,
    shards: Box<[Mutex<Table>]>,
}

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
            shards: (0..SHARDS).map(|_| Mutex::new(Table::new())).collect(),
        })
    }

    /// The rate this limiter enforces.
    pub(crate) fn rate(&self) -> Rate {
        self.rate
    }

    /// Counts a call by `caller`; `Err` holds how long until the next call would pass.
    pub(crate) fn check(&self, caller: CallerId) -> Result<(), Duration> {
        let key = caller.get().max(1);
        let now = now_ns();
        let mut table = self.shard(key).lock().unwrap_or_else(|e| e.into_inner());
        let slot = table.slot(key, now);
        let tat = slot.tat.max(now);
        let ahead = tat - now;
        if ahead > self.tolerance {
            return Err(Duration::from_nanos(ahead - self.tolerance));
        }
        slot.tat = tat + self.emission;
        Ok(())
    }

    /// Drops the state of callers whose budget is full again (their TAT has passed): they are
    /// indistinguishable from callers never seen. Called periodically, so idle callers cost
    /// no memory.
    pub(crate) fn forget_idle_callers(&self) {
        for shard in self.shards.iter() {
            let now = now_ns();
            let mut table = shard.lock().unwrap_or_else(|e| e.into_inner());
            let live = table
                .slots
                .iter()
                .filter(|s| s.caller != EMPTY && s.tat > now)
                .count();
            let len = (live * MAX_LOAD.1 / MAX_LOAD.0) * 3 / 2;
            table.rebuild(len, |s| s.tat > now);
        }
    }

    fn shard(&self, key: u64) -> &Mutex<Table> {
        // The table index uses the high bits multiplied by its size; take the shard from the
        // low bits so the two stay independent.
        &self.shards[(key as usize) % SHARDS]
    }

    /// How many callers the limiter tracks (tests).
    #[cfg(test)]
    pub(crate) fn tracked_callers(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).used)
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
