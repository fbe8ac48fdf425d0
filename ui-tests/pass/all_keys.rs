use mcp_gatekeeper::prelude::*;

#[derive(Roles)]
enum Role {
    Viewer,
    Editor,
    Admin,
}

struct Tools;

#[mcp_tools(roles = Role)]
impl Tools {
    /// Every key at once.
    #[mcp_tool(
        role = "editor",
        scope = "data:read",
        scope = "data:write audit:write",
        rate = 100,
        concurrency = 4,
        name = "write-data",
        title = "Write data",
        read_only = false,
        destructive,
        idempotent = true,
        open_world = false
    )]
    async fn write(&self) -> String {
        String::new()
    }

    /// Rates per second.
    #[mcp_tool(role = "viewer", rate = "5/s", read_only)]
    async fn per_second(&self) {}

    /// Rates per minute.
    #[mcp_tool(role = "viewer", rate = "50/min", open_world)]
    async fn per_minute(&self) {}

    /// Rates per hour.
    #[mcp_tool(role = "admin", rate = "1_000/h", idempotent = false)]
    async fn per_hour(&self) {}

    /// Rates per day.
    #[mcp_tool(scope = "reports", rate = "7/day", destructive = false)]
    async fn per_day(&self) {}
}

fn main() {}
