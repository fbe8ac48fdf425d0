//! An OAuth 2.1 authorization server for MCP: discovery (RFC 8414), a JWKS, the token endpoint
//! (client credentials, authorization code with PKCE, refresh-token rotation), the authorization
//! endpoint with a login and consent page, Dynamic Client Registration (RFC 7591), Client ID
//! Metadata Documents, and revocation (RFC 7009), with its state in a [`Store`]. With the
//! `mtls` feature, clients may authenticate with their TLS client certificate, and tokens are
//! bound to the certificate a client presents (RFC 8705, see `OAuthClient::mutual_tls`).
//!
//! Configure it with [`AuthorizationServer`], build it once (keys are loaded or generated, users
//! and clients stored), and either mount it on the MCP server with [`Gatekeeper::oauth`] — which
//! also makes the MCP endpoint a protected resource that accepts the server's tokens — or serve
//! [`OAuthServer::router`] on its own and verify its tokens elsewhere with
//! [`OAuthServer::authenticator`].
//!
//! ```no_run
//! use std::sync::Arc;
//! use mcp_gatekeeper::{oauth::{AuthorizationServer, User}, store::SqliteStore};
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let oauth = AuthorizationServer::new("https://mcp.example.com")
//!     .resource("https://mcp.example.com/mcp")
//!     .store(Arc::new(SqliteStore::open("data/oauth.db")?))
//!     .scopes(["data:read", "data:write"])
//!     .user(User::new("alice", std::env::var("ALICE_PASSWORD")?).role("admin"))
//!     .build()
//!     .await?;
//! # let _ = oauth; Ok(()) }
//! ```
//!
//! [`Gatekeeper::oauth`]: crate::Gatekeeper::oauth

mod authorize;
#[cfg(feature = "http-client")]
mod cimd;
mod clients;
mod error;
mod issue;
mod keys;
mod metadata;
mod redirect;
mod register;
mod revoke;
pub mod store;
mod token;
mod users;
mod verifier;

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::{Router, extract::DefaultBodyLimit};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};

#[cfg(feature = "http-client")]
#[cfg_attr(docsrs, doc(cfg(feature = "http-client")))]
pub use cimd::ClientMetadataDocuments;
pub use clients::OAuthClient;
pub use keys::SigningAlgorithm;
pub use store::TlsClientAuth;
pub use users::{Login, LoginFuture, SignedIn, User};
pub use verifier::OAuthTokens;

use crate::{
    AuditLog, ConfigError, Lockout, ProtectedResource, ScopeHierarchy,
    auth::{FailureThrottle, PasswordGuard},
    store::{FAMILY_REVOCATION_RETENTION_SECS, MemoryStore, Store, StoreError},
};

/// Where the endpoints are served, relative to the issuer.
pub(crate) mod paths {
    /// RFC 8414 metadata.
    pub(crate) const METADATA: &str = "/.well-known/oauth-authorization-server";
    /// The JWKS.
    pub(crate) const JWKS: &str = "/.well-known/jwks.json";
    /// The authorization endpoint (GET: the request; POST: login and consent forms).
    pub(crate) const AUTHORIZE: &str = "/oauth/authorize";
    /// The token endpoint.
    pub(crate) const TOKEN: &str = "/oauth/token";
    /// Dynamic Client Registration.
    pub(crate) const REGISTER: &str = "/oauth/register";
    /// Token revocation.
    pub(crate) const REVOKE: &str = "/oauth/revoke";
}

/// The grant types this server implements.
pub(crate) mod grants {
    /// RFC 6749 §4.1 with PKCE.
    pub(crate) const AUTHORIZATION_CODE: &str = "authorization_code";
    /// RFC 6749 §6, rotated on every use.
    pub(crate) const REFRESH_TOKEN: &str = "refresh_token";
    /// RFC 6749 §4.4, confidential clients only.
    pub(crate) const CLIENT_CREDENTIALS: &str = "client_credentials";
}

/// Largest form or JSON body the OAuth endpoints read.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// Configures an [`OAuthServer`]. Nothing is checked or stored until [`build`](Self::build).
#[must_use]
pub struct AuthorizationServer {
    issuer: String,
    resources: Vec<String>,
    store: Option<Arc<dyn Store>>,
    scopes: Vec<String>,
    access_token_lifetime: Duration,
    refresh_token_lifetime: Duration,
    refresh_grace_period: Duration,
    code_lifetime: Duration,
    algorithm: SigningAlgorithm,
    clients: Vec<OAuthClient>,
    users: Vec<User>,
    login: Option<Arc<dyn Login>>,
    dynamic_registration: bool,
    #[cfg(feature = "http-client")]
    metadata_documents: Option<ClientMetadataDocuments>,
    auto_approve: Option<String>,
    lockout: Lockout,
    /// Where the lockout's counts are shared with other replicas (`shared_lockout`).
    #[cfg(feature = "redis")]
    shared_lockout: Option<crate::RedisLockout>,
    audit: AuditLog,
    signing_key_lifetime: Option<Duration>,
    /// Password checks that may run at once; `None`: one per core.
    password_checks: Option<usize>,
    /// Which scopes include which.
    scope_hierarchy: ScopeHierarchy,
}

/// The default of [`AuthorizationServer::refresh_grace_period`]: a client's usual 30-second
/// request timeout plus a retry.
const DEFAULT_REFRESH_GRACE_PERIOD: Duration = Duration::from_secs(60);

/// How often the background housekeeping runs (purging expired codes and tokens, rotating
/// the signing key when it is due).
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(300);

/// How often the signing keys are read from the store in the background (between
/// housekeeping passes too), so that keys other servers on the store installed are used for
/// signing and published, and a key due for rotation is replaced.
pub(crate) const KEYS_RELOAD_EVERY: Duration = Duration::from_secs(60);

impl fmt::Debug for AuthorizationServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorizationServer")
            .field("issuer", &self.issuer)
            .field("resources", &self.resources)
            .field("scopes", &self.scopes)
            .field("clients", &self.clients)
            .field("users", &self.users)
            .finish_non_exhaustive()
    }
}

impl AuthorizationServer {
    /// An authorization server whose issuer identifier is `issuer`: an origin, `https://host`
    /// (or `http://` on a loopback address for local use), where the server's routes are
    /// mounted. The metadata, the tokens' `iss` and the `iss` of authorization responses all
    /// carry exactly this string. Checked by [`build`](Self::build), like every setting: an
    /// issuer with a path, query or fragment, or a non-loopback `http`, fails it.
    pub fn new(issuer: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            resources: Vec::new(),
            store: None,
            scopes: Vec::new(),
            access_token_lifetime: Duration::from_secs(3600),
            refresh_token_lifetime: Duration::from_secs(30 * 86_400),
            refresh_grace_period: DEFAULT_REFRESH_GRACE_PERIOD,
            code_lifetime: Duration::from_secs(600),
            algorithm: SigningAlgorithm::default(),
            clients: Vec::new(),
            users: Vec::new(),
            login: None,
            dynamic_registration: true,
            #[cfg(feature = "http-client")]
            metadata_documents: Some(ClientMetadataDocuments::default()),
            auto_approve: None,
            lockout: Lockout::default(),
            #[cfg(feature = "redis")]
            shared_lockout: None,
            audit: AuditLog::tracing_only(),
            signing_key_lifetime: Some(Duration::from_secs(30 * 86_400)),
            password_checks: None,
            scope_hierarchy: ScopeHierarchy::new(),
        }
    }

    /// A resource (MCP endpoint URI) tokens may be issued for; the first one is the default
    /// audience when a request names none (RFC 8707). At least one is required. Checked by
    /// [`build`](Self::build): a URI that is not a valid resource URI (see
    /// [`ProtectedResource::new`]) fails it.
    pub fn resource(mut self, uri: impl Into<String>) -> Self {
        self.resources.push(uri.into());
        self
    }

    /// Where clients, users, codes, refresh tokens, revocations and keys are kept (default: in
    /// memory, lost on restart).
    pub fn store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// The scopes the server grants (`scopes_supported`). [`Gatekeeper::oauth`] adds the
    /// scopes the tools declare.
    ///
    /// [`Gatekeeper::oauth`]: crate::Gatekeeper::oauth
    pub fn scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        for scope in scopes {
            let scope = scope.into();
            if !self.scopes.contains(&scope) {
                self.scopes.push(scope);
            }
        }
        self
    }

    /// Declares which scopes include which (see [`ScopeHierarchy`]). Every declared scope is
    /// added to `scopes_supported` (so users can consent to the broader ones), and a server
    /// mounting this one with [`Gatekeeper::oauth`](crate::Gatekeeper::oauth) lets a token
    /// holding a broader scope call tools that require a narrower one. Issuing stays exact: a
    /// client or user allowed `data` can be granted `data`, and thereby reach `data:read` tools.
    pub fn scope_hierarchy(mut self, hierarchy: ScopeHierarchy) -> Self {
        for scope in hierarchy.declared() {
            if !self.scopes.iter().any(|s| s == scope) {
                self.scopes.push(scope.to_owned());
            }
        }
        self.scope_hierarchy = self.scope_hierarchy.merge(&hierarchy);
        self
    }

    /// How long access tokens live (default one hour; at most one day,
    /// [`FAMILY_REVOCATION_RETENTION_SECS`], else [`build`](Self::build) fails). The cap exists
    /// because the store forgets a revoked grant a day after revoking it: a longer-lived access
    /// token of that grant would be accepted again afterwards.
    ///
    /// [`FAMILY_REVOCATION_RETENTION_SECS`]: crate::store::FAMILY_REVOCATION_RETENTION_SECS
    pub fn access_token_lifetime(mut self, lifetime: Duration) -> Self {
        self.access_token_lifetime = lifetime;
        self
    }

    /// How long a refresh token lives unused (default 30 days; each rotation starts anew).
    pub fn refresh_token_lifetime(mut self, lifetime: Duration) -> Self {
        self.refresh_token_lifetime = lifetime;
        self
    }

    /// How long after rotating a refresh token the old one may be presented again while its
    /// successor is still unused, as a retry of a refresh whose answer was lost (default 60
    /// seconds: a client's usual 30-second request timeout plus a retry; `Duration::ZERO`
    /// turns retries off, so a second presentation always ends the grant). A retry gets a new
    /// pair and retires the unused one; see [`Store::rotate_refresh`] for the exact rules and
    /// the trade-off: a stolen token replayed within the window gets a pair, and the client's
    /// next refresh then revokes the grant, as it would without a window.
    pub fn refresh_grace_period(mut self, period: Duration) -> Self {
        self.refresh_grace_period = period;
        self
    }

    /// How long an authorization code lives (default and maximum 10 minutes).
    pub fn code_lifetime(mut self, lifetime: Duration) -> Self {
        self.code_lifetime = lifetime.min(Duration::from_secs(600));
        self
    }

    /// The algorithm access tokens are signed with (default ES256).
    pub fn signing_algorithm(mut self, algorithm: SigningAlgorithm) -> Self {
        self.algorithm = algorithm;
        self
    }

    /// How long a signing key signs before a new one replaces it (default 30 days; `None`:
    /// only [`OAuthServer::rotate_signing_key`] rotates). Checked at start-up and by the
    /// background housekeeping (every minute); a retired key stays in the JWKS until the tokens
    /// it signed have expired, so rotation never breaks an issued token. Servers sharing a
    /// store that find the key due together install one new key between them, and all sign
    /// with it.
    pub fn signing_key_lifetime(mut self, lifetime: Option<Duration>) -> Self {
        self.signing_key_lifetime = lifetime;
        self
    }

    /// A pre-registered client, stored (replacing an earlier version) when the server is built.
    pub fn client(mut self, client: OAuthClient) -> Self {
        self.clients.push(client);
        self
    }

    /// A user who can sign in on the login page, stored with an argon2 hash of the password
    /// when the server is built.
    pub fn user(mut self, user: User) -> Self {
        self.users.push(user);
        self
    }

    /// Signs users in with the application's own logic instead of (before) the stored users.
    pub fn login(mut self, login: impl Login) -> Self {
        self.login = Some(Arc::new(login));
        self
    }

    /// Whether clients may register themselves (RFC 7591; default on). Self-registered clients
    /// are public or confidential clients of the authorization-code grant only.
    pub fn dynamic_registration(mut self, enabled: bool) -> Self {
        self.dynamic_registration = enabled;
        self
    }

    /// How Client ID Metadata Documents are fetched; `None` turns them off (default: on, with
    /// private and loopback addresses refused). Without the `http-client` feature the server
    /// fetches none and says so in its metadata.
    #[cfg(feature = "http-client")]
    #[cfg_attr(docsrs, doc(cfg(feature = "http-client")))]
    pub fn client_metadata_documents(mut self, documents: Option<ClientMetadataDocuments>) -> Self {
        self.metadata_documents = documents;
        self
    }

    /// **For tests only:** every valid authorization request is approved at once for
    /// `username`, without a login or consent page. Logged loudly at start-up.
    pub fn insecure_auto_approve(mut self, username: impl Into<String>) -> Self {
        self.auto_approve = Some(username.into());
        self
    }

    /// When repeated failed client authentications or logins lock an account name and an
    /// address out (default: 10 in a minute lock out for 5 minutes).
    pub fn lockout(mut self, lockout: Lockout) -> Self {
        self.lockout = lockout;
        self
    }

    /// Counts the failures and password attempts of [`lockout`](Self::lockout) in Redis,
    /// shared by every replica configured with the same Redis and prefix: a client secret
    /// guessed through several replicas is throttled as if through one, and so is a password
    /// (per account and source, with the spread counters and device cookies, exactly as in one
    /// process). While Redis does not answer, each replica counts on its own (see
    /// [`RedisLockout`]). A setting that cannot be used fails [`build`](Self::build).
    ///
    /// [`RedisLockout`]: crate::RedisLockout
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn shared_lockout(mut self, lockout: crate::RedisLockout) -> Self {
        self.shared_lockout = Some(lockout);
        self
    }

    /// How many password checks (argon2id, about 19 MiB of memory each) may run at once
    /// (default: one per core). Sign-ins beyond it wait in a short, bounded queue, then are
    /// answered `503` with `Retry-After`, so a burst of logins can neither exhaust memory nor
    /// starve other requests of threads.
    pub fn max_concurrent_password_checks(mut self, checks: usize) -> Self {
        self.password_checks = Some(checks.max(1));
        self
    }

    /// Where the server's audit records go (default: `tracing` only).
    pub fn audit(mut self, log: AuditLog) -> Self {
        self.audit = log;
        self
    }

    /// The issuer identifier.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Checks the configuration, loads (or generates) the signing keys and stores the
    /// configured clients and users.
    ///
    /// # Errors
    /// When no resource is configured, a client or user is invalid, or the store fails.
    pub async fn build(self) -> Result<OAuthServer, ConfigError> {
        let issuer = check_issuer(&self.issuer)?;
        let mut resources: Vec<String> = Vec::with_capacity(self.resources.len());
        for uri in &self.resources {
            let canonical = ProtectedResource::new(uri)?.resource().to_owned();
            if !resources.contains(&canonical) {
                resources.push(canonical);
            }
        }
        if resources.is_empty() {
            return Err(ConfigError::invalid(format!(
                "authorization server `{}` names no resource to issue tokens for \
                 (AuthorizationServer::resource)",
                issuer
            )));
        }
        if self.access_token_lifetime.as_secs() > FAMILY_REVOCATION_RETENTION_SECS as u64 {
            return Err(ConfigError::invalid(format!(
                "access_token_lifetime of {} s is longer than the {FAMILY_REVOCATION_RETENTION_SECS} s \
                 a revoked grant is remembered: its access tokens could be accepted again after \
                 the revocation is forgotten",
                self.access_token_lifetime.as_secs()
            )));
        }
        self.scope_hierarchy.check()?;
        let logins = PasswordGuard::new(self.lockout);
        let client_failures = FailureThrottle::new(self.lockout);
        #[cfg(feature = "redis")]
        let (logins, client_failures) = match self.shared_lockout {
            Some(shared) => {
                let (failures, passwords) = shared.build_for_authorization_server()?;
                (
                    logins.shared(Some(Arc::new(passwords))),
                    client_failures.shared(Some(Arc::new(failures))),
                )
            }
            None => (logins, client_failures),
        };
        let store = self.store.unwrap_or_else(|| Arc::new(MemoryStore::new()));
        let mut configured_roles: Vec<String> = self
            .users
            .iter()
            .filter_map(User::role_name)
            .chain(self.clients.iter().filter_map(OAuthClient::role_name))
            .map(str::to_owned)
            .collect();
        configured_roles.sort_unstable();
        configured_roles.dedup();
        let now = unix_now();
        let store_error = ConfigError::Store;
        for client in &self.clients {
            for user in &self.users {
                if user.username() == client.id() {
                    return Err(ConfigError::invalid(format!(
                        "client id `{}` is also a username: tokens of the two would share a \
                         subject (RFC 9700 §4.15)",
                        client.id()
                    )));
                }
            }
            let record = client.to_record(&self.scopes, now)?;
            store.put_client(record).await.map_err(store_error)?;
        }
        for user in self.users {
            let record = user.into_record(now).await?;
            store.put_user(record).await.map_err(store_error)?;
        }
        let keys = keys::KeyRing::load(
            store.as_ref(),
            self.algorithm,
            self.access_token_lifetime.as_secs() as i64,
            now,
        )
        .await?;
        // The pages' keys come from a secret every server on the store shares (stored by
        // the first to start), so that any replica serves any step of a sign-in.
        let mut candidate = [0u8; 32];
        rand::fill(&mut candidate);
        let pages_secret = store
            .shared_secret(authorize::SECRET_NAME, candidate)
            .await
            .map_err(store_error)?;
        let pending = authorize::PendingRequests::new(
            authorize::Secrets::derive(&pages_secret, &issuer),
            store.clone(),
        );
        #[cfg(feature = "http-client")]
        let metadata_documents = match self.metadata_documents {
            Some(documents) => Some(documents.into_fetcher()?),
            None => None,
        };
        if let Some(user) = &self.auto_approve {
            tracing::warn!(
                target: crate::AUDIT_TARGET,
                user = %user,
                "authorization server auto-approves every authorization request (tests only)"
            );
        }
        let state = Arc::new(AsState {
            issuer,
            resources,
            scopes: self.scopes,
            access_token_lifetime: self.access_token_lifetime.as_secs() as i64,
            refresh_token_lifetime: self.refresh_token_lifetime.as_secs() as i64,
            refresh_grace_period: i64::try_from(self.refresh_grace_period.as_secs())
                .unwrap_or(i64::MAX),
            code_lifetime: self.code_lifetime.as_secs() as i64,
            users: users::Users::new(
                store.clone(),
                self.login,
                match self.password_checks {
                    Some(n) => users::PasswordChecks::new(n),
                    None => users::PasswordChecks::per_core(),
                },
            ),
            store,
            keys,
            dynamic_registration: self.dynamic_registration,
            #[cfg(feature = "http-client")]
            metadata_documents,
            auto_approve: self.auto_approve,
            logins,
            client_failures,
            #[cfg(feature = "metrics")]
            grant_metrics: std::sync::OnceLock::new(),
            audit: self.audit,
            configured_roles,
            pending,
            signing_key_lifetime: self.signing_key_lifetime.map(|d| d.as_secs() as i64),
            scope_hierarchy: self.scope_hierarchy,
            client_certificates: ClientCertificates::default(),
        });
        let server = OAuthServer { state };
        server.refresh_signing_keys(now).await.map_err(|e| {
            ConfigError::invalid(format!("reading or rotating the signing keys: {e}"))
        })?;
        spawn_housekeeping(Arc::downgrade(&server.state));
        Ok(server)
    }
}

/// A built authorization server: its routes, a verifier for its tokens, and key rotation.
#[derive(Clone)]
pub struct OAuthServer {
    state: Arc<AsState>,
}

impl fmt::Debug for OAuthServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthServer")
            .field("issuer", &self.state.issuer)
            .field("resources", &self.state.resources)
            .finish_non_exhaustive()
    }
}

impl OAuthServer {
    /// The issuer identifier.
    pub fn issuer(&self) -> &str {
        &self.state.issuer
    }

    /// The URL of the RFC 8414 metadata document.
    pub fn metadata_url(&self) -> String {
        self.state.url(paths::METADATA)
    }

    /// Counts this server's grants and its password and client-secret lockouts with
    /// `registrar`'s handles (the first server that counts and mounts it wins).
    #[cfg(feature = "metrics")]
    pub(crate) fn count_in(&self, registrar: &crate::metrics::Registrar) {
        let _ = self
            .state
            .grant_metrics
            .set(crate::metrics::GrantMetrics::new(registrar));
        self.state
            .logins
            .count_lockouts_on(crate::metrics::lockouts(registrar, "password"));
        self.state
            .client_failures
            .count_lockouts_on(crate::metrics::lockouts(registrar, "client_secret"));
    }

    /// The scopes the server grants.
    pub fn scopes(&self) -> &[String] {
        &self.state.scopes
    }

    /// Which scopes include which, as declared with
    /// [`AuthorizationServer::scope_hierarchy`].
    pub fn scope_hierarchy(&self) -> &ScopeHierarchy {
        &self.state.scope_hierarchy
    }

    /// The store the server keeps its state in.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.state.store
    }

    /// Every endpoint: metadata, JWKS, authorize, token, register, revoke. Mount it at the
    /// issuer's origin (the paths are absolute).
    pub fn router(&self) -> Router {
        let api = Router::new()
            .merge(metadata::routes())
            .merge(token::routes())
            .merge(register::routes())
            .merge(revoke::routes())
            .layer(axum::middleware::from_fn(error::cors));
        Router::new()
            .merge(api)
            .merge(authorize::routes())
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
            .with_state(self.state.clone())
    }

    /// An authenticator that accepts this server's access tokens for `resource` (its `aud`):
    /// signature with a published key, issuer, audience, expiry, and not revoked.
    ///
    /// # Errors
    /// When `resource` is not one of the server's resources.
    pub fn authenticator(&self, resource: &str) -> Result<OAuthTokens, ConfigError> {
        let canonical = ProtectedResource::new(resource)?.resource().to_owned();
        if !self.state.resources.contains(&canonical) {
            return Err(ConfigError::invalid(format!(
                "`{canonical}` is not a resource of authorization server `{}` (its resources: {})",
                self.state.issuer,
                self.state.resources.join(", ")
            )));
        }
        Ok(OAuthTokens::new(self.state.clone(), canonical))
    }

    /// The protected-resource metadata for `resource`, naming this server.
    ///
    /// # Errors
    /// When `resource` is not a valid resource URI.
    pub fn protected_resource(&self, resource: &str) -> Result<ProtectedResource, ConfigError> {
        Ok(ProtectedResource::new(resource)?.authorization_server(self.state.issuer.clone()))
    }

    /// Whether the server can serve: its store answers a query and a signing key is loaded.
    /// `Err` says what is wrong (for `/readyz`; never a secret).
    ///
    /// # Errors
    /// When the store does not answer or no key can sign.
    pub async fn ready(&self) -> Result<(), String> {
        // A lookup of a client id no client can have: one indexed read, nothing written.
        self.state
            .store
            .get_client("\u{0}readiness-probe")
            .await
            .map_err(|e| format!("store: {e}"))?;
        if self.state.keys.current().signing_kid().is_empty() {
            return Err("no signing key".into());
        }
        Ok(())
    }

    /// One pass of housekeeping: reads the signing keys from the store (taking up keys other
    /// servers on the store installed), rotates the signing key when its lifetime is over,
    /// deletes keys no live token can need and removes expired codes, refresh tokens and
    /// revocations from the store. Runs every five minutes in the background while the server
    /// exists (the keys alone every minute); call it yourself to run it now. Returns the
    /// number of records purged.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn housekeeping(&self) -> Result<u64, StoreError> {
        let now = unix_now();
        self.refresh_signing_keys(now).await?;
        self.state.store.purge_expired(now).await
    }

    /// Reads the signing keys from the store and rotates the current one when it is due: of
    /// servers on one store finding it due together, one installs the new key (a
    /// compare-and-swap in the store) and every one signs with it.
    async fn refresh_signing_keys(&self, now: i64) -> Result<(), StoreError> {
        let installed = self
            .state
            .keys
            .refresh(
                self.state.store.as_ref(),
                now,
                self.state.signing_key_lifetime,
            )
            .await?;
        if let Some(kid) = installed {
            tracing::info!(target: crate::AUDIT_TARGET, kid = %kid, "signing key rotated");
        }
        Ok(())
    }

    /// Tells the server which client certificates reach its endpoints, as the server that
    /// mounts it knows (`Gatekeeper::oauth` does this from its TLS settings and trusted
    /// proxies): certificates from CAs it trusts (`ca_issued`), and self-signed ones
    /// (`self_signed`). Only then does the metadata advertise certificate-bound tokens and the
    /// `tls_client_auth` and `self_signed_tls_client_auth` methods, and does registration accept
    /// them. Only ever widens: a server mounted on two listeners advertises what either sees.
    #[cfg(feature = "mtls")]
    pub(crate) fn client_certificates_reach(&self, ca_issued: bool, self_signed: bool) {
        let seen = &self.state.client_certificates;
        if ca_issued {
            seen.ca_issued.store(true, Ordering::Relaxed);
        }
        if self_signed {
            seen.self_signed.store(true, Ordering::Relaxed);
        }
    }

    /// Starts signing with a new key. The previous key stays in the JWKS until the last token
    /// it signed has expired, so no issued token stops working. Returns the new `kid`.
    ///
    /// Other servers sharing the store accept the new key's tokens from their first one (a
    /// token with a `kid` they do not know makes them read the keys again), publish it and
    /// sign with it once they read the keys: at their next JWKS request or token with the new
    /// `kid`, and within a minute in any case.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn rotate_signing_key(&self) -> Result<String, StoreError> {
        let kid = self
            .state
            .keys
            .rotate(self.state.store.as_ref(), unix_now())
            .await?;
        tracing::info!(target: crate::AUDIT_TARGET, kid = %kid, "signing key rotated");
        Ok(kid)
    }
}

/// Everything the endpoints share.
pub(crate) struct AsState {
    /// The issuer identifier, exactly as published.
    pub(crate) issuer: String,
    /// The resources tokens may be issued for; the first is the default audience.
    pub(crate) resources: Vec<String>,
    /// `scopes_supported`.
    pub(crate) scopes: Vec<String>,
    /// Seconds.
    pub(crate) access_token_lifetime: i64,
    /// Seconds.
    pub(crate) refresh_token_lifetime: i64,
    /// Seconds a rotated refresh token may be retried (`Store::rotate_refresh`'s `grace`).
    pub(crate) refresh_grace_period: i64,
    /// Seconds.
    pub(crate) code_lifetime: i64,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) keys: keys::KeyRing,
    pub(crate) users: users::Users,
    pub(crate) dynamic_registration: bool,
    #[cfg(feature = "http-client")]
    pub(crate) metadata_documents: Option<cimd::Fetcher>,
    /// The user every authorization request is approved for, in test mode.
    pub(crate) auto_approve: Option<String>,
    /// Password attempts, counted before they are verified.
    pub(crate) logins: PasswordGuard,
    /// Failed client authentications (client secrets are high-entropy: a correct one always
    /// passes), per address.
    pub(crate) client_failures: FailureThrottle,
    pub(crate) audit: AuditLog,
    /// The roles configured users and clients hold, for the start-up check that every role
    /// names one the tools declare.
    pub(crate) configured_roles: Vec<String>,
    /// Authorization requests waiting for login and consent.
    pub(crate) pending: authorize::PendingRequests,
    /// Seconds a signing key signs before it is rotated, if rotation is scheduled.
    pub(crate) signing_key_lifetime: Option<i64>,
    /// Which scopes include which.
    pub(crate) scope_hierarchy: ScopeHierarchy,
    /// Which client certificates can reach the endpoints.
    pub(crate) client_certificates: ClientCertificates,
    /// The grants counted, once a server that counts mounts this one.
    #[cfg(feature = "metrics")]
    pub(crate) grant_metrics: std::sync::OnceLock<crate::metrics::GrantMetrics>,
}

/// Which client certificates can reach the authorization server's endpoints. The server never
/// sees a connection itself, so the server that mounts it says (see
/// [`OAuthServer::client_certificates_reach`]); until then, none: advertising mutual TLS to
/// clients whose certificates can never arrive would send them down a path that always fails.
#[derive(Debug, Default)]
pub(crate) struct ClientCertificates {
    /// Certificates that chain to a CA the server (or its proxy) trusts.
    ca_issued: AtomicBool,
    /// Self-signed certificates (RFC 8705 §2.2).
    self_signed: AtomicBool,
}

impl ClientCertificates {
    /// Whether certificates from trusted CAs arrive (`tls_client_auth`).
    pub(crate) fn ca_issued(&self) -> bool {
        self.ca_issued.load(Ordering::Relaxed)
    }

    /// Whether self-signed certificates arrive (`self_signed_tls_client_auth`).
    pub(crate) fn self_signed(&self) -> bool {
        self.self_signed.load(Ordering::Relaxed)
    }

    /// Whether any certificate arrives, so tokens can be bound to one.
    pub(crate) fn any(&self) -> bool {
        self.ca_issued() || self.self_signed()
    }
}

/// Runs [`OAuthServer::housekeeping`] every [`HOUSEKEEPING_EVERY`], and reads the signing
/// keys (rotating them when due) every [`KEYS_RELOAD_EVERY`] in between, until the server is
/// dropped.
fn spawn_housekeeping(state: std::sync::Weak<AsState>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let keys_only = (HOUSEKEEPING_EVERY.as_secs() / KEYS_RELOAD_EVERY.as_secs()).max(1);
    runtime.spawn(async move {
        let mut tick = tokio::time::interval(KEYS_RELOAD_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        for round in 1u64.. {
            tick.tick().await;
            let Some(state) = state.upgrade() else {
                return;
            };
            let server = OAuthServer { state };
            if round.is_multiple_of(keys_only) {
                if let Err(error) = server.housekeeping().await {
                    tracing::error!(target: crate::AUDIT_TARGET, %error, "OAuth housekeeping failed");
                }
            } else if let Err(error) = server.refresh_signing_keys(unix_now()).await {
                tracing::error!(
                    target: crate::AUDIT_TARGET,
                    %error,
                    "reading the OAuth signing keys failed"
                );
            }
        }
    });
}

impl AsState {
    /// Whether the server fetches Client ID Metadata Documents.
    pub(crate) fn fetches_metadata_documents(&self) -> bool {
        #[cfg(feature = "http-client")]
        return self.metadata_documents.is_some();
        #[cfg(not(feature = "http-client"))]
        return false;
    }

    /// The absolute URL of an endpoint.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.issuer.trim_end_matches('/'))
    }

    /// The resource a request names, or the default one; `None` when it names another.
    pub(crate) fn resource_for(&self, requested: Option<&str>) -> Option<String> {
        match requested {
            None | Some("") => Some(self.resources[0].clone()),
            Some(uri) => {
                let canonical = ProtectedResource::new(uri).ok()?.resource().to_owned();
                self.resources.contains(&canonical).then_some(canonical)
            }
        }
    }
}

/// Seconds since the epoch.
pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// A random secret of 256 bits, base64url (codes, refresh tokens, client secrets, CSRF tokens).
pub(crate) fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A random identifier of 128 bits, base64url (client ids, families, `jti`s).
pub(crate) fn random_id() -> String {
    let mut bytes = [0u8; 16];
    rand::fill(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Validates an issuer identifier (RFC 8414 §2): https (or http on loopback), no query or
/// fragment, no trailing slash.
fn check_issuer(issuer: &str) -> Result<String, ConfigError> {
    let invalid = |why: &str| ConfigError::InvalidUrl {
        what: "issuer",
        url: issuer.to_owned(),
        reason: why.to_owned(),
    };
    let url = url::Url::parse(issuer).map_err(|_| invalid("not an absolute URL"))?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("an issuer has no query or fragment (RFC 8414 §2)"));
    }
    match url.scheme() {
        "https" => {}
        "http" if redirect::is_loopback_host(url.host_str().unwrap_or_default()) => {}
        _ => {
            return Err(invalid(
                "expected https:// (http:// only on a loopback address)",
            ));
        }
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("missing host"));
    }
    if url.path() != "/" || !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            "the issuer is an origin: no path, user or password (the endpoints are mounted at its root)",
        ));
    }
    Ok(issuer.trim_end_matches('/').to_owned())
}

impl crate::http::ReadinessCheck for OAuthServer {
    fn ready(&self) -> futures::future::BoxFuture<'_, Result<(), String>> {
        Box::pin(OAuthServer::ready(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuers_are_checked() {
        assert_eq!(
            check_issuer("https://auth.example.com/").unwrap(),
            "https://auth.example.com"
        );
        assert!(check_issuer("http://127.0.0.1:3000").is_ok());
        assert!(check_issuer("http://localhost:3000").is_ok());
        for bad in [
            "http://auth.example.com",
            "https://auth.example.com?x=1",
            "https://auth.example.com#f",
            "auth.example.com",
            "ftp://auth.example.com",
            "https://auth.example.com/tenant",
        ] {
            assert!(check_issuer(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn signing_keys_rotate_when_their_lifetime_is_over() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let server = |lifetime| {
            AuthorizationServer::new("http://127.0.0.1:1")
                .resource("http://127.0.0.1:1/mcp")
                .store(store.clone())
                .signing_key_lifetime(lifetime)
                .build()
        };
        let first = server(Some(Duration::from_secs(3600))).await.unwrap();
        let first_kid = first.state.keys.current().signing_kid().to_owned();
        let again = server(Some(Duration::from_secs(3600))).await.unwrap();
        assert_eq!(
            again.state.keys.current().signing_kid(),
            first_kid,
            "not due yet"
        );
        let due = server(Some(Duration::ZERO)).await.unwrap();
        let keys = due.state.keys.current();
        assert_ne!(keys.signing_kid(), first_kid, "rotated at start-up");
        assert!(keys.publishes(&first_kid), "the old key stays published");
        due.housekeeping().await.unwrap();
        assert_ne!(
            due.state.keys.current().signing_kid(),
            keys.signing_kid(),
            "and again"
        );
    }

    /// Servers built together on one store (each with its own connection, as replicas have)
    /// install one first key, and take up a rotation made by one of them at their next read.
    #[cfg(feature = "sqlite")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn servers_built_together_on_one_store_agree_on_one_key() {
        let path = std::env::temp_dir().join(format!(
            "mcpgk-keys-{}-{}.db",
            std::process::id(),
            random_id()
        ));
        let builds = (0..4).map(|_| {
            let store: Arc<dyn Store> =
                Arc::new(crate::store::SqliteStore::open(&path).expect("opens"));
            AuthorizationServer::new("http://127.0.0.1:1")
                .resource("http://127.0.0.1:1/mcp")
                .store(store)
                .build()
        });
        let servers: Vec<OAuthServer> = futures::future::join_all(builds)
            .await
            .into_iter()
            .map(|built| built.expect("builds"))
            .collect();
        let kid = servers[0].state.keys.current().signing_kid().to_owned();
        for server in &servers {
            assert_eq!(server.state.keys.current().signing_kid(), kid);
        }
        assert_eq!(servers[3].store().signing_keys().await.unwrap().len(), 1);

        let new = servers[1].rotate_signing_key().await.unwrap();
        for server in &servers {
            server.housekeeping().await.unwrap();
            let keys = server.state.keys.current();
            assert_eq!(keys.signing_kid(), new);
            assert!(keys.publishes(&kid), "the old key stays published");
        }
        drop(servers);
        for suffix in ["", "-wal", "-shm"] {
            let mut file = path.clone().into_os_string();
            file.push(suffix);
            let _ = std::fs::remove_file(file);
        }
    }

    #[tokio::test]
    async fn housekeeping_purges_expired_codes() {
        use crate::store::{AuthCodeRecord, CodeRedemption, hash_secret};
        let server = AuthorizationServer::new("http://127.0.0.1:1")
            .resource("http://127.0.0.1:1/mcp")
            .client(OAuthClient::public("app").redirect_uris(["http://127.0.0.1/cb"]))
            .build()
            .await
            .unwrap();
        let code = |hash| AuthCodeRecord {
            code_hash: hash,
            client_id: "app".into(),
            subject: "alice".into(),
            redirect_uri: "http://127.0.0.1/cb".into(),
            code_challenge: "c".into(),
            scope: String::new(),
            resource: None,
            family_id: random_id(),
            expires_at: unix_now() - 1,
        };
        server
            .store()
            .put_code(code(hash_secret("old")))
            .await
            .unwrap();
        assert!(server.housekeeping().await.unwrap() >= 1);
        assert_eq!(
            server
                .store()
                .redeem_code(hash_secret("old"), unix_now())
                .await
                .unwrap(),
            CodeRedemption::Unknown,
            "purged, not merely expired"
        );
    }

    #[tokio::test]
    async fn access_tokens_may_not_outlive_the_memory_of_revocations() {
        let server = |lifetime| {
            AuthorizationServer::new("http://127.0.0.1:1")
                .resource("http://127.0.0.1:1/mcp")
                .access_token_lifetime(lifetime)
                .build()
        };
        let limit = Duration::from_secs(FAMILY_REVOCATION_RETENTION_SECS as u64);
        assert!(server(limit).await.is_ok());
        let err = server(limit + Duration::from_secs(1)).await.unwrap_err();
        assert!(err.to_string().contains("access_token_lifetime"), "{err}");
    }

    #[tokio::test]
    async fn build_requires_a_resource() {
        let err = AuthorizationServer::new("http://127.0.0.1:1")
            .build()
            .await
            .unwrap_err();
        assert!(err.to_string().contains("names no resource"), "{err}");
    }
}
