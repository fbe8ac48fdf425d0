use mcp_gatekeeper::prelude::*;

#[derive(Roles)]
enum Role {
    Viewer,
    Admin,
}

struct Tools;

#[mcp_tools(role = Role)]
impl Tools {
    /// Read.
    #[mcp_tool(role = "viewer")]
    async fn read(&self) {}
}

fn main() {}
