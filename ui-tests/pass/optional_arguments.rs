use mcp_gatekeeper::prelude::*;

struct Tools;

#[mcp_tools]
impl Tools {
    /// `Option<T>` arguments may be left out.
    #[mcp_tool(public)]
    async fn list(&self, prefix: Option<String>, limit: Option<u32>) -> String {
        format!("{prefix:?} {limit:?}")
    }
}

fn main() {}
