use mcp_gatekeeper::prelude::*;

struct Tools;

#[mcp_tools]
impl Tools {
    /// Read.
    #[mcp_tool(public)]
    async fn read(&self, Args(list): Args<Vec<i32>>) -> String {
        format!("{list:?}")
    }
}

fn main() {}
