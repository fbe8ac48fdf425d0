//! A minimal OAuth 2.0 token endpoint (`POST /auth/token`, client credentials grant) that
//! issues HS256 JWTs to confidential clients, and takes them back (`POST /auth/revoke`,
//! RFC 7009).
//!
//! It is meant for small deployments and examples that have no authorization server: a
//! service presents its client id and secret and receives a short-lived bearer token that a
//! [`Jwt`] verifier configured with the same secret accepts (see
//! [`TokenEndpoint::verifier`]).
//!
//! Clients authenticate with `application/json` (`{"client_id": "...", "client_secret":
//! "..."}`), with `application/x-www-form-urlencoded` (`grant_type=client_credentials&client_id=
//! ...&client_secret=...`), or with HTTP Basic (RFC 6749 §2.3.1). Only the SHA-256 digest of each
//! client secret is kept, and digests are compared in constant time.
//!
//! To rotate the signing secret without refusing every token at once, configure several
//! secrets by key id ([`TokenEndpoint::hs256_keys`]): new tokens are signed with the current
//! one and name it in their `kid` header, and the verifier accepts tokens of every secret the
//! endpoint holds (the recipe is in [`Jwt`]'s documentation).
//!
//! ```no_run
//! # fn main() -> Result<(), mcp_gatekeeper::ConfigError> {
//! use mcp_gatekeeper::{TokenClient, TokenEndpoint};
//!
//! // MCP_CLIENTS="reporting:s3cret-0123456789ab:analyst:reports:read reports:export,ops:0ther-secret-456789:admin"
//! let endpoint = TokenEndpoint::hs256_from_env("JWT_SECRET")?
//!     .clients(TokenEndpoint::clients_from_env("MCP_CLIENTS")?)
//!     .client(TokenClient::new("ci", "another-secret-0123").role("deployer"));
//! let verifier = endpoint.verifier()?; // mount it in the server's authenticators
//! // then `Gatekeeper::token_endpoint(endpoint)`, or serve `endpoint.router()?` yourself
//! # let _ = verifier; Ok(()) }
//! ```

use std::{
    collections::{HashMap, HashSet},
    fmt,
    net::SocketAddr,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use arc_swap::ArcSwap;
use axum::{
    Form, Json, Router,
    body::Bytes,
    extract::{ConnectInfo, FromRequest, Request, State},
    middleware::map_response,
    response::{IntoResponse, Response},
    routing::post,
};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

use crate::{
    AuditEvent, AuditLog, AuditRecord, ConfigError, Lockout, Outcome,
    auth::{
        FailureThrottle, Jwt, JwtAlgorithm,
        basic::{self, BasicCredentials, BasicError},
        jwt::key_set::{self, DecodingKeys, KeyLabel},
        reload::{self, Reloadable, WatchedFile},
        revoked::{RevokeError, RevokedTokens},
    },
};

/// Where the endpoint is served.
const TOKEN_PATH: &str = "/auth/token";
/// Where clients revoke their tokens (RFC 7009).
const REVOKE_PATH: &str = "/auth/revoke";
/// The `iss` of issued tokens unless configured otherwise.
const DEFAULT_ISSUER: &str = "mcp-auth-server";
/// How long issued tokens are valid unless configured otherwise.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);
/// The only grant this endpoint implements.
const CLIENT_CREDENTIALS: &str = "client_credentials";
/// The challenge sent when HTTP Basic client authentication failed.
const BASIC_CHALLENGE: &str = r#"Basic realm="mcp-gatekeeper""#;
/// Compared against when the client id is unknown, so that an unknown id costs the same hash
/// and comparison as a known one. No secret hashes to all zeroes.
const DUMMY_DIGEST: [u8; 32] = [0; 32];
/// Shortest client secret accepted (as for API keys and the OAuth server's clients): a secret
/// must be out of reach of guessing, whatever the failure throttle does.
const MIN_SECRET_LEN: usize = 16;
/// The format of [`TokenEndpoint::parse_clients`] entries, for error messages.
const ENTRY_FORMAT: &str = "CLIENT_ID:SECRET:ROLE[:SCOPE SCOPE ...]";

/// A confidential client allowed to obtain tokens from a [`TokenEndpoint`].
///
/// Only the SHA-256 digest of the secret is stored. A client whose secret is empty can never
/// obtain a token.
#[derive(Clone)]
pub struct TokenClient {
    id: String,
    secret_digest: [u8; 32],
    /// Whether the secret is shorter than [`MIN_SECRET_LEN`] (refused when the endpoint is
    /// mounted).
    short_secret: bool,
    role: Option<String>,
    scopes: Vec<String>,
}

impl TokenClient {
    /// A client identified by `client_id` that authenticates with `secret` (at least 16
    /// characters; a shorter one makes mounting the endpoint fail).
    pub fn new(client_id: impl Into<String>, secret: impl AsRef<[u8]>) -> Self {
        Self {
            id: client_id.into(),
            secret_digest: Sha256::digest(secret.as_ref()).into(),
            short_secret: secret.as_ref().len() < MIN_SECRET_LEN,
            role: None,
            scopes: Vec::new(),
        }
    }

    /// The role written into the client's tokens (`role` claim). Without it the tokens carry
    /// no role.
    #[must_use]
    pub fn role(mut self, role: impl Into<String>) -> Self {
        self.role = Some(role.into());
        self
    }

    /// Adds scopes, written into the client's tokens as the space-separated `scope` (and, for
    /// readers that expect it, the same list as a `permissions` array). A string containing
    /// whitespace counts as several scopes, so that both claims always say the same.
    #[must_use]
    pub fn scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        for scope in scopes {
            for s in scope.as_ref().split_whitespace() {
                if !self.scopes.iter().any(|known| known == s) {
                    self.scopes.push(s.to_owned());
                }
            }
        }
        self
    }

    /// The client id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether `secrets` holds this client's secret; see [`TokenEndpoint::authenticate`].
    fn secret_matches(digest: &[u8; 32], secrets: &[&str]) -> Choice {
        secrets.iter().fold(Choice::from(0), |matched, secret| {
            let presented: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
            // An empty secret never authenticates, even if one was configured.
            let non_empty = Choice::from(u8::from(!secret.is_empty()));
            matched | (presented[..].ct_eq(&digest[..]) & non_empty)
        })
    }
}

impl fmt::Debug for TokenClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenClient")
            .field("id", &self.id)
            .field("role", &self.role)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

/// The `POST /auth/token` endpoint: exchanges client credentials for an HS256 JWT.
///
/// Issued tokens carry `sub` and `client_id` (the client id), `role`, `scope` (the client's
/// scopes, space-separated) and the same list as `permissions` (an array), `iss`, `aud` (when set), `iat`, `exp` and a random
/// 128-bit `jti`; an endpoint built with [`hs256_keys`](Self::hs256_keys) also names the
/// current secret's `kid` in their header.
///
/// Responses (all with `Cache-Control: no-store` and `Pragma: no-cache`):
/// - `200 {"access_token": "...", "token_type": "Bearer", "expires_in": 3600}`;
/// - `401 {"error": "invalid_client", ...}` for an unknown client or a wrong secret, with
///   `WWW-Authenticate: Basic realm="mcp-gatekeeper"` when the client used the
///   `Authorization` header;
/// - `400 {"error": "unsupported_grant_type", ...}` when `grant_type` is not
///   `client_credentials`;
/// - `400 {"error": "invalid_request", ...}` for a malformed body, an unsupported content type,
///   missing fields or two authentication methods at once.
///
/// - `429 {"error": "invalid_client", ...}` with `Retry-After` for a failed authentication from
///   an address that failed too often (see [`Lockout`]; a correct secret is never refused).
///
/// A client gives a token up at `POST /auth/revoke` (RFC 7009: the same client
/// authentication, and `token=...`): the [`verifier`](Self::verifier)s of this endpoint refuse
/// it from then on (`401 invalid_token`), until it would have expired anyway. The answer is
/// `200` whether or not the token was valid or the client's (RFC 7009 §2.2: nothing is learned
/// about other clients' tokens); `503 temporarily_unavailable` with `Retry-After` when the
/// revocation could not be recorded. With several replicas, share the list through Redis
/// ([`shared_revocations`](Self::shared_revocations)).
///
/// Every decision is an audit record (event `token`, or `revocation`; secrets and tokens never
/// appear, a token is named by its `jti`), in the server's audit log when mounted with
/// [`Gatekeeper::token_endpoint`](crate::Gatekeeper::token_endpoint).
pub struct TokenEndpoint {
    /// Every secret, kept to build verifiers.
    secrets: Secrets,
    /// Signs new tokens: the one secret, or the current kid's.
    key: EncodingKey,
    /// The header of new tokens: HS256, and the current kid when the secrets have kids. Built
    /// once, since it is the same for every token.
    header: Header,
    /// The same secrets, to read the tokens clients revoke (of any kid the verifiers accept).
    decoding: DecodingKeys,
    issuer: String,
    lifetime: Duration,
    /// The clients, given in code or read from a file that is read again when it changes.
    clients: Clients,
    /// The `aud` of issued tokens (the MCP server's resource URL), if set.
    audience: Option<String>,
    audit: AuditLog,
    failures: Arc<FailureThrottle>,
    /// The tokens clients gave up, shared with the verifiers.
    revoked: Arc<RevokedTokens>,
    /// A setting that could not be used, reported by `verifier` and `router`.
    config_error: Option<ConfigError>,
}

/// Where a [`TokenEndpoint`]'s clients come from.
enum Clients {
    /// Given in code or from the environment.
    Listed(HashMap<String, Arc<TokenClient>>),
    /// Read from a file, and again when it changes.
    File(Arc<ClientsFile>),
}

impl Clients {
    fn get(&self, id: &str) -> Option<Arc<TokenClient>> {
        match self {
            Clients::Listed(clients) => clients.get(id).cloned(),
            Clients::File(file) => file.clients.load().get(id).cloned(),
        }
    }

    /// The clients given in code (a file's are checked as they are read).
    fn listed(&self) -> impl Iterator<Item = &Arc<TokenClient>> {
        match self {
            Clients::Listed(clients) => Some(clients.values()),
            Clients::File(_) => None,
        }
        .into_iter()
        .flatten()
    }

    fn ids(&self) -> Vec<String> {
        match self {
            Clients::Listed(clients) => clients.keys().cloned().collect(),
            Clients::File(file) => file.clients.load().keys().cloned().collect(),
        }
    }
}

/// A file of clients in the key-file format, read again when it changes.
struct ClientsFile {
    file: WatchedFile,
    clients: ArcSwap<HashMap<String, Arc<TokenClient>>>,
}

impl ClientsFile {
    fn open(path: std::path::PathBuf) -> Result<Self, ConfigError> {
        let file = WatchedFile::new(path);
        let clients = Self::read(file.path())?;
        Ok(Self {
            file,
            clients: ArcSwap::from_pointee(clients),
        })
    }

    /// The clients in the file at `path`: its lines parsed as a key file's (the same checks:
    /// digests only, unique ids and secrets), each key a client.
    fn read(path: &std::path::Path) -> Result<HashMap<String, Arc<TokenClient>>, ConfigError> {
        let keys = crate::ApiKeys::from_file(path)?;
        let mut clients = HashMap::new();
        for key in keys.keys() {
            if key.has_subject_or_expiry() {
                return Err(ConfigError::invalid(format!(
                    "{}: token client `{}` has a `subject=` or `expires=`, which token clients \
                     do not take",
                    path.display(),
                    key.id_str()
                )));
            }
            let client = TokenClient {
                id: key.id_str().to_owned(),
                secret_digest: key.secret_digest(),
                // The file holds digests: the secret's length cannot be known, nor be short
                // by mistake in the way a secret typed into the environment can.
                short_secret: false,
                role: key.role_name().map(str::to_owned),
                scopes: Vec::new(),
            }
            .scopes(key.scope_names());
            clients.insert(client.id.clone(), Arc::new(client));
        }
        Ok(clients)
    }

    fn load(&self, cause: &str) {
        self.file.reading();
        let path = self.file.path();
        match Self::read(path) {
            Ok(clients) => {
                let count = clients.len();
                self.clients.store(Arc::new(clients));
                tracing::info!(path = %path.display(), clients = count, cause, "token client file reloaded");
                let detail = format!("{count} token clients from {} ({cause})", path.display());
                self.file.record(
                    Outcome::Allowed,
                    "token_endpoint",
                    "client_file_reloaded",
                    &detail,
                );
            }
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, cause, "token client file not reloaded: the clients in force stay");
                let detail = format!("{error} ({cause}); the clients in force stay");
                self.file.record(
                    Outcome::Denied,
                    "token_endpoint",
                    "client_file_rejected",
                    &detail,
                );
            }
        }
    }
}

impl Reloadable for ClientsFile {
    fn file(&self) -> &WatchedFile {
        &self.file
    }

    fn reload(&self, cause: &str) {
        self.load(cause);
    }
}

/// The secrets of a [`TokenEndpoint`], as configured.
enum Secrets {
    /// One secret; tokens carry no `kid` ([`TokenEndpoint::hs256`]).
    One(Vec<u8>),
    /// Secrets by kid, in the order given ([`TokenEndpoint::hs256_keys`]).
    ByKid(Vec<(String, Vec<u8>)>),
}

impl TokenEndpoint {
    /// An endpoint signing with the HS256 `secret` (at least 32 bytes, RFC 7518 §3.2), issuer
    /// `mcp-auth-server`, one-hour tokens and no clients yet.
    ///
    /// # Errors
    /// When the secret is too short. The error never contains the secret.
    pub fn hs256(secret: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        let secret = secret.as_ref();
        // The verifier enforces the key-length rule; signing must follow the same one.
        Jwt::hs256(secret)?;
        let key = EncodingKey::from_secret(secret)
            .map_err(|_| ConfigError::invalid("the HS256 secret is unusable"))?;
        let decoding = jsonwebtoken::DecodingKey::from_secret(secret)
            .map_err(|_| ConfigError::invalid("the HS256 secret is unusable"))?;
        Ok(Self::signing_with(
            Secrets::One(secret.to_vec()),
            key,
            Header::new(Algorithm::HS256),
            DecodingKeys::Single(decoding),
        ))
    }

    /// An endpoint holding several HS256 secrets by key id (`kid`, non-empty visible ASCII;
    /// each secret at least 32 bytes): it signs new tokens with the secret of `current_kid`
    /// and names it in their `kid` header, and its [`verifier`](Self::verifier)s and
    /// `/auth/revoke` accept tokens signed with any of `keys`. Otherwise as
    /// [`TokenEndpoint::hs256`].
    ///
    /// Rotating: add the new secret under a new kid to `keys` and keep signing with the old
    /// kid until every verifier holds the new secret; then make the new kid current; after the
    /// longest token [`lifetime`](Self::lifetime) (plus the verifiers' leeway), remove the old
    /// kid. See [`Jwt`]'s documentation.
    ///
    /// ```
    /// # fn main() -> Result<(), mcp_gatekeeper::ConfigError> {
    /// use mcp_gatekeeper::TokenEndpoint;
    ///
    /// let endpoint = TokenEndpoint::hs256_keys(
    ///     "2025-09",
    ///     [
    ///         ("2025-06", "the-previous-secret-of-at-least-32-bytes"),
    ///         ("2025-09", "the-current-secret-of-at-least-32-bytes!"),
    ///     ],
    /// )?;
    /// let verifier = endpoint.verifier()?; // accepts tokens of both kids
    /// # let _ = verifier; Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`Jwt::hs256_keys`], and when `current_kid` is not one of the kids. The error never
    /// contains a secret.
    pub fn hs256_keys<I, K, S>(current_kid: &str, keys: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (K, S)>,
        K: AsRef<str>,
        S: AsRef<[u8]>,
    {
        let secrets = keys
            .into_iter()
            .map(|(kid, secret)| (kid.as_ref().to_owned(), secret.as_ref().to_vec()))
            .collect();
        Self::hs256_by_kid(current_kid, secrets, key_set::label_by_kid)
    }

    /// [`TokenEndpoint::hs256_keys`] with the keys in environment variable `var`, in the
    /// format of [`Jwt::hs256_keys_from_env`] (`k1:secret1,k2:secret2`); new tokens are signed
    /// with the secret of `current_kid`.
    ///
    /// # Errors
    /// As [`Jwt::hs256_keys_from_env`] (entries named by position, never by their text), and
    /// when `current_kid` is not one of the variable's kids.
    pub fn hs256_keys_from_env(var: &str, current_kid: &str) -> Result<Self, ConfigError> {
        Self::hs256_keys_in(var, &crate::error::env_var(var)?, current_kid)
    }

    /// [`TokenEndpoint::hs256_keys_from_env`], given the variable's value.
    fn hs256_keys_in(var: &str, value: &str, current_kid: &str) -> Result<Self, ConfigError> {
        key_set::parse_key_list(value)
            .and_then(|keys| {
                let secrets = keys
                    .into_iter()
                    .map(|(kid, secret)| (kid.to_owned(), secret.as_bytes().to_vec()))
                    .collect();
                Self::hs256_by_kid(current_kid, secrets, key_set::label_by_position)
            })
            .map_err(|e| crate::error::in_env_var(var, e))
    }

    /// An endpoint signing with `current_kid`'s secret among `secrets`; `label` names a key in
    /// errors.
    fn hs256_by_kid(
        current_kid: &str,
        secrets: Vec<(String, Vec<u8>)>,
        label: KeyLabel,
    ) -> Result<Self, ConfigError> {
        // The verifier's rules (kid shape, one entry per kid, secret length) apply to signing
        // too, and the same check builds the keys revocations are read with.
        let decoding = key_set::hmac_by_kid(
            JwtAlgorithm::Hs256,
            secrets.iter().map(|(kid, secret)| (kid, secret)),
            label,
        )?;
        let Some((_, current)) = secrets.iter().find(|(kid, _)| kid == current_kid) else {
            return Err(ConfigError::invalid(format!(
                "the current kid {current_kid:?} is not one of the keys: tokens must be signed \
                 with a secret the verifiers hold"
            )));
        };
        let key = EncodingKey::from_secret(current)
            .map_err(|_| ConfigError::invalid("the HS256 secret is unusable"))?;
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(current_kid.to_owned());
        Ok(Self::signing_with(
            Secrets::ByKid(secrets),
            key,
            header,
            decoding,
        ))
    }

    /// The endpoint's defaults around its secrets: issuer `mcp-auth-server`, one-hour tokens,
    /// no clients yet.
    fn signing_with(
        secrets: Secrets,
        key: EncodingKey,
        header: Header,
        decoding: DecodingKeys,
    ) -> Self {
        Self {
            secrets,
            key,
            header,
            decoding,
            issuer: DEFAULT_ISSUER.to_owned(),
            lifetime: DEFAULT_LIFETIME,
            clients: Clients::Listed(HashMap::new()),
            audience: None,
            audit: AuditLog::tracing_only(),
            failures: Arc::new(FailureThrottle::new(Lockout::default())),
            revoked: Arc::default(),
            config_error: None,
        }
    }

    /// Keeps the revoked tokens in Redis, shared by every replica configured with the same
    /// Redis and prefix: a token revoked through one replica is refused by all of them within
    /// a second (see [`RedisRevocations`](crate::RedisRevocations) for what happens while
    /// Redis does not answer). A setting that cannot be used fails
    /// [`verifier`](Self::verifier) and [`router`](Self::router).
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    #[must_use]
    pub fn shared_revocations(mut self, revocations: crate::RedisRevocations) -> Self {
        let shared = revocations.build().and_then(|shared| {
            self.revoked.share(shared).map_err(|()| {
                ConfigError::invalid("TokenEndpoint::shared_revocations: set more than once")
            })
        });
        if let Err(error) = shared {
            self.config_error.get_or_insert(error);
        }
        self
    }

    /// Where the endpoint's audit records go when served with [`router`](Self::router)
    /// (default: `tracing` only; [`Gatekeeper::token_endpoint`](crate::Gatekeeper::token_endpoint)
    /// uses the server's).
    #[must_use]
    pub fn audit(mut self, log: AuditLog) -> Self {
        self.audit = log;
        self
    }

    /// When failed authentications from one address are answered `429` when served with
    /// [`router`](Self::router) (default [`Lockout::default`]; [`Gatekeeper::token_endpoint`](crate::Gatekeeper::token_endpoint)
    /// shares the server's).
    #[must_use]
    pub fn lockout(mut self, lockout: Lockout) -> Self {
        self.failures = Arc::new(FailureThrottle::new(lockout));
        self
    }

    /// [`TokenEndpoint::hs256`] with the secret in environment variable `var` (its UTF-8
    /// bytes, as written).
    ///
    /// # Errors
    /// [`ConfigError::MissingEnv`] when the variable is not set; [`ConfigError::Invalid`] when it
    /// is not UTF-8 or too short.
    pub fn hs256_from_env(var: &str) -> Result<Self, ConfigError> {
        let secret = crate::error::env_var(var)?;
        Self::hs256(secret).map_err(|e| crate::error::in_env_var(var, e))
    }

    /// The `aud` of issued tokens, and the audience [`verifier`](Self::verifier) requires: the
    /// resource URL of the MCP server the tokens are for (`https://mcp.example.com/mcp`).
    #[must_use]
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// The `iss` of issued tokens (default `mcp-auth-server`).
    #[must_use]
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = issuer.into();
        self
    }

    /// How long issued tokens are valid (default one hour; whole seconds, at least one).
    #[must_use]
    pub fn lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime.max(Duration::from_secs(1));
        self
    }

    /// Adds a client; one with the same id is replaced.
    #[must_use]
    pub fn client(mut self, client: TokenClient) -> Self {
        match &mut self.clients {
            Clients::Listed(clients) => {
                clients.insert(client.id.clone(), Arc::new(client));
            }
            Clients::File(file) => {
                self.config_error
                    .get_or_insert(ConfigError::invalid(format!(
                        "token client `{}` given in code while the clients come from {}",
                        client.id,
                        file.file.path().display()
                    )));
            }
        }
        self
    }

    /// Adds clients; see [`TokenEndpoint::client`].
    #[must_use]
    pub fn clients(self, clients: impl IntoIterator<Item = TokenClient>) -> Self {
        clients.into_iter().fold(self, Self::client)
    }

    /// Takes the clients from a file in the key-file format (`CLIENT_ID ROLE sha256:HEX
    /// [scopes=A,B]` per line, as [`ApiKeys::from_file`](crate::ApiKeys::from_file) reads
    /// it: digests of the secrets, never the secrets), and reads it again when it changes
    /// (checked every 500 ms) and on `SIGHUP` once the endpoint is mounted, as
    /// [`ApiKeyFile`](crate::ApiKeyFile) does: clients are added, removed and given new
    /// secrets without a restart. A file that fails changes nothing and is audited
    /// (`client_file_rejected`); a file taken is audited `client_file_reloaded`. Instead of
    /// clients given in code: both fail [`router`](Self::router), as does a file that cannot be
    /// read now. Token clients have no `subject=` or `expires=`.
    pub fn clients_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        if matches!(&self.clients, Clients::Listed(listed) if !listed.is_empty()) {
            self.config_error.get_or_insert(ConfigError::invalid(
                "token clients given in code and from a file: choose one",
            ));
            return self;
        }
        match ClientsFile::open(path.into()) {
            Ok(file) => self.clients = Clients::File(Arc::new(file)),
            Err(error) => {
                self.config_error.get_or_insert(error);
            }
        }
        self
    }

    /// Reads clients from environment variable `var`; see [`TokenEndpoint::parse_clients`] for
    /// the format.
    ///
    /// # Errors
    /// [`ConfigError::MissingEnv`] when the variable is not set; [`ConfigError::Invalid`] naming
    /// the faulty entry's position (never its secret) when it does not parse.
    pub fn clients_from_env(var: &str) -> Result<Vec<TokenClient>, ConfigError> {
        Self::parse_clients(&crate::error::env_var(var)?)
            .map_err(|e| crate::error::in_env_var(var, e))
    }

    /// Parses a client list: entries separated by commas, each
    /// `CLIENT_ID:SECRET:ROLE[:SCOPE SCOPE ...]` (scopes separated by spaces).
    ///
    /// For example
    /// `reporting:s3cret-0123456789ab:analyst:reports:read reports:export,ops:0ther-secret-456789:admin`
    /// declares client `reporting` (role `analyst`, scopes `reports:read` and
    /// `reports:export`) and client `ops` (role `admin`, no scopes). Client ids, secrets
    /// and roles cannot contain `:` or `,`; scopes can contain `:` but not `,`. Whitespace
    /// around fields and empty entries (a trailing comma, line breaks) are ignored.
    ///
    /// # Errors
    /// When an entry lacks a field, has an empty id, secret or role, a secret shorter than 16
    /// characters, repeats a client id, or there is no entry at all. The message names the entry's position (1-based), never its
    /// secret.
    pub fn parse_clients(spec: &str) -> Result<Vec<TokenClient>, ConfigError> {
        let mut clients = Vec::new();
        let mut ids = HashSet::new();
        for (index, entry) in spec.split(',').enumerate() {
            let entry = entry.trim();
            if entry.is_empty() {
                continue;
            }
            let position = index + 1;
            let client = parse_client(entry).map_err(|problem| {
                ConfigError::invalid(format!("client entry {position}: {problem}"))
            })?;
            if !ids.insert(client.id.clone()) {
                return Err(ConfigError::invalid(format!(
                    "client entry {position}: client id `{}` is declared twice",
                    client.id
                )));
            }
            clients.push(client);
        }
        if clients.is_empty() {
            return Err(ConfigError::invalid(format!(
                "no client entries; expected comma-separated {ENTRY_FORMAT}"
            )));
        }
        Ok(clients)
    }

    /// A [`Jwt`] verifier for the tokens this endpoint issues: same secret (every secret by
    /// kid, for an endpoint built with [`hs256_keys`](Self::hs256_keys), so that tokens signed
    /// before the current kid changed stay valid), same issuer, and the
    /// [`audience`](Self::audience) when one is set (without it, a server refuses to start
    /// with the verifier: see [`Jwt::audience`]).
    ///
    /// # Errors
    /// When a setting could not be used ([`shared_revocations`](Self::shared_revocations));
    /// the secrets were checked when the endpoint was built.
    pub fn verifier(&self) -> Result<Jwt, ConfigError> {
        if let Some(error) = &self.config_error {
            return Err(ConfigError::Invalid(error.to_string()));
        }
        let jwt = match &self.secrets {
            Secrets::One(secret) => Jwt::hs256(secret)?,
            Secrets::ByKid(secrets) => {
                Jwt::hs256_keys(secrets.iter().map(|(kid, secret)| (kid, secret)))?
            }
        };
        let jwt = jwt
            .issuer(self.issuer.clone())
            .refusing_revoked(self.revoked.clone());
        Ok(match &self.audience {
            Some(audience) => jwt.audience(audience.clone()),
            None => jwt,
        })
    }

    /// The router serving `POST /auth/token`. The client's address (for the failure throttle
    /// and the audit) is read from `ConnectInfo<SocketAddr>`.
    ///
    /// # Errors
    /// When a client's secret is shorter than 16 characters.
    pub fn router(mut self) -> Result<Router, ConfigError> {
        if let Some(error) = self.config_error.take() {
            return Err(error);
        }
        if let Clients::File(file) = &self.clients {
            file.file.audit_to(&self.audit);
            reload::watch(file);
        }
        if let Some(client) = self.clients.listed().find(|c| c.short_secret) {
            return Err(ConfigError::WeakSecret {
                what: format!("the secret of token client `{}`", client.id),
                minimum: MIN_SECRET_LEN,
                unit: "characters",
            });
        }
        Ok(Router::new()
            .route(TOKEN_PATH, post(issue))
            .route(REVOKE_PATH, post(revoke))
            .with_state(Arc::new(self))
            .layer(map_response(no_store)))
    }

    /// The router, sharing `audit` and `failures` with the server it is mounted on.
    pub(crate) fn mount(
        mut self,
        audit: AuditLog,
        failures: Arc<FailureThrottle>,
    ) -> Result<Router, ConfigError> {
        self.audit = audit;
        self.failures = failures;
        self.router()
    }

    /// Handles one token request.
    async fn handle(
        &self,
        headers: &HeaderMap,
        request: Request,
    ) -> Result<Arc<TokenClient>, Refusal> {
        let basic = basic_credentials(headers)?;
        let body = read_body(headers, request).await?;
        if body.grant_type().is_some_and(|g| g != CLIENT_CREDENTIALS) {
            return Err(Refusal::new(RefusalKind::UnsupportedGrantType));
        }
        let presented = Presented::resolve(basic, body)?;
        self.client_of(presented)
    }

    /// The client `presented` authenticates, or the `invalid_client` refusal saying why.
    fn client_of(&self, presented: Presented) -> Result<Arc<TokenClient>, Refusal> {
        if let Some(client) = self.authenticate(&presented) {
            return Ok(client);
        }
        let reason = if self.clients.get(&presented.id).is_some() {
            "wrong_secret"
        } else {
            "unknown_client"
        };
        Err(Refusal::invalid_client(
            presented.via_header,
            reason,
            presented.id,
        ))
    }

    /// Finds the client and checks its secret. An unknown id is hashed and compared just like
    /// a known one, so response times do not reveal which ids exist.
    fn authenticate(&self, presented: &Presented) -> Option<Arc<TokenClient>> {
        if let Clients::File(file) = &self.clients
            && !file.file.is_watched()
        {
            // Mounted outside a runtime: watch from the first request on.
            reload::watch(file);
        }
        let client = self.clients.get(&presented.id);
        let digest = client.as_ref().map_or(&DUMMY_DIGEST, |c| &c.secret_digest);
        let matched = TokenClient::secret_matches(digest, &presented.secrets());
        let known = Choice::from(u8::from(client.is_some()));
        if bool::from(matched & known) {
            client
        } else {
            None
        }
    }

    /// Signs a token for the registered client `client_id` without asking for its secret: for
    /// demos, tests and tooling that hold the signing secret anyway. `None` for an unknown
    /// client.
    pub fn token_for(&self, client_id: &str) -> Option<String> {
        let client = self.clients.get(client_id)?;
        self.sign(&client).ok().map(|(token, _)| token)
    }

    /// Signs a token for `client`; returns it and its `jti`.
    fn sign(&self, client: &TokenClient) -> Result<(String, String), jsonwebtoken::errors::Error> {
        let issued_at = unix_now();
        let jti = hex::encode(rand::random::<[u8; 16]>());
        let claims = IssuedClaims {
            sub: &client.id,
            client_id: &client.id,
            role: client.role.as_deref(),
            permissions: &client.scopes,
            scope: client.scopes.join(" "),
            iss: &self.issuer,
            aud: self.audience.as_deref(),
            iat: issued_at,
            exp: issued_at.saturating_add(self.lifetime.as_secs()),
            jti: &jti,
        };
        let token = jsonwebtoken::encode(&self.header, &claims, &self.key)?;
        Ok((token, jti))
    }

    /// Signs a token for `client`, audits it and builds the success response.
    fn issue_token(&self, client: &TokenClient, remote: Option<SocketAddr>) -> Response {
        let lifetime = self.lifetime.as_secs();
        let Ok((access_token, jti)) = self.sign(client) else {
            // HMAC signing of a serializable struct cannot fail; if it ever did, it would be a
            // server fault unrelated to the request's input.
            let mut record = AuditRecord::new(AuditEvent::Token, Outcome::Denied);
            record.client_id = Some(&client.id);
            record.reason = Some("signing_failed");
            record.remote_addr = remote;
            self.audit.record(&record);
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        };
        let mut record = AuditRecord::new(AuditEvent::Token, Outcome::Allowed);
        record.method = Some(CLIENT_CREDENTIALS);
        record.subject = Some(&client.id);
        record.client_id = Some(&client.id);
        record.credential_id = Some(&jti);
        record.detail = client.role.as_deref();
        record.remote_addr = remote;
        self.audit.record(&record);
        let body = TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in: lifetime,
        };
        (StatusCode::OK, Json(body)).into_response()
    }

    /// Audits a refusal and answers it; a failed client authentication counts toward the
    /// address's failure throttle (and is answered 429 past it).
    async fn refuse(&self, refusal: Refusal, remote: Option<SocketAddr>) -> Response {
        let throttled = match (&refusal.kind, remote) {
            (RefusalKind::InvalidClient { .. }, Some(addr)) => {
                self.failures.record(addr.ip()).await
            }
            _ => None,
        };
        let reason = match refusal.kind {
            RefusalKind::InvalidRequest(_) => "invalid_request",
            RefusalKind::UnsupportedGrantType => "unsupported_grant_type",
            RefusalKind::InvalidClient { reason, .. } => reason,
        };
        let mut record = AuditRecord::new(
            AuditEvent::Token,
            if throttled.is_some() {
                Outcome::RateLimited
            } else {
                Outcome::Denied
            },
        );
        record.method = Some(CLIENT_CREDENTIALS);
        record.reason = Some(reason);
        record.client_id = (!refusal.client_id.is_empty()).then_some(refusal.client_id.as_str());
        record.remote_addr = remote;
        record.retry_after_seconds = throttled.map(|w| w.as_secs().max(1));
        self.audit.record(&record);
        refusal.into_response(throttled)
    }
}

/// What a revocation request asked, from an authenticated client.
struct RevocationRequest {
    client: Arc<TokenClient>,
    token: String,
}

/// The claims a revocation needs; the signature and issuer are checked as for any token.
#[derive(Deserialize)]
struct RevokedClaims {
    client_id: String,
    exp: u64,
    jti: String,
}

impl TokenEndpoint {
    /// Authenticates a revocation request's client and reads its token.
    async fn revocation_request(
        &self,
        headers: &HeaderMap,
        request: Request,
    ) -> Result<RevocationRequest, Refusal> {
        let basic = basic_credentials(headers)?;
        let body = read_body(headers, request).await?;
        let token = body.token().map(str::to_owned);
        let presented = Presented::resolve(basic, body)?;
        let client = self.client_of(presented)?;
        let token = token.ok_or(Refusal::invalid_request("the token to revoke is required"))?;
        Ok(RevocationRequest { client, token })
    }

    /// Revokes the request's token if it is one of this endpoint's, unexpired, issued to the
    /// client asking; answers `200` in every such case (RFC 7009 §2.2).
    async fn revoke_token(
        &self,
        request: RevocationRequest,
        remote: Option<SocketAddr>,
    ) -> Response {
        let mut validation = jsonwebtoken::Validation::new(Algorithm::HS256);
        validation.set_issuer(&[&self.issuer]);
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp", "iss"]);
        // A token naming no kid, or a kid this endpoint does not hold, is no token of its own.
        let claims = self
            .decoding
            .for_token(&request.token)
            .ok()
            .and_then(|key| {
                jsonwebtoken::decode::<RevokedClaims>(&request.token, key, &validation).ok()
            });
        let mut record = AuditRecord::new(AuditEvent::Revocation, Outcome::Allowed);
        record.client_id = Some(&request.client.id);
        record.remote_addr = remote;
        let claims = match claims {
            Some(data) if data.claims.client_id == request.client.id => data.claims,
            Some(data) => {
                record.outcome = Outcome::Denied;
                record.reason = Some("token_of_another_client");
                record.credential_id = Some(&data.claims.jti);
                self.audit.record(&record);
                return revocation_answered();
            }
            None => {
                // Expired, forged, someone else's issuer: nothing to revoke.
                record.reason = Some("not_a_valid_token");
                self.audit.record(&record);
                return revocation_answered();
            }
        };
        record.credential_id = Some(&claims.jti);
        match self.revoked.revoke(&claims.jti, claims.exp).await {
            Ok(()) => {
                record.reason = Some("revoked");
                self.audit.record(&record);
                revocation_answered()
            }
            Err(error) => {
                record.outcome = Outcome::Denied;
                record.reason = Some(match error {
                    RevokeError::Full => "revocation_list_full",
                    #[cfg(feature = "redis")]
                    RevokeError::Unavailable => "revocation_list_unavailable",
                });
                self.audit.record(&record);
                let mut response = (
                    StatusCode::SERVICE_UNAVAILABLE,
                    Json(ErrorResponse {
                        error: "temporarily_unavailable",
                        error_description: "the revocation could not be recorded; retry shortly",
                    }),
                )
                    .into_response();
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                response
            }
        }
    }
}

/// RFC 7009 §2.2: `200` with an empty body.
fn revocation_answered() -> Response {
    StatusCode::OK.into_response()
}

/// The axum handler of `/auth/revoke`.
async fn revoke(
    State(endpoint): State<Arc<TokenEndpoint>>,
    headers: HeaderMap,
    request: Request,
) -> Response {
    let remote = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    match endpoint.revocation_request(&headers, request).await {
        Ok(request) => endpoint.revoke_token(request, remote).await,
        Err(refusal) => endpoint.refuse(refusal, remote).await,
    }
}

impl fmt::Debug for TokenEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ids: Vec<String> = self.clients.ids();
        ids.sort_unstable();
        let mut endpoint = f.debug_struct("TokenEndpoint");
        endpoint.field("secret", &"<redacted>");
        // Kids name secrets without revealing them; an endpoint of one secret has none.
        if let (Some(kids), Some(current)) = (self.decoding.kids(), &self.header.kid) {
            endpoint.field("kids", &kids).field("current_kid", current);
        }
        endpoint
            .field("issuer", &self.issuer)
            .field("lifetime", &self.lifetime)
            .field("clients", &ids)
            .finish()
    }
}

/// The axum handler: runs the endpoint and answers (and audits) the outcome.
async fn issue(
    State(endpoint): State<Arc<TokenEndpoint>>,
    headers: HeaderMap,
    request: Request,
) -> Response {
    let remote = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    match endpoint.handle(&headers, request).await {
        Ok(client) => endpoint.issue_token(&client, remote),
        Err(refusal) => endpoint.refuse(refusal, remote).await,
    }
}

/// RFC 6749 §5.1: token responses must not be cached. Applied to every response of the router,
/// errors included.
async fn no_store(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// The fields of a token request body (JSON or form); others are ignored.
#[derive(Default, Deserialize)]
struct TokenRequest {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    /// The token to revoke (`/auth/revoke`).
    token: Option<String>,
}

impl TokenRequest {
    /// RFC 6749 §3.1: a parameter sent without a value counts as omitted.
    fn grant_type(&self) -> Option<&str> {
        non_empty(self.grant_type.as_deref())
    }

    fn client_id(&self) -> Option<&str> {
        non_empty(self.client_id.as_deref())
    }

    fn client_secret(&self) -> Option<&str> {
        non_empty(self.client_secret.as_deref())
    }

    fn token(&self) -> Option<&str> {
        non_empty(self.token.as_deref())
    }
}

fn non_empty(value: Option<&str>) -> Option<&str> {
    value.filter(|v| !v.is_empty())
}

/// Reads the body as JSON or as a form, according to its content type. A request without a
/// content type may have an empty body (Basic authentication needs nothing else).
async fn read_body(headers: &HeaderMap, request: Request) -> Result<TokenRequest, Refusal> {
    let Some(content_type) = headers.get(header::CONTENT_TYPE) else {
        let body = Bytes::from_request(request, &())
            .await
            .map_err(|_| Refusal::invalid_request("the request body could not be read"))?;
        return if body.is_empty() {
            Ok(TokenRequest::default())
        } else {
            Err(unsupported_content_type())
        };
    };
    let media_type = content_type
        .to_str()
        .ok()
        .and_then(|v| v.split(';').next())
        .map(str::trim)
        .unwrap_or_default();
    if media_type.eq_ignore_ascii_case("application/json") {
        Json::<TokenRequest>::from_request(request, &())
            .await
            .map(|Json(body)| body)
            .map_err(|_| Refusal::invalid_request("the body is not a valid JSON token request"))
    } else if media_type.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        Form::<TokenRequest>::from_request(request, &())
            .await
            .map(|Form(body)| body)
            .map_err(|_| Refusal::invalid_request("the body is not a valid form token request"))
    } else {
        Err(unsupported_content_type())
    }
}

fn unsupported_content_type() -> Refusal {
    Refusal::invalid_request(
        "unsupported content type; send application/json or application/x-www-form-urlencoded",
    )
}

/// Client credentials from an `Authorization: Basic` header (RFC 6749 §2.3.1), if one is sent
/// (parsed by [`basic`], shared with the OAuth server).
fn basic_credentials(headers: &HeaderMap) -> Result<Option<BasicCredentials>, Refusal> {
    basic::from_headers(headers).map_err(|error| match error {
        BasicError::Several => Refusal::invalid_request("more than one Authorization header"),
        BasicError::NotBasic => {
            Refusal::invalid_client(true, "unsupported_authorization_scheme", String::new())
        }
        BasicError::Malformed => {
            Refusal::invalid_client(true, "malformed_authorization", String::new())
        }
    })
}

/// The client credentials of a request, wherever they came from.
struct Presented {
    id: String,
    secrets: Vec<String>,
    /// Whether the client authenticated with the `Authorization` header (then a failure
    /// carries a `WWW-Authenticate` challenge, RFC 6749 §5.2).
    via_header: bool,
}

impl Presented {
    /// Combines header and body credentials, refusing two authentication methods at once
    /// (RFC 6749 §2.3: a client must use only one).
    fn resolve(basic: Option<BasicCredentials>, body: TokenRequest) -> Result<Self, Refusal> {
        match basic {
            Some(basic) => {
                // RFC 6749 says clients form-encode the secret; `curl -u` and many libraries do
                // not, and a secret holding `+` or `%` must work with both: the decoded secret
                // and the secret as sent are both tried.
                if body.client_secret().is_some() {
                    return Err(Refusal::invalid_request(
                        "send the client secret either in the Authorization header or in the body, not both",
                    ));
                }
                if body.client_id().is_some_and(|id| id != basic.id) {
                    return Err(Refusal::invalid_request(
                        "the client_id in the body differs from the Authorization header",
                    ));
                }
                Ok(Self {
                    id: basic.id,
                    secrets: std::iter::once(basic.secret)
                        .chain(basic.secret_as_sent)
                        .collect(),
                    via_header: true,
                })
            }
            None => match (body.client_id(), body.client_secret()) {
                (Some(id), Some(secret)) => Ok(Self {
                    id: id.to_owned(),
                    secrets: vec![secret.to_owned()],
                    via_header: false,
                }),
                _ => Err(Refusal::invalid_request(
                    "client_id and client_secret are required",
                )),
            },
        }
    }

    fn secrets(&self) -> Vec<&str> {
        self.secrets.iter().map(String::as_str).collect()
    }
}

/// The claims of an issued token.
#[derive(Serialize)]
struct IssuedClaims<'a> {
    sub: &'a str,
    client_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'a str>,
    permissions: &'a [String],
    scope: String,
    iss: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
    iat: u64,
    exp: u64,
    jti: &'a str,
}

/// RFC 6749 §5.1 success body.
#[derive(Serialize)]
struct TokenResponse {
    access_token: String,
    token_type: &'static str,
    expires_in: u64,
}

/// RFC 6749 §5.2 error body.
#[derive(Serialize)]
struct ErrorResponse {
    error: &'static str,
    error_description: &'static str,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RefusalKind {
    InvalidRequest(&'static str),
    UnsupportedGrantType,
    InvalidClient {
        challenge: bool,
        reason: &'static str,
    },
}

/// Why a token request was refused, and by whom (for the audit record).
#[derive(Debug)]
struct Refusal {
    kind: RefusalKind,
    client_id: String,
}

impl Refusal {
    fn new(kind: RefusalKind) -> Self {
        Self {
            kind,
            client_id: String::new(),
        }
    }

    fn invalid_request(description: &'static str) -> Self {
        Self::new(RefusalKind::InvalidRequest(description))
    }

    fn invalid_client(challenge: bool, reason: &'static str, client_id: String) -> Self {
        Self {
            kind: RefusalKind::InvalidClient { challenge, reason },
            client_id,
        }
    }

    /// The answer: RFC 6749 §5.2 errors, `429` with `Retry-After` for a failed client
    /// authentication from a throttled address.
    fn into_response(self, throttled: Option<Duration>) -> Response {
        let (status, error, error_description) = match self.kind {
            RefusalKind::InvalidRequest(description) => {
                (StatusCode::BAD_REQUEST, "invalid_request", description)
            }
            RefusalKind::UnsupportedGrantType => (
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "only the client_credentials grant is supported",
            ),
            RefusalKind::InvalidClient { .. } if throttled.is_some() => (
                StatusCode::TOO_MANY_REQUESTS,
                "invalid_client",
                "Invalid client credentials; too many failures from this address, retry later",
            ),
            RefusalKind::InvalidClient { .. } => (
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "Invalid client credentials",
            ),
        };
        let mut response = (
            status,
            Json(ErrorResponse {
                error,
                error_description,
            }),
        )
            .into_response();
        if let Some(wait) = throttled {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(wait.as_secs().max(1)),
            );
        }
        if matches!(
            self.kind,
            RefusalKind::InvalidClient {
                challenge: true,
                ..
            }
        ) {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(BASIC_CHALLENGE),
            );
        }
        response
    }
}

/// Parses one `CLIENT_ID:SECRET:ROLE[:SCOPES]` entry. The error never quotes the entry,
/// which holds a secret.
fn parse_client(entry: &str) -> Result<TokenClient, String> {
    let mut fields = entry.splitn(4, ':').map(str::trim);
    let (Some(id), Some(secret), Some(role)) = (fields.next(), fields.next(), fields.next()) else {
        return Err(format!("expected {ENTRY_FORMAT}"));
    };
    let empty = [("client id", id), ("secret", secret), ("role", role)]
        .into_iter()
        .find(|(_, value)| value.is_empty());
    if let Some((field, _)) = empty {
        return Err(format!("the {field} is empty; expected {ENTRY_FORMAT}"));
    }
    if secret.len() < MIN_SECRET_LEN {
        return Err(format!(
            "the secret is shorter than {MIN_SECRET_LEN} characters"
        ));
    }
    let scopes = fields.next().unwrap_or_default().split_whitespace();
    Ok(TokenClient::new(id, secret).role(role).scopes(scopes))
}

/// Seconds since the epoch; a clock before 1970 counts as the epoch rather than panicking.
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests;
