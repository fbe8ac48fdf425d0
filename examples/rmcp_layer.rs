//! A server written with rmcp's own macros (`#[tool_router]`, `#[tool]`), secured by
//! mcp-gatekeeper's [`GatekeeperLayer`] alone: no `#[mcp_tool]`, no `Gatekeeper`. The layer
//! authenticates every request before rmcp sees it, and the tools (and an axum route beside
//! them) take the caller as a [`Principal`].
//!
//! ```text
//! cargo run --example rmcp_layer
//! ```
//!
//! Configuration (environment, all optional), as for `hello`:
//! - `MCP_API_KEYS`: comma-separated API keys (at least 16 characters each); when unset, one is
//!   generated for this run and printed with command lines that use it;
//! - `BIND`: the address to listen on (default `127.0.0.1:3000`; port 0 picks a free port);
//! - `STATELESS=1`: plain JSON replies, no sessions;
//! - `METRICS_BIND`: serve Prometheus metrics at `/metrics` on this address (e.g. `127.0.0.1:9100`);
//! - `OTEL_TRACES_EXPORTER=console`: print the authentication spans of its layer on stdout.

use std::{net::SocketAddr, sync::Arc};

#[path = "telemetry.rs"]
mod telemetry;

use axum::{Router, routing::get};
use mcp_gatekeeper::{ApiKeys, CancellationToken, ConfigError, GatekeeperLayer, Principal};
use rmcp::{
    ServerHandler,
    handler::server::{router::tool::ToolRouter, wrapper::Parameters},
    tool, tool_handler, tool_router,
    transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService,
        session::{local::LocalSessionManager, never::NeverSessionManager},
    },
};

/// What `echo` takes.
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
pub struct EchoArgs {
    /// The text to send back.
    pub text: String,
}

/// An rmcp server like any other: nothing in it knows about authentication.
#[derive(Clone)]
pub struct Notes {
    /// Built once per server instance (rmcp's `tool_router()` rebuilds its map on every call).
    tool_router: ToolRouter<Self>,
}

impl Default for Notes {
    fn default() -> Self {
        Self {
            tool_router: Self::tool_router(),
        }
    }
}

#[tool_router]
impl Notes {
    /// The caller as the layer authenticated it. `Principal` is an rmcp extractor: rmcp hands a
    /// tool the HTTP request head (`http::request::Parts`) in its request context's extensions,
    /// and the layer put the caller, an `Arc<Principal>`, in the head's extensions. (By hand:
    /// take `RequestContext<RoleServer>` and read
    /// `ctx.extensions.get::<Parts>()?.extensions.get::<Arc<Principal>>()`.) Reached without
    /// the layer, the call fails with JSON-RPC error -32001 instead.
    #[tool(description = "Who is calling: the authenticated subject and how it authenticated")]
    async fn whoami(&self, caller: Principal) -> String {
        format!("{} ({})", caller.subject(), caller.method())
    }

    /// A tool that does not ask who calls; the layer still let only authenticated callers in.
    #[tool(description = "Send the text back")]
    async fn echo(&self, Parameters(EchoArgs { text }): Parameters<EchoArgs>) -> String {
        text
    }
}

#[tool_handler(router = self.tool_router, name = "rmcp_layer", version = "0.1.0")]
impl ServerHandler for Notes {}

/// The layer: these API keys, loopback `Host` names only (the default), audit records to
/// `tracing`.
pub fn layer(keys: ApiKeys) -> Result<GatekeeperLayer, ConfigError> {
    let mut layer = GatekeeperLayer::builder().authenticate(keys);
    // Counted when the process serves metrics (`METRICS_BIND`).
    if let Some(metrics) = mcp_gatekeeper::metrics::PrometheusMetrics::installed() {
        layer = layer.metrics(&metrics, "rmcp_layer");
    }
    layer.build()
}

/// rmcp's service at `/mcp`, not yet behind the layer. `shutdown` ends its sessions.
pub fn mcp_routes(stateless: bool, shutdown: &CancellationToken) -> Router {
    // The layer checks `Host` (and `Origin`) once; rmcp's own copy of the check can go.
    let config = StreamableHttpServerConfig::default()
        .disable_allowed_hosts()
        .with_cancellation_token(shutdown.child_token());
    if stateless {
        let config = config
            .with_legacy_session_mode(false)
            .with_json_response(true);
        let service = StreamableHttpService::new(
            || Ok(Notes::default()),
            Arc::new(NeverSessionManager::default()),
            config,
        );
        Router::new().route_service("/mcp", service)
    } else {
        let service = StreamableHttpService::new(
            || Ok(Notes::default()),
            Arc::new(LocalSessionManager::default()),
            config,
        );
        Router::new().route_service("/mcp", service)
    }
}

/// `GET /whoami`: an axum handler taking the caller. Without the layer in front, the
/// `Principal` extractor refuses the request (`401`).
pub async fn whoami(caller: Principal) -> String {
    caller.subject().to_owned()
}

/// The whole app: `/mcp` and `/whoami`, both behind the layer. `route_layer` wraps the routes
/// only, so an unknown path is still a plain `404`.
pub fn app(
    keys: ApiKeys,
    stateless: bool,
    shutdown: &CancellationToken,
) -> Result<Router, ConfigError> {
    Ok(mcp_routes(stateless, shutdown)
        .route("/whoami", get(whoami))
        .route_layer(layer(keys)?))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let _telemetry = telemetry::init()?;
    let bind = std::env::var("BIND").unwrap_or_else(|_| "127.0.0.1:3000".into());
    // Bound before anything is printed: port 0 then prints the port chosen.
    let listener = tokio::net::TcpListener::bind(&bind).await?;
    let mut local = listener.local_addr()?;
    if local.ip().is_unspecified() {
        local.set_ip(match local.ip() {
            std::net::IpAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::IpAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    // A generated key is printed (it dies with the process); a configured one never is.
    let (keys, demo_key) = match std::env::var("MCP_API_KEYS") {
        Ok(_) => (ApiKeys::from_env("MCP_API_KEYS")?, None),
        Err(_) => {
            let key = format!(
                "layer-{}",
                hex::encode(rand::random::<[u8; 12]>().as_slice())
            );
            (ApiKeys::parse_env_value(&key)?, Some(key))
        }
    };
    let stateless = std::env::var("STATELESS").is_ok_and(|v| v == "1");
    // Prometheus metrics on a listener of their own, for a scraper only (before the layer is
    // built, which counts in them).
    let _metrics = match std::env::var("METRICS_BIND").ok().filter(|v| !v.is_empty()) {
        Some(bind) => {
            let metrics = mcp_gatekeeper::metrics::PrometheusMetrics::install()?;
            let scrape = metrics.bind(&bind).await?;
            println!("metrics on http://{}/metrics", scrape.local_addr());
            Some(scrape)
        }
        None => None,
    };
    let shutdown = CancellationToken::new();
    let app = app(keys, stateless, &shutdown)?;

    println!("rmcp_layer: MCP endpoint http://{local}/mcp, and GET http://{local}/whoami");
    let inspector = format!(
        "npx -y @modelcontextprotocol/inspector --cli http://{local}/mcp --transport http --method tools/call --tool-name whoami"
    );
    match demo_key {
        Some(key) => {
            println!("demo mode: MCP_API_KEYS is not set; this run's key: {key}");
            println!("\ntry it from another shell (MCP Inspector, Node >= 22.19):");
            println!("  {inspector} --header 'X-API-Key: {key}'");
            println!("  curl -s http://{local}/whoami -H 'X-API-Key: {key}'");
        }
        None => println!("API keys from MCP_API_KEYS"),
    }
    println!("\nlistening on {}", listener.local_addr()?);
    // The client's address (`ConnectInfo`) is what the layer's failure throttle counts by.
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        mcp_gatekeeper::shutdown_signal().await;
        // Ends rmcp's sessions, whose open SSE streams would otherwise keep serving.
        shutdown.cancel();
    })
    .await?;
    Ok(())
}
