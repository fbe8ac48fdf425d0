// The impl block and `McpTools` survive an attribute error: calling the method and serving the
// tools add no error of their own.
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
    async fn read(&self, key: String) -> String {
        key
    }
}

fn main() {
    let _ = Tools.read(String::new());
    let _server = Gatekeeper::new(Tools).authenticate(ApiKeys::new());
    let _scopes = Tools::declared_scopes();
}
