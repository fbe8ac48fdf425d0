#![doc = include_str!("../../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod arguments;
mod audit;
pub mod auth;
mod error;
mod handler;
mod http_auth;
mod lockout;
mod principal;
mod rate_limit;
mod rbac;
mod server;
mod sessions;
pub mod token_endpoint;
mod tool;

pub use audit::{AUDIT_TARGET, AuditEvent, AuditLog, AuditRecord, Outcome};
pub use auth::{ApiKey, ApiKeys, Jwt, JwtAlgorithm};
pub use error::ConfigError;
pub use handler::{GatekeeperService, codes};
pub use lockout::Lockout;
pub use principal::{AuthMethod, Principal, PrincipalBuilder};
pub use rbac::{Caller, Granted, Guard, Includes, NoRoleGuard, NoRoles, RoleMarker, Roles};
pub use server::{Gatekeeper, RunningServer, ServeError};
pub use token_endpoint::{TokenClient, TokenEndpoint};
pub use tool::{
    Args, FromToolCall, IntoToolError, IntoToolResult, Json, McpTools, Rate, Rejection, ServerInfo,
    ToolError, ToolHints,
};

/// Declares the tools of an impl block. See the [crate documentation](crate) for the full
/// grammar and the compile-time checks.
pub use mcp_gatekeeper_macros::mcp_tools;

/// Marks a method of an `#[mcp_tools]` impl block as a tool and declares its access rule.
pub use mcp_gatekeeper_macros::mcp_tool;

/// Declares a roles enum and its hierarchy.
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
        ApiKey, ApiKeys, Args, Caller, Gatekeeper, Granted, Json, Jwt, Roles, TokenEndpoint,
        ToolError, mcp_tool, mcp_tools,
    };
}

/// Entry points for the benchmarks in `runtime/benches`: the per-request building blocks,
/// callable without a server. Not public API.
#[doc(hidden)]
pub mod __bench {
    use std::{sync::Arc, time::Duration};

    use crate::{AuditLog, ConfigError, McpTools, Principal, Rate};

    /// One tool's rate limiter.
    pub struct Limiter(crate::rate_limit::ToolLimiter);

    impl Limiter {
        /// A limiter for `rate`.
        pub fn new(rate: Rate) -> Option<Self> {
            crate::rate_limit::ToolLimiter::new(rate).map(Self)
        }

        /// One check for `caller`.
        pub fn check(&self, caller: &Arc<str>) -> Result<(), Duration> {
            self.0.check(caller)
        }
    }

    /// The tool table of `T` as a server builds it.
    pub struct Catalog<T: McpTools>(crate::handler::Engine<T>);

    impl<T: McpTools> Catalog<T> {
        /// Builds the table once.
        pub fn new() -> Result<Self, ConfigError> {
            crate::handler::Engine::new(T::__server_info(), AuditLog::tracing_only(), false).map(Self)
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
    pub use ::std::{boxed::Box, option::Option, result::Result, sync::Arc, vec::Vec};
    pub use mcp_gatekeeper_macros::__mcp_tools_with_roles;

    pub use crate::arguments::{Arguments, ObjectSchema};
    pub use crate::rbac::{Guard, Includes, NoRoleGuard, RoleMarker, Roles};
    pub use crate::tool::{
        FromToolCall, IntoToolResult, McpTools, Rate, ServerInfo, ToolCall, ToolDef, ToolFn,
        ToolHints,
    };

    /// The input schema of a generated or `Args<T>` argument type.
    pub fn input_schema<A: schemars::JsonSchema + 'static>() -> Result<Arc<JsonObject>, String> {
        rmcp::handler::server::tool::schema_for_input::<A>()
    }

    /// The input schema of a tool without arguments.
    pub fn empty_input_schema() -> Result<Arc<JsonObject>, String> {
        Ok(rmcp::handler::server::common::schema_for_empty_input())
    }

    /// The output schema of a handler's return type.
    pub fn output_schema<R: IntoToolResult>() -> Option<Arc<JsonObject>> {
        R::output_schema()
    }

    /// The marker type of role number `I` of a roles enum (implemented by `#[derive(Roles)]`).
    pub trait RoleAt<const I: usize> {
        /// The marker.
        type Marker: RoleMarker;
    }

    /// Compile-time check that a handler's return type is a tool result.
    pub fn assert_tool_result<R: IntoToolResult>() {}

    /// Compile-time check that an argument type can be deserialised and described.
    pub fn assert_argument<A: crate::tool::ToolArgument>() {}
}
