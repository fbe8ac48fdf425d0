//! Tokens of the identity providers organisations already run (Entra ID, Okta, Auth0,
//! Keycloak, authentik, Dex, Google, ...): the MCP server as an OAuth resource server.
//!
//! An [`Oidc`] authenticator is built from an issuer URL alone: discovery
//! ([`discovery`]) finds the provider's key set and introspection endpoint, the key set is kept
//! current by [`key_cache`] (rotation, outages and forged `kid`s included), opaque tokens are
//! asked about by [`introspection`]. Tokens are then held to the same rules as every other
//! token of this crate (`jwt::TokenRules`): audience, issuer, expiry, roles and scopes, and
//! accepted ones are answered from the same kind of verified-token cache. Several issuers may
//! be trusted at once; a token's `iss` chooses one before any key is looked up, and a token
//! naming an issuer that is not configured causes no fetch at all.

mod discovery;
mod fetch;
mod introspection;
mod key_cache;
mod keys;

use std::{
    fmt,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex, Weak, atomic::Ordering},
    time::Duration,
};

use axum::extract::ConnectInfo;
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use serde::Deserialize;
use tokio::{task::AbortHandle, time::Instant};
use url::Url;

pub use self::fetch::ClientAuthentication;
use self::{
    fetch::{Fetcher, check_url},
    introspection::{Introspector, IntrospectorConfig},
    key_cache::{CachePolicy, KeyCache, KeyError},
    keys::Validations,
};
use super::{
    AuthError, AuthRequest, Authentication, Authenticator, Credential, JwtAlgorithm, Verdict,
    jwt::{ClaimPath, MAX_LEEWAY, TokenRules, now, refused, valid_until},
    token_cache::VerifiedTokens,
};
use crate::{ConfigError, Principal};

/// How long a request waits for a key-set fetch or an introspection unless configured
/// otherwise.
const DEFAULT_REQUEST_DEADLINE: Duration = Duration::from_secs(3);
/// How long one exchange with the provider may take unless configured otherwise.
const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest discovery document, key set or introspection answer read unless configured
/// otherwise.
const DEFAULT_MAX_DOCUMENT_BYTES: usize = 512 * 1024;
/// The largest that may be configured.
const MAX_DOCUMENT_BYTES: usize = 4 * 1024 * 1024;
/// How long an active introspection answer is cached unless configured otherwise (never past
/// the token's `exp`).
const DEFAULT_INTROSPECTION_TTL: Duration = Duration::from_secs(60);
/// Exchanges with the introspection endpoint one address may start per minute unless
/// configured otherwise.
const DEFAULT_INTROSPECTIONS_PER_ADDRESS: u32 = 60;
/// How often the discovery document is read again.
const REDISCOVER_EVERY: Duration = Duration::from_secs(60 * 60);
/// How soon a failed rediscovery is retried.
const REDISCOVER_RETRY: Duration = Duration::from_secs(5 * 60);
/// The algorithms accepted unless configured otherwise: every public-key algorithm this crate
/// verifies.
pub(crate) const DEFAULT_ALGORITHMS: [JwtAlgorithm; 6] = [
    JwtAlgorithm::Rs256,
    JwtAlgorithm::Rs384,
    JwtAlgorithm::Rs512,
    JwtAlgorithm::Es256,
    JwtAlgorithm::Es384,
    JwtAlgorithm::EdDsa,
];

/// One identity provider whose tokens a server accepts, and the rules they are held to.
///
/// Built from the issuer identifier; [`Oidc::issuer`] starts one, [`build`](Self::build)
/// turns it into an authenticator (or [`Oidc::builder`] takes several). The defaults: roles
/// from the `roles` claim, scopes from `scope`, `scp` and `permissions`, RS256/384/512, ES256/384
/// and EdDSA, 30 s clock leeway, keys from the discovered `jwks_uri`. An audience is required.
///
/// Provider quirks, and the setting for each:
/// - **Entra ID** (v2 tokens) puts the application's client id (a GUID) in `aud`, not the
///   resource URL: `.audience("<application (client) id>")`, or `api://<id>` if the app's
///   Application ID URI is what your tokens carry. Roles are in `roles` (app roles), scopes in
///   `scp`. The issuer is `https://login.microsoftonline.com/<tenant id>/v2.0`.
/// - **Keycloak** adds no `aud` for your server unless an *Audience* mapper is configured on
///   the client scope (add one naming the resource URL). Realm roles are at
///   `realm_access.roles`, client roles at `resource_access.<client>.roles`:
///   `.role_claim("realm_access.roles")`. The issuer is `https://<host>/realms/<realm>`.
/// - **Auth0** ignores RFC 8707's `resource` and uses its own `audience` parameter: clients
///   must request `audience=<your API identifier>`, and that identifier is the audience here.
///   Roles come from a namespaced custom claim (`.role_claim("https://example.com/roles")`),
///   RBAC permissions from `permissions` (read by default). The issuer ends with a slash:
///   `https://<tenant>.auth0.com/`.
///
/// ```no_run
/// # async fn run() -> Result<(), mcp_gatekeeper::ConfigError> {
/// use mcp_gatekeeper::auth::Oidc;
///
/// let oidc = Oidc::issuer("https://sso.example.com/realms/acme")
///     .audience("https://mcp.example.com/mcp")
///     .role_claim("realm_access.roles")
///     .map_role("mcp-admins", "admin")
///     .map_role("mcp-users", "viewer")
///     .build()
///     .await?;
/// # let _ = oidc; Ok(()) }
/// ```
#[derive(Clone)]
#[must_use]
pub struct OidcIssuer {
    issuer: String,
    rules: TokenRules,
    algorithms: Vec<JwtAlgorithm>,
    jwks_uri: Option<String>,
    introspection: Option<IntrospectionSettings>,
    introspect_jwts: bool,
}

#[derive(Clone)]
struct IntrospectionSettings {
    client_id: String,
    secret: String,
    endpoint: Option<String>,
    method: Option<ClientAuthentication>,
}

impl OidcIssuer {
    /// Trusts tokens whose `iss` is exactly `issuer` (the provider's issuer identifier, as its
    /// discovery document states it: scheme, host, port, path and trailing slash alike).
    /// `https://` is required, except on a loopback host (`http://127.0.0.1:8080`, for a
    /// provider started locally for testing).
    pub fn new(issuer: impl Into<String>) -> Self {
        let issuer = issuer.into();
        Self {
            rules: TokenRules::for_identity_provider(issuer.clone()),
            issuer,
            algorithms: DEFAULT_ALGORITHMS.to_vec(),
            jwks_uri: None,
            introspection: None,
            introspect_jwts: false,
        }
    }

    /// Requires `aud` to contain `audience`: this server's resource URL
    /// (`https://mcp.example.com/mcp`), or what the provider puts there instead (see the
    /// provider quirks above). Call it several times to accept any of several audiences.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.rules.audiences.push(audience.into());
        self.rules.any_audience = false;
        self
    }

    /// Gives up the audience check: tokens the provider issued for *any* service are accepted,
    /// so anyone holding a token for another service could replay it here. Only for providers
    /// that issue tokens for this server alone; prefer [`audience`](Self::audience).
    pub fn accept_tokens_for_any_audience(mut self) -> Self {
        self.rules.audiences.clear();
        self.rules.any_audience = true;
        self
    }

    /// Where the caller's roles are (default `roles`): a claim name, or a path into nested
    /// objects (`realm_access.roles`, `resource_access.my-client.roles`, see [`ClaimPath`]);
    /// a string or an array of strings.
    pub fn role_claim(mut self, path: impl Into<ClaimPath>) -> Self {
        self.rules.role_claim = path.into();
        self
    }

    /// Where granted scopes are, as a union (default `scope`, `scp`, `permissions`); each a
    /// space-separated string or an array of strings.
    pub fn scope_claims<I, S>(mut self, paths: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<ClaimPath>,
    {
        self.rules.scope_claims = paths.into_iter().map(Into::into).collect();
        self
    }

    /// Grants this server's role `role` to tokens whose role claim names `idp_role` (a role or
    /// group of the provider). Once one mapping is configured only mapped names grant roles,
    /// so a provider-wide group that happens to be called `admin` grants nothing by accident.
    /// A mapping to a role the tools do not declare stops the server from starting.
    pub fn map_role(mut self, idp_role: impl Into<String>, role: impl Into<String>) -> Self {
        self.rules.map_role(idp_role.into(), role.into());
        self
    }

    /// The clock skew tolerated on `exp`, `nbf` and `iat` (default 30 s, at most a day).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.rules.leeway = leeway.min(MAX_LEEWAY).as_secs();
        self
    }

    /// The signature algorithms accepted (default RS256, RS384, RS512, ES256, ES384, EdDSA).
    /// Keys in the provider's set for other algorithms are ignored. HMAC algorithms cannot be
    /// configured: a provider never shares its signing secret.
    pub fn algorithms<I: IntoIterator<Item = JwtAlgorithm>>(mut self, algorithms: I) -> Self {
        self.algorithms = algorithms.into_iter().collect();
        self
    }

    /// Takes the keys from this URL instead of the discovered `jwks_uri`. Without
    /// introspection, the provider is then not asked for its discovery document at all.
    pub fn jwks_uri(mut self, url: impl Into<String>) -> Self {
        self.jwks_uri = Some(url.into());
        self
    }

    /// Accepts opaque (non-JWT) tokens by asking the provider's RFC 7662 introspection
    /// endpoint, as the client `client_id` with `client_secret` (a client the provider allows
    /// to introspect tokens issued for this server). The endpoint is discovered unless set with
    /// [`introspection_endpoint`](Self::introspection_endpoint).
    ///
    /// Introspection answers pass the same rules as JWTs: `active` must be `true`, `iss` (when
    /// present) the issuer, and `aud` must name an audience, so a provider whose answers omit
    /// `aud` (RFC 7662 makes it optional) needs
    /// [`accept_tokens_for_any_audience`](Self::accept_tokens_for_any_audience).
    ///
    /// Only one configured issuer may introspect opaque tokens: an opaque token names no
    /// issuer, and sending it to the wrong provider would hand it over. Put this authenticator
    /// before [`ApiKeys`](crate::auth::ApiKeys), whose clients should then send `X-API-Key`
    /// (an API key sent as a bearer token would be introspected, and refused).
    pub fn introspection(
        mut self,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
    ) -> Self {
        let settings = self.introspection_settings();
        settings.client_id = client_id.into();
        settings.secret = client_secret.into();
        self
    }

    /// The introspection endpoint, instead of the discovered one (needs
    /// [`introspection`](Self::introspection)).
    pub fn introspection_endpoint(mut self, url: impl Into<String>) -> Self {
        self.introspection_settings().endpoint = Some(url.into());
        self
    }

    /// How to authenticate to the introspection endpoint (default: Basic, or `client_secret_post`
    /// when that is all the provider's metadata offers).
    pub fn introspection_client_authentication(mut self, method: ClientAuthentication) -> Self {
        self.introspection_settings().method = Some(method);
        self
    }

    /// The introspection settings, started empty when a setter comes before
    /// [`introspection`](Self::introspection) (a missing client is reported at build).
    fn introspection_settings(&mut self) -> &mut IntrospectionSettings {
        self.introspection
            .get_or_insert_with(|| IntrospectionSettings {
                client_id: String::new(),
                secret: String::new(),
                endpoint: None,
                method: None,
            })
    }

    /// Asks the introspection endpoint about JWTs too, after they verified locally, so that a
    /// token the provider revoked is refused within the introspection cache's lifetime. Costs
    /// one exchange with the provider per token and cache lifetime; needs
    /// [`introspection`](Self::introspection).
    pub fn introspect_jwts(mut self) -> Self {
        self.introspect_jwts = true;
        self
    }

    /// An [`Oidc`] authenticator trusting this issuer alone, with the default cache and
    /// network settings; see [`OidcBuilder::build`].
    ///
    /// # Errors
    /// As [`OidcBuilder::build`].
    pub async fn build(self) -> Result<Oidc, ConfigError> {
        Oidc::builder().issuer(self).build().await
    }
}

impl fmt::Debug for OidcIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OidcIssuer")
            .field("issuer", &self.issuer)
            .field("audiences", &self.rules.audiences)
            .field("any_audience", &self.rules.any_audience)
            .field("role_claim", &self.rules.role_claim)
            .field("scope_claims", &self.rules.scope_claims)
            .field("role_map", &self.rules.role_map)
            .field("algorithms", &self.algorithms)
            .field("jwks_uri", &self.jwks_uri)
            .field(
                "introspection_client",
                &self.introspection.as_ref().map(|i| &i.client_id),
            )
            .field("introspect_jwts", &self.introspect_jwts)
            .finish_non_exhaustive()
    }
}

/// Builds an [`Oidc`] authenticator trusting one or more issuers; the settings here are shared
/// by all of them.
#[derive(Debug, Clone)]
#[must_use]
pub struct OidcBuilder {
    issuers: Vec<OidcIssuer>,
    policy: CachePolicy,
    request_deadline: Duration,
    fetch_timeout: Duration,
    max_document_bytes: usize,
    introspection_ttl: Duration,
    introspections_per_address: u32,
    /// How often discovery runs again ([`REDISCOVER_EVERY`]; shorter in tests).
    rediscover_every: Duration,
}

impl Default for OidcBuilder {
    fn default() -> Self {
        Self {
            issuers: Vec::new(),
            policy: CachePolicy::default(),
            request_deadline: DEFAULT_REQUEST_DEADLINE,
            fetch_timeout: DEFAULT_FETCH_TIMEOUT,
            max_document_bytes: DEFAULT_MAX_DOCUMENT_BYTES,
            introspection_ttl: DEFAULT_INTROSPECTION_TTL,
            introspections_per_address: DEFAULT_INTROSPECTIONS_PER_ADDRESS,
            rediscover_every: REDISCOVER_EVERY,
        }
    }
}

impl OidcBuilder {
    /// Trusts another issuer. A token's `iss` decides which issuer's keys and rules apply.
    pub fn issuer(mut self, issuer: OidcIssuer) -> Self {
        self.issuers.push(issuer);
        self
    }

    /// How long a key set served without `Cache-Control: max-age` is used before it is
    /// fetched again (default 10 minutes); it is refreshed in the background at four fifths
    /// of its lifetime.
    pub fn key_set_lifetime(mut self, lifetime: Duration) -> Self {
        self.policy.default_lifetime = lifetime;
        self
    }

    /// The bounds a provider's `max-age` is clamped to (default 1 minute to 1 day).
    pub fn key_set_lifetime_bounds(mut self, min: Duration, max: Duration) -> Self {
        self.policy.min_lifetime = min;
        self.policy.max_lifetime = max;
        self
    }

    /// The least time between two key-set fetches started by tokens with an unknown `kid`
    /// (default 30 s): a flood of forged `kid`s costs the provider one request per this.
    pub fn unknown_key_cooldown(mut self, cooldown: Duration) -> Self {
        self.policy.unknown_key_cooldown = cooldown;
        self
    }

    /// How long past its lifetime the last key set fetched stays in use while the provider
    /// cannot be reached (default 1 day). Past it, tokens are refused with `503` until the
    /// provider answers again.
    pub fn max_key_staleness(mut self, staleness: Duration) -> Self {
        self.policy.max_staleness = staleness;
        self
    }

    /// The longest a request waits for a key-set fetch or an introspection (default 3 s);
    /// then it is refused with `503` (the fetch goes on, and later requests use its result).
    pub fn request_deadline(mut self, deadline: Duration) -> Self {
        self.request_deadline = deadline;
        self
    }

    /// The longest one exchange with a provider may take, connection included (default 10 s).
    pub fn fetch_timeout(mut self, timeout: Duration) -> Self {
        self.fetch_timeout = timeout;
        self
    }

    /// The largest discovery document, key set or introspection answer read (default 512 KiB,
    /// at most 4 MiB).
    pub fn max_document_size(mut self, bytes: usize) -> Self {
        self.max_document_bytes = bytes;
        self
    }

    /// How long an active introspection answer is used (default 60 s; never past the token's
    /// `exp`): a token the provider revokes is refused at most this much later.
    pub fn introspection_cache_ttl(mut self, ttl: Duration) -> Self {
        self.introspection_ttl = ttl;
        self
    }

    /// How many introspection exchanges the requests of one address may start per minute
    /// (default 60; answers from the cache are free).
    pub fn introspections_per_address_per_minute(mut self, exchanges: u32) -> Self {
        self.introspections_per_address = exchanges;
        self
    }

    /// Checks the configuration, reads each provider's metadata and key set, and starts the
    /// background refresh. Must run inside a Tokio runtime.
    ///
    /// # Errors
    /// [`ConfigError::MissingAudience`] for an issuer without an audience (and no
    /// [`accept_tokens_for_any_audience`](OidcIssuer::accept_tokens_for_any_audience)),
    /// [`ConfigError::InvalidUrl`] for an issuer or endpoint that is not a usable URL,
    /// [`ConfigError::IdentityProvider`] when a provider cannot be reached, its metadata names
    /// another issuer, or its key set holds no usable key, and [`ConfigError::Invalid`] for
    /// other inconsistent settings.
    pub async fn build(self) -> Result<Oidc, ConfigError> {
        self.check()?;
        let fetcher = Arc::new(Fetcher::new(self.fetch_timeout, self.max_document_bytes)?);
        let mut issuers = Vec::with_capacity(self.issuers.len());
        let mut opaque = None;
        for (index, config) in self.issuers.iter().enumerate() {
            let issuer = self.load_issuer(config, &fetcher).await?;
            if issuer.introspection.is_some() {
                opaque = Some(index);
            }
            issuers.push(Arc::new(issuer));
        }
        let tasks = issuers
            .iter()
            .map(|issuer| tokio::spawn(maintain(Arc::downgrade(issuer))).abort_handle())
            .collect();
        Ok(Oidc {
            inner: Arc::new(Inner {
                introspects_jwts: issuers.iter().any(|i| i.introspect_jwts),
                issuers,
                opaque,
                verified: VerifiedTokens::default(),
                deadline: self.request_deadline,
                tasks,
            }),
        })
    }

    /// Everything that can be checked without asking a provider.
    fn check(&self) -> Result<(), ConfigError> {
        if self.issuers.is_empty() {
            return Err(ConfigError::invalid(
                "an Oidc authenticator needs at least one issuer (Oidc::issuer or \
                 OidcBuilder::issuer)",
            ));
        }
        if self.request_deadline.is_zero() || self.fetch_timeout.is_zero() {
            return Err(ConfigError::invalid(
                "the request deadline and the fetch timeout must be positive",
            ));
        }
        if self.max_document_bytes == 0 || self.max_document_bytes > MAX_DOCUMENT_BYTES {
            return Err(ConfigError::invalid(
                "the maximum document size must be 1 byte to 4 MiB",
            ));
        }
        if self.policy.min_lifetime > self.policy.max_lifetime || self.policy.max_lifetime.is_zero()
        {
            return Err(ConfigError::invalid(
                "the key set's shortest lifetime exceeds its longest (or the longest is zero)",
            ));
        }
        let mut seen = Vec::new();
        let mut introspecting = Vec::new();
        for issuer in &self.issuers {
            let url = parse_url("issuer", &issuer.issuer)?;
            if url.query().is_some() {
                return Err(invalid_url(
                    "issuer",
                    &issuer.issuer,
                    "must not have a query",
                ));
            }
            if seen.contains(&&issuer.issuer) {
                return Err(ConfigError::invalid(format!(
                    "the issuer `{}` is configured twice",
                    issuer.issuer
                )));
            }
            seen.push(&issuer.issuer);
            issuer.rules.check()?;
            if issuer.algorithms.is_empty() || issuer.algorithms.iter().any(|a| a.is_hmac()) {
                return Err(ConfigError::invalid(format!(
                    "issuer `{}`: the accepted algorithms must be public-key ones (RS*, ES*, \
                     EdDSA), at least one",
                    issuer.issuer
                )));
            }
            if let Some(jwks_uri) = &issuer.jwks_uri {
                parse_url("JWKS URI", jwks_uri)?;
            }
            match &issuer.introspection {
                Some(settings) if settings.client_id.is_empty() => {
                    return Err(ConfigError::invalid(format!(
                        "issuer `{}`: an introspection endpoint is set without the client that \
                         may call it (OidcIssuer::introspection)",
                        issuer.issuer
                    )));
                }
                Some(settings) => {
                    if let Some(endpoint) = &settings.endpoint {
                        parse_url("introspection endpoint", endpoint)?;
                    }
                    introspecting.push(issuer.issuer.as_str());
                }
                None if issuer.introspect_jwts => {
                    return Err(ConfigError::invalid(format!(
                        "issuer `{}`: introspect_jwts needs the introspection client \
                         (OidcIssuer::introspection)",
                        issuer.issuer
                    )));
                }
                None => {}
            }
        }
        if introspecting.len() > 1 {
            return Err(ConfigError::invalid(format!(
                "only one issuer may introspect opaque tokens (an opaque token names no issuer, \
                 and would be handed to the wrong one); configured for {}",
                introspecting.join(", ")
            )));
        }
        Ok(())
    }

    /// Discovers what is not configured, loads the keys, and sets up introspection.
    async fn load_issuer(
        &self,
        config: &OidcIssuer,
        fetcher: &Arc<Fetcher>,
    ) -> Result<Issuer, ConfigError> {
        let name: Arc<str> = config.issuer.as_str().into();
        let provider_error = |reason: String| ConfigError::IdentityProvider {
            issuer: config.issuer.clone(),
            reason,
        };
        let explicit_introspection = config
            .introspection
            .as_ref()
            .is_none_or(|i| i.endpoint.is_some());
        let discover = config.jwks_uri.is_none() || !explicit_introspection;
        let metadata = if discover {
            Some(
                discovery::discover(fetcher, &config.issuer)
                    .await
                    .map_err(|e| provider_error(e.0))?,
            )
        } else {
            None
        };
        let jwks_uri = match (&config.jwks_uri, &metadata) {
            (Some(url), _) => Some(parse_url("JWKS URI", url)?),
            (None, Some(metadata)) => metadata.jwks_uri.clone(),
            (None, None) => None,
        };
        let keys = match jwks_uri {
            Some(url) => Some(Arc::new(
                KeyCache::load(
                    name.clone(),
                    url,
                    fetcher.clone(),
                    self.policy,
                    config.algorithms.clone(),
                )
                .await
                .map_err(provider_error)?,
            )),
            None if config.introspection.is_some() => None,
            None => {
                return Err(provider_error(
                    "its metadata names no `jwks_uri`, so no token of it can be verified; set \
                     OidcIssuer::jwks_uri, or introspection for opaque tokens"
                        .to_owned(),
                ));
            }
        };
        let introspection = match &config.introspection {
            None => None,
            Some(settings) => {
                let endpoint = match (&settings.endpoint, &metadata) {
                    (Some(url), _) => parse_url("introspection endpoint", url)?,
                    (None, Some(m)) => m.introspection_endpoint.clone().ok_or_else(|| {
                        provider_error(
                            "its metadata names no `introspection_endpoint`; set \
                             OidcIssuer::introspection_endpoint"
                                .to_owned(),
                        )
                    })?,
                    (None, None) => unreachable!("discovery runs when no endpoint is set"),
                };
                let method = settings.method.unwrap_or_else(|| {
                    metadata
                        .as_ref()
                        .map_or(ClientAuthentication::Basic, |m| m.introspection_auth)
                });
                Some(Arc::new(Introspector::new(
                    IntrospectorConfig {
                        issuer: name.clone(),
                        endpoint,
                        method,
                        client_id: settings.client_id.clone(),
                        secret: settings.secret.clone(),
                        rules: config.rules.clone(),
                        ttl: self.introspection_ttl,
                        per_address_per_minute: self.introspections_per_address,
                    },
                    fetcher.clone(),
                )))
            }
        };
        Ok(Issuer {
            validations: Validations::new(&config.rules, &config.algorithms),
            name,
            rules: config.rules.clone(),
            algorithms: config.algorithms.clone(),
            keys,
            introspection,
            introspect_jwts: config.introspect_jwts,
            fetcher: fetcher.clone(),
            rediscover: discover.then(|| Mutex::new(Instant::now() + self.rediscover_every)),
            rediscover_every: self.rediscover_every,
            jwks_uri_discovered: config.jwks_uri.is_none(),
            introspection_discovered: !explicit_introspection,
        })
    }
}

/// Accepts the access tokens of external identity providers: JWTs verified with the
/// provider's published keys, and (when configured) opaque tokens through RFC 7662
/// introspection. See [`OidcIssuer`] for one provider's settings and [`OidcBuilder`] for
/// several.
///
/// Only bearer tokens are decided here. A JWT whose `iss` is not a configured issuer is passed
/// on to the next authenticator (this server's own authorization server, say), which lets
/// several token sources coexist; every other bearer token it recognises is accepted or
/// refused here, never passed on. Clones share the caches.
#[derive(Clone)]
pub struct Oidc {
    inner: Arc<Inner>,
}

struct Inner {
    issuers: Vec<Arc<Issuer>>,
    /// The issuer that introspects opaque tokens, if one does.
    opaque: Option<usize>,
    /// Whether any issuer introspects JWTs too (cache hits then look up their issuer).
    introspects_jwts: bool,
    verified: VerifiedTokens,
    deadline: Duration,
    /// The background refresh of each issuer, stopped when the last clone goes.
    tasks: Vec<AbortHandle>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// One trusted issuer, as built.
struct Issuer {
    name: Arc<str>,
    rules: TokenRules,
    algorithms: Vec<JwtAlgorithm>,
    validations: Validations,
    keys: Option<Arc<KeyCache>>,
    introspection: Option<Arc<Introspector>>,
    introspect_jwts: bool,
    fetcher: Arc<Fetcher>,
    /// When discovery runs again, for issuers whose endpoints were discovered.
    rediscover: Option<Mutex<Instant>>,
    rediscover_every: Duration,
    /// Whether the key set's URL came from discovery (rediscovery may move it) rather than
    /// from the configuration (which it must never override).
    jwks_uri_discovered: bool,
    /// The same for the introspection endpoint.
    introspection_discovered: bool,
}

/// What an [`Oidc`] authenticator has done since it was built, summed over its issuers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct OidcStats {
    /// Key-set fetches (the first one at build included).
    pub key_set_fetches: u64,
    /// Of those, the ones that failed (the previous keys stayed in use).
    pub failed_key_set_fetches: u64,
    /// Fetches started by a token with an unknown `kid` (at most one per cool-down).
    pub unknown_key_refetches: u64,
    /// Opaque tokens (or JWTs, with `introspect_jwts`) answered from the introspection cache.
    pub introspection_cache_hits: u64,
    /// Those that were not in the cache.
    pub introspection_cache_misses: u64,
    /// Exchanges with introspection endpoints.
    pub introspection_requests: u64,
    /// Of those, the ones that failed (the request was refused with `503`).
    pub failed_introspection_requests: u64,
}

impl Oidc {
    /// Starts the configuration of one trusted issuer; see [`OidcIssuer`].
    pub fn issuer(issuer: impl Into<String>) -> OidcIssuer {
        OidcIssuer::new(issuer)
    }

    /// Starts an authenticator trusting several issuers, or one with non-default cache and
    /// network settings.
    pub fn builder() -> OidcBuilder {
        OidcBuilder::default()
    }

    /// The issuers trusted, in the order configured.
    pub fn issuers(&self) -> impl Iterator<Item = &str> {
        self.inner.issuers.iter().map(|i| &*i.name)
    }

    /// Counters of fetches and introspections, for monitoring and tests.
    pub fn stats(&self) -> OidcStats {
        let mut stats = OidcStats::default();
        for issuer in &self.inner.issuers {
            if let Some(keys) = &issuer.keys {
                let c = &keys.counters;
                stats.key_set_fetches += c.fetches.load(Ordering::Relaxed);
                stats.failed_key_set_fetches += c.failed_fetches.load(Ordering::Relaxed);
                stats.unknown_key_refetches += c.unknown_key_refetches.load(Ordering::Relaxed);
            }
            if let Some(introspection) = &issuer.introspection {
                let c = &introspection.counters;
                stats.introspection_cache_hits += c.cache_hits.load(Ordering::Relaxed);
                stats.introspection_cache_misses += c.cache_misses.load(Ordering::Relaxed);
                stats.introspection_requests += c.exchanges.load(Ordering::Relaxed);
                stats.failed_introspection_requests += c.failed_exchanges.load(Ordering::Relaxed);
            }
        }
        stats
    }

    /// Verifies a bearer token as the HTTP layer does (from the caches when possible), for
    /// use outside HTTP; `client` is the caller's address when known (it pays for
    /// introspection exchanges).
    ///
    /// # Errors
    /// [`AuthError`] as a request with this token would get it; a JWT of an issuer that is
    /// not configured is an invalid token here.
    pub async fn verify(
        &self,
        token: &str,
        client: Option<IpAddr>,
    ) -> Result<Arc<Principal>, AuthError> {
        match self.decide(token, Client::Known(client)) {
            Authentication::Ready(Verdict::Accept(principal)) => Ok(principal),
            Authentication::Ready(Verdict::Reject(error)) => Err(error),
            Authentication::Ready(Verdict::Pass) => Err(AuthError::invalid_token()),
            Authentication::Pending(future) => match future.await {
                Verdict::Accept(principal) => Ok(principal),
                Verdict::Reject(error) => Err(error),
                Verdict::Pass => Err(AuthError::invalid_token()),
            },
        }
    }

    /// The verdict on a bearer token: at once when it is a cached JWT (the request path's
    /// common case), after I/O otherwise.
    fn decide<'a>(&'a self, token: &'a str, client: Client<'a>) -> Authentication<'a> {
        let inner = &self.inner;
        if !Credential::Bearer(token).looks_like_jwt() {
            let Some(index) = inner.opaque else {
                return Verdict::Pass.into();
            };
            let issuer = inner.issuers[index].clone();
            let deadline = inner.deadline;
            return Authentication::Pending(Box::pin(async move {
                let introspection = issuer.introspection.as_ref().expect("opaque issuer");
                match introspection.introspect(token, client.ip(), deadline).await {
                    Ok(principal) => Verdict::Accept(principal),
                    Err(error) => Verdict::Reject(error),
                }
            }));
        }
        if let Some(principal) = inner.verified.get(token, now()) {
            // The request path's common case: no allocation, no I/O, and no issuer lookup
            // unless some issuer asks about JWTs too.
            if !inner.introspects_jwts
                || self
                    .issuer_of(&principal)
                    .is_none_or(|i| !i.introspect_jwts)
            {
                return Verdict::Accept(principal).into();
            }
        }
        // A cache miss: the header and the issuer, read without verifying, choose the key.
        let Ok(header) = jsonwebtoken::decode_header(token) else {
            return Verdict::Reject(refused("malformed")).into();
        };
        let Some(issuer) = claimed_issuer(token)
            .and_then(|iss| inner.issuers.iter().find(|i| *i.name == *iss).cloned())
        else {
            // Not one of ours: another authenticator may know the issuer. No fetch.
            return Verdict::Pass.into();
        };
        let Some(algorithm) =
            super::jwt::algorithm_of(header.alg).filter(|alg| issuer.algorithms.contains(alg))
        else {
            return Verdict::Reject(refused("algorithm")).into();
        };
        let Some(keys) = issuer.keys.clone() else {
            return Verdict::Reject(refused("no_key_set")).into();
        };
        let deadline = inner.deadline;
        Authentication::Pending(Box::pin(async move {
            let key = match keys.key(header.kid.as_deref(), algorithm, deadline).await {
                Ok(key) => key,
                Err(KeyError::Unknown) => return Verdict::Reject(refused("unknown_kid")),
                Err(KeyError::Unavailable) => {
                    return Verdict::Reject(AuthError::unavailable(
                        "The identity provider's keys cannot be had to check this token; \
                         retry later",
                    ));
                }
            };
            let Some(validation) = issuer.validations.get(algorithm) else {
                return Verdict::Reject(refused("algorithm"));
            };
            let principal = match issuer.rules.verify(token, &key.key, validation) {
                Ok(principal) => Arc::new(principal),
                Err(error) => return Verdict::Reject(error),
            };
            if issuer.introspect_jwts
                && let Some(introspection) = &issuer.introspection
                && let Err(error) = introspection.introspect(token, client.ip(), deadline).await
            {
                return Verdict::Reject(error);
            }
            self.inner.verified.insert(
                token,
                principal.clone(),
                valid_until(&principal, issuer.rules.leeway),
            );
            Verdict::Accept(principal)
        }))
    }

    /// The issuer a cached principal came from.
    fn issuer_of(&self, principal: &Principal) -> Option<&Arc<Issuer>> {
        let name = principal.issuer()?;
        self.inner.issuers.iter().find(|i| *i.name == *name)
    }
}

impl fmt::Debug for Oidc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Oidc")
            .field("issuers", &self.issuers().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Authenticator for Oidc {
    fn name(&self) -> &'static str {
        "oidc"
    }

    fn authenticate<'a>(&'a self, request: &'a AuthRequest<'a>) -> Authentication<'a> {
        let Some(Credential::Bearer(token)) = request.credential else {
            return Verdict::Pass.into();
        };
        self.decide(token, Client::Request(request.parts))
    }

    /// The roles names are mapped to; roles taken from tokens as they are cannot be checked
    /// at start-up.
    fn configured_roles(&self) -> Vec<String> {
        let mut roles: Vec<String> = self
            .inner
            .issuers
            .iter()
            .flat_map(|i| i.rules.mapped_roles())
            .collect();
        roles.sort_unstable();
        roles.dedup();
        roles
    }

    fn authorization_servers(&self) -> Vec<String> {
        self.issuers().map(str::to_owned).collect()
    }
}

/// Who presents a token: the caller's address pays for introspection exchanges. Read from the
/// request only when an exchange may be needed (never on the verified-token cache's hits).
#[derive(Clone, Copy)]
enum Client<'a> {
    Known(Option<IpAddr>),
    Request(&'a super::Parts),
}

impl Client<'_> {
    fn ip(self) -> Option<IpAddr> {
        match self {
            Client::Known(ip) => ip,
            Client::Request(parts) => parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip()),
        }
    }
}

/// The `iss` a JWT claims, read without verifying anything (it only chooses which issuer's
/// keys verify the token). `None` when the payload is not a JSON object with a string `iss`
/// given once.
fn claimed_issuer(token: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Claimed {
        iss: Option<String>,
    }
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    serde_json::from_slice::<Claimed>(&bytes).ok()?.iss
}

/// Keeps one issuer's key set and endpoints current until the authenticator is dropped.
async fn maintain(issuer: Weak<Issuer>) {
    loop {
        let wake = match issuer.upgrade() {
            Some(issuer) => issuer.next_wake(),
            None => return,
        };
        tokio::time::sleep_until(wake).await;
        let Some(issuer) = issuer.upgrade() else {
            return;
        };
        issuer.maintain_once().await;
    }
}

impl Issuer {
    fn next_wake(&self) -> Instant {
        let keys = self.keys.as_ref().map(|k| k.next_refresh());
        let discovery = self
            .rediscover
            .as_ref()
            .map(|at| *at.lock().unwrap_or_else(|e| e.into_inner()));
        match (keys, discovery) {
            (Some(a), Some(b)) => a.min(b),
            (Some(at), None) | (None, Some(at)) => at,
            // Nothing to keep current: wake rarely, only to notice the authenticator is gone.
            (None, None) => Instant::now() + self.rediscover_every,
        }
    }

    async fn maintain_once(&self) {
        let now = Instant::now();
        if let Some(at) = &self.rediscover
            && now >= *at.lock().unwrap_or_else(|e| e.into_inner())
        {
            let next = match discovery::discover(&self.fetcher, &self.name).await {
                Ok(metadata) => {
                    // Only what discovery found may move; a configured URL stays.
                    if let (true, Some(keys), Some(url)) =
                        (self.jwks_uri_discovered, &self.keys, metadata.jwks_uri)
                    {
                        keys.set_source(url);
                    }
                    if let (true, Some(introspection), Some(url)) = (
                        self.introspection_discovered,
                        &self.introspection,
                        metadata.introspection_endpoint,
                    ) {
                        introspection.set_endpoint(url);
                    }
                    self.rediscover_every
                }
                Err(error) => {
                    tracing::warn!(
                        target: "mcp_gatekeeper::auth",
                        issuer = &*self.name,
                        error = %error.0,
                        "identity provider metadata not refreshed; the known endpoints stay in use"
                    );
                    REDISCOVER_RETRY
                }
            };
            *at.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now() + next;
        }
        if let Some(keys) = &self.keys
            && Instant::now() >= keys.next_refresh()
        {
            keys.refresh().await;
        }
    }
}

fn parse_url(what: &'static str, value: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(value).map_err(|_| invalid_url(what, value, "not an absolute URL"))?;
    check_url(&url).map_err(|why| invalid_url(what, value, why))?;
    Ok(url)
}

fn invalid_url(what: &'static str, url: &str, reason: &str) -> ConfigError {
    ConfigError::InvalidUrl {
        what,
        url: url.to_owned(),
        reason: reason.to_owned(),
    }
}

#[cfg(test)]
mod tests;
