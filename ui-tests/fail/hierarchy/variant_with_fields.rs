// A role with fields is one error, also where the roles are used.
use mcp_gatekeeper::{McpTools, prelude::*};

#[derive(Roles)]
enum Role {
    Viewer,
    Admin { level: u8 },
}

struct Tools;

#[mcp_tools(roles = Role)]
impl Tools {
    /// Read.
    #[mcp_tool(role = "viewer")]
    async fn read(&self, _proof: Granted<Viewer>, caller: Caller<Role>) -> String {
        caller.subject().to_owned()
    }

    /// Administer.
    #[mcp_tool(role = "admin")]
    async fn administer(&self, _proof: Granted<Admin>) {}
}

/// Only for administrators.
fn wipe(_proof: &Granted<Admin>) {}

fn main() {
    let _server = Gatekeeper::new(Tools).authenticate(ApiKeys::new());
    let _scopes = Tools::declared_scopes();
    let _ = wipe;
}
