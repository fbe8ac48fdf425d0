use mcp_gatekeeper::{McpTools, prelude::*};

struct Tools;

#[mcp_tools]
impl Tools {
    /// Read.
    #[mcp_tool(public, concurrency = -2)]
    async fn read(&self) -> String {
        String::new()
    }
}

fn main() {
    let _server = Gatekeeper::new(Tools).authenticate(ApiKeys::new());
    let _scopes = Tools::declared_scopes();
}
