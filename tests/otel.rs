//! OpenTelemetry spans (feature `otel`): a real SDK tracer behind `tracing-opentelemetry`
//! collects the spans of real requests in memory. A tool call joins the trace its client names
//! in `_meta` (the rmcp client sends it) or in the HTTP headers; the tool's own spans are its
//! children; refusals and failures carry their reason and code.
//!
//! The subscriber is the test thread's own (`set_default`): each test's runtime is
//! single-threaded, so the server, rmcp and the client all run where it is in force.

use mcp_gatekeeper::{ApiKey, ApiKeys, Gatekeeper, RunningServer, otel, prelude::*};
use opentelemetry::{
    KeyValue,
    trace::{SpanId, SpanKind, Status, TraceId, TracerProvider as _},
};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use rmcp::{
    ServiceExt,
    model::{CallToolRequestParams, RequestMetaObject},
    service::ServiceError,
    transport::{
        StreamableHttpClientTransport, streamable_http_client::StreamableHttpClientTransportConfig,
    },
};
use serde_json::json;
use tracing_subscriber::{Layer as _, filter::Targets, layer::SubscriberExt};

use crate::common::{Cred, Mcp, Version, read_reply};

/// The target of the tools' own spans here.
const TOOL_TARGET: &str = "otel_test_tool";

#[derive(Roles)]
enum Role {
    User,
    Admin,
}

struct Tools;

#[mcp_tools(roles = Role)]
impl Tools {
    /// Does its work in a span of its own.
    #[mcp_tool(role = "user")]
    async fn work(&self) -> String {
        let _inside = tracing::info_span!(target: TOOL_TARGET, "inside the tool").entered();
        "done".into()
    }

    /// Fails as a tool does (`isError`).
    #[mcp_tool(role = "user")]
    async fn fail(&self) -> Result<String, ToolError> {
        Err(ToolError::new("it did not work"))
    }

    /// Admins only.
    #[mcp_tool(role = "admin")]
    async fn wipe(&self) -> String {
        "wiped".into()
    }
}

const USER: &str = "otel-user-key-0123456789abcdef0123";

/// A trace a client started, and the span it called from.
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

fn traceparent() -> String {
    format!("00-{TRACE}-{PARENT}-01")
}

/// Spans of the gatekeeper and of the tools, ended into memory.
struct Collected {
    exporter: InMemorySpanExporter,
    _provider: SdkTracerProvider,
    _guard: tracing::subscriber::DefaultGuard,
}

impl Collected {
    fn start() -> Self {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let layer = tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("otel-tests"))
            .with_filter(
                Targets::new()
                    .with_target(otel::TARGET, tracing::Level::INFO)
                    .with_target(TOOL_TARGET, tracing::Level::INFO),
            );
        let guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(layer));
        // Tests run in parallel: a callsite another test reaches first, while this dispatcher
        // is being registered, can keep the interest it computed without it.
        tracing::callsite::rebuild_interest_cache();
        Self {
            exporter,
            _provider: provider,
            _guard: guard,
        }
    }

    fn spans(&self) -> Vec<SpanData> {
        self.exporter.get_finished_spans().unwrap()
    }

    /// The ended spans named `name`.
    fn named(&self, name: &str) -> Vec<SpanData> {
        self.spans()
            .into_iter()
            .filter(|s| s.name == name)
            .collect()
    }

    fn clear(&self) {
        self.exporter.reset();
        tracing::callsite::rebuild_interest_cache();
    }
}

fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|KeyValue { key: k, .. }| k.as_str() == key)
        .map(|kv| kv.value.as_str().into_owned())
}

async fn start() -> (RunningServer, String) {
    let keys = ApiKeys::new()
        .with_key(ApiKey::new("user-1", USER).role("user"))
        .with_key(ApiKey::new("admin-1", "otel-admin-key-0123456789abcdef01").role("admin"));
    let server = Gatekeeper::new(Tools)
        .authenticate(keys)
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let url = format!("http://{}/mcp", server.local_addr());
    (server, url)
}

fn call_in_trace(name: &'static str) -> CallToolRequestParams {
    let mut meta = RequestMetaObject::new();
    meta.set_traceparent(traceparent());
    let mut params = CallToolRequestParams::new(name);
    params.meta = Some(meta);
    params
}

#[tokio::test]
async fn a_tool_call_joins_the_trace_the_rmcp_client_names_in_meta() {
    let spans = Collected::start();
    let (server, url) = start().await;
    let config = StreamableHttpClientTransportConfig::with_uri(url.as_str()).auth_header(USER);
    let client = ()
        .serve(StreamableHttpClientTransport::with_client(
            reqwest::Client::new(),
            config,
        ))
        .await
        .expect("the client connects");
    spans.clear();

    // The list: what it shows depends on who asks, so the span names them.
    let listed = client.list_all_tools().await.unwrap();
    assert_eq!(listed.len(), 2, "{listed:#?}");
    let lists = spans.named("tools/list");
    assert_eq!(lists.len(), 1, "{:#?}", spans.spans());
    assert_eq!(attribute(&lists[0], "user.id").as_deref(), Some("user-1"));
    assert_eq!(lists[0].span_kind, SpanKind::Server);
    spans.clear();

    let done = client.call_tool(call_in_trace("work")).await.unwrap();
    assert_eq!(done.is_error, Some(false));

    let calls = spans.named("tools/call work");
    assert_eq!(calls.len(), 1, "{:#?}", spans.spans());
    let call = &calls[0];
    assert_eq!(
        call.span_context.trace_id(),
        TraceId::from_hex(TRACE).unwrap()
    );
    assert_eq!(call.parent_span_id, SpanId::from_hex(PARENT).unwrap());
    assert_eq!(call.span_kind, SpanKind::Server);
    assert_eq!(call.status, Status::Unset);
    for (key, value) in [
        ("mcp.method.name", "tools/call"),
        ("gen_ai.tool.name", "work"),
        ("gen_ai.operation.name", "execute_tool"),
        ("user.id", "user-1"),
        ("mcp_gatekeeper.decision", "allowed"),
        ("client.address", "127.0.0.1"),
    ] {
        assert_eq!(
            attribute(call, key).as_deref(),
            Some(value),
            "{key}: {call:#?}"
        );
    }
    assert!(attribute(call, "mcp.session.id").is_some(), "{call:#?}");
    assert!(attribute(call, "jsonrpc.request.id").is_some(), "{call:#?}");
    assert_eq!(attribute(call, "error.type"), None);

    // The tool ran inside the call's span.
    let inside = spans.named("inside the tool");
    assert_eq!(inside.len(), 1);
    assert_eq!(inside[0].parent_span_id, call.span_context.span_id());
    assert_eq!(
        inside[0].span_context.trace_id(),
        call.span_context.trace_id()
    );

    // The request's authentication: allowed, by the API key, with no credential in sight.
    let auths = spans.named("mcp_gatekeeper authenticate");
    assert!(!auths.is_empty());
    for auth in &auths {
        assert_eq!(
            attribute(auth, "mcp_gatekeeper.auth.outcome").as_deref(),
            Some("allowed")
        );
        assert_eq!(
            attribute(auth, "mcp_gatekeeper.auth.method").as_deref(),
            Some("api_key")
        );
        assert_eq!(attribute(auth, "user.id").as_deref(), Some("user-1"));
        assert!(
            auth.attributes
                .iter()
                .all(|kv| !kv.value.as_str().contains(USER)),
            "{auth:#?}"
        );
    }
    spans.clear();

    // A refusal: its reason and JSON-RPC code, an error status, still in the client's trace.
    match client.call_tool(call_in_trace("wipe")).await {
        Err(ServiceError::McpError(error)) => assert_eq!(error.code.0, -32003),
        other => panic!("{other:?}"),
    }
    let refused = &spans.named("tools/call wipe")[0];
    assert_eq!(
        refused.span_context.trace_id(),
        TraceId::from_hex(TRACE).unwrap()
    );
    assert_eq!(
        attribute(refused, "mcp_gatekeeper.decision").as_deref(),
        Some("missing_role")
    );
    assert_eq!(attribute(refused, "error.type").as_deref(), Some("-32003"));
    assert_eq!(
        attribute(refused, "rpc.response.status_code").as_deref(),
        Some("-32003")
    );
    assert!(
        matches!(refused.status, Status::Error { .. }),
        "{refused:#?}"
    );

    // A tool's own failure: allowed, then `tool_error`.
    let failed = client.call_tool(call_in_trace("fail")).await.unwrap();
    assert_eq!(failed.is_error, Some(true));
    let failed = &spans.named("tools/call fail")[0];
    assert_eq!(
        attribute(failed, "mcp_gatekeeper.decision").as_deref(),
        Some("allowed")
    );
    assert_eq!(
        attribute(failed, "error.type").as_deref(),
        Some("tool_error")
    );
    assert!(matches!(failed.status, Status::Error { .. }));

    // A tool that does not exist: no span is named after what the client made up.
    let _ = client.call_tool(call_in_trace("made-up-name")).await;
    assert!(spans.spans().iter().all(|s| !s.name.contains("made-up")));
    let unknown = spans
        .named("tools/call")
        .into_iter()
        .find(|s| attribute(s, "mcp_gatekeeper.decision").as_deref() == Some("tool_not_found"))
        .expect("the unknown tool's span");
    assert_eq!(attribute(&unknown, "gen_ai.tool.name"), None);

    client.cancel().await.unwrap();
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn without_meta_the_http_traceparent_is_joined_and_a_bad_one_is_ignored() {
    let spans = Collected::start();
    let (server, url) = start().await;
    let mcp = Mcp::connect(&url, Cred::ApiKey(USER.into()), Version::V2025_06_18).await;
    spans.clear();
    let body = json!({
        "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": { "name": "work", "arguments": {} },
    });
    let send = |traceparent: &'static str| {
        let mut headers = mcp.base_headers(None);
        headers.insert("traceparent", traceparent.parse().unwrap());
        mcp.http
            .post(&url)
            .headers(headers)
            .body(body.to_string())
            .send()
    };

    let header = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let reply = read_reply(send(header).await.unwrap(), Some(json!(1))).await;
    assert_eq!(reply.text(), "done", "{reply:#?}");
    let trace = TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap();
    let call = &spans.named("tools/call work")[0];
    assert_eq!(call.span_context.trace_id(), trace);
    assert_eq!(
        call.parent_span_id,
        SpanId::from_hex("b7ad6b7169203331").unwrap()
    );
    // The authentication joins the same trace, from the header.
    let auth = &spans.named("mcp_gatekeeper authenticate")[0];
    assert_eq!(auth.span_context.trace_id(), trace);
    spans.clear();

    // A malformed traceparent: the call is served, in a trace of its own.
    let reply = read_reply(send("00-not-a-trace-01").await.unwrap(), Some(json!(1))).await;
    assert_eq!(reply.text(), "done", "{reply:#?}");
    let call = &spans.named("tools/call work")[0];
    assert_ne!(call.span_context.trace_id(), trace);
    assert!(call.span_context.trace_id() != TraceId::INVALID);
    assert_eq!(call.parent_span_id, SpanId::INVALID);
    spans.clear();

    // A wrong key: the authentication span says why, and names no credential.
    let stranger = Mcp::new(
        &url,
        Cred::ApiKey("otel-wrong-key-0123456789abcdef0123".into()),
        Version::V2025_06_18,
    );
    let reply = stranger.call("work", json!({})).await;
    assert!(matches!(reply.status, 401 | 403), "{reply:#?}");
    let auth = &spans.named("mcp_gatekeeper authenticate")[0];
    assert_eq!(
        attribute(auth, "mcp_gatekeeper.auth.outcome").as_deref(),
        Some("denied")
    );
    assert_eq!(
        attribute(auth, "mcp_gatekeeper.auth.reason").as_deref(),
        Some("invalid_credential")
    );
    assert!(matches!(auth.status, Status::Error { .. }));
    assert!(
        auth.attributes
            .iter()
            .all(|kv| !kv.value.as_str().contains("wrong-key")),
        "{auth:#?}"
    );
    assert!(spans.named("tools/call work").is_empty());

    server.shutdown().await.unwrap();
}

/// The examples' `OTEL_TRACES_EXPORTER=console`: the hello example, run as a user runs it,
/// prints the span of a tool call in the trace its client named; an exporter the examples do
/// not know stops it at start, saying so.
#[tokio::test]
async fn the_hello_example_prints_its_spans_with_the_console_exporter() {
    use crate::common::{example_binary, process::CapturedProcess};

    let key = "otel-hello-key-0123456789abcdef0123";
    let mut hello = CapturedProcess::spawn(
        std::process::Command::new(example_binary("hello"))
            .env("BIND", "127.0.0.1:0")
            .env("MCP_API_KEYS", key)
            .env("RUST_LOG", "warn")
            .env("OTEL_TRACES_EXPORTER", "console"),
        "the hello example",
    );
    let url = format!("http://{}/mcp", hello.listening());
    let mcp = Mcp::connect(&url, Cred::ApiKey(key.into()), Version::V2025_06_18).await;
    let mut headers = mcp.base_headers(None);
    let trace = "5bf92f3577b34da6a3ce929d0e0e4737";
    headers.insert(
        "traceparent",
        format!("00-{trace}-00f067aa0ba902b8-01").parse().unwrap(),
    );
    let body = json!({
        "jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": { "name": "hello", "arguments": { "name": "spans" } },
    });
    let response = mcp
        .http
        .post(&url)
        .headers(headers)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let reply = read_reply(response, Some(json!(7))).await;
    assert!(reply.text().contains("Hello, spans!"), "{reply:#?}");
    let mut printed = String::new();
    for _ in 0..100 {
        printed = hello.printed();
        if printed.contains("tools/call hello") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let span = printed
        .split("Span #")
        .find(|s| s.contains("Name         : tools/call hello"))
        .unwrap_or_else(|| panic!("no tools/call span printed:\n{printed}"));
    assert!(span.contains(&format!("TraceId      : {trace}")), "{span}");
    assert!(span.contains("ParentSpanId : 00f067aa0ba902b8"), "{span}");
    assert!(
        span.contains("mcp_gatekeeper.decision: String(Owned(\"allowed\"))")
            || span.contains("mcp_gatekeeper.decision: String(Static(\"allowed\"))"),
        "{span}"
    );
    assert!(!printed.contains(key), "the key never appears");
    drop(hello);

    let mut unknown = CapturedProcess::spawn(
        std::process::Command::new(example_binary("hello"))
            .env("BIND", "127.0.0.1:0")
            .env("MCP_API_KEYS", key)
            .env("OTEL_TRACES_EXPORTER", "zipkin"),
        "the hello example",
    );
    let (status, printed) = unknown.exit();
    assert!(!status.success(), "{printed}");
    assert!(printed.contains("OTEL_TRACES_EXPORTER=zipkin"), "{printed}");
}
