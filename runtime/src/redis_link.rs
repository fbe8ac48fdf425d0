//! What every piece of state shared through Redis has in common (feature `redis`): the
//! settings its builder takes (URL, key prefix, timeout, hash key), the connection made at the
//! first use and re-established in the background, every exchange bounded by the timeout,
//! warnings about an unreachable Redis at most every [`WARN_EVERY_SECONDS`], and key names
//! made of a keyed hash so that Redis never holds a credential, an address or a subject in
//! clear.

use std::{
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    time::{Duration, Instant},
};

use ::redis::{
    Client,
    aio::{ConnectionManager, ConnectionManagerConfig},
};
use sha2::{Digest, Sha256};

use crate::ConfigError;

/// How long an exchange waits for Redis by default.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);

/// At most one warning about an unreachable Redis per this many seconds.
const WARN_EVERY_SECONDS: u64 = 10;

/// The settings of one public Redis builder (`RedisRateLimiter`, `RedisLockout`,
/// `RedisSessions`), kept until the server is built.
#[derive(Clone)]
pub(crate) struct RedisSettings {
    client: Result<Client, String>,
    pub(crate) prefix: String,
    pub(crate) timeout: Duration,
    hash_key: Vec<u8>,
    /// The CA certificates (PEM) a `rediss://` server's certificate is verified against,
    /// instead of the system's roots.
    pub(crate) tls_ca_file: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for RedisSettings {
    // The URL may hold a password and the hash key is a secret: neither is shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSettings")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisSettings {
    pub(crate) fn new(url: &str) -> Self {
        Self {
            client: Client::open(url).map_err(|e| format!("Redis URL: {e}")),
            prefix: "mcp:".into(),
            timeout: DEFAULT_TIMEOUT,
            hash_key: Vec::new(),
            tls_ca_file: None,
        }
    }

    pub(crate) fn hash_key(&mut self, key: &[u8]) {
        self.hash_key = key.to_vec();
    }

    /// The link, or what is wrong with the settings. `what` names the shared state in messages
    /// ("rate limits", "lockout", "session owners").
    pub(crate) fn build(self, what: &'static str) -> Result<RedisLink, ConfigError> {
        let mut client = self.client.map_err(ConfigError::Invalid)?;
        let tls = matches!(
            client.get_connection_info().addr(),
            ::redis::ConnectionAddr::TcpTls { .. }
        );
        if let Some(path) = &self.tls_ca_file {
            if !tls {
                return Err(ConfigError::Invalid(format!(
                    "shared {what}: a Redis CA file ({}) needs a `rediss://` URL",
                    path.display()
                )));
            }
            let pem = std::fs::read(path).map_err(|e| {
                ConfigError::Invalid(format!(
                    "shared {what}: cannot read the Redis CA file {}: {e}",
                    path.display()
                ))
            })?;
            let certificates = ::redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem),
            };
            client = Client::build_with_tls(client.get_connection_info().clone(), certificates)
                .map_err(|e| {
                    ConfigError::Invalid(format!(
                        "shared {what}: the Redis CA file {}: {e}",
                        path.display()
                    ))
                })?;
        }
        if tls {
            // The redis crate builds its TLS configuration with rustls' process-wide provider,
            // which rustls cannot choose when an application compiled in two: this crate's
            // (aws-lc-rs) is installed when none is.
            if rustls::crypto::CryptoProvider::get_default().is_none() {
                let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
            }
        }
        if self.timeout.is_zero() {
            return Err(ConfigError::Invalid(format!(
                "shared {what}: the Redis timeout must not be zero"
            )));
        }
        let address = client.get_connection_info().addr().to_string();
        Ok(RedisLink {
            client,
            connection: tokio::sync::OnceCell::new(),
            prefix: self.prefix,
            timeout: self.timeout,
            hash: Hmac::new(&self.hash_key),
            address,
            what,
            unavailable: AtomicBool::new(false),
            last_warning: AtomicU64::new(0),
            started: Instant::now(),
        })
    }
}

/// A built [`RedisSettings`]: one connection to Redis and what every exchange needs.
pub(crate) struct RedisLink {
    client: Client,
    connection: tokio::sync::OnceCell<ConnectionManager>,
    prefix: String,
    timeout: Duration,
    hash: Hmac,
    /// `host:port` for messages (the URL may hold a password).
    address: String,
    /// What is shared, for messages.
    what: &'static str,
    /// Whether the last exchange failed, to log when Redis answers again.
    unavailable: AtomicBool,
    /// Seconds since `started` of the last warning, plus one; 0 before the first.
    last_warning: AtomicU64,
    started: Instant,
}

impl std::fmt::Debug for RedisLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLink")
            .field("redis", &self.address)
            .field("prefix", &self.prefix)
            .field("shares", &self.what)
            .finish_non_exhaustive()
    }
}

impl RedisLink {
    /// `host:port` of the Redis (never the URL, which may hold a password).
    pub(crate) fn address(&self) -> &str {
        &self.address
    }

    /// Runs `exchange` on the connection within the timeout; notes whether Redis answered (and
    /// logs when it answers again after failing). The error is a message for a warning.
    pub(crate) async fn exchange<R, F>(
        &self,
        exchange: impl FnOnce(ConnectionManager) -> F,
    ) -> Result<R, String>
    where
        F: Future<Output = ::redis::RedisResult<R>>,
    {
        let asked = async {
            let connection = self.connection().await?;
            exchange(connection).await
        };
        let result = match tokio::time::timeout(self.timeout, asked).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Err(format!("no answer within {:?}", self.timeout)),
        };
        match &result {
            Ok(_) => {
                if self.unavailable.swap(false, Ordering::Relaxed) {
                    tracing::info!(redis = %self.address, "shared {}: Redis answers again", self.what);
                }
            }
            Err(_) => self.unavailable.store(true, Ordering::Relaxed),
        }
        result
    }

    /// Whether Redis answers a `PING` in time.
    pub(crate) async fn ping(&self) -> Result<(), String> {
        self.exchange(|mut connection| async move {
            ::redis::cmd("PING")
                .query_async::<String>(&mut connection)
                .await
        })
        .await
        .map(drop)
    }

    /// The connection, made at the first use (inside the runtime). The manager reconnects by
    /// itself after an error, in the background; an exchange meanwhile fails fast or waits at
    /// most the timeout.
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

    /// The key `<prefix><kind>:` followed by 32 hex digits of the keyed hash of `parts`.
    pub(crate) fn key(&self, kind: &str, parts: &[&[u8]]) -> String {
        let digest = self.hash.of(parts);
        let mut key = String::with_capacity(self.prefix.len() + kind.len() + 1 + 32);
        key.push_str(&self.prefix);
        key.push_str(kind);
        key.push(':');
        key.push_str(&hex::encode(&digest[..16]));
        key
    }

    /// The keyed hash of `parts`, as 32 hex digits: a value that names something without
    /// revealing it.
    pub(crate) fn tag(&self, parts: &[&[u8]]) -> String {
        hex::encode(&self.hash.of(parts)[..16])
    }

    /// Logs that Redis failed and what follows from it, at most once per
    /// [`WARN_EVERY_SECONDS`]: an outage under load would otherwise write one line per request.
    pub(crate) fn warn(&self, error: &str, consequence: &str) {
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
                "shared {}: Redis unavailable, {consequence}",
                self.what
            );
        }
    }
}

/// HMAC-SHA256 (RFC 2104) with its two padded-key blocks already absorbed.
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

/// The Redis the tests use (`REDIS_URL`, default the local server); fails, never skips, with
/// how to start one when it does not answer.
#[cfg(test)]
pub(crate) async fn test_redis_url() -> String {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let reachable = async {
        let client = Client::open(url.as_str()).ok()?;
        let mut connection = client.get_multiplexed_async_connection().await.ok()?;
        ::redis::cmd("PING")
            .query_async::<String>(&mut connection)
            .await
            .ok()
    };
    let answered = tokio::time::timeout(Duration::from_secs(2), reachable).await;
    assert!(
        matches!(answered, Ok(Some(_))),
        "these tests need Redis at {url} (set REDIS_URL to use another): start one with \
         `redis-server --port 6379 --save '' --appendonly no`"
    );
    url
}

/// A plain connection to the tests' Redis, to look at what the shared state wrote.
#[cfg(test)]
pub(crate) async fn test_connection(url: &str) -> ::redis::aio::MultiplexedConnection {
    Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// A key prefix no other test run uses, so that runs never share state.
#[cfg(test)]
pub(crate) fn test_prefix() -> String {
    format!("mcp-test-{:016x}:", rand::random::<u64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4231 test case 2 (a key shorter than the block) and 6 (longer than the block).
    #[test]
    fn hmac_matches_rfc_4231() {
        let short = Hmac::new(b"Jefe").of(&[b"what do ya want ", b"for nothing?"]);
        assert_eq!(
            hex::encode(short),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let long = Hmac::new(&[0xaa; 131])
            .of(&[b"Test Using Larger Than Block-Size Key - Hash Key First"]);
        assert_eq!(
            hex::encode(long),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[tokio::test]
    async fn an_unreachable_redis_is_an_error_within_the_timeout() {
        let mut settings = RedisSettings::new("redis://127.0.0.1:1");
        settings.timeout = Duration::from_millis(200);
        let link = settings.build("test").unwrap();
        let started = Instant::now();
        assert!(link.ping().await.is_err());
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn bad_settings_fail_the_build() {
        assert!(RedisSettings::new("not a url").build("test").is_err());
        let mut settings = RedisSettings::new("redis://127.0.0.1:6379");
        settings.timeout = Duration::ZERO;
        assert!(settings.build("test").is_err());
    }

    /// A Redis of the test's own that speaks only TLS, with a certificate for `localhost`
    /// from a CA made here; stopped when dropped.
    struct TlsRedis {
        server: std::process::Child,
        port: u16,
        dir: std::path::PathBuf,
    }

    impl TlsRedis {
        fn start() -> Self {
            use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

            let dir = std::env::temp_dir().join(format!(
                "gk-redis-tls-{}-{:08x}",
                std::process::id(),
                rand::random::<u32>()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            let ca_key = KeyPair::generate().unwrap();
            let mut ca = CertificateParams::new(Vec::new()).unwrap();
            ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            std::fs::write(dir.join("ca.pem"), ca.self_signed(&ca_key).unwrap().pem()).unwrap();
            let issuer = Issuer::new(ca, ca_key);
            let key = KeyPair::generate().unwrap();
            let leaf = CertificateParams::new(vec!["localhost".to_owned()])
                .unwrap()
                .signed_by(&key, &issuer)
                .unwrap();
            std::fs::write(dir.join("server.pem"), leaf.pem()).unwrap();
            std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let server = std::process::Command::new("redis-server")
                .args(["--port", "0", "--tls-port", &port.to_string()])
                .arg("--tls-cert-file")
                .arg(dir.join("server.pem"))
                .arg("--tls-key-file")
                .arg(dir.join("server.key"))
                .arg("--tls-ca-cert-file")
                .arg(dir.join("ca.pem"))
                .args([
                    "--tls-auth-clients",
                    "no",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ])
                .args(["--bind", "127.0.0.1"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("these tests run redis-server (with TLS) themselves: install Redis");
            let redis = Self { server, port, dir };
            let started = Instant::now();
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "redis-server did not listen on its TLS port"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            redis
        }

        fn ca(&self) -> std::path::PathBuf {
            self.dir.join("ca.pem")
        }

        fn settings(&self, host: &str, ca: Option<&std::path::Path>) -> RedisSettings {
            let mut settings = RedisSettings::new(&format!("rediss://{host}:{}", self.port));
            settings.timeout = Duration::from_secs(2);
            settings.tls_ca_file = ca.map(std::path::Path::to_path_buf);
            settings
        }
    }

    impl Drop for TlsRedis {
        fn drop(&mut self) {
            let _ = self.server.kill();
            let _ = self.server.wait();
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    #[tokio::test]
    async fn rediss_with_its_ca_is_verified_and_anything_else_is_refused() {
        let redis = TlsRedis::start();
        let trusted = redis
            .settings("localhost", Some(&redis.ca()))
            .build("test")
            .unwrap();
        trusted
            .ping()
            .await
            .expect("TLS to localhost, its CA trusted by file");
        // The system's roots do not hold this CA; the certificate does not name 127.0.0.1.
        let system = redis.settings("localhost", None).build("test").unwrap();
        assert!(system.ping().await.is_err(), "an unknown CA is refused");
        let by_address = redis
            .settings("127.0.0.1", Some(&redis.ca()))
            .build("test")
            .unwrap();
        assert!(
            by_address.ping().await.is_err(),
            "a certificate for localhost only"
        );
        // A plain connection to the TLS port gets nowhere either.
        let mut plain = RedisSettings::new(&format!("redis://127.0.0.1:{}", redis.port));
        plain.timeout = Duration::from_millis(500);
        assert!(plain.build("test").unwrap().ping().await.is_err());
    }

    #[test]
    fn a_ca_file_needs_rediss_and_must_be_readable() {
        let mut plain = RedisSettings::new("redis://127.0.0.1:6379");
        plain.tls_ca_file = Some("/etc/ssl/certs/ca-certificates.crt".into());
        let error = plain.build("rate limits").unwrap_err().to_string();
        assert!(error.contains("rediss://"), "{error}");
        let mut missing = RedisSettings::new("rediss://localhost:6380");
        missing.tls_ca_file = Some("/nonexistent/ca.pem".into());
        let error = missing.build("rate limits").unwrap_err().to_string();
        assert!(error.contains("/nonexistent/ca.pem"), "{error}");
    }
}
