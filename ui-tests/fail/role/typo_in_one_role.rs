// Issue 15: a typo in one role is one error, at the literal; nothing where the tools are served.
use mcp_gatekeeper::prelude::*;

#[derive(Roles)]
enum Role {
    Reader,
    Writer,
    Owner,
}

#[derive(Default)]
struct Notes;

#[mcp_tools(roles = Role)]
impl Notes {
    /// List the notes.
    #[mcp_tool(role = "reader")]
    async fn list(&self) -> String {
        String::new()
    }

    /// Add a note.
    #[mcp_tool(role = "writer", rate = 10)]
    async fn add(&self, text: String) -> String {
        text
    }

    /// Delete every note.
    #[mcp_tool(role = "ownr")]
    async fn clear(&self, _proof: Granted<Owner>) -> &'static str {
        "cleared"
    }
}

fn main() {
    let _server = Gatekeeper::new(Notes::default());
}
