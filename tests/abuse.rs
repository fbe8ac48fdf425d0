//! Availability under abuse, from several loopback source addresses (127.0.0.x): credential
//! guessing is throttled without locking out valid callers, expired tokens are not guesses,
//! trusted proxies name the client, health endpoints stay open, the seed token endpoint is
//! throttled and audited, and the examples keep what they print and store private.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use mcp_gatekeeper::{AuditLog, Lockout};
use serde_json::{Value, json};

use crate::common::*;

/// `initialize` from `source` with `cred`.
async fn initialize_from(server: &Server, cred: Cred, source: &str) -> Reply {
    let mcp = Mcp::from_address(&server.url, cred, Version::V2025_06_18, source);
    mcp.request(
        "initialize",
        json!({ "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": { "name": "t", "version": "0" } }),
    )
    .await
}

fn guess(n: usize) -> Cred {
    Cred::ApiKey(format!("guess-{n:020}"))
}

async fn rbac_with(
    customize: impl FnOnce(
        mcp_gatekeeper::Gatekeeper<crate::rbac::DataTools>,
    ) -> mcp_gatekeeper::Gatekeeper<crate::rbac::DataTools>,
) -> Server {
    start(customize(
        crate::rbac::gatekeeper(rbac_config(false)).unwrap(),
    ))
    .await
}

fn short_lockout(max: u32) -> Lockout {
    Lockout::new(max, Duration::from_secs(60), Duration::from_secs(60))
}

#[tokio::test]
async fn a_guesser_cannot_lock_valid_callers_out_of_its_address() {
    let server = rbac_with(|g| g.lockout(short_lockout(3))).await;
    let guesser = "127.0.0.2";
    let statuses: Vec<u16> =
        futures::future::join_all((0..6).map(|n| initialize_from(&server, guess(n), guesser)))
            .await
            .iter()
            .map(|r| r.status)
            .collect();
    // (403, not 401: the RBAC example offers no OAuth, so a wrong key is refused outright.)
    assert_eq!(
        statuses.iter().filter(|s| **s == 403).count(),
        2,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        4,
        "{statuses:?}"
    );
    // A valid key and a valid token from the guesser's own address (a NAT, a shared runner)
    // are served; the throttle only ever answers failures.
    let key = initialize_from(&server, Cred::ApiKey(ADMIN_KEY.into()), guesser).await;
    assert_eq!(key.status, 200, "{key:#?}");
    let token = initialize_from(&server, Cred::Bearer(jwt("alice", "viewer")), guesser).await;
    assert_eq!(token.status, 200, "{token:#?}");
    // Another address's failures are its own.
    assert_eq!(
        initialize_from(&server, guess(99), "127.0.0.3")
            .await
            .status,
        403
    );
    server.stop().await;
}

#[tokio::test]
async fn expired_tokens_are_not_guesses() {
    let server = rbac_with(|g| g.lockout(short_lockout(3))).await;
    let expired = jwt_with(json!({
        "sub": "alice", "role": "viewer", "iss": ISSUER, "aud": RESOURCE,
        "iat": now() - 7200, "exp": now() - 3600,
    }));
    // An MCP client launched with a stale token sends about four requests per launch; three
    // launches (and more) never lock anyone out.
    for launch in 0..5 {
        for request in 0..4 {
            let reply = initialize_from(&server, Cred::Bearer(expired.clone()), "127.0.0.4").await;
            assert_eq!(reply.status, 403, "launch {launch}, request {request}");
            assert_eq!(reply.json_body()["error_description"], "Token expired");
        }
    }
    // A forged token is a guess.
    let forged = sign(
        jsonwebtoken::Algorithm::HS256,
        b"not-the-secret-not-the-secret-000",
        &json!({ "sub": "x", "iss": ISSUER, "exp": now() + 60 }),
    );
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(
            initialize_from(&server, Cred::Bearer(forged.clone()), "127.0.0.4")
                .await
                .status,
        );
    }
    assert_eq!(statuses, [403, 403, 429]);
    server.stop().await;
}

#[tokio::test]
async fn trusted_proxies_name_the_client_and_others_cannot() {
    let audit = std::env::temp_dir().join(format!("mcpgk-proxy-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&audit);
    let server = rbac_with(|g| {
        g.lockout(short_lockout(2))
            .trusted_proxies(["127.0.0.2/32"])
            .audit(AuditLog::json_lines(&audit).unwrap())
    })
    .await;
    let through = |client: &'static str, n: usize| {
        let url = server.url.clone();
        async move {
            let mcp = Mcp::from_address(&url, guess(n), Version::V2025_06_18, "127.0.0.2");
            let mut headers = mcp.base_headers(None);
            headers.insert(
                "x-forwarded-for",
                format!("6.6.6.6, {client}").parse().unwrap(),
            );
            mcp.http
                .post(&url)
                .headers(headers)
                .body(json!({"jsonrpc":"2.0","id":1,"method":"ping"}).to_string())
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    // Behind the proxy, each client has its own count (the proxy's address is not counted,
    // and the left part of the chain, written by the client, is not trusted).
    assert_eq!(through("198.51.100.7", 1).await, 403);
    assert_eq!(through("198.51.100.7", 2).await, 429);
    assert_eq!(through("198.51.100.8", 3).await, 403);
    // A peer that is not a trusted proxy cannot pick its address: the header is ignored and
    // audited, and its failures count as its own.
    let untrusted = || async {
        let mcp = Mcp::from_address(&server.url, guess(9), Version::V2025_06_18, "127.0.0.3");
        let mut headers = mcp.base_headers(None);
        headers.insert("x-forwarded-for", "203.0.113.1".parse().unwrap());
        mcp.http
            .post(&server.url)
            .headers(headers)
            .body("{}")
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(untrusted().await, 403);
    assert_eq!(untrusted().await, 429);
    server.stop().await;
    let lines = std::fs::read_to_string(&audit).unwrap();
    let records: Vec<Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        records
            .iter()
            .any(|r| r["reason"] == "forwarded_header_ignored"
                && r["remote_addr"].as_str().unwrap().starts_with("127.0.0.3:")),
        "{lines}"
    );
    assert!(
        records
            .iter()
            .any(|r| r["remote_addr"].as_str() == Some("198.51.100.7:0")),
        "the audit names the client behind the proxy: {lines}"
    );
    let _ = std::fs::remove_file(&audit);
}

#[test]
fn bad_trusted_proxy_entries_stop_the_build() {
    let error = crate::rbac::gatekeeper(rbac_config(false))
        .unwrap()
        .trusted_proxies(["10.0.0.0/40"])
        .into_router()
        .unwrap_err()
        .to_string();
    assert!(error.contains("10.0.0.0/40"), "{error}");
}

/// A raw HTTP/1.1 exchange: writes `request`, returns the status line.
fn raw_status(addr: &str, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).unwrap();
    line
}

#[tokio::test]
async fn two_host_headers_are_refused() {
    let server = start_rbac(true).await;
    let addr = server.base.trim_start_matches("http://").to_owned();
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let request = move |hosts: &str| {
        format!(
            "POST /mcp HTTP/1.1\r\n{hosts}X-API-Key: {ADMIN_KEY}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let addr2 = addr.clone();
    let (one, two) = tokio::task::spawn_blocking(move || {
        (
            raw_status(&addr2, &request("Host: localhost\r\n")),
            raw_status(
                &addr2,
                &request("Host: localhost\r\nHost: evil.example\r\n"),
            ),
        )
    })
    .await
    .unwrap();
    assert!(!one.contains(" 400 "), "{one}");
    assert!(two.starts_with("HTTP/1.1 400"), "{two}");
    server.stop().await;
}

#[tokio::test]
async fn health_endpoints_answer_without_credentials_and_leave_no_trace() {
    let audit = std::env::temp_dir().join(format!("mcpgk-health-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&audit);
    let server = rbac_with(|g| {
        g.lockout(short_lockout(1))
            .audit(AuditLog::json_lines(&audit).unwrap())
    })
    .await;
    let http = client_from("127.0.0.5");
    for _ in 0..20 {
        for (path, body) in [("/healthz", "ok"), ("/readyz", "ready")] {
            let response = http
                .get(format!("{}{path}", server.base))
                .header("host", "anything.example")
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200, "{path}");
            assert_eq!(response.headers()["cache-control"], "no-store");
            let json: Value = response.json().await.unwrap();
            assert_eq!(json["status"], body);
        }
    }
    // Never counted as failures: a valid key still works and a first guess is a plain 401.
    assert_eq!(
        initialize_from(&server, Cred::ApiKey(ADMIN_KEY.into()), "127.0.0.5")
            .await
            .status,
        200
    );
    server.stop().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let lines = std::fs::read_to_string(&audit).unwrap_or_default();
    assert!(
        !lines.contains("healthz") && !lines.contains("readyz"),
        "{lines}"
    );
    assert_eq!(lines.lines().count(), 1, "only the initialize: {lines}");
    let _ = std::fs::remove_file(&audit);
}

#[tokio::test]
async fn the_seed_token_endpoint_is_throttled_and_audited() {
    let audit = std::env::temp_dir().join(format!("mcpgk-token-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&audit);
    let server = rbac_with(|g| {
        g.lockout(short_lockout(3))
            .audit(AuditLog::json_lines(&audit).unwrap())
    })
    .await;
    let token = |source: &'static str, secret: &'static str| {
        let url = format!("{}/auth/token", server.base);
        async move {
            client_from(source)
                .post(url)
                .json(&json!({ "client_id": "svc-admin", "client_secret": secret }))
                .send()
                .await
                .unwrap()
        }
    };
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(
            token("127.0.0.6", "wrong-secret-00000000")
                .await
                .status()
                .as_u16(),
        );
    }
    assert_eq!(statuses, [401, 401, 429, 429, 429]);
    let throttled = token("127.0.0.6", "wrong-secret-00000000").await;
    assert!(throttled.headers().contains_key("retry-after"));
    // The right secret is served from the same address; other addresses are not throttled.
    assert_eq!(
        token("127.0.0.6", "admin-secret-000022").await.status(),
        200
    );
    assert_eq!(
        token("127.0.0.7", "wrong-secret-00000000").await.status(),
        401
    );
    // A guessed API key and a guessed client secret from one address count together.
    assert_eq!(
        initialize_from(&server, guess(1), "127.0.0.6").await.status,
        429
    );
    server.stop().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let lines = std::fs::read_to_string(&audit).unwrap();
    let records: Vec<Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let token_records: Vec<&Value> = records.iter().filter(|r| r["event"] == "token").collect();
    assert!(
        token_records
            .iter()
            .any(|r| r["outcome"] == "allowed" && r["client_id"] == "svc-admin"),
        "{lines}"
    );
    assert!(
        token_records
            .iter()
            .any(|r| r["outcome"] == "rate_limited" && r["retry_after_seconds"].is_u64()),
        "{lines}"
    );
    assert!(
        !lines.contains("wrong-secret") && !lines.contains("admin-secret"),
        "{lines}"
    );
    let _ = std::fs::remove_file(&audit);
}

/// Reads a child's stdout until `until` appears in a line (or the child ends); returns what
/// was read.
fn read_until(child: &mut Child, until: &str, limit: Duration) -> String {
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + limit;
    let mut out = String::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) => {
                out.push_str(&line);
                out.push('\n');
                if line.contains(until) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    out
}

#[test]
fn the_rbac_example_prints_tokens_only_when_it_generated_the_secret() {
    let run = |configured: bool| {
        let mut command = Command::new(example_binary("rbac"));
        command
            .env("BIND", "127.0.0.1:0")
            .env("RUST_LOG", "off")
            .env_remove("JWT_SECRET")
            .env_remove("MCP_API_KEYS")
            .env_remove("MCP_CLIENTS")
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if configured {
            command
                .env("JWT_SECRET", SECRET)
                .env("MCP_API_KEYS", format!("{ADMIN_KEY}:admin"))
                .env("MCP_CLIENTS", CLIENTS);
        }
        let mut child = command.spawn().expect("the rbac example starts");
        let out = read_until(&mut child, "curl", Duration::from_secs(20));
        let _ = child.kill();
        let _ = child.wait();
        out
    };
    let demo = run(false);
    assert!(demo.contains("demo mode") && demo.contains("eyJ"), "{demo}");
    let configured = run(true);
    assert!(
        !configured.contains("eyJ"),
        "a live token was printed:\n{configured}"
    );
    assert!(!configured.contains(ADMIN_KEY), "{configured}");
    assert!(configured.contains("/auth/token"), "{configured}");
}

#[cfg(unix)]
#[tokio::test]
async fn the_oauth_example_keeps_its_data_directory_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("mcpgk-oauth-dir-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let config = crate::oauth_example::OAuthConfig {
        resource: format!("{issuer}/mcp"),
        issuer,
        stateless: false,
        data_dir: dir.join("nested"),
        database: None,
        user: "alice".into(),
        password: "alice-password-1".into(),
        role: "admin".into(),
        clients: Vec::new(),
        cimd_allow_private: false,
        auto_approve: false,
        redis: None,
    };
    let running = crate::oauth_example::serve(config, listener).await.unwrap();
    for path in [dir.clone(), dir.join("nested")] {
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", path.display());
    }
    running.shutdown().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// The peak resident memory of process `pid` in KiB (`VmHWM`).
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/<pid>/status")
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn four_hundred_parallel_logins_keep_the_servers_memory_bounded() {
    let dir = std::env::temp_dir().join(format!("mcpgk-logins-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = Command::new(example_binary("oauth"))
        .env("BIND", format!("127.0.0.1:{port}"))
        .env("OAUTH_DATA_DIR", &dir)
        .env("OAUTH_USER_PASSWORD", "alice-password-1")
        .env("OAUTH_CLIENT_ID", "load-app")
        .env("OAUTH_CLIENT_REDIRECT_URI", "http://127.0.0.1/cb")
        .env("RUST_LOG", "off")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the oauth example starts");
    let started = read_until(&mut child, "listening on", Duration::from_secs(30));
    assert!(started.contains("listening on"), "{started}");
    let pid = child.id();
    let before = peak_rss_kib(pid);
    let (_, challenge) = crate::oauth::pkce();
    let authorize = format!(
        "{base}/oauth/authorize?response_type=code&client_id=load-app&redirect_uri=http%3A%2F%2F127.0.0.1%2Fcb&code_challenge={challenge}&code_challenge_method=S256"
    );
    let page = reqwest::get(&authorize)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let (request, csrf) = (hidden(&page, "request"), hidden(&page, "csrf"));
    // 400 sign-ins for unknown users from 40 addresses at once: every one is a password
    // check the lockout admits, so only the bound on parallel checks keeps memory in hand.
    let attempts = (0..400).map(|n| {
        let client = client_from(&format!("127.0.1.{}", 10 + n % 40));
        let url = format!("{base}/oauth/authorize/login");
        let form = [
            ("request", request.clone()),
            ("csrf", csrf.clone()),
            ("username", format!("nobody-{n}")),
            ("password", "wrong-password".to_owned()),
        ];
        async move {
            client
                .post(url)
                .form(&form)
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }
    });
    let started = Instant::now();
    let statuses = futures::future::join_all(attempts).await;
    let elapsed = started.elapsed();
    let peak = peak_rss_kib(pid);
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    let count = |code| statuses.iter().filter(|s| **s == code).count();
    println!(
        "400 parallel logins: peak RSS {before} KiB before, {peak} KiB after, {elapsed:?}; \
         {} checked (200), {} busy (503), {} slowed (429)",
        count(200),
        count(503),
        count(429)
    );
    assert_eq!(count(200) + count(503) + count(429), 400, "{statuses:?}");
    assert!(count(200) >= 2, "some were checked: {statuses:?}");
    assert!(
        peak < 256 * 1024,
        "peak RSS {peak} KiB: password checks are not bounded"
    );
}

#[test]
fn the_oauth_example_reads_its_bind_address() {
    // The memory test above relies on BIND; keep the variable documented.
    let mut source = String::new();
    std::fs::File::open(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/oauth.rs"))
        .unwrap()
        .read_to_string(&mut source)
        .unwrap();
    assert!(source.contains("`BIND`"));
}
