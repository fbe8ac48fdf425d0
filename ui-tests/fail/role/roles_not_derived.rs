// `roles = ...` must name an enum with `#[derive(Roles)]`; the impl block and `McpTools` survive
// the error.
use mcp_gatekeeper::{McpTools, prelude::*};

enum Role {
    Viewer,
}

struct Tools;

#[mcp_tools(roles = Role)]
impl Tools {
    /// Read.
    #[mcp_tool(role = "viewer")]
    fn read(&self) -> &'static str {
        "x"
    }
}

fn main() {
    let _ = Tools.read();
    let _ = Role::Viewer;
    let _server = Gatekeeper::new(Tools).authenticate(ApiKeys::new());
    let _scopes = Tools::declared_scopes();
}
