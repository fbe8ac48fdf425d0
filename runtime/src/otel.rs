//! OpenTelemetry spans (feature `otel`): each authentication and each tool call is a
//! [`tracing`] span, which the application's own
//! [`tracing-opentelemetry`](https://docs.rs/tracing-opentelemetry) layer turns into an
//! OpenTelemetry span and exports wherever it sends the rest.
//!
//! A tool call joins the trace its client names: the W3C trace context in the request's
//! `_meta` (`traceparent`, `tracestate`: MCP SEP-414), or else in the HTTP request's headers,
//! or else the span current where the server runs. An authentication joins the trace of the
//! HTTP request's headers (it happens before the JSON-RPC body is read). A `traceparent` that
//! does not parse is ignored: the span starts a trace of its own.
//!
//! | span | name | attributes |
//! |---|---|---|
//! | a tool call (kind `server`, MCP semantic conventions) | `tools/call {tool}` | `mcp.method.name`, `gen_ai.operation.name` (`execute_tool`), `gen_ai.tool.name`, `jsonrpc.request.id`, `mcp.session.id`, `mcp.protocol.version`, `client.address`, `user.id` (the caller's subject), `mcp_gatekeeper.decision` (`allowed`, or why it was refused: `missing_role`, `rate_limited`, ...), and on failure `error.type` (the JSON-RPC error code, or `tool_error` for a result with `isError`), `rpc.response.status_code` and an error status |
//! | an authentication (kind `internal`) | `mcp_gatekeeper authenticate` | `mcp_gatekeeper.auth.method` (the authenticator that decided), `mcp_gatekeeper.auth.outcome` (`allowed`, `denied`, `throttled`, `unavailable`), `mcp_gatekeeper.auth.reason` (on refusal), `user.id`, `client.address` |
//!
//! Spans are at level `INFO` with target [`TARGET`]. No credential is ever an attribute, and
//! a tool name a client made up never becomes a span name (the span stays `tools/call`).
//!
//! ```no_run
//! use opentelemetry::trace::TracerProvider as _;
//! use tracing_subscriber::prelude::*;
//!
//! // The application's tracer provider, with the exporter it uses (OTLP, stdout, ...).
//! let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
//! tracing_subscriber::registry()
//!     .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("my-server")))
//!     .init();
//! ```

use std::{net::SocketAddr, sync::LazyLock};

use http::HeaderMap;
use opentelemetry::{
    propagation::{Extractor, TextMapPropagator},
    trace::TraceContextExt,
};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use rmcp::{
    model::{ErrorData, MetaObject},
    service::{RequestContext, RoleServer},
};
use tracing::{Span, field::Empty};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::{AuthMethod, Principal};
use rmcp::model::CallToolResponse;

/// The target of the gatekeeper's spans, to filter them (`mcp_gatekeeper::otel=info`).
pub const TARGET: &str = "mcp_gatekeeper::otel";

/// The name of a tool call's span when the tool is unknown (its name is the client's, of
/// unbounded variety: never a span name).
const TOOL_CALL: &str = "tools/call";

/// W3C Trace Context, which SEP-414 names for `_meta` (the application's global propagator
/// may be a no-op or speak another format).
static TRACE_CONTEXT: LazyLock<TraceContextPropagator> = LazyLock::new(TraceContextPropagator::new);

/// The span of one authentication, in the trace of the request's `traceparent` header.
pub(crate) fn authentication(headers: &HeaderMap, remote_addr: Option<SocketAddr>) -> Span {
    let span = tracing::info_span!(
        target: TARGET,
        "authenticate",
        otel.name = "mcp_gatekeeper authenticate",
        otel.kind = "internal",
        mcp_gatekeeper.auth.method = Empty,
        mcp_gatekeeper.auth.outcome = Empty,
        mcp_gatekeeper.auth.reason = Empty,
        user.id = Empty,
        client.address = remote_addr.map(|a| tracing::field::display(a.ip())),
        otel.status_code = Empty,
    );
    if !span.is_disabled() {
        join_trace(&span, &Headers(headers));
    }
    span
}

/// Records who was authenticated, and how.
pub(crate) fn authenticated(span: &Span, method: Option<&'static str>, principal: &Principal) {
    if span.is_disabled() {
        return;
    }
    span.record("mcp_gatekeeper.auth.outcome", "allowed");
    // Anonymous callers are let through by the chain itself, by no authenticator.
    let method = match principal.method() {
        AuthMethod::Anonymous => Some(AuthMethod::Anonymous.as_str()),
        _ => method,
    };
    span.record("mcp_gatekeeper.auth.method", method);
    span.record("user.id", principal.subject());
}

/// Records why an authentication failed (`outcome`: `denied`, `throttled`, `unavailable`).
pub(crate) fn refused(
    span: &Span,
    method: Option<&'static str>,
    outcome: &'static str,
    reason: &'static str,
) {
    if span.is_disabled() {
        return;
    }
    span.record("mcp_gatekeeper.auth.outcome", outcome);
    span.record("mcp_gatekeeper.auth.method", method);
    span.record("mcp_gatekeeper.auth.reason", reason);
    span.record("otel.status_code", "ERROR");
}

/// The span of one `tools/call`, in the trace its client names. `tool` is the tool the call
/// names when it exists, and the name of its spans (`tools/call {tool}`, made once when the
/// server is built). What the request says of itself is given when the span is made (each
/// later `record` is one more visit of every OpenTelemetry layer), and evaluated only if the
/// span is enabled.
pub(crate) fn tool_call(
    context: &RequestContext<RoleServer>,
    tool: Option<(&'static str, &str)>,
) -> Span {
    let span = tracing::info_span!(
        target: TARGET,
        "tools/call",
        otel.name = tool.map_or(TOOL_CALL, |(_, span_name)| span_name),
        otel.kind = "server",
        mcp.method.name = TOOL_CALL,
        gen_ai.operation.name = "execute_tool",
        gen_ai.tool.name = tool.map(|(name, _)| name),
        jsonrpc.request.id = %context.id,
        mcp.session.id = session_of(context),
        mcp.protocol.version = context.protocol_version().map(tracing::field::display),
        network.transport = "tcp",
        client.address = client_address(context),
        user.id = caller(context),
        mcp_gatekeeper.decision = Empty,
        error.type = Empty,
        rpc.response.status_code = Empty,
        otel.status_code = Empty,
    );
    join_request(&span, context);
    span
}

/// The span of one `tools/list`, in the trace its client names.
pub(crate) fn tools_list(context: &RequestContext<RoleServer>) -> Span {
    let span = tracing::info_span!(
        target: TARGET,
        "tools/list",
        otel.kind = "server",
        mcp.method.name = "tools/list",
        jsonrpc.request.id = %context.id,
        mcp.session.id = session_of(context),
        mcp.protocol.version = context.protocol_version().map(tracing::field::display),
        network.transport = "tcp",
        client.address = client_address(context),
        user.id = caller(context),
    );
    join_request(&span, context);
    span
}

/// Puts a request's span in the trace its client names.
fn join_request(span: &Span, context: &RequestContext<RoleServer>) {
    if span.is_disabled() {
        return;
    }
    let meta: &MetaObject = &context.meta;
    if meta.get_traceparent().is_some() {
        join_trace(span, &Meta(meta));
    } else if let Some(request) = context.extensions.get::<http::request::Parts>() {
        join_trace(span, &Headers(&request.headers));
    }
}

fn session_of(context: &RequestContext<RoleServer>) -> Option<&str> {
    context
        .extensions
        .get::<http::request::Parts>()?
        .headers
        .get("mcp-session-id")?
        .to_str()
        .ok()
}

/// The subject of the caller the authentication layer let through.
fn caller(context: &RequestContext<RoleServer>) -> Option<&str> {
    crate::tools::principal_of(context).map(|p| p.subject())
}

fn client_address(
    context: &RequestContext<RoleServer>,
) -> Option<tracing::field::DisplayValue<std::net::IpAddr>> {
    crate::tools::remote_addr_of(context).map(|a| tracing::field::display(a.ip()))
}

/// Records whether the gatekeeper let a tool call through (`allowed`, or the reason of its
/// refusal).
pub(crate) fn decided(span: &Span, decision: &'static str) {
    span.record("mcp_gatekeeper.decision", decision);
}

/// Records how a tool call ended.
pub(crate) fn ended(span: &Span, result: &Result<CallToolResponse, ErrorData>) {
    if span.is_disabled() {
        return;
    }
    match result {
        Err(error) => {
            span.record("error.type", tracing::field::display(error.code.0));
            span.record(
                "rpc.response.status_code",
                tracing::field::display(error.code.0),
            );
            span.record("otel.status_code", "ERROR");
        }
        Ok(_) if !crate::tools::succeeded(result) => {
            span.record("error.type", "tool_error");
            span.record("otel.status_code", "ERROR");
        }
        Ok(_) => {}
    }
}

/// Makes the trace context `carrier` holds the parent of `span`; a missing or malformed one
/// leaves the span where it was.
fn join_trace(span: &Span, carrier: &dyn Extractor) {
    let context = TRACE_CONTEXT.extract(carrier);
    if context.span().span_context().is_valid() {
        // Only fails when no OpenTelemetry layer sees the span: nothing to join then.
        let _ = span.set_parent(context);
    }
}

/// The trace context of a request's `_meta`.
struct Meta<'a>(&'a MetaObject);

impl Extractor for Meta<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.0.get(key).and_then(serde_json::Value::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.0.keys().map(String::as_str).collect()
    }
}

/// The trace context of an HTTP request's headers.
struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}
