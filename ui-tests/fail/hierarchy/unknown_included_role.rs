use mcp_gatekeeper::prelude::*;

#[derive(Roles)]
enum Role {
    Viewer,
    #[role(includes(viewr))]
    Admin,
}

fn main() {}
