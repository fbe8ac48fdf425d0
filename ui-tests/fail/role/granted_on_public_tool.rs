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
    #[mcp_tool(public)]
    async fn read(&self, _proof: Granted<Viewer>) -> String {
        String::new()
    }
}

fn main() {}
