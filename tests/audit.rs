//! The JSON-lines audit trail: every decision recorded, no secret ever written.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::*;

/// The records of the audit file, once the writer thread has written the one `last` matches
/// (the record of the last request made).
async fn read_records(path: &std::path::Path, last: impl Fn(&Value) -> bool) -> Vec<Value> {
    for _ in 0..250 {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let records: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if records.iter().any(&last) {
            return records;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the audit file never recorded the last request");
}

/// The rbac example with an audit file of its own (named after `test`), started.
async fn start_audited(test: &str) -> (Server, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("mcpgk-audit-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("audit.jsonl");
    let _ = std::fs::remove_file(&path);
    let mut config = rbac_config(true);
    config.audit_log = Some(path.clone());
    (start(crate::rbac::gatekeeper(config).unwrap()).await, path)
}

#[tokio::test]
async fn decisions_are_audited_without_secrets() {
    let (server, path) = start_audited("it").await;

    let viewer_token = jwt("auditee", "viewer");
    let viewer = Mcp::connect(
        &server.url,
        Cred::Bearer(viewer_token.clone()),
        Version::V2025_06_18,
    )
    .await;
    viewer.call("read-data", json!({ "key": "k" })).await;
    viewer.call("delete-data", json!({ "key": "k" })).await;
    let stranger = Mcp::new(
        &server.url,
        Cred::ApiKey("wrong-key-abcdefghijkl".into()),
        Version::V2025_06_18,
    );
    stranger.call("read-data", json!({ "key": "k" })).await;
    let admin = Mcp::connect(
        &server.url,
        Cred::ApiKey(ADMIN_KEY.into()),
        Version::V2025_06_18,
    )
    .await;
    for _ in 0..11 {
        admin.call("delete-data", json!({ "key": "k" })).await;
    }

    let records = read_records(&path, |r: &Value| r["outcome"] == "rate_limited").await;
    let text = std::fs::read_to_string(&path).unwrap();
    for secret in [
        viewer_token.as_str(),
        ADMIN_KEY,
        "wrong-key-abcdefghijkl",
        SECRET,
    ] {
        assert!(!text.contains(secret), "the audit log contains a secret");
    }
    let find = |pred: &dyn Fn(&Value) -> bool| records.iter().find(|r| pred(r)).cloned();
    let allowed = find(&|r| {
        r["event"] == "tool_call" && r["outcome"] == "allowed" && r["subject"] == "auditee"
    })
    .unwrap();
    assert_eq!(allowed["tool"], "read-data");
    assert_eq!(allowed["method"], "jwt");
    assert!(
        allowed["remote_addr"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );
    let denied = find(&|r| r["event"] == "tool_call" && r["outcome"] == "denied").unwrap();
    assert_eq!(
        (denied["tool"].as_str(), denied["reason"].as_str()),
        (Some("delete-data"), Some("missing_role"))
    );
    let refused = find(&|r| r["event"] == "authentication" && r["outcome"] == "denied").unwrap();
    assert_eq!(refused["reason"], "invalid_credential");
    assert_eq!(refused["method"], "api_key");
    let limited = find(&|r| r["outcome"] == "rate_limited").unwrap();
    assert_eq!(limited["tool"], "delete-data");
    assert!(limited["retry_after_seconds"].as_u64().unwrap() >= 1);
    assert!(
        limited["credential_id"]
            .as_str()
            .unwrap()
            .starts_with("env-")
    );
    server.stop().await;
}

#[tokio::test]
async fn one_record_per_tool_call_and_one_per_other_request() {
    let (server, path) = start_audited("once").await;
    let client = Mcp::connect(
        &server.url,
        Cred::Bearer(jwt("counted", "viewer")),
        Version::V2025_06_18,
    )
    .await;
    client.call("read-data", json!({ "key": "k" })).await;
    client.call("delete-data", json!({ "key": "k" })).await;
    client.list().await;
    read_records(&path, |r| {
        r["event"] == "authentication" && r["subject"] == "counted"
    })
    .await;
    // Let any straggler be written before counting.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let records: Vec<Value> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|r: &Value| r["subject"] == "counted")
        .collect();
    assert!(records.len() >= 4);
    let tool_calls: Vec<&Value> = records
        .iter()
        .filter(|r| r["event"] == "tool_call")
        .collect();
    assert_eq!(tool_calls.len(), 2, "{records:#?}");
    assert_eq!(
        (
            tool_calls[0]["outcome"].as_str(),
            tool_calls[1]["outcome"].as_str()
        ),
        (Some("allowed"), Some("denied"))
    );
    // initialize and notifications/initialized (made by `connect`) and tools/list are audited
    // as authentications; the two tool calls are not audited twice.
    let authentications = records
        .iter()
        .filter(|r| r["event"] == "authentication" && r["outcome"] == "allowed")
        .count();
    assert_eq!(authentications, 3, "{records:#?}");
    server.stop().await;
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}
