//! Session owners shared by replicas through Redis (feature `redis`).
//!
//! A stateful MCP session lives in the replica that opened it, and a load balancer routes its
//! requests there by `Mcp-Session-Id`. The replica keeps who owns each of its sessions (the
//! parent module) and refuses a caller presenting another caller's session. Sharing the owners
//! makes every replica give that refusal, and audit it: a session id that leaked to another
//! caller is refused (`404`, audited `foreign_session`) wherever the request lands, instead of
//! being passed to a replica that does not hold the session.
//!
//! A key is `<prefix>ss:` and 32 hex digits of HMAC-SHA256(hash key, session id); its value is
//! the same keyed hash of the owner's caller key (`method:subject`): Redis holds neither a
//! session id, which a client uses as a bearer handle, nor a subject in clear. It expires after
//! the idle time of a binding, pushed back at most every [`REFRESH_EVERY`] while the session
//! is used, and is deleted when the session ends.
//!
//! Writes are sent in the background: opening or ending a session never waits for Redis. A
//! look-up is made only for a session *unknown* to the replica answering, which is never the
//! case for the requests a sticky load balancer sends to the session's replica. When Redis does
//! not answer, such a request goes on to rmcp, which answers `404` for a session it does not
//! hold: nothing is served inside another caller's session either way, only the audit record
//! of the attempt is missing (and a warning is logged at most every 10 s).

use std::{sync::Arc, time::Duration};

use super::Binding;
use crate::{
    ConfigError,
    redis_link::{RedisLink, RedisSettings},
};

/// How often, at most, a used session's shared binding gets its expiry pushed back.
pub(super) const REFRESH_EVERY: Duration = Duration::from_secs(300);

/// Which caller owns which MCP session, in Redis, shared by every replica that names the same
/// Redis and prefix. Given to
/// [`Gatekeeper::shared_sessions`](crate::Gatekeeper::shared_sessions).
///
/// ```no_run
/// use mcp_gatekeeper::RedisSessions;
///
/// let sessions = RedisSessions::new("redis://127.0.0.1:6379").prefix("billing-mcp:");
/// ```
///
/// Sessions themselves are not shared: each lives in the replica that opened it (its SSE
/// streams are connections to that replica), so stateful servers still need a load balancer
/// that routes by `Mcp-Session-Id`. Mistakes (a URL that does not parse, a zero timeout) are
/// reported when the server is built; nothing connects before the first session opens.
// `Debug` shows neither the URL (it may hold a password) nor the hash key (a secret).
#[derive(Clone, Debug)]
pub struct RedisSessions {
    settings: RedisSettings,
}

impl RedisSessions {
    /// Session owners kept in the Redis at `url` (`redis://[user:password@]host:port[/db]`),
    /// under the prefix `mcp:`. The same URL and prefix as a
    /// [`RedisRateLimiter`](crate::RedisRateLimiter) is fine: the keys differ.
    pub fn new(url: &str) -> Self {
        Self {
            settings: RedisSettings::new(url),
        }
    }

    /// Starts every key with `prefix` (default `mcp:`): replicas of one server need the same
    /// prefix.
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

    /// How long a look-up waits for Redis before the request goes on without it (default 1 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.settings.timeout = timeout;
        self
    }

    /// Keys the hash that names sessions and their owners in Redis (default: no key, a plain
    /// hash). With a secret shared by the replicas, the subjects behind the owners cannot be
    /// recovered from Redis by hashing guessed names.
    pub fn hash_key(mut self, key: impl AsRef<[u8]>) -> Self {
        self.settings.hash_key(key.as_ref());
        self
    }

    pub(crate) fn build(self) -> Result<SharedSessions, ConfigError> {
        Ok(SharedSessions {
            link: self.settings.build("session owners")?,
        })
    }
}

/// A built [`RedisSessions`].
#[derive(Debug)]
pub(crate) struct SharedSessions {
    link: RedisLink,
}

impl SharedSessions {
    /// Whether `caller` may use `session`, a session unknown to this replica.
    pub(super) async fn check(&self, session: &str, caller: &str) -> Binding {
        let key = self.key(session);
        let owner = self
            .link
            .exchange(|mut connection| async move {
                ::redis::cmd("GET")
                    .arg(&key)
                    .query_async::<Option<String>>(&mut connection)
                    .await
            })
            .await;
        match owner {
            Ok(Some(owner)) if owner != self.owner(caller) => Binding::Foreign,
            Ok(_) => Binding::Allowed,
            Err(error) => {
                self.link.warn(
                    &error,
                    "sessions opened by other replicas are passed on unchecked (rmcp answers \
                     404 for them)",
                );
                Binding::Allowed
            }
        }
    }

    /// Records that `caller` opened `session`, in the background.
    pub(super) fn bind(self: Arc<Self>, session: &str, caller: &str, idle: Duration) {
        let key = self.key(session);
        let owner = self.owner(caller);
        let millis = idle.as_millis() as u64;
        self.background(move |mut connection| async move {
            ::redis::cmd("SET")
                .arg(&key)
                .arg(owner)
                .arg("PX")
                .arg(millis)
                .query_async::<()>(&mut connection)
                .await
        });
    }

    /// Pushes the expiry of `session`'s binding back to `idle` from now, in the background.
    pub(super) fn keep(self: Arc<Self>, session: &str, idle: Duration) {
        let key = self.key(session);
        let millis = idle.as_millis() as u64;
        self.background(move |mut connection| async move {
            ::redis::cmd("PEXPIRE")
                .arg(&key)
                .arg(millis)
                .query_async::<()>(&mut connection)
                .await
        });
    }

    /// Removes `session`'s binding, in the background.
    pub(super) fn forget(self: Arc<Self>, session: &str) {
        let key = self.key(session);
        self.background(move |mut connection| async move {
            ::redis::cmd("DEL")
                .arg(&key)
                .query_async::<()>(&mut connection)
                .await
        });
    }

    /// Runs a write on its own task (bounded by the timeout, like every exchange), so that no
    /// request waits for it; a failure is logged.
    fn background<F>(
        self: Arc<Self>,
        write: impl FnOnce(::redis::aio::ConnectionManager) -> F + Send + 'static,
    ) where
        F: Future<Output = ::redis::RedisResult<()>> + Send,
    {
        tokio::spawn(async move {
            if let Err(error) = self.link.exchange(write).await {
                self.link.warn(&error, "session owners not shared");
            }
        });
    }

    fn key(&self, session: &str) -> String {
        self.link.key("ss", &[b"session\0", session.as_bytes()])
    }

    /// What Redis holds for `caller`: a keyed hash, never the subject.
    fn owner(&self, caller: &str) -> String {
        self.link.tag(&[b"owner\0", caller.as_bytes()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        http::sessions::SessionBindings,
        redis_link::{test_prefix, test_redis_url},
    };

    /// Two replicas' bindings sharing one Redis and prefix.
    fn replicas(url: &str, prefix: &str) -> [SessionBindings; 2] {
        [(); 2].map(|()| {
            let shared = RedisSessions::new(url).prefix(prefix).build().unwrap();
            SessionBindings::shared(Some(Arc::new(shared)))
        })
    }

    /// Waits until the background writes have reached Redis (the key count under `prefix`).
    async fn wait_for_keys(url: &str, prefix: &str, count: usize) -> Vec<(String, String)> {
        let client = ::redis::Client::open(url).unwrap();
        let mut connection = client.get_multiplexed_async_connection().await.unwrap();
        for _ in 0..200 {
            let names: Vec<String> = ::redis::cmd("KEYS")
                .arg(format!("{prefix}*"))
                .query_async(&mut connection)
                .await
                .unwrap();
            if names.len() == count {
                let mut all = Vec::new();
                for name in names {
                    let value: String = ::redis::cmd("GET")
                        .arg(&name)
                        .query_async(&mut connection)
                        .await
                        .unwrap();
                    all.push((name, value));
                }
                return all;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("Redis never held {count} keys under {prefix}");
    }

    #[tokio::test]
    async fn a_foreign_session_is_refused_by_every_replica() {
        let url = test_redis_url().await;
        let prefix = test_prefix();
        let [a, b] = replicas(&url, &prefix);
        let alice: Arc<str> = "jwt:alice".into();
        let bob: Arc<str> = "jwt:bob".into();

        a.bind("session-1", alice.clone(), alice.clone());
        let stored = wait_for_keys(&url, &prefix, 1).await;
        // Neither the session id nor the subject reaches Redis.
        let (key, value) = &stored[0];
        assert!(key.starts_with(&format!("{prefix}ss:")), "{key}");
        for text in [key, value] {
            assert!(
                !text.contains("session-1") && !text.contains("alice"),
                "{text}"
            );
        }

        assert_eq!(a.check("session-1", &bob).await, Binding::Foreign);
        assert_eq!(b.check("session-1", &bob).await, Binding::Foreign);
        assert_eq!(b.check("session-1", &alice).await, Binding::Allowed);
        assert_eq!(b.check("never-opened", &bob).await, Binding::Allowed);

        // Ending the session on its replica forgets it everywhere.
        a.forget("session-1");
        wait_for_keys(&url, &prefix, 0).await;
        assert_eq!(b.check("session-1", &bob).await, Binding::Allowed);
    }

    #[tokio::test]
    async fn bindings_expire_and_name_nobody_with_a_hash_key() {
        let url = test_redis_url().await;
        let prefix = test_prefix();
        let shared = |key: &[u8]| {
            RedisSessions::new(&url)
                .prefix(&prefix)
                .hash_key(key)
                .build()
                .unwrap()
        };
        let (one, other) = (shared(b"k1"), shared(b"k2"));
        assert_ne!(one.key("s"), other.key("s"));
        assert_ne!(one.owner("jwt:alice"), other.owner("jwt:alice"));

        let one = Arc::new(one);
        one.clone()
            .bind("s", "jwt:alice", Duration::from_millis(300));
        wait_for_keys(&url, &prefix, 1).await;
        assert_eq!(one.check("s", "jwt:bob").await, Binding::Foreign);
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(one.check("s", "jwt:bob").await, Binding::Allowed, "expired");
    }

    #[tokio::test]
    async fn an_unreachable_redis_passes_unknown_sessions_on() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let shared = RedisSessions::new(&format!("redis://127.0.0.1:{port}"))
            .timeout(Duration::from_millis(200))
            .build()
            .unwrap();
        let bindings = SessionBindings::shared(Some(Arc::new(shared)));
        let alice: Arc<str> = "jwt:alice".into();
        let bob: Arc<str> = "jwt:bob".into();
        // Sessions opened here are still decided here.
        bindings.bind("mine", alice.clone(), alice.clone());
        assert_eq!(bindings.check("mine", &bob).await, Binding::Foreign);
        assert_eq!(bindings.check("mine", &alice).await, Binding::Allowed);
        // Unknown ones go on to rmcp, which does not hold them either.
        assert_eq!(bindings.check("elsewhere", &bob).await, Binding::Allowed);
    }

    #[test]
    fn bad_settings_fail_the_build() {
        assert!(RedisSessions::new("nonsense").build().is_err());
        assert!(
            RedisSessions::new("redis://127.0.0.1:6379")
                .tls_ca_file("/etc/ssl/certs/ca-certificates.crt")
                .build()
                .is_err()
        );
        assert!(
            RedisSessions::new("redis://127.0.0.1:6379")
                .timeout(Duration::ZERO)
                .build()
                .is_err()
        );
    }
}
