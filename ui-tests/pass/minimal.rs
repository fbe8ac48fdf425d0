use mcp_gatekeeper::prelude::*;

struct Tools;

#[mcp_tools]
impl Tools {
    /// Say hello.
    #[mcp_tool(public)]
    async fn hello(&self) -> String {
        "hello".into()
    }
}

fn main() {}
