// A crate that re-exports mcp-gatekeeper under another path names it with `crate = "..."`.
mod facade {
    pub use mcp_gatekeeper as gatekeeper;
}

use facade::gatekeeper::{Granted, McpTools, Roles, mcp_tool, mcp_tools};

#[derive(Roles)]
#[roles(crate = "crate::facade::gatekeeper")]
enum Role {
    Viewer,
    Admin,
}

struct Tools;

#[mcp_tools(crate = "crate::facade::gatekeeper", roles = Role)]
impl Tools {
    /// Read.
    #[mcp_tool(role = "viewer", scope = "notes:read")]
    async fn read(&self, key: String) -> String {
        key
    }

    /// Wipe (the attribute may be named through the facade too).
    #[crate::facade::gatekeeper::mcp_tool(role = "admin", scope = "notes:write")]
    async fn wipe(&self, _proof: Granted<Admin>) {}

    /// Anyone.
    #[mcp_tool(public)]
    fn ping(&self) -> &'static str {
        "pong"
    }
}

fn main() {
    assert_eq!(Tools::declared_scopes(), ["notes:read", "notes:write"]);
    assert_eq!(Role::Admin.name(), "admin");
    assert!(Role::Admin.includes(&Role::Viewer));
    let _ = facade::gatekeeper::Gatekeeper::new(Tools);
}
