use mcp_gatekeeper::prelude::*;

#[derive(Roles)]
enum Role {
    Viewer,
    Admin { level: u8 },
}

fn main() {}
