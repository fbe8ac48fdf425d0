//! The tools: the table the macros generate (`table`), their arguments (`arguments`), roles
//! and privilege proofs (`rbac`), scope hierarchies (`scopes`), and the dispatcher that guards
//! every call (`dispatch`: role → scopes → rate limit → audit → handler).

mod arguments;
mod dispatch;
mod rbac;
mod scopes;
mod table;

// Named by the generated code, through `crate::__private`.
pub use arguments::{Arguments, ObjectSchema};
pub(crate) use dispatch::{AuditPolicy, Engine, ScopeOracle};
pub use dispatch::{GatekeeperService, codes};
#[cfg(feature = "otel")]
pub(crate) use dispatch::{principal_of, remote_addr_of, succeeded};
pub use rbac::{Caller, Granted, Guard, Includes, NoRoleGuard, NoRoles, RoleMarker, Roles};
pub(crate) use rbac::{includes, role_index};
pub use scopes::ScopeHierarchy;
pub(crate) use table::ToolArgument;
pub use table::{
    Args, FromToolCall, IntoToolError, IntoToolResult, Json, McpTools, Rate, Rejection, ServerInfo,
    ToolError, ToolHints,
};
pub use table::{ToolCall, ToolDef, ToolFn};
