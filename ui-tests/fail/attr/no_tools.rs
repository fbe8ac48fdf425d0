use mcp_gatekeeper::prelude::*;

struct Tools;

#[mcp_tools]
impl Tools {
    /// Not a tool: it has no `#[mcp_tool]`.
    async fn read(&self) {}
}

fn main() {}
