// `roles = ...` must name an enum with `#[derive(Roles)]`; the impl block survives the error.
use mcp_gatekeeper::prelude::*;

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
}
