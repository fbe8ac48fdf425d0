//! Prometheus metrics (feature `metrics`): what the gatekeeper decided, counted per server.
//!
//! Every handle a request touches is registered once, when the server is built, with the
//! recorder of the [`PrometheusMetrics`] given to [`Gatekeeper::metrics`](crate::Gatekeeper::metrics);
//! a request only increments a stored counter or records into a stored histogram. A server
//! built without metrics holds no-op handles.
//!
//! What is counted (every name starts with `mcp_gatekeeper_`, and every series carries a
//! `server` label: the server's name from [`Gatekeeper::server_info`](crate::Gatekeeper::server_info)
//! or the tools' declaration):
//!
//! | metric | labels |
//! |---|---|
//! | `authentications_total` | `method` (`api_key`, `jwt`, `oauth`, `oidc`, `mtls`, `anonymous`, `none`), `outcome` (`allowed`, `denied`, `throttled`, `unavailable`) |
//! | `authentication_seconds` (histogram) | `method` |
//! | `tool_calls_total` | `tool`, `outcome` (`allowed`, `denied`, `rate_limited`, `error`), `reason` |
//! | `tool_call_seconds` (histogram) | `tool` |
//! | `lockouts_total` | `kind` (`address`) |
//!
//! ```no_run
//! use mcp_gatekeeper::{ApiKeys, Gatekeeper, mcp_tools, metrics::PrometheusMetrics};
//!
//! struct Tools;
//!
//! #[mcp_tools]
//! impl Tools {
//!     /// Answers.
//!     #[mcp_tool(public)]
//!     fn ping(&self) -> &'static str {
//!         "pong"
//!     }
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let metrics = PrometheusMetrics::install()?;
//! // `/metrics` on a listener of its own, for Prometheus to scrape.
//! let scrape = metrics.bind("127.0.0.1:9100").await?;
//! println!("metrics on http://{}/metrics", scrape.local_addr());
//! Gatekeeper::new(Tools)
//!     .authenticate(ApiKeys::from_env("API_KEYS")?)
//!     .metrics(&metrics)
//!     .serve("127.0.0.1:8080")
//!     .await?;
//! # Ok(())
//! # }
//! ```

use std::{
    sync::{Arc, OnceLock},
    time::Duration,
};

use ::metrics::{Counter, Histogram, Key, Label, Metadata, Recorder};
use axum::{Router, http::header, response::IntoResponse, routing::get};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use tokio::net::{TcpListener, ToSocketAddrs};

use crate::{ConfigError, RunningServer, ServeError};

/// The upper bounds, in seconds, of the duration histograms' buckets: from a cached API key
/// check (well under a millisecond) to a slow identity provider or tool (tens of seconds).
const SECONDS_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0,
];

/// A Prometheus recorder and the means to render and serve what it holds.
///
/// Cheap to clone: clones share the recorder.
#[derive(Clone)]
pub struct PrometheusMetrics {
    recorder: Arc<PrometheusRecorder>,
    handle: PrometheusHandle,
}

impl std::fmt::Debug for PrometheusMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrometheusMetrics").finish_non_exhaustive()
    }
}

/// The one recorder a process installs globally (or why it could not).
static INSTALLED: OnceLock<Result<PrometheusMetrics, String>> = OnceLock::new();

impl PrometheusMetrics {
    /// Installs a Prometheus recorder as the process's global `metrics` recorder (so the
    /// application's own `metrics::counter!` and friends are rendered with the gatekeeper's),
    /// once: later calls return the same recorder.
    ///
    /// Fails when another global recorder was installed first; [`new`](Self::new) then still
    /// gives a recorder of the gatekeeper's own metrics.
    pub fn install() -> Result<Self, ConfigError> {
        INSTALLED
            .get_or_init(|| {
                let metrics = Self::new();
                ::metrics::set_global_recorder(metrics.recorder.clone())
                    .map(|()| metrics)
                    .map_err(|e| format!("cannot install the metrics recorder: {e}"))
            })
            .clone()
            .map_err(ConfigError::invalid)
    }

    /// The recorder [`install`](Self::install) made global, if it was called and succeeded:
    /// for code that counts only when the application asked for metrics.
    pub fn installed() -> Option<Self> {
        INSTALLED.get().and_then(|installed| installed.clone().ok())
    }

    /// A recorder of its own, not installed globally: it holds only what the servers given it
    /// count.
    pub fn new() -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&SECONDS_BUCKETS)
            // Only fails on an empty list of buckets.
            .unwrap_or_else(|_| PrometheusBuilder::new())
            .build_recorder();
        let handle = recorder.handle();
        Self {
            recorder: Arc::new(recorder),
            handle,
        }
    }

    /// Everything recorded so far, in the Prometheus text format.
    pub fn render(&self) -> String {
        self.handle.render()
    }

    /// A router answering `GET path` with [`render`](Self::render), to merge into an
    /// application (behind the gatekeeper's authentication with
    /// [`Gatekeeper::merge_authenticated`](crate::Gatekeeper::merge_authenticated)).
    pub fn router(&self, path: &str) -> Router {
        let handle = self.handle.clone();
        Router::new().route(
            path,
            get(move || {
                let text = handle.render();
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        text,
                    )
                        .into_response()
                }
            }),
        )
    }

    /// Serves `GET /metrics` on `addr`, a listener of its own, with the gatekeeper's accept
    /// loop (its default [`ConnectionLimits`](crate::ConnectionLimits)), until the returned
    /// server is shut down.
    pub async fn bind(&self, addr: impl ToSocketAddrs) -> Result<RunningServer, ServeError> {
        let listener = TcpListener::bind(addr).await.map_err(ServeError::Bind)?;
        RunningServer::serve_router(listener, self.router("/metrics"))
    }

    /// Serves `GET /metrics` on `addr` until the process ends (see [`bind`](Self::bind)).
    pub async fn serve(&self, addr: impl ToSocketAddrs) -> Result<(), ServeError> {
        self.bind(addr).await?.wait().await
    }

    /// The registrar of the handles of the server named `server`.
    pub(crate) fn for_server(&self, server: &str) -> Registrar {
        Registrar {
            recorder: Some(self.recorder.clone()),
            server: server.to_owned(),
        }
    }
}

impl Default for PrometheusMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Registers one server's handles with a recorder; without one, every handle is a no-op.
#[derive(Clone, Default)]
pub(crate) struct Registrar {
    recorder: Option<Arc<PrometheusRecorder>>,
    server: String,
}

/// The metadata every handle is registered with (the Prometheus recorder ignores it).
static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), ::metrics::Level::INFO, Some(module_path!()));

impl Registrar {
    fn key(&self, name: &'static str, labels: &[(&'static str, &'static str)]) -> Key {
        let labels = std::iter::once(Label::new("server", self.server.clone()))
            .chain(labels.iter().map(|(k, v)| Label::from_static_parts(k, v)))
            .collect::<Vec<_>>();
        Key::from_parts(name, labels)
    }

    pub(crate) fn counter(
        &self,
        name: &'static str,
        labels: &[(&'static str, &'static str)],
    ) -> Counter {
        match &self.recorder {
            Some(recorder) => recorder.register_counter(&self.key(name, labels), &METADATA),
            None => Counter::noop(),
        }
    }

    pub(crate) fn histogram(
        &self,
        name: &'static str,
        labels: &[(&'static str, &'static str)],
    ) -> Histogram {
        match &self.recorder {
            Some(recorder) => recorder.register_histogram(&self.key(name, labels), &METADATA),
            None => Histogram::noop(),
        }
    }
}

/// The counters of one way of authenticating (one `method` label).
#[derive(Clone)]
pub(crate) struct MethodCounts {
    method: &'static str,
    allowed: Counter,
    denied: Counter,
    throttled: Counter,
    unavailable: Counter,
    seconds: Histogram,
}

impl MethodCounts {
    fn new(registrar: &Registrar, method: &'static str) -> Self {
        let count = |outcome| {
            registrar.counter(
                "mcp_gatekeeper_authentications_total",
                &[("method", method), ("outcome", outcome)],
            )
        };
        Self {
            method,
            allowed: count("allowed"),
            denied: count("denied"),
            throttled: count("throttled"),
            unavailable: count("unavailable"),
            seconds: registrar.histogram(
                "mcp_gatekeeper_authentication_seconds",
                &[("method", method)],
            ),
        }
    }
}

/// How the authentication layer decided a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuthOutcome {
    Allowed,
    Denied,
    /// `429` from the failure throttle.
    Throttled,
    /// `503`: the credential could not be checked now.
    Unavailable,
}

/// The authentication layer's handles: one set per authenticator of the chain, one for
/// anonymous callers and one for requests no authenticator decided (`none`).
#[derive(Clone)]
pub(crate) struct AuthMetrics {
    methods: Arc<[MethodCounts]>,
}

impl Default for AuthMetrics {
    fn default() -> Self {
        Self::new(&Registrar::default(), std::iter::empty())
    }
}

impl AuthMetrics {
    /// The handles for `authenticators` (their names, in chain order; repeats are counted once).
    pub(crate) fn new(
        registrar: &Registrar,
        authenticators: impl Iterator<Item = &'static str>,
    ) -> Self {
        let mut names: Vec<&'static str> = vec![NO_METHOD, "anonymous"];
        for name in authenticators {
            if !names.contains(&name) {
                names.push(name);
            }
        }
        Self {
            methods: names
                .into_iter()
                .map(|name| MethodCounts::new(registrar, name))
                .collect(),
        }
    }

    /// Counts one decision of `method` (an authenticator's name, `anonymous`, or `None` when
    /// no authenticator decided) that took `elapsed`.
    pub(crate) fn record(&self, method: Option<&str>, outcome: AuthOutcome, elapsed: Duration) {
        let method = method.unwrap_or(NO_METHOD);
        // A handful of entries, built from the chain: a few short comparisons.
        let counts = self
            .methods
            .iter()
            .find(|m| m.method == method)
            .unwrap_or(&self.methods[0]);
        let counter = match outcome {
            AuthOutcome::Allowed => &counts.allowed,
            AuthOutcome::Denied => &counts.denied,
            AuthOutcome::Throttled => &counts.throttled,
            AuthOutcome::Unavailable => &counts.unavailable,
        };
        counter.increment(1);
        counts.seconds.record(elapsed.as_secs_f64());
    }
}

/// The `method` label of requests no authenticator decided (no credential, or one none knew).
const NO_METHOD: &str = "none";

/// Why a tool call was refused or how it ended, as the `tool_calls_total` labels say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallOutcome {
    Allowed,
    /// The handler answered with an error.
    Error,
    MissingRole,
    MissingScope,
    /// Refused by the HTTP layer's step-up, before the call reached the tool.
    InsufficientScope,
    RateLimited,
    RateLimitUnavailable,
    TooManyCalls,
}

impl CallOutcome {
    const ALL: [CallOutcome; 8] = [
        CallOutcome::Allowed,
        CallOutcome::Error,
        CallOutcome::MissingRole,
        CallOutcome::MissingScope,
        CallOutcome::InsufficientScope,
        CallOutcome::RateLimited,
        CallOutcome::RateLimitUnavailable,
        CallOutcome::TooManyCalls,
    ];

    /// The `outcome` and `reason` labels.
    fn labels(self) -> (&'static str, &'static str) {
        match self {
            CallOutcome::Allowed => ("allowed", ""),
            CallOutcome::Error => ("error", ""),
            CallOutcome::MissingRole => ("denied", "missing_role"),
            CallOutcome::MissingScope => ("denied", "missing_scope"),
            CallOutcome::InsufficientScope => ("denied", "insufficient_scope"),
            CallOutcome::RateLimited => ("rate_limited", "rate_limited"),
            CallOutcome::RateLimitUnavailable => ("rate_limited", "rate_limit_unavailable"),
            CallOutcome::TooManyCalls => ("rate_limited", "too_many_calls"),
        }
    }
}

/// One tool's handles: a counter per outcome and the handler's time.
pub(crate) struct ToolMetrics {
    calls: [Counter; CallOutcome::ALL.len()],
    seconds: Histogram,
}

impl Default for ToolMetrics {
    fn default() -> Self {
        Self::new(&Registrar::default(), "")
    }
}

impl ToolMetrics {
    pub(crate) fn new(registrar: &Registrar, tool: &'static str) -> Self {
        Self {
            calls: CallOutcome::ALL.map(|outcome| {
                let name = "mcp_gatekeeper_tool_calls_total";
                match outcome.labels() {
                    // Calls let through have no reason: no empty label.
                    (outcome, "") => {
                        registrar.counter(name, &[("tool", tool), ("outcome", outcome)])
                    }
                    (outcome, reason) => registrar.counter(
                        name,
                        &[("tool", tool), ("outcome", outcome), ("reason", reason)],
                    ),
                }
            }),
            seconds: registrar.histogram("mcp_gatekeeper_tool_call_seconds", &[("tool", tool)]),
        }
    }

    pub(crate) fn count(&self, outcome: CallOutcome) {
        self.calls[outcome as usize].increment(1);
    }

    /// Counts an allowed call whose handler took `elapsed` and answered `Ok` or not.
    pub(crate) fn handled(&self, succeeded: bool, elapsed: Duration) {
        self.count(CallOutcome::Allowed);
        if !succeeded {
            self.count(CallOutcome::Error);
        }
        self.seconds.record(elapsed.as_secs_f64());
    }
}

#[cfg(feature = "oauth")]
/// The grant types `oauth_grants_total` names; any other request is counted as `other`.
const GRANT_TYPES: [&str; 4] = [
    "authorization_code",
    "refresh_token",
    "client_credentials",
    "other",
];

#[cfg(feature = "oauth")]
/// The outcomes `oauth_grants_total` names: `issued`, or the OAuth error code (RFC 6749 §5.2,
/// RFC 8707, and this server's `slow_down` for a throttled client and
/// `temporarily_unavailable`); any other code is `other`.
const GRANT_OUTCOMES: [&str; 12] = [
    "issued",
    "invalid_request",
    "invalid_client",
    "invalid_grant",
    "unauthorized_client",
    "unsupported_grant_type",
    "invalid_scope",
    "invalid_target",
    "server_error",
    "slow_down",
    "temporarily_unavailable",
    "other",
];

#[cfg(feature = "oauth")]
/// The authorization server's `oauth_grants_total`, one counter per grant type and outcome.
#[derive(Clone)]
pub(crate) struct GrantMetrics {
    counters: Box<[Counter]>,
}

#[cfg(feature = "oauth")]
impl GrantMetrics {
    pub(crate) fn new(registrar: &Registrar) -> Self {
        let counters = GRANT_TYPES
            .iter()
            .flat_map(|grant| {
                GRANT_OUTCOMES.iter().map(move |outcome| {
                    registrar.counter(
                        "mcp_gatekeeper_oauth_grants_total",
                        &[("grant_type", grant), ("outcome", outcome)],
                    )
                })
            })
            .collect();
        Self { counters }
    }

    /// Counts a token request of `grant_type` (a known one, or `None`) that ended in `outcome`
    /// (`issued` or an error code).
    pub(crate) fn count(&self, grant_type: Option<&str>, outcome: &str) {
        let position = |names: &[&str], name: &str| {
            names
                .iter()
                .position(|n| *n == name)
                .unwrap_or(names.len() - 1)
        };
        let grant = position(&GRANT_TYPES, grant_type.unwrap_or("other"));
        let outcome = position(&GRANT_OUTCOMES, outcome);
        self.counters[grant * GRANT_OUTCOMES.len() + outcome].increment(1);
    }
}

/// The `lockouts_total` counter of `kind` (`address`, ...).
pub(crate) fn lockouts(registrar: &Registrar, kind: &'static str) -> Counter {
    registrar.counter("mcp_gatekeeper_lockouts_total", &[("kind", kind)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_count_under_their_labels() {
        let metrics = PrometheusMetrics::new();
        let registrar = metrics.for_server("unit");
        let auth = AuthMetrics::new(&registrar, ["api_key", "jwt", "api_key"].into_iter());
        auth.record(
            Some("api_key"),
            AuthOutcome::Allowed,
            Duration::from_millis(1),
        );
        auth.record(None, AuthOutcome::Denied, Duration::ZERO);
        auth.record(Some("unknown"), AuthOutcome::Throttled, Duration::ZERO);
        let tool = ToolMetrics::new(&registrar, "write");
        tool.count(CallOutcome::MissingRole);
        tool.handled(false, Duration::from_millis(2));
        let text = metrics.render();
        for line in [
            r#"mcp_gatekeeper_authentications_total{server="unit",method="api_key",outcome="allowed"} 1"#,
            r#"mcp_gatekeeper_authentications_total{server="unit",method="none",outcome="denied"} 1"#,
            r#"mcp_gatekeeper_authentications_total{server="unit",method="none",outcome="throttled"} 1"#,
            r#"mcp_gatekeeper_authentications_total{server="unit",method="jwt",outcome="allowed"} 0"#,
            r#"mcp_gatekeeper_tool_calls_total{server="unit",tool="write",outcome="denied",reason="missing_role"} 1"#,
            r#"mcp_gatekeeper_tool_calls_total{server="unit",tool="write",outcome="allowed"} 1"#,
            r#"mcp_gatekeeper_tool_calls_total{server="unit",tool="write",outcome="error"} 1"#,
            r#"mcp_gatekeeper_tool_call_seconds_count{server="unit",tool="write"} 1"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
    }

    #[test]
    fn without_a_recorder_handles_are_no_ops() {
        let tool = ToolMetrics::default();
        tool.handled(true, Duration::ZERO);
        AuthMetrics::default().record(Some("api_key"), AuthOutcome::Allowed, Duration::ZERO);
    }

    #[test]
    fn every_outcome_has_its_own_counter() {
        for (index, outcome) in CallOutcome::ALL.iter().enumerate() {
            assert_eq!(*outcome as usize, index);
        }
    }
}
