//! The OAuth 2.1 authorization server, mounted on an MCP server over real loopback HTTP: every
//! flow and every refusal.

use std::sync::Arc;

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use http::{HeaderMap, StatusCode};
use mcp_gatekeeper::{
    Gatekeeper, RunningServer,
    oauth::{AuthorizationServer, OAuthClient, OAuthServer, User},
    store::{MemoryStore, Store},
};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;

use crate::step_up::Notes;

mod abuse;
mod authorize;
mod clients;
mod e2e;
mod mtls_bound;
mod postgres;
mod restart;
mod shared_lockout;
mod token;

/// A member who signs in with a password.
pub const USER: &str = "alice";
pub const PASSWORD: &str = "alice-password-1";
/// An owner.
pub const OWNER: &str = "olivia";
pub const OWNER_PASSWORD: &str = "olivia-password-2";
/// A confidential service client (client credentials, role member, scope notes:read).
pub const SERVICE_ID: &str = "reporting";
pub const SERVICE_SECRET: &str = "reporting-secret-0123456789";
/// A public native app (authorization code + PKCE), loopback redirect (any port).
pub const APP_ID: &str = "desktop-app";
pub const APP_REDIRECT: &str = "http://127.0.0.1/callback";
/// A confidential web app with an https redirect.
pub const WEB_ID: &str = "web-app";
pub const WEB_SECRET: &str = "web-app-secret-0123456789";
pub const WEB_REDIRECT: &str = "https://app.example.com/cb";
/// Every scope the Notes tools declare.
pub const SCOPES: [&str; 3] = ["notes:admin", "notes:read", "notes:write"];

/// An MCP server (the Notes tools) with the authorization server on the same origin.
pub struct OAuthHarness {
    /// `http://127.0.0.1:PORT`, also the issuer.
    pub base: String,
    /// The MCP endpoint, also the resource.
    pub url: String,
    pub oauth: OAuthServer,
    pub running: RunningServer,
    /// A client that never follows redirects (tests read `Location`).
    pub http: reqwest::Client,
}

impl OAuthHarness {
    pub async fn stop(self) {
        self.running.shutdown().await.expect("clean shutdown");
    }

    /// POSTs a form to the token endpoint; returns status, headers and the JSON body.
    pub async fn token(&self, form: &[(&str, &str)]) -> (StatusCode, HeaderMap, Value) {
        self.token_with(form, None).await
    }

    /// Same, with HTTP Basic client authentication.
    pub async fn token_with(
        &self,
        form: &[(&str, &str)],
        basic: Option<(&str, &str)>,
    ) -> (StatusCode, HeaderMap, Value) {
        let mut request = self
            .http
            .post(format!("{}/oauth/token", self.base))
            .form(form);
        if let Some((id, secret)) = basic {
            request = request.basic_auth(id, Some(secret));
        }
        let response = request.send().await.expect("token endpoint answers");
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.json().await.unwrap_or(Value::Null);
        (status, headers, body)
    }
}

/// The default configuration of the harness's authorization server: two users, the three
/// clients above, every Notes scope.
pub fn configure(issuer: &str, resource: &str) -> AuthorizationServer {
    AuthorizationServer::new(issuer)
        .resource(resource)
        .scopes(SCOPES)
        .user(
            User::new(USER, PASSWORD)
                .role("member")
                .scopes(["notes:read", "notes:write"]),
        )
        .user(User::new(OWNER, OWNER_PASSWORD).role("owner"))
        .client(
            OAuthClient::confidential(SERVICE_ID, SERVICE_SECRET)
                .role("member")
                .scopes(["notes:read"]),
        )
        .client(
            OAuthClient::public(APP_ID)
                .name("Desktop App")
                .redirect_uris([APP_REDIRECT]),
        )
        .client(
            OAuthClient::confidential(WEB_ID, WEB_SECRET)
                .name("Web App")
                .redirect_uris([WEB_REDIRECT]),
        )
}

/// Starts the harness with an in-memory store; `customize` adjusts the authorization server.
pub async fn start_oauth(
    customize: impl FnOnce(AuthorizationServer) -> AuthorizationServer,
) -> OAuthHarness {
    start_oauth_with(Arc::new(MemoryStore::new()), None, customize).await
}

/// Starts the harness on `store`, on `listener`'s address if given (to restart on the same
/// issuer).
pub async fn start_oauth_with(
    store: Arc<dyn Store>,
    listener: Option<TcpListener>,
    customize: impl FnOnce(AuthorizationServer) -> AuthorizationServer,
) -> OAuthHarness {
    let listener = match listener {
        Some(listener) => listener,
        None => TcpListener::bind("127.0.0.1:0").await.unwrap(),
    };
    let base = format!("http://{}", listener.local_addr().unwrap());
    let url = format!("{base}/mcp");
    let oauth = customize(configure(&base, &url).store(store))
        .build()
        .await
        .expect("authorization server builds");
    let gatekeeper = Gatekeeper::new(Notes).oauth(&oauth, &url);
    let running = gatekeeper.serve_on(listener).unwrap();
    OAuthHarness {
        base,
        url,
        oauth,
        running,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
    }
}

/// A PKCE verifier and its S256 challenge.
pub fn pkce() -> (String, String) {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    let verifier = URL_SAFE_NO_PAD.encode(bytes);
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}
