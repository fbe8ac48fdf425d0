use mcp_gatekeeper::prelude::*;

struct Tools;

#[mcp_tools]
impl Tools {
    /// Search the store.
    ///
    /// # Arguments
    /// * `query` - What to look for.
    /// * `limit` - At most this many results.
    #[mcp_tool(public)]
    async fn search(
        &self,
        query: String,
        #[arg(description = "Skip this many results.")] offset: u32,
        limit: u32,
    ) -> String {
        format!("{query} {offset} {limit}")
    }
}

fn main() {}
