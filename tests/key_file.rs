//! API keys rotated without a restart: `ApiKeyFile` reads its file again when it changes and
//! on `SIGHUP`; a file that is not valid changes nothing.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use mcp_gatekeeper::{ApiKey, ApiKeyFile, Gatekeeper, RunningServer, prelude::*};
use serde_json::json;

use crate::common::{Cred, Mcp, Version};

#[derive(Roles)]
enum Role {
    Viewer,
    Admin,
}

struct Tools;

#[mcp_tools(roles = Role)]
impl Tools {
    /// Says who may read.
    #[mcp_tool(role = "viewer")]
    async fn read(&self) -> String {
        "read".into()
    }

    /// Only admins.
    #[mcp_tool(role = "admin")]
    async fn wipe(&self) -> String {
        "wiped".into()
    }
}

const KEY_A: &str = "key-file-a-0123456789abcdef";
const KEY_B: &str = "key-file-b-0123456789abcdef";
const KEY_C: &str = "key-file-c-0123456789abcdef";

/// A key-file line for `secret`.
fn line(id: &str, role: &str, secret: &str) -> String {
    format!("{id} {role} sha256:{}\n", ApiKey::digest_hex(secret))
}

/// Replaces the file at once (write aside, rename over), as deployment tools do.
fn replace(path: &Path, text: &str) {
    let aside = path.with_extension("new");
    std::fs::write(&aside, text).unwrap();
    std::fs::rename(&aside, path).unwrap();
}

struct Served {
    server: RunningServer,
    url: String,
    dir: PathBuf,
}

impl Served {
    async fn start(name: &str, keys: impl FnOnce(&Path) -> ApiKeyFile) -> Self {
        let dir =
            std::env::temp_dir().join(format!("mcpgk-key-file-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("api-keys");
        std::fs::write(
            &path,
            format!(
                "# rotated by the tests\n{}{}",
                line("a", "admin", KEY_A),
                line("b", "viewer", KEY_B)
            ),
        )
        .unwrap();
        let server = Gatekeeper::new(Tools)
            .authenticate(keys(&path))
            .audit_file(dir.join("audit.jsonl"))
            .stateless()
            .bind("127.0.0.1:0")
            .await
            .unwrap();
        let url = format!("http://{}/mcp", server.local_addr());
        Self { server, url, dir }
    }

    fn keys(&self) -> PathBuf {
        self.dir.join("api-keys")
    }

    /// The status of a `tools/call read` with `key` (200 with a result, 403 refused).
    async fn status(&self, key: &str) -> u16 {
        let mcp = Mcp::new(&self.url, Cred::ApiKey(key.into()), Version::V2025_06_18);
        mcp.call("read", json!({})).await.status
    }

    /// Waits until `key` gets `status`; how long it took.
    async fn until(&self, key: &str, status: u16) -> Duration {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            if self.status(key).await == status {
                return start.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the key never got {status}");
    }

    async fn audit(&self) -> String {
        tokio::time::sleep(Duration::from_millis(300)).await;
        std::fs::read_to_string(self.dir.join("audit.jsonl")).unwrap_or_default()
    }

    async fn stop(self) {
        self.server.shutdown().await.unwrap();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn keys_removed_and_added_take_effect_within_a_second_and_a_bad_file_changes_nothing() {
    let served = Served::start("rotate", |path| ApiKeyFile::open(path).unwrap()).await;
    assert_eq!(served.status(KEY_A).await, 200);
    assert_eq!(served.status(KEY_C).await, 403);
    // Rotate: a goes, c comes.
    replace(
        &served.keys(),
        &format!(
            "{}{}",
            line("b", "viewer", KEY_B),
            line("c", "admin", KEY_C)
        ),
    );
    let gone = served.until(KEY_A, 403).await;
    let came = served.until(KEY_C, 200).await;
    println!("removed key refused after {gone:?}, new key accepted after {came:?}");
    assert!(gone < Duration::from_secs(1), "{gone:?}");
    assert_eq!(served.status(KEY_B).await, 200);
    // A file with a bad line is not taken: the keys in force stay.
    replace(
        &served.keys(),
        &format!("{}this line is not a key\n", line("b", "viewer", KEY_B)),
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(served.status(KEY_C).await, 200, "c stays in force");
    assert_eq!(served.status(KEY_B).await, 200);
    // Nor is a file naming a role the tools do not declare.
    replace(&served.keys(), &line("b", "superuser", KEY_B));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(served.status(KEY_C).await, 200, "c stays in force");
    // Nor a missing file.
    std::fs::remove_file(served.keys()).unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(served.status(KEY_C).await, 200, "c stays in force");
    let audit = served.audit().await;
    let lines = |reason: &str| -> Vec<serde_json::Value> {
        audit
            .lines()
            .filter(|l| l.contains(&format!(r#""reason":"{reason}""#)))
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let reloaded = lines("key_file_reloaded");
    assert!(!reloaded.is_empty(), "{audit}");
    assert_eq!(reloaded[0]["event"], "configuration");
    // Each rejected file is recorded, with what is wrong (other tests of this process send it
    // SIGHUP, which reloads every watched file: a state may be recorded twice, or for that
    // cause rather than for the change).
    let rejected = lines("key_file_rejected");
    let details: Vec<&str> = rejected
        .iter()
        .map(|r| r["detail"].as_str().unwrap())
        .collect();
    assert!(details.iter().any(|d| d.contains("line 2")), "{details:?}");
    assert!(
        details.iter().any(|d| d.contains("superuser")),
        "{details:?}"
    );
    assert!(
        details
            .iter()
            .any(|d| !d.contains("line 2") && !d.contains("superuser")),
        "the missing file: {details:?}"
    );
    assert!(details.iter().all(|d| d.contains("keys in force stay")));
    served.stop().await;
}

#[cfg(unix)]
#[tokio::test]
async fn sighup_reloads_the_file() {
    let served = Served::start("sighup", |path| {
        // Only the signal reloads in this test.
        ApiKeyFile::open(path)
            .unwrap()
            .check_every(Duration::from_secs(3600))
    })
    .await;
    replace(&served.keys(), &line("c", "viewer", KEY_C));
    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    served.until(KEY_C, 200).await;
    assert_eq!(served.status(KEY_A).await, 403);
    // The signal did it (other tests of this process send SIGHUP too, which is as good: the
    // file is checked for a change only once an hour here).
    let audit = served.audit().await;
    assert!(
        audit
            .lines()
            .any(|l| l.contains("key_file_reloaded") && l.contains("(SIGHUP)")),
        "{audit}"
    );
    served.stop().await;
}

#[tokio::test]
async fn reload_on_demand_reports_why_a_file_is_refused() {
    let dir = std::env::temp_dir().join(format!("mcpgk-key-file-demand-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("keys");
    std::fs::write(&path, line("a", "admin", KEY_A)).unwrap();
    let keys = ApiKeyFile::open(&path).unwrap();
    assert_eq!(keys.len(), 1);
    std::fs::write(
        &path,
        format!("{}{}", line("a", "admin", KEY_A), line("a", "admin", KEY_B)),
    )
    .unwrap();
    let error = keys.reload().unwrap_err().to_string();
    assert!(error.contains("line 2"), "{error}");
    assert_eq!(keys.len(), 1);
    std::fs::write(
        &path,
        format!("{}{}", line("a", "admin", KEY_A), line("b", "-", KEY_B)),
    )
    .unwrap();
    assert_eq!(keys.reload().unwrap(), 2);
    // A file that cannot be opened at start is an error at once.
    assert!(ApiKeyFile::open(dir.join("missing")).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_rbac_example_takes_its_keys_from_a_file_it_rereads() {
    use crate::common::{example_binary, process::CapturedProcess};
    let dir = std::env::temp_dir().join(format!("mcpgk-key-file-rbac-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("api-keys");
    std::fs::write(&path, line("ops", "admin", KEY_A)).unwrap();
    // The token endpoint's clients from a file of the same format.
    let clients = dir.join("clients");
    const CLIENT_SECRET: &str = "rbac-client-secret-0123456789";
    std::fs::write(&clients, line("svc", "viewer", CLIENT_SECRET)).unwrap();
    let mut example = CapturedProcess::spawn(
        std::process::Command::new(example_binary("rbac"))
            .env("BIND", "127.0.0.1:0")
            .env("STATELESS", "1")
            .env("MCP_API_KEYS_FILE", &path)
            .env_remove("MCP_API_KEYS")
            .env("MCP_CLIENTS_FILE", &clients)
            .env_remove("MCP_CLIENTS")
            .env("RUST_LOG", "warn"),
        "the rbac example",
    );
    let url = format!("http://{}/mcp", example.listening());
    assert!(
        example.printed().contains("1 API key(s) from"),
        "{}",
        example.printed()
    );
    let status = |key: &'static str| {
        let mcp = Mcp::new(&url, Cred::ApiKey(key.into()), Version::V2025_06_18);
        async move { mcp.request("tools/list", json!({})).await.status }
    };
    assert_eq!(status(KEY_A).await, 200);
    assert_eq!(status(KEY_B).await, 403);
    let token = reqwest::Client::new()
        .post(url.replace("/mcp", "/auth/token"))
        .json(&json!({ "client_id": "svc", "client_secret": CLIENT_SECRET }))
        .send()
        .await
        .unwrap();
    assert_eq!(token.status(), 200, "{}", example.printed());
    replace(&path, &line("reports", "viewer", KEY_B));
    let start = Instant::now();
    while status(KEY_A).await != 403 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the old key still works"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(status(KEY_B).await, 200);
    // SIGHUP reloads rather than ends the example.
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &example.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(status(KEY_B).await, 200, "{}", example.printed());
    drop(example);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The token endpoint's clients from a file, rotated like API keys.
#[tokio::test]
async fn token_clients_come_from_a_file_read_again_when_it_changes() {
    use mcp_gatekeeper::TokenEndpoint;
    const OLD: &str = "client-secret-old-0123456789";
    const NEW: &str = "client-secret-new-0123456789";
    let dir = std::env::temp_dir().join(format!("mcpgk-client-file-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("clients");
    let audit = dir.join("audit.jsonl");
    std::fs::write(
        &path,
        format!(
            "svc viewer sha256:{} scopes=data:read\n",
            ApiKey::digest_hex(OLD)
        ),
    )
    .unwrap();
    let secret = "a-token-endpoint-secret-0123456789abcdef";
    let endpoint = TokenEndpoint::hs256(secret)
        .unwrap()
        .audience("http://127.0.0.1/mcp")
        .clients_file(&path);
    let server = Gatekeeper::new(Tools)
        .authenticate(endpoint.verifier().unwrap())
        .token_endpoint(endpoint)
        .audit_file(&audit)
        .stateless()
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let url = format!("http://{}/auth/token", server.local_addr());
    let http = reqwest::Client::new();
    let grant = |secret: &'static str| {
        let request = http
            .post(&url)
            .json(&json!({ "client_id": "svc", "client_secret": secret }));
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<serde_json::Value>().await.unwrap())
        }
    };
    let (status, body) = grant(OLD).await;
    assert_eq!(status, 200, "{body}");
    // The token says what the file's line grants.
    use base64::Engine as _;
    let payload = body["access_token"]
        .as_str()
        .unwrap()
        .split('.')
        .nth(1)
        .unwrap();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        (&claims["sub"], &claims["role"], &claims["scope"]),
        (&json!("svc"), &json!("viewer"), &json!("data:read"))
    );
    // A new secret for the client: the old one stops working, the new one works.
    replace(
        &path,
        &format!("svc viewer sha256:{}\n", ApiKey::digest_hex(NEW)),
    );
    let start = Instant::now();
    while grant(OLD).await.0 != 401 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the old secret still works"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(grant(NEW).await.0, 200);
    // A file that fails changes nothing.
    replace(&path, "svc viewer not-a-digest\n");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(grant(NEW).await.0, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let trail = std::fs::read_to_string(&audit).unwrap();
    assert!(
        trail.contains(r#""reason":"client_file_reloaded""#),
        "{trail}"
    );
    assert!(
        trail.contains(r#""reason":"client_file_rejected""#),
        "{trail}"
    );
    server.shutdown().await.unwrap();
    // Clients from code and from a file at once are refused.
    let both = TokenEndpoint::hs256(secret)
        .unwrap()
        .client(mcp_gatekeeper::TokenClient::new(
            "x",
            "a-client-secret-0123456789",
        ))
        .clients_file(&path)
        .router();
    assert!(both.is_err());
    let _ = std::fs::remove_dir_all(&dir);
}
