// `#[roles(crate = "...")]` takes the same value as `#[mcp_tools(crate = "...")]`.
use mcp_gatekeeper::{McpTools, prelude::*};

#[derive(Roles)]
#[roles(crate = "")]
enum Role {
    Viewer,
    Admin,
}

struct Tools;

#[mcp_tools(roles = Role)]
impl Tools {
    /// Administer.
    #[mcp_tool(role = "admin")]
    async fn administer(&self, _proof: Granted<Admin>) {}
}

fn main() {
    let _server = Gatekeeper::new(Tools).authenticate(ApiKeys::new());
    let _scopes = Tools::declared_scopes();
}
