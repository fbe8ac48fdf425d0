//! The authentication layer on its own, for any rmcp server or axum route: a tower [`Layer`]
//! ([`GatekeeperLayer`]) and its [`Service`] ([`GatekeeperMiddleware`]), in tower-http's shape.
//!
//! Every request through it gets what the gatekeeper's MCP endpoint gives its own: the
//! `Host`/`Origin` allow-lists (loopback names by default), the credential from its headers
//! decided by the configured authenticators in order, the `401`/`403`/`429` answers with their
//! challenges, the failure throttle, the check that an `Mcp-Session-Id` belongs to its caller,
//! and an audit record. A request let through carries its caller as an `Arc<Principal>` in its
//! extensions, which handlers take with the [`Principal`] extractor (axum, and rmcp tool
//! parameters).
//!
//! ```no_run
//! use std::{net::SocketAddr, sync::Arc};
//!
//! use axum::{Router, routing::get};
//! use mcp_gatekeeper::{ApiKeys, GatekeeperLayer, Principal};
//! use rmcp::transport::streamable_http_server::{
//!     StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
//! };
//! # #[derive(Clone)] struct MyServer;
//! # impl rmcp::ServerHandler for MyServer {}
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let layer = GatekeeperLayer::builder()
//!     .authenticate(ApiKeys::from_env("MCP_API_KEYS")?)
//!     .allowed_hosts(["localhost", "mcp.example.com"])
//!     .build()?;
//! let mcp = StreamableHttpService::new(
//!     || Ok(MyServer),
//!     Arc::new(LocalSessionManager::default()),
//!     // The layer checks `Host` and `Origin`; rmcp's own copy of the check can go.
//!     StreamableHttpServerConfig::default().disable_allowed_hosts(),
//! );
//! let app = Router::new()
//!     .route_service("/mcp", mcp)
//!     .route("/whoami", get(|caller: Principal| async move { caller.subject().to_owned() }))
//!     .route_layer(layer);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! // The client's address (`ConnectInfo`) is what the failure throttle counts by.
//! axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await?;
//! # Ok(()) }
//! ```
//!
//! [`Gatekeeper::into_router_and_layer`](crate::Gatekeeper::into_router_and_layer) gives the
//! layer of a configured server, and
//! [`Gatekeeper::merge_authenticated`](crate::Gatekeeper::merge_authenticated) puts routes
//! behind it.

use std::{
    fmt,
    pin::Pin,
    sync::{Arc, LazyLock},
    task::{Context, Poll},
};

use axum::{
    BoxError, Router,
    body::{Body, Bytes},
    extract::Request,
    response::Response,
};
use futures::future::BoxFuture;
use tower::{Layer, Service};

use crate::{
    AuditLog, ConfigError, Lockout, Principal, ProtectedResource,
    auth::{AuthChain, AuthError, AuthRequest, Authenticator, Credential, FailureThrottle},
    http::authenticate::{AuthLayerState, Challenge, authenticate_request},
    http::host_guard::{HostGuard, LOOPBACK_HOSTS},
    rate_limit::in_flight::{self, InFlight},
};

/// Authenticates every request before the service it wraps sees it; see the
/// [module docs](self).
///
/// Cheap to clone: every clone, and every service it wraps, shares one configuration, one
/// failure throttle and one table of session owners.
#[derive(Clone)]
pub struct GatekeeperLayer {
    state: Arc<AuthLayerState>,
    /// Whose RFC 9728 metadata the challenges name, for [`metadata_routes`](Self::metadata_routes).
    resource: Option<ProtectedResource>,
}

impl GatekeeperLayer {
    /// Starts a layer's configuration. With no authenticator added, every request is refused
    /// (deny by default).
    pub fn builder() -> GatekeeperLayerBuilder {
        GatekeeperLayerBuilder {
            authenticators: Vec::new(),
            allow_anonymous: false,
            allowed_hosts: None,
            allowed_origins: Vec::new(),
            audit: AuditLog::tracing_only(),
            lockout: Lockout::default(),
            resource: None,
            streams_per_caller: in_flight::DEFAULT_STREAMS_PER_CALLER,
            audit_successes: crate::AuditSuccesses::All,
            #[cfg(feature = "redis")]
            shared_lockout: None,
            #[cfg(feature = "redis")]
            shared_sessions: None,
            #[cfg(feature = "metrics")]
            metrics: crate::metrics::Registrar::default(),
        }
    }

    /// A layer over prepared state: the [`Gatekeeper`](crate::Gatekeeper) builder's.
    pub(crate) fn from_state(state: AuthLayerState, resource: Option<ProtectedResource>) -> Self {
        Self {
            state: Arc::new(state),
            resource,
        }
    }

    /// This layer for routes other than the gatekeeper's MCP endpoint (see
    /// [`AuthLayerState::without_tools`]); the failure throttle and session owners stay shared.
    pub(crate) fn without_tools(&self) -> Self {
        Self {
            state: Arc::new(self.state.without_tools()),
            resource: self.resource.clone(),
        }
    }

    /// Runs the layer's checks on `request` and, once it is let through, `next` (the service
    /// behind the layer): the one path of a request through the layer, whether it wraps a
    /// service or sits inside the gatekeeper's MCP endpoint.
    pub(crate) async fn run<F, Fut, E>(&self, request: Request, next: F) -> Result<Response, E>
    where
        F: FnOnce(Request) -> Fut,
        Fut: Future<Output = Result<Response, E>>,
    {
        authenticate_request(&self.state, request, next).await
    }

    /// Decides `credential` with the configured authenticators, in order, exactly as a request
    /// presenting it would be decided (a JWT accepted before is answered from the verifier's
    /// cache, an API key costs one hash), without HTTP: for credentials that arrive some other
    /// way, such as the first message of a WebSocket. Nothing is audited and no failure is
    /// counted, since there is no request and no address. A token bound to a client
    /// certificate (RFC 8705 `cnf`) is refused: no certificate comes with it.
    ///
    /// # Errors
    /// The [`AuthError`] a request with `credential` would have been refused with.
    pub async fn verify(&self, credential: Credential<'_>) -> Result<Arc<Principal>, AuthError> {
        // Authenticators may read the request head (mTLS reads its extensions); there is none.
        static NO_HEAD: LazyLock<http::request::Parts> =
            LazyLock::new(|| http::Request::new(()).into_parts().0);
        let request = AuthRequest {
            credential: Some(credential),
            parts: &NO_HEAD,
        };
        self.state.chain.authenticate(&request).await.result
    }

    /// The RFC 9728 metadata of the [`protected_resource`](GatekeeperLayerBuilder::protected_resource)
    /// the layer's challenges name (an empty router without one): merge it, outside the layer,
    /// into the app the layer protects, so OAuth clients find their authorization server.
    pub fn metadata_routes(&self) -> Router {
        match &self.resource {
            Some(resource) => resource.routes(&resource.advertised_scopes(&[])),
            None => Router::new(),
        }
    }
}

impl fmt::Debug for GatekeeperLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GatekeeperLayer")
            .field("resource", &self.resource.as_ref().map(|r| r.resource()))
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for GatekeeperLayer {
    type Service = GatekeeperMiddleware<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GatekeeperMiddleware {
            state: self.state.clone(),
            inner,
        }
    }
}

/// Configures a [`GatekeeperLayer`]; every mistake is reported by [`build`](Self::build).
#[must_use]
pub struct GatekeeperLayerBuilder {
    authenticators: Vec<Arc<dyn Authenticator>>,
    allow_anonymous: bool,
    allowed_hosts: Option<Vec<String>>,
    allowed_origins: Vec<String>,
    audit: AuditLog,
    lockout: Lockout,
    resource: Option<ProtectedResource>,
    streams_per_caller: u32,
    audit_successes: crate::AuditSuccesses,
    /// The failure throttle and session owners shared with other replicas, as settings until
    /// `build`.
    #[cfg(feature = "redis")]
    shared_lockout: Option<crate::RedisLockout>,
    #[cfg(feature = "redis")]
    shared_sessions: Option<crate::RedisSessions>,
    /// Where the layer's handles are registered, and the server they are labelled with.
    #[cfg(feature = "metrics")]
    metrics: crate::metrics::Registrar,
}

impl GatekeeperLayerBuilder {
    /// Adds an authenticator. Authenticators are asked in the order they were added; the first
    /// that recognises a request's credential decides.
    pub fn authenticate(mut self, authenticator: impl Authenticator) -> Self {
        self.authenticators.push(Arc::new(authenticator));
        self
    }

    /// Lets requests without any credential through as [`Principal::anonymous`]. A credential
    /// that is presented and invalid is still refused.
    pub fn allow_anonymous(mut self) -> Self {
        self.allow_anonymous = true;
        self
    }

    /// The `Host` header values the layer lets through (DNS-rebinding protection), each a host
    /// name or IP address with an optional `:port`. The default allows only loopback names
    /// (`localhost`, `127.0.0.1`, `::1`): list the public names when deploying.
    pub fn allowed_hosts<I, S>(mut self, hosts: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.allowed_hosts = Some(hosts.into_iter().map(Into::into).collect());
        self
    }

    /// Accept any `Host`. Only behind a proxy that validates `Host` itself.
    pub fn allow_any_host(mut self) -> Self {
        self.allowed_hosts = Some(Vec::new());
        self
    }

    /// Browser origins allowed to call (`scheme://host[:port]`, `scheme://host:*` or `null`);
    /// a request whose `Origin` is present and not listed is refused with `403`. Default: no
    /// `Origin` check.
    pub fn allowed_origins<I, S>(mut self, origins: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.allowed_origins = origins.into_iter().map(Into::into).collect();
        self
    }

    /// Where audit records go (default: `tracing` only, target `mcp_gatekeeper::audit`).
    pub fn audit(mut self, log: AuditLog) -> Self {
        self.audit = log;
        self
    }

    /// How invalid credentials from one address are slowed (default: past 10 failures in a
    /// minute, failures from the address are answered `429` for 5 minutes; a correct
    /// credential is always served). Counted by the client's address, which the layer reads
    /// from `ConnectInfo<SocketAddr>`: serve with
    /// `into_make_service_with_connect_info::<SocketAddr>()`, or nothing is counted.
    pub fn lockout(mut self, lockout: Lockout) -> Self {
        self.lockout = lockout;
        self
    }

    /// Counts the failures of [`lockout`](Self::lockout) in Redis, shared by every replica
    /// configured with the same Redis and prefix, as
    /// [`Gatekeeper::shared_lockout`](crate::Gatekeeper::shared_lockout) does.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn shared_lockout(mut self, lockout: crate::RedisLockout) -> Self {
        self.shared_lockout = Some(lockout);
        self
    }

    /// Keeps who owns which MCP session in Redis as well, shared by every replica configured
    /// with the same Redis and prefix, as
    /// [`Gatekeeper::shared_sessions`](crate::Gatekeeper::shared_sessions) does.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn shared_sessions(mut self, sessions: crate::RedisSessions) -> Self {
        self.shared_sessions = Some(sessions);
        self
    }

    /// Most event streams one caller may hold open at once (default: 64), as
    /// [`Gatekeeper::streams_per_caller`](crate::Gatekeeper::streams_per_caller) counts them:
    /// a `GET` over the limit is refused with `429 too_many_streams`. Zero fails the build.
    pub fn streams_per_caller(mut self, streams: u32) -> Self {
        self.streams_per_caller = streams;
        self
    }

    /// Which requests let through the audit trail records (default: all; see
    /// [`Gatekeeper::audit_successes`](crate::Gatekeeper::audit_successes)). Refusals are
    /// always recorded. [`AuditSuccesses::OneIn(0)`](crate::AuditSuccesses::OneIn) fails the
    /// build.
    pub fn audit_successes(mut self, successes: crate::AuditSuccesses) -> Self {
        self.audit_successes = successes;
        self
    }

    /// Names `resource`'s RFC 9728 metadata in every challenge (`resource_metadata`, and its
    /// scopes in the `401` for a missing credential), and answers an invalid or expired token
    /// `401 invalid_token` instead of `403`, since clients can then get a new one. Serve the
    /// metadata with [`GatekeeperLayer::metadata_routes`].
    pub fn protected_resource(mut self, resource: ProtectedResource) -> Self {
        self.resource = Some(resource);
        self
    }

    /// Counts what the layer decides in `metrics`, labelled `server="<server>"` (see
    /// [`metrics`](crate::metrics)); the handles are registered when the layer is built.
    #[cfg(feature = "metrics")]
    #[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
    pub fn metrics(
        mut self,
        metrics: &crate::metrics::PrometheusMetrics,
        server: impl AsRef<str>,
    ) -> Self {
        self.metrics = metrics.for_server(server.as_ref());
        self
    }

    /// Builds the layer.
    ///
    /// # Errors
    /// An allowed host or origin that does not parse, an authenticator whose configuration is
    /// unsafe (a JWT verifier that checks no audience), a protected resource naming no
    /// authorization server, Redis settings that cannot be used, a limit of zero streams.
    pub fn build(self) -> Result<GatekeeperLayer, ConfigError> {
        let failures = FailureThrottle::new(self.lockout);
        #[cfg(feature = "metrics")]
        let failures =
            failures.counting_lockouts(crate::metrics::lockouts(&self.metrics, "address"));
        #[cfg(feature = "redis")]
        let failures = failures.shared(
            self.shared_lockout
                .map(|lockout| lockout.build().map(Arc::new))
                .transpose()?,
        );
        #[cfg(feature = "redis")]
        let sessions = crate::http::sessions::SessionBindings::shared(
            self.shared_sessions
                .map(|sessions| sessions.build().map(Arc::new))
                .transpose()?,
        );
        #[cfg(not(feature = "redis"))]
        let sessions = crate::http::sessions::SessionBindings::default();
        for authenticator in &self.authenticators {
            authenticator.check_configuration()?;
        }
        let hosts = HostGuard::new(
            &self
                .allowed_hosts
                .unwrap_or_else(|| LOOPBACK_HOSTS.map(String::from).to_vec()),
            &self.allowed_origins,
        )?;
        let resource = self
            .resource
            .map(|resource| resource.with_servers_of(&self.authenticators));
        let challenge = match &resource {
            Some(resource) => {
                resource.check()?;
                Challenge::new(
                    Some(&resource.metadata_url()),
                    &resource.advertised_scopes(&[]),
                )
            }
            None => Challenge::default(),
        }
        .accepting(&self.authenticators);
        let context = crate::auth::ServerContext::new(None, &self.audit);
        for authenticator in &self.authenticators {
            authenticator.attach(&context);
        }
        #[cfg(feature = "metrics")]
        let metrics = crate::metrics::AuthMetrics::new(
            &self.metrics,
            self.authenticators.iter().map(|a| a.name()),
        );
        let state = AuthLayerState {
            hosts,
            chain: AuthChain::new(self.authenticators, self.allow_anonymous),
            audit: self.audit,
            failures: Arc::new(failures),
            sessions: Arc::new(sessions),
            challenge,
            streams: InFlight::new(in_flight::checked(
                "streams_per_caller",
                self.streams_per_caller,
            )?),
            successes: {
                self.audit_successes.check("audit_successes")?;
                Arc::new(crate::audit::SuccessSampler::new(self.audit_successes))
            },
            tools: None,
            #[cfg(feature = "metrics")]
            metrics,
        };
        Ok(GatekeeperLayer::from_state(state, resource))
    }
}

impl fmt::Debug for GatekeeperLayerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let authenticators: Vec<&str> = self.authenticators.iter().map(|a| a.name()).collect();
        f.debug_struct("GatekeeperLayerBuilder")
            .field("authenticators", &authenticators)
            .field("allow_anonymous", &self.allow_anonymous)
            .field("allowed_hosts", &self.allowed_hosts)
            .field("allowed_origins", &self.allowed_origins)
            .field("lockout", &self.lockout)
            .field("resource", &self.resource.as_ref().map(|r| r.resource()))
            .finish_non_exhaustive()
    }
}

/// The service [`GatekeeperLayer`] wraps around `S`: requests it lets through reach `S` with
/// their caller in the extensions; the others are answered here.
#[derive(Clone)]
pub struct GatekeeperMiddleware<S> {
    state: Arc<AuthLayerState>,
    inner: S,
}

impl<S> GatekeeperMiddleware<S> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The wrapped service, unwrapped.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: fmt::Debug> fmt::Debug for GatekeeperMiddleware<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GatekeeperMiddleware")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, B, R> Service<http::Request<B>> for GatekeeperMiddleware<S>
where
    S: Service<Request, Response = http::Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    R: http_body::Body<Data = Bytes> + Send + 'static,
    R::Error: Into<BoxError>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        // The service polled ready goes into the future; its clone stays for the next request.
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        let state = self.state.clone();
        // `Body::new` of an axum body is that body (no new box).
        let request = request.map(Body::new);
        ResponseFuture {
            inner: Box::pin(async move {
                authenticate_request(&state, request, |request| async move {
                    Ok(inner.call(request).await?.map(Body::new))
                })
                .await
            }),
        }
    }
}

/// The future of [`GatekeeperMiddleware`]'s responses.
pub struct ResponseFuture<E> {
    inner: BoxFuture<'static, Result<Response, E>>,
}

impl<E> Future for ResponseFuture<E> {
    type Output = Result<Response, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl<E> fmt::Debug for ResponseFuture<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
