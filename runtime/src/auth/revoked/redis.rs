//! The revocation list shared by replicas through Redis (feature `redis`).
//!
//! Redis holds one sorted set, `<prefix>rv`, of revoked token names (32 hex digits of the
//! keyed hash of the `jti`) scored by the token's expiry, and a counter, `<prefix>rv:n`,
//! incremented by every revocation. A revocation is one script: drop the expired entries, add
//! the new one (refused when [`MAX_REVOKED`](super::MAX_REVOKED) unexpired ones are there
//! already), count it. A replica answering a token looks at the counter when its last look is
//! [`SYNC_EVERY`] old or older — one `GET`, shared by the requests arriving meanwhile — and
//! reads the unexpired entries only when the counter moved. So a token revoked through any
//! replica is refused by all of them at most [`SYNC_EVERY`] after `/auth/revoke` answered, and
//! a quiet list costs one small round trip a second per replica.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use ::redis::Script;

use super::MAX_REVOKED;
use crate::{
    ConfigError, FailurePolicy,
    redis_link::{RedisLink, RedisSettings},
};

/// How old what a replica knows of the shared list may be when it answers a token.
pub(crate) const SYNC_EVERY: Duration = Duration::from_secs(1);

/// `KEYS`: the set and the counter; `ARGV`: the name, its expiry, now (Unix seconds) and the
/// most entries. Returns 1 when recorded, 0 when the set is full.
const REVOKE: &str = r"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) and not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('INCR', KEYS[2])
return 1
";

/// Revoked tokens kept in Redis, shared by every replica that names the same Redis and prefix.
/// Given to [`TokenEndpoint::shared_revocations`](crate::TokenEndpoint::shared_revocations).
///
/// ```no_run
/// use mcp_gatekeeper::{FailurePolicy, RedisRevocations};
///
/// let revocations = RedisRevocations::new("redis://127.0.0.1:6379")
///     .prefix("billing-mcp:")
///     .on_unavailable(FailurePolicy::Closed);
/// ```
///
/// A token revoked through any replica is refused by every replica at most one second after
/// `/auth/revoke` answered. When Redis does not answer, [`FailurePolicy::Closed`] (the
/// default) refuses tokens with `503` + `Retry-After` (audited `credential_check_unavailable`),
/// since a revoked one cannot be told apart; [`FailurePolicy::FallBackToLocal`] accepts them
/// on what the replica last read. `/auth/revoke` answers `503` while the revocation cannot be
/// recorded. Mistakes (a URL that does not parse, a zero timeout) are reported when the server
/// is built.
// `Debug` shows neither the URL (it may hold a password) nor the hash key (a secret).
#[derive(Clone, Debug)]
pub struct RedisRevocations {
    settings: RedisSettings,
    policy: FailurePolicy,
}

impl RedisRevocations {
    /// Revocations kept in the Redis at `url` (`redis://[user:password@]host:port[/db]`),
    /// under the prefix `mcp:`. The same URL and prefix as a
    /// [`RedisRateLimiter`](crate::RedisRateLimiter) is fine: the keys differ.
    pub fn new(url: &str) -> Self {
        Self {
            settings: RedisSettings::new(url),
            policy: FailurePolicy::Closed,
        }
    }

    /// Starts every key with `prefix` (default `mcp:`): replicas of one server need the same.
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

    /// What a token does when the list cannot be read (default [`FailurePolicy::Closed`]).
    pub fn on_unavailable(mut self, policy: FailurePolicy) -> Self {
        self.policy = policy;
        self
    }

    /// How long a look at the list waits for Redis (default 1 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.settings.timeout = timeout;
        self
    }

    /// Keys the hash that names tokens in Redis (default: no key, a plain hash).
    pub fn hash_key(mut self, key: impl AsRef<[u8]>) -> Self {
        self.settings.hash_key(key.as_ref());
        self
    }

    pub(crate) fn build(self) -> Result<SharedRevocations, ConfigError> {
        let link = self.settings.build("revocations")?;
        Ok(SharedRevocations {
            set: link.key("rv", &[b"revocations"]),
            counter: link.key("rv", &[b"revocations\0counter"]),
            link,
            script: Script::new(REVOKE),
            policy: self.policy,
            seen: Mutex::new(Seen {
                at: None,
                counter: None,
            }),
            sync: tokio::sync::Mutex::new(()),
        })
    }
}

/// A built [`RedisRevocations`].
#[derive(Debug)]
pub(crate) struct SharedRevocations {
    link: RedisLink,
    set: String,
    counter: String,
    script: Script,
    policy: FailurePolicy,
    seen: Mutex<Seen>,
    /// Held by the one request reading the list for the others.
    sync: tokio::sync::Mutex<()>,
}

/// What this replica last read.
#[derive(Debug)]
struct Seen {
    /// When the list was last read successfully.
    at: Option<Instant>,
    /// The counter then.
    counter: Option<u64>,
}

impl SharedRevocations {
    /// Whether what this replica knows is recent enough to answer a token.
    pub(super) fn fresh(&self) -> bool {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.at.is_some_and(|at| at.elapsed() < SYNC_EVERY)
    }

    pub(super) fn falls_back(&self) -> bool {
        self.policy == FailurePolicy::FallBackToLocal
    }

    /// The unexpired revocations when the list changed since the last look, `None` when it did
    /// not (or another request just looked); `Err` when Redis did not answer.
    pub(super) async fn changes(&self) -> Result<Option<Vec<([u8; 16], u64)>>, ()> {
        let _syncing = self.sync.lock().await;
        if self.fresh() {
            return Ok(None);
        }
        let last = self.seen.lock().unwrap_or_else(|e| e.into_inner()).counter;
        let now = super::now();
        let (set, counter) = (&self.set, &self.counter);
        let read = self
            .link
            .exchange(|mut connection| async move {
                let current: Option<u64> = ::redis::cmd("GET")
                    .arg(counter)
                    .query_async(&mut connection)
                    .await?;
                if current == last && last.is_some() {
                    return Ok((current, None));
                }
                let entries: Vec<(String, f64)> = ::redis::cmd("ZRANGEBYSCORE")
                    .arg(set)
                    .arg(format!("({now}"))
                    .arg("+inf")
                    .arg("WITHSCORES")
                    .arg("LIMIT")
                    .arg(0)
                    .arg(MAX_REVOKED)
                    .query_async(&mut connection)
                    .await?;
                Ok((current, Some(entries)))
            })
            .await;
        match read {
            Ok((current, entries)) => {
                let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
                seen.at = Some(Instant::now());
                // With no revocation yet, the counter does not exist: remember that it was
                // read, so that an empty list is not read again every second.
                seen.counter = Some(current.unwrap_or(0));
                Ok(entries.map(|entries| {
                    entries
                        .into_iter()
                        .filter_map(|(name, expires_at)| {
                            let mut bytes = [0u8; 16];
                            hex::decode_to_slice(name, &mut bytes).ok()?;
                            Some((bytes, expires_at as u64))
                        })
                        .collect()
                }))
            }
            Err(error) => {
                let consequence = match self.policy {
                    FailurePolicy::Closed => "refusing tokens",
                    FailurePolicy::FallBackToLocal => {
                        "accepting tokens on what this replica last read"
                    }
                };
                self.link.warn(&error, consequence);
                Err(())
            }
        }
    }

    /// Records a revocation in Redis.
    pub(super) async fn revoke(
        &self,
        name: &[u8; 16],
        expires_at: u64,
        now: u64,
    ) -> Result<(), ()> {
        let name = hex::encode(name);
        let script = &self.script;
        let (set, counter) = (&self.set, &self.counter);
        let recorded = self
            .link
            .exchange(|mut connection| async move {
                script
                    .key(set)
                    .key(counter)
                    .arg(&name)
                    .arg(expires_at)
                    .arg(now)
                    .arg(MAX_REVOKED)
                    .invoke_async::<u8>(&mut connection)
                    .await
            })
            .await;
        match recorded {
            Ok(1) => Ok(()),
            Ok(_) => {
                tracing::warn!(
                    redis = %self.link.address(),
                    "shared revocations: the list is full of unexpired revocations"
                );
                Err(())
            }
            Err(error) => {
                self.link.warn(&error, "revocations cannot be recorded");
                Err(())
            }
        }
    }

    /// The name of `jti` in Redis.
    pub(super) fn name(&self, jti: &str) -> [u8; 16] {
        let mut name = [0u8; 16];
        hex::decode_to_slice(self.link.tag(&[b"jti\0", jti.as_bytes()]), &mut name)
            .expect("a tag is 32 hex digits");
        name
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{
        auth::revoked::{RevokedTokens, Standing},
        redis_link::{test_prefix, test_redis_url},
    };

    fn replica(url: &str, prefix: &str, policy: FailurePolicy) -> Arc<RevokedTokens> {
        let list = RevokedTokens::default();
        let shared = RedisRevocations::new(url)
            .prefix(prefix)
            .on_unavailable(policy)
            .timeout(Duration::from_millis(300))
            .build()
            .unwrap();
        list.share(shared).unwrap();
        Arc::new(list)
    }

    /// The standing of `jti` as the verifier decides it: refreshing when stale.
    async fn standing(list: &RevokedTokens, jti: &str) -> Result<Standing, ()> {
        match list.standing(jti) {
            Standing::Stale => match list.refresh().await {
                Ok(()) => Ok(list.standing(jti)),
                Err(_) => Err(()),
            },
            standing => Ok(standing),
        }
    }

    #[tokio::test]
    async fn a_revocation_on_one_replica_is_seen_by_the_other_within_the_bound() {
        let url = test_redis_url().await;
        let prefix = test_prefix();
        let a = replica(&url, &prefix, FailurePolicy::Closed);
        let b = replica(&url, &prefix, FailurePolicy::Closed);
        assert_eq!(standing(&b, "t1").await, Ok(Standing::Valid));
        a.revoke("t1", super::super::now() + 60).await.unwrap();
        assert_eq!(a.standing("t1"), Standing::Revoked, "at once where revoked");
        // B read the list a moment ago: it may answer from what it knows for up to
        // SYNC_EVERY, and never longer.
        let revoked_at = Instant::now();
        loop {
            if standing(&b, "t1").await == Ok(Standing::Revoked) {
                break;
            }
            assert!(revoked_at.elapsed() <= SYNC_EVERY + Duration::from_millis(100));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(standing(&b, "t2").await, Ok(Standing::Valid));

        // Redis holds names only, which expire with the tokens.
        let mut connection = crate::redis_link::test_connection(&url).await;
        let keys: Vec<String> = ::redis::cmd("KEYS")
            .arg(format!("{prefix}*"))
            .query_async(&mut connection)
            .await
            .unwrap();
        assert_eq!(keys.len(), 2, "{keys:?}");
        let members: Vec<String> = ::redis::cmd("ZRANGE")
            .arg(&a.shared.get().unwrap().set)
            .arg(0)
            .arg(-1)
            .query_async(&mut connection)
            .await
            .unwrap();
        assert_eq!(members.len(), 1);
        assert!(!members[0].contains("t1"));
    }

    #[tokio::test]
    async fn an_unreachable_redis_follows_the_policy() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("redis://127.0.0.1:{port}");
        let closed = replica(&url, "p:", FailurePolicy::Closed);
        assert_eq!(standing(&closed, "t").await, Err(()));
        assert!(closed.refresh().await.is_err());
        assert!(!closed.falls_back());
        assert_eq!(
            closed.revoke("t", super::super::now() + 60).await,
            Err(crate::auth::revoked::RevokeError::Unavailable)
        );
        let fallback = replica(&url, "p:", FailurePolicy::FallBackToLocal);
        assert!(fallback.falls_back());
    }

    #[test]
    fn bad_settings_fail_the_build() {
        assert!(RedisRevocations::new("nonsense").build().is_err());
        assert!(
            RedisRevocations::new("redis://127.0.0.1:6379")
                .tls_ca_file("/etc/ssl/certs/ca-certificates.crt")
                .build()
                .is_err()
        );
        assert!(
            RedisRevocations::new("redis://127.0.0.1:6379")
                .timeout(Duration::ZERO)
                .build()
                .is_err()
        );
    }
}
