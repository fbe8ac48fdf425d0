//! Role-based access to an in-memory data store: the seed's RBAC server.
//!
//! Four tools guarded by a three-level hierarchy (viewer < editor < admin), each with its own
//! per-caller rate limit; callers authenticate with an HS256 JWT (`role` claim, issuer
//! `mcp-auth-server`) or an API key with a role. `POST /auth/token` exchanges client
//! credentials for a JWT.
//!
//! ```text
//! cargo run --example rbac
//! ```
//!
//! Configuration (all optional; what is missing is generated and printed, for a demo):
//! - `JWT_SECRET`: HS256 secret, at least 32 bytes;
//! - `MCP_API_KEYS`: `KEY:ROLE,KEY:ROLE,...`;
//! - `MCP_CLIENTS`: `CLIENT_ID:SECRET:ROLE[:PERMISSION ...],...` for `POST /auth/token`;
//! - `BIND` (default `127.0.0.1:3000`), `AUDIT_LOG` (a JSON-lines file), `STATELESS=1`;
//! - `MCP_RESOURCE`: the audience (`aud`) every JWT must carry and `/auth/token` writes into its
//!   tokens (default `http://<BIND>/mcp`).

use std::{
    collections::{BTreeMap, HashMap},
    sync::Mutex,
};

use mcp_gatekeeper::{ConfigError, TokenClient, prelude::*};
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
#[derive(Default)]
pub struct DataStore {
    data: Mutex<HashMap<String, String>>,
    users: Mutex<BTreeMap<String, Role>>,
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

/// How the example is configured.
pub struct RbacConfig {
    /// The HS256 secret for JWTs (verification and `/auth/token`).
    pub jwt_secret: String,
    /// API keys with roles.
    pub api_keys: ApiKeys,
    /// Clients of `POST /auth/token`.
    pub clients: Vec<TokenClient>,
    /// Serve without sessions.
    pub stateless: bool,
    /// Write the audit trail to this JSON-lines file.
    pub audit_log: Option<std::path::PathBuf>,
    /// The MCP endpoint's resource URL: the `aud` every accepted JWT must carry, and the `aud`
    /// of the tokens `/auth/token` issues.
    pub resource: String,
}

/// The token endpoint of the example.
pub fn token_endpoint(config: &RbacConfig) -> Result<TokenEndpoint, ConfigError> {
    Ok(TokenEndpoint::hs256(&config.jwt_secret)?
        .issuer("mcp-auth-server")
        .audience(config.resource.clone())
        .clients(config.clients.iter().cloned()))
}

/// The example server, ready to serve.
pub fn gatekeeper(config: RbacConfig) -> Result<Gatekeeper<DataTools>, ConfigError> {
    let tokens = token_endpoint(&config)?;
    let jwt = tokens.verifier()?;
    let mut server = Gatekeeper::new(DataTools::default())
        .authenticate(config.api_keys)
        .authenticate(jwt)
        .token_endpoint(tokens);
    if config.stateless {
        server = server.stateless();
    }
    if let Some(path) = config.audit_log {
        server = server.audit_file(path);
    }
    Ok(server)
}

/// A random hex string of `bytes` bytes, for throw-away demo credentials.
fn random_hex(bytes: usize) -> String {
    hex::encode(
        (0..bytes)
            .map(|_| rand::random::<u8>())
            .collect::<Vec<u8>>(),
    )
}

#[allow(dead_code)]
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,mcp_gatekeeper::audit=info".into()),
        )
        .init();
    let bind = std::env::var("BIND").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let mut demo = Vec::new();
    let jwt_secret = std::env::var("JWT_SECRET").unwrap_or_else(|_| {
        demo.push("JWT_SECRET");
        random_hex(32)
    });
    let keys_spec = std::env::var("MCP_API_KEYS").unwrap_or_else(|_| {
        demo.push("MCP_API_KEYS");
        format!(
            "viewer-{}:viewer,editor-{}:editor,admin-{}:admin",
            random_hex(12),
            random_hex(12),
            random_hex(12)
        )
    });
    let clients_spec = std::env::var("MCP_CLIENTS").unwrap_or_else(|_| {
        demo.push("MCP_CLIENTS");
        format!(
            "demo-viewer:{}:viewer,demo-editor:{}:editor,demo-admin:{}:admin",
            random_hex(16),
            random_hex(16),
            random_hex(16)
        )
    });
    let config = RbacConfig {
        jwt_secret,
        api_keys: ApiKeys::parse_env_value(&keys_spec)?,
        clients: TokenEndpoint::parse_clients(&clients_spec)?,
        stateless: std::env::var("STATELESS").is_ok_and(|v| v == "1"),
        audit_log: std::env::var_os("AUDIT_LOG").map(Into::into),
        resource: std::env::var("MCP_RESOURCE").unwrap_or_else(|_| format!("http://{bind}/mcp")),
    };
    let tokens = token_endpoint(&config)?;
    let url = format!("http://{bind}/mcp");
    println!("rbac: MCP endpoint {url}, token endpoint http://{bind}/auth/token");
    if !demo.is_empty() {
        println!("demo mode: generated {} for this run only", demo.join(", "));
        println!("\nAPI keys (X-API-Key or Authorization: Bearer):");
        for entry in keys_spec.split(',') {
            if let Some((key, role)) = entry.rsplit_once(':') {
                println!("  {role:<7} {key}");
            }
        }
    }
    // Tokens are printed only when this run generated the signing secret: a token signed with
    // a configured secret is a live credential and must not end up in a terminal's scrollback.
    if demo.contains(&"JWT_SECRET") {
        println!("\nJWTs, valid for one hour:");
        for client in &config.clients {
            if let Some(token) = tokens.token_for(client.id()) {
                println!("  {:<12} {token}", client.id());
            }
        }
        if let Some(admin) = config.clients.iter().find(|c| c.id().contains("admin"))
            && let Some(token) = tokens.token_for(admin.id())
        {
            println!("\ntry it:");
            println!(
                "  curl -s {url} -H 'Authorization: Bearer {token}' -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' -H 'MCP-Protocol-Version: 2025-06-18' -d '{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{{\"protocolVersion\":\"2025-06-18\",\"capabilities\":{{}},\"clientInfo\":{{\"name\":\"curl\",\"version\":\"0\"}}}}}}'"
            );
            println!(
                "  npx @modelcontextprotocol/inspector --cli {url} --transport http --header 'Authorization: Bearer {token}' --method tools/list"
            );
        }
    } else {
        println!(
            "\nget a token: curl -s http://{bind}/auth/token -d grant_type=client_credentials -d client_id=CLIENT_ID -d client_secret=SECRET"
        );
    }
    println!();
    gatekeeper(config)?.serve(bind).await?;
    Ok(())
}
