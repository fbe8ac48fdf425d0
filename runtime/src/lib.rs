#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

// The request path, top-down: `http` (accept loop → endpoint → host guard → authenticate),
// `auth` (credentials → principal), `tools` (guard → rate limit → audit → handler); the OAuth
// authorization server and its store in `oauth`; the audit trail in `audit`; the connection to
// Redis of the state replicas share in `redis_link`.
mod audit;
pub mod auth;
mod error;
mod http;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
#[cfg(feature = "oauth")]
#[cfg_attr(docsrs, doc(cfg(feature = "oauth")))]
pub mod oauth;
#[cfg(feature = "otel")]
#[cfg_attr(docsrs, doc(cfg(feature = "otel")))]
pub mod otel;
mod principal;
mod rate_limit;
#[cfg(feature = "redis")]
mod redis_link;
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub mod tls;
mod tools;

pub use audit::{AUDIT_TARGET, AuditEvent, AuditLog, AuditRecord, AuditSuccesses, Outcome};
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use auth::lockout::redis::RedisLockout;
#[cfg(all(feature = "redis", feature = "jwt"))]
#[cfg_attr(docsrs, doc(cfg(all(feature = "redis", feature = "jwt"))))]
pub use auth::revoked::redis::RedisRevocations;
pub use auth::{ApiKey, ApiKeyFile, ApiKeys, Lockout, ProtectedResource};
#[cfg(feature = "jwt")]
#[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
pub use auth::{
    Jwt, JwtAlgorithm, token_endpoint,
    token_endpoint::{TokenClient, TokenEndpoint},
};
pub use error::ConfigError;
#[cfg(feature = "mtls")]
#[cfg_attr(docsrs, doc(cfg(feature = "mtls")))]
pub use http::ForwardedCertificate;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use http::RedisSessions;
pub use http::{
    ConnectionLimits, Gatekeeper, GatekeeperLayer, MissingPrincipal, PeerAddr, RunningServer,
    ServeError, SessionLimits, health, layer, shutdown_signal,
};
#[cfg(feature = "oauth")]
#[cfg_attr(docsrs, doc(cfg(feature = "oauth")))]
pub use oauth::store;
pub use principal::{AuthMethod, CallerId, Principal, PrincipalBuilder};
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use rate_limit::redis::{FailurePolicy, RedisRateLimiter};
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub use tls::Tls;
pub use tools::{
    Args, Caller, FromToolCall, GatekeeperService, Granted, Guard, Includes, IntoToolError,
    IntoToolResult, Json, McpTools, NoRoleGuard, NoRoles, Rate, Rejection, RoleMarker, Roles,
    ScopeHierarchy, ServerInfo, ToolError, ToolHints, codes,
};

/// Declares the tools of an impl block: `#[mcp_tools]` or `#[mcp_tools(roles = Role)]`.
///
/// Every method marked [`#[mcp_tool(...)]`](macro@mcp_tool) becomes a tool; other methods stay
/// ordinary methods. The doc comment of the impl block becomes the server's instructions. The
/// type can then be served with [`Gatekeeper`].
///
/// # Grammar
///
/// ```text
/// #[mcp_tools]                      tools guarded by scopes or public only
/// #[mcp_tools(roles = PATH)]        PATH names an enum with #[derive(Roles)] in this crate
/// #[mcp_tools(crate = "PATH", ...)] the generated code names mcp-gatekeeper through PATH
///                                   (for crates that re-export it; default ::mcp_gatekeeper)
/// ```
///
/// # Expansion
///
/// The impl block is kept as written (minus the `#[mcp_tool]` attributes), and an
/// `impl McpTools for T` is added inside a `const _: () = { ... };` block, which takes its tool
/// table from a hidden `ToolTable` implementation: one entry per tool (name, description,
/// access rule, rate, input and output schema) and one generated function per tool that
/// extracts its parameters and converts its result. When the macro reports an error, an empty
/// table is generated instead, so the error is the only one (no cascade at the places that
/// use the tools). The table is built
/// once per server; the role, scope and rate checks run in the runtime before the generated
/// function is called. With `MCP_GATEKEEPER_MACROS_DEBUG=1` set, the expansion is printed to
/// stderr.
///
/// # Errors
///
/// Every problem of every tool in the block is reported in one build, at the offending token,
/// and the impl block is kept so no "method not found" errors follow. For example, a role the
/// enum does not declare:
///
/// ```compile_fail
/// use mcp_gatekeeper::prelude::*;
/// #[derive(Roles)]
/// enum Role { Viewer, Admin }
/// struct Tools;
/// #[mcp_tools(roles = Role)]
/// impl Tools {
///     /// Delete everything.
///     #[mcp_tool(role = "admn")] // error: unknown role `admn` for `Role`, did you mean `admin`?
///     fn wipe(&self) -> &'static str { "done" }
/// }
/// ```
pub use mcp_gatekeeper_macros::mcp_tools;

/// Marks a method of an [`#[mcp_tools]`](macro@mcp_tools) impl block as a tool and declares
/// who may call it and how often.
///
/// # Grammar
///
/// ```text
/// #[mcp_tool(ARG, ...)]
/// ARG := role = "NAME"                       a role of the roles enum (or one including it)
///      | scope = "SCOPE [SCOPE ...]"         OAuth scope tokens the credential must carry (repeatable)
///      | public                              no role or scope required
///      | rate = N                            N calls per minute per caller
///      | rate = "N/s" | "N/min" | "N/h" | "N/day"
///      | concurrency = N                     at most N calls of the tool in flight per caller
///      | name = "TOOL-NAME"                  1 to 64 of [A-Za-z0-9_.-]; default: the method name
///      | title = "TEXT"
///      | read_only | destructive | idempotent | open_world   (each also `= true|false`)
/// ```
///
/// At least one of `role`, `scope` and `public` is required: tools are denied by default.
///
/// ```compile_fail
/// use mcp_gatekeeper::prelude::*;
/// struct Tools;
/// #[mcp_tools]
/// impl Tools {
///     /// Who may call this?
///     #[mcp_tool(rate = 10)] // error: tool `ping` declares no access rule
///     fn ping(&self) -> &'static str { "pong" }
/// }
/// ```
///
/// # Typing requirements
///
/// - The method takes `&self`, may be `async`, and is not generic.
/// - Each parameter is a JSON argument named like the parameter (`Deserialize + JsonSchema`;
///   `Option<T>` parameters are optional), or all arguments as one [`Args<T>`] (a struct), or an
///   extractor: [`Caller<R>`], [`Granted<M>`], [`CancellationToken`], or any
///   [`FromToolCall`] type marked `#[extract]`. Describe arguments in a `# Arguments` section of
///   the doc comment (`` * `name` - text ``) or with `#[arg(description = "...")]`.
/// - A handler may take `Granted<M>` only if its guard grants `M`:
///
/// ```compile_fail,E0277
/// use mcp_gatekeeper::prelude::*;
/// #[derive(Roles)]
/// enum Role { Viewer, Admin }
/// struct Tools;
/// #[mcp_tools(roles = Role)]
/// impl Tools {
///     /// Viewers may call this, so it cannot hold proof of admin.
///     #[mcp_tool(role = "viewer")]
///     fn peek(&self, _proof: Granted<Admin>) -> &'static str { "no" } // error: guard does not grant `Admin`
/// }
/// ```
///
/// - The return type is an [`IntoToolResult`]: `String`, `&str`, `()`, [`Json<T>`] (structured
///   output with an `outputSchema`), [`model::CallToolResult`], or `Result<T, E>` of those with
///   `E` one of [`ToolError`], `String`, `&str`.
pub use mcp_gatekeeper_macros::mcp_tool;

/// Declares a roles enum and its hierarchy: `#[derive(Roles)]` on a fieldless enum
/// (`#[roles(crate = "PATH")]` on the enum names mcp-gatekeeper through a re-export).
///
/// Each variant is a role named in snake_case (`SuperAdmin` is `"super_admin"`; override with
/// `#[role(name = "...")]`). By default each role includes every role declared before it; with
/// `#[role(includes(a, b))]` on any variant, the hierarchy is exactly the declared inclusions,
/// closed transitively. Cycles are compile errors:
///
/// ```compile_fail
/// use mcp_gatekeeper::Roles;
/// #[derive(Roles)]
/// enum Role {
///     #[role(includes(b))]
///     A,
///     #[role(includes(a))] // error: role hierarchy has a cycle
///     B,
/// }
/// ```
///
/// The derive also declares, next to the enum and with its visibility, one uninhabited marker
/// type per role (for [`Granted<M>`]), and a hidden macro under the enum's name through which
/// [`#[mcp_tools(roles = ...)]`](macro@mcp_tools) learns the role names.
pub use mcp_gatekeeper_macros::Roles;

/// Cancelled when the client cancels the call or the server shuts down; take it as a tool
/// parameter to stop long work early.
pub use tokio_util::sync::CancellationToken;

/// The MCP result types a tool may return directly.
pub mod model {
    pub use rmcp::model::{CallToolResult, ContentBlock};
}

/// The `schemars` version tool argument types must derive `JsonSchema` with.
pub use rmcp::schemars;

/// Everything a tool module needs: `use mcp_gatekeeper::prelude::*;`.
pub mod prelude {
    pub use crate::{
        ApiKey, ApiKeys, Args, Caller, Gatekeeper, Granted, Json, Roles, ToolError, mcp_tool,
        mcp_tools,
    };
    #[cfg(feature = "jwt")]
    pub use crate::{Jwt, TokenEndpoint};
}

/// Entry points for the benchmarks in `runtime/benches`: the per-request building blocks,
/// callable without a server. Not public API.
#[doc(hidden)]
pub mod __bench {
    use std::time::Duration;

    use crate::{AuditLog, CallerId, ConfigError, McpTools, Principal, Rate};

    /// One tool's rate limiter.
    pub struct Limiter(crate::rate_limit::ToolLimiter);

    impl Limiter {
        /// A limiter for `rate`.
        pub fn new(rate: Rate) -> Option<Self> {
            crate::rate_limit::ToolLimiter::new(rate).map(Self)
        }

        /// One check for `caller`.
        pub fn check(&self, caller: CallerId) -> Result<(), Duration> {
            self.0.check(caller)
        }
    }

    /// A JWT check as a request makes it: answered from the verifier's cache of accepted
    /// tokens after the first time.
    #[cfg(feature = "jwt")]
    pub fn verify_cached(jwt: &crate::Jwt, token: &str) -> bool {
        jwt.verify_cached(token).is_ok()
    }

    /// The tool table of `T` as a server builds it.
    pub struct Catalog<T: McpTools>(crate::tools::Engine<T>);

    impl<T: McpTools> Catalog<T> {
        /// Builds the table once.
        pub fn new() -> Result<Self, ConfigError> {
            crate::tools::Engine::new(
                T::__server_info(),
                AuditLog::tracing_only(),
                false,
                &crate::ScopeHierarchy::new(),
                crate::rate_limit::in_flight::DEFAULT_CALLS_PER_CALLER,
                &Default::default(),
            )
            .map(Self)
        }

        /// The names of the tools `principal` may call (what `tools/list` returns).
        pub fn list_for(&self, principal: &Principal) -> usize {
            self.0.list_for(principal).len()
        }
    }
}

/// Used by the code the macros generate. Not public API: it changes without notice.
#[doc(hidden)]
pub mod __private {
    pub use ::futures::future::BoxFuture;
    pub use ::rmcp::{self, ErrorData, model::CallToolResponse, model::JsonObject};
    pub use ::schemars;
    pub use ::serde;
    pub use ::serde_json;
    use ::std::sync::Arc;
    pub use mcp_gatekeeper_macros::__mcp_tools_with_roles;

    pub use crate::tools::{Args, NoRoles};
    pub use crate::tools::{Arguments, ObjectSchema};
    pub use crate::tools::{
        FromToolCall, IntoToolResult, McpTools, Rate, ServerInfo, ToolCall, ToolDef, ToolFn,
        ToolHints,
    };
    pub use crate::tools::{Guard, Includes, NoRoleGuard, RoleMarker, Roles};

    /// The tools of one `#[mcp_tools]` impl block under the roles enum `R`, which its
    /// `McpTools` impl serves. Implemented by the expansion that knows `R`'s role names:
    /// `#[mcp_tools]` itself without roles, else the callback of `R`'s `#[derive(Roles)]` —
    /// which is missing exactly when `R` has no such derive, hence the message.
    #[diagnostic::on_unimplemented(
        message = "`{R}` does not `#[derive(Roles)]`",
        label = "add `#[derive(Roles)]` to the enum",
        note = "`#[mcp_tools(roles = ...)]` learns the role names from that derive"
    )]
    pub trait ToolTable<R>: Sized {
        /// The roles enum (`R`).
        type Roles: Roles;

        /// The tool table.
        fn tool_defs() -> Vec<ToolDef<Self>>;
    }

    /// The input schema of a generated or `Args<T>` argument type.
    pub fn input_schema<A: schemars::JsonSchema + 'static>() -> Result<Arc<JsonObject>, String> {
        rmcp::handler::server::tool::schema_for_input::<A>()
    }

    /// The marker type of role number `I` of a roles enum (implemented by `#[derive(Roles)]`).
    pub trait RoleAt<const I: usize> {
        /// The marker.
        type Marker: RoleMarker;
    }

    /// Compile-time check that an argument type can be deserialised and described.
    pub fn assert_argument<A: crate::tools::ToolArgument>() {}
}
