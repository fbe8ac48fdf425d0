//! Role-based access to an in-memory data store: the seed's RBAC server.
//!
//! Four tools guarded by a three-level hierarchy (viewer < editor < admin), each with its own
//! per-caller rate limit; callers authenticate with an HS256 JWT (`role` claim, issuer
//! `mcp-auth-server`) or an API key with a role. `POST /auth/token` exchanges client
//! credentials for a JWT, and `POST /auth/revoke` (RFC 7009: the same client credentials and
//! `token=...`) takes one back before it expires. The store starts with one value (`a` = `welcome`), so that a first
//! `read-data` finds something.
//!
//! ```text
//! cargo run --example rbac
//! ```
//!
//! Configuration (all optional; what is missing is generated and printed, for a demo, with
//! command lines that use it):
//! - `JWT_SECRET`: HS256 secret, at least 32 bytes;
//! - `MCP_API_KEYS`: `KEY:ROLE,KEY:ROLE,...`;
//! - `MCP_API_KEYS_FILE`: instead, a file of key digests (`ID ROLE sha256:HEX ...` per line,
//!   as `mcp-gatekeeper keys new` prints them), read again when it changes and on `SIGHUP`:
//!   keys are added and removed without a restart;
//! - `MCP_CLIENTS`: `CLIENT_ID:SECRET:ROLE[:SCOPE ...],...` for `POST /auth/token`;
//! - `MCP_CLIENTS_FILE`: instead, a file of those clients' secret digests (`CLIENT_ID ROLE
//!   sha256:HEX [scopes=A,B]` per line, the key-file format), read again when it changes and
//!   on `SIGHUP`;
//! - `AUDIT_LOG`: a JSON-lines file for the audit trail;
//! - `REDIS_URL`: keep the tools' rate limits, the failure lockout, the revoked tokens and
//!   (stateful) the owners of MCP sessions in this Redis, shared by every replica started with
//!   the same URL and `REDIS_PREFIX` (default `mcp:rbac:`); while Redis does not answer, a
//!   rate-limited call and a JWT are refused (`503`), failures are counted per replica;
//!
//! and, as in every example:
//! - `BIND`: the address to listen on (default `127.0.0.1:3000`; port 0 picks a free port);
//! - `STATELESS=1`: plain JSON replies, no sessions;
//! - `METRICS_BIND`: serve Prometheus metrics at `/metrics` on this address (e.g.
//!   `127.0.0.1:9100`);
//! - `OTEL_TRACES_EXPORTER=console`: print the gatekeeper's OpenTelemetry spans on stdout;
//! - `MCP_RESOURCE`: the endpoint's URL as clients reach it, the audience (`aud`) every JWT
//!   must carry and `/auth/token` writes into its tokens (default `http://<BIND>/mcp`, an
//!   unspecified address such as `0.0.0.0` written as `127.0.0.1`); its host is answered to
//!   besides the loopback names.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Mutex,
};

use mcp_gatekeeper::{ConfigError, TokenClient, prelude::*};

#[path = "telemetry.rs"]
mod telemetry;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The roles, least to most privileged: each includes the ones before it.
#[derive(Roles, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Reads data.
    Viewer,
    /// Reads and writes data.
    Editor,
    /// Everything, including deletes and user management.
    Admin,
}

/// The data the tools work on: values by key and the store's users. The tools below (and the
/// OAuth example's) are thin, guarded wrappers around these methods.
pub struct DataStore {
    data: Mutex<HashMap<String, String>>,
    users: Mutex<BTreeMap<String, Role>>,
}

/// The key a new store holds a value under, and that value.
pub const WELCOME: (&str, &str) = ("a", "welcome");

impl Default for DataStore {
    /// A store holding [`WELCOME`]: a newcomer's first call is usually a read, and "no value
    /// stored" would look like a failure of the server rather than an empty store.
    fn default() -> Self {
        let (key, value) = WELCOME;
        Self {
            data: Mutex::new(HashMap::from([(key.to_owned(), value.to_owned())])),
            users: Mutex::default(),
        }
    }
}

/// The RBAC server's tools.
#[derive(Default)]
pub struct DataTools {
    store: DataStore,
}

/// What `write-data` reports.
#[derive(Serialize, JsonSchema)]
pub struct Receipt {
    /// The key written.
    pub key: String,
    /// Whether an earlier value was replaced.
    pub replaced: bool,
    /// Who wrote it.
    pub written_by: String,
}

/// What `manage-users` can do.
#[derive(Deserialize, JsonSchema, Debug, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub enum UserAction {
    /// List users and their roles.
    List,
    /// Add or update a user.
    Add,
    /// Remove a user.
    Remove,
}

impl DataStore {
    /// The value under `key`.
    pub fn read(&self, key: &str) -> Result<String, ToolError> {
        let data = self
            .data
            .lock()
            .map_err(|_| ToolError::internal("store unavailable"))?;
        data.get(key)
            .cloned()
            .ok_or_else(|| ToolError::new(format!("no value stored under `{key}`")))
    }

    /// Stores `value` under `key` for `writer`.
    pub fn write(&self, writer: &str, key: String, value: String) -> Result<Receipt, ToolError> {
        let mut data = self
            .data
            .lock()
            .map_err(|_| ToolError::internal("store unavailable"))?;
        let replaced = data.insert(key.clone(), value).is_some();
        Ok(Receipt {
            key,
            replaced,
            written_by: writer.to_owned(),
        })
    }

    /// Deletes `key`. Only code holding proof of the admin role can call it.
    pub fn delete(&self, _proof: &Granted<Admin>, key: &str) -> Result<String, ToolError> {
        let mut data = self
            .data
            .lock()
            .map_err(|_| ToolError::internal("store unavailable"))?;
        Ok(if data.remove(key).is_some() {
            format!("deleted `{key}`")
        } else {
            format!("`{key}` was not stored")
        })
    }

    /// Lists, adds or removes users of the store.
    pub fn manage_users(
        &self,
        action: UserAction,
        username: Option<String>,
        role: Option<String>,
    ) -> Result<String, ToolError> {
        let mut users = self
            .users
            .lock()
            .map_err(|_| ToolError::internal("store unavailable"))?;
        match (action, username) {
            (UserAction::List, _) => Ok(users
                .iter()
                .map(|(name, role)| format!("{name}: {}", role.name()))
                .collect::<Vec<_>>()
                .join("\n")),
            (UserAction::Add, Some(name)) => {
                let role = role.as_deref().unwrap_or("viewer");
                let role = *Role::from_name(role)
                    .ok_or_else(|| ToolError::new(format!("unknown role `{role}`")))?;
                users.insert(name.clone(), role);
                Ok(format!("{name} is now {}", role.name()))
            }
            (UserAction::Remove, Some(name)) => Ok(match users.remove(&name) {
                Some(_) => format!("removed {name}"),
                None => format!("no user {name}"),
            }),
            (_, None) => Err(ToolError::new(
                "`username` is required to add or remove a user",
            )),
        }
    }
}

/// An RBAC-protected key-value store. Read with `read-data`, write with `write-data` (editors),
/// delete with `delete-data` and administer users with `manage-users` (admins).
#[mcp_tools(roles = Role)]
impl DataTools {
    /// Read the value stored under a key.
    ///
    /// # Arguments
    /// * `key` - The key to read.
    #[mcp_tool(name = "read-data", role = "viewer", rate = 100, read_only)]
    async fn read_data(&self, key: String) -> Result<String, ToolError> {
        self.store.read(&key)
    }

    /// Store a value under a key.
    ///
    /// # Arguments
    /// * `key` - The key to write.
    /// * `value` - The value to store.
    #[mcp_tool(name = "write-data", role = "editor", rate = "50/min", idempotent)]
    async fn write_data(
        &self,
        caller: Caller<Role>,
        key: String,
        value: String,
    ) -> Result<Json<Receipt>, ToolError> {
        self.store.write(caller.subject(), key, value).map(Json)
    }

    /// Delete the value stored under a key.
    ///
    /// # Arguments
    /// * `key` - The key to delete.
    #[mcp_tool(name = "delete-data", role = "admin", rate = "10/min", destructive)]
    async fn delete_data(&self, proof: Granted<Admin>, key: String) -> Result<String, ToolError> {
        self.store.delete(&proof, &key)
    }

    /// List, add or remove users of the store.
    ///
    /// # Arguments
    /// * `action` - `list`, `add` or `remove`.
    /// * `username` - The user to add or remove.
    /// * `role` - The role of an added user: `viewer`, `editor` or `admin`.
    #[mcp_tool(name = "manage-users", role = "admin", rate = "20/min")]
    async fn manage_users(
        &self,
        action: UserAction,
        username: Option<String>,
        role: Option<String>,
    ) -> Result<String, ToolError> {
        self.store.manage_users(action, username, role)
    }
}

/// Where the API keys come from.
pub enum ApiKeySource {
    /// Keys given at start (`MCP_API_KEYS`).
    Listed(ApiKeys),
    /// A file of digests, reloaded while the server runs (`MCP_API_KEYS_FILE`).
    File(mcp_gatekeeper::ApiKeyFile),
}

/// How the example is configured.
pub struct RbacConfig {
    /// The HS256 secret for JWTs (verification and `/auth/token`).
    pub jwt_secret: String,
    /// API keys with roles.
    pub api_keys: ApiKeySource,
    /// Clients of `POST /auth/token`.
    pub clients: Vec<TokenClient>,
    /// Or a file of them, read again when it changes (then `clients` is empty).
    pub clients_file: Option<std::path::PathBuf>,
    /// Serve without sessions.
    pub stateless: bool,
    /// Write the audit trail to this JSON-lines file.
    pub audit_log: Option<std::path::PathBuf>,
    /// The MCP endpoint's resource URL: the `aud` every accepted JWT must carry, and the `aud`
    /// of the tokens `/auth/token` issues.
    pub resource: String,
    /// The Redis shared with other replicas, if any.
    pub redis: Option<SharedRedis>,
}

/// The Redis replicas share state through (`REDIS_URL`, `REDIS_PREFIX`). `Debug` shows the
/// prefix only: the URL may carry Redis's password.
#[derive(Clone)]
pub struct SharedRedis {
    /// `redis://[user:password@]host:port[/db]`.
    pub url: String,
    /// The prefix of every key.
    pub prefix: String,
}

impl std::fmt::Debug for SharedRedis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedRedis")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl SharedRedis {
    /// `REDIS_URL` and `REDIS_PREFIX` (default `default_prefix`); `None` without `REDIS_URL`:
    /// each process keeps its own state.
    pub fn from_env(default_prefix: &str) -> Option<Self> {
        let url = std::env::var("REDIS_URL").ok().filter(|v| !v.is_empty())?;
        let prefix = std::env::var("REDIS_PREFIX").unwrap_or_else(|_| default_prefix.into());
        Some(Self { url, prefix })
    }
}

/// The token endpoint of the example.
pub fn token_endpoint(config: &RbacConfig) -> Result<TokenEndpoint, ConfigError> {
    let mut endpoint = TokenEndpoint::hs256(&config.jwt_secret)?
        .issuer("mcp-auth-server")
        .audience(config.resource.clone());
    endpoint = match &config.clients_file {
        Some(path) => endpoint.clients_file(path),
        None => endpoint.clients(config.clients.iter().cloned()),
    };
    if let Some(redis) = &config.redis {
        endpoint = endpoint.shared_revocations(
            mcp_gatekeeper::RedisRevocations::new(&redis.url).prefix(&redis.prefix),
        );
    }
    Ok(endpoint)
}

/// The example server, ready to serve.
pub fn gatekeeper(config: RbacConfig) -> Result<Gatekeeper<DataTools>, ConfigError> {
    let tokens = token_endpoint(&config)?;
    let jwt = tokens.verifier()?;
    let redis = config.redis.clone();
    let hosts = allowed_hosts(&config.resource)?;
    // The example lives in the mcp-gatekeeper package, whose name the tools would otherwise
    // announce; a server in its own crate announces that crate's name and version by default.
    let server = Gatekeeper::new(DataTools::default())
        .server_info("rbac-data-store", env!("CARGO_PKG_VERSION"));
    let server = match config.api_keys {
        ApiKeySource::Listed(keys) => server.authenticate(keys),
        ApiKeySource::File(file) => server.authenticate(file),
    };
    let mut server = server.authenticate(jwt).token_endpoint(tokens);
    if let Some(hosts) = hosts {
        server = server.allowed_hosts(hosts);
    }
    if config.stateless {
        server = server.stateless();
    }
    if let Some(path) = config.audit_log {
        server = server.audit_file(path);
    }
    if let Some(redis) = redis {
        server = share_through_redis(server, &redis, config.stateless);
    }
    Ok(server)
}

/// Shares with the other replicas using `redis` what must be counted across them: the
/// tools' rate limits, the failure lockout and, for a stateful server, who owns which MCP
/// session. (The token endpoint's revocations are shared by [`token_endpoint`].)
pub fn share_through_redis<T: mcp_gatekeeper::McpTools>(
    server: Gatekeeper<T>,
    redis: &SharedRedis,
    stateless: bool,
) -> Gatekeeper<T> {
    use mcp_gatekeeper::{RedisLockout, RedisRateLimiter, RedisSessions};
    let server = server
        .rate_limiter(RedisRateLimiter::new(&redis.url).prefix(&redis.prefix))
        .shared_lockout(RedisLockout::new(&redis.url).prefix(&redis.prefix));
    if stateless {
        server
    } else {
        server.shared_sessions(RedisSessions::new(&redis.url).prefix(&redis.prefix))
    }
}

/// The `Host` names the endpoint answers to when clients reach it at `resource` (the
/// `MCP_RESOURCE` of every example): `None`, the loopback default, when its host is a loopback
/// name; otherwise that host besides the loopback names, so that a server configured with its
/// public URL answers to it without a second setting.
///
/// # Errors
/// When `resource` is not an absolute URL with a host.
pub fn allowed_hosts(resource: &str) -> Result<Option<Vec<String>>, ConfigError> {
    let invalid = || ConfigError::invalid(format!("MCP_RESOURCE `{resource}`: not a URL"));
    let url = url::Url::parse(resource).map_err(|_| invalid())?;
    let host = match url.host().ok_or_else(invalid)? {
        url::Host::Domain(name) if name.eq_ignore_ascii_case("localhost") => return Ok(None),
        url::Host::Ipv4(ip) if ip.is_loopback() => return Ok(None),
        url::Host::Ipv6(ip) if ip.is_loopback() => return Ok(None),
        url::Host::Domain(name) => name.to_owned(),
        url::Host::Ipv4(ip) => ip.to_string(),
        url::Host::Ipv6(ip) => ip.to_string(),
    };
    Ok(Some(vec![
        host,
        "localhost".into(),
        "127.0.0.1".into(),
        "::1".into(),
    ]))
}

/// The environment every example shares: `BIND`, `STATELESS`, `MCP_RESOURCE` and
/// `METRICS_BIND`.
pub struct SharedEnv {
    /// The bound listener (bound before anything is printed, so that port 0 works and a port
    /// in use fails before credentials scroll by).
    pub listener: tokio::net::TcpListener,
    /// `http://HOST:PORT` of the listener as a local client reaches it: an unspecified address
    /// (`0.0.0.0`, `::`) written as the loopback address.
    pub origin: String,
    /// `MCP_RESOURCE`, or `<origin>/mcp`.
    pub resource: String,
    /// `STATELESS=1`.
    pub stateless: bool,
    /// With `METRICS_BIND`: the recorder, already served at `/metrics` on that address.
    pub metrics: Option<mcp_gatekeeper::metrics::PrometheusMetrics>,
}

impl SharedEnv {
    /// Reads the variables and binds `BIND` (default `127.0.0.1:3000`).
    pub async fn from_env() -> std::io::Result<Self> {
        Self::from_env_with("127.0.0.1:3000", "http").await
    }

    /// Reads the variables and binds `BIND` (default `default_bind`); `scheme` is what clients
    /// reach the listener with (`https` for a server speaking TLS).
    pub async fn from_env_with(default_bind: &str, scheme: &str) -> std::io::Result<Self> {
        let bind = std::env::var("BIND").unwrap_or_else(|_| default_bind.into());
        let listener = tokio::net::TcpListener::bind(&bind).await?;
        let origin = local_origin(listener.local_addr()?).replacen("http", scheme, 1);
        let resource = std::env::var("MCP_RESOURCE")
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| format!("{origin}/mcp"));
        Ok(Self {
            listener,
            origin,
            resource,
            stateless: std::env::var("STATELESS").is_ok_and(|v| v == "1"),
            metrics: serve_metrics_from_env().await?,
        })
    }

    /// `server`, counting in the `METRICS_BIND` recorder when there is one.
    pub fn with_metrics<T: mcp_gatekeeper::McpTools>(
        &self,
        server: Gatekeeper<T>,
    ) -> Gatekeeper<T> {
        match &self.metrics {
            Some(metrics) => server.metrics(metrics),
            None => server,
        }
    }
}

/// With `METRICS_BIND` set, installs the Prometheus recorder and serves `/metrics` on that
/// address (a listener of its own, for a scraper only), printing its URL.
pub async fn serve_metrics_from_env()
-> std::io::Result<Option<mcp_gatekeeper::metrics::PrometheusMetrics>> {
    let Some(bind) = std::env::var("METRICS_BIND").ok().filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let metrics =
        mcp_gatekeeper::metrics::PrometheusMetrics::install().map_err(std::io::Error::other)?;
    let scrape = metrics.bind(&bind).await.map_err(std::io::Error::other)?;
    println!("metrics on {}/metrics", local_origin(scrape.local_addr()));
    Ok(Some(metrics))
}

/// `http://HOST:PORT` for a server listening on `addr`, as a local client reaches it: an
/// unspecified address (`0.0.0.0`, `::`) written as the loopback address, which also makes it a
/// valid `http` issuer (those must be loopback).
pub fn local_origin(mut addr: std::net::SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            std::net::IpAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::IpAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    format!("http://{addr}")
}

/// Serves `server` on `listener` until Ctrl-C or SIGTERM, then shuts down gracefully (what
/// [`Gatekeeper::serve`] does with an address).
pub async fn serve_until_signal<T: mcp_gatekeeper::McpTools>(
    server: Gatekeeper<T>,
    listener: tokio::net::TcpListener,
) -> Result<(), mcp_gatekeeper::ServeError> {
    wait_until_signal(server.serve_on(listener)?).await
}

/// Logs to stderr as every example does (`RUST_LOG`, or `info` with the audit trail), and
/// with `OTEL_TRACES_EXPORTER=console` prints the gatekeeper's spans; keep the value until the
/// example ends (it flushes them).
pub(crate) fn init_logging() -> Result<telemetry::Telemetry, String> {
    telemetry::init()
}

/// The exit code of an example whose `run` ended with `result`; an error is printed as
/// `example: error`, without the `Error: Debug` form `main` returning `Result` would print.
pub fn exit_code(
    example: &str,
    result: Result<(), Box<dyn std::error::Error>>,
) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{example}: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Waits until Ctrl-C or SIGTERM, then shuts `running` down gracefully.
pub async fn wait_until_signal(
    running: mcp_gatekeeper::RunningServer,
) -> Result<(), mcp_gatekeeper::ServeError> {
    let stop = running.shutdown_handle();
    tokio::spawn(async move {
        mcp_gatekeeper::shutdown_signal().await;
        stop.cancel();
    });
    running.wait().await
}

/// A random hex string of `bytes` bytes, for throw-away demo credentials.
fn random_hex(bytes: usize) -> String {
    hex::encode(
        (0..bytes)
            .map(|_| rand::random::<u8>())
            .collect::<Vec<u8>>(),
    )
}

/// A `curl` line calling `tool` with `arguments` in one request: protocol 2026-07-28 needs no
/// `initialize` and no session, so the line works alone, in any shell. `header` is the
/// credential (`X-API-Key: ...` or `Authorization: Bearer ...`); the answer is one SSE event
/// (`data: {...}`), or plain JSON from a stateless server.
pub fn curl_tool_call(
    url: &str,
    header: &str,
    tool: &str,
    arguments: &serde_json::Value,
) -> String {
    curl_tool_call_with(&format!("-H '{header}'"), url, tool, arguments)
}

/// [`curl_tool_call`] with `options` (already quoted for the shell) in place of the credential
/// header: the `mtls` example's `--cacert`, `--cert` and `--key`.
pub fn curl_tool_call_with(
    options: &str,
    url: &str,
    tool: &str,
    arguments: &serde_json::Value,
) -> String {
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {
            "name": tool,
            "arguments": arguments,
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {},
                "io.modelcontextprotocol/clientInfo": { "name": "curl", "version": "0" },
            },
        },
    });
    format!(
        "curl -s {url} {options} -H 'Content-Type: application/json' \
         -H 'Accept: application/json, text/event-stream' -H 'MCP-Protocol-Version: 2026-07-28' \
         -H 'Mcp-Method: tools/call' -H 'Mcp-Name: {tool}' -d '{body}'"
    )
}

/// Credentials this run generated: safe to print (they die with the process), and what the
/// printed command lines use.
#[derive(Default)]
struct Demo {
    /// `(role, key)` of generated API keys.
    keys: Vec<(String, String)>,
    /// `(client id, secret, role)` of generated `/auth/token` clients.
    clients: Vec<(String, String, String)>,
    /// `(client id, token)`, when the signing secret was generated.
    tokens: Vec<(String, String)>,
}

impl Demo {
    /// A credential header for a caller holding one of `roles` (in order of preference),
    /// preferring an API key or a JWT as `prefer_key` says.
    fn header(&self, roles: &[&str], prefer_key: bool) -> Option<String> {
        let key = || {
            roles.iter().find_map(|role| {
                self.keys
                    .iter()
                    .find(|(r, _)| r == role)
                    .map(|(_, key)| format!("X-API-Key: {key}"))
            })
        };
        let token = || {
            roles.iter().find_map(|role| {
                let (id, _, _) = self.clients.iter().find(|(_, _, r)| r == role)?;
                let (_, token) = self.tokens.iter().find(|(i, _)| i == id)?;
                Some(format!("Authorization: Bearer {token}"))
            })
        };
        if prefer_key {
            key().or_else(token)
        } else {
            token().or_else(key)
        }
    }
}

#[allow(dead_code)]
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let _telemetry = init_logging()?;
    let env = SharedEnv::from_env().await?;
    let mut generated = Vec::new();
    let mut demo = Demo::default();
    let jwt_secret = std::env::var("JWT_SECRET").unwrap_or_else(|_| {
        generated.push("JWT_SECRET");
        random_hex(32)
    });
    let key_file = std::env::var_os("MCP_API_KEYS_FILE").filter(|v| !v.is_empty());
    if key_file.is_some() && std::env::var_os("MCP_API_KEYS").is_some() {
        return Err("set MCP_API_KEYS or MCP_API_KEYS_FILE, not both".into());
    }
    let keys_spec = std::env::var("MCP_API_KEYS").unwrap_or_else(|_| {
        if key_file.is_some() {
            return String::new();
        }
        generated.push("MCP_API_KEYS");
        let spec = format!(
            "viewer-{}:viewer,editor-{}:editor,admin-{}:admin",
            random_hex(12),
            random_hex(12),
            random_hex(12)
        );
        for entry in spec.split(',') {
            if let Some((key, role)) = entry.rsplit_once(':') {
                demo.keys.push((role.to_owned(), key.to_owned()));
            }
        }
        spec
    });
    let clients_file = std::env::var_os("MCP_CLIENTS_FILE").filter(|v| !v.is_empty());
    if clients_file.is_some() && std::env::var_os("MCP_CLIENTS").is_some() {
        return Err("set MCP_CLIENTS or MCP_CLIENTS_FILE, not both".into());
    }
    let clients_spec = std::env::var("MCP_CLIENTS").unwrap_or_else(|_| {
        if clients_file.is_some() {
            return String::new();
        }
        generated.push("MCP_CLIENTS");
        for role in ["viewer", "editor", "admin"] {
            demo.clients
                .push((format!("demo-{role}"), random_hex(16), role.to_owned()));
        }
        demo.clients
            .iter()
            .map(|(id, secret, role)| format!("{id}:{secret}:{role}"))
            .collect::<Vec<_>>()
            .join(",")
    });
    let config = RbacConfig {
        jwt_secret,
        api_keys: match &key_file {
            Some(path) => {
                let file = mcp_gatekeeper::ApiKeyFile::open(path)?;
                println!(
                    "{} API key(s) from {} (read again when it changes, and on SIGHUP)",
                    file.len(),
                    file.path().display()
                );
                ApiKeySource::File(file)
            }
            None => ApiKeySource::Listed(ApiKeys::parse_env_value(&keys_spec)?),
        },
        clients: match &clients_file {
            Some(path) => {
                println!(
                    "token clients from {} (read again when it changes, and on SIGHUP)",
                    std::path::Path::new(path).display()
                );
                Vec::new()
            }
            None => TokenEndpoint::parse_clients(&clients_spec)?,
        },
        clients_file: clients_file.map(Into::into),
        stateless: env.stateless,
        audit_log: std::env::var_os("AUDIT_LOG").map(Into::into),
        resource: env.resource.clone(),
        redis: SharedRedis::from_env("mcp:rbac:"),
    };
    let tokens = token_endpoint(&config)?;
    // Tokens are printed only when this run generated the signing secret: a token signed with
    // a configured secret is a live credential and must not end up in a terminal's scrollback.
    if generated.contains(&"JWT_SECRET") {
        for client in &config.clients {
            if let Some(token) = tokens.token_for(client.id()) {
                demo.tokens.push((client.id().to_owned(), token));
            }
        }
    }
    let url = format!("{}/mcp", env.origin);
    let token_url = format!("{}/auth/token", env.origin);
    println!("rbac: MCP endpoint {url}, token endpoint {token_url}");
    println!("JWTs must be issued for {} (aud)", env.resource);
    if !generated.is_empty() {
        println!(
            "demo mode: generated {} for this run only",
            generated.join(", ")
        );
    }
    if !demo.keys.is_empty() {
        println!("\nAPI keys (X-API-Key or Authorization: Bearer):");
        for (role, key) in &demo.keys {
            println!("  {role:<7} {key}");
        }
    }
    if !demo.tokens.is_empty() {
        println!("\nJWTs, valid for one hour:");
        for (id, token) in &demo.tokens {
            println!("  {id:<12} {token}");
        }
    }
    let reader = demo.header(&["viewer", "editor", "admin"], true);
    let writer = demo.header(&["editor", "admin"], false);
    if reader.is_some() || writer.is_some() || !demo.clients.is_empty() {
        println!(
            "\ntry it from another shell (each command works as it is; paste them all at once if you like):"
        );
    }
    if let Some(reader) = reader {
        let (key, _) = WELCOME;
        println!("  # read the value stored under `{key}` with curl: one request, no session");
        let arguments = serde_json::json!({ "key": key });
        println!(
            "  {}",
            curl_tool_call(&url, &reader, "read-data", &arguments)
        );
    }
    if let Some(writer) = writer {
        println!(
            "  # write a value with MCP Inspector (Node >= 22.19); --tool-args-json keeps \"1\" a string, --tool-arg value=1 would send the number 1"
        );
        println!(
            "  npx -y @modelcontextprotocol/inspector --cli {url} --transport http --header '{writer}' --method tools/call --tool-name write-data --tool-args-json '{{\"key\":\"b\",\"value\":\"1\"}}'"
        );
    }
    if let Some((id, secret, _)) = demo.clients.first() {
        println!("  # a fresh JWT (as {id}) from the token endpoint");
        println!(
            "  curl -s {token_url} -d grant_type=client_credentials -d client_id={id} -d client_secret={secret}"
        );
    } else {
        println!(
            "\nget a token (your client's id and secret from MCP_CLIENTS): curl -s {token_url} -d grant_type=client_credentials -d client_id=CLIENT_ID -d client_secret=SECRET"
        );
    }
    if let Some(redis) = &config.redis {
        // Only the prefix is printed: the URL may carry Redis's password.
        println!(
            "\nrate limits shared through Redis (REDIS_URL), keys under `{}`",
            redis.prefix
        );
        println!("failure lockout and token revocations shared through Redis (REDIS_URL)");
        if !config.stateless {
            println!("session owners shared through Redis (REDIS_URL): route by Mcp-Session-Id");
        }
    }
    let server = env.with_metrics(gatekeeper(config)?);
    println!("\nlistening on {}", env.listener.local_addr()?);
    serve_until_signal(server, env.listener).await?;
    Ok(())
}
