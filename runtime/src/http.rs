//! Serving the tools over HTTP, in the order a request meets it: the accept loop and its
//! limits (`serve`), the client's address behind trusted proxies (`forwarded`), the MCP
//! endpoint (`endpoint`) with its `Host`/`Origin` guard (`host_guard`), authentication and
//! session binding (`authenticate`, `sessions`), then rmcp and the tool dispatcher
//! (`crate::tools`). Around it: the builder (`builder`) and the health endpoints (`health`).

mod authenticate;
mod builder;
mod endpoint;
mod forwarded;
pub mod health;
mod host_guard;
mod serve;
mod sessions;

pub use builder::{Gatekeeper, RunningServer, ServeError, shutdown_signal};
pub use forwarded::PeerAddr;
pub use serve::ConnectionLimits;
