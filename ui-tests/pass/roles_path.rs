use mcp_gatekeeper::prelude::*;

mod auth {
    use mcp_gatekeeper::Roles;

    #[derive(Roles)]
    pub enum Role {
        Viewer,
        Admin,
    }
}

struct Tools;

#[mcp_tools(roles = crate::auth::Role)]
impl Tools {
    /// The roles enum can live in another module.
    #[mcp_tool(role = "admin")]
    async fn wipe(&self, _proof: Granted<auth::Admin>, _caller: Caller<auth::Role>) {}
}

fn main() {}
