//! The RBAC data tools behind this crate's own OAuth 2.1 authorization server: discovery, a
//! login and consent page, Dynamic Client Registration, Client ID Metadata Documents, PKCE,
//! refresh-token rotation and revocation, with everything kept in a SQLite file (or in
//! PostgreSQL, shared by replicas, with `DATABASE_URL`).
//!
//! ```text
//! OAUTH_USER_PASSWORD='choose-a-password' cargo run --example oauth
//! ```
//!
//! Configuration (environment), first the variables every example shares:
//! - `BIND`: the address to listen on (default `127.0.0.1:3000`; port 0 picks a free port);
//! - `STATELESS=1`: plain JSON replies, no sessions;
//! - `MCP_RESOURCE`: the MCP endpoint's URL as clients reach it, the audience (`aud`) of every
//!   access token (default `<OAUTH_ISSUER>/mcp`, else `http://<BIND>/mcp`); the endpoint is
//!   served at `/mcp` (a proxy may map another path to it); its host is answered to besides
//!   the loopback names;
//!
//! then the authorization server's own:
//! - `OAUTH_ISSUER`: the issuer, which is the origin of `MCP_RESOURCE` since the authorization
//!   server is mounted on the MCP server's origin (its metadata is fetched from there, and its
//!   `issuer` must match); default that origin. Set one of the two; setting both to
//!   different origins is refused at start;
//! - `OAUTH_DATA_DIR`: where `oauth.db` (clients, users, codes, refresh tokens, keys) and
//!   `audit.jsonl` live (default `./oauth-data`);
//! - `DATABASE_URL`: keep the OAuth state in this PostgreSQL database instead of `oauth.db`
//!   (`postgres://user:password@host/database`; replicas sharing it honour each other's codes,
//!   refresh tokens, revocations and sign-in sessions, and each serves any step of a sign-in),
//!   in the schema `OAUTH_DATABASE_SCHEMA` (default `mcp_gatekeeper`, created at start), over
//!   TLS verified against the CA certificates of `OAUTH_DATABASE_CA_FILE` when set (or with
//!   `?sslmode=require` in the URL, against the system's roots).
//!   Behind a load balancer, give every replica its origin as `OAUTH_ISSUER` and, unless it
//!   routes by MCP session, `STATELESS=1`;
//! - `REDIS_URL`: keep the tools' rate limits, the failure lockouts (the MCP endpoint's, and
//!   the authorization server's for client secrets and passwords) and (stateful) the owners of
//!   MCP sessions in this Redis, shared by every replica started with the same URL and
//!   `REDIS_PREFIX` (default `mcp:oauth:`), as in the `rbac` example;
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
//! Pre-register a client from the command line (stored in the same store: the SQLite file, or
//! PostgreSQL with `DATABASE_URL`; a confidential client's secret is printed once):
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
    store::{PostgresOptions, PostgresStore, SqliteStore, Store},
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

/// A PostgreSQL database for the OAuth state.
#[derive(Clone)]
pub struct Database {
    /// `postgres://user:password@host:port/database`.
    pub url: String,
    /// The schema of the store's tables.
    pub schema: String,
    /// The CA certificates (PEM) the database's TLS certificate is verified against; `None`:
    /// TLS only when the URL asks for it (`sslmode=require`), verified against the system's roots.
    pub ca_file: Option<PathBuf>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password.
        f.debug_struct("Database")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

/// How the example is configured.
#[derive(Debug, Clone)]
pub struct OAuthConfig {
    /// The public origin and issuer, e.g. `http://127.0.0.1:3000`.
    pub issuer: String,
    /// The MCP endpoint's resource URI on that origin (the tokens' audience), e.g.
    /// `http://127.0.0.1:3000/mcp`.
    pub resource: String,
    /// Serve without sessions.
    pub stateless: bool,
    /// Where the SQLite file and the audit trail live.
    pub data_dir: PathBuf,
    /// The PostgreSQL database holding the OAuth state instead of the SQLite file, if any.
    pub database: Option<Database>,
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
    /// The Redis shared with other replicas (rate limits, failure and password lockouts, MCP
    /// session owners), if any.
    pub redis: Option<rbac::SharedRedis>,
}

/// Builds the authorization server and the MCP server and serves both on `listener`.
pub async fn serve(
    config: OAuthConfig,
    listener: TcpListener,
) -> Result<RunningServer, Box<dyn std::error::Error>> {
    create_private_dir(&config.data_dir)?;
    let resource = config.resource.as_str();
    let store = open_store(&config).await?;
    let mut documents = ClientMetadataDocuments::default();
    if config.cimd_allow_private {
        documents = documents.allow_private_addresses();
    }
    // One audit trail for both servers: logins, consents and tokens next to the tool calls.
    let audit = AuditLog::json_lines(config.data_dir.join("audit.jsonl"))?;
    let mut authorization = AuthorizationServer::new(&config.issuer)
        .audit(audit.clone())
        .resource(resource)
        .store(store)
        .scopes(OAuthDataTools::declared_scopes())
        .user(User::new(&config.user, &config.password).role(&config.role))
        .client_metadata_documents(Some(documents));
    for client in config.clients {
        authorization = authorization.client(client);
    }
    if config.auto_approve {
        authorization = authorization.insecure_auto_approve(&config.user);
    }
    if let Some(redis) = &config.redis {
        // Client secrets and passwords guessed through several replicas count as through one.
        authorization = authorization
            .shared_lockout(mcp_gatekeeper::RedisLockout::new(&redis.url).prefix(&redis.prefix));
    }
    let oauth = authorization.build().await?;
    // The example lives in the mcp-gatekeeper package, whose name the tools would otherwise
    // announce; a server in its own crate announces that crate's name and version by default.
    let mut server = Gatekeeper::new(OAuthDataTools::default())
        .server_info("oauth-data-store", env!("CARGO_PKG_VERSION"))
        .oauth(&oauth, resource)
        .audit(audit);
    if let Some(hosts) = rbac::allowed_hosts(resource)? {
        server = server.allowed_hosts(hosts);
    }
    if config.stateless {
        server = server.stateless();
    }
    if let Some(redis) = &config.redis {
        server = rbac::share_through_redis(server, redis, config.stateless);
    }
    // Counted when the process serves metrics (`METRICS_BIND`).
    if let Some(metrics) = mcp_gatekeeper::metrics::PrometheusMetrics::installed() {
        server = server.metrics(&metrics);
    }
    Ok(server.serve_on(listener)?)
}

/// The configuration from the environment; what is missing gets a default (a generated
/// password is printed). `origin` is where the listener is reached locally.
fn config_from_env(origin: &str) -> Result<OAuthConfig, Box<dyn std::error::Error>> {
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
    Ok(OAuthConfig {
        user: var("OAUTH_USER").unwrap_or_else(|| "alice".into()),
        password,
        role: var("OAUTH_USER_ROLE").unwrap_or_else(|| "admin".into()),
        clients,
        cimd_allow_private: var("OAUTH_CIMD_ALLOW_PRIVATE").is_some_and(|v| v == "1"),
        auto_approve: var("OAUTH_INSECURE_AUTO_APPROVE").is_some_and(|v| v == "1"),
        stateless: var("STATELESS").is_some_and(|v| v == "1"),
        ..config_without_user(origin)?
    })
}

/// `add-client`: registers a client in the data directory's store ahead of time (the CLI way
/// of pre-registering; the running server sees it at once).
async fn add_client(args: &[String], origin: &str) -> Result<(), Box<dyn std::error::Error>> {
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
    // The runtime's checks of a configured client, against the scopes this server supports
    // (the same call `mcp-gatekeeper clients add` makes); only the secret's hash is stored.
    let scopes: Vec<String> = OAuthDataTools::declared_scopes()
        .into_iter()
        .map(String::from)
        .collect();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
    let record = client.to_record(&scopes, now.as_secs() as i64)?;
    let config = config_without_user(origin)?;
    create_private_dir(&config.data_dir)?;
    let store = open_store(&config).await?;
    store.put_client(record).await?;
    println!("client `{id}` stored in {}", describe_store(&config));
    if let Some(secret) = secret {
        println!("client secret (shown once, only its hash is stored): {secret}");
    }
    Ok(())
}

/// The store the configuration names: PostgreSQL with a database, else `oauth.db` in the data
/// directory.
async fn open_store(config: &OAuthConfig) -> Result<Arc<dyn Store>, Box<dyn std::error::Error>> {
    Ok(match &config.database {
        Some(database) => Arc::new(
            PostgresStore::connect_with(
                &database.url,
                match &database.ca_file {
                    Some(ca_file) => PostgresOptions::new()
                        .schema(&database.schema)
                        .tls_ca_file(ca_file),
                    None => PostgresOptions::new().schema(&database.schema),
                },
            )
            .await?,
        ),
        None => Arc::new(SqliteStore::open(config.data_dir.join("oauth.db"))?),
    })
}

/// Which store the configuration names, for the start-up lines (never the database URL, which
/// may hold a password).
pub fn describe_store(config: &OAuthConfig) -> String {
    match &config.database {
        Some(database) => format!(
            "PostgreSQL (DATABASE_URL, schema {}{})",
            database.schema,
            match database.ca_file {
                Some(_) => ", TLS verified with OAUTH_DATABASE_CA_FILE",
                None => "",
            }
        ),
        None => format!("SQLite ({})", config.data_dir.join("oauth.db").display()),
    }
}

/// The parts of the configuration that do not concern the demo user.
fn config_without_user(origin: &str) -> Result<OAuthConfig, Box<dyn std::error::Error>> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let (issuer, resource) = issuer_and_resource(origin, var("OAUTH_ISSUER"), var("MCP_RESOURCE"))?;
    Ok(OAuthConfig {
        issuer,
        resource,
        stateless: false,
        data_dir: var("OAUTH_DATA_DIR").map_or_else(|| "oauth-data".into(), PathBuf::from),
        database: var("DATABASE_URL").map(|url| Database {
            url,
            schema: var("OAUTH_DATABASE_SCHEMA").unwrap_or_else(|| "mcp_gatekeeper".into()),
            ca_file: var("OAUTH_DATABASE_CA_FILE").map(PathBuf::from),
        }),
        user: String::new(),
        password: String::new(),
        role: String::new(),
        clients: Vec::new(),
        cimd_allow_private: false,
        auto_approve: false,
        redis: rbac::SharedRedis::from_env("mcp:oauth:"),
    })
}

/// The issuer and the resource from `OAUTH_ISSUER` and `MCP_RESOURCE`, whichever are set: the
/// authorization server is mounted on the MCP server's origin, so the issuer is the resource's
/// origin; with neither set, both follow from `origin` (where the listener is reached).
///
/// # Errors
/// When `MCP_RESOURCE` is not a URL, or both are set and the issuer is not its origin (a
/// client would fetch the metadata from one origin and find another `issuer` in it).
pub fn issuer_and_resource(
    origin: &str,
    issuer: Option<String>,
    resource: Option<String>,
) -> Result<(String, String), String> {
    let origin_of = |uri: &str, name: &str| {
        url::Url::parse(uri)
            .map(|url| url.origin().ascii_serialization())
            .map_err(|_| format!("{name} `{uri}` is not an absolute URL"))
    };
    match (issuer, resource) {
        (None, None) => Ok((origin.to_owned(), format!("{origin}/mcp"))),
        (Some(issuer), None) => {
            let issuer = issuer.trim_end_matches('/').to_owned();
            let resource = format!("{issuer}/mcp");
            Ok((issuer, resource))
        }
        (None, Some(resource)) => Ok((origin_of(&resource, "MCP_RESOURCE")?, resource)),
        (Some(issuer), Some(resource)) => {
            let expected = origin_of(&resource, "MCP_RESOURCE")?;
            if origin_of(&issuer, "OAUTH_ISSUER")? != expected {
                return Err(format!(
                    "OAUTH_ISSUER `{issuer}` is not the origin of MCP_RESOURCE `{resource}`: the \
                     authorization server is served on the MCP server's origin, so its issuer is \
                     `{expected}` (unset OAUTH_ISSUER, or make the two agree)"
                ));
            }
            Ok((issuer.trim_end_matches('/').to_owned(), resource))
        }
    }
}

#[allow(dead_code)]
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let _telemetry = rbac::init_logging()?;
    // The bind address used to have its own name here; a deployment still setting it would
    // otherwise be served on the default address without a word.
    if std::env::var_os("OAUTH_BIND").is_some() {
        return Err("OAUTH_BIND is now BIND, as in the other examples: rename the variable".into());
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == "add-client") {
        // Registering a client must not bind the port a running server holds: the origin is
        // only needed for the issuer, so it is worked out from `BIND` without binding.
        let bind = std::env::var("BIND").unwrap_or_else(|_| "127.0.0.1:3000".into());
        let addr = std::net::ToSocketAddrs::to_socket_addrs(&bind)?
            .next()
            .ok_or("BIND names no address")?;
        return add_client(&args[1..], &rbac::local_origin(addr)).await;
    }
    let env = rbac::SharedEnv::from_env().await?;
    let config = config_from_env(&env.origin)?;
    let issuer = config.issuer.clone();
    let resource = config.resource.clone();
    let metadata_path = url::Url::parse(&resource).map(|u| u.path().to_owned())?;
    let user = config.user.clone();
    let store = describe_store(&config);
    let shared = config.redis.as_ref().map(|redis| {
        let sessions = if config.stateless {
            ""
        } else {
            ", MCP session owners (route by Mcp-Session-Id)"
        };
        // Only the prefix is printed: the URL may carry Redis's password.
        format!(
            "rate limits, failure lockout{sessions}; keys under `{}`",
            redis.prefix
        )
    });
    let listener = env.listener;
    let local = listener.local_addr()?;
    let running = serve(config, listener).await?;
    println!("MCP endpoint:           {resource}");
    println!("authorization server:   {issuer}/.well-known/oauth-authorization-server");
    println!(
        "protected resource:     {issuer}/.well-known/oauth-protected-resource{metadata_path}"
    );
    println!("sign in as:             {user}");
    println!("store:                  {store}");
    if let Some(shared) = shared {
        println!("shared through Redis:   {shared}");
    }
    println!("\ntry it from another shell (MCP Inspector, Node >= 22.19):");
    println!(
        "  # Inspector prints the URL of the login and consent pages and opens a browser there; \
         MCP_AUTO_OPEN_ENABLED=true makes it sign in even without a terminal attached"
    );
    let (key, _) = rbac::WELCOME;
    println!(
        "  MCP_AUTO_OPEN_ENABLED=true npx -y @modelcontextprotocol/inspector --cli {resource} --transport http --method tools/call --tool-name read-data --tool-arg key={key}"
    );
    println!("\nlistening on {local}");
    rbac::wait_until_signal(running).await?;
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
