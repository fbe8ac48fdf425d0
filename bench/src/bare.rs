//! The baseline: a bare rmcp 3.11 server with the same one tool and no authentication.
//!
//! The tool router is built once and stored in a field (`#[tool_handler(router =
//! self.tool_router)]`), behind an `Arc` so the per-request service clone of stateless mode
//! costs one reference count, as `GatekeeperService`'s does.

use std::sync::Arc;

use axum::Router;
use rmcp::{
    ServerHandler,
    handler::server::{router::tool::ToolRouter, wrapper::Parameters},
    schemars::{self, JsonSchema},
    tool, tool_handler, tool_router,
    transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService,
        session::{local::LocalSessionManager, never::NeverSessionManager},
    },
};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use mcp_gatekeeper::shutdown_signal as stop_signal;

use crate::{Options, listen, write_credential};

/// The arguments of `echo`.
#[derive(Deserialize, JsonSchema)]
struct EchoArgs {
    /// The text to echo.
    text: String,
}

/// The bare server: its tool router, built once.
#[derive(Clone)]
struct Bare {
    tool_router: Arc<ToolRouter<Bare>>,
}

#[tool_router]
impl Bare {
    fn new() -> Self {
        Self {
            tool_router: Arc::new(Self::tool_router()),
        }
    }

    /// Echo the text back.
    #[tool(description = "Echo the text back.")]
    async fn echo(&self, Parameters(EchoArgs { text }): Parameters<EchoArgs>) -> String {
        text
    }
}

#[tool_handler(router = self.tool_router, name = "bench-bare", version = "0.1.0")]
impl ServerHandler for Bare {}

/// Serves the bare rmcp server until SIGTERM.
pub(crate) async fn run(options: &Options) -> Result<(), String> {
    write_credential(options, "")?;
    let shutdown = CancellationToken::new();
    let server = Bare::new();
    let factory = move || Ok(server.clone());
    let mut config =
        StreamableHttpServerConfig::default().with_cancellation_token(shutdown.child_token());
    if options.any_host {
        config = config.disable_allowed_hosts();
    }
    let app = if options.stateful {
        Router::new().route_service(
            "/mcp",
            StreamableHttpService::new(factory, Arc::new(LocalSessionManager::default()), config),
        )
    } else {
        Router::new().route_service(
            "/mcp",
            StreamableHttpService::new(
                factory,
                Arc::new(NeverSessionManager::default()),
                config
                    .with_legacy_session_mode(false)
                    .with_json_response(true),
            ),
        )
    };
    let listener = listen(options).await?;
    let graceful = shutdown.clone();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            stop_signal().await;
            graceful.cancel();
        })
        .await
        .map_err(|e| format!("server error: {e}"))
}
