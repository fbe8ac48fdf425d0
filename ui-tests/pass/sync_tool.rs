use mcp_gatekeeper::prelude::*;

struct Tools;

#[mcp_tools]
impl Tools {
    /// A tool that does not await can be a plain `fn`.
    #[mcp_tool(public)]
    fn add(&self, a: i64, b: i64) -> String {
        (a + b).to_string()
    }
}

fn main() {}
