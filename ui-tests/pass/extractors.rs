use mcp_gatekeeper::{CancellationToken, prelude::*};

#[derive(Roles)]
enum Role {
    Viewer,
    Admin,
}

struct Tools;

#[mcp_tools(roles = Role)]
impl Tools {
    /// Who is calling, and whether the call was cancelled; extractors mix with arguments.
    #[mcp_tool(role = "viewer")]
    async fn whoami(
        &self,
        caller: Caller<Role>,
        cancel: CancellationToken,
        greeting: String,
    ) -> String {
        if cancel.is_cancelled() {
            return String::new();
        }
        format!("{greeting}, {}", caller.subject())
    }

    /// `Caller` works on public tools too.
    #[mcp_tool(public)]
    async fn public_whoami(&self, caller: Caller<Role>) -> String {
        caller.subject().to_owned()
    }
}

fn main() {}
