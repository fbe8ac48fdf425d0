use mcp_gatekeeper::{McpTools, prelude::*};

#[derive(Roles)]
enum Role {
    Viewer,
    Editor,
    Admin,
}

struct Tools;

#[mcp_tools(roles = Role)]
impl Tools {
    /// Read.
    #[mcp_tool(rol = "admin")]
    async fn read(&self) -> String {
        String::new()
    }
}

fn main() {
    let _server = Gatekeeper::new(Tools).authenticate(ApiKeys::new());
    let _scopes = Tools::declared_scopes();
}
