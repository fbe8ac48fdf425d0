//! End to end with third-party clients: the `oauth` example (SQLite store, login and consent
//! pages) on a loopback port, driven by software we did not write — the official TypeScript MCP
//! SDK (`e2e/sdk-oauth.mjs`), headless Chromium (`e2e/browser.mjs`) and the MCP conformance
//! suite's authorization-server leg (`e2e/conformance.mjs`).
//!
//! The Node packages and Chromium are installed by `e2e/setup.sh`, which the first of these
//! tests runs (`tests/common/e2e.rs`); when they are still missing these tests fail (never
//! skip) and say so, because a silently skipped interop test is a test that CI never runs.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use mcp_gatekeeper::{RunningServer, oauth::OAuthClient};
use tokio::{net::TcpListener, process::Command};

use crate::{
    common::e2e::{e2e_dir, node_22_with, path_with_node},
    oauth_example::{OAuthConfig, serve},
};

/// The demo user every script signs in as (an admin, so every tool is within its role).
pub(super) const E2E_USER: &str = "alice";
/// Its password (typed into the login page by the scripts).
pub(super) const E2E_PASSWORD: &str = "e2e-password-0123456789";
/// The pre-registered public client the conformance suite uses (it cannot register itself).
const CONFORMANCE_CLIENT: &str = "conformance-suite";

/// The Node 22 binary (the system Node 20 is too old for the conformance suite), after the
/// end-to-end set-up; fails the test with the fix when anything the scripts need is missing.
pub(super) fn node_22(needs_chromium: bool) -> PathBuf {
    let packages = [
        "@modelcontextprotocol/sdk",
        "@modelcontextprotocol/conformance",
        "playwright-core",
    ];
    node_22_with(&packages, needs_chromium)
}

/// A free loopback port, for a listener a child process opens itself (the conformance
/// suite's callback server). The tiny window between closing and reuse is acceptable here.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
    listener.local_addr().expect("a bound address").port()
}

/// A fresh directory for one instance's SQLite file and audit trail.
fn temp_data_dir(name: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    std::env::temp_dir().join(format!(
        "mcp-gatekeeper-e2e-{name}-{}-{nanos}",
        std::process::id()
    ))
}

/// One running `oauth` example.
struct Instance {
    /// `http://127.0.0.1:PORT`: the issuer, and the origin of every endpoint.
    issuer: String,
    running: RunningServer,
    data_dir: PathBuf,
}

impl Instance {
    /// Starts the example on an ephemeral port with a fresh data directory; `configure` adjusts
    /// the configuration (clients, auto-approve).
    async fn start(name: &str, configure: impl FnOnce(OAuthConfig) -> OAuthConfig) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let issuer = format!("http://{}", listener.local_addr().expect("address"));
        let data_dir = temp_data_dir(name);
        let config = configure(OAuthConfig {
            issuer: issuer.clone(),
            resource: format!("{issuer}/mcp"),
            stateless: false,
            data_dir: data_dir.clone(),
            database: None,
            user: E2E_USER.into(),
            password: E2E_PASSWORD.into(),
            role: "admin".into(),
            clients: Vec::new(),
            cimd_allow_private: false,
            auto_approve: false,
            redis: None,
        });
        let running = serve(config, listener)
            .await
            .expect("the oauth example starts");
        Self {
            issuer,
            running,
            data_dir,
        }
    }

    /// Stops the server and removes its data directory.
    async fn stop(self) {
        self.running.shutdown().await.expect("clean shutdown");
        // Best effort: a leftover temp directory is harmless.
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// Runs `e2e/<script> <args>` with `node` (Node 22) and fails the test, with the script's
/// whole output, unless it exits 0 within `limit`.
pub(super) async fn run_script(node: &Path, script: &str, args: &[String], limit: Duration) {
    let dir = e2e_dir();
    // Node 22 first on PATH so that anything the script spawns (`conformance`) runs on it too.
    let path = path_with_node(node);
    let child = Command::new(node)
        .arg(dir.join(script))
        .args(args)
        .current_dir(&dir)
        .env("PATH", path)
        .env("E2E_USER", E2E_USER)
        .env("E2E_PASSWORD", E2E_PASSWORD)
        .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", node.display()));
    let output = match tokio::time::timeout(limit, child.wait_with_output()).await {
        Ok(output) => output.unwrap_or_else(|e| panic!("{script}: {e}")),
        // Dropping the future kills the child (kill_on_drop); its partial output is lost, so
        // the scripts keep their own, shorter, timeouts and report before this one fires.
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
    // Shown with --nocapture: the checks that passed.
    println!("{stdout}");
}

/// The official TypeScript SDK as an MCP client: discovery, DCR, PKCE + resource through the
/// login and consent pages, tools, step-up on `insufficient_scope`, refresh rotation and
/// reuse detection, and bearer-token refusals.
#[tokio::test(flavor = "multi_thread")]
async fn typescript_sdk_client_completes_the_oauth_flow() {
    let node = node_22(false);
    let instance = Instance::start("sdk", |c| c).await;
    let mcp = format!("{}/mcp", instance.issuer);
    run_script(&node, "sdk-oauth.mjs", &[mcp], Duration::from_secs(120)).await;
    instance.stop().await;
}

/// Headless Chromium through the real pages: login, the consent page (shows the client's name
/// and redirect host; screenshot in `target/e2e-artifacts/consent.png`), approve → code at the
/// loopback redirect, exchanged; deny → `access_denied` with the same `state`.
#[tokio::test(flavor = "multi_thread")]
async fn chromium_signs_in_and_consents() {
    let node = node_22(true);
    let instance = Instance::start("browser", |c| c).await;
    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/e2e-artifacts");
    let args = [
        instance.issuer.clone(),
        artifacts.to_string_lossy().into_owned(),
    ];
    run_script(&node, "browser.mjs", &args, Duration::from_secs(180)).await;
    instance.stop().await;
}

/// The MCP conformance suite's authorization-server scenarios (metadata endpoint,
/// authorization-code grant) against an auto-approving instance with a pre-registered public
/// client whose redirect URI is the suite's callback listener.
#[tokio::test(flavor = "multi_thread")]
async fn conformance_suite_authorization_scenarios_pass() {
    let node = node_22(false);
    let port = free_port();
    let redirect = format!("http://127.0.0.1:{port}/callback");
    let instance = Instance::start("conformance", |mut c| {
        c.auto_approve = true;
        c.clients.push(
            OAuthClient::public(CONFORMANCE_CLIENT)
                .name("MCP conformance suite")
                .redirect_uris([redirect]),
        );
        c
    })
    .await;
    let args = [
        instance.issuer.clone(),
        CONFORMANCE_CLIENT.to_owned(),
        port.to_string(),
    ];
    run_script(&node, "conformance.mjs", &args, Duration::from_secs(180)).await;
    instance.stop().await;
}
