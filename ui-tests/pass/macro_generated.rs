// Tools whose signature is partly written by a `macro_rules!` (other hygiene contexts).
use mcp_gatekeeper::prelude::*;

struct Tools;

macro_rules! tools {
    ($($name:ident),*) => {
        #[mcp_tools]
        impl Tools {
            $(
                /// A generated tool.
                #[mcp_tool(public)]
                fn $name(&self, input: String) -> String {
                    input
                }
            )*
        }
    };
}

tools!(first, second);

fn main() {}
