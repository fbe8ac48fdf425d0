//! The smallest secured MCP server: one tool, API keys from the environment.
//!
//! ```text
//! cargo run --example hello
//! ```
//!
//! Configuration (environment, all optional):
//! - `MCP_API_KEYS`: comma-separated API keys (at least 16 characters each); when unset, one is
//!   generated for this run and printed with a command line that uses it;
//! - `BIND`: the address to listen on (default `127.0.0.1:3000`; port 0 picks a free port);
//! - `STATELESS=1`: plain JSON replies, no sessions;
//! - `METRICS_BIND`: serve Prometheus metrics on this address (e.g. `127.0.0.1:9100`), at
//!   `/metrics`;
//! - `OTEL_TRACES_EXPORTER=console`: print the gatekeeper's OpenTelemetry spans on stdout.
//!
//! (`MCP_RESOURCE`, the third variable every example shares, is about token audiences; this
//! server takes API keys only.)

use mcp_gatekeeper::prelude::*;

#[path = "telemetry.rs"]
mod telemetry;

/// Greets people.
pub struct Hello;

#[mcp_tools]
impl Hello {
    /// Say hello to someone.
    ///
    /// # Arguments
    /// * `name` - Who to greet.
    #[mcp_tool(public, read_only)]
    async fn hello(&self, name: String) -> String {
        format!("Hello, {name}!")
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Logs on stderr; OTEL_TRACES_EXPORTER=console prints the gatekeeper's spans too.
    let _telemetry = telemetry::init()?;
    let bind = std::env::var("BIND").unwrap_or_else(|_| "127.0.0.1:3000".into());
    // Bound before anything is printed: port 0 then prints the port chosen, and a port in use
    // fails before a key scrolls by.
    let listener = tokio::net::TcpListener::bind(&bind).await?;
    let mut local = listener.local_addr()?;
    if local.ip().is_unspecified() {
        local.set_ip(match local.ip() {
            std::net::IpAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::IpAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let url = format!("http://{local}/mcp");
    // A generated key is printed (it dies with the process); a configured one never is, since
    // it is a live credential that must not end up in a terminal's scrollback or a log.
    let (keys, demo_key) = match std::env::var("MCP_API_KEYS") {
        Ok(_) => (ApiKeys::from_env("MCP_API_KEYS")?, None),
        Err(_) => {
            let key = format!(
                "hello-{}",
                hex::encode(rand::random::<[u8; 12]>().as_slice())
            );
            (ApiKeys::parse_env_value(&key)?, Some(key))
        }
    };
    println!("hello: MCP endpoint {url}");
    let inspector = format!(
        "npx -y @modelcontextprotocol/inspector --cli {url} --transport http --method tools/call --tool-name hello --tool-arg name=World"
    );
    match demo_key {
        Some(key) => {
            println!("demo mode: MCP_API_KEYS is not set; this run's key: {key}");
            println!("\ntry it from another shell (MCP Inspector, Node >= 22.19):");
            println!("  {inspector} --header 'X-API-Key: {key}'");
        }
        None => {
            println!("{} API key(s) from MCP_API_KEYS", keys.len());
            println!(
                "\ntry it from another shell (MCP Inspector, Node >= 22.19; asks for one of your keys):"
            );
            println!(
                "  read -rsp 'API key: ' KEY && echo && {inspector} --header \"X-API-Key: $KEY\""
            );
        }
    }
    // Prometheus metrics on a listener of their own, for a scraper only.
    let metrics = match std::env::var("METRICS_BIND") {
        Ok(bind) => {
            let metrics = mcp_gatekeeper::metrics::PrometheusMetrics::install()?;
            let scrape = metrics.bind(&bind).await?;
            println!("metrics on http://{}/metrics", scrape.local_addr());
            Some(metrics)
        }
        Err(_) => None,
    };
    println!("\nlistening on {}", listener.local_addr()?);
    // The example lives in the mcp-gatekeeper package, whose name the tools would otherwise
    // announce; a server in its own crate announces that crate's name and version by default.
    let mut server = Gatekeeper::new(Hello)
        .server_info("hello", env!("CARGO_PKG_VERSION"))
        .authenticate(keys);
    if std::env::var("STATELESS").is_ok_and(|v| v == "1") {
        server = server.stateless();
    }
    if let Some(metrics) = &metrics {
        server = server.metrics(metrics);
    }
    let running = server.serve_on(listener)?;
    let stop = running.shutdown_handle();
    tokio::spawn(async move {
        mcp_gatekeeper::shutdown_signal().await;
        stop.cancel();
    });
    running.wait().await?;
    Ok(())
}
