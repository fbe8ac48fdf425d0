use mcp_gatekeeper::{McpTools, prelude::*};

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

fn main() {
    let _server = Gatekeeper::new(Tools).authenticate(ApiKeys::new());
    let _scopes = Tools::declared_scopes();
}
