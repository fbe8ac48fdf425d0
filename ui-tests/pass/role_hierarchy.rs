// A non-linear hierarchy: `reader` and `writer` are unrelated, `lead` includes `writer`, and
// `admin` includes `lead` (so `writer` too) and `reader`.
use mcp_gatekeeper::prelude::*;

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
    /// A role grants itself.
    #[mcp_tool(role = "writer")]
    async fn write(&self, _proof: Granted<Writer>) {}

    /// `lead` includes `writer` directly.
    #[mcp_tool(role = "lead")]
    async fn review(&self, _lead: Granted<Lead>, _writer: Granted<Writer>) {}

    /// `admin` includes `writer` through `lead`, and `reader` directly.
    #[mcp_tool(role = "admin")]
    async fn administer(&self, _writer: Granted<Writer>, _reader: Granted<Reader>) {}
}

fn main() {}
