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
    DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
    client::danger::HandshakeSignatureValid,
    crypto::CryptoProvider,
    pki_types::{
        CertificateDer, CertificateRevocationListDer, PrivateKeyDer, UnixTime, pem::PemObject,
    },
    server::{
        WebPkiClientVerifier,
        danger::{ClientCertVerified, ClientCertVerifier},
    },
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
/// | [`accept_self_signed_client_certificates`](Self::accept_self_signed_client_certificates) | off (RFC 8705 `self_signed_tls_client_auth` clients need it) |
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
    /// See [`Tls::accept_self_signed_client_certificates`].
    self_signed_clients: bool,
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
            .field("self_signed_clients", &self.self_signed_clients)
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
            self_signed_clients: false,
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
        if self.client_certificate_optional
            && self.client_cas.is_empty()
            && !self.self_signed_clients
        {
            return Err(ConfigError::invalid(
                "TLS: client_certificate_optional needs a client CA (client_ca_file or client_ca_pem) \
                 or accept_self_signed_client_certificates",
            ));
        }
        if !self.crls.is_empty() && self.client_cas.is_empty() {
            return Err(ConfigError::invalid(
                "TLS: CRLs are given but no client CA: add client_ca_file or client_ca_pem",
            ));
        }
        Ok(())
    }

    /// Reads every file and builds the rustls configuration, and the self-signed certificate
    /// check of the same generation when those are accepted.
    fn load(&self) -> Result<(ServerConfig, Option<Arc<SelfSignedClients>>), String> {
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
        let mut self_signed = None;
        let builder = if self.client_cas.is_empty() && !self.self_signed_clients {
            builder.with_no_client_auth()
        } else if self.client_cas.is_empty() {
            let verifier = self.self_signed_verifier(None, provider);
            self_signed = Some(verifier.clone());
            builder.with_client_cert_verifier(verifier)
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
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .with_crls(crls)
                    .only_check_end_entity_revocation();
            if self.client_certificate_optional {
                verifier = verifier.allow_unauthenticated();
            }
            let verifier = verifier
                .build()
                .map_err(|e| format!("client certificate verification: {e}"))?;
            if self.self_signed_clients {
                let verifier = self.self_signed_verifier(Some(verifier), provider);
                self_signed = Some(verifier.clone());
                builder.with_client_cert_verifier(verifier)
            } else {
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder
            .with_single_cert(chain, key)
            .map_err(|e| format!("server certificate and key: {e}"))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok((config, self_signed))
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
    /// The self-signed certificate check built with `config`, when those are accepted.
    self_signed: Option<Arc<SelfSignedClients>>,
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
        let (config, self_signed) = settings
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
                self_signed,
            }),
            hsts,
        })
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
            Ok((config, self_signed)) => {
                let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
                *current = Loaded {
                    config: Arc::new(config),
                    stamps,
                    self_signed,
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

// ---------------------------------------------------------------------------------------------
// Self-signed client certificates (RFC 8705 §2.2, `self_signed_tls_client_auth`)
//
// rustls' `WebPkiClientVerifier` refuses a certificate no configured CA issued, yet an OAuth
// client may authenticate with a self-signed certificate it registered, and bind its tokens to
// it. This opt-in lets such certificates through the handshake (the client still proves it
// holds the key) and marks them, so that they can never stand for a caller by their names.
// ---------------------------------------------------------------------------------------------

impl Tls {
    /// Also accepts client certificates that no client CA issued, if they are validly
    /// self-signed (the certificate's own key signs it, it is within its validity period, and
    /// its extended key usage, if any, allows client authentication): for OAuth clients that
    /// authenticate with `self_signed_tls_client_auth` (RFC 8705 §2.2, matched by the
    /// certificate's thumbprint) and for binding tokens to such a certificate. Certificates
    /// from the client CAs (if any) are verified as before, revocation included.
    ///
    /// A self-signed certificate reaches requests with
    /// [`ClientCertificate::is_ca_verified`](crate::auth::ClientCertificate::is_ca_verified)
    /// `false`, and the [`ClientCertificates`](crate::auth::ClientCertificates) authenticator
    /// refuses it: anyone can put any name in one. Without
    /// [`client_certificate_optional`](Self::client_certificate_optional) every client must
    /// still present a certificate. The server then sends clients no list of acceptable CAs
    /// (clients pick a self-signed certificate only when none is named), and checks each
    /// connection's certificate against the client CAs a second time after the handshake, to
    /// mark it (two signature checks per connection with a CA-issued certificate).
    pub fn accept_self_signed_client_certificates(mut self) -> Self {
        self.self_signed_clients = true;
        self
    }

    /// Whether self-signed client certificates are accepted
    /// ([`accept_self_signed_client_certificates`](Self::accept_self_signed_client_certificates)).
    pub fn accepts_self_signed_client_certificates(&self) -> bool {
        self.self_signed_clients
    }

    /// The verifier of [`accept_self_signed_client_certificates`](Self::accept_self_signed_client_certificates),
    /// in front of the client CAs' verifier if there are client CAs.
    fn self_signed_verifier(
        &self,
        client_cas: Option<Arc<dyn ClientCertVerifier>>,
        provider: Arc<CryptoProvider>,
    ) -> Arc<SelfSignedClients> {
        Arc::new(SelfSignedClients {
            client_cas,
            provider,
            mandatory: !self.client_certificate_optional,
        })
    }
}

impl TlsAcceptor {
    /// The rustls acceptor for a new connection with the current configuration and, when
    /// self-signed client certificates are accepted, the check of the same configuration that
    /// tells afterwards whether the connection's certificate chains to a client CA.
    pub(crate) fn acceptor_with_check(
        &self,
    ) -> (tokio_rustls::TlsAcceptor, Option<Arc<SelfSignedClients>>) {
        let current = self.current.read().unwrap_or_else(|e| e.into_inner());
        (
            tokio_rustls::TlsAcceptor::from(current.config.clone()),
            current.self_signed.clone(),
        )
    }
}

/// Accepts a client certificate that the client CAs verify, or else one that is validly
/// self-signed.
#[derive(Debug)]
pub(crate) struct SelfSignedClients {
    /// The client CAs' verifier (with their CRLs), if any are configured.
    client_cas: Option<Arc<dyn ClientCertVerifier>>,
    /// Verifies the signatures.
    provider: Arc<CryptoProvider>,
    /// Whether a client must present a certificate.
    mandatory: bool,
}

impl SelfSignedClients {
    /// Verifies `end_entity` as its own trust anchor, with webpki's checks for client
    /// certificates: its signature by its own key (so its issuer is its subject), its validity
    /// period at `now`, its key usages.
    fn verify_self_signed(
        &self,
        end_entity: &CertificateDer<'_>,
        now: UnixTime,
    ) -> Result<(), rustls::Error> {
        let mut itself = RootCertStore::empty();
        itself.add(end_entity.clone().into_owned())?;
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(itself), self.provider.clone())
                .build()
                .map_err(|e| rustls::Error::General(e.to_string()))?;
        verifier
            .verify_client_cert(end_entity, &[], now)
            .map(|_| ())
    }

    /// Whether `chain` (end entity first, as the client sent it) is verified by the client
    /// CAs now: `false` for a certificate the handshake let in as self-signed.
    pub(crate) fn chains_to_client_ca(&self, chain: &[CertificateDer<'_>]) -> bool {
        let (Some(client_cas), Some((end_entity, intermediates))) =
            (&self.client_cas, chain.split_first())
        else {
            return false;
        };
        client_cas
            .verify_client_cert(end_entity, intermediates, UnixTime::now())
            .is_ok()
    }
}

impl ClientCertVerifier for SelfSignedClients {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    /// None: a client told which CAs are acceptable would not offer a self-signed certificate.
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let ca_error = match &self.client_cas {
            Some(client_cas) => match client_cas.verify_client_cert(end_entity, intermediates, now)
            {
                Ok(verified) => return Ok(verified),
                Err(error) => Some(error),
            },
            None => None,
        };
        match self.verify_self_signed(end_entity, now) {
            Ok(()) => Ok(ClientCertVerified::assertion()),
            // Neither: why the client CAs refused it is the likelier mistake to report (an
            // expired or revoked certificate of theirs).
            Err(self_signed_error) => Err(ca_error.unwrap_or(self_signed_error)),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod self_signed_tests {
    use rcgen::{
        BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
        date_time_ymd,
    };

    use super::*;

    /// Client-certificate parameters for `name`, valid until `until`.
    fn params(name: &str, until: i32) -> CertificateParams {
        let mut params = CertificateParams::new(vec![name.to_owned()]).unwrap();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.not_before = date_time_ymd(2020, 1, 1);
        params.not_after = date_time_ymd(until, 1, 1);
        params
    }

    fn self_signed(name: &str, until: i32) -> CertificateDer<'static> {
        let key = KeyPair::generate().unwrap();
        params(name, until).self_signed(&key).unwrap().der().clone()
    }

    /// A CA certificate and a client certificate it issued.
    fn ca_and_client() -> (CertificateDer<'static>, CertificateDer<'static>) {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = params("Test CA", 2100);
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.extended_key_usages = Vec::new();
        let ca_der = ca.self_signed(&ca_key).unwrap().der().clone();
        let issuer = Issuer::new(ca, ca_key);
        let client_key = KeyPair::generate().unwrap();
        let client = params("client.example", 2100)
            .signed_by(&client_key, &issuer)
            .unwrap();
        (ca_der, client.der().clone())
    }

    fn verifier(ca: Option<&CertificateDer<'static>>) -> SelfSignedClients {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let client_cas = ca.map(|ca| {
            let mut roots = RootCertStore::empty();
            roots.add(ca.clone()).unwrap();
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .unwrap()
        });
        SelfSignedClients {
            client_cas,
            provider,
            mandatory: true,
        }
    }

    fn accepts(verifier: &SelfSignedClients, certificate: &CertificateDer<'_>) -> bool {
        verifier
            .verify_client_cert(certificate, &[], UnixTime::now())
            .is_ok()
    }

    #[test]
    fn valid_self_signed_certificates_pass_and_are_told_apart() {
        let (ca, issued) = ca_and_client();
        let (_, foreign) = ca_and_client();
        let mine = self_signed("me.example", 2100);
        for verifier in [verifier(Some(&ca)), verifier(None)] {
            assert!(accepts(&verifier, &mine));
            assert!(
                !verifier.chains_to_client_ca(std::slice::from_ref(&mine)),
                "marked as not from a client CA"
            );
            assert!(
                !accepts(&verifier, &self_signed("late.example", 2021)),
                "expired"
            );
            assert!(
                !accepts(&verifier, &foreign),
                "another CA's certificate is not self-signed"
            );
            assert!(verifier.root_hint_subjects().is_empty());
        }
        let with_ca = verifier(Some(&ca));
        assert!(accepts(&with_ca, &issued));
        assert!(with_ca.chains_to_client_ca(std::slice::from_ref(&issued)));
        assert!(!accepts(&verifier(None), &issued));
    }

    #[test]
    fn the_setting_is_checked_and_reported() {
        let tls = Tls::from_pem("cert", "key");
        assert!(!tls.accepts_self_signed_client_certificates());
        assert!(tls.clone().client_certificate_optional().check().is_err());
        let tls = tls.accept_self_signed_client_certificates();
        assert!(tls.accepts_self_signed_client_certificates());
        assert!(
            tls.client_certificate_optional().check().is_ok(),
            "optional certificates need no client CA when self-signed ones are accepted"
        );
    }
}

#[cfg(test)]
mod tests;
