use mcp_gatekeeper::prelude::*;
use schemars::JsonSchema;
use serde::Deserialize;

#[derive(Deserialize, JsonSchema)]
struct WriteArgs {
    /// Key to write.
    key: String,
    /// Value to store.
    value: String,
}

struct Tools;

#[mcp_tools]
impl Tools {
    /// All arguments as one struct, destructured in the signature.
    #[mcp_tool(scope = "data:write")]
    async fn write(&self, Args(args): Args<WriteArgs>) -> String {
        format!("{} = {}", args.key, args.value)
    }

    /// Or taken whole.
    #[mcp_tool(scope = "data:write")]
    async fn write_again(&self, args: Args<WriteArgs>) -> String {
        args.0.key
    }
}

fn main() {}
