// `lead` includes `writer`, but not `reader`.
use mcp_gatekeeper::{McpTools, prelude::*};

#[derive(Roles)]
enum Role {
    Reader,
    Writer,
    #[role(includes(writer))]
    Lead,
    #[role(includes(lead, reader))]
    Admin,
}

struct Tools;

#[mcp_tools(roles = Role)]
impl Tools {
    /// Review.
    #[mcp_tool(role = "lead")]
    async fn review(&self, _proof: Granted<Reader>) {}
}

fn main() {
    let _server = Gatekeeper::new(Tools).authenticate(ApiKeys::new());
    let _scopes = Tools::declared_scopes();
}
