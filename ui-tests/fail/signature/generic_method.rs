use mcp_gatekeeper::prelude::*;

struct Tools;

#[mcp_tools]
impl Tools {
    /// Read.
    #[mcp_tool(public)]
    async fn read<T: Default>(&self) -> String {
        String::new()
    }
}

fn main() {}
