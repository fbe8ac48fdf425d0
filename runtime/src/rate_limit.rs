//! Per-tool, per-caller rate limits (GCRA).
//!
//! Each rate-limited tool owns one keyed limiter; the key is the caller
//! ([`Principal::caller_id`](crate::Principal::caller_id)). A check is one lock-free
//! compare-and-swap on the caller's cell, so the limit is exact under concurrency: with
//! `rate = 10`, exactly 10 of 100 simultaneous calls get through.

use std::{
    hash::{BuildHasherDefault, Hasher},
    num::NonZeroU32,
    time::Duration,
};

use governor::{
    Quota, RateLimiter,
    clock::{Clock, DefaultClock},
    state::keyed::DashMapStateStore,
};

use crate::{Rate, principal::CallerId};

type KeyedLimiter =
    RateLimiter<CallerId, DashMapStateStore<CallerId, BuildHasherDefault<PreHashed>>, DefaultClock>;

/// Caller ids are already uniformly distributed hashes: hashing them again would only cost time.
#[derive(Default)]
struct PreHashed(u64);

impl Hasher for PreHashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// The limiter of one tool.
pub(crate) struct ToolLimiter {
    rate: Rate,
    limiter: KeyedLimiter,
    clock: DefaultClock,
}

impl ToolLimiter {
    /// A limiter for `rate`, or `None` if the rate cannot be represented (zero calls, or more
    /// than one call per nanosecond) — the macro rejects both at compile time.
    pub(crate) fn new(rate: Rate) -> Option<Self> {
        let calls = NonZeroU32::new(rate.calls)?;
        let interval = rate.per.checked_div(rate.calls)?;
        let quota = Quota::with_period(interval)?.allow_burst(calls);
        let clock = DefaultClock::default();
        Some(Self {
            rate,
            limiter: RateLimiter::new(quota, DashMapStateStore::default(), clock.clone()),
            clock,
        })
    }

    /// The configured rate.
    pub(crate) fn rate(&self) -> Rate {
        self.rate
    }

    /// Counts one call by `caller`; on refusal, says how long until the next call would pass.
    pub(crate) fn check(&self, caller: CallerId) -> Result<(), Duration> {
        self.limiter
            .check_key(&caller)
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Forgets callers whose budget is full again, bounding memory to active callers.
    pub(crate) fn forget_idle_callers(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    /// How many callers are tracked.
    #[cfg(test)]
    pub(crate) fn tracked_callers(&self) -> usize {
        self.limiter.len()
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
}
