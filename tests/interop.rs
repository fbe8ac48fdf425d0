//! What third-party MCP clients show when this server refuses them: MCP Inspector's CLI,
//! mcp-remote (the stdio bridge of Claude Desktop configurations) and the TypeScript SDK, run
//! by the scripts `e2e/interop-*.mjs` with Node 22 against servers started here on loopback.
//! Plus the HTTP answers those checks rest on: the `401` naming only accepted credentials,
//! other schemes as "no credential", and `200` for the end of a session.
//!
//! The Node packages are installed once by `e2e/setup.sh`; when they are missing these tests
//! fail (never skip) and say so.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use mcp_gatekeeper::{
    ApiKey, ApiKeys, Gatekeeper, Jwt, McpTools, RunningServer, oauth::AuthorizationServer,
};
use serde_json::json;
use tokio::{net::TcpListener, process::Command};

use crate::common::*;

/// The key of the hello servers here.
const HELLO_KEY: &str = "hello-key-0123456789abcdef";
/// A key no server here knows.
const WRONG_KEY: &str = "wrong-key-0123456789abcdef";
/// What every server here says about [`WRONG_KEY`].
const INVALID_KEY: &str = "Invalid API key";
/// An editor's key that carries only `data:read`, on the OAuth server of [`OAuthWithKeys`].
const SCOPED_KEY: &str = "scoped-editor-key-0123456789";

/// The Node 22 binary of the end-to-end set-up (run first if needed); fails the test with the
/// fix when it or a client package these tests run is missing.
fn node_22() -> PathBuf {
    crate::common::e2e::node_22_with(
        &[
            "@modelcontextprotocol/inspector",
            "@modelcontextprotocol/sdk",
            "mcp-remote",
        ],
        false,
    )
}

/// A fresh, empty directory, the clients' `HOME` (Inspector and mcp-remote keep state there;
/// a leftover token from another run must not change what they do).
fn fresh_home(name: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!(
        "mcp-gatekeeper-interop-{name}-{}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    dir
}

/// Runs `e2e/<script> <args>` with Node 22 and `env`, in a fresh `HOME`, and fails the test,
/// with the script's whole output, unless it exits 0 within `limit` (the scripts bound every
/// client they start well within it).
async fn run_script(script: &str, args: &[&str], env: &[(&str, &str)], limit: Duration) {
    let node = node_22();
    let dir = crate::common::e2e::e2e_dir();
    let home = fresh_home(script.trim_end_matches(".mjs"));
    let node_bin = node.parent().map(Path::to_path_buf).unwrap_or_default();
    // Node 22 first on PATH, for anything a client starts with `env node`.
    let path = std::env::join_paths([node_bin].into_iter().chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .expect("a valid PATH");
    let mut command = Command::new(&node);
    command
        .arg(dir.join(script))
        .args(args)
        .current_dir(&dir)
        .env("PATH", path)
        .env("HOME", &home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("XDG_DATA_HOME", home.join(".local/share"))
        .env("XDG_STATE_HOME", home.join(".local/state"))
        .env("XDG_CACHE_HOME", home.join(".cache"))
        // No browser may open, whatever a client decides.
        .env("BROWSER", "true")
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (name, value) in env {
        command.env(name, value);
    }
    let child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", node.display()));
    let output = tokio::time::timeout(limit, child.wait_with_output()).await;
    // Best effort: a leftover temporary directory is harmless.
    let _ = std::fs::remove_dir_all(&home);
    let output = match output {
        Ok(output) => output.unwrap_or_else(|e| panic!("{script}: {e}")),
        Err(_) => panic!("{script} did not finish within {limit:?}"),
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{script} {} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        args.join(" "),
        output.status
    );
    // Shown with --nocapture: the checks that passed and what the clients printed.
    println!("{stdout}");
}

/// The hello example's tools behind one API key, [`HELLO_KEY`].
async fn start_hello() -> Server {
    let keys = ApiKeys::parse_env_value(HELLO_KEY).expect("a valid key");
    start(Gatekeeper::new(crate::hello::Hello).authenticate(keys)).await
}

/// The OAuth example's tools (each needs a scope) on a server that is its own authorization
/// server, with an API key too: [`SCOPED_KEY`], an editor's key holding only `data:read`.
struct OAuthWithKeys {
    url: String,
    running: RunningServer,
}

impl OAuthWithKeys {
    async fn start() -> Self {
        use crate::oauth_example::OAuthDataTools;
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let issuer = format!("http://{}", listener.local_addr().expect("an address"));
        let url = format!("{issuer}/mcp");
        let oauth = AuthorizationServer::new(&issuer)
            .resource(&url)
            .scopes(OAuthDataTools::declared_scopes())
            .build()
            .await
            .expect("the authorization server starts");
        let key = ApiKey::new("scoped-editor", SCOPED_KEY)
            .role("editor")
            .scopes(["data:read"]);
        let running = Gatekeeper::new(OAuthDataTools::default())
            .oauth(&oauth, &url)
            .authenticate(ApiKeys::new().with_key(key))
            .serve_on(listener)
            .expect("the server starts");
        Self { url, running }
    }
}

/// MCP Inspector's CLI with a wrong key, against both examples that offer no OAuth: it used to
/// take the `401` for an OAuth challenge and end with "Interactive OAuth requires a TTY" (or,
/// in a terminal, "Dynamic Client Registration rejected (HTTP 404)"); now it exits at once with
/// "Invalid API key". With the right key it lists the tools.
#[tokio::test(flavor = "multi_thread")]
async fn inspector_cli_shows_why_a_wrong_key_is_refused() {
    let wrong = format!("X-API-Key: {WRONG_KEY}");
    let rbac = start_rbac(false).await;
    let viewer = format!("X-API-Key: {VIEWER_KEY}");
    let env = [
        ("INTEROP_GOOD_HEADER", viewer.as_str()),
        ("INTEROP_WRONG_HEADER", wrong.as_str()),
    ];
    let args = [rbac.url.as_str(), "read-data", INVALID_KEY];
    run_script(
        "interop-inspector.mjs",
        &args,
        &env,
        Duration::from_secs(120),
    )
    .await;
    rbac.stop().await;

    let hello = start_hello().await;
    let good = format!("X-API-Key: {HELLO_KEY}");
    let env = [
        ("INTEROP_GOOD_HEADER", good.as_str()),
        ("INTEROP_WRONG_HEADER", wrong.as_str()),
    ];
    let args = [hello.url.as_str(), "hello", INVALID_KEY];
    run_script(
        "interop-inspector.mjs",
        &args,
        &env,
        Duration::from_secs(120),
    )
    .await;
    hello.stop().await;
}

/// The TypeScript SDK's transport with a static header (alone, and next to an OAuth provider
/// as OAuth-capable hosts configure it) fails with the server's reason, without OAuth
/// discovery; `Authorization: Basic` is answered `401`, not `400`.
#[tokio::test(flavor = "multi_thread")]
async fn typescript_sdk_client_gets_the_reason() {
    let rbac = start_rbac(false).await;
    let wrong = format!("X-API-Key: {WRONG_KEY}");
    let env = [("INTEROP_WRONG_HEADER", wrong.as_str())];
    let args = [rbac.url.as_str(), INVALID_KEY];
    run_script("interop-sdk.mjs", &args, &env, Duration::from_secs(90)).await;
    rbac.stop().await;
}

/// mcp-remote with a wrong key: it used to start an OAuth sign-in (callback server, discovery,
/// `POST /register` → 404) and die with "Dynamic Client Registration rejected (HTTP 404)"; now
/// it exits at once reporting "Invalid API key".
#[tokio::test(flavor = "multi_thread")]
async fn mcp_remote_reports_a_wrong_key_without_signing_in() {
    let hello = start_hello().await;
    let wrong = format!("X-API-Key: {WRONG_KEY}");
    let env = [("INTEROP_HEADER", wrong.as_str())];
    let args = [hello.url.as_str(), "refused", INVALID_KEY];
    run_script(
        "interop-mcp-remote.mjs",
        &args,
        &env,
        Duration::from_secs(90),
    )
    .await;
    hello.stop().await;
}

/// mcp-remote with a right API key lacking a tool's scope, on a server that is an OAuth
/// protected resource: the key used to get a `403 insufficient_scope` step-up challenge, on
/// which mcp-remote registered a client, printed a sign-in URL and waited for a browser,
/// never answering the call; an API key can never be stepped up, so the call now reaches the
/// tool guard, whose error names the missing scope.
#[tokio::test(flavor = "multi_thread")]
async fn mcp_remote_is_answered_when_a_key_lacks_a_scope() {
    let server = OAuthWithKeys::start().await;
    let header = format!("X-API-Key: {SCOPED_KEY}");
    let env = [("INTEROP_HEADER", header.as_str())];
    let arguments = json!({ "key": "k", "value": "v" }).to_string();
    let args = [
        server.url.as_str(),
        "scope",
        "data:write",
        "write-data",
        arguments.as_str(),
    ];
    run_script(
        "interop-mcp-remote.mjs",
        &args,
        &env,
        Duration::from_secs(90),
    )
    .await;
    server.running.shutdown().await.expect("clean shutdown");
}

/// The same refusals over plain HTTP: the API key lacking a scope gets the guard's JSON-RPC
/// error, while a token lacking it still gets the step-up challenge.
#[tokio::test]
async fn only_bearer_tokens_are_asked_to_step_up() {
    let server = OAuthWithKeys::start().await;
    let key = Mcp::connect(
        &server.url,
        Cred::ApiKey(SCOPED_KEY.into()),
        Version::V2025_11_25,
    )
    .await;
    let reply = key
        .call("write-data", json!({ "key": "k", "value": "v" }))
        .await;
    assert_eq!(reply.status, 200, "{reply:#?}");
    assert_eq!(
        reply.error()["data"]["reason"],
        "missing_scope",
        "{reply:#?}"
    );
    assert!(
        reply.error()["message"]
            .as_str()
            .unwrap()
            .contains("data:write")
    );
    server.running.shutdown().await.expect("clean shutdown");
}

/// The `401` for a request without a credential names only what the server accepts.
#[tokio::test]
async fn the_401_names_only_the_credentials_the_server_accepts() {
    let described = |server: &Server| {
        let url = server.url.clone();
        async move {
            let reply = Mcp::new(&url, Cred::None, Version::V2025_11_25)
                .request("tools/list", json!({}))
                .await;
            assert_eq!(reply.status, 401, "{reply:#?}");
            assert_eq!(reply.json_body()["error"], "unauthorized");
            reply.json_body()["error_description"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let hello = start_hello().await;
    assert_eq!(
        described(&hello).await,
        "Authentication required: send `X-API-Key: <key>` or `Authorization: Bearer <token>`"
    );
    hello.stop().await;
    let tokens_only = start(
        Gatekeeper::new(crate::hello::Hello).authenticate(
            Jwt::hs256(SECRET)
                .expect("a valid secret")
                .issuer(ISSUER)
                .audience(RESOURCE),
        ),
    )
    .await;
    assert_eq!(
        described(&tokens_only).await,
        "Authentication required: send `Authorization: Bearer <token>`"
    );
    tokens_only.stop().await;
}

/// Ending a session answers `200` (rmcp says `202`, which the Python SDK logs as a failed
/// termination); the session is gone afterwards.
#[tokio::test]
async fn ending_a_session_answers_200() {
    let server = start_rbac(false).await;
    let mcp = Mcp::connect(
        &server.url,
        Cred::ApiKey(VIEWER_KEY.into()),
        Version::V2025_11_25,
    )
    .await;
    let session = mcp.session.clone().expect("a session");
    let delete = || {
        mcp.http
            .delete(&server.url)
            .headers(mcp.base_headers(None))
            .send()
    };
    let response = delete().await.expect("DELETE answered");
    assert_eq!(response.status(), 200, "{response:?}");
    assert_eq!(response.text().await.unwrap(), "");
    let after = mcp.request("tools/list", json!({})).await;
    assert_eq!(after.status, 404, "session {session} ended: {after:#?}");
    server.stop().await;
}
