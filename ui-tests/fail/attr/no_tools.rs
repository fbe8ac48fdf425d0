use mcp_gatekeeper::{McpTools, prelude::*};

struct Tools;

#[mcp_tools]
impl Tools {
    /// Not a tool: it has no `#[mcp_tool]`.
    async fn read(&self) {}
}

fn main() {
    let _server = Gatekeeper::new(Tools).authenticate(ApiKeys::new());
    let _scopes = Tools::declared_scopes();
}
