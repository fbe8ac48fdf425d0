//! The RBAC data tools of the `oauth` example behind an identity provider you already run
//! (Keycloak, Entra ID, Okta, Auth0, authentik, Dex, ...): the MCP server is an OAuth resource
//! server that verifies the provider's access tokens with the keys it publishes (found through
//! OpenID Connect discovery, or RFC 8414 metadata, and kept in a cache that follows key
//! rotations), and, when given a client to do it with, asks the provider about opaque tokens
//! (RFC 7662 introspection).
//!
//! ```text
//! OIDC_ISSUER=https://sso.example.com/realms/acme cargo run --example oidc
//! ```
//!
//! A token is accepted when its provider signed it, it names this server in `aud` and has not
//! expired; each tool then needs a role (the hierarchy viewer < editor < admin) and a scope:
//! `read-data` viewer and `data:read`, `write-data` editor and `data:write`, `delete-data` admin
//! and `data:delete`, `manage-users` admin and `users:manage`. The provider must put the role
//! names `viewer`, `editor` or `admin` in the role claim; a server of your own that uses the
//! provider's names instead maps them with `OidcIssuer::map_role`.
//!
//! Configuration (environment), first the variables every example shares:
//! - `BIND`: the address to listen on (default `127.0.0.1:3000`; port 0 picks a free port);
//! - `STATELESS=1`: plain JSON replies, no sessions;
//! - `MCP_RESOURCE`: the MCP endpoint's URL as clients reach it, the audience (`aud`) every
//!   token must carry (default `http://<BIND>/mcp`); clients ask the provider for tokens for
//!   it (RFC 8707 `resource`), which some providers need configuring for (Keycloak: an
//!   audience mapper; Auth0: an API with this identifier); its host is answered to besides the
//!   loopback names;
//!
//! then its own:
//! - `OIDC_ISSUER` (required): the provider's issuer identifier, exactly as the `issuer` of its
//!   `/.well-known/openid-configuration` states it (Keycloak
//!   `https://<host>/realms/<realm>`, Entra ID `https://login.microsoftonline.com/<tenant>/v2.0`,
//!   Auth0 `https://<tenant>.auth0.com/` with its trailing slash). `https://`, except on a
//!   loopback host (a provider started on this machine for testing);
//! - `OIDC_ROLES_CLAIM`: where the roles are in its tokens (default `roles`; a dotted path
//!   reads nested claims: `realm_access.roles` for Keycloak's realm roles);
//! - `OIDC_CLIENT_ID`, `OIDC_CLIENT_SECRET` (optional, both or neither): a client of the
//!   provider allowed to introspect tokens; with them, opaque (non-JWT) access tokens are
//!   accepted too, by asking the provider's introspection endpoint about them.

use std::process::ExitCode;

use mcp_gatekeeper::{
    ConfigError, Gatekeeper, McpTools, ProtectedResource, RunningServer, auth::Oidc,
};
use tokio::net::TcpListener;

#[path = "oauth.rs"]
#[allow(dead_code, unreachable_pub)]
pub(crate) mod oauth;

use oauth::{OAuthDataTools, rbac};

/// How the example is configured.
#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// The identity provider's issuer identifier, e.g. `https://sso.example.com/realms/acme`.
    pub issuer: String,
    /// The MCP endpoint's resource URL (the audience tokens must carry), e.g.
    /// `http://127.0.0.1:3000/mcp`.
    pub resource: String,
    /// Where the roles are in the provider's tokens (`roles`, `realm_access.roles`, ...).
    pub roles_claim: String,
    /// The client this server introspects opaque tokens as: its id and secret.
    pub introspection: Option<(String, String)>,
    /// Serve without sessions.
    pub stateless: bool,
}

/// The authenticator `config` describes. Reads the provider's metadata and keys, so it fails
/// here, before the server listens, when the provider cannot be used.
///
/// # Errors
/// [`ConfigError::IdentityProvider`] when the provider cannot be reached or its metadata names
/// another issuer, [`ConfigError::InvalidUrl`] for an issuer that is not a usable URL.
pub async fn authenticator(config: &OidcConfig) -> Result<Oidc, ConfigError> {
    let mut issuer = Oidc::issuer(&config.issuer)
        .audience(canonical_resource(&config.resource)?)
        .role_claim(config.roles_claim.as_str());
    if let Some((client_id, secret)) = &config.introspection {
        issuer = issuer.introspection(client_id, secret);
    }
    issuer.build().await
}

/// The MCP server accepting the tokens `oidc` verifies. Its protected-resource metadata names
/// the provider as the authorization server (the authenticator tells it which).
///
/// # Errors
/// When `config.resource` is not a resource URL, or `oidc` maps a role the tools do not declare.
pub fn gatekeeper(
    config: &OidcConfig,
    oidc: Oidc,
) -> Result<Gatekeeper<OAuthDataTools>, ConfigError> {
    let resource = ProtectedResource::new(&config.resource)?.name("OIDC data store");
    // The example lives in the mcp-gatekeeper package, whose name the tools would otherwise
    // announce; a server in its own crate announces that crate's name and version by default.
    let mut server = Gatekeeper::new(OAuthDataTools::default())
        .server_info("oidc-data-store", env!("CARGO_PKG_VERSION"))
        .authenticate(oidc)
        .protected_resource(resource);
    if let Some(hosts) = rbac::allowed_hosts(&config.resource)? {
        server = server.allowed_hosts(hosts);
    }
    if config.stateless {
        server = server.stateless();
    }
    Ok(server)
}

/// Builds the authenticator and the MCP server, and serves it on `listener`.
///
/// # Errors
/// As [`authenticator`] and [`gatekeeper`], with the provider's errors said in terms of the
/// example's environment (`OIDC_ISSUER`), and when the server cannot start.
pub async fn serve(
    config: OidcConfig,
    listener: TcpListener,
) -> Result<RunningServer, Box<dyn std::error::Error>> {
    let oidc = authenticator(&config).await.map_err(explain)?;
    let mut server = gatekeeper(&config, oidc)?;
    // Counted when the process serves metrics (`METRICS_BIND`).
    if let Some(metrics) = mcp_gatekeeper::metrics::PrometheusMetrics::installed() {
        server = server.metrics(&metrics);
    }
    Ok(server.serve_on(listener)?)
}

/// The resource URL as the protected-resource metadata states it (no trailing slash, the host
/// in lower case), which is what clients ask the provider for and so the `aud` of its tokens.
fn canonical_resource(resource: &str) -> Result<String, ConfigError> {
    Ok(ProtectedResource::new(resource)?.resource().to_owned())
}

/// `error` as someone who set the environment reads it: which variable to fix.
fn explain(error: ConfigError) -> String {
    match error {
        ConfigError::InvalidUrl {
            what: "issuer",
            url,
            reason,
        } => format!("OIDC_ISSUER `{url}` cannot be used: {reason}"),
        ConfigError::IdentityProvider { issuer, reason } => {
            format!("the identity provider of OIDC_ISSUER `{issuer}` cannot be used: {reason}")
        }
        other => other.to_string(),
    }
}

/// The `OIDC_*` variables; `resource` and `stateless` are left for the shared ones.
fn config_from_env() -> Result<OidcConfig, String> {
    let var = |name: &str| {
        std::env::var(name)
            .ok()
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let issuer = var("OIDC_ISSUER").ok_or(
        "OIDC_ISSUER is not set: set it to your identity provider's issuer identifier, the \
         `issuer` of its /.well-known/openid-configuration (e.g. \
         OIDC_ISSUER=https://sso.example.com/realms/acme cargo run --example oidc)",
    )?;
    let introspection = match (var("OIDC_CLIENT_ID"), var("OIDC_CLIENT_SECRET")) {
        (Some(id), Some(secret)) => Some((id, secret)),
        (None, None) => None,
        (Some(_), None) => {
            return Err(
                "OIDC_CLIENT_ID is set without OIDC_CLIENT_SECRET: introspecting \
                        opaque tokens needs both (or unset OIDC_CLIENT_ID to accept JWTs only)"
                    .into(),
            );
        }
        (None, Some(_)) => {
            return Err(
                "OIDC_CLIENT_SECRET is set without OIDC_CLIENT_ID: introspecting \
                        opaque tokens needs both"
                    .into(),
            );
        }
    };
    Ok(OidcConfig {
        issuer,
        resource: String::new(),
        roles_claim: var("OIDC_ROLES_CLAIM").unwrap_or_else(|| "roles".into()),
        introspection,
        stateless: false,
    })
}

/// The `curl` line of `rbac`, with the credential header in double quotes so that the shell
/// puts the token of `$TOKEN` in it.
fn curl_with_token(url: &str, tool: &str, arguments: &serde_json::Value) -> String {
    const HEADER: &str = "Authorization: Bearer $TOKEN";
    rbac::curl_tool_call(url, HEADER, tool, arguments).replacen(
        &format!("'{HEADER}'"),
        &format!("\"{HEADER}\""),
        1,
    )
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    // Read before binding: a missing issuer is said at once, without holding the port.
    let mut config = config_from_env()?;
    let env = rbac::SharedEnv::from_env().await?;
    config.resource = env.resource.clone();
    config.stateless = env.stateless;
    let url = format!("{}/mcp", env.origin);
    let resource =
        ProtectedResource::new(&config.resource).map_err(|e| format!("MCP_RESOURCE: {e}"))?;
    let issuer = config.issuer.clone();
    let roles_claim = config.roles_claim.clone();
    let introspection = config.introspection.as_ref().map(|(id, _)| id.clone());
    let listener = env.listener;
    let local = listener.local_addr()?;
    let running = serve(config, listener).await?;
    println!("oidc: MCP endpoint {url}");
    println!("identity provider:      {issuer}");
    println!("tokens must carry aud:  {}", resource.resource());
    println!(
        "roles from the claim:   {roles_claim} (viewer, editor or admin; scopes from scope, scp or permissions)"
    );
    match &introspection {
        Some(client) => println!("opaque tokens:          introspected as client `{client}`"),
        None => println!(
            "opaque tokens:          refused (set OIDC_CLIENT_ID and OIDC_CLIENT_SECRET to introspect them)"
        ),
    }
    println!("protected resource:     {}", resource.metadata_url());
    let scopes = OAuthDataTools::declared_scopes().join(" ");
    println!("scopes the tools need:  {scopes}");
    println!(
        "\ntry it from another shell, with an access token from the identity provider in TOKEN:"
    );
    let audience = resource.resource();
    println!(
        "  # TOKEN: an access token the provider issued for {audience} (its aud) with the role viewer (or above) and the scope data:read;"
    );
    println!(
        "  # with client credentials, e.g. (TOKEN_ENDPOINT: the token_endpoint of {}/.well-known/openid-configuration):",
        issuer.trim_end_matches('/')
    );
    println!(
        "  #   TOKEN=$(curl -s TOKEN_ENDPOINT -u CLIENT_ID:CLIENT_SECRET -d grant_type=client_credentials -d scope=data:read -d resource={audience} | sed -E 's/.*\"access_token\":\"([^\"]+)\".*/\\1/')"
    );
    let (key, _) = rbac::WELCOME;
    println!("  # then read the value stored under `{key}`: one request, no session");
    println!(
        "  {}",
        curl_with_token(&url, "read-data", &serde_json::json!({ "key": key }))
    );
    println!("\nlistening on {local}");
    rbac::wait_until_signal(running).await?;
    Ok(())
}

#[allow(dead_code)]
#[tokio::main]
async fn main() -> ExitCode {
    let _telemetry = match rbac::init_logging() {
        Ok(telemetry) => telemetry,
        Err(error) => return rbac::exit_code("oidc", Err(error.into())),
    };
    rbac::exit_code("oidc", run().await)
}
