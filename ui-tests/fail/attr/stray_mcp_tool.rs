use mcp_gatekeeper::prelude::*;

struct Tools;

impl Tools {
    /// Read.
    #[mcp_tool(public)]
    async fn read(&self) {}
}

fn main() {}
