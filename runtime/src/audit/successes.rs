//! How many records of successful requests are written: all (the default), one in N, or none.
//! Refusals, lockouts and configuration changes are always written; successes are most of
//! the trail under load (at 35k calls a second, 6 MB of it a second), and an operator may not
//! need each one.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::ConfigError;

/// Which successful calls and requests the audit trail records. Refusals (missing role or
/// scope, rate and concurrency limits, invalid credentials), lockouts and configuration
/// changes are recorded whatever this says.
///
/// Set for a whole server with
/// [`Gatekeeper::audit_successes`](crate::Gatekeeper::audit_successes), for one tool with
/// [`Gatekeeper::audit_successes_of`](crate::Gatekeeper::audit_successes_of).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuditSuccesses {
    /// Every successful call and request (the default).
    #[default]
    All,
    /// One in every N, counted per tool (and for requests that call no tool, per server): a
    /// steady sample whose count, times N, is the traffic. N must be at least 1.
    OneIn(u32),
    /// None.
    None,
}

impl AuditSuccesses {
    pub(crate) fn check(self, setting: &str) -> Result<(), ConfigError> {
        match self {
            AuditSuccesses::OneIn(0) => Err(ConfigError::invalid(format!(
                "{setting}: AuditSuccesses::OneIn(0) samples nothing; use AuditSuccesses::None"
            ))),
            _ => Ok(()),
        }
    }
}

/// Decides, success by success, which are written.
#[derive(Debug)]
pub(crate) struct SuccessSampler {
    /// Write one in `every`; 1: all, 0: none.
    every: u64,
    seen: AtomicU64,
}

impl SuccessSampler {
    pub(crate) fn new(policy: AuditSuccesses) -> Self {
        Self {
            every: match policy {
                AuditSuccesses::All => 1,
                AuditSuccesses::OneIn(n) => u64::from(n),
                AuditSuccesses::None => 0,
            },
            seen: AtomicU64::new(0),
        }
    }

    /// Whether this success is written.
    pub(crate) fn take(&self) -> bool {
        match self.every {
            0 => false,
            // No shared counter to touch when every success is written.
            1 => true,
            every => self
                .seen
                .fetch_add(1, Ordering::Relaxed)
                .is_multiple_of(every),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_in_n_writes_exactly_that_share() {
        let sampler = SuccessSampler::new(AuditSuccesses::OneIn(10));
        let written = (0..1000).filter(|_| sampler.take()).count();
        assert_eq!(written, 100);
        let all = SuccessSampler::new(AuditSuccesses::All);
        assert!((0..100).all(|_| all.take()));
        let none = SuccessSampler::new(AuditSuccesses::None);
        assert!(!(0..100).any(|_| none.take()));
        assert!(AuditSuccesses::OneIn(0).check("x").is_err());
        assert!(AuditSuccesses::OneIn(1).check("x").is_ok());
    }
}
