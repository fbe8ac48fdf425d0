//! The failure throttle shared by replicas through Redis (feature `redis`).
//!
//! What is shared is the throttle of high-entropy credentials per address (the parent module):
//! a client looping on a wrong API key against one replica is answered `429` by all of them.
//! Only failures reach Redis. A correct credential is never refused whoever failed before, so
//! the throttle is not consulted before a credential is checked and the success path costs no
//! round trip; each failure costs one script call.
//!
//! A key is `<prefix>lo:` and 32 hex digits of HMAC-SHA256(hash key, address): an address is
//! personal data, and with a configured hash key a Redis dump does not reveal it. It holds the
//! failure count of the window (expiring with the window, which starts at the first failure as
//! in the local table) or, once the limit is reached, the marker `x` expiring with the
//! lockout. No credential ever reaches Redis.
//!
//! When Redis does not answer, every replica falls back to its own counters, which are kept up
//! to date all along: failing closed would gain nothing (only failures are throttled, so it
//! could never protect more than a plain `401` does) and falling back keeps each replica's own
//! protection.

use std::{
    net::IpAddr,
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    time::{Duration, Instant},
};

use ::redis::{
    Client, Script,
    aio::{ConnectionManager, ConnectionManagerConfig},
};

use super::{Lockout, address_key};
use crate::{ConfigError, rate_limit::redis::Hmac};

/// One failure. `KEYS[1]`: the address's key; `ARGV`: the window, the limit and the lockout's
/// duration (milliseconds, count, milliseconds). Returns 0 while under the limit, else the
/// milliseconds the address stays throttled.
const FAILURE: &str = r"
local current = redis.call('GET', KEYS[1])
if current == 'x' then
  local left = redis.call('PTTL', KEYS[1])
  if left > 0 then return left end
  return 1
end
local failures = redis.call('INCR', KEYS[1])
if failures == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
if failures >= tonumber(ARGV[2]) then
  redis.call('SET', KEYS[1], 'x', 'PX', ARGV[3])
  return tonumber(ARGV[3])
end
return 0
";

/// The failure throttle in Redis, shared by every replica that names the same Redis and
/// prefix. Given to [`Gatekeeper::shared_lockout`](crate::Gatekeeper::shared_lockout); the
/// limits themselves stay those of [`Gatekeeper::lockout`](crate::Gatekeeper::lockout).
///
/// ```no_run
/// use std::time::Duration;
/// use mcp_gatekeeper::RedisLockout;
///
/// let lockout = RedisLockout::new("redis://127.0.0.1:6379")
///     .prefix("billing-mcp:")
///     .timeout(Duration::from_millis(100));
/// ```
///
/// When Redis does not answer, each replica counts failures on its own (a client is then
/// throttled after the limit *per replica*): nothing is refused because Redis is down, and a
/// replica stays ready. Mistakes (a URL that does not parse, a zero timeout) are reported when
/// the server is built; nothing connects before the first failure.
#[derive(Clone)]
pub struct RedisLockout {
    client: Result<Client, String>,
    prefix: String,
    timeout: Duration,
    hash_key: Vec<u8>,
}

impl std::fmt::Debug for RedisLockout {
    // The URL may hold a password and the hash key is a secret: neither is shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLockout")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// How long a failure waits for Redis by default.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);

/// At most one warning about an unreachable Redis per this many seconds.
const WARN_EVERY_SECONDS: u64 = 10;

impl RedisLockout {
    /// Failures counted in the Redis at `url` (`redis://[user:password@]host:port[/db]`), under
    /// the prefix `mcp:`. The same URL and prefix as a
    /// [`RedisRateLimiter`](crate::RedisRateLimiter) is fine: the keys differ.
    pub fn new(url: &str) -> Self {
        Self {
            client: Client::open(url).map_err(|e| format!("Redis URL: {e}")),
            prefix: "mcp:".into(),
            timeout: DEFAULT_TIMEOUT,
            hash_key: Vec::new(),
        }
    }

    /// Starts every key with `prefix` (default `mcp:`): replicas of one server need the same
    /// prefix; servers that must not throttle each other's clients need different ones.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long a failure waits for Redis before this replica's own count decides (default
    /// 1 s). It bounds what an unreachable Redis adds to a refused request.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Keys the hash that names an address in Redis (default: no key, a plain hash). With a
    /// secret shared by the replicas, addresses cannot be recovered from Redis by hashing
    /// candidates (IPv4 has only 2³² of them).
    pub fn hash_key(mut self, key: impl AsRef<[u8]>) -> Self {
        self.hash_key = key.as_ref().to_vec();
        self
    }

    pub(crate) fn build(self) -> Result<SharedFailures, ConfigError> {
        let client = self.client.map_err(ConfigError::Invalid)?;
        if self.timeout.is_zero() {
            return Err(ConfigError::invalid(
                "RedisLockout: the timeout must not be zero",
            ));
        }
        let address = client.get_connection_info().addr().to_string();
        Ok(SharedFailures {
            client,
            connection: tokio::sync::OnceCell::new(),
            script: Script::new(FAILURE),
            prefix: self.prefix,
            timeout: self.timeout,
            hash: Hmac::new(&self.hash_key),
            address,
            unavailable: AtomicBool::new(false),
            last_warning: AtomicU64::new(0),
            started: Instant::now(),
        })
    }
}

/// A built [`RedisLockout`].
pub(crate) struct SharedFailures {
    client: Client,
    connection: tokio::sync::OnceCell<ConnectionManager>,
    script: Script,
    prefix: String,
    timeout: Duration,
    hash: Hmac,
    /// `host:port` for messages (the URL may hold a password).
    address: String,
    /// Whether the last exchange failed, to log when Redis answers again.
    unavailable: AtomicBool,
    /// Seconds since `started` of the last warning, plus one; 0 before the first.
    last_warning: AtomicU64,
    started: Instant,
}

impl std::fmt::Debug for SharedFailures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedFailures")
            .field("redis", &self.address)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl SharedFailures {
    /// Counts a failure from `addr` in Redis: `Ok` with how long failures from it stay
    /// throttled, if they are; `Err` when Redis did not answer in time (already logged).
    pub(crate) async fn record_failure(
        &self,
        addr: IpAddr,
        policy: &Lockout,
    ) -> Result<Option<Duration>, ()> {
        let key = self.key(addr);
        let millis = |d: Duration| d.as_millis().clamp(1, u128::from(u64::MAX)) as u64;
        let asked = async {
            let mut connection = self.connection().await?;
            self.script
                .key(&key)
                .arg(millis(policy.window))
                .arg(policy.max_failures)
                .arg(millis(policy.duration))
                .invoke_async::<u64>(&mut connection)
                .await
        };
        let answer = match tokio::time::timeout(self.timeout, asked).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Err(format!("no answer within {:?}", self.timeout)),
        };
        match answer {
            Ok(wait) => {
                if self.unavailable.swap(false, Ordering::Relaxed) {
                    tracing::info!(redis = %self.address, "shared lockout: Redis answers again");
                }
                Ok((wait > 0).then(|| Duration::from_millis(wait)))
            }
            Err(error) => {
                self.unavailable.store(true, Ordering::Relaxed);
                self.warn(&error);
                Err(())
            }
        }
    }

    /// The connection, made at the first failure; the manager reconnects in the background.
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

    /// The Redis key of `addr` (normalised as the local table does: IPv6 per /64).
    pub(crate) fn key(&self, addr: IpAddr) -> String {
        let bytes = match address_key(addr) {
            IpAddr::V4(v4) => v4.octets().to_vec(),
            IpAddr::V6(v6) => v6.octets().to_vec(),
        };
        let digest = self.hash.of(&[b"lockout\0", &bytes]);
        let mut key = String::with_capacity(self.prefix.len() + 3 + 32);
        key.push_str(&self.prefix);
        key.push_str("lo:");
        key.push_str(&hex::encode(&digest[..16]));
        key
    }

    /// Logs that Redis failed, at most once per [`WARN_EVERY_SECONDS`]: a flood of wrong
    /// credentials during an outage would otherwise write one line each.
    fn warn(&self, error: &str) {
        let now = self.started.elapsed().as_secs() + 1;
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
                "shared lockout: Redis unavailable, counting failures in this replica only"
            );
        }
    }
}

#[cfg(test)]
mod tests;
