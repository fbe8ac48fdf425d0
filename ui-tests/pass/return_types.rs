use mcp_gatekeeper::prelude::*;
use schemars::JsonSchema;
use serde::Serialize;

#[derive(Serialize, JsonSchema)]
struct Receipt {
    key: String,
}

struct Tools;

#[mcp_tools]
impl Tools {
    /// `String`.
    #[mcp_tool(public)]
    async fn string(&self) -> String {
        String::new()
    }

    /// `&'static str`.
    #[mcp_tool(public)]
    async fn static_str(&self) -> &'static str {
        "ok"
    }

    /// `()`, written out.
    #[mcp_tool(public)]
    async fn unit(&self) -> () {}

    /// `()`, implicit.
    #[mcp_tool(public)]
    async fn nothing(&self) {}

    /// Structured output.
    #[mcp_tool(public)]
    async fn json(&self) -> Json<Receipt> {
        Json(Receipt { key: String::new() })
    }

    /// A tool error.
    #[mcp_tool(public)]
    async fn fallible(&self) -> Result<String, ToolError> {
        Err(ToolError::new("failed"))
    }

    /// Structured output or a plain error message.
    #[mcp_tool(public)]
    async fn fallible_json(&self) -> Result<Json<Receipt>, String> {
        Err("failed".into())
    }
}

fn main() {}
