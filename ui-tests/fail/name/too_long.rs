use mcp_gatekeeper::prelude::*;

struct Tools;

#[mcp_tools]
impl Tools {
    /// Read.
    #[mcp_tool(
        public,
        name = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
    )]
    async fn read(&self) -> String {
        String::new()
    }
}

fn main() {}
