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

use std::{
    sync::{
        LazyLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use ::redis::{
    Client, Script,
    aio::{ConnectionManager, ConnectionManagerConfig},
};
use sha2::{Digest, Sha256};

use super::ToolLimiter;
use crate::{ConfigError, Principal, Rate};

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
#[derive(Clone)]
pub struct RedisRateLimiter {
    client: Result<Client, String>,
    prefix: String,
    policy: FailurePolicy,
    timeout: Duration,
    hash_key: Vec<u8>,
}

impl std::fmt::Debug for RedisRateLimiter {
    // The URL may hold a password and the hash key is a secret: neither is shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRateLimiter")
            .field("prefix", &self.prefix)
            .field("policy", &self.policy)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// How long a tool call waits for Redis by default.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);

/// At most one warning about an unreachable Redis per this many seconds.
const WARN_EVERY_SECONDS: u64 = 10;

impl RedisRateLimiter {
    /// Limits kept in the Redis at `url` (`redis://[user:password@]host:port[/db]`,
    /// `rediss://` needs a TLS feature of the `redis` crate), under the prefix `mcp:`.
    pub fn new(url: &str) -> Self {
        Self {
            client: Client::open(url).map_err(|e| format!("Redis URL: {e}")),
            prefix: "mcp:".into(),
            policy: FailurePolicy::default(),
            timeout: DEFAULT_TIMEOUT,
            hash_key: Vec::new(),
        }
    }

    /// Starts every key with `prefix` (default `mcp:`): servers with different tools sharing
    /// one Redis need different prefixes; replicas of one server need the same.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
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
        self.timeout = timeout;
        self
    }

    /// Keys the hash that names a caller's key in Redis (default: no key, a plain hash). With
    /// a secret shared by the replicas, the subjects behind the keys cannot be recovered from
    /// Redis by hashing guessed names.
    pub fn hash_key(mut self, key: impl AsRef<[u8]>) -> Self {
        self.hash_key = key.as_ref().to_vec();
        self
    }

    /// The state the server shares between its tools, or what is wrong with the settings.
    pub(crate) fn build(self) -> Result<SharedLimits, ConfigError> {
        let client = self.client.map_err(ConfigError::Invalid)?;
        if self.timeout.is_zero() {
            return Err(ConfigError::invalid(
                "RedisRateLimiter: the timeout must not be zero",
            ));
        }
        let address = client.get_connection_info().addr().to_string();
        Ok(SharedLimits {
            client,
            connection: tokio::sync::OnceCell::new(),
            script: Script::new(GCRA),
            prefix: self.prefix,
            policy: self.policy,
            timeout: self.timeout,
            hash: Hmac::new(&self.hash_key),
            address,
            unavailable: AtomicBool::new(false),
            last_warning: AtomicU64::new(0),
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
    client: Client,
    connection: tokio::sync::OnceCell<ConnectionManager>,
    script: Script,
    prefix: String,
    policy: FailurePolicy,
    timeout: Duration,
    hash: Hmac,
    /// `host:port` for messages (the URL may hold a password).
    address: String,
    /// Whether the last exchange with Redis failed, to log when it answers again.
    unavailable: AtomicBool,
    /// Seconds (since [`started`]) of the last warning, plus one; 0 before the first.
    last_warning: AtomicU64,
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
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_micros() as u64;
        let asked = async {
            let mut connection = self.connection().await?;
            self.script
                .key(&key)
                .arg(now)
                .arg(emission)
                .arg(tolerance)
                .invoke_async::<u64>(&mut connection)
                .await
        };
        match self.bounded(asked).await {
            Ok(0) => Verdict::Passed,
            Ok(wait) => Verdict::Limited(Duration::from_micros(wait)),
            Err(error) => match self.policy {
                FailurePolicy::Closed => {
                    self.warn(&error, "refusing rate-limited calls");
                    Verdict::Unavailable
                }
                FailurePolicy::FallBackToLocal => {
                    self.warn(&error, "counting rate-limited calls in this replica only");
                    match local.check(caller.caller_id()) {
                        Ok(()) => Verdict::PassedLocally,
                        Err(wait) => Verdict::Limited(wait),
                    }
                }
            },
        }
    }

    /// Whether Redis answers a `PING` in time.
    async fn ping(&self) -> Result<(), String> {
        self.bounded(async {
            let mut connection = self.connection().await?;
            ::redis::cmd("PING")
                .query_async::<String>(&mut connection)
                .await
        })
        .await
        .map(drop)
    }

    /// `exchange` within the timeout; notes whether Redis answered.
    async fn bounded<R>(
        &self,
        exchange: impl Future<Output = ::redis::RedisResult<R>>,
    ) -> Result<R, String> {
        let result = match tokio::time::timeout(self.timeout, exchange).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Err(format!("no answer within {:?}", self.timeout)),
        };
        if result.is_ok() && self.unavailable.swap(false, Ordering::Relaxed) {
            tracing::info!(redis = %self.address, "shared rate limits: Redis answers again");
        } else if result.is_err() {
            self.unavailable.store(true, Ordering::Relaxed);
        }
        result
    }

    /// The connection, made at the first use. The manager reconnects by itself after an
    /// error, in the background; a call meanwhile fails fast or waits at most the timeout.
    async fn connection(&self) -> ::redis::RedisResult<ConnectionManager> {
        self.connection
            .get_or_try_init(|| async {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(self.timeout.max(Duration::from_secs(1))))
                    .set_response_timeout(Some(self.timeout))
                    .set_number_of_retries(2)
                    .set_max_delay(Duration::from_secs(1));
                ConnectionManager::new_lazy_with_config(self.client.clone(), config)
            })
            .await
            .cloned()
    }

    /// The Redis key of `caller_key`'s budget for `tool`.
    fn key(&self, tool: &str, caller_key: &str) -> String {
        let digest = self
            .hash
            .of(&[tool.as_bytes(), b"\0", caller_key.as_bytes()]);
        let mut key = String::with_capacity(self.prefix.len() + 3 + 32);
        key.push_str(&self.prefix);
        key.push_str("rl:");
        key.push_str(&hex::encode(&digest[..16]));
        key
    }

    /// Logs that Redis failed, at most once per [`WARN_EVERY_SECONDS`]: an outage under load
    /// would otherwise write one line per call.
    fn warn(&self, error: &str, consequence: &str) {
        let now = started().elapsed().as_secs() + 1;
        let last = self.last_warning.load(Ordering::Relaxed);
        if (last == 0 || now >= last + WARN_EVERY_SECONDS)
            && self
                .last_warning
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                redis = %self.address,
                error,
                "shared rate limits: Redis unavailable, {consequence}"
            );
        }
    }
}

impl crate::http::ReadinessCheck for SharedLimits {
    fn ready(&self) -> futures::future::BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            match (self.ping().await, self.policy) {
                (Err(error), FailurePolicy::Closed) => Err(format!(
                    "rate limiter: Redis at {} unavailable ({error})",
                    self.address
                )),
                // Falling back keeps the replica serving: taking it out of rotation would turn
                // an outage of Redis into an outage of the service.
                _ => Ok(()),
            }
        })
    }
}

/// When the process first warned (the clock of [`SharedLimits::warn`]).
fn started() -> Instant {
    static STARTED: LazyLock<Instant> = LazyLock::new(Instant::now);
    *STARTED
}

/// `rate`'s emission interval and burst tolerance in microseconds, the script's unit (the
/// interval at least 1 µs: a million calls a second per caller is beyond any tool).
fn micros(rate: Rate) -> (u64, u64) {
    let emission = (rate.per.as_micros() / u128::from(rate.calls.max(1))).max(1) as u64;
    let tolerance = emission.saturating_mul(u64::from(rate.calls.saturating_sub(1)));
    (emission, tolerance)
}

/// HMAC-SHA256 (RFC 2104) with its two padded-key blocks already absorbed (also names the
/// shared lockout's keys).
pub(crate) struct Hmac {
    inner: Sha256,
    outer: Sha256,
}

impl Hmac {
    pub(crate) fn new(key: &[u8]) -> Self {
        let mut block = [0u8; 64];
        if key.len() > block.len() {
            block[..32].copy_from_slice(&Sha256::digest(key));
        } else {
            block[..key.len()].copy_from_slice(key);
        }
        let mut inner = Sha256::new();
        inner.update(block.map(|b| b ^ 0x36));
        let mut outer = Sha256::new();
        outer.update(block.map(|b| b ^ 0x5c));
        Self { inner, outer }
    }

    pub(crate) fn of(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut inner = self.inner.clone();
        for part in parts {
            inner.update(part);
        }
        let mut outer = self.outer.clone();
        outer.update(inner.finalize());
        outer.finalize().into()
    }
}

#[cfg(test)]
mod tests;
