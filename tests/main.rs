//! Integration tests: the example servers on ephemeral loopback ports, real HTTP, real clients.

#![allow(unreachable_pub, missing_docs)]

#[path = "../examples/oauth.rs"]
#[allow(dead_code, unreachable_pub)]
mod oauth_example;

// The RBAC example, through the OAuth example that builds on it (a file is compiled once).
use oauth_example::rbac;

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
mod interop;
mod layer;
mod oauth;
mod python_sdk;
mod readme;
mod rmcp_client;
mod step_up;
mod token_endpoint;
mod transport;
