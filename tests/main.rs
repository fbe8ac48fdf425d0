//! Integration tests: the example servers on ephemeral loopback ports, real HTTP, real clients.

#![allow(unreachable_pub, missing_docs)]

#[path = "../examples/rbac.rs"]
#[allow(dead_code, unreachable_pub)]
mod rbac;

#[path = "../examples/oauth.rs"]
#[allow(dead_code, unreachable_pub)]
mod oauth_example;

#[path = "../examples/hello.rs"]
#[allow(dead_code, unreachable_pub)]
mod hello;

mod common;

mod audit;
mod authentication;
mod authorization;
mod oauth;
mod rmcp_client;
mod step_up;
mod token_endpoint;
mod transport;
