//! The tools' rate limits shared by replicas through Redis (feature `redis`).
//!
//! The same GCRA as the local limiter, run as one Lua script inside Redis, so that a check and
//! its update are one atomic step however many replicas ask at once: with `rate = 10`, exactly
//! 10 of 100 simultaneous calls spread over any number of replicas pass. The caller passes the
//! time (wall clock, microseconds since the Unix epoch) rather than the script reading `TIME`:
//! a script's result then depends on its arguments alone, which is what Redis replicates and
//! what tests can drive. Replicas must therefore keep their clocks in step (NTP); a replica
//! whose clock runs ahead by `d` spends a caller's budget `d` early, never more of it.
//!
//! A key is `<prefix>rl:` and 32 hex digits of HMAC-SHA256(hash key, tool, caller key). The
//! caller key (`method:subject`, `method:issuer subject`) holds no secret — a principal never
//! does — but it names people; with a configured hash key a Redis dump does not. Every key
//! carries a `PEXPIRE` that ends when the caller's budget is full again, so idle callers cost
//! Redis nothing, as they cost the local limiter nothing after housekeeping.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ::redis::Script;

use super::ToolLimiter;
use crate::{
    ConfigError, Principal, Rate,
    redis_link::{RedisLink, RedisSettings},
};

/// The GCRA step. `KEYS[1]`: the caller's theoretical arrival time (TAT) for one tool;
/// `ARGV`: now, the emission interval and the burst tolerance, in microseconds. Returns 0 when
/// the call passes (and stores the new TAT), else the microseconds until one would.
///
/// Numbers go back to Redis through `%d`: Lua 5.1 prints a number with 14 significant digits,
/// and a time in microseconds has 16.
const GCRA: &str = r"
local now = tonumber(ARGV[1])
local emission = tonumber(ARGV[2])
local tolerance = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local ahead = tat - now
if ahead > tolerance then
  return ahead - tolerance
end
local next_tat = tat + emission
local ttl_ms = math.floor((next_tat - now) / 1000) + 1
redis.call('SET', KEYS[1], string.format('%d', next_tat), 'PX', string.format('%d', ttl_ms))
return 0
";

/// What a rate-limited tool does when Redis cannot answer in time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailurePolicy {
    /// Refuse the call (JSON-RPC `-32005`, `data.reason` `rate_limit_unavailable`, retry in
    /// 1 s; audited as `rate_limited` with that reason), and report the server not ready on
    /// `/readyz`. The default: a limit exists because the tool is costly or dangerous, and a
    /// replica that cannot count must not let unbounded calls through. Tools without a rate
    /// limit are not affected.
    #[default]
    Closed,
    /// Count the call in this replica's own limiter instead (audited as `allowed` with reason
    /// `rate_limit_local`): each replica then enforces the full rate on its own, so `n`
    /// replicas let up to `n` times the rate through until Redis answers again. `/readyz` stays
    /// ready.
    FallBackToLocal,
}

/// The tools' rate limits in Redis, shared by every replica that names the same Redis and
/// prefix. Given to [`Gatekeeper::rate_limiter`](crate::Gatekeeper::rate_limiter).
///
/// ```no_run
/// use std::time::Duration;
/// use mcp_gatekeeper::{FailurePolicy, RedisRateLimiter};
///
/// let limiter = RedisRateLimiter::new("redis://127.0.0.1:6379")
///     .prefix("billing-mcp:")
///     .on_unavailable(FailurePolicy::Closed)
///     .timeout(Duration::from_millis(100));
/// ```
///
/// Mistakes (a URL that does not parse, a zero timeout) are reported when the server is
/// built. Nothing connects before the first rate-limited call, and a lost connection is
/// re-established in the background.
// `Debug` shows neither the URL (it may hold a password) nor the hash key (a secret).
#[derive(Clone, Debug)]
pub struct RedisRateLimiter {
    settings: RedisSettings,
    policy: FailurePolicy,
}

impl RedisRateLimiter {
    /// Limits kept in the Redis at `url` (`redis://[user:password@]host:port[/db]`,
    /// `rediss://` over TLS, verified against the system's roots or
    /// [`tls_ca_file`](Self::tls_ca_file)), under the prefix `mcp:`.
    pub fn new(url: &str) -> Self {
        Self {
            settings: RedisSettings::new(url),
            policy: FailurePolicy::default(),
        }
    }

    /// Starts every key with `prefix` (default `mcp:`): servers with different tools sharing
    /// one Redis need different prefixes; replicas of one server need the same.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.settings.prefix = prefix.into();
        self
    }

    /// Verifies a `rediss://` server's certificate against the CA certificates of the PEM file
    /// at `path` (a managed Redis's CA bundle, a private CA) instead of the system's roots. The
    /// file is read when the server is built; a missing one, or a `redis://` URL, fails the
    /// build.
    pub fn tls_ca_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.settings.tls_ca_file = Some(path.into());
        self
    }

    /// What a rate-limited call does when Redis does not answer in time (default
    /// [`FailurePolicy::Closed`]).
    pub fn on_unavailable(mut self, policy: FailurePolicy) -> Self {
        self.policy = policy;
        self
    }

    /// How long a call waits for Redis before the failure policy applies (default 1 s). It
    /// bounds what an unreachable Redis adds to every rate-limited call.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.settings.timeout = timeout;
        self
    }

    /// Keys the hash that names a caller's key in Redis (default: no key, a plain hash). With
    /// a secret shared by the replicas, the subjects behind the keys cannot be recovered from
    /// Redis by hashing guessed names.
    pub fn hash_key(mut self, key: impl AsRef<[u8]>) -> Self {
        self.settings.hash_key(key.as_ref());
        self
    }

    /// The state the server shares between its tools, or what is wrong with the settings.
    pub(crate) fn build(self) -> Result<SharedLimits, ConfigError> {
        Ok(SharedLimits {
            link: self.settings.build("rate limits")?,
            script: Script::new(GCRA),
            policy: self.policy,
        })
    }
}

/// What a shared check decided.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Redis counted the call.
    Passed,
    /// Redis did not answer; the local limiter counted the call
    /// ([`FailurePolicy::FallBackToLocal`]).
    PassedLocally,
    /// Over the limit: how long until the next call would pass.
    Limited(Duration),
    /// Redis did not answer and the policy is [`FailurePolicy::Closed`].
    Unavailable,
}

/// A built [`RedisRateLimiter`]: the connection (made at the first call, inside the runtime)
/// and what every check needs.
pub(crate) struct SharedLimits {
    link: RedisLink,
    script: Script,
    policy: FailurePolicy,
}

impl SharedLimits {
    /// Counts a call of `tool` by `caller` against `local`'s rate, in Redis, or as the
    /// failure policy says.
    pub(crate) async fn check(
        &self,
        tool: &str,
        caller: &Principal,
        local: &ToolLimiter,
    ) -> Verdict {
        let (emission, tolerance) = micros(local.rate());
        let key = self.key(tool, caller.caller_key());
        let script = &self.script;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_micros() as u64;
        let asked = self
            .link
            .exchange(|mut connection| async move {
                script
                    .key(&key)
                    .arg(now)
                    .arg(emission)
                    .arg(tolerance)
                    .invoke_async::<u64>(&mut connection)
                    .await
            })
            .await;
        match asked {
            Ok(0) => Verdict::Passed,
            Ok(wait) => Verdict::Limited(Duration::from_micros(wait)),
            Err(error) => match self.policy {
                FailurePolicy::Closed => {
                    self.link.warn(&error, "refusing rate-limited calls");
                    Verdict::Unavailable
                }
                FailurePolicy::FallBackToLocal => {
                    self.link
                        .warn(&error, "counting rate-limited calls in this replica only");
                    match local.check(caller.caller_id()) {
                        Ok(()) => Verdict::PassedLocally,
                        Err(wait) => Verdict::Limited(wait),
                    }
                }
            },
        }
    }

    /// The Redis key of `caller_key`'s budget for `tool`.
    fn key(&self, tool: &str, caller_key: &str) -> String {
        self.link
            .key("rl", &[tool.as_bytes(), b"\0", caller_key.as_bytes()])
    }
}

impl crate::http::ReadinessCheck for SharedLimits {
    fn ready(&self) -> futures::future::BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            match (self.link.ping().await, self.policy) {
                (Err(error), FailurePolicy::Closed) => Err(format!(
                    "rate limiter: Redis at {} unavailable ({error})",
                    self.link.address()
                )),
                // Falling back keeps the replica serving: taking it out of rotation would turn
                // an outage of Redis into an outage of the service.
                _ => Ok(()),
            }
        })
    }
}

/// `rate`'s emission interval and burst tolerance in microseconds, the script's unit (the
/// interval at least 1 µs: a million calls a second per caller is beyond any tool).
fn micros(rate: Rate) -> (u64, u64) {
    let emission = (rate.per.as_micros() / u128::from(rate.calls.max(1))).max(1) as u64;
    let tolerance = emission.saturating_mul(u64::from(rate.calls.saturating_sub(1)));
    (emission, tolerance)
}

#[cfg(test)]
mod tests;
