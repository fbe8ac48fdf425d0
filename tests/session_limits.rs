//! What one caller can hold: MCP sessions per caller and in all, against the `hello` example as
//! shipped and against servers with small limits.

use std::{process::Command, time::Duration};

use mcp_gatekeeper::{ApiKey, ApiKeys, Gatekeeper, SessionLimits};
use serde_json::json;

use crate::common::{process::CapturedProcess, *};

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"loop","version":"0"}}}"#;

/// `initialize` with `key` from `source`: the status and the new session id, if any.
async fn initialize(http: &reqwest::Client, url: &str, key: &str) -> (u16, Option<String>) {
    let response = http
        .post(url)
        .header("x-api-key", key)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(INITIALIZE)
        .send()
        .await
        .unwrap();
    let session = response
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let status = response.status().as_u16();
    // Read the SSE reply to its end, as a client does.
    let _ = response.bytes().await;
    (status, session)
}

/// The resident set size of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

#[tokio::test]
async fn one_caller_opening_sessions_in_a_loop_stays_bounded() {
    let key = "session-loop-key-0123456789abcdef";
    let mut example = CapturedProcess::spawn(
        Command::new(example_binary("hello"))
            .env("BIND", "127.0.0.1:0")
            .env("MCP_API_KEYS", key)
            .env("RUST_LOG", "warn"),
        "the hello example",
    );
    let url = format!("http://{}/mcp", example.listening());
    let http = reqwest::Client::new();
    let (status, first) = initialize(&http, &url, key).await;
    assert_eq!(status, 200);
    let first = first.expect("a session");
    let before = rss_kib(example.id());
    // 3,000 sessions, never deleted: without a per-caller limit each would live 5 minutes at
    // tens of kilobytes.
    let mut opened = Vec::new();
    for _ in 0..3_000 {
        let (status, session) = initialize(&http, &url, key).await;
        assert_eq!(status, 200);
        opened.push(session.expect("a session"));
    }
    let after = rss_kib(example.id());
    let grown_mib = after.saturating_sub(before) / 1024;
    println!("RSS {before} KiB -> {after} KiB after 3,000 sessions of one caller");
    assert!(
        grown_mib < 40,
        "the process grew by {grown_mib} MiB ({before} -> {after} KiB)"
    );
    // The caller keeps its 16 most recent sessions; older ones were ended.
    let list = |session: &str| {
        let mut mcp = Mcp::new(&url, Cred::ApiKey(key.into()), Version::V2025_06_18);
        mcp.session = Some(session.to_owned());
        async move { mcp.request("tools/list", json!({})).await.status }
    };
    assert_eq!(list(&first).await, 404, "the oldest session was ended");
    assert_eq!(list(&opened[0]).await, 404);
    for recent in &opened[opened.len() - 16..] {
        assert_eq!(list(recent).await, 200);
    }
    assert!(
        !example.printed().contains("panicked"),
        "{}",
        example.printed()
    );
}

#[tokio::test]
async fn the_total_limit_refuses_new_sessions_with_a_clear_error() {
    let keys = ApiKeys::new()
        .with_key(ApiKey::new("a", "caller-a-key-0123456789abcdef"))
        .with_key(ApiKey::new("b", "caller-b-key-0123456789abcdef"))
        .with_key(ApiKey::new("c", "caller-c-key-0123456789abcdef"));
    let dir = std::env::temp_dir().join(format!("mcpgk-session-limits-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let audit = dir.join("audit.jsonl");
    let server = Gatekeeper::new(crate::hello::Hello)
        .authenticate(keys)
        .session_limits(SessionLimits::new().per_caller(2).total(4))
        .audit_file(&audit)
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let url = format!("http://{}/mcp", server.local_addr());
    let http = reqwest::Client::new();
    // Two callers hold two sessions each: the server is full.
    for key in [
        "caller-a-key-0123456789abcdef",
        "caller-b-key-0123456789abcdef",
    ] {
        for _ in 0..2 {
            assert_eq!(initialize(&http, &url, key).await.0, 200);
        }
    }
    let response = http
        .post(&url)
        .header("x-api-key", "caller-c-key-0123456789abcdef")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(INITIALIZE)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"], "too_many_sessions", "{body}");
    assert!(
        body["error_description"].as_str().unwrap().contains('4'),
        "names the limit: {body}"
    );
    // A caller at its own limit still opens sessions: its oldest makes room.
    assert_eq!(
        initialize(&http, &url, "caller-a-key-0123456789abcdef")
            .await
            .0,
        200
    );
    // Both limits are in the audit trail.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let trail = std::fs::read_to_string(&audit).unwrap();
    assert!(trail.contains(r#""reason":"session_limit""#), "{trail}");
    assert!(trail.contains(r#""reason":"session_evicted""#), "{trail}");
    server.shutdown().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn limits_that_cannot_hold_fail_the_build() {
    let error = Gatekeeper::new(crate::hello::Hello)
        .authenticate(ApiKeys::new().with_key(ApiKey::new("a", "caller-a-key-0123456789abcdef")))
        .session_limits(SessionLimits::new().per_caller(0))
        .bind("127.0.0.1:0")
        .await;
    let Err(error) = error else {
        panic!("limits of zero sessions were accepted");
    };
    assert!(error.to_string().contains("per_caller"), "{error}");
}
