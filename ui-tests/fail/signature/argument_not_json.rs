use mcp_gatekeeper::prelude::*;

struct Tools;

#[mcp_tools]
impl Tools {
    /// Read.
    #[mcp_tool(public)]
    async fn read(&self, file: std::fs::File) -> String {
        String::new()
    }
}

fn main() {}
