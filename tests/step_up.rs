//! The MCP server as an OAuth protected resource: RFC 9728 metadata, challenges that point to
//! it, and `403 insufficient_scope` step-up decided before the tool runs, on every version.

use mcp_gatekeeper::{Gatekeeper, Jwt, ProtectedResource, ScopeHierarchy, prelude::*};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::common::*;

/// Notes, guarded by roles and scopes.
#[derive(Roles)]
pub enum Role {
    /// A member.
    Member,
    /// The owner.
    Owner,
}

pub struct Notes;

#[mcp_tools(roles = Role)]
impl Notes {
    /// Read the notes.
    #[mcp_tool(scope = "notes:read")]
    fn read(&self) -> &'static str {
        "nothing yet"
    }

    /// Write a note.
    #[mcp_tool(role = "member", scope = "notes:read notes:write")]
    fn write(&self, text: String) -> String {
        format!("noted: {text}")
    }

    /// Delete every note.
    #[mcp_tool(role = "owner", scope = "notes:admin")]
    fn purge(&self) -> &'static str {
        "purged"
    }
}

async fn start_notes(stateless: bool) -> Server {
    start_notes_with(stateless, ScopeHierarchy::new()).await
}

async fn start_notes_with(stateless: bool, hierarchy: ScopeHierarchy) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let resource = ProtectedResource::new(&format!("{base}/mcp"))
        .unwrap()
        .authorization_server("https://auth.example.com")
        .name("Notes");
    let mut gatekeeper = Gatekeeper::new(Notes)
        .authenticate(
            Jwt::hs256(SECRET)
                .unwrap()
                .issuer(ISSUER)
                .audience(RESOURCE),
        )
        .protected_resource(resource)
        .scope_hierarchy(hierarchy);
    if stateless {
        gatekeeper = gatekeeper.stateless();
    }
    let running = gatekeeper.serve_on(listener).unwrap();
    Server {
        url: format!("{base}/mcp"),
        base,
        running,
    }
}

fn token(role: &str, scope: &str) -> Cred {
    Cred::Bearer(jwt_with(json!({
        "sub": format!("{role}-user"), "role": role, "scope": scope, "iss": ISSUER, "aud": RESOURCE, "exp": now() + 600,
    })))
}

#[tokio::test]
async fn protected_resource_metadata_is_served_at_both_well_known_urls() {
    let server = start_notes(false).await;
    let http = reqwest::Client::new();
    let get = |path: String| http.get(format!("{}{path}", server.base)).send();
    let response = get("/.well-known/oauth-protected-resource/mcp".into())
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["access-control-allow-origin"], "*");
    let doc: Value = response.json().await.unwrap();
    assert_eq!(doc["resource"], server.url.as_str());
    assert_eq!(
        doc["authorization_servers"],
        json!(["https://auth.example.com"])
    );
    assert_eq!(
        doc["scopes_supported"],
        json!(["notes:admin", "notes:read", "notes:write"])
    );
    assert_eq!(doc["bearer_methods_supported"], json!(["header"]));
    assert_eq!(doc["resource_name"], "Notes");
    let root: Value = get("/.well-known/oauth-protected-resource".into())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(root["resource"], server.base.as_str());
    server.stop().await;
}

#[tokio::test]
async fn the_401_challenge_points_to_the_metadata() {
    let server = start_notes(false).await;
    let mcp = Mcp::new(&server.url, Cred::None, Version::V2025_11_25);
    let reply = mcp.request("initialize", json!({ "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": { "name": "t", "version": "0" } })).await;
    assert_eq!(reply.status, 401);
    assert_eq!(
        reply.header("www-authenticate").unwrap(),
        format!(
            "Bearer realm=\"mcp\", resource_metadata=\"{}/.well-known/oauth-protected-resource/mcp\", scope=\"notes:admin notes:read notes:write\"",
            server.base
        )
    );
    let expired = Mcp::new(
        &server.url,
        Cred::Bearer(jwt_with(
            json!({ "sub": "x", "iss": ISSUER, "aud": RESOURCE, "exp": now() - 600 }),
        )),
        Version::V2025_11_25,
    );
    let reply = expired.request("tools/list", json!({})).await;
    let challenge = reply.header("www-authenticate").unwrap();
    assert!(
        challenge.contains("resource_metadata=") && challenge.contains("error=\"invalid_token\""),
        "{challenge}"
    );
    server.stop().await;
}

#[tokio::test]
async fn missing_scopes_are_a_403_step_up_on_every_version() {
    for stateless in [false, true] {
        let server = start_notes(stateless).await;
        for version in VERSIONS {
            let reader = Mcp::connect(&server.url, token("member", "notes:read"), version).await;
            let reply = reader.call("write", json!({ "text": "hi" })).await;
            assert_eq!(
                reply.status, 403,
                "{version:?} stateless={stateless}: {reply:#?}"
            );
            let challenge = reply.header("www-authenticate").unwrap();
            assert!(
                challenge.starts_with("Bearer error=\"insufficient_scope\""),
                "{challenge}"
            );
            assert!(
                challenge.contains("scope=\"notes:read notes:write\""),
                "{challenge}"
            );
            assert!(challenge.contains(&format!(
                "resource_metadata=\"{}/.well-known/oauth-protected-resource/mcp\"",
                server.base
            )));
            assert_eq!(reply.json_body()["error"], "insufficient_scope");
            // With the scopes, the same caller gets through.
            let writer = Mcp::connect(
                &server.url,
                token("member", "notes:read notes:write"),
                version,
            )
            .await;
            assert_eq!(
                writer.call("write", json!({ "text": "hi" })).await.text(),
                "noted: hi"
            );
            assert_eq!(reader.call("read", json!({})).await.text(), "nothing yet");
        }
        server.stop().await;
    }
}

#[tokio::test]
async fn a_missing_role_is_not_a_step_up() {
    let server = start_notes(true).await;
    let member = Mcp::connect(
        &server.url,
        token("member", "notes:admin"),
        Version::V2025_11_25,
    )
    .await;
    let reply = member.call("purge", json!({})).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.error()["data"]["reason"], "missing_role");
    server.stop().await;
}

#[tokio::test]
async fn a_lying_mcp_name_header_on_an_old_version_is_not_trusted() {
    let server = start_notes(true).await;
    let reader = Mcp::connect(
        &server.url,
        token("member", "notes:read"),
        Version::V2025_06_18,
    )
    .await;
    let body = json!({ "jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": { "name": "write", "arguments": { "text": "x" } } });
    let mut headers = reader.base_headers(None);
    headers.insert("mcp-method", "tools/call".parse().unwrap());
    headers.insert("mcp-name", "read".parse().unwrap());
    let response = reader
        .http
        .post(&server.url)
        .headers(headers)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    server.stop().await;
}

#[tokio::test]
async fn tools_list_accounts_for_scopes() {
    let server = start_notes(true).await;
    let reader = Mcp::connect(
        &server.url,
        token("member", "notes:read"),
        Version::V2025_11_25,
    )
    .await;
    assert_eq!(reader.list().await, ["read"]);
    let owner = Mcp::connect(
        &server.url,
        token("owner", "notes:read notes:write notes:admin"),
        Version::V2025_11_25,
    )
    .await;
    let mut all = owner.list().await;
    all.sort();
    assert_eq!(all, ["purge", "read", "write"]);
    server.stop().await;
}

#[tokio::test]
async fn the_step_up_challenge_keeps_the_scopes_the_token_holds() {
    let server = start_notes(true).await;
    let reader = Mcp::connect(
        &server.url,
        token("member", "notes:read calendar:read"),
        Version::V2026_07_28,
    )
    .await;
    let reply = reader.call("write", json!({ "text": "hi" })).await;
    assert_eq!(reply.status, 403);
    let challenge = reply.header("www-authenticate").unwrap();
    // What the token has, then what the tool adds: a client re-authorizing with exactly this
    // list loses nothing it could do before.
    assert!(
        challenge.contains("scope=\"calendar:read notes:read notes:write\""),
        "{challenge}"
    );
    assert!(
        challenge
            .contains("error_description=\"tool `write` requires scope `notes:read notes:write`\""),
        "{challenge}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_broader_scope_includes_the_narrower_ones() {
    let hierarchy = ScopeHierarchy::new()
        .include("notes", ["notes:read", "notes:write"])
        .include("owner-all", ["notes", "notes:admin"]);
    let server = start_notes_with(true, hierarchy).await;
    let broad = Mcp::connect(&server.url, token("member", "notes"), Version::V2026_07_28).await;
    let mut listed = broad.list().await;
    listed.sort();
    assert_eq!(listed, ["read", "write"]);
    assert_eq!(
        broad.call("write", json!({ "text": "hi" })).await.text(),
        "noted: hi"
    );
    // Transitive; and scopes never stand in for a role.
    let owner = Mcp::connect(
        &server.url,
        token("owner", "owner-all"),
        Version::V2026_07_28,
    )
    .await;
    assert_eq!(owner.call("purge", json!({})).await.text(), "purged");
    assert_eq!(owner.call("read", json!({})).await.text(), "nothing yet");
    // A narrower scope never includes a broader one.
    let narrow = Mcp::connect(
        &server.url,
        token("owner", "notes:admin"),
        Version::V2026_07_28,
    )
    .await;
    assert_eq!(
        narrow.call("write", json!({ "text": "x" })).await.status,
        403
    );
    // The metadata lists the broader scopes too, the 401 challenge only what the tools need.
    let metadata: Value = reqwest::get(format!(
        "{}/.well-known/oauth-protected-resource/mcp",
        server.base
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let mut supported: Vec<&str> = metadata["scopes_supported"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    supported.sort_unstable();
    assert_eq!(
        supported,
        [
            "notes",
            "notes:admin",
            "notes:read",
            "notes:write",
            "owner-all"
        ]
    );
    server.stop().await;
}
