//! What `#[mcp_tools]` generates against: the tool table, the per-call context handed to the
//! generated dispatch code, and the traits that check a handler's parameters and return type.

use std::{borrow::Cow, fmt, sync::Arc, time::Duration};

use futures::future::BoxFuture;
use rmcp::{
    ErrorData, RoleServer,
    model::{CallToolResponse, CallToolResult, ContentBlock, JsonObject},
    service::RequestContext,
};
use serde::{Serialize, de::DeserializeOwned};

use crate::{
    Principal,
    tools::{Caller, Granted, Guard, Includes, RoleMarker, Roles},
};

/// A type whose methods are MCP tools: implemented by `#[mcp_tools]` on an impl block.
///
/// Serve it with [`Gatekeeper`](crate::Gatekeeper).
#[diagnostic::on_unimplemented(
    message = "`{Self}` declares no MCP tools",
    label = "not a tools type",
    note = "put `#[mcp_tools]` (or `#[mcp_tools(roles = Role)]`) on an `impl {Self}` block whose methods carry `#[mcp_tool(...)]`"
)]
pub trait McpTools: Send + Sync + Sized + 'static {
    /// The roles the tools are guarded by.
    type Roles: Roles;

    /// The tool table. Called once, when a server is built.
    #[doc(hidden)]
    fn __tool_defs() -> Vec<ToolDef<Self>>;

    /// The server's name and version (by default the crate's).
    #[doc(hidden)]
    fn __server_info() -> ServerInfo;

    /// Every scope some tool requires, sorted, each once: what an authorization server for
    /// these tools must be able to grant.
    fn declared_scopes() -> Vec<&'static str> {
        let mut scopes: Vec<&'static str> = Self::__tool_defs()
            .iter()
            .flat_map(|t| t.scopes.iter().copied())
            .collect();
        scopes.sort_unstable();
        scopes.dedup();
        scopes
    }
}

/// The name, version and instructions a server announces to clients.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    /// Server name.
    pub name: Cow<'static, str>,
    /// Server version.
    pub version: Cow<'static, str>,
    /// Instructions for the model (from the doc comment on the `#[mcp_tools]` impl block).
    pub instructions: Option<Cow<'static, str>>,
}

/// How often one caller may call one tool: `calls` per `per`, enforced with GCRA (bursts of up
/// to `calls`, then one call every `per / calls`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Calls allowed per period.
    pub calls: u32,
    /// The period.
    pub per: Duration,
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.per.as_secs() {
            1 => "s",
            60 => "min",
            3600 => "h",
            86400 => "day",
            other => return write!(f, "{}/{}s", self.calls, other),
        };
        write!(f, "{}/{}", self.calls, unit)
    }
}

/// The MCP annotations of a tool (hints for clients; never trusted for security).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ToolHints {
    /// The tool does not modify its environment.
    pub read_only: Option<bool>,
    /// The tool may perform destructive updates.
    pub destructive: Option<bool>,
    /// Calling the tool repeatedly with the same arguments has no additional effect.
    pub idempotent: Option<bool>,
    /// The tool interacts with an open world of external entities.
    pub open_world: Option<bool>,
}

/// The generated call function of one tool.
#[doc(hidden)]
pub type ToolFn<T> =
    for<'a> fn(&'a T, ToolCall<'a>) -> BoxFuture<'a, Result<CallToolResponse, ErrorData>>;

/// One tool as declared by `#[mcp_tool]`: metadata, access rule and the generated call.
#[doc(hidden)]
pub struct ToolDef<T> {
    pub name: &'static str,
    pub title: Option<&'static str>,
    pub description: Option<&'static str>,
    /// The index of the required role, if the tool requires one.
    pub role: Option<usize>,
    pub scopes: &'static [&'static str],
    pub public: bool,
    pub rate: Option<Rate>,
    /// The most calls of the tool one caller may have in flight (`concurrency = N`).
    pub concurrency: Option<u32>,
    pub hints: ToolHints,
    pub input_schema: fn() -> Result<Arc<JsonObject>, String>,
    pub output_schema: fn() -> Option<Arc<JsonObject>>,
    pub call: ToolFn<T>,
}

/// Everything a tool's generated dispatch code gets for one call, after the guard passed.
#[doc(hidden)]
pub struct ToolCall<'a> {
    pub(crate) principal: &'a Arc<Principal>,
    pub(crate) arguments: Option<JsonObject>,
    pub(crate) context: RequestContext<RoleServer>,
}

impl ToolCall<'_> {
    /// Deserialises the call's arguments into `A`. An argument error is the model's to fix, so
    /// it becomes a tool result with `isError: true` that says what is wrong (as MCP asks for
    /// input validation errors), not a protocol error.
    pub fn arguments<A: DeserializeOwned>(&mut self) -> Result<A, Rejection> {
        let arguments = self.arguments.take().unwrap_or_default();
        serde_json::from_value(serde_json::Value::Object(arguments))
            .map_err(|e| Rejection::invalid_arguments(e.to_string()))
    }
}

/// Why a call stopped before its handler ran.
#[derive(Debug)]
pub struct Rejection(RejectionKind);

#[derive(Debug)]
enum RejectionKind {
    /// The arguments do not fit the tool: the model's mistake, reported as a tool error.
    InvalidArguments(String),
    /// A protocol-level refusal.
    Protocol(Box<ErrorData>),
}

impl Rejection {
    /// Arguments that do not fit the tool's schema.
    pub fn invalid_arguments(message: impl Into<String>) -> Self {
        Self(RejectionKind::InvalidArguments(message.into()))
    }

    /// A JSON-RPC error.
    pub fn protocol(error: ErrorData) -> Self {
        Self(RejectionKind::Protocol(Box::new(error)))
    }

    /// The answer to the call.
    #[doc(hidden)]
    pub fn into_result(self) -> Result<CallToolResponse, ErrorData> {
        match self.0 {
            RejectionKind::InvalidArguments(message) => {
                Ok(CallToolResult::error(vec![ContentBlock::text(format!(
                    "invalid arguments: {message}"
                ))])
                .into())
            }
            RejectionKind::Protocol(error) => Err(*error),
        }
    }
}

/// A handler parameter the guard fills in (not a JSON argument): [`Caller`], [`Granted`],
/// [`Args`]. `G` is the tool's guard, so extractors can demand what the guard checked.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be extracted in a tool guarded by `{G}`",
    label = "not a tool extractor for this guard",
    note = "tool parameters are JSON arguments (any `Deserialize + JsonSchema` type), or one of the extractors `Caller<R>`, `Granted<Role>`, `Args<T>`"
)]
pub trait FromToolCall<G: Guard>: Sized {
    /// Builds the value from the call.
    fn from_tool_call(call: &mut ToolCall<'_>) -> Result<Self, Rejection>;
}

impl<G: Guard> FromToolCall<G> for Caller<G::Roles> {
    fn from_tool_call(call: &mut ToolCall<'_>) -> Result<Self, Rejection> {
        Ok(Caller::new(call.principal.clone()))
    }
}

impl<G, M> FromToolCall<G> for Granted<M>
where
    G: Guard + Includes<M>,
    M: RoleMarker,
{
    fn from_tool_call(_: &mut ToolCall<'_>) -> Result<Self, Rejection> {
        // The guard already checked the caller's role against G, and G includes M.
        Ok(Granted::new())
    }
}

impl<G: Guard> FromToolCall<G> for tokio_util::sync::CancellationToken {
    fn from_tool_call(call: &mut ToolCall<'_>) -> Result<Self, Rejection> {
        Ok(call.context.ct.clone())
    }
}

/// All of a tool's arguments as one struct, instead of one parameter each:
///
/// ```no_run
/// # use mcp_gatekeeper::prelude::*;
/// use schemars::JsonSchema;
/// use serde::Deserialize;
///
/// #[derive(Deserialize, JsonSchema)]
/// struct WriteArgs {
///     /// Key to write.
///     key: String,
///     /// Value to store.
///     value: String,
/// }
/// # struct Tools;
/// #[mcp_tools]
/// impl Tools {
///     /// Write a value.
///     #[mcp_tool(scope = "data:write")]
///     async fn write(&self, Args(args): Args<WriteArgs>) -> String {
///         format!("{} = {}", args.key, args.value)
///     }
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Args<T>(pub T);

impl<G: Guard, T: DeserializeOwned> FromToolCall<G> for Args<T> {
    fn from_tool_call(call: &mut ToolCall<'_>) -> Result<Self, Rejection> {
        call.arguments().map(Args)
    }
}

/// A type a tool parameter can have: deserialisable from the call's JSON arguments and
/// describable as JSON Schema for the tool's `inputSchema`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a tool argument",
    label = "tool arguments must implement `serde::Deserialize` and `schemars::JsonSchema`",
    note = "derive both on your type: `#[derive(Deserialize, JsonSchema)]` (schemars 1.x, also re-exported as `mcp_gatekeeper::schemars`)"
)]
pub trait ToolArgument: DeserializeOwned + schemars::JsonSchema + 'static {}

// Report the type as not a tool argument, once, rather than each trait it lacks.
#[diagnostic::do_not_recommend]
impl<T: DeserializeOwned + schemars::JsonSchema + 'static> ToolArgument for T {}

/// Structured tool output: serialised into `structuredContent` (and a text copy), with the
/// tool's `outputSchema` derived from `T`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Json<T>(pub T);

/// Something a tool handler can return.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be returned from a tool",
    label = "not a tool result",
    note = "return `String`, `&'static str`, `()`, `Json<T>` (structured output), `CallToolResult`, or `Result<T, E>` of those where `E` is `ToolError`, `String` or `&'static str`"
)]
pub trait IntoToolResult {
    /// Converts into the MCP result.
    fn into_tool_result(self) -> Result<CallToolResponse, ErrorData>;

    /// The tool's output schema, for structured results.
    fn output_schema() -> Option<Arc<JsonObject>> {
        None
    }
}

fn text_result(text: String) -> Result<CallToolResponse, ErrorData> {
    Ok(CallToolResult::success(vec![ContentBlock::text(text)]).into())
}

impl IntoToolResult for String {
    fn into_tool_result(self) -> Result<CallToolResponse, ErrorData> {
        text_result(self)
    }
}

impl IntoToolResult for &str {
    fn into_tool_result(self) -> Result<CallToolResponse, ErrorData> {
        text_result(self.to_owned())
    }
}

impl IntoToolResult for Cow<'_, str> {
    fn into_tool_result(self) -> Result<CallToolResponse, ErrorData> {
        text_result(self.into_owned())
    }
}

impl IntoToolResult for () {
    fn into_tool_result(self) -> Result<CallToolResponse, ErrorData> {
        Ok(CallToolResult::success(Vec::new()).into())
    }
}

impl IntoToolResult for CallToolResult {
    fn into_tool_result(self) -> Result<CallToolResponse, ErrorData> {
        Ok(self.into())
    }
}

impl<T: Serialize + schemars::JsonSchema + 'static> IntoToolResult for Json<T> {
    fn into_tool_result(self) -> Result<CallToolResponse, ErrorData> {
        let value = serde_json::to_value(self.0).map_err(|e| {
            ErrorData::internal_error(format!("cannot serialise the tool's result: {e}"), None)
        })?;
        Ok(CallToolResult::structured(value).into())
    }

    fn output_schema() -> Option<Arc<JsonObject>> {
        // Only object schemas are valid `outputSchema`s for every protocol version.
        let schema = rmcp::handler::server::tool::schema_for_output::<T>();
        (schema.get("type") == Some(&serde_json::Value::from("object"))).then_some(schema)
    }
}

impl<T: IntoToolResult, E: IntoToolError> IntoToolResult for Result<T, E> {
    fn into_tool_result(self) -> Result<CallToolResponse, ErrorData> {
        match self {
            Ok(value) => value.into_tool_result(),
            Err(error) => error.into_tool_error(),
        }
    }

    fn output_schema() -> Option<Arc<JsonObject>> {
        T::output_schema()
    }
}

/// The error half of a tool's `Result`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a tool's error type",
    label = "not a tool error",
    note = "use `ToolError` (it converts from any `std::error::Error` with `?`), `String` or `&'static str`"
)]
pub trait IntoToolError {
    /// Converts into the MCP result: a tool error (`isError: true`) or a protocol error.
    fn into_tool_error(self) -> Result<CallToolResponse, ErrorData>;
}

impl IntoToolError for String {
    fn into_tool_error(self) -> Result<CallToolResponse, ErrorData> {
        ToolError::new(self).into_tool_error()
    }
}

impl IntoToolError for &str {
    fn into_tool_error(self) -> Result<CallToolResponse, ErrorData> {
        ToolError::new(self.to_owned()).into_tool_error()
    }
}

/// A tool that failed.
///
/// By default the message goes back to the model as a tool result with `isError: true`, so it
/// can read it and correct itself. [`ToolError::invalid_params`] and [`ToolError::internal`]
/// answer with a JSON-RPC error instead. Any `std::error::Error` converts with `?`.
pub struct ToolError {
    message: Cow<'static, str>,
    kind: ToolErrorKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ToolErrorKind {
    Execution,
    InvalidParams,
    Internal,
}

impl ToolError {
    /// A failure the model should see.
    pub fn new(message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            message: message.into(),
            kind: ToolErrorKind::Execution,
        }
    }

    /// A JSON-RPC `-32602 Invalid params` error.
    pub fn invalid_params(message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            message: message.into(),
            kind: ToolErrorKind::InvalidParams,
        }
    }

    /// A JSON-RPC `-32603 Internal error`. The message reaches the client: keep it free of
    /// internals an attacker could use.
    pub fn internal(message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            message: message.into(),
            kind: ToolErrorKind::Internal,
        }
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl IntoToolError for ToolError {
    fn into_tool_error(self) -> Result<CallToolResponse, ErrorData> {
        match self.kind {
            ToolErrorKind::Execution => {
                Ok(CallToolResult::error(vec![ContentBlock::text(self.message)]).into())
            }
            ToolErrorKind::InvalidParams => Err(ErrorData::invalid_params(self.message, None)),
            ToolErrorKind::Internal => Err(ErrorData::internal_error(self.message, None)),
        }
    }
}

impl<E: std::error::Error> From<E> for ToolError {
    fn from(error: E) -> Self {
        ToolError::new(error.to_string())
    }
}

impl fmt::Debug for ToolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ToolError")
            .field("kind", &self.kind)
            .field("message", &self.message)
            .finish()
    }
}

impl fmt::Display for ToolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}
