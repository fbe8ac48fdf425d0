use mcp_gatekeeper::prelude::*;

struct Tools;

#[mcp_tools]
impl Tools {
    /// Read.
    #[mcp_tool(public, name = "read")]
    async fn read_v1(&self) {}

    /// Read, again.
    #[mcp_tool(public, name = "read")]
    async fn read_v2(&self) {}
}

fn main() {}
