//! The builder that turns tools and authenticators into an axum router or a running server.

use std::{net::SocketAddr, path::PathBuf, sync::Arc};

use axum::Router;
use rmcp::transport::streamable_http_server::{
    StreamableHttpServerConfig,
    session::{local::LocalSessionManager, never::NeverSessionManager},
};
use tokio::net::{TcpListener, ToSocketAddrs};
use tokio_util::sync::CancellationToken;

use crate::{
    AuditLog, ConfigError, McpTools,
    audit::SuccessSampler,
    auth::ProtectedResource,
    auth::{AuthChain, Authenticator},
    auth::{FailureThrottle, Lockout},
    http::authenticate::{AuthLayerState, Challenge, GatekeeperTools},
    http::endpoint::McpEndpoint,
    http::forwarded::{ClientAddrLayer, TrustedProxies},
    http::health,
    http::host_guard::{HostGuard, LOOPBACK_HOSTS},
    http::layer::GatekeeperLayer,
    rate_limit::in_flight::{self, InFlight},
    tools::Roles,
    tools::{Engine, GatekeeperService, ScopeOracle},
};

/// Whether the MCP endpoint keeps sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `initialize` opens a session (`Mcp-Session-Id`); replies stream as SSE. Protocol
    /// 2026-07-28 requests are always stateless.
    Stateful,
    /// Every request stands alone and is answered with plain JSON; scales behind any load
    /// balancer.
    Stateless,
}

/// Builds a secured MCP server from tools declared with `#[mcp_tools]`.
///
/// ```no_run
/// use mcp_gatekeeper::prelude::*;
/// # #[derive(Roles)] enum Role { Viewer }
/// # struct Tools;
/// # #[mcp_tools(roles = Role)]
/// # impl Tools {
/// #     /// Ping.
/// #     #[mcp_tool(role = "viewer")]
/// #     fn ping(&self) -> &'static str { "pong" }
/// # }
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// Gatekeeper::new(Tools)
///     .authenticate(ApiKeys::from_env("MCP_API_KEYS")?)
///     .serve("127.0.0.1:3000")
///     .await?;
/// # Ok(()) }
/// ```
#[must_use]
pub struct Gatekeeper<T: McpTools> {
    tools: T,
    authenticators: Vec<Arc<dyn Authenticator>>,
    allow_anonymous: bool,
    path: String,
    mode: Mode,
    /// How many MCP sessions callers may hold (stateful mode).
    session_limits: crate::SessionLimits,
    /// Most tool calls one caller may have in flight, all tools together.
    calls_per_caller: u32,
    /// Most open event streams of one caller.
    streams_per_caller: u32,
    /// Which successful calls and requests are audited.
    audit_successes: crate::tools::AuditPolicy,
    allowed_hosts: Option<Vec<String>>,
    allowed_origins: Vec<String>,
    max_body_bytes: usize,
    audit: AuditSetting,
    hide_forbidden: bool,
    lockout: Lockout,
    resource: Option<ProtectedResource>,
    /// The issuer and scopes of the mounted authorization server, to check the tools' scopes.
    #[cfg(feature = "oauth")]
    oauth_scopes: Option<(String, Vec<String>)>,
    /// The mounted authorization servers, told at build which client certificates reach them.
    #[cfg(all(feature = "oauth", feature = "mtls"))]
    oauth_servers: Vec<crate::oauth::OAuthServer>,
    /// Which scopes include which (merged with the mounted authorization server's).
    scope_hierarchy: crate::ScopeHierarchy,
    /// `TCP_NODELAY` on accepted connections; `None`: on in stateful mode only.
    tcp_nodelay: Option<bool>,
    extra_routes: Router,
    /// Routes put behind the authentication layer at build time.
    authenticated_routes: Option<Router>,
    name: Option<String>,
    version: Option<String>,
    /// Addresses and CIDR networks of proxies allowed to name the client (parsed at build).
    trusted_proxies: Vec<String>,
    /// The header in which trusted proxies forward the client's certificate.
    #[cfg(feature = "mtls")]
    client_certificate_header: Option<crate::ForwardedCertificate>,
    /// Whether `/healthz` and `/readyz` are served.
    health: bool,
    /// Authorization servers whose store `/readyz` checks.
    readiness: Vec<Arc<dyn health::ReadinessCheck>>,
    /// The tools' rate limits shared with other replicas (`rate_limiter`).
    #[cfg(feature = "redis")]
    shared_limits: Option<Arc<crate::rate_limit::redis::SharedLimits>>,
    /// The failure throttle shared with other replicas (`shared_lockout`).
    #[cfg(feature = "redis")]
    shared_failures: Option<Arc<crate::auth::lockout::redis::SharedFailures>>,
    /// The session owners shared with other replicas (`shared_sessions`).
    #[cfg(feature = "redis")]
    shared_sessions: Option<Arc<crate::http::sessions::redis::SharedSessions>>,
    /// The recorder this server's handles are registered with at build.
    #[cfg(feature = "metrics")]
    metrics: Option<crate::metrics::PrometheusMetrics>,
    /// The mounted authorization servers, whose grants and lockouts are counted at build.
    #[cfg(all(feature = "metrics", feature = "oauth"))]
    metered_oauth_servers: Vec<crate::oauth::OAuthServer>,
    /// The seed's token endpoint, mounted with this server's audit log and failure throttle.
    #[cfg(feature = "jwt")]
    token_endpoint: Option<crate::TokenEndpoint>,
    /// Timeouts, connection caps and shutdown deadline of `serve_on` (see `serve`).
    pub(crate) connection_limits: crate::http::serve::ConnectionLimits,
    /// HTTPS settings of `serve_on`.
    #[cfg(feature = "tls")]
    tls: Option<crate::Tls>,
    /// The first error of a setter that could not take its value; reported by the build, so
    /// setters never fail mid-chain.
    config_error: Option<ConfigError>,
}

enum AuditSetting {
    Log(AuditLog),
    File(PathBuf),
}

impl<T: McpTools> Gatekeeper<T> {
    /// Starts a server for `tools`. With no authenticator added, every request is refused
    /// (deny by default).
    pub fn new(tools: T) -> Self {
        Self {
            tools,
            authenticators: Vec::new(),
            allow_anonymous: false,
            path: "/mcp".into(),
            mode: Mode::Stateful,
            session_limits: crate::SessionLimits::default(),
            calls_per_caller: in_flight::DEFAULT_CALLS_PER_CALLER,
            streams_per_caller: in_flight::DEFAULT_STREAMS_PER_CALLER,
            audit_successes: crate::tools::AuditPolicy::default(),
            allowed_hosts: None,
            allowed_origins: Vec::new(),
            max_body_bytes: 1024 * 1024,
            audit: AuditSetting::Log(AuditLog::tracing_only()),
            hide_forbidden: false,
            lockout: Lockout::default(),
            resource: None,
            #[cfg(feature = "oauth")]
            oauth_scopes: None,
            #[cfg(all(feature = "oauth", feature = "mtls"))]
            oauth_servers: Vec::new(),
            scope_hierarchy: crate::ScopeHierarchy::new(),
            tcp_nodelay: None,
            extra_routes: Router::new(),
            authenticated_routes: None,
            name: None,
            version: None,
            trusted_proxies: Vec::new(),
            #[cfg(feature = "mtls")]
            client_certificate_header: None,
            health: true,
            readiness: Vec::new(),
            #[cfg(feature = "redis")]
            shared_limits: None,
            #[cfg(feature = "redis")]
            shared_failures: None,
            #[cfg(feature = "redis")]
            shared_sessions: None,
            #[cfg(feature = "jwt")]
            token_endpoint: None,
            connection_limits: crate::http::serve::ConnectionLimits::new(),
            #[cfg(feature = "tls")]
            tls: None,
            #[cfg(feature = "metrics")]
            metrics: None,
            #[cfg(all(feature = "metrics", feature = "oauth"))]
            metered_oauth_servers: Vec::new(),
            config_error: None,
        }
    }

    /// Counts this server's authentications, tool calls and lockouts in `metrics`, labelled
    /// with the server's name (see [`metrics`](crate::metrics)). The handles are registered
    /// when the server is built; a request only increments them.
    #[cfg(feature = "metrics")]
    #[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
    pub fn metrics(mut self, metrics: &crate::metrics::PrometheusMetrics) -> Self {
        self.metrics = Some(metrics.clone());
        self
    }

    /// Adds an authenticator. Authenticators are asked in the order they were added; the first
    /// that recognises a request's credential decides.
    pub fn authenticate(mut self, authenticator: impl Authenticator) -> Self {
        self.authenticators.push(Arc::new(authenticator));
        self
    }

    /// Lets requests without any credential through as an anonymous principal, which can call
    /// `public` tools only. A credential that is presented and invalid is still refused.
    pub fn allow_anonymous(mut self) -> Self {
        self.allow_anonymous = true;
        self
    }

    /// The path of the MCP endpoint (default `/mcp`).
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    /// Serve without sessions, answering each request with plain JSON (the default is
    /// stateful, with `Mcp-Session-Id` sessions and SSE replies).
    pub fn stateless(mut self) -> Self {
        self.mode = Mode::Stateless;
        self
    }

    /// The `Host` header values the endpoint answers to (DNS-rebinding protection). The
    /// default allows only loopback names (`localhost`, `127.0.0.1`, `::1`), which is right
    /// for a local server and refuses every request with `403` behind a public name: list the
    /// public host names here when deploying.
    pub fn allowed_hosts<I, S>(mut self, hosts: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.allowed_hosts = Some(hosts.into_iter().map(Into::into).collect());
        self
    }

    /// Accept any `Host`. Only for servers behind a proxy that validates `Host` itself.
    pub fn allow_any_host(mut self) -> Self {
        self.allowed_hosts = Some(Vec::new());
        self
    }

    /// Browser origins allowed to call the endpoint. A request whose `Origin` header is
    /// present and not listed is refused with `403` (requests without `Origin` pass: they do
    /// not come from a browser page).
    pub fn allowed_origins<I, S>(mut self, origins: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.allowed_origins = origins.into_iter().map(Into::into).collect();
        self
    }

    /// The largest request body accepted (default 1 MiB); larger ones get `413`.
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// Where audit records go (default: `tracing` only).
    pub fn audit(mut self, log: AuditLog) -> Self {
        self.audit = AuditSetting::Log(log);
        self
    }

    /// Also write audit records as JSON lines to `path`.
    pub fn audit_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.audit = AuditSetting::File(path.into());
        self
    }

    /// Answer a call to a tool the caller may not call with "tool not found" (as if it did not
    /// exist) instead of naming the missing role or scope. Rate-limit refusals are unaffected.
    pub fn hide_forbidden_tools(mut self) -> Self {
        self.hide_forbidden = true;
        self
    }

    /// Keeps the tools' rate limits in Redis, shared by every replica configured with the same
    /// Redis and prefix, instead of in this process (see [`RedisRateLimiter`] for the failure
    /// policy). `/readyz` then also asks Redis. A setting that cannot be used fails the build.
    ///
    /// [`RedisRateLimiter`]: crate::RedisRateLimiter
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn rate_limiter(mut self, limiter: crate::RedisRateLimiter) -> Self {
        match limiter.build() {
            Ok(limits) => {
                let limits = Arc::new(limits);
                self.readiness.push(limits.clone());
                self.shared_limits = Some(limits);
            }
            Err(error) => {
                self.config_error.get_or_insert(error);
            }
        }
        self
    }

    /// Counts the failures of [`lockout`](Self::lockout) in Redis, shared by every replica
    /// configured with the same Redis and prefix: an address throttled by one replica is
    /// throttled by all. Only failures reach Redis; while it does not answer, each replica
    /// counts on its own (see [`RedisLockout`]). A setting that cannot be used fails the build.
    ///
    /// [`RedisLockout`]: crate::RedisLockout
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn shared_lockout(mut self, lockout: crate::RedisLockout) -> Self {
        match lockout.build() {
            Ok(shared) => self.shared_failures = Some(Arc::new(shared)),
            Err(error) => {
                self.config_error.get_or_insert(error);
            }
        }
        self
    }

    /// Keeps which caller owns which MCP session in Redis as well, shared by every replica
    /// configured with the same Redis and prefix: a caller presenting another caller's session
    /// id is refused (and audited) by every replica, not only by the one holding the session.
    /// Sessions themselves stay in the replica that opened them: route by `Mcp-Session-Id`
    /// (see [`RedisSessions`]). Stateless servers have no sessions and ignore this. A setting
    /// that cannot be used fails the build.
    ///
    /// [`RedisSessions`]: crate::RedisSessions
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn shared_sessions(mut self, sessions: crate::RedisSessions) -> Self {
        match sessions.build() {
            Ok(shared) => self.shared_sessions = Some(Arc::new(shared)),
            Err(error) => {
                self.config_error.get_or_insert(error);
            }
        }
        self
    }

    /// How many MCP sessions one caller and all callers may hold at once, and how long an idle
    /// one lives (default: 16 per caller, 10,000 in all, 5 minutes; see [`SessionLimits`]).
    /// Stateless servers have no sessions and ignore this. Limits that cannot hold (zero)
    /// fail the build.
    ///
    /// [`SessionLimits`]: crate::SessionLimits
    pub fn session_limits(mut self, limits: crate::SessionLimits) -> Self {
        self.session_limits = limits;
        self
    }

    /// Which successful tool calls, and requests that call no tool (`initialize`,
    /// `tools/list`), the audit trail records (default: all). Refusals, lockouts and
    /// configuration changes are always recorded. Under load successes are most of the trail:
    /// BENCHMARKS.md gives the disk cost per million calls of each setting.
    /// [`AuditSuccesses::OneIn(0)`](crate::AuditSuccesses::OneIn) fails the build.
    pub fn audit_successes(mut self, successes: crate::AuditSuccesses) -> Self {
        self.audit_successes.default = successes;
        self
    }

    /// Which successful calls of `tool` (its MCP name) the audit trail records, instead of
    /// what [`audit_successes`](Self::audit_successes) says: e.g. none for a health-check
    /// tool called every second, all for a destructive one on a sampled server. A name that
    /// is not a tool of this server fails the build.
    pub fn audit_successes_of(
        mut self,
        tool: impl Into<String>,
        successes: crate::AuditSuccesses,
    ) -> Self {
        self.audit_successes.per_tool.push((tool.into(), successes));
        self
    }

    /// Most tool calls one caller may have running at once, all tools together (default: 32).
    /// One more is refused at once with the JSON-RPC error
    /// [`TOO_MANY_CALLS`](crate::codes::TOO_MANY_CALLS) naming the limit (audited
    /// `too_many_calls`); a call's place is given back when it finishes, is cancelled, or its
    /// client disconnects (the tool's future is then dropped). A tool may set a lower limit of
    /// its own with `#[mcp_tool(concurrency = N)]`. Callers are told apart as by the rate
    /// limits; anonymous callers are counted per address. The count is per process. Zero fails
    /// the build.
    pub fn calls_per_caller(mut self, calls: u32) -> Self {
        self.calls_per_caller = calls;
        self
    }

    /// Most event streams one caller may hold open at once (default: 64): a session's `GET`
    /// streams (rmcp keeps up to 33 per session) and the streams answering `POST`s. A `GET`
    /// over the limit is refused with `429 too_many_streams` and `Retry-After` (audited
    /// `stream_limit`) until one closes. A stream answering a `POST` counts but is never
    /// refused: it lasts only while its request is answered, and tool calls are bounded by
    /// [`calls_per_caller`](Self::calls_per_caller), whose JSON-RPC refusal a caller at its
    /// call limit then hears. Anonymous callers are counted per address. Zero fails the
    /// build.
    pub fn streams_per_caller(mut self, streams: u32) -> Self {
        self.streams_per_caller = streams;
        self
    }

    /// When to lock out an address that keeps presenting invalid credentials (default: 10
    /// failures in a minute lock it out for 5 minutes, with `429` and `Retry-After`).
    pub fn lockout(mut self, lockout: Lockout) -> Self {
        self.lockout = lockout;
        self
    }

    /// Declares which scopes include which: a token holding a broader scope may then call tools
    /// that require a narrower one (MCP 2026-07-28: servers MUST honour scope hierarchies).
    /// Merged with earlier calls and with the hierarchy of an authorization server mounted with
    /// [`oauth`](Self::oauth). The protected-resource metadata lists the declared broader scopes
    /// in `scopes_supported` next to the tools' own. A scope that is not an RFC 6749 scope
    /// token fails the build.
    pub fn scope_hierarchy(mut self, hierarchy: crate::ScopeHierarchy) -> Self {
        self.scope_hierarchy = self.scope_hierarchy.merge(&hierarchy);
        self
    }

    /// Declares the endpoint an OAuth protected resource: serves its RFC 9728 metadata (at the
    /// path-inserted and the root well-known URLs), names it in every `401` challenge
    /// (`resource_metadata`, `scope`), and answers a tool call missing scopes with a
    /// `403 insufficient_scope` challenge clients can step up from.
    pub fn protected_resource(mut self, resource: ProtectedResource) -> Self {
        self.resource = Some(resource);
        self
    }

    #[cfg(feature = "oauth")]
    #[cfg_attr(docsrs, doc(cfg(feature = "oauth")))]
    /// Serves an OAuth authorization server on the same origin and protects the MCP endpoint
    /// with it: accepts its access tokens issued for `resource` (the canonical URI of this
    /// endpoint as clients reach it, e.g. `https://mcp.example.com/mcp`), serves the
    /// protected-resource metadata naming it, and mounts its routes.
    ///
    /// Every scope the tools declare must be one the authorization server grants (give it
    /// [`McpTools::declared_scopes`] with
    /// [`AuthorizationServer::scopes`](crate::oauth::AuthorizationServer::scopes)); otherwise
    /// building the router fails, since no client could ever call those tools. So does a
    /// `resource` that is not one of the authorization server's resources (the error is reported
    /// when the server is built, like every other).
    pub fn oauth(mut self, server: &crate::oauth::OAuthServer, resource: &str) -> Self {
        let (authenticator, metadata) = match (
            server.authenticator(resource),
            server.protected_resource(resource),
        ) {
            (Ok(authenticator), Ok(metadata)) => (authenticator, metadata),
            (Err(error), _) | (_, Err(error)) => {
                self.config_error.get_or_insert(error);
                return self;
            }
        };
        self.oauth_scopes = Some((server.issuer().to_owned(), server.scopes().to_vec()));
        self.scope_hierarchy = self.scope_hierarchy.merge(server.scope_hierarchy());
        self.readiness.push(Arc::new(server.clone()));
        #[cfg(feature = "mtls")]
        self.oauth_servers.push(server.clone());
        #[cfg(feature = "metrics")]
        self.metered_oauth_servers.push(server.clone());
        self.authenticate(authenticator)
            .protected_resource(metadata)
            .merge(server.router())
    }

    /// Whether accepted connections get `TCP_NODELAY` (when served by [`serve`](Self::serve),
    /// [`bind`](Self::bind) or [`serve_on`](Self::serve_on)). Default: on in stateful mode,
    /// whose SSE replies go out as several small writes that Nagle's algorithm and delayed ACKs
    /// would stall for up to 40 ms each; on over TLS, where the first reply follows TLS 1.3's
    /// session tickets and waits for their delayed ACK (a new TLS connection's first answer
    /// measured 42 ms without it, 1.3 ms with it, at no measurable CPU cost); off in stateless
    /// plain HTTP, where a reply is one write that Nagle does not hold back, and where setting
    /// it costs measurably more CPU per request.
    pub fn tcp_nodelay(mut self, on: bool) -> Self {
        self.tcp_nodelay = Some(on);
        self
    }

    /// Proxies (addresses or CIDR networks, e.g. `"10.0.0.0/8"`) allowed to tell the client's
    /// address in `Forwarded` or `X-Forwarded-For` (default: none). From such a peer the client
    /// is the rightmost hop that is not itself a trusted proxy, and that address is what
    /// lockouts, throttles and the audit see (and what `ConnectInfo<SocketAddr>` holds for
    /// every route of the server; the proxy's own address is in [`PeerAddr`](crate::PeerAddr)).
    /// From any other peer the headers are ignored and audited. Trusted proxies are also exempt
    /// from the per-address connection cap. An entry that does not parse fails the build.
    pub fn trusted_proxies<I, S>(mut self, proxies: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.trusted_proxies = proxies.into_iter().map(Into::into).collect();
        self
    }

    /// Reads the client certificate that a TLS-terminating proxy verified from the header it
    /// forwards it in ([`ForwardedCertificate`](crate::ForwardedCertificate): Envoy's
    /// `x-forwarded-client-cert`, nginx's or Traefik's PEM, RFC 9440), so that
    /// [`ClientCertificates`](crate::auth::ClientCertificates) authenticates callers behind
    /// the proxy exactly like callers presenting a certificate to this server's own TLS.
    ///
    /// The header is believed only from [`trusted_proxies`](Self::trusted_proxies), which must
    /// be set (else the build fails: no request could ever use the header). From a trusted
    /// proxy, a header that does not parse is answered `400`, and the certificate of the
    /// proxy's own TLS connection is never taken for a client's. From any other peer the
    /// header is removed from the request and audited (`forwarded_certificate_ignored`). A
    /// header name that is not valid, or one with another meaning (`authorization`, `host`,
    /// ...), fails the build.
    #[cfg(feature = "mtls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "mtls")))]
    pub fn client_certificate_header(mut self, header: crate::ForwardedCertificate) -> Self {
        self.client_certificate_header = Some(header);
        self
    }

    /// Whether to serve `GET /healthz` (the process is up) and `GET /readyz` (the OAuth
    /// store answers and signing keys are loaded), unauthenticated (default: on). See
    /// [`health`](crate::http::health) for what they check.
    pub fn health_checks(mut self, on: bool) -> Self {
        self.health = on;
        self
    }

    #[cfg(feature = "jwt")]
    #[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
    /// Mounts the seed's client-credentials [`TokenEndpoint`](crate::TokenEndpoint) at
    /// `POST /auth/token`, with this server's audit log and failure throttle: a wrong secret
    /// counts like a wrong API key from the same address. A client secret shorter than 16
    /// characters fails the build.
    pub fn token_endpoint(mut self, endpoint: crate::TokenEndpoint) -> Self {
        self.token_endpoint = Some(endpoint);
        self
    }

    /// Mounts more routes on the same server, **unauthenticated**: the endpoint's
    /// authentication layer does not run in front of them (nor its `Host` check), so they must
    /// check callers themselves. For routes that need the caller, use
    /// [`merge_authenticated`](Self::merge_authenticated).
    pub fn merge(mut self, routes: Router) -> Self {
        self.extra_routes = self.extra_routes.merge(routes);
        self
    }

    /// Mounts more routes behind the same authentication as the MCP endpoint: its
    /// authenticators, `Host`/`Origin` allow-lists, failure throttle, refusals and audit log.
    /// Their handlers take the caller with the [`Principal`](crate::Principal) extractor
    /// (`async fn stats(caller: Principal)`). Only the routes are wrapped: a path `routes`
    /// does not have still gets `404`.
    pub fn merge_authenticated(mut self, routes: Router) -> Self {
        self.authenticated_routes = Some(match self.authenticated_routes {
            Some(earlier) => earlier.merge(routes),
            None => routes,
        });
        self
    }

    /// The name and version announced to clients (default: the tools crate's name and version).
    pub fn server_info(mut self, name: impl Into<String>, version: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self.version = Some(version.into());
        self
    }

    /// Builds the axum router: the MCP endpoint behind authentication, plus merged routes, to
    /// serve with your own server. Open MCP sessions and their SSE streams then live until the
    /// process ends; use [`into_router_with_shutdown`](Self::into_router_with_shutdown) to end
    /// them when your server stops.
    ///
    /// # Errors
    /// Every configuration error: a setter's bad value (an unusable host, a resource the
    /// authorization server does not serve, ...), a tool that cannot be served (its input schema
    /// is not an object), an authenticator that grants a role the tools do not declare.
    pub fn into_router(self) -> Result<Router, ConfigError> {
        Ok(self.build(CancellationToken::new())?.0)
    }

    /// [`into_router`](Self::into_router), with the MCP sessions and their SSE streams ended when
    /// `shutdown` is cancelled (pass the token your server's graceful shutdown cancels; streams
    /// left open would keep a graceful shutdown waiting).
    ///
    /// # Errors
    /// As [`into_router`](Self::into_router).
    pub fn into_router_with_shutdown(
        self,
        shutdown: CancellationToken,
    ) -> Result<Router, ConfigError> {
        Ok(self.build(shutdown)?.0)
    }

    /// [`into_router`](Self::into_router), and the [`GatekeeperLayer`] its endpoint
    /// authenticates with, for routes of your own app outside this router: the same
    /// authenticators, allow-lists, audit log and failure throttle (a guess counts once,
    /// wherever it was made). The layer's requests carry an `Arc<Principal>`.
    ///
    /// # Errors
    /// As [`into_router`](Self::into_router).
    pub fn into_router_and_layer(self) -> Result<(Router, GatekeeperLayer), ConfigError> {
        let (router, _engine, layer) = self.build(CancellationToken::new())?;
        Ok((router, layer))
    }

    fn build(
        self,
        shutdown: CancellationToken,
    ) -> Result<(Router, Arc<Engine<T>>, GatekeeperLayer), ConfigError> {
        if let Some(error) = self.config_error {
            return Err(error);
        }
        check_roles::<T::Roles>(&self.authenticators)?;
        self.scope_hierarchy.check()?;
        #[cfg(all(feature = "oauth", feature = "mtls"))]
        self.tell_oauth_servers_about_certificates();
        #[cfg(feature = "oauth")]
        if let Some((issuer, granted)) = &self.oauth_scopes {
            // A tool's scope can be granted when the server grants it or a scope including it.
            let missing: Vec<&str> = T::declared_scopes()
                .into_iter()
                .filter(|s| !granted.iter().any(|g| self.scope_hierarchy.implies(g, s)))
                .collect();
            if !missing.is_empty() {
                return Err(ConfigError::invalid(format!(
                    "authorization server `{issuer}` cannot grant the scopes some tools require \
                     ({}); add them with AuthorizationServer::scopes",
                    missing.join(" ")
                )));
            }
        }
        let audit = match self.audit {
            AuditSetting::Log(log) => log,
            AuditSetting::File(path) => AuditLog::json_lines(path)?,
        };
        let context = crate::auth::ServerContext::new(Some(<T::Roles as Roles>::NAMES), &audit);
        for authenticator in &self.authenticators {
            authenticator.attach(&context);
        }
        let mut info = T::__server_info();
        if let Some(name) = self.name {
            info.name = name.into();
        }
        if let Some(version) = self.version {
            info.version = version.into();
        }
        #[cfg(feature = "metrics")]
        let registrar = match &self.metrics {
            Some(metrics) => metrics.for_server(&info.name),
            None => crate::metrics::Registrar::default(),
        };
        #[cfg_attr(not(any(feature = "redis", feature = "metrics")), allow(unused_mut))]
        let mut engine = Engine::<T>::new(
            info,
            audit.clone(),
            self.hide_forbidden,
            &self.scope_hierarchy,
            in_flight::checked("calls_per_caller", self.calls_per_caller)?,
            &self.audit_successes,
        )?;
        #[cfg(feature = "redis")]
        if let Some(limits) = self.shared_limits {
            engine.share_limits(limits);
        }
        #[cfg(feature = "metrics")]
        engine.count_in(&registrar);
        #[cfg(all(feature = "metrics", feature = "oauth"))]
        for server in &self.metered_oauth_servers {
            server.count_in(&registrar);
        }
        let engine = Arc::new(engine);
        let service = GatekeeperService::new(Arc::new(self.tools), engine.clone());

        // The Host and Origin allow-lists are checked by our endpoint, parsed once (see
        // `host_guard`), so rmcp's per-request copy of the check is switched off.
        let hosts = HostGuard::new(
            &self
                .allowed_hosts
                .unwrap_or_else(|| LOOPBACK_HOSTS.map(String::from).to_vec()),
            &self.allowed_origins,
        )?;
        self.session_limits.check()?;
        // One session manager, shared with the bindings that bound what callers hold in it.
        let session_manager = (self.mode == Mode::Stateful).then(|| {
            let mut manager = LocalSessionManager::default();
            manager.session_config.keep_alive = Some(self.session_limits.idle_time());
            Arc::new(manager)
        });
        let config = StreamableHttpServerConfig::default()
            .with_max_request_body_bytes(self.max_body_bytes)
            .with_cancellation_token(shutdown.child_token())
            .disable_allowed_hosts()
            .disable_allowed_origins();
        let resource = self
            .resource
            .map(|resource| resource.with_servers_of(&self.authenticators));
        let (challenge, metadata_routes) = match &resource {
            Some(resource) => {
                resource.check()?;
                let scopes = resource.advertised_scopes(engine.declared_scopes());
                // The metadata also names the broader scopes that include the tools' own (a
                // client may ask for those); the 401 challenge names only what the tools need.
                let mut supported = scopes.clone();
                for broader in self
                    .scope_hierarchy
                    .broader_of_any(engine.declared_scopes().iter().copied())
                {
                    if !supported.contains(&broader) {
                        supported.push(broader);
                    }
                }
                (
                    Challenge::new(Some(&resource.metadata_url()), &scopes),
                    resource.routes(&supported),
                )
            }
            None => (Challenge::default(), Router::new()),
        };
        // A client without a credential is told to send only what these authenticators take.
        let challenge = challenge.accepting(&self.authenticators);
        let proxies = TrustedProxies::parse(&self.trusted_proxies)?;
        let failures = FailureThrottle::new(self.lockout);
        #[cfg(feature = "redis")]
        let failures = failures.shared(self.shared_failures);
        #[cfg(feature = "metrics")]
        let failures = failures.counting_lockouts(crate::metrics::lockouts(&registrar, "address"));
        let failures = Arc::new(failures);
        let mut extra_routes = self.extra_routes;
        #[cfg(feature = "jwt")]
        if let Some(endpoint) = self.token_endpoint {
            extra_routes = extra_routes.merge(endpoint.mount(audit.clone(), failures.clone())?);
        }
        if self.health {
            extra_routes = extra_routes.merge(health::routes(self.readiness));
        }
        // Built before the proxies move into the address layer; fails on a bad header.
        #[cfg(feature = "mtls")]
        let forwarded_certificate = self
            .client_certificate_header
            .as_ref()
            .map(|header| {
                crate::http::forwarded_certificate::ForwardedCertificateLayer::new(
                    header,
                    proxies.clone(),
                    audit.clone(),
                )
            })
            .transpose()?;
        let client_addr = ClientAddrLayer::new(proxies, audit.clone());
        #[cfg(feature = "metrics")]
        let metrics = crate::metrics::AuthMetrics::new(
            &registrar,
            self.authenticators.iter().map(|a| a.name()),
        );
        let auth = AuthLayerState {
            hosts,
            chain: AuthChain::new(self.authenticators, self.allow_anonymous),
            audit,
            failures,
            sessions: Arc::new(crate::http::sessions::SessionBindings::new(
                self.session_limits,
                session_manager
                    .clone()
                    .map(|manager| manager as Arc<dyn crate::http::sessions::LiveSessions>),
                #[cfg(feature = "redis")]
                self.shared_sessions,
            )),
            challenge,
            streams: InFlight::new(in_flight::checked(
                "streams_per_caller",
                self.streams_per_caller,
            )?),
            successes: Arc::new(SuccessSampler::new(self.audit_successes.default)),
            tools: Some(GatekeeperTools {
                scopes: engine.clone(),
                max_body_bytes: self.max_body_bytes,
            }),
            #[cfg(feature = "metrics")]
            metrics,
        };
        // The router serves the metadata already: the layer has none of its own to offer.
        let auth = GatekeeperLayer::from_state(auth, None);
        // Other routes get the same checks without the tools' step-up and audit hand-off.
        let routes_layer = auth.without_tools();
        if let Some(routes) = self.authenticated_routes {
            extra_routes = extra_routes.merge(routes.route_layer(routes_layer.clone()));
        }
        let mcp = match session_manager {
            Some(manager) => McpEndpoint::route(&self.path, auth, service, manager, config),
            None => McpEndpoint::route(
                &self.path,
                auth,
                service,
                Arc::new(NeverSessionManager::default()),
                config
                    .with_legacy_session_mode(false)
                    .with_json_response(true),
            ),
        };
        let router = mcp
            .merge(metadata_routes)
            .merge(extra_routes)
            .layer(client_addr);
        // Outside the address layer: it must see the TCP peer, not the client a proxy names.
        #[cfg(feature = "mtls")]
        let router = match forwarded_certificate {
            Some(layer) => router.layer(layer),
            None => router,
        };
        Ok((router, engine, routes_layer))
    }

    /// RFC 8705: the mounted authorization servers advertise (and accept registrations of)
    /// mutual-TLS client authentication and certificate-bound tokens only if certificates can
    /// reach their endpoints here: CA-issued ones when this server's TLS verifies client
    /// certificates, self-signed ones when it accepts those too, both when a trusted proxy
    /// forwards them (what the proxy lets through is its configuration's business).
    #[cfg(all(feature = "oauth", feature = "mtls"))]
    fn tell_oauth_servers_about_certificates(&self) {
        let proxied = self.client_certificate_header.is_some();
        #[cfg(feature = "tls")]
        let (ca_issued, self_signed) = self.tls.as_ref().map_or((false, false), |tls| {
            (
                tls.verifies_client_certificates(),
                tls.accepts_self_signed_client_certificates(),
            )
        });
        #[cfg(not(feature = "tls"))]
        let (ca_issued, self_signed) = (false, false);
        for server in &self.oauth_servers {
            server.client_certificates_reach(ca_issued || proxied, self_signed || proxied);
        }
    }

    /// Binds `addr` and serves until Ctrl-C or SIGTERM, then shuts down gracefully within the
    /// [`shutdown_timeout`](crate::ConnectionLimits::shutdown_timeout).
    pub async fn serve(self, addr: impl ToSocketAddrs) -> Result<(), ServeError> {
        let server = self.bind(addr).await?;
        tracing::info!(address = %server.local_addr(), "mcp-gatekeeper listening");
        let handle = server.shutdown_handle();
        tokio::spawn(async move {
            shutdown_signal().await;
            handle.cancel();
        });
        server.wait().await
    }

    /// Binds `addr` and starts serving in the background; the returned [`RunningServer`]
    /// tells the bound address (useful with port 0) and stops the server.
    pub async fn bind(self, addr: impl ToSocketAddrs) -> Result<RunningServer, ServeError> {
        let listener = TcpListener::bind(addr).await.map_err(ServeError::Bind)?;
        self.serve_on(listener)
    }

    /// Serves HTTPS (and, with client CAs, mutual TLS) instead of plain HTTP: see [`Tls`].
    /// The files are read when the server starts; [`serve_on`](Self::serve_on) fails with a
    /// configuration error naming the file that does not load. Plain HTTP (no call to this)
    /// suits loopback and a server behind a TLS-terminating proxy.
    ///
    /// [`Tls`]: crate::Tls
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn tls(mut self, tls: crate::Tls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Starts serving on an already bound listener, with the
    /// [`connection_limits`](Self::connection_limits): HTTP/1.1 and HTTP/2 (prior knowledge,
    /// or by ALPN over TLS), each request carrying the peer as `ConnectInfo<SocketAddr>`.
    pub fn serve_on(self, listener: TcpListener) -> Result<RunningServer, ServeError> {
        let local_addr = listener.local_addr().map_err(ServeError::Bind)?;
        let shutdown = CancellationToken::new();
        self.connection_limits.check()?;
        #[cfg(feature = "tls")]
        let tls = match self.tls.clone() {
            Some(tls) => Some(Arc::new(crate::tls::TlsAcceptor::new(tls)?)),
            None => None,
        };
        #[cfg(feature = "tls")]
        let serves_tls = tls.is_some();
        #[cfg(not(feature = "tls"))]
        let serves_tls = false;
        // Every client behind a trusted proxy arrives through its connections: the proxy is
        // exempt from the per-address connection cap (still counted in the total).
        let proxies = TrustedProxies::parse(&self.trusted_proxies)?;
        let cap_exempt = (!proxies.is_empty()).then(|| {
            Arc::new(move |ip: std::net::IpAddr| proxies.contains(ip))
                as crate::http::serve::CapExempt
        });
        let settings = crate::http::serve::ServeSettings {
            nodelay: self
                .tcp_nodelay
                .unwrap_or(self.mode == Mode::Stateful || serves_tls),
            limits: self.connection_limits.clone(),
            cap_exempt,
            #[cfg(feature = "tls")]
            tls: tls.clone(),
        };
        let (router, _engine, _layer) = self.build(shutdown.clone())?;
        #[cfg(feature = "tls")]
        if let Some(tls) = tls {
            tokio::spawn(tls.watch(shutdown.clone()));
        }
        let task = tokio::spawn(crate::http::serve::serve(
            listener,
            router,
            settings,
            shutdown.clone(),
        ));
        Ok(RunningServer {
            local_addr,
            shutdown,
            task,
        })
    }
}

/// Refuses to start when an authenticator's configuration is unsafe, or a credential grants a
/// role the tools do not know: such a key would silently never work (or, after a rename, work
/// for the wrong tools).
fn check_roles<R: Roles>(authenticators: &[Arc<dyn Authenticator>]) -> Result<(), ConfigError> {
    for authenticator in authenticators {
        authenticator.check_configuration()?;
        for role in authenticator.configured_roles() {
            if !R::NAMES.contains(&role.as_str()) {
                return Err(ConfigError::UnknownRole {
                    source_name: authenticator.name().into(),
                    role,
                    known: if R::NAMES.is_empty() {
                        "none declared".into()
                    } else {
                        R::NAMES.join(", ")
                    },
                });
            }
        }
    }
    Ok(())
}

/// Resolves when the process is asked to stop (Ctrl-C, or SIGTERM on Unix): what
/// [`Gatekeeper::serve`] waits for before shutting down gracefully.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

/// A server started with [`Gatekeeper::bind`] or [`Gatekeeper::serve_on`].
#[derive(Debug)]
pub struct RunningServer {
    local_addr: SocketAddr,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl RunningServer {
    /// Serves `router` (no authentication of its own) on `listener` with the accept loop's
    /// default connection limits, until shut down: the metrics' own listener.
    #[cfg(feature = "metrics")]
    pub(crate) fn serve_router(listener: TcpListener, router: Router) -> Result<Self, ServeError> {
        let local_addr = listener.local_addr().map_err(ServeError::Bind)?;
        let shutdown = CancellationToken::new();
        let settings = crate::http::serve::ServeSettings {
            nodelay: false,
            limits: crate::ConnectionLimits::default(),
            cap_exempt: None,
            #[cfg(feature = "tls")]
            tls: None,
        };
        // The accept loop hands each request its peer address, which this router never reads.
        let task = tokio::spawn(crate::http::serve::serve(
            listener,
            router,
            settings,
            shutdown.clone(),
        ));
        Ok(Self {
            local_addr,
            shutdown,
            task,
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A handle that stops the server when cancelled, as [`shutdown`](Self::shutdown) does.
    pub fn shutdown_handle(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stops accepting connections, ends sessions (their SSE streams), asks every connection
    /// to close after its current request, and waits for them up to the
    /// [`shutdown_timeout`](crate::ConnectionLimits::shutdown_timeout) (default 10 s); what is
    /// still open then is dropped.
    pub async fn shutdown(self) -> Result<(), ServeError> {
        self.shutdown.cancel();
        self.wait().await
    }

    /// Waits until the server stops: after a shutdown, once every connection has closed or
    /// the shutdown deadline has passed.
    pub async fn wait(self) -> Result<(), ServeError> {
        match self.task.await {
            Ok(result) => result.map_err(ServeError::Serve),
            Err(join) => Err(ServeError::Serve(std::io::Error::other(join))),
        }
    }
}

/// Why a server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The address could not be bound.
    #[error("cannot bind the server address: {0}")]
    Bind(std::io::Error),
    /// The server failed while running.
    #[error("server error: {0}")]
    Serve(std::io::Error),
}
