//! Prometheus metrics: a known mix of traffic, scraped over HTTP, counted exactly. Every test
//! names its server: the process has one global recorder, and the `server` label keeps the
//! tests' series apart.

use std::process::Command;

use mcp_gatekeeper::{
    ApiKey, ApiKeys, Gatekeeper, RunningServer, metrics::PrometheusMetrics, prelude::*,
};
use serde_json::json;

use crate::common::{Cred, Mcp, Version, example_binary, process::CapturedProcess};

#[derive(Roles)]
enum Role {
    Viewer,
    Admin,
}

struct Tools;

#[mcp_tools(roles = Role)]
impl Tools {
    /// Any viewer.
    #[mcp_tool(role = "viewer")]
    async fn status(&self) -> String {
        "ok".into()
    }

    /// Admins only.
    #[mcp_tool(role = "admin")]
    async fn wipe(&self) -> String {
        "wiped".into()
    }

    /// Once a minute.
    #[mcp_tool(role = "viewer", rate = "1/min")]
    async fn report(&self) -> String {
        "report".into()
    }
}

const VIEWER: &str = "metrics-viewer-key-0123456789abcdef";

/// A server labelled `server` counting in the global recorder, and its metrics listener.
async fn start(server: &str) -> (RunningServer, RunningServer, String) {
    let metrics = PrometheusMetrics::install().expect("the global recorder");
    let mcp = Gatekeeper::new(Tools)
        .authenticate(ApiKeys::new().with_key(ApiKey::new("viewer", VIEWER).role("viewer")))
        .server_info(server, "1")
        .metrics(&metrics)
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let scrape = metrics.bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", mcp.local_addr());
    (mcp, scrape, url)
}

/// The value of the series `name{server="<server>",<labels>}` in `text`, `None` if absent.
fn value(text: &str, server: &str, name: &str, labels: &str) -> Option<f64> {
    let series = match labels {
        "" => format!("{name}{{server=\"{server}\"}} "),
        labels => format!("{name}{{server=\"{server}\",{labels}}} "),
    };
    text.lines()
        .find_map(|line| line.strip_prefix(&series))
        .map(|v| v.trim().parse().expect("a number"))
}

#[tokio::test]
async fn a_known_mix_of_traffic_is_counted_exactly() {
    let server = "metrics-exact";
    let (mcp, scrape, url) = start(server).await;
    // One HTTP request per call (no session): one authentication each.
    let viewer = Mcp::new(&url, Cred::ApiKey(VIEWER.into()), Version::V2026_07_28);
    for _ in 0..3 {
        assert!(
            viewer
                .call("status", json!({}))
                .await
                .error_code()
                .is_none()
        );
    }
    for _ in 0..2 {
        assert!(viewer.call("wipe", json!({})).await.error_code().is_some());
    }
    assert!(
        viewer
            .call("report", json!({}))
            .await
            .error_code()
            .is_none()
    );
    assert!(
        viewer
            .call("report", json!({}))
            .await
            .error_code()
            .is_some()
    );
    for _ in 0..2 {
        let wrong = Mcp::new(
            &url,
            Cred::ApiKey("metrics-wrong-key-0123456789abcdef".into()),
            Version::V2026_07_28,
        );
        wrong.call("status", json!({})).await;
    }
    Mcp::new(&url, Cred::None, Version::V2026_07_28)
        .call("status", json!({}))
        .await;

    let text = reqwest::get(format!("http://{}/metrics", scrape.local_addr()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let count = |name: &str, labels: &str| value(&text, server, name, labels);
    let auth = "mcp_gatekeeper_authentications_total";
    assert_eq!(
        count(auth, r#"method="api_key",outcome="allowed""#),
        Some(7.0),
        "{text}"
    );
    assert_eq!(
        count(auth, r#"method="api_key",outcome="denied""#),
        Some(2.0)
    );
    assert_eq!(
        count(auth, r#"method="api_key",outcome="throttled""#),
        Some(0.0)
    );
    assert_eq!(count(auth, r#"method="none",outcome="denied""#), Some(1.0));
    assert_eq!(
        count(
            "mcp_gatekeeper_authentication_seconds_count",
            r#"method="api_key""#
        ),
        Some(9.0)
    );
    let calls = "mcp_gatekeeper_tool_calls_total";
    assert_eq!(
        count(calls, r#"tool="status",outcome="allowed""#),
        Some(3.0)
    );
    assert_eq!(count(calls, r#"tool="status",outcome="error""#), Some(0.0));
    assert_eq!(
        count(
            calls,
            r#"tool="wipe",outcome="denied",reason="missing_role""#
        ),
        Some(2.0)
    );
    assert_eq!(count(calls, r#"tool="wipe",outcome="allowed""#), Some(0.0));
    assert_eq!(
        count(calls, r#"tool="report",outcome="allowed""#),
        Some(1.0)
    );
    assert_eq!(
        count(
            calls,
            r#"tool="report",outcome="rate_limited",reason="rate_limited""#
        ),
        Some(1.0)
    );
    let seconds = "mcp_gatekeeper_tool_call_seconds_count";
    assert_eq!(count(seconds, r#"tool="status""#), Some(3.0));
    assert_eq!(count(seconds, r#"tool="report""#), Some(1.0));
    assert_eq!(count(seconds, r#"tool="wipe""#), Some(0.0));
    assert_eq!(
        count("mcp_gatekeeper_lockouts_total", r#"kind="address""#),
        Some(0.0)
    );
    // Never a caller, a key or an address as a label.
    assert!(!text.contains("viewer\""), "{text}");
    assert!(!text.contains("127.0.0.1"), "{text}");
    mcp.shutdown().await.unwrap();
    scrape.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_failure_throttle_starting_to_refuse_is_a_lockout() {
    let server = "metrics-lockout";
    let metrics = PrometheusMetrics::install().unwrap();
    let mcp = Gatekeeper::new(Tools)
        .authenticate(ApiKeys::new().with_key(ApiKey::new("viewer", VIEWER).role("viewer")))
        .lockout(mcp_gatekeeper::Lockout::new(
            2,
            std::time::Duration::from_secs(60),
            std::time::Duration::from_secs(60),
        ))
        .server_info(server, "1")
        .metrics(&metrics)
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let url = format!("http://{}/mcp", mcp.local_addr());
    let wrong = Mcp::from_address(
        &url,
        Cred::ApiKey("metrics-guess-0123456789abcdef".into()),
        Version::V2026_07_28,
        "127.0.0.61",
    );
    for _ in 0..4 {
        wrong.call("status", json!({})).await;
    }
    let text = metrics.render();
    let count = |name: &str, labels: &str| value(&text, server, name, labels);
    let auth = "mcp_gatekeeper_authentications_total";
    // The second failure locks the address out: it and those after it are answered 429.
    assert_eq!(
        count(auth, r#"method="api_key",outcome="denied""#),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        count(auth, r#"method="api_key",outcome="throttled""#),
        Some(3.0)
    );
    assert_eq!(
        count("mcp_gatekeeper_lockouts_total", r#"kind="address""#),
        Some(1.0)
    );
    mcp.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_examples_serve_metrics_on_metrics_bind() {
    let key = "metrics-example-key-0123456789abcdef";
    for name in ["hello", "rmcp_layer"] {
        let mut example = CapturedProcess::spawn(
            Command::new(example_binary(name))
                .env("BIND", "127.0.0.1:0")
                .env("METRICS_BIND", "127.0.0.1:0")
                .env("MCP_API_KEYS", key)
                .env("RUST_LOG", "warn"),
            name,
        );
        let address = example.listening();
        // One authenticated request: a tool call, or the layer example's axum route.
        match name {
            "hello" => {
                let url = format!("http://{address}/mcp");
                let mcp = Mcp::new(&url, Cred::ApiKey(key.into()), Version::V2026_07_28);
                let reply = mcp.call("hello", json!({ "name": "metrics" })).await;
                assert!(reply.error_code().is_none(), "{reply:#?}");
            }
            _ => {
                let response = reqwest::Client::new()
                    .get(format!("http://{address}/whoami"))
                    .header("x-api-key", key)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200);
            }
        }
        let printed = example.printed();
        let metrics_url = printed
            .lines()
            .find_map(|l| l.strip_prefix("metrics on "))
            .unwrap_or_else(|| panic!("no metrics URL in\n{printed}"))
            .trim()
            .to_owned();
        let text = reqwest::get(&metrics_url)
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            text.lines()
                .any(|l| l.starts_with("mcp_gatekeeper_authentications_total{")
                    && l.contains(r#"method="api_key",outcome="allowed"} 1"#)),
            "{name}: {text}"
        );
    }
}

#[tokio::test]
async fn oauth_grants_and_client_secret_lockouts_are_counted() {
    use crate::oauth::{SERVICE_ID, SERVICE_SECRET, configure};
    let server = "metrics-oauth";
    let metrics = PrometheusMetrics::install().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let url = format!("{base}/mcp");
    let oauth = configure(&base, &url)
        .store(std::sync::Arc::new(
            mcp_gatekeeper::store::MemoryStore::new(),
        ))
        .lockout(mcp_gatekeeper::Lockout::new(
            2,
            std::time::Duration::from_secs(60),
            std::time::Duration::from_secs(60),
        ))
        .build()
        .await
        .unwrap();
    let running = Gatekeeper::new(crate::step_up::Notes)
        .server_info(server, "1")
        .oauth(&oauth, &url)
        .metrics(&metrics)
        .serve_on(listener)
        .unwrap();
    let http = reqwest::Client::new();
    let grant = |secret: &'static str, grant_type: &'static str| {
        let request = http.post(format!("{base}/oauth/token")).form(&[
            ("grant_type", grant_type),
            ("client_id", SERVICE_ID),
            ("client_secret", secret),
            ("resource", url.as_str()),
        ]);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    for _ in 0..2 {
        assert_eq!(grant(SERVICE_SECRET, "client_credentials").await, 200);
    }
    assert_eq!(grant(SERVICE_SECRET, "password").await, 400);
    // Three wrong secrets from this address: the second locks it (429 from then on).
    for _ in 0..3 {
        let status = grant("a-wrong-secret-0123456789", "client_credentials").await;
        assert!(status == 401 || status == 429, "{status}");
    }
    let text = metrics.render();
    let count = |name: &str, labels: &str| value(&text, server, name, labels);
    let grants = "mcp_gatekeeper_oauth_grants_total";
    assert_eq!(
        count(
            grants,
            r#"grant_type="client_credentials",outcome="issued""#
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        count(
            grants,
            r#"grant_type="other",outcome="unsupported_grant_type""#
        ),
        Some(1.0),
        "{text}"
    );
    // The first wrong secret is refused; the second reaches the limit and, with the third, is
    // answered `slow_down` (429).
    assert_eq!(
        count(
            grants,
            r#"grant_type="client_credentials",outcome="invalid_client""#
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        count(
            grants,
            r#"grant_type="client_credentials",outcome="slow_down""#
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        count("mcp_gatekeeper_lockouts_total", r#"kind="client_secret""#),
        Some(1.0),
        "{text}"
    );
    running.shutdown().await.unwrap();
}
