use mcp_gatekeeper::prelude::*;

#[derive(Roles)]
enum Role {
    #[role(includes(admin))]
    Editor,
    #[role(includes(editor))]
    Admin,
}

fn main() {}
