use mcp_gatekeeper::prelude::*;

struct Tools;

#[mcp_tools]
impl Default for Tools {
    fn default() -> Self {
        Tools
    }
}

fn main() {}
