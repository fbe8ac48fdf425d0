//! HTTPS serving with rustls: the server's certificate and key, optional client-certificate
//! verification (mutual TLS), their reload without a restart, HSTS and the handshake timeout.
//!
//! [`Tls`] is configuration only; it is read and checked when the server starts
//! ([`Gatekeeper::serve_on`](crate::Gatekeeper::serve_on)), which fails with a
//! [`ConfigError`] naming the file or value at fault.

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
    time::{Duration, SystemTime},
};

use http::HeaderValue;
use rustls::{
    RootCertStore, ServerConfig,
    pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, pem::PemObject},
    server::WebPkiClientVerifier,
};
use tokio_util::sync::CancellationToken;

use crate::ConfigError;

/// How long a client has to finish the TLS handshake by default.
const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the PEM files are checked for changes by default.
const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(10);
/// `Strict-Transport-Security` max-age by default: one year.
const DEFAULT_HSTS_MAX_AGE: Duration = Duration::from_secs(365 * 24 * 60 * 60);
/// The largest PEM file read (a certificate bundle or a CRL); larger ones are refused rather
/// than read into memory.
const MAX_PEM_BYTES: u64 = 16 * 1024 * 1024;

/// Where PEM text comes from.
#[derive(Clone)]
enum Pem {
    File(PathBuf),
    Memory(Arc<[u8]>),
}

impl fmt::Debug for Pem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => write!(f, "{}", path.display()),
            // Never the bytes: one of them is a private key.
            Self::Memory(bytes) => write!(f, "<{} bytes in memory>", bytes.len()),
        }
    }
}

impl Pem {
    fn read(&self) -> Result<Arc<[u8]>, String> {
        match self {
            Self::Memory(bytes) => Ok(bytes.clone()),
            Self::File(path) => {
                let size = std::fs::metadata(path)
                    .map_err(|e| format!("{}: {e}", path.display()))?
                    .len();
                if size > MAX_PEM_BYTES {
                    return Err(format!(
                        "{}: {size} bytes, more than the {MAX_PEM_BYTES} a PEM file may have",
                        path.display()
                    ));
                }
                std::fs::read(path)
                    .map(Arc::from)
                    .map_err(|e| format!("{}: {e}", path.display()))
            }
        }
    }

    /// What says a file changed: its modification time and length.
    fn stamp(&self) -> Option<(SystemTime, u64)> {
        match self {
            Self::Memory(_) => None,
            Self::File(path) => std::fs::metadata(path)
                .ok()
                .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len())),
        }
    }

    fn path(&self) -> Option<&Path> {
        match self {
            Self::File(path) => Some(path),
            Self::Memory(_) => None,
        }
    }
}

/// HTTPS for the server started by [`Gatekeeper::tls`](crate::Gatekeeper::tls): rustls with
/// the aws-lc-rs provider, TLS 1.2 and 1.3 only, HTTP/2 and HTTP/1.1 by ALPN.
///
/// | setting | default |
/// |---|---|
/// | client certificates | not asked for; [`client_ca_file`](Self::client_ca_file) makes them **required** |
/// | [`client_certificate_optional`](Self::client_certificate_optional) | off |
/// | [`crl_file`](Self::crl_file) | none |
/// | [`handshake_timeout`](Self::handshake_timeout) | 10 s |
/// | [`reload_interval`](Self::reload_interval) | files checked every 10 s, and on `SIGHUP` |
/// | [`hsts_max_age`](Self::hsts_max_age) | `Strict-Transport-Security: max-age=31536000` |
///
/// Certificates, keys, client CAs and CRLs read from files are reloaded without a restart when
/// a file changes (its modification time or length) and whenever the process gets `SIGHUP`.
/// A new set that does not load (a half-written file, a key that does not match the
/// certificate) is refused with a warning naming why, and the server keeps the set it has;
/// connections already open keep the certificate they were made with.
///
/// ```no_run
/// use mcp_gatekeeper::Tls;
///
/// // HTTPS, with client certificates from the CAs in `clients.pem` required (mutual TLS):
/// let tls = Tls::from_pem_files("/etc/mcp/server.pem", "/etc/mcp/server.key")
///     .client_ca_file("/etc/mcp/clients.pem")
///     .crl_file("/etc/mcp/clients.crl");
/// ```
#[derive(Clone)]
#[must_use]
pub struct Tls {
    certificate: Pem,
    key: Pem,
    client_cas: Vec<Pem>,
    crls: Vec<Pem>,
    client_certificate_optional: bool,
    handshake_timeout: Duration,
    reload_interval: Option<Duration>,
    hsts_max_age: Option<Duration>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("certificate", &self.certificate)
            .field("key", &self.key)
            .field("client_cas", &self.client_cas)
            .field("crls", &self.crls)
            .field(
                "client_certificate_optional",
                &self.client_certificate_optional,
            )
            .field("handshake_timeout", &self.handshake_timeout)
            .field("reload_interval", &self.reload_interval)
            .field("hsts_max_age", &self.hsts_max_age)
            .finish()
    }
}

impl Tls {
    fn new(certificate: Pem, key: Pem) -> Self {
        Self {
            certificate,
            key,
            client_cas: Vec::new(),
            crls: Vec::new(),
            client_certificate_optional: false,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            reload_interval: Some(DEFAULT_RELOAD_INTERVAL),
            hsts_max_age: Some(DEFAULT_HSTS_MAX_AGE),
        }
    }

    /// The server's certificate chain (leaf first) and private key (PKCS#8, PKCS#1 or SEC1),
    /// from PEM files, reloaded when they change.
    pub fn from_pem_files(certificate: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        Self::new(Pem::File(certificate.into()), Pem::File(key.into()))
    }

    /// The server's certificate chain and private key as PEM text held in memory (from a
    /// secret store, or generated at start-up).
    pub fn from_pem(certificate: impl Into<Vec<u8>>, key: impl Into<Vec<u8>>) -> Self {
        Self::new(
            Pem::Memory(certificate.into().into()),
            Pem::Memory(key.into().into()),
        )
    }

    /// Asks every client for a certificate issued by one of the CAs in this PEM bundle, and
    /// refuses the handshake of a client without one (unless
    /// [`client_certificate_optional`](Self::client_certificate_optional)) or with one that
    /// does not verify: unknown issuer, expired or not yet valid, revoked by a
    /// [CRL](Self::crl_file), or not meant for client authentication (extended key usage).
    /// May be called more than once. Add the
    /// [`ClientCertificates`](crate::auth::ClientCertificates) authenticator to make the
    /// certificate the caller.
    pub fn client_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.client_cas.push(Pem::File(path.into()));
        self
    }

    /// As [`client_ca_file`](Self::client_ca_file), with the PEM bundle in memory.
    pub fn client_ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.client_cas.push(Pem::Memory(pem.into().into()));
        self
    }

    /// Certificate revocation lists (PEM) for the client CAs: a client certificate they
    /// revoke is refused at the handshake. Revocation is checked for the client's own
    /// certificate; a CRL must be present for its issuer once any is configured (a
    /// certificate whose status no CRL tells is refused). May be called more than once.
    pub fn crl_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.crls.push(Pem::File(path.into()));
        self
    }

    /// As [`crl_file`](Self::crl_file), with the PEM text in memory.
    pub fn crl_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.crls.push(Pem::Memory(pem.into().into()));
        self
    }

    /// Lets a client connect without a certificate (it then authenticates with a token or an
    /// API key); a client that presents one must still present a valid one. Needs a
    /// [client CA](Self::client_ca_file).
    pub fn client_certificate_optional(mut self) -> Self {
        self.client_certificate_optional = true;
        self
    }

    /// How long a client has to complete the TLS handshake (default 10 s); the connection is
    /// then closed. A handshake that fails or times out never affects other connections.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// How often the files are checked for changes (default 10 s); `None` checks only on
    /// `SIGHUP`.
    pub fn reload_interval(mut self, interval: Option<Duration>) -> Self {
        self.reload_interval = interval;
        self
    }

    /// The `max-age` of the `Strict-Transport-Security` header on every response (default one
    /// year); `None` sends no such header (while trying HTTPS out: browsers remember it).
    pub fn hsts_max_age(mut self, max_age: Option<Duration>) -> Self {
        self.hsts_max_age = max_age;
        self
    }

    /// Whether the client CA and revocation settings ask for client certificates.
    pub fn verifies_client_certificates(&self) -> bool {
        !self.client_cas.is_empty()
    }

    fn check(&self) -> Result<(), ConfigError> {
        if self.handshake_timeout.is_zero() {
            return Err(ConfigError::invalid(
                "TLS: handshake_timeout must be longer than zero",
            ));
        }
        if self.reload_interval.is_some_and(|i| i.is_zero()) {
            return Err(ConfigError::invalid(
                "TLS: reload_interval must be longer than zero (None turns it off)",
            ));
        }
        if self.client_certificate_optional && self.client_cas.is_empty() {
            return Err(ConfigError::invalid(
                "TLS: client_certificate_optional needs a client CA (client_ca_file or client_ca_pem)",
            ));
        }
        if !self.crls.is_empty() && self.client_cas.is_empty() {
            return Err(ConfigError::invalid(
                "TLS: CRLs are given but no client CA: add client_ca_file or client_ca_pem",
            ));
        }
        Ok(())
    }

    /// Reads every file and builds the rustls configuration.
    fn load(&self) -> Result<ServerConfig, String> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let chain: Vec<CertificateDer<'static>> = parse_all(&self.certificate, "certificate")?;
        if chain.is_empty() {
            return Err(format!(
                "{:?}: no CERTIFICATE in the server certificate PEM",
                self.certificate
            ));
        }
        let key_pem = self.key.read()?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem)
            .map_err(|e| format!("{:?}: no usable private key: {e}", self.key))?;
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| e.to_string())?;
        let builder = if self.client_cas.is_empty() {
            builder.with_no_client_auth()
        } else {
            let mut roots = RootCertStore::empty();
            for source in &self.client_cas {
                let cas: Vec<CertificateDer<'static>> = parse_all(source, "client CA")?;
                if cas.is_empty() {
                    return Err(format!("{source:?}: no CERTIFICATE in the client CA PEM"));
                }
                for ca in cas {
                    roots
                        .add(ca)
                        .map_err(|e| format!("{source:?}: unusable client CA: {e}"))?;
                }
            }
            let mut crls: Vec<CertificateRevocationListDer<'static>> = Vec::new();
            for source in &self.crls {
                let list: Vec<CertificateRevocationListDer<'static>> = parse_all(source, "CRL")?;
                if list.is_empty() {
                    return Err(format!("{source:?}: no X509 CRL in the PEM"));
                }
                crls.extend(list);
            }
            let mut verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                    .with_crls(crls)
                    .only_check_end_entity_revocation();
            if self.client_certificate_optional {
                verifier = verifier.allow_unauthenticated();
            }
            let verifier = verifier
                .build()
                .map_err(|e| format!("client certificate verification: {e}"))?;
            builder.with_client_cert_verifier(verifier)
        };
        let mut config = builder
            .with_single_cert(chain, key)
            .map_err(|e| format!("server certificate and key: {e}"))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }

    fn stamps(&self) -> Vec<Option<(SystemTime, u64)>> {
        [&self.certificate, &self.key]
            .into_iter()
            .chain(&self.client_cas)
            .chain(&self.crls)
            .map(Pem::stamp)
            .collect()
    }

    fn watches_files(&self) -> bool {
        [&self.certificate, &self.key]
            .into_iter()
            .chain(&self.client_cas)
            .chain(&self.crls)
            .any(|pem| pem.path().is_some())
    }
}

/// Every PEM section of type `T` in `source`, refusing a file with a broken one.
fn parse_all<T: PemObject>(source: &Pem, what: &str) -> Result<Vec<T>, String> {
    let bytes = source.read()?;
    T::pem_slice_iter(&bytes)
        .collect::<Result<Vec<T>, _>>()
        .map_err(|e| format!("{source:?}: unreadable {what} PEM: {e}"))
}

/// The loaded TLS configuration of a running server, swapped whole on reload.
pub(crate) struct TlsAcceptor {
    settings: Tls,
    current: RwLock<Loaded>,
    hsts: Option<HeaderValue>,
}

struct Loaded {
    config: Arc<ServerConfig>,
    stamps: Vec<Option<(SystemTime, u64)>>,
}

impl fmt::Debug for TlsAcceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsAcceptor")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl TlsAcceptor {
    /// Checks and loads `settings`; the error names what is wrong.
    pub(crate) fn new(settings: Tls) -> Result<Self, ConfigError> {
        settings.check()?;
        let stamps = settings.stamps();
        let config = settings
            .load()
            .map_err(|e| ConfigError::invalid(format!("TLS: {e}")))?;
        let hsts = settings.hsts_max_age.map(|age| {
            HeaderValue::from_str(&format!("max-age={}", age.as_secs()))
                .unwrap_or_else(|_| HeaderValue::from_static("max-age=31536000"))
        });
        Ok(Self {
            settings,
            current: RwLock::new(Loaded {
                config: Arc::new(config),
                stamps,
            }),
            hsts,
        })
    }

    /// The rustls acceptor for a new connection, with the current configuration.
    pub(crate) fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        let config = self
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .config
            .clone();
        tokio_rustls::TlsAcceptor::from(config)
    }

    pub(crate) fn handshake_timeout(&self) -> Duration {
        self.settings.handshake_timeout
    }

    /// The `Strict-Transport-Security` value responses carry, if any.
    pub(crate) fn hsts(&self) -> Option<&HeaderValue> {
        self.hsts.as_ref()
    }

    /// Loads the files again if `force`d or if one of them changed; keeps the current
    /// configuration (and says why) when the new one does not load. Returns whether the
    /// configuration was replaced.
    pub(crate) fn reload(&self, force: bool) -> bool {
        let stamps = self.settings.stamps();
        if !force {
            let current = self.current.read().unwrap_or_else(|e| e.into_inner());
            if current.stamps == stamps {
                return false;
            }
        }
        match self.settings.load() {
            Ok(config) => {
                let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
                *current = Loaded {
                    config: Arc::new(config),
                    stamps,
                };
                drop(current);
                tracing::info!("TLS certificates reloaded");
                true
            }
            Err(error) => {
                // Remember the stamps so a broken file is reported once, not every interval;
                // the next change (or SIGHUP) tries again.
                let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
                current.stamps = stamps;
                drop(current);
                tracing::warn!(
                    %error,
                    "TLS certificates not reloaded; still serving the previous ones"
                );
                false
            }
        }
    }

    /// Reloads on `SIGHUP` and, when files are watched, every reload interval, until
    /// `shutdown`.
    pub(crate) async fn watch(self: Arc<Self>, shutdown: CancellationToken) {
        if !self.settings.watches_files() {
            return;
        }
        #[cfg(unix)]
        let mut hangup =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let interval = self.settings.reload_interval;
        loop {
            #[cfg(unix)]
            let signal = async {
                match hangup.as_mut() {
                    Some(hangup) => {
                        hangup.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            #[cfg(not(unix))]
            let signal = std::future::pending::<()>();
            let tick = async {
                match interval {
                    Some(interval) => tokio::time::sleep(interval).await,
                    None => std::future::pending::<()>().await,
                }
            };
            let force = tokio::select! {
                () = shutdown.cancelled() => return,
                () = signal => true,
                () = tick => false,
            };
            let this = self.clone();
            // Reading files and parsing keys is blocking work: off the runtime's threads.
            let _ = tokio::task::spawn_blocking(move || this.reload(force)).await;
        }
    }
}

#[cfg(test)]
mod tests;
