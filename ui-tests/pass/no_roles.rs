// Without `roles = ...`, tools are public or guarded by scopes.
use mcp_gatekeeper::prelude::*;

struct Tools;

#[mcp_tools]
impl Tools {
    /// Anyone may call this.
    #[mcp_tool(public)]
    async fn ping(&self) -> &'static str {
        "pong"
    }

    /// Needs a scope.
    #[mcp_tool(scope = "data:read", rate = 10)]
    async fn read(&self, key: String) -> String {
        key
    }
}

fn main() {}
