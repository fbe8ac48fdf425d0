//! Shared test harness: servers on ephemeral loopback ports, a raw MCP-over-HTTP client that
//! speaks each protocol version, and credentials.

#![allow(dead_code)]

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{SystemTime, UNIX_EPOCH},
};

use mcp_gatekeeper::{ApiKeys, RunningServer, TokenEndpoint};
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::{Value, json};

use crate::rbac::{self, RbacConfig};

pub mod certs;
pub mod e2e;
pub mod idp;
pub mod process;

/// The HS256 secret of every test server.
pub const SECRET: &str = "integration-test-secret-0123456789abcdef";
pub const ISSUER: &str = "mcp-auth-server";
/// The audience the test servers' JWTs carry (their resource URL as configured).
pub const RESOURCE: &str = "http://localhost/mcp";

pub const VIEWER_KEY: &str = "viewer-key-000000000001";
pub const EDITOR_KEY: &str = "editor-key-000000000002";
pub const ADMIN_KEY: &str = "admin-key-0000000000003";

pub const CLIENTS: &str = "svc-viewer:viewer-secret-00001:viewer,svc-admin:admin-secret-000022:admin:data:read data:write";

/// A running example server.
pub struct Server {
    pub running: RunningServer,
    pub url: String,
    pub base: String,
}

impl Server {
    pub async fn stop(self) {
        self.running.shutdown().await.expect("clean shutdown");
    }
}

pub fn rbac_config(stateless: bool) -> RbacConfig {
    RbacConfig {
        jwt_secret: SECRET.into(),
        api_keys: crate::rbac::ApiKeySource::Listed(
            ApiKeys::parse_env_value(&format!(
                "{VIEWER_KEY}:viewer,{EDITOR_KEY}:editor,{ADMIN_KEY}:admin"
            ))
            .unwrap(),
        ),
        clients: TokenEndpoint::parse_clients(CLIENTS).unwrap(),
        clients_file: None,
        stateless,
        audit_log: None,
        resource: RESOURCE.into(),
        redis: None,
    }
}

pub async fn start(
    gatekeeper: mcp_gatekeeper::Gatekeeper<impl mcp_gatekeeper::McpTools>,
) -> Server {
    let running = gatekeeper.bind("127.0.0.1:0").await.expect("server starts");
    let base = format!("http://{}", running.local_addr());
    Server {
        url: format!("{base}/mcp"),
        base,
        running,
    }
}

pub async fn start_rbac(stateless: bool) -> Server {
    start(rbac::gatekeeper(rbac_config(stateless)).unwrap()).await
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An HS256 JWT signed with [`SECRET`] for `sub` with `role`, valid for an hour.
pub fn jwt(sub: &str, role: &str) -> String {
    jwt_with(
        json!({ "sub": sub, "role": role, "iss": ISSUER, "aud": RESOURCE, "iat": now(), "exp": now() + 3600 }),
    )
}

/// An HS256 JWT with arbitrary claims, signed with [`SECRET`].
pub fn jwt_with(claims: Value) -> String {
    sign(jsonwebtoken::Algorithm::HS256, SECRET.as_bytes(), &claims)
}

pub fn sign(alg: jsonwebtoken::Algorithm, secret: &[u8], claims: &Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(alg),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret).unwrap(),
    )
    .unwrap()
}

/// How a request authenticates.
#[derive(Clone, Debug)]
pub enum Cred {
    None,
    Bearer(String),
    ApiKey(String),
}

impl Cred {
    pub fn headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        match self {
            Cred::None => {}
            Cred::Bearer(token) => {
                headers.insert(
                    "authorization",
                    HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
                );
            }
            Cred::ApiKey(key) => {
                headers.insert("x-api-key", HeaderValue::from_str(key).unwrap());
            }
        }
        headers
    }
}

/// The protocol versions the framework supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    V2025_06_18,
    V2025_11_25,
    V2026_07_28,
}

pub const VERSIONS: [Version; 3] = [
    Version::V2025_06_18,
    Version::V2025_11_25,
    Version::V2026_07_28,
];

impl Version {
    pub fn as_str(self) -> &'static str {
        match self {
            Version::V2025_06_18 => "2025-06-18",
            Version::V2025_11_25 => "2025-11-25",
            Version::V2026_07_28 => "2026-07-28",
        }
    }

    fn per_request(self) -> bool {
        self == Version::V2026_07_28
    }
}

/// One HTTP reply and the JSON-RPC message in it.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub message: Option<Value>,
    pub text: String,
}

impl Reply {
    /// The JSON-RPC `result`, or a panic that shows the whole reply.
    pub fn result(&self) -> &Value {
        self.message
            .as_ref()
            .and_then(|m| m.get("result"))
            .unwrap_or_else(|| panic!("expected a result, got {self:#?}"))
    }

    /// The JSON-RPC `error`, or a panic that shows the whole reply.
    pub fn error(&self) -> &Value {
        self.message
            .as_ref()
            .and_then(|m| m.get("error"))
            .unwrap_or_else(|| panic!("expected an error, got {self:#?}"))
    }

    pub fn error_code(&self) -> Option<i64> {
        self.message.as_ref()?.get("error")?.get("code")?.as_i64()
    }

    /// The text of a tool result's first content block.
    pub fn text(&self) -> String {
        self.result()["content"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    pub fn is_tool_error(&self) -> bool {
        self.result()["isError"] == json!(true)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json_body(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|_| panic!("not JSON: {self:#?}"))
    }
}

/// A raw MCP client over HTTP: initialize (for session-based versions), then requests.
pub struct Mcp {
    pub http: reqwest::Client,
    pub url: String,
    pub cred: Cred,
    pub version: Version,
    pub session: Option<String>,
    next_id: AtomicU64,
}

/// An HTTP client whose connections come from `source` (any 127.0.0.0/8 address works on
/// Linux loopback), so tests can play several clients on one machine. It never follows
/// redirects (tests read `Location`).
pub fn client_from(source: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(source.parse::<std::net::IpAddr>().expect("an IP address"))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a client")
}

/// A hidden form field's value in an HTML page (`name="NAME" value="..."`).
pub fn hidden(page: &str, name: &str) -> String {
    let marker = format!(r#"name="{name}" value=""#);
    let start = page
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in {page}"))
        + marker.len();
    let end = page[start..].find('"').unwrap() + start;
    page[start..end].to_owned()
}

/// The path of an example's binary, built by `cargo test` next to the test binary
/// (`target/<profile>/deps/<test>` → `target/<profile>/examples/<name>`), or in
/// `EXAMPLES_DIR` when set (to run a test against another build, e.g. an older commit's).
pub fn example_binary(name: &str) -> std::path::PathBuf {
    let dir = match std::env::var_os("EXAMPLES_DIR") {
        Some(dir) => std::path::PathBuf::from(dir),
        None => {
            let exe = std::env::current_exe().expect("the test binary's path");
            exe.parent()
                .and_then(std::path::Path::parent)
                .expect("target/<profile>")
                .join("examples")
        }
    };
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the examples (`cargo test` does) and re-run",
        path.display()
    );
    path
}

impl Mcp {
    /// The same client as [`Mcp::new`], connecting from `source`.
    pub fn from_address(url: &str, cred: Cred, version: Version, source: &str) -> Self {
        Self {
            http: client_from(source),
            ..Self::new(url, cred, version)
        }
    }

    pub fn new(url: &str, cred: Cred, version: Version) -> Self {
        Self {
            http: reqwest::Client::new(),
            url: url.into(),
            cred,
            version,
            session: None,
            next_id: AtomicU64::new(1),
        }
    }

    /// Connects: `initialize` + `notifications/initialized` for session-era versions.
    pub async fn connect(url: &str, cred: Cred, version: Version) -> Self {
        let mut mcp = Self::new(url, cred, version);
        if !version.per_request() {
            let reply = mcp
                .request(
                    "initialize",
                    json!({
                        "protocolVersion": version.as_str(),
                        "capabilities": {},
                        "clientInfo": { "name": "gatekeeper-tests", "version": "0" },
                    }),
                )
                .await;
            assert_eq!(reply.status, 200, "initialize failed: {reply:#?}");
            assert_eq!(reply.result()["protocolVersion"], version.as_str());
            mcp.session = reply.header("mcp-session-id").map(str::to_owned);
            let note = mcp
                .post(
                    json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }),
                    None,
                )
                .await;
            assert_eq!(note.status, 202, "{note:#?}");
        }
        mcp
    }

    pub fn base_headers(&self, method: Option<(&str, Option<&str>)>) -> HeaderMap {
        let mut headers = self.cred.headers();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        headers.insert(
            "accept",
            HeaderValue::from_static("application/json, text/event-stream"),
        );
        headers.insert(
            "mcp-protocol-version",
            HeaderValue::from_static(self.version.as_str()),
        );
        if let Some(session) = &self.session {
            headers.insert("mcp-session-id", HeaderValue::from_str(session).unwrap());
        }
        if self.version.per_request()
            && let Some((method, name)) = method
        {
            headers.insert("mcp-method", HeaderValue::from_str(method).unwrap());
            if let Some(name) = name {
                headers.insert("mcp-name", HeaderValue::from_str(name).unwrap());
            }
        }
        headers
    }

    pub async fn post(&self, body: Value, method: Option<(&str, Option<&str>)>) -> Reply {
        let id = body.get("id").cloned();
        let response = self
            .http
            .post(&self.url)
            .headers(self.base_headers(method))
            .body(body.to_string())
            .send()
            .await
            .expect("request sent");
        read_reply(response, id).await
    }

    /// Sends a JSON-RPC request and returns its reply.
    pub async fn request(&self, method: &str, mut params: Value) -> Reply {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        if self.version.per_request() {
            params["_meta"] = json!({
                "io.modelcontextprotocol/protocolVersion": self.version.as_str(),
                "io.modelcontextprotocol/clientCapabilities": {},
                "io.modelcontextprotocol/clientInfo": { "name": "gatekeeper-tests", "version": "0" },
            });
        }
        let name = params
            .get("name")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let body = json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params });
        let name = if method == "tools/call" { name } else { None };
        self.post(body, Some((method, name.as_deref()))).await
    }

    pub async fn call(&self, tool: &str, arguments: Value) -> Reply {
        self.request(
            "tools/call",
            json!({ "name": tool, "arguments": arguments }),
        )
        .await
    }

    /// The names of the tools `tools/list` shows.
    pub async fn list(&self) -> Vec<String> {
        let reply = self.request("tools/list", json!({})).await;
        reply.result()["tools"]
            .as_array()
            .unwrap_or_else(|| panic!("no tools in {reply:#?}"))
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_owned())
            .collect()
    }
}

/// Reads a reply, plain JSON or SSE; for SSE, picks the message answering `id`.
pub async fn read_reply(response: reqwest::Response, id: Option<Value>) -> Reply {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let is_sse = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let text = response.text().await.unwrap_or_default();
    let message = if is_sse {
        text.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
            .find(|m| id.is_none() || m.get("id") == id.as_ref())
    } else {
        serde_json::from_str(&text).ok()
    };
    Reply {
        status,
        headers,
        message,
        text,
    }
}
