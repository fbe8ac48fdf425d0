use mcp_gatekeeper::prelude::*;

#[derive(Roles)]
enum Role {
    Viewer,
    Admin,
}

struct Tools;

#[mcp_tools(roles = Role)]
impl Tools {
    /// Read.
    #[mcp_tool(scope = "data:read")]
    async fn read(&self, _proof: Granted<Viewer>) {}
}

fn main() {}
