use mcp_gatekeeper::{McpTools, prelude::*};

#[derive(Roles)]
enum Role {
    Viewer,
    Admin,
}

struct Tools;

#[mcp_tools(role = Role)]
impl Tools {
    /// Read.
    #[mcp_tool(role = "viewer")]
    async fn read(&self) {}
}

fn main() {
    let _server = Gatekeeper::new(Tools).authenticate(ApiKeys::new());
    let _scopes = Tools::declared_scopes();
}
