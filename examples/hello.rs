//! The smallest secured MCP server: one tool, API keys from the environment.
//!
//! ```text
//! MCP_API_KEYS="hello-key-0123456789" cargo run --example hello
//! ```

use mcp_gatekeeper::prelude::*;

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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,mcp_gatekeeper::audit=info".into()),
        )
        .init();
    let bind = std::env::var("BIND").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let keys = ApiKeys::from_env("MCP_API_KEYS")?;
    println!(
        "hello: MCP endpoint http://{bind}/mcp ({} API key(s) from MCP_API_KEYS)",
        keys.len()
    );
    println!(
        "try:   npx @modelcontextprotocol/inspector --cli http://{bind}/mcp --transport http --header \"X-API-Key: $MCP_API_KEYS\" --method tools/call --tool-name hello --tool-arg name=World"
    );
    Gatekeeper::new(Hello)
        .authenticate(keys)
        .serve(bind)
        .await?;
    Ok(())
}
