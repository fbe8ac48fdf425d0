use mcp_gatekeeper::{McpTools, prelude::*};

struct Tools;

#[mcp_tools]
impl Tools {
    /// Read.
    #[mcp_tool(public, name = "read")]
    async fn read_v1(&self) {}

    /// Read, again.
    #[mcp_tool(public, name = "read")]
    async fn read_v2(&self) {}
}

fn main() {
    let _server = Gatekeeper::new(Tools).authenticate(ApiKeys::new());
    let _scopes = Tools::declared_scopes();
}
