use mcp_gatekeeper::prelude::*;

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

fn main() {}
