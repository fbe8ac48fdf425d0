//! Integration tests: the example servers on ephemeral loopback ports, real HTTP, real clients.

#![allow(unreachable_pub, missing_docs)]
// Each example is a file of its own that includes `examples/telemetry.rs`; three of them are
// compiled here, so that file is three modules.
#![allow(clippy::duplicate_mod)]

#[path = "../examples/oidc.rs"]
#[allow(dead_code, unreachable_pub)]
mod oidc_example;

// The OAuth example through the OIDC example, and the RBAC example through the OAuth example,
// that build on them (a file is compiled once).
use oauth_example::rbac;
use oidc_example::oauth as oauth_example;

#[path = "../examples/hello.rs"]
#[allow(dead_code, unreachable_pub)]
mod hello;

#[path = "../examples/rmcp_layer.rs"]
#[allow(dead_code, unreachable_pub)]
mod rmcp_layer;

mod common;

mod abuse;
mod audit;
mod authentication;
mod authorization;
mod connections;
mod in_flight;
mod interop;
mod key_file;
mod layer;
mod metrics;
mod oauth;
mod oidc;
mod otel;
mod proxy_certificates;
mod python_sdk;
mod readme;
mod rmcp_client;
mod session_limits;
mod shared_limits;
mod step_up;
mod tls;
mod token_endpoint;
mod transport;
