use mcp_gatekeeper::prelude::*;

#[mcp_tools]
fn read() {}

fn main() {}
