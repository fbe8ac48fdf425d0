//! Rate limits shared by replicas through Redis: processes of the `rbac` example with
//! `REDIS_URL`, and a Redis that goes away mid-run.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::{process::CapturedProcess, *};

/// The shared Redis: `REDIS_URL`, default the local server. Fails (never skips) with how to
/// start one when it does not answer.
async fn shared_redis() -> String {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let address = url
        .trim_start_matches("redis://")
        .rsplit('@')
        .next()
        .unwrap_or_default()
        .split('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    assert!(
        pings(&address).await,
        "these tests need Redis at {url} (set REDIS_URL to use another): start one with \
         `redis-server --port 6379 --save '' --appendonly no` (or `docker run -p 6379:6379 redis`)"
    );
    url
}

/// Whether a Redis at `address` answers `PING` within a second.
async fn pings(address: &str) -> bool {
    let ping = async {
        let mut stream = tokio::net::TcpStream::connect(address).await.ok()?;
        stream.write_all(b"PING\r\n").await.ok()?;
        let mut answer = [0u8; 7];
        stream.read_exact(&mut answer).await.ok()?;
        Some(&answer == b"+PONG\r\n")
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(1), ping).await,
        Ok(Some(true))
    )
}

/// A replica: the `rbac` example as a process, sharing its limits through `redis_url` under
/// `prefix`.
fn replica(redis_url: &str, prefix: &str) -> (CapturedProcess, String) {
    let mut process = CapturedProcess::spawn(
        Command::new(example_binary("rbac"))
            .env("BIND", "127.0.0.1:0")
            .env("JWT_SECRET", SECRET)
            .env(
                "MCP_API_KEYS",
                format!("{VIEWER_KEY}:viewer,{EDITOR_KEY}:editor,{ADMIN_KEY}:admin"),
            )
            .env("MCP_CLIENTS", CLIENTS)
            .env("STATELESS", "1")
            .env("REDIS_URL", redis_url)
            .env("REDIS_PREFIX", prefix)
            .env("RUST_LOG", "info"),
        "the rbac example",
    );
    let address = process.listening();
    assert!(
        process
            .printed()
            .contains("rate limits shared through Redis"),
        "{}",
        process.printed()
    );
    (process, format!("http://{address}/mcp"))
}

fn fresh_prefix() -> String {
    format!("mcp-it-{:016x}:", rand::random::<u64>())
}

fn admin(url: &str) -> Mcp {
    Mcp::new(url, Cred::ApiKey(ADMIN_KEY.into()), Version::V2026_07_28)
}

#[tokio::test]
async fn two_replicas_let_exactly_the_rate_through() {
    let redis = shared_redis().await;
    let prefix = fresh_prefix();
    let (first, first_url) = replica(&redis, &prefix);
    let (second, second_url) = replica(&redis, &prefix);
    let clients = [admin(&first_url), admin(&second_url)];
    // `delete-data` allows 10 a minute per caller: 100 calls at once, alternating replicas.
    let calls =
        (0..100).map(|i| clients[i % 2].call("delete-data", json!({ "key": format!("k{i}") })));
    let replies = futures::future::join_all(calls).await;
    let mut passed = [0; 2];
    for (i, reply) in replies.iter().enumerate() {
        assert_eq!(reply.status, 200, "{reply:#?}");
        if reply
            .message
            .as_ref()
            .is_some_and(|m| m.get("result").is_some())
        {
            passed[i % 2] += 1;
        } else {
            let error = reply.error();
            assert_eq!(error["code"], -32005, "{reply:#?}");
            assert_eq!(error["data"]["reason"], "rate_limited", "{reply:#?}");
        }
    }
    assert_eq!(passed[0] + passed[1], 10, "passed per replica: {passed:?}");
    // The budget is spent on both replicas alike.
    for client in &clients {
        let reply = client.call("delete-data", json!({ "key": "late" })).await;
        assert_eq!(reply.error()["data"]["reason"], "rate_limited");
    }
    for process in [first, second] {
        assert!(
            !process.printed().contains("panicked"),
            "{}",
            process.printed()
        );
    }
}

/// A Redis of this test's own on a free port (the shared one is never disturbed).
struct OwnRedis {
    port: u16,
    process: Option<std::process::Child>,
}

impl OwnRedis {
    async fn start(port: u16) -> Self {
        let process = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server starts (install Redis to run this test)");
        let redis = Self {
            port,
            process: Some(process),
        };
        let started = Instant::now();
        while !pings(&redis.address()).await {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server does not answer"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        redis
    }

    fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.kill();
            let _ = process.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn a_redis_outage_fails_closed_and_service_resumes() {
    let port = free_port();
    let mut redis = OwnRedis::start(port).await;
    let url = format!("redis://{}", redis.address());
    let (first, first_url) = replica(&url, "mcp:rbac:");
    let (second, second_url) = replica(&url, "mcp:rbac:");
    let base = first_url.trim_end_matches("/mcp").to_owned();
    let clients = [admin(&first_url), admin(&second_url)];
    for client in &clients {
        let reply = client.call("delete-data", json!({ "key": "a" })).await;
        assert!(reply.result().is_object(), "{reply:#?}");
    }
    let ready = reqwest::get(format!("{base}/readyz")).await.unwrap();
    assert_eq!(ready.status(), 200);

    redis.stop();
    for client in &clients {
        for _ in 0..3 {
            let reply = client.call("delete-data", json!({ "key": "a" })).await;
            assert_eq!(reply.status, 200, "a JSON-RPC refusal, not an HTTP error");
            let error = reply.error();
            assert_eq!(error["code"], -32005, "{reply:#?}");
            assert_eq!(
                error["data"]["reason"], "rate_limit_unavailable",
                "{reply:#?}"
            );
            assert_eq!(error["data"]["retryAfterSeconds"], 1);
        }
        // The server still answers what needs no rate limit.
        let listed = client.request("tools/list", json!({})).await;
        assert!(listed.result()["tools"].is_array(), "{listed:#?}");
    }
    // `/readyz` answers at most once a second from its cache.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let ready = reqwest::get(format!("{base}/readyz")).await.unwrap();
    assert_eq!(ready.status(), 503);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert!(body["reason"].as_str().unwrap().contains("Redis"), "{body}");

    let _redis = OwnRedis::start(port).await;
    let started = Instant::now();
    for client in &clients {
        loop {
            let reply = client.call("delete-data", json!({ "key": "b" })).await;
            if reply
                .message
                .as_ref()
                .is_some_and(|m| m.get("result").is_some())
            {
                break;
            }
            assert_eq!(reply.error()["data"]["reason"], "rate_limit_unavailable");
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "service did not resume: {reply:#?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    for process in [first, second] {
        let printed = process.printed();
        assert!(!printed.contains("panicked"), "{printed}");
        assert!(
            printed.contains("Redis unavailable"),
            "a warning was logged: {printed}"
        );
    }
}
