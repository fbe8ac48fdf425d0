//! Serving the tools over HTTP, in the order a request meets it: the accept loop and its
//! limits (`serve`), the client certificate a trusted proxy forwards (`forwarded_certificate`)
//! and the client's address behind trusted proxies (`forwarded`), the MCP endpoint
//! (`endpoint`) with its `Host`/`Origin` guard (`host_guard`), authentication and session
//! binding (`authenticate`, `sessions`), then rmcp and the tool dispatcher (`crate::tools`).
//! Around it: the builder (`builder`) and the health endpoints (`health`). The same
//! authentication for any service: the public layer (`layer`) and the caller's extractors
//! (`extract`).

mod authenticate;
mod builder;
mod endpoint;
mod extract;
mod forwarded;
#[cfg(feature = "mtls")]
mod forwarded_certificate;
pub mod health;
mod host_guard;
pub mod layer;
mod serve;
mod sessions;

pub use builder::{Gatekeeper, RunningServer, ServeError, shutdown_signal};
pub use extract::MissingPrincipal;
pub use forwarded::PeerAddr;
#[cfg(feature = "mtls")]
pub use forwarded_certificate::ForwardedCertificate;
#[cfg(any(feature = "oauth", feature = "redis"))]
pub(crate) use health::ReadinessCheck;
pub use layer::GatekeeperLayer;
pub use serve::ConnectionLimits;
pub use sessions::SessionLimits;
#[cfg(feature = "redis")]
pub use sessions::redis::RedisSessions;
