//! The RBAC data tools behind this crate's own OAuth 2.1 authorization server: discovery, a
//! login and consent page, Dynamic Client Registration, Client ID Metadata Documents, PKCE,
//! refresh-token rotation and revocation, with everything kept in a SQLite file.
//!
//! ```text
//! OAUTH_USER_PASSWORD='choose-a-password' cargo run --example oauth
//! ```
//!
//! Configuration (environment):
//! - `OAUTH_BIND`: the address to listen on (default `127.0.0.1:3000`);
//! - `OAUTH_ISSUER`: the public origin, also the issuer (default `http://<OAUTH_BIND>`); the MCP
//!   endpoint is `<issuer>/mcp`;
//! - `OAUTH_DATA_DIR`: where `oauth.db` (clients, users, codes, refresh tokens, keys) and
//!   `audit.jsonl` live (default `./oauth-data`);
//! - `OAUTH_USER` (default `alice`), `OAUTH_USER_PASSWORD` (generated and printed when unset),
//!   `OAUTH_USER_ROLE` (`viewer`, `editor` or `admin`; default `admin`): the demo user;
//! - `OAUTH_CLIENT_ID`, `OAUTH_CLIENT_SECRET` (optional: a public client without it) and
//!   `OAUTH_CLIENT_REDIRECT_URI`: a pre-registered authorization-code client;
//! - `OAUTH_SERVICE_ID`, `OAUTH_SERVICE_SECRET`, `OAUTH_SERVICE_ROLE`: a pre-registered
//!   client-credentials client (a service acting as itself);
//! - `OAUTH_CIMD_ALLOW_PRIVATE=1`: fetch client metadata documents from private addresses too
//!   (intranets, tests);
//! - `OAUTH_INSECURE_AUTO_APPROVE=1`: **tests only** — approve every authorization request at
//!   once as the demo user, with no login or consent page.
//!
//! Pre-register a client from the command line (stored in the same SQLite file; a confidential
//! client's secret is printed once):
//!
//! ```text
//! cargo run --example oauth -- add-client my-app --name "My App" --redirect-uri https://my.app/cb
//! cargo run --example oauth -- add-client reporting --confidential --role viewer --scope data:read
//! ```

use std::{path::PathBuf, sync::Arc};

use mcp_gatekeeper::{
    AuditLog, Gatekeeper, McpTools, RunningServer,
    oauth::{AuthorizationServer, ClientMetadataDocuments, OAuthClient, User},
    prelude::*,
    store::SqliteStore,
};
use tokio::net::TcpListener;

#[path = "rbac.rs"]
#[allow(dead_code, unreachable_pub)]
pub(crate) mod rbac;

use rbac::{Admin, DataStore, Receipt, Role, UserAction};

/// The RBAC tools, each also requiring an OAuth scope: a token carries the user's role *and*
/// the scopes the user consented to, and a tool needs both.
#[derive(Default)]
pub struct OAuthDataTools {
    store: DataStore,
}

/// A key-value store behind OAuth: `read-data` (viewer, `data:read`), `write-data` (editor,
/// `data:write`), `delete-data` (admin, `data:delete`), `manage-users` (admin, `users:manage`).
#[mcp_tools(roles = Role)]
impl OAuthDataTools {
    /// Read the value stored under a key.
    ///
    /// # Arguments
    /// * `key` - The key to read.
    #[mcp_tool(
        name = "read-data",
        role = "viewer",
        scope = "data:read",
        rate = 100,
        read_only
    )]
    async fn read_data(&self, key: String) -> Result<String, ToolError> {
        self.store.read(&key)
    }

    /// Store a value under a key.
    ///
    /// # Arguments
    /// * `key` - The key to write.
    /// * `value` - The value to store.
    #[mcp_tool(
        name = "write-data",
        role = "editor",
        scope = "data:write",
        rate = "50/min"
    )]
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
    #[mcp_tool(
        name = "delete-data",
        role = "admin",
        scope = "data:delete",
        rate = "10/min",
        destructive
    )]
    async fn delete_data(&self, proof: Granted<Admin>, key: String) -> Result<String, ToolError> {
        self.store.delete(&proof, &key)
    }

    /// List, add or remove users of the store.
    ///
    /// # Arguments
    /// * `action` - `list`, `add` or `remove`.
    /// * `username` - The user to add or remove.
    /// * `role` - The role of an added user: `viewer`, `editor` or `admin`.
    #[mcp_tool(
        name = "manage-users",
        role = "admin",
        scope = "users:manage",
        rate = "20/min"
    )]
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
#[derive(Debug, Clone)]
pub struct OAuthConfig {
    /// The public origin and issuer, e.g. `http://127.0.0.1:3000`.
    pub issuer: String,
    /// Where the SQLite file and the audit trail live.
    pub data_dir: PathBuf,
    /// The demo user's name.
    pub user: String,
    /// The demo user's password.
    pub password: String,
    /// The demo user's role.
    pub role: String,
    /// Pre-registered clients.
    pub clients: Vec<OAuthClient>,
    /// Fetch client metadata documents from private addresses too.
    pub cimd_allow_private: bool,
    /// Tests only: approve every request at once as the demo user.
    pub auto_approve: bool,
}

/// Builds the authorization server and the MCP server and serves both on `listener`.
pub async fn serve(
    config: OAuthConfig,
    listener: TcpListener,
) -> Result<RunningServer, Box<dyn std::error::Error>> {
    create_private_dir(&config.data_dir)?;
    let resource = format!("{}/mcp", config.issuer.trim_end_matches('/'));
    let store = SqliteStore::open(config.data_dir.join("oauth.db"))?;
    let mut documents = ClientMetadataDocuments::default();
    if config.cimd_allow_private {
        documents = documents.allow_private_addresses();
    }
    // One audit trail for both servers: logins, consents and tokens next to the tool calls.
    let audit = AuditLog::json_lines(config.data_dir.join("audit.jsonl"))?;
    let mut authorization = AuthorizationServer::new(&config.issuer)?
        .audit(audit.clone())
        .resource(&resource)?
        .store(Arc::new(store))
        .scopes(OAuthDataTools::declared_scopes())
        .user(User::new(&config.user, &config.password).role(&config.role))
        .client_metadata_documents(Some(documents));
    for client in config.clients {
        authorization = authorization.client(client);
    }
    if config.auto_approve {
        authorization = authorization.insecure_auto_approve(&config.user);
    }
    let oauth = authorization.build().await?;
    let server = Gatekeeper::new(OAuthDataTools::default())
        .oauth(&oauth, &resource)?
        .audit(audit);
    Ok(server.serve_on(listener)?)
}

/// The configuration from the environment; what is missing gets a default (a generated
/// password is printed).
fn config_from_env(bind: &str) -> OAuthConfig {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let password = var("OAUTH_USER_PASSWORD").unwrap_or_else(|| {
        let mut bytes = [0u8; 12];
        rand::fill(&mut bytes);
        let generated = hex::encode(bytes);
        println!("OAUTH_USER_PASSWORD is not set; this run's password: {generated}");
        generated
    });
    let mut clients = Vec::new();
    if let (Some(id), Some(redirect)) = (var("OAUTH_CLIENT_ID"), var("OAUTH_CLIENT_REDIRECT_URI")) {
        let client = match var("OAUTH_CLIENT_SECRET") {
            Some(secret) => OAuthClient::confidential(id, secret),
            None => OAuthClient::public(id),
        };
        clients.push(client.redirect_uris([redirect]));
    }
    if let (Some(id), Some(secret)) = (var("OAUTH_SERVICE_ID"), var("OAUTH_SERVICE_SECRET")) {
        let role = var("OAUTH_SERVICE_ROLE").unwrap_or_else(|| "viewer".into());
        clients.push(OAuthClient::confidential(id, secret).role(role));
    }
    OAuthConfig {
        user: var("OAUTH_USER").unwrap_or_else(|| "alice".into()),
        password,
        role: var("OAUTH_USER_ROLE").unwrap_or_else(|| "admin".into()),
        clients,
        cimd_allow_private: var("OAUTH_CIMD_ALLOW_PRIVATE").is_some_and(|v| v == "1"),
        auto_approve: var("OAUTH_INSECURE_AUTO_APPROVE").is_some_and(|v| v == "1"),
        ..config_without_user(bind)
    }
}

/// `add-client`: registers a client in the data directory's store ahead of time (the CLI way
/// of pre-registering; the running server sees it at once).
async fn add_client(args: &[String], bind: &str) -> Result<(), Box<dyn std::error::Error>> {
    const USAGE: &str = "usage: cargo run --example oauth -- add-client <client-id> \
        [--name NAME] [--redirect-uri URI]... [--confidential] [--role ROLE] [--scope SCOPE]...";
    let mut args = args.iter();
    let id = args.next().filter(|a| !a.starts_with("--")).ok_or(USAGE)?;
    let (mut name, mut redirects, mut confidential, mut role, mut scopes) =
        (None, Vec::new(), false, None, Vec::new());
    while let Some(flag) = args.next() {
        let mut value = || args.next().cloned().ok_or(USAGE);
        match flag.as_str() {
            "--name" => name = Some(value()?),
            "--redirect-uri" => redirects.push(value()?),
            "--role" => role = Some(value()?),
            "--scope" => scopes.push(value()?),
            "--confidential" => confidential = true,
            _ => return Err(USAGE.into()),
        }
    }
    let secret = confidential.then(|| {
        let mut bytes = [0u8; 24];
        rand::fill(&mut bytes);
        hex::encode(bytes)
    });
    let mut client = match &secret {
        Some(secret) => OAuthClient::confidential(id, secret),
        None => OAuthClient::public(id),
    }
    .redirect_uris(redirects);
    if let Some(name) = name {
        client = client.name(name);
    }
    if let Some(role) = role {
        client = client.role(role);
    }
    if !scopes.is_empty() {
        client = client.scopes(scopes);
    }
    let config = OAuthConfig {
        clients: vec![client],
        ..config_without_user(bind)
    };
    create_private_dir(&config.data_dir)?;
    let store = SqliteStore::open(config.data_dir.join("oauth.db"))?;
    // Building the server validates the client and stores it.
    AuthorizationServer::new(&config.issuer)?
        .resource(&format!("{}/mcp", config.issuer.trim_end_matches('/')))?
        .store(Arc::new(store))
        .scopes(OAuthDataTools::declared_scopes())
        .client(config.clients.into_iter().next().ok_or(USAGE)?)
        .build()
        .await?;
    println!("client `{id}` stored in {}", config.data_dir.display());
    if let Some(secret) = secret {
        println!("client secret (shown once, only its hash is stored): {secret}");
    }
    Ok(())
}

/// The parts of the configuration that do not concern the demo user.
fn config_without_user(bind: &str) -> OAuthConfig {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    OAuthConfig {
        issuer: var("OAUTH_ISSUER").unwrap_or_else(|| format!("http://{bind}")),
        data_dir: var("OAUTH_DATA_DIR").map_or_else(|| "oauth-data".into(), PathBuf::from),
        user: String::new(),
        password: String::new(),
        role: String::new(),
        clients: Vec::new(),
        cimd_allow_private: false,
        auto_approve: false,
    }
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
    let bind = std::env::var("OAUTH_BIND").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == "add-client") {
        return add_client(&args[1..], &bind).await;
    }
    let config = config_from_env(&bind);
    let issuer = config.issuer.trim_end_matches('/').to_owned();
    let user = config.user.clone();
    let listener = TcpListener::bind(&bind).await?;
    let running = serve(config, listener).await?;
    println!("MCP endpoint:           {issuer}/mcp");
    println!("authorization server:   {issuer}/.well-known/oauth-authorization-server");
    println!("protected resource:     {issuer}/.well-known/oauth-protected-resource/mcp");
    println!("sign in as:             {user}");
    println!("\ntry it (opens a browser for the login and consent page):");
    println!(
        "  npx @modelcontextprotocol/inspector --cli {issuer}/mcp --transport http --method tools/list"
    );
    println!("listening on {}", running.local_addr());
    running.wait().await?;
    Ok(())
}

/// Creates the data directory (database, audit trail) readable by its owner only.
fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}
