//! The MCP side of a server: the one place every tool call is authorized, rate-limited and
//! audited before the generated dispatch code runs the handler, and the per-caller `tools/list`.

use std::{collections::HashMap, net::SocketAddr, sync::Arc, time::Duration};

use axum::extract::ConnectInfo;
use http::request::Parts;
use rmcp::{
    ErrorData, RoleServer, ServerHandler,
    model::{
        CacheScope, CallToolRequestParams, CallToolResponse, ErrorCode, Implementation,
        ListToolsResult, PaginatedRequestParams, ProtocolVersion, ServerCapabilities, ServerConfig,
        Tool, ToolAnnotations,
    },
    service::RequestContext,
};
use serde_json::json;

use crate::{
    ConfigError, McpTools, Principal, Rate, ScopeHierarchy,
    audit::{AuditEvent, AuditLog, AuditRecord, AuditSuccesses, Outcome, SuccessSampler},
    principal::Authenticated,
    rate_limit::in_flight::{InFlight, InFlightKey, Permit},
    rate_limit::{ToolLimiter, retry_after_seconds},
    tools::{Roles, includes, role_index},
    tools::{ServerInfo, ToolCall, ToolDef},
};

/// JSON-RPC error codes of refusals. Application-defined (the JSON-RPC reserved range for
/// servers), stable across releases, and documented so clients can act on them.
pub mod codes {
    /// The request reached a tool without an authenticated principal (the server was mounted
    /// without the gatekeeper's HTTP layer). Fails closed.
    pub const UNAUTHENTICATED: i32 = -32001;
    /// The caller lacks the role or scopes the tool requires. `data.reason` is `missing_role`
    /// or `missing_scope`.
    pub const FORBIDDEN: i32 = -32003;
    /// The caller exceeded the tool's rate limit; `data.retryAfterSeconds` says when to retry.
    ///
    /// (It was -32029 before MCP 2026-07-28 reserved -32020 to -32099 for the protocol; every
    /// code here lies in -32000 to -32019, the JSON-RPC range for server errors that MCP leaves
    /// to implementations.)
    pub const RATE_LIMITED: i32 = -32005;
    /// The caller already has as many calls in flight as it may: of this tool
    /// (`#[mcp_tool(concurrency = N)]`, `data.scope` is `"tool"`) or of all tools together
    /// ([`Gatekeeper::calls_per_caller`](crate::Gatekeeper::calls_per_caller), `data.scope` is
    /// `"caller"`). `data.limit` is the limit; retry once a call has finished.
    pub const TOO_MANY_CALLS: i32 = -32006;
    /// The call was cancelled (`notifications/cancelled`) or its client disconnected before
    /// it finished; the tool's work was stopped. Clients that cancelled ignore the answer.
    pub const CANCELLED: i32 = -32007;
}

/// One tool, ready to serve.
struct ServedTool<T> {
    def: ToolDef<T>,
    listing: Tool,
    limiter: Option<ToolLimiter>,
    /// The calls of this tool each caller has in flight (`concurrency = N`).
    in_flight: Option<Arc<InFlight>>,
    /// Which of its successful calls are audited.
    successes: SuccessSampler,
    /// For each scope the tool requires (in `def.scopes` order), the scopes that satisfy it:
    /// itself, then every scope the hierarchy says includes it. Computed once, so a check is a
    /// few binary searches in the principal's sorted scopes.
    satisfied_by: Box<[Box<[Box<str>]>]>,
    /// Its calls, counted per outcome (no-ops until [`Engine::count_in`]).
    #[cfg(feature = "metrics")]
    metrics: crate::metrics::ToolMetrics,
    /// The name of its calls' spans, `tools/call {name}`.
    #[cfg(feature = "otel")]
    span_name: Box<str>,
}

impl<T> ServedTool<T> {
    /// The required scopes the principal holds no scope for.
    fn missing_scopes<'p>(
        &self,
        principal: &'p Principal,
    ) -> impl Iterator<Item = &'static str> + use<'_, 'p, T> {
        self.def
            .scopes
            .iter()
            .zip(self.satisfied_by.iter())
            .filter(|(_, accepted)| !accepted.iter().any(|s| principal.has_scope(s)))
            .map(|(required, _)| *required)
    }
}

/// Everything the handler needs, built once per server.
pub(crate) struct Engine<T: McpTools> {
    tools: Box<[ServedTool<T>]>,
    by_name: HashMap<&'static str, usize>,
    /// Every scope some tool requires, sorted, without duplicates.
    scopes: Vec<&'static str>,
    audit: AuditLog,
    info: ServerConfig,
    hide_forbidden: bool,
    /// The calls each caller has in flight, all tools together.
    calls: Arc<InFlight>,
    /// Starts the periodic forgetting of idle callers at the first tool call: always inside a
    /// runtime, whether or not the router was built inside one.
    housekeeping: std::sync::Once,
    /// Rate limits shared with other replicas; `None`: each tool's own limiter decides.
    #[cfg(feature = "redis")]
    shared_limits: Option<Arc<crate::rate_limit::redis::SharedLimits>>,
}

impl<T: McpTools> Engine<T> {
    pub(crate) fn new(
        info: ServerInfo,
        audit: AuditLog,
        hide_forbidden: bool,
        hierarchy: &ScopeHierarchy,
        calls_per_caller: u32,
        successes: &AuditPolicy,
    ) -> Result<Self, ConfigError> {
        let mut tools = Vec::new();
        let mut by_name = HashMap::new();
        for def in T::__tool_defs() {
            let mut served = serve_tool(def, hierarchy)?;
            served.successes = SuccessSampler::new(successes.of(served.def.name));
            if by_name.insert(served.def.name, tools.len()).is_some() {
                return Err(ConfigError::Tool {
                    tool: served.def.name.into(),
                    message: "declared twice".into(),
                });
            }
            tools.push(served);
        }
        successes.check(&by_name)?;
        let mut scopes: Vec<&'static str> = tools
            .iter()
            .flat_map(|t| t.def.scopes.iter().copied())
            .collect();
        scopes.sort_unstable();
        scopes.dedup();
        let mut server = Implementation::new(info.name, info.version);
        server.title = None;
        let mut config = ServerConfig::new(ServerCapabilities::builder().enable_tools().build());
        config.server_info = server;
        config.instructions = info.instructions.map(Into::into);
        Ok(Self {
            tools: tools.into(),
            by_name,
            scopes,
            audit,
            info: config,
            hide_forbidden,
            calls: InFlight::new(calls_per_caller),
            housekeeping: std::sync::Once::new(),
            #[cfg(feature = "redis")]
            shared_limits: None,
        })
    }

    /// Counts rate-limited calls in `limits` (shared with other replicas) from now on.
    #[cfg(feature = "redis")]
    pub(crate) fn share_limits(&mut self, limits: Arc<crate::rate_limit::redis::SharedLimits>) {
        self.shared_limits = Some(limits);
    }

    /// Counts every tool's calls with handles registered by `registrar`.
    #[cfg(feature = "metrics")]
    pub(crate) fn count_in(&mut self, registrar: &crate::metrics::Registrar) {
        for tool in self.tools.iter_mut() {
            tool.metrics = crate::metrics::ToolMetrics::new(registrar, tool.def.name);
        }
    }

    /// Counts a call of `tool` by `principal` in the tool's limiter (or the shared limits);
    /// `Ok(true)` when the call passed in the local limiter because Redis was unavailable.
    async fn count(&self, tool: &ServedTool<T>, principal: &Principal) -> Result<bool, Denial> {
        let Some(limiter) = &tool.limiter else {
            return Ok(false);
        };
        #[cfg(feature = "redis")]
        if let Some(shared) = &self.shared_limits {
            use crate::rate_limit::redis::Verdict;
            return match shared.check(tool.def.name, principal, limiter).await {
                Verdict::Passed => Ok(false),
                Verdict::PassedLocally => Ok(true),
                Verdict::Limited(wait) => Err(Denial::RateLimited {
                    wait,
                    rate: limiter.rate(),
                }),
                Verdict::Unavailable => Err(Denial::RateLimitUnavailable),
            };
        }
        limiter
            .check(principal.caller_id())
            .map(|()| false)
            .map_err(|wait| Denial::RateLimited {
                wait,
                rate: limiter.rate(),
            })
    }

    /// Takes a place for one more call of `tool` by `key`: in the caller's calls of all tools,
    /// then in its calls of this tool.
    fn admit(
        &self,
        tool: &ServedTool<T>,
        key: InFlightKey,
    ) -> Result<(Permit, Option<Permit>), Denial> {
        let all = self.calls.try_acquire(key).ok_or(Denial::TooManyCalls {
            limit: self.calls.limit(),
            of_tool: false,
        })?;
        let this = match &tool.in_flight {
            None => None,
            Some(counts) => Some(counts.try_acquire(key).ok_or(Denial::TooManyCalls {
                limit: counts.limit(),
                of_tool: true,
            })?),
        };
        Ok((all, this))
    }

    /// Starts the housekeeping task once (it ends with the engine: it holds a weak reference).
    fn start_housekeeping(self: &Arc<Self>) {
        self.housekeeping.call_once(|| {
            let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                return;
            };
            let engine = Arc::downgrade(self);
            runtime.spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(60));
                tick.tick().await;
                loop {
                    tick.tick().await;
                    match engine.upgrade() {
                        Some(engine) => engine.forget_idle_callers(),
                        None => return,
                    }
                }
            });
        });
    }

    /// Periodic housekeeping: forget callers that are idle in every limiter.
    pub(crate) fn forget_idle_callers(&self) {
        for tool in self.tools.iter() {
            if let Some(limiter) = &tool.limiter {
                limiter.forget_idle_callers();
            }
        }
    }

    fn lookup(&self, name: &str) -> Option<&ServedTool<T>> {
        self.by_name.get(name).map(|&i| &self.tools[i])
    }

    fn may_call(&self, tool: &ServedTool<T>, principal: &Principal) -> Result<(), Denial> {
        let def = &tool.def;
        if def.public {
            return Ok(());
        }
        if let Some(required) = def.role {
            let held = principal
                .roles()
                .filter_map(role_index::<T::Roles>)
                .any(|held| includes::<T::Roles>(held, required));
            if !held {
                return Err(Denial::MissingRole {
                    required: <T::Roles as Roles>::NAMES[required],
                });
            }
        }
        if tool.missing_scopes(principal).next().is_some() {
            return Err(Denial::MissingScopes {
                required: def.scopes,
                missing: tool.missing_scopes(principal).collect(),
            });
        }
        Ok(())
    }

    pub(crate) fn list_for(&self, principal: &Principal) -> Vec<Tool> {
        let mut listed = Vec::with_capacity(self.tools.len());
        listed.extend(
            self.tools
                .iter()
                .filter(|tool| self.may_call(tool, principal).is_ok())
                .map(|tool| tool.listing.clone()),
        );
        listed
    }
}

/// Which successful calls each tool audits: a server-wide policy and the tools that differ.
#[derive(Debug, Clone, Default)]
pub(crate) struct AuditPolicy {
    pub(crate) default: AuditSuccesses,
    pub(crate) per_tool: Vec<(String, AuditSuccesses)>,
}

impl AuditPolicy {
    fn of(&self, tool: &str) -> AuditSuccesses {
        // The last setting for a tool wins, as with any builder setter called twice.
        self.per_tool
            .iter()
            .rev()
            .find(|(name, _)| name == tool)
            .map_or(self.default, |(_, policy)| *policy)
    }

    /// Refuses a policy that samples nothing, and one naming a tool the server does not have.
    fn check(&self, tools: &HashMap<&'static str, usize>) -> Result<(), ConfigError> {
        self.default.check("audit_successes")?;
        for (tool, policy) in &self.per_tool {
            policy.check(&format!("audit_successes_of(\"{tool}\")"))?;
            if !tools.contains_key(tool.as_str()) {
                let mut known: Vec<&str> = tools.keys().copied().collect();
                known.sort_unstable();
                return Err(ConfigError::invalid(format!(
                    "audit_successes_of(\"{tool}\"): no tool is named `{tool}` (the tools: {})",
                    known.join(", ")
                )));
            }
        }
        Ok(())
    }
}

/// What the HTTP layer asks before rmcp runs, to answer a missing scope with a real
/// `403 insufficient_scope` the client can act on (step-up authorization).
pub(crate) trait ScopeOracle: Send + Sync + 'static {
    /// Every scope some tool requires.
    fn declared_scopes(&self) -> &[&'static str];

    /// The scopes tool `name` requires, if the principal lacks some of them *and* holds the
    /// tool's role (re-authorizing with more scopes cannot grant a role). `None` otherwise,
    /// including for unknown tools.
    fn step_up(&self, name: &str, principal: &Principal) -> Option<&'static [&'static str]>;

    /// Counts a call of tool `name` the layer refused for insufficient scope (unknown tools
    /// are not counted).
    #[cfg(feature = "metrics")]
    fn count_insufficient_scope(&self, name: &str);
}

impl<T: McpTools> ScopeOracle for Engine<T> {
    fn declared_scopes(&self) -> &[&'static str] {
        &self.scopes
    }

    fn step_up(&self, name: &str, principal: &Principal) -> Option<&'static [&'static str]> {
        match self.may_call(self.lookup(name)?, principal) {
            Err(Denial::MissingScopes { required, .. }) => Some(required),
            _ => None,
        }
    }

    #[cfg(feature = "metrics")]
    fn count_insufficient_scope(&self, name: &str) {
        if let Some(tool) = self.lookup(name) {
            let outcome = crate::metrics::CallOutcome::InsufficientScope;
            tool.metrics.count(outcome);
        }
    }
}

/// Builds the listing, limiter and scope sets of one tool, refusing a tool that cannot be served.
fn serve_tool<T>(
    def: ToolDef<T>,
    hierarchy: &ScopeHierarchy,
) -> Result<ServedTool<T>, ConfigError> {
    let tool_error = |message: String| ConfigError::Tool {
        tool: def.name.into(),
        message,
    };
    let input_schema = (def.input_schema)().map_err(tool_error)?;
    let mut listing = Tool::new_with_raw(def.name, def.description.map(Into::into), input_schema);
    if let Some(output) = (def.output_schema)() {
        listing = listing.with_raw_output_schema(output);
    }
    if let Some(title) = def.title {
        listing = listing.with_title(title);
    }
    let hints = def.hints;
    if hints != Default::default() || def.title.is_some() {
        listing = listing.with_annotations(ToolAnnotations::from_raw(
            def.title.map(Into::into),
            hints.read_only,
            hints.destructive,
            hints.idempotent,
            hints.open_world,
        ));
    }
    let limiter = match def.rate {
        None => None,
        Some(rate) => Some(
            ToolLimiter::new(rate)
                .ok_or_else(|| tool_error(format!("rate {rate} cannot be enforced")))?,
        ),
    };
    let in_flight = def.concurrency.map(InFlight::new);
    let satisfied_by = def
        .scopes
        .iter()
        .map(|scope| {
            std::iter::once((*scope).into())
                .chain(hierarchy.broader_than(scope).into_iter().map(Into::into))
                .collect()
        })
        .collect();
    #[cfg(feature = "otel")]
    let span_name = format!("tools/call {}", def.name).into();
    Ok(ServedTool {
        def,
        listing,
        limiter,
        in_flight,
        successes: SuccessSampler::new(AuditSuccesses::All),
        satisfied_by,
        #[cfg(feature = "metrics")]
        metrics: Default::default(),
        #[cfg(feature = "otel")]
        span_name,
    })
}

/// When a client should retry a call refused because the shared rate limit could not be
/// checked: soon, the connection to Redis is re-established in the background.
const UNAVAILABLE_RETRY_SECONDS: u64 = 1;

/// Why a call was refused.
enum Denial {
    MissingRole {
        required: &'static str,
    },
    MissingScopes {
        required: &'static [&'static str],
        missing: Vec<&'static str>,
    },
    RateLimited {
        wait: Duration,
        rate: Rate,
    },
    /// The shared rate limit could not be checked, and the policy is to refuse.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    RateLimitUnavailable,
    /// The caller has `limit` calls in flight already: of this tool (`of_tool`) or of all.
    TooManyCalls {
        limit: u32,
        of_tool: bool,
    },
}

impl Denial {
    fn reason(&self) -> &'static str {
        match self {
            Denial::MissingRole { .. } => "missing_role",
            Denial::MissingScopes { .. } => "missing_scope",
            Denial::RateLimited { .. } => "rate_limited",
            Denial::RateLimitUnavailable => "rate_limit_unavailable",
            Denial::TooManyCalls { .. } => "too_many_calls",
        }
    }

    /// The `tool_calls_total` series this refusal is counted in.
    #[cfg(feature = "metrics")]
    fn counted_as(&self) -> crate::metrics::CallOutcome {
        use crate::metrics::CallOutcome;
        match self {
            Denial::MissingRole { .. } => CallOutcome::MissingRole,
            Denial::MissingScopes { .. } => CallOutcome::MissingScope,
            Denial::RateLimited { .. } => CallOutcome::RateLimited,
            Denial::RateLimitUnavailable => CallOutcome::RateLimitUnavailable,
            Denial::TooManyCalls { .. } => CallOutcome::TooManyCalls,
        }
    }

    fn into_error(self, tool: &str) -> ErrorData {
        match self {
            Denial::MissingRole { required } => ErrorData::new(
                ErrorCode(codes::FORBIDDEN),
                format!("forbidden: tool `{tool}` requires role `{required}`"),
                Some(json!({ "reason": "missing_role", "tool": tool, "requiredRole": required })),
            ),
            Denial::MissingScopes { required, missing } => ErrorData::new(
                ErrorCode(codes::FORBIDDEN),
                format!(
                    "forbidden: tool `{tool}` requires scope{} {}",
                    if missing.len() == 1 { "" } else { "s" },
                    missing
                        .iter()
                        .map(|s| format!("`{s}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                Some(json!({
                    "reason": "missing_scope",
                    "tool": tool,
                    "requiredScopes": required,
                    "missingScopes": missing,
                })),
            ),
            Denial::RateLimited { wait, rate } => {
                let seconds = retry_after_seconds(wait);
                ErrorData::new(
                    ErrorCode(codes::RATE_LIMITED),
                    format!(
                        "rate limit exceeded: tool `{tool}` allows {rate} per caller; retry in {seconds} s"
                    ),
                    Some(json!({
                        "reason": "rate_limited",
                        "tool": tool,
                        "limit": rate.to_string(),
                        "retryAfterSeconds": seconds,
                    })),
                )
            }
            // The rate-limited code, so that clients back off and retry as they do when over
            // the limit; the reason tells operators and clients that the limiter failed.
            Denial::RateLimitUnavailable => ErrorData::new(
                ErrorCode(codes::RATE_LIMITED),
                format!(
                    "rate limit unavailable: the shared limit of tool `{tool}` cannot be checked \
                     right now; retry in {UNAVAILABLE_RETRY_SECONDS} s"
                ),
                Some(json!({
                    "reason": "rate_limit_unavailable",
                    "tool": tool,
                    "retryAfterSeconds": UNAVAILABLE_RETRY_SECONDS,
                })),
            ),
            Denial::TooManyCalls { limit, of_tool } => {
                let (scope, of_what) = if of_tool {
                    ("tool", format!("of tool `{tool}`"))
                } else {
                    ("caller", "of all tools".to_owned())
                };
                ErrorData::new(
                    ErrorCode(codes::TOO_MANY_CALLS),
                    format!(
                        "too many calls in flight: a caller may have {limit} call{} {of_what} \
                         running at once; retry when one has finished",
                        if limit == 1 { "" } else { "s" }
                    ),
                    Some(json!({
                        "reason": "too_many_calls",
                        "tool": tool,
                        "scope": scope,
                        "limit": limit,
                    })),
                )
            }
        }
    }
}

pub(crate) fn principal_of(context: &RequestContext<RoleServer>) -> Option<&Arc<Principal>> {
    authenticated(context).map(|a| &a.principal)
}

/// Tells the HTTP layer that this request's tool call has its audit record.
fn mark_audited(context: &RequestContext<RoleServer>) {
    if let Some(authenticated) = authenticated(context) {
        authenticated.mark_tool_call_audited();
    }
}

/// What the HTTP layer recorded about the request (absent when the service runs without it).
fn authenticated(context: &RequestContext<RoleServer>) -> Option<&Authenticated> {
    context
        .extensions
        .get::<Parts>()?
        .extensions
        .get::<Arc<Authenticated>>()
        .map(Arc::as_ref)
}

/// The request's [`Authenticated`] record, to wait for its client to go away.
fn authenticated_arc(context: &RequestContext<RoleServer>) -> Option<Arc<Authenticated>> {
    context
        .extensions
        .get::<Parts>()?
        .extensions
        .get::<Arc<Authenticated>>()
        .cloned()
}

/// Completes when the client of `authenticated` disconnects; never without one.
async fn gone(authenticated: Option<&Authenticated>) {
    match authenticated {
        Some(authenticated) => authenticated.disconnected().await,
        None => std::future::pending().await,
    }
}

/// The answer to a call stopped before it finished (`why`: `cancelled`, `disconnected`); no
/// client reads it, but rmcp sends one.
fn stopped(tool: &str, why: &'static str) -> ErrorData {
    tracing::debug!(tool, why, "tool call stopped before it finished");
    ErrorData::new(
        ErrorCode(codes::CANCELLED),
        format!("the call of tool `{tool}` was stopped: {why}"),
        Some(json!({ "reason": why, "tool": tool })),
    )
}

pub(crate) fn remote_addr_of(context: &RequestContext<RoleServer>) -> Option<SocketAddr> {
    context
        .extensions
        .get::<Parts>()?
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
}

/// Whether a handler's answer is a success: neither a JSON-RPC error nor a tool result
/// flagged `isError`.
#[cfg(any(feature = "metrics", feature = "otel"))]
pub(crate) fn succeeded(result: &Result<CallToolResponse, ErrorData>) -> bool {
    match result {
        Ok(CallToolResponse::Complete(result)) => result.is_error != Some(true),
        Ok(_) => true,
        Err(_) => false,
    }
}

fn tool_not_found() -> ErrorData {
    ErrorData::invalid_params("tool not found", None)
}

/// The `rmcp` server handler of a gatekeeper: one per session (stateful) or request
/// (stateless), sharing the tools and the engine.
pub struct GatekeeperService<T: McpTools> {
    tools: Arc<T>,
    engine: Arc<Engine<T>>,
}

impl<T: McpTools> Clone for GatekeeperService<T> {
    fn clone(&self) -> Self {
        Self {
            tools: self.tools.clone(),
            engine: self.engine.clone(),
        }
    }
}

impl<T: McpTools> GatekeeperService<T> {
    pub(crate) fn new(tools: Arc<T>, engine: Arc<Engine<T>>) -> Self {
        Self { tools, engine }
    }

    /// A call of `tool` (the tool `request` names, looked up by the caller: `None` if there is
    /// none), in `span` with the `otel` feature.
    async fn guarded_call(
        &self,
        tool: Option<&ServedTool<T>>,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
        #[cfg(feature = "otel")] span: &tracing::Span,
    ) -> Result<CallToolResponse, ErrorData> {
        self.engine.start_housekeeping();
        let engine = &*self.engine;
        let remote_addr = remote_addr_of(&context);
        let Some(principal) = principal_of(&context).cloned() else {
            let mut record = AuditRecord::new(AuditEvent::ToolCall, Outcome::Denied);
            record.reason = Some("unauthenticated");
            record.tool = Some(&request.name);
            record.remote_addr = remote_addr;
            engine.audit.record(&record);
            return Err(ErrorData::new(
                ErrorCode(codes::UNAUTHENTICATED),
                "unauthenticated: this server must be mounted behind the gatekeeper's authentication layer",
                None,
            ));
        };
        let Some(tool) = tool else {
            #[cfg(feature = "otel")]
            crate::otel::decided(span, "tool_not_found");
            return Err(tool_not_found());
        };
        let name = tool.def.name;
        // The rate limit first, then a place in flight: a place is held by the work only, not
        // while the rate is checked (in Redis, a round trip), so that a burst the rate limit
        // refuses is told so rather than that too many calls are in flight.
        let mut permits = None;
        let decision = match engine.may_call(tool, &principal) {
            Ok(()) => match engine.count(tool, &principal).await {
                Ok(locally) => engine
                    .admit(
                        tool,
                        InFlightKey::of(&principal, remote_addr.map(|a| a.ip())),
                    )
                    .map(|held| {
                        permits = Some(held);
                        locally
                    }),
                Err(denial) => Err(denial),
            },
            Err(denial) => Err(denial),
        };
        let mut record =
            AuditRecord::new(AuditEvent::ToolCall, Outcome::Allowed).principal(&principal);
        record.tool = Some(name);
        record.remote_addr = remote_addr;
        let decision = decision.map(|locally| {
            if locally {
                record.reason = Some("rate_limit_local");
            }
        });
        if let Err(denial) = decision {
            record.outcome = match denial {
                Denial::RateLimited { wait, .. } => {
                    record.retry_after_seconds = Some(retry_after_seconds(wait));
                    Outcome::RateLimited
                }
                Denial::RateLimitUnavailable => {
                    record.retry_after_seconds = Some(UNAVAILABLE_RETRY_SECONDS);
                    Outcome::RateLimited
                }
                Denial::TooManyCalls { .. } => Outcome::RateLimited,
                _ => Outcome::Denied,
            };
            record.reason = Some(denial.reason());
            engine.audit.record(&record);
            mark_audited(&context);
            #[cfg(feature = "otel")]
            crate::otel::decided(span, denial.reason());
            #[cfg(feature = "metrics")]
            tool.metrics.count(denial.counted_as());
            let hidden = engine.hide_forbidden
                && matches!(
                    denial,
                    Denial::MissingRole { .. } | Denial::MissingScopes { .. }
                );
            return Err(if hidden {
                tool_not_found()
            } else {
                denial.into_error(name)
            });
        }
        // A success is written as sampled, unless it says something (the rate limit was
        // checked locally because Redis was unavailable).
        if record.reason.is_some() || tool.successes.take() {
            engine.audit.record(&record);
        }
        mark_audited(&context);
        #[cfg(feature = "otel")]
        crate::otel::decided(span, "allowed");
        let cancelled = context.ct.clone();
        let client = authenticated_arc(&context);
        let call = ToolCall {
            principal: &principal,
            arguments: request.arguments,
            context,
        };
        let call = (tool.def.call)(&self.tools, call);
        #[cfg(feature = "metrics")]
        let started = std::time::Instant::now();
        // The call holds its places until it ends, whichever way: rmcp only flags a cancelled
        // request (and a disconnected client of a session not at all), so a tool that never
        // looks would run on, holding them. Dropping the call stops its work at its next
        // `.await`. A call that finishes at once never polls the other branches.
        let result = tokio::select! {
            biased;
            result = call => result,
            () = cancelled.cancelled() => Err(stopped(name, "cancelled")),
            () = gone(client.as_deref()) => Err(stopped(name, "disconnected")),
        };
        drop(permits);
        #[cfg(feature = "metrics")]
        tool.metrics.handled(succeeded(&result), started.elapsed());
        result
    }
}

impl<T: McpTools> ServerHandler for GatekeeperService<T> {
    fn get_info(&self) -> ServerConfig {
        self.engine.info.clone()
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let tool = self.engine.lookup(&request.name);
        #[cfg(feature = "otel")]
        {
            use tracing::Instrument as _;
            let span = crate::otel::tool_call(
                &context,
                tool.map(|tool| (tool.def.name, &*tool.span_name)),
            );
            let result = self
                .guarded_call(tool, request, context, &span)
                .instrument(span.clone())
                .await;
            crate::otel::ended(&span, &result);
            result
        }
        #[cfg(not(feature = "otel"))]
        self.guarded_call(tool, request, context).await
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        #[cfg(feature = "otel")]
        let span = crate::otel::tools_list(&context);
        #[cfg(feature = "otel")]
        let _entered = span.enter();
        let tools = match principal_of(&context) {
            Some(principal) => self.engine.list_for(principal),
            None => Vec::new(),
        };
        let mut result = ListToolsResult::with_all_items(tools);
        // The list depends on who asks: no shared cache may serve it to anyone else.
        if context
            .protocol_version()
            .is_some_and(|v| v >= ProtocolVersion::V_2026_07_28)
        {
            result.ttl_ms = Some(0);
            result.cache_scope = Some(CacheScope::Private);
        }
        Ok(result)
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.engine.lookup(name).map(|t| t.listing.clone())
    }
}
