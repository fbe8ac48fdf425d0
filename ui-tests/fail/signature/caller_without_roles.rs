use mcp_gatekeeper::{McpTools, prelude::*};

#[derive(Roles)]
enum Role {
    Viewer,
    Admin,
}

struct Tools;

// `Caller<Role>` needs `#[mcp_tools(roles = Role)]`.
#[mcp_tools]
impl Tools {
    /// Who am I?
    #[mcp_tool(public)]
    async fn whoami(&self, caller: Caller<Role>) -> String {
        caller.subject().to_owned()
    }
}

fn main() {
    let _server = Gatekeeper::new(Tools).authenticate(ApiKeys::new());
    let _scopes = Tools::declared_scopes();
}
