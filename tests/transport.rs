//! HTTP-level protections: body size, DNS rebinding (Host/Origin), and the stateless mode.

use mcp_gatekeeper::Gatekeeper;
use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn oversized_bodies_are_refused_with_413() {
    let server = start(rbac_gatekeeper().max_body_bytes(4096)).await;
    let mcp = Mcp::connect(
        &server.url,
        Cred::ApiKey(ADMIN_KEY.into()),
        Version::V2025_06_18,
    )
    .await;
    let reply = mcp
        .call(
            "write-data",
            json!({ "key": "big", "value": "x".repeat(10_000) }),
        )
        .await;
    assert_eq!(reply.status, 413, "{reply:#?}");
    let reply = mcp
        .call("write-data", json!({ "key": "small", "value": "x" }))
        .await;
    assert!(reply.result().is_object());
    server.stop().await;
}

fn rbac_gatekeeper() -> Gatekeeper<crate::rbac::DataTools> {
    crate::rbac::gatekeeper(rbac_config(false)).unwrap()
}

#[tokio::test]
async fn foreign_hosts_and_origins_are_refused() {
    let server = start(rbac_gatekeeper().allowed_origins(["http://localhost:6274"])).await;
    let http = reqwest::Client::new();
    let init = json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": { "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": { "name": "t", "version": "0" } } });
    let send = |host: Option<&'static str>, origin: Option<&'static str>| {
        let mut request = http
            .post(&server.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("x-api-key", ADMIN_KEY)
            .body(init.to_string());
        if let Some(host) = host {
            request = request.header("host", host);
        }
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        request.send()
    };
    assert_eq!(
        send(Some("evil.example.com"), None).await.unwrap().status(),
        403
    );
    // Not a host a client may name: 400, before any credential is looked at.
    for malformed in ["user@localhost", "localhost:99999", "[::1"] {
        assert_eq!(send(Some(malformed), None).await.unwrap().status(), 400);
    }
    assert_eq!(
        send(None, Some("http://localhost:6274/path"))
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        send(None, Some("http://evil.example.com"))
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        send(None, Some("http://localhost:6274"))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(send(None, None).await.unwrap().status(), 200);
    server.stop().await;

    let server = start(rbac_gatekeeper().allowed_hosts(["mcp.example.com"])).await;
    let response = http
        .post(&server.url)
        .header("host", "mcp.example.com")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("x-api-key", ADMIN_KEY)
        .body(init.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    server.stop().await;
}

#[test]
fn allow_list_entries_that_do_not_parse_stop_the_build() {
    let error = rbac_gatekeeper()
        .allowed_hosts(["mcp.example.com", "mcp example com"])
        .into_router()
        .unwrap_err();
    assert!(error.to_string().contains("mcp example com"), "{error}");
    let error = rbac_gatekeeper()
        .allowed_origins(["mcp.example.com:443"])
        .into_router()
        .unwrap_err();
    assert!(error.to_string().contains("allowed origin"), "{error}");
}

#[tokio::test]
async fn stateless_mode_answers_plain_json_without_sessions() {
    let server = start_rbac(true).await;
    let mcp = Mcp::connect(
        &server.url,
        Cred::ApiKey(ADMIN_KEY.into()),
        Version::V2025_06_18,
    )
    .await;
    assert!(mcp.session.is_none());
    let reply = mcp.call("read-data", json!({ "key": "nothing" })).await;
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert!(reply.is_tool_error());
    server.stop().await;
}

#[tokio::test]
async fn hidden_tools_answer_not_found() {
    let server = start(rbac_gatekeeper().hide_forbidden_tools()).await;
    let mcp = Mcp::connect(
        &server.url,
        Cred::ApiKey(VIEWER_KEY.into()),
        Version::V2025_06_18,
    )
    .await;
    let reply = mcp.call("delete-data", json!({ "key": "k" })).await;
    assert_eq!(reply.error_code(), Some(-32602));
    assert_eq!(reply.error()["message"], "tool not found");
    server.stop().await;
}

#[tokio::test]
async fn a_key_with_a_role_the_tools_do_not_know_stops_the_server_from_starting() {
    let keys =
        mcp_gatekeeper::ApiKeys::parse_env_value("some-key-0123456789abc:superuser").unwrap();
    let error = match crate::rbac::gatekeeper(rbac_config(false))
        .unwrap()
        .authenticate(keys)
        .into_router()
    {
        Err(error) => error.to_string(),
        Ok(_) => panic!("a key with an unknown role must not start"),
    };
    assert!(
        error.contains("`superuser`") && error.contains("viewer, editor, admin"),
        "{error}"
    );
}

#[tokio::test]
async fn the_server_announces_its_own_name_and_version() {
    let server = start_rbac(true).await;
    let mcp = Mcp::new(
        &server.url,
        Cred::ApiKey(VIEWER_KEY.into()),
        Version::V2025_06_18,
    );
    let reply = mcp
        .request(
            "initialize",
            json!({ "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": { "name": "t", "version": "0" } }),
        )
        .await;
    let info = &reply.result()["serverInfo"];
    assert_eq!(info["name"], "rbac-data-store", "{reply:#?}");
    assert_eq!(info["version"], env!("CARGO_PKG_VERSION"));
    server.stop().await;
}
