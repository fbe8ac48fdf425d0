//! The failure throttle shared by replicas through Redis (feature `redis`).
//!
//! What is shared is the throttle of high-entropy credentials per address (the parent module):
//! a client looping on a wrong API key against one replica is answered `429` by all of them.
//! Only failures reach Redis. A correct credential is never refused whoever failed before, so
//! the throttle is not consulted before a credential is checked and the success path costs no
//! round trip; each failure costs one script call.
//!
//! A key is `<prefix>lo:` (`loc:` for the authorization server's client authentications, a
//! throttle of its own as locally) and 32 hex digits of HMAC-SHA256(hash key, address): an
//! address is personal data, and with a configured hash key a Redis dump does not reveal it. It holds the
//! failure count of the window (expiring with the window, which starts at the first failure as
//! in the local table) or, once the limit is reached, the marker `x` expiring with the
//! lockout. No credential ever reaches Redis.
//!
//! When Redis does not answer, every replica falls back to its own counters, which are kept up
//! to date all along: failing closed would gain nothing (only failures are throttled, so it
//! could never protect more than a plain `401` does) and falling back keeps each replica's own
//! protection.
//!
//! The authorization server's password guard is shared through the same [`RedisLockout`]
//! (`AuthorizationServer::shared_lockout`); its script lives with the guard
//! (`password/redis`).

use std::{net::IpAddr, sync::Arc, time::Duration};

use ::redis::Script;

use super::{Lockout, address_key};
use crate::{
    ConfigError,
    redis_link::{RedisLink, RedisSettings},
};

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

/// The failure lockouts in Redis, shared by every replica that names the same Redis and
/// prefix. Given to [`Gatekeeper::shared_lockout`](crate::Gatekeeper::shared_lockout) (the
/// failure throttle of API keys, tokens and client secrets), and, with the `oauth` feature, to
/// `AuthorizationServer::shared_lockout` (its client-secret throttle and its password lockout,
/// per account and source with its slow mode). The limits themselves stay those of
/// [`Gatekeeper::lockout`](crate::Gatekeeper::lockout) and `AuthorizationServer::lockout`.
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
/// When Redis does not answer, each replica counts failures (and password attempts) on its own
/// (a client is then throttled after the limit *per replica*): nothing is refused because Redis
/// is down, and a replica stays ready. Mistakes (a URL that does not parse, a zero timeout) are reported when
/// the server is built; nothing connects before the first failure.
// `Debug` shows neither the URL (it may hold a password) nor the hash key (a secret).
#[derive(Clone, Debug)]
pub struct RedisLockout {
    settings: RedisSettings,
}

impl RedisLockout {
    /// Failures counted in the Redis at `url` (`redis://[user:password@]host:port[/db]`), under
    /// the prefix `mcp:`. The same URL and prefix as a
    /// [`RedisRateLimiter`](crate::RedisRateLimiter) is fine: the keys differ.
    pub fn new(url: &str) -> Self {
        Self {
            settings: RedisSettings::new(url),
        }
    }

    /// Starts every key with `prefix` (default `mcp:`): replicas of one server need the same
    /// prefix; servers that must not throttle each other's clients need different ones.
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

    /// How long a failure waits for Redis before this replica's own count decides (default
    /// 1 s). It bounds what an unreachable Redis adds to a refused request.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.settings.timeout = timeout;
        self
    }

    /// Keys the hash that names an address in Redis (default: no key, a plain hash). With a
    /// secret shared by the replicas, addresses cannot be recovered from Redis by hashing
    /// candidates (IPv4 has only 2³² of them).
    pub fn hash_key(mut self, key: impl AsRef<[u8]>) -> Self {
        self.settings.hash_key(key.as_ref());
        self
    }

    pub(crate) fn build(self) -> Result<SharedFailures, ConfigError> {
        Ok(SharedFailures::new(
            Arc::new(self.settings.build("lockout")?),
            Throttle::Server,
        ))
    }

    /// What the authorization server shares: its client-secret throttle (apart from the MCP
    /// endpoint's, as locally) and its password guard, over one link.
    #[cfg(feature = "oauth")]
    pub(crate) fn build_for_authorization_server(
        self,
    ) -> Result<(SharedFailures, super::password::redis::SharedPasswords), ConfigError> {
        let link = Arc::new(self.settings.build("lockout")?);
        Ok((
            SharedFailures::new(link.clone(), Throttle::AuthorizationServer),
            super::password::redis::SharedPasswords::new(link),
        ))
    }
}

/// Whose failures a [`SharedFailures`] counts. Each server keeps its own throttle (the MCP
/// endpoint with the seed's token endpoint, and the authorization server), so replicas given
/// one `RedisLockout` prefix for both keep them apart in Redis too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Throttle {
    /// The server's (`Gatekeeper::shared_lockout`, `GatekeeperLayer`): keys `lo:`.
    Server,
    /// The authorization server's client authentications: keys `loc:`.
    #[cfg(feature = "oauth")]
    AuthorizationServer,
}

/// A built [`RedisLockout`].
#[derive(Debug)]
pub(crate) struct SharedFailures {
    link: Arc<RedisLink>,
    script: Script,
    throttle: Throttle,
}

impl SharedFailures {
    fn new(link: Arc<RedisLink>, throttle: Throttle) -> Self {
        Self {
            link,
            script: Script::new(FAILURE),
            throttle,
        }
    }

    /// Counts a failure from `addr` in Redis: `Ok` with how long failures from it stay
    /// throttled, if they are; `Err` when Redis did not answer in time (already logged).
    pub(crate) async fn record_failure(
        &self,
        addr: IpAddr,
        policy: &Lockout,
    ) -> Result<Option<Duration>, ()> {
        let key = self.key(addr);
        let millis = |d: Duration| d.as_millis().clamp(1, u128::from(u64::MAX)) as u64;
        let script = &self.script;
        let answer = self
            .link
            .exchange(|mut connection| async move {
                script
                    .key(&key)
                    .arg(millis(policy.window))
                    .arg(policy.max_failures)
                    .arg(millis(policy.duration))
                    .invoke_async::<u64>(&mut connection)
                    .await
            })
            .await;
        match answer {
            Ok(wait) => Ok((wait > 0).then(|| Duration::from_millis(wait))),
            Err(error) => {
                self.link
                    .warn(&error, "counting failures in this replica only");
                Err(())
            }
        }
    }

    /// The Redis key of `addr` (normalised as the local table does: IPv6 per /64).
    pub(crate) fn key(&self, addr: IpAddr) -> String {
        let bytes = match address_key(addr) {
            IpAddr::V4(v4) => v4.octets().to_vec(),
            IpAddr::V6(v6) => v6.octets().to_vec(),
        };
        match self.throttle {
            Throttle::Server => self.link.key("lo", &[b"lockout\0", &bytes]),
            #[cfg(feature = "oauth")]
            Throttle::AuthorizationServer => self
                .link
                .key("loc", &[b"client authentication lockout\0", &bytes]),
        }
    }
}

#[cfg(test)]
mod tests;
