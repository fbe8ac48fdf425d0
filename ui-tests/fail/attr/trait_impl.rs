use mcp_gatekeeper::{McpTools, prelude::*};

struct Tools;

#[mcp_tools]
impl Default for Tools {
    fn default() -> Self {
        Tools
    }
}

fn main() {
    let _server = Gatekeeper::new(Tools).authenticate(ApiKeys::new());
    let _scopes = Tools::declared_scopes();
}
