use mcp_gatekeeper::prelude::*;

struct Tools;

#[mcp_tools]
impl Tools {
    /// Read.
    #[mcp_tool(public)]
    async fn read(&self) -> std::fs::File {
        std::fs::File::open("data").unwrap()
    }
}

fn main() {}
