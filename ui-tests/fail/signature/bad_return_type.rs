use mcp_gatekeeper::{McpTools, prelude::*};

struct Tools;

#[mcp_tools]
impl Tools {
    /// Read.
    #[mcp_tool(public)]
    async fn read(&self) -> std::fs::File {
        std::fs::File::open("data").unwrap()
    }
}

fn main() {
    let _server = Gatekeeper::new(Tools).authenticate(ApiKeys::new());
    let _scopes = Tools::declared_scopes();
}
