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
    async fn read(&self, key: String) -> String {
        key
    }
}

fn main() {
    let _ = Tools.read(String::new());
}
