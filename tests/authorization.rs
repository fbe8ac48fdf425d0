//! Roles through the hierarchy, list filtering, scopes and rate limits, for every protocol
//! version and both credential kinds.

use futures::future::join_all;
use serde_json::json;

use crate::common::*;

const TOOLS: [&str; 4] = ["read-data", "write-data", "delete-data", "manage-users"];

/// Which tools each role may call: the hierarchy viewer < editor < admin.
fn allowed(role: &str) -> &'static [&'static str] {
    match role {
        "viewer" => &["read-data"],
        "editor" => &["read-data", "write-data"],
        "admin" => &TOOLS,
        _ => &[],
    }
}

fn credentials() -> Vec<(&'static str, Cred)> {
    vec![
        ("viewer", Cred::Bearer(jwt("alice", "viewer"))),
        ("editor", Cred::Bearer(jwt("bob", "editor"))),
        ("admin", Cred::Bearer(jwt("carol", "admin"))),
        ("viewer", Cred::ApiKey(VIEWER_KEY.into())),
        ("editor", Cred::Bearer(EDITOR_KEY.into())),
        ("admin", Cred::ApiKey(ADMIN_KEY.into())),
    ]
}

fn arguments(tool: &str) -> serde_json::Value {
    match tool {
        "write-data" => json!({ "key": "k", "value": "v" }),
        "manage-users" => json!({ "action": "list" }),
        _ => json!({ "key": "k" }),
    }
}

#[tokio::test]
async fn every_role_gets_exactly_the_hierarchy_answers_on_every_version() {
    for stateless in [false, true] {
        let server = start_rbac(stateless).await;
        for version in VERSIONS {
            for (role, cred) in credentials() {
                let mcp = Mcp::connect(&server.url, cred.clone(), version).await;
                for tool in TOOLS {
                    let reply = mcp.call(tool, arguments(tool)).await;
                    assert_eq!(reply.status, 200, "{reply:#?}");
                    let context =
                        format!("{role} {cred:?} {tool} {version:?} stateless={stateless}");
                    if allowed(role).contains(&tool) {
                        assert!(reply.result().is_object(), "{context}: {reply:#?}");
                    } else {
                        let error = reply.error();
                        assert_eq!(error["code"], -32003, "{context}: {reply:#?}");
                        assert_eq!(error["data"]["reason"], "missing_role", "{context}");
                        let needed = if tool == "write-data" {
                            "editor"
                        } else {
                            "admin"
                        };
                        assert_eq!(error["data"]["requiredRole"], needed, "{context}");
                        assert_eq!(
                            error["message"],
                            format!("forbidden: tool `{tool}` requires role `{needed}`")
                        );
                    }
                }
            }
        }
        server.stop().await;
    }
}

#[tokio::test]
async fn tools_list_shows_only_what_the_caller_may_call() {
    let server = start_rbac(false).await;
    for version in VERSIONS {
        for (role, cred) in credentials() {
            let mcp = Mcp::connect(&server.url, cred, version).await;
            let mut listed = mcp.list().await;
            listed.sort();
            let mut expected: Vec<String> = allowed(role).iter().map(|s| s.to_string()).collect();
            expected.sort();
            assert_eq!(listed, expected, "{role} {version:?}");
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn a_filtered_list_is_private_to_the_caller_on_2026_07_28() {
    let server = start_rbac(true).await;
    let mcp = Mcp::connect(
        &server.url,
        Cred::Bearer(jwt("v", "viewer")),
        Version::V2026_07_28,
    )
    .await;
    let reply = mcp.request("tools/list", json!({})).await;
    assert_eq!(reply.result()["cacheScope"], "private");
    assert_eq!(reply.result()["ttlMs"], 0);
    let legacy = Mcp::connect(
        &server.url,
        Cred::Bearer(jwt("v", "viewer")),
        Version::V2025_11_25,
    )
    .await;
    let reply = legacy.request("tools/list", json!({})).await;
    assert!(reply.result().get("cacheScope").is_none(), "{reply:#?}");
    server.stop().await;
}

#[tokio::test]
async fn the_principal_reaches_the_handler_in_both_modes() {
    for stateless in [false, true] {
        let server = start_rbac(stateless).await;
        for (cred, subject) in [
            (Cred::Bearer(jwt("dora", "editor")), "dora".to_owned()),
            (
                Cred::ApiKey(EDITOR_KEY.into()),
                format!(
                    "env-{}",
                    &mcp_gatekeeper::ApiKey::digest_hex(EDITOR_KEY)[..8]
                ),
            ),
        ] {
            for version in VERSIONS {
                let mcp = Mcp::connect(&server.url, cred.clone(), version).await;
                let reply = mcp
                    .call("write-data", json!({ "key": "who", "value": "x" }))
                    .await;
                let receipt = &reply.result()["structuredContent"];
                assert_eq!(receipt["written_by"], subject.as_str(), "{reply:#?}");
                assert_eq!(receipt["key"], "who");
            }
        }
        server.stop().await;
    }
}

#[tokio::test]
async fn the_eleventh_delete_in_a_minute_is_refused_with_a_retry_time() {
    let server = start_rbac(false).await;
    let mcp = Mcp::connect(
        &server.url,
        Cred::Bearer(jwt("erin", "admin")),
        Version::V2025_11_25,
    )
    .await;
    for i in 0..10 {
        let reply = mcp
            .call("delete-data", json!({ "key": format!("k{i}") }))
            .await;
        assert!(reply.result().is_object(), "call {i}: {reply:#?}");
    }
    let reply = mcp.call("delete-data", json!({ "key": "k10" })).await;
    let error = reply.error();
    assert_eq!(error["code"], -32005);
    assert_eq!(error["data"]["reason"], "rate_limited");
    assert_eq!(error["data"]["limit"], "10/min");
    let retry = error["data"]["retryAfterSeconds"].as_u64().unwrap();
    assert!((1..=6).contains(&retry), "retry after {retry}");
    assert!(error["message"].as_str().unwrap().contains("retry in"));
    // Another admin has a budget of their own, and other tools are unaffected.
    let other = Mcp::connect(
        &server.url,
        Cred::ApiKey(ADMIN_KEY.into()),
        Version::V2025_11_25,
    )
    .await;
    assert!(
        other
            .call("delete-data", json!({ "key": "x" }))
            .await
            .result()
            .is_object()
    );
    assert!(
        mcp.call("read-data", json!({ "key": "x" }))
            .await
            .result()
            .is_object()
    );
    server.stop().await;
}

#[tokio::test]
async fn exactly_ten_of_a_hundred_simultaneous_calls_pass_a_limit_of_ten() {
    let server = start_rbac(true).await;
    let mcp = Mcp::connect(
        &server.url,
        Cred::Bearer(jwt("frank", "admin")),
        Version::V2025_11_25,
    )
    .await;
    let calls = (0..100).map(|i| mcp.call("delete-data", json!({ "key": format!("k{i}") })));
    let replies = join_all(calls).await;
    let passed = replies.iter().filter(|r| r.error_code().is_none()).count();
    let limited = replies
        .iter()
        .filter(|r| r.error_code() == Some(-32005))
        .count();
    assert_eq!((passed, limited), (10, 90));
    server.stop().await;
}

#[tokio::test]
async fn denied_calls_do_not_spend_the_rate_budget() {
    let server = start_rbac(true).await;
    let viewer = Mcp::connect(
        &server.url,
        Cred::Bearer(jwt("gina", "viewer")),
        Version::V2025_06_18,
    )
    .await;
    for _ in 0..20 {
        assert_eq!(
            viewer
                .call("delete-data", json!({ "key": "k" }))
                .await
                .error_code(),
            Some(-32003)
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn unknown_roles_in_a_token_grant_nothing() {
    let server = start_rbac(true).await;
    let mcp = Mcp::connect(
        &server.url,
        Cred::Bearer(jwt("hank", "superuser")),
        Version::V2025_06_18,
    )
    .await;
    assert!(mcp.list().await.is_empty());
    assert_eq!(
        mcp.call("read-data", json!({ "key": "k" }))
            .await
            .error_code(),
        Some(-32003)
    );
    server.stop().await;
}

#[tokio::test]
async fn roles_array_and_unknown_tools() {
    let server = start_rbac(true).await;
    let token = jwt_with(
        json!({ "sub": "ivy", "roles": ["viewer", "editor"], "iss": ISSUER, "aud": RESOURCE, "exp": now() + 60 }),
    );
    let mcp = Mcp::connect(&server.url, Cred::Bearer(token), Version::V2025_06_18).await;
    let mut listed = mcp.list().await;
    listed.sort();
    assert_eq!(listed, ["read-data", "write-data"]);
    let reply = mcp.call("no-such-tool", json!({})).await;
    assert_eq!(reply.error_code(), Some(-32602), "{reply:#?}");
    server.stop().await;
}

#[tokio::test]
async fn invalid_arguments_are_tool_errors_the_model_can_read() {
    let server = start_rbac(true).await;
    let mcp = Mcp::connect(
        &server.url,
        Cred::ApiKey(ADMIN_KEY.into()),
        Version::V2025_11_25,
    )
    .await;
    for (args, expected) in [
        (json!({}), "missing required argument `key`"),
        (json!({ "key": 5 }), "argument `key`: invalid type"),
        (
            json!({ "key": "k", "extra": 1 }),
            "unknown argument `extra`",
        ),
    ] {
        let reply = mcp.call("read-data", args).await;
        assert!(reply.is_tool_error(), "{reply:#?}");
        assert!(reply.text().contains(expected), "{}", reply.text());
    }
    let reply = mcp
        .call("manage-users", json!({ "action": "explode" }))
        .await;
    assert!(
        reply.is_tool_error() && reply.text().contains("argument `action`"),
        "{reply:#?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn schemas_and_annotations_are_listed() {
    let server = start_rbac(true).await;
    let mcp = Mcp::connect(
        &server.url,
        Cred::ApiKey(ADMIN_KEY.into()),
        Version::V2025_11_25,
    )
    .await;
    let reply = mcp.request("tools/list", json!({})).await;
    let tools = reply.result()["tools"].as_array().unwrap();
    let find = |name: &str| tools.iter().find(|t| t["name"] == name).unwrap();
    let read = find("read-data");
    assert_eq!(read["description"], "Read the value stored under a key.");
    assert_eq!(read["inputSchema"]["required"], json!(["key"]));
    assert_eq!(
        read["inputSchema"]["properties"]["key"]["description"],
        "The key to read."
    );
    assert_eq!(read["annotations"]["readOnlyHint"], true);
    let write = find("write-data");
    assert_eq!(write["outputSchema"]["type"], "object");
    assert!(write["outputSchema"]["properties"]["written_by"].is_object());
    assert_eq!(find("delete-data")["annotations"]["destructiveHint"], true);
    let users = find("manage-users");
    assert_eq!(users["inputSchema"]["required"], json!(["action"]));
    server.stop().await;
}
