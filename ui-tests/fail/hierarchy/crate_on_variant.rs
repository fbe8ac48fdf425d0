use facade::gatekeeper::{McpTools, prelude::*};

mod facade {
    pub use mcp_gatekeeper as gatekeeper;
}

#[derive(Roles)]
enum Role {
    Viewer,
    #[role(crate = "crate::facade::gatekeeper")]
    Admin,
}

struct Tools;

#[mcp_tools(crate = "crate::facade::gatekeeper", roles = Role)]
impl Tools {
    /// Administer.
    #[mcp_tool(role = "admin")]
    async fn administer(&self, _proof: Granted<Admin>) {}
}

fn main() {
    let _server = Gatekeeper::new(Tools).authenticate(ApiKeys::new());
    let _scopes = Tools::declared_scopes();
}
