use mcp_gatekeeper::{McpTools, prelude::*};

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

fn main() {
    let _server = Gatekeeper::new(Tools).authenticate(ApiKeys::new());
    let _scopes = Tools::declared_scopes();
}
