use mcp_gatekeeper::prelude::*;

struct SearchArgs {
    pattern: String,
}

struct Tools;

#[mcp_tools]
impl Tools {
    /// Search.
    #[mcp_tool(public)]
    async fn search(&self, Args(args): Args<SearchArgs>) -> String {
        args.pattern
    }
}

fn main() {}
