use mcp_gatekeeper::prelude::*;

struct Filter {
    pattern: String,
}

struct Tools;

#[mcp_tools]
impl Tools {
    /// Search.
    #[mcp_tool(public)]
    async fn search(&self, filter: Filter) -> String {
        filter.pattern
    }
}

fn main() {}
