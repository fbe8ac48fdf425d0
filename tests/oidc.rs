//! The `oidc` example (the RBAC data tools behind an external identity provider) against a
//! real OpenID Provider: `e2e/idp.mjs`, the pinned oidc-provider on Node 22, started for each
//! test on a loopback port (`tests/common/idp.rs`), and this crate's own authorization server
//! as a second kind of provider. Real HTTP, real MCP tool calls.
//!
//! Most servers here are the example's own ([`oidc_example::authenticator`] and
//! [`oidc_example::gatekeeper`], which is what `serve` runs); where a test needs another
//! setting (no clock leeway, a short introspection cache, role mapping) the authenticator is
//! built with the library's builder and the example's server around it. The provider is
//! started with the server's URL as the audience of its tokens, so each server's listener is
//! bound first.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use aws_lc_rs::{
    rand::SystemRandom,
    signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair},
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use mcp_gatekeeper::{
    ConfigError, Gatekeeper, McpTools, RunningServer,
    auth::{ClaimPath, Oidc},
    oauth::{AuthorizationServer, OAuthClient},
};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::{
    common::{
        self, Cred, Mcp, Reply, Version, client_from, example_binary,
        idp::{ALL_SCOPES, ClientAuth, Counters, Idp, key_file},
        now,
        process::CapturedProcess,
    },
    oauth_example::OAuthDataTools,
    oidc_example::{self, OidcConfig},
};

/// The tools, and who may call them.
const TOOLS: [&str; 4] = ["read-data", "write-data", "delete-data", "manage-users"];

/// The issuer path of most providers here, as Keycloak's realms have one.
const REALM: &str = "/realms/test";

/// The arguments of a tool call that succeeds for a caller allowed to make it.
fn arguments(tool: &str) -> Value {
    match tool {
        "write-data" => json!({ "key": "b", "value": "1" }),
        "delete-data" => json!({ "key": "nothing-here" }),
        "manage-users" => json!({ "action": "list" }),
        _ => json!({ "key": "a" }),
    }
}

/// A server serving the data tools, and the authenticator it uses (clones share the caches,
/// so its statistics are the server's).
struct Served {
    running: RunningServer,
    base: String,
    url: String,
    oidc: Oidc,
}

impl Served {
    async fn stop(self) {
        self.running.shutdown().await.expect("clean shutdown");
    }

    /// `tool` called with `token` in one request (protocol 2026-07-28: no session, so one
    /// HTTP request and one authentication per call).
    async fn call(&self, token: &str, tool: &str) -> Reply {
        Mcp::new(
            &self.url,
            Cred::Bearer(token.to_owned()),
            Version::V2026_07_28,
        )
        .call(tool, arguments(tool))
        .await
    }
}

/// A loopback listener and the MCP endpoint's URL on it. Bound before the provider starts,
/// since the provider needs that URL as the audience of its tokens.
async fn bind() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/mcp", listener.local_addr().expect("address"));
    (listener, url)
}

/// The example's configuration for a server at `resource` trusting `issuer`.
fn config(issuer: &str, resource: &str) -> OidcConfig {
    OidcConfig {
        issuer: issuer.to_owned(),
        resource: resource.to_owned(),
        roles_claim: "roles".into(),
        introspection: None,
        stateless: false,
    }
}

/// The example's server around `oidc`, on `listener`.
fn serve_with(config: &OidcConfig, oidc: Oidc, listener: TcpListener) -> Served {
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let running = oidc_example::gatekeeper(config, oidc.clone())
        .expect("the server's configuration")
        .serve_on(listener)
        .expect("the server starts");
    Served {
        running,
        url: format!("{base}/mcp"),
        base,
        oidc,
    }
}

/// idp.mjs issuing JWTs for `audience` under the issuer path [`REALM`], with `extra`
/// arguments.
async fn start_idp(audience: &str, extra: &[&str]) -> Idp {
    let mut args = vec!["--audience", audience, "--path", REALM];
    args.extend_from_slice(extra);
    Idp::start(&args).await
}

/// A provider issuing tokens for a new server, and the example serving with its defaults.
async fn start(extra: &[&str]) -> (Idp, Served) {
    let (listener, url) = bind().await;
    let idp = start_idp(&url, extra).await;
    let config = config(&idp.issuer, &url);
    let oidc = oidc_example::authenticator(&config)
        .await
        .expect("the provider is usable");
    let served = serve_with(&config, oidc, listener);
    (idp, served)
}

/// A successful tool result, or a panic showing the reply and what led to it.
fn assert_accepted(reply: &Reply, context: &str) {
    assert_eq!(reply.status, 200, "{context}: {reply:#?}");
    assert!(
        reply
            .message
            .as_ref()
            .and_then(|m| m.get("result"))
            .is_some()
            && !reply.is_tool_error(),
        "{context}: {reply:#?}"
    );
}

/// A `401` with an `invalid_token` challenge pointing to the metadata.
fn assert_invalid_token(reply: &Reply, context: &str) {
    assert_eq!(reply.status, 401, "{context}: {reply:#?}");
    let challenge = reply.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.contains("error=\"invalid_token\"") && challenge.contains("resource_metadata=\""),
        "{context}: {challenge}"
    );
    assert_eq!(reply.json_body()["error"], "invalid_token", "{context}");
}

/// A key of the test's own (ES256), which the provider never published.
fn test_key() -> EncodingKey {
    let pkcs8 =
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
            .expect("a P-256 key");
    EncodingKey::from_ec_der(pkcs8.as_ref())
}

/// `claims` signed ES256 by `key`, under `kid`.
fn sign_es256(key: &EncodingKey, kid: &str, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.to_owned());
    header.typ = Some("at+jwt".into());
    jsonwebtoken::encode(&header, claims, key).expect("a signed token")
}

/// The claims of an admin token the provider could have issued for `audience`.
fn admin_claims(issuer: &str, audience: &str) -> Value {
    json!({
        "iss": issuer, "aud": audience, "sub": "mallory", "client_id": "mallory",
        "roles": ["admin"], "scope": ALL_SCOPES, "iat": now(), "exp": now() + 300,
    })
}

/// A random `kid` no provider has.
fn random_kid() -> String {
    hex::encode(rand::random::<[u8; 12]>())
}

#[tokio::test(flavor = "multi_thread")]
async fn each_role_is_granted_what_the_hierarchy_gives_it() {
    let (idp, server) = start(&[]).await;
    let cases: [(&str, ClientAuth, &[&str]); 4] = [
        ("viewer", ClientAuth::Post, &["read-data"]),
        ("editor", ClientAuth::Basic, &["read-data", "write-data"]),
        ("admin", ClientAuth::Post, &TOOLS),
        ("nobody", ClientAuth::Basic, &[]),
    ];
    for (client, auth, allowed) in cases {
        let token = idp.token_for(client, ALL_SCOPES, None, auth).await;
        // A session-based client: initialize, then the calls, each authenticated.
        let mcp = Mcp::connect(&server.url, Cred::Bearer(token), Version::V2025_11_25).await;
        for tool in TOOLS {
            let reply = mcp.call(tool, arguments(tool)).await;
            let context = format!("{client} calling {tool}");
            if allowed.contains(&tool) {
                assert_accepted(&reply, &context);
                continue;
            }
            assert_eq!(reply.status, 200, "{context}: {reply:#?}");
            let error = reply.error();
            let needed = match tool {
                "read-data" => "viewer",
                "write-data" => "editor",
                _ => "admin",
            };
            assert_eq!(error["code"], -32003, "{context}: {reply:#?}");
            assert_eq!(error["data"]["reason"], "missing_role", "{context}");
            assert_eq!(error["data"]["requiredRole"], needed, "{context}");
            assert_eq!(
                error["message"],
                format!("forbidden: tool `{tool}` requires role `{needed}`"),
                "{context}"
            );
        }
        let mut listed = mcp.list().await;
        listed.sort();
        let mut expected: Vec<String> = allowed.iter().map(|t| (*t).to_owned()).collect();
        expected.sort();
        assert_eq!(listed, expected, "tools/list of {client}");
    }
    // The principal is the provider's subject: write-data names who wrote.
    let editor = idp.token("editor", "data:write").await;
    let reply = server.call(&editor, "write-data").await;
    assert_accepted(&reply, "editor writes");
    assert_eq!(reply.result()["structuredContent"]["written_by"], "editor");
    let principal = server.oidc.verify(&editor, None).await.expect("verified");
    assert_eq!(principal.issuer(), Some(idp.issuer.as_str()));
    assert_eq!(principal.method(), mcp_gatekeeper::AuthMethod::OAuth);
    assert_eq!(principal.subject(), "editor");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_without_the_tools_scope_is_a_step_up() {
    let (idp, server) = start(&[]).await;
    let metadata = format!(
        "resource_metadata=\"{}/.well-known/oauth-protected-resource/mcp\"",
        server.base
    );
    // The role is there, the scope is not: 403 before the tool runs, naming the scopes to ask
    // for (those held first, then the tool's).
    for (client, scope, tool, wanted) in [
        ("viewer", "data:write", "read-data", "data:write data:read"),
        ("admin", "data:read", "delete-data", "data:read data:delete"),
        ("admin", "", "manage-users", "users:manage"),
    ] {
        let token = idp.token(client, scope).await;
        let reply = server.call(&token, tool).await;
        let context = format!("{client} with `{scope}` calling {tool}");
        assert_eq!(reply.status, 403, "{context}: {reply:#?}");
        let challenge = reply.header("www-authenticate").unwrap_or_default();
        assert!(
            challenge.starts_with("Bearer error=\"insufficient_scope\""),
            "{context}: {challenge}"
        );
        assert!(
            challenge.contains(&format!("scope=\"{wanted}\"")),
            "{context}: {challenge}"
        );
        assert!(challenge.contains(&metadata), "{context}: {challenge}");
        assert_eq!(reply.json_body()["error"], "insufficient_scope");
    }
    // The same admin, with the scope of what it calls, gets through.
    let token = idp.token("admin", "data:read").await;
    assert_accepted(&server.call(&token, "read-data").await, "admin reads");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_providers_role_names_are_mapped_to_the_tools_roles() {
    let (listener, url) = bind().await;
    let idp = start_idp(&url, &[]).await;
    // Keycloak's realm roles, named as the provider names them.
    let mapped = Oidc::issuer(&idp.issuer)
        .audience(&url)
        .role_claim("realm_access.roles")
        .map_role("mcp-viewer", "viewer")
        .map_role("mcp-editor", "editor")
        .map_role("mcp-admin", "admin")
        .build()
        .await
        .expect("the provider is usable");
    let server = serve_with(&config(&idp.issuer, &url), mapped, listener);
    let viewer = idp.token("viewer", ALL_SCOPES).await;
    let editor = idp.token("editor", ALL_SCOPES).await;
    let admin = idp.token("admin", ALL_SCOPES).await;
    assert_accepted(&server.call(&viewer, "read-data").await, "mcp-viewer reads");
    let refused = server.call(&viewer, "write-data").await;
    assert_eq!(refused.error()["data"]["reason"], "missing_role");
    let written = server.call(&editor, "write-data").await;
    assert_accepted(&written, "mcp-editor writes");
    let refused = server.call(&editor, "delete-data").await;
    assert_eq!(refused.error()["data"]["requiredRole"], "admin");
    assert_accepted(
        &server.call(&admin, "delete-data").await,
        "mcp-admin deletes",
    );
    assert_accepted(
        &server.call(&admin, "manage-users").await,
        "mcp-admin manages",
    );
    let roles = |p: &mcp_gatekeeper::Principal| p.roles().map(str::to_owned).collect::<Vec<_>>();
    let principal = server.oidc.verify(&editor, None).await.expect("verified");
    assert_eq!(roles(&principal), ["editor"]);

    // Once one name is mapped, only mapped names grant anything: the admin's group `admins`
    // is not mapped, and grants nothing.
    let groups = Oidc::issuer(&idp.issuer)
        .audience(&url)
        .role_claim(ClaimPath::segments(["groups"]))
        .map_role("readers", "viewer")
        .build()
        .await
        .expect("the provider is usable");
    let reader = groups.verify(&viewer, None).await.expect("verified");
    assert_eq!(roles(&reader), ["viewer"]);
    let unmapped = groups.verify(&admin, None).await.expect("verified");
    assert!(roles(&unmapped).is_empty(), "{:?}", roles(&unmapped));

    // A mapping to a role the tools do not declare stops the server from starting.
    let wrong = Oidc::issuer(&idp.issuer)
        .audience(&url)
        .map_role("mcp-admin", "superuser")
        .build()
        .await
        .expect("the provider is usable");
    let error = oidc_example::gatekeeper(&config(&idp.issuer, &url), wrong)
        .expect("the builder takes it")
        .into_router()
        .expect_err("an undeclared role is refused");
    assert!(error.to_string().contains("superuser"), "{error}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_for_another_audience_is_refused() {
    const OTHER: &str = "https://other.example/mcp";
    let (idp, server) = start(&["--other-audience", OTHER]).await;
    let other = idp
        .token_for("admin", ALL_SCOPES, Some(OTHER), ClientAuth::Basic)
        .await;
    assert_invalid_token(
        &server.call(&other, "read-data").await,
        "a token for another service",
    );
    let ours = idp.token("admin", ALL_SCOPES).await;
    assert_accepted(&server.call(&ours, "read-data").await, "a token for us");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_of_an_issuer_not_configured_costs_no_fetch() {
    let (idp, server) = start(&[]).await;
    // Another provider, with the same path and the same audience: only its issuer (port)
    // differs, and this server does not trust it.
    let foreign = start_idp(&server.url, &[]).await;
    let before = idp.counters().await;
    let stats = server.oidc.stats();
    let token = foreign.token("admin", ALL_SCOPES).await;
    assert_invalid_token(
        &server.call(&token, "read-data").await,
        "a token of a foreign issuer",
    );
    // Nobody was asked: not the configured provider, not the foreign one.
    assert_eq!(idp.counters().await, before);
    let asked = foreign.counters().await;
    assert_eq!(
        (asked.discovery, asked.oauth_metadata, asked.jwks),
        (0, 0, 0),
        "{asked:?}"
    );
    assert_eq!(server.oidc.stats(), stats);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_token_is_refused_as_expired() {
    let (listener, url) = bind().await;
    let idp = start_idp(&url, &[]).await;
    // No clock leeway, so that a two-second token is expired two seconds later.
    let oidc = Oidc::issuer(&idp.issuer)
        .audience(&url)
        .leeway(Duration::ZERO)
        .build()
        .await
        .expect("the provider is usable");
    let server = serve_with(&config(&idp.issuer, &url), oidc, listener);
    let token = idp.token("shortlived", "data:read").await;
    assert_accepted(&server.call(&token, "read-data").await, "a fresh token");
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let reply = server.call(&token, "read-data").await;
    assert_eq!(reply.status, 401, "{reply:#?}");
    let challenge = reply.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.contains("error=\"invalid_token\"")
            && challenge.contains("error_description=\"Token expired\""),
        "{challenge}"
    );
    assert_eq!(reply.json_body()["error_description"], "Token expired");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_signed_by_another_key_is_refused() {
    // An ES256 provider: the forged token names its real kid and algorithm, so the key is
    // found and the signature is what fails.
    let (idp, server) = start(&["--alg", "ES256"]).await;
    let claims = admin_claims(&idp.issuer, &server.url);
    let forged = sign_es256(&test_key(), &idp.kid, &claims);
    assert_invalid_token(
        &server.call(&forged, "delete-data").await,
        "a forged signature",
    );
    // HS256 "signed" with a guessable secret under the same kid: the algorithm is refused.
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(idp.kid.clone());
    let hmac = jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_secret(idp.kid.as_bytes()).expect("a secret"),
    )
    .expect("a token");
    assert_invalid_token(&server.call(&hmac, "delete-data").await, "an HS256 token");
    // The kid was known: no refetch, the provider was asked for its keys once (at start).
    let stats = server.oidc.stats();
    assert_eq!(
        (stats.key_set_fetches, stats.unknown_key_refetches),
        (1, 0),
        "{stats:?}"
    );
    assert_eq!(idp.counters().await.jwks, 1);
    let real = idp.token("admin", ALL_SCOPES).await;
    assert_accepted(&server.call(&real, "delete-data").await, "the real admin");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_key_is_fetched_once_and_the_retired_keys_tokens_are_refused() {
    let (listener, url) = bind().await;
    let keys = key_file("rotation");
    let mut idp = start_idp(&url, &["--key-file", keys.to_str().unwrap()]).await;
    let config = config(&idp.issuer, &url);
    let server = serve_with(
        &config,
        oidc_example::authenticator(&config).await.expect("usable"),
        listener,
    );
    let old_kid = idp.kid.clone();
    let used = idp.token("viewer", "data:read").await;
    assert_accepted(
        &server.call(&used, "read-data").await,
        "before the rotation",
    );
    // Minted before the rotation, never shown to the server.
    let unused = idp.token("viewer", "data:read").await;

    idp.restart(&["--new-key"]).await;
    assert_ne!(idp.kid, old_kid, "--new-key made no new key");
    let fresh = idp.token("viewer", "data:read").await;
    assert_accepted(&server.call(&fresh, "read-data").await, "a new key's token");
    let stats = server.oidc.stats();
    assert_eq!(stats.unknown_key_refetches, 1, "{stats:?}");
    assert_eq!(stats.key_set_fetches, 2, "{stats:?}");
    assert_eq!(idp.counters().await.jwks, 1, "one fetch of the new key set");

    // The retired key is no longer published: its tokens are refused, and asking again within
    // the cool-down costs the provider nothing.
    assert_invalid_token(
        &server.call(&unused, "read-data").await,
        "a retired key's token",
    );
    assert_eq!(server.oidc.stats().unknown_key_refetches, 1);
    assert_eq!(idp.counters().await.jwks, 1);
    let _ = std::fs::remove_file(&keys);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotation_that_keeps_publishing_the_old_key_keeps_its_tokens_valid() {
    let (listener, url) = bind().await;
    let keys = key_file("overlap");
    let old_keys = key_file("overlap-old");
    let mut idp = start_idp(&url, &["--key-file", keys.to_str().unwrap()]).await;
    let config = config(&idp.issuer, &url);
    let server = serve_with(
        &config,
        oidc_example::authenticator(&config).await.expect("usable"),
        listener,
    );
    let unused = idp.token("editor", "data:write").await;
    std::fs::copy(&keys, &old_keys).expect("the old key copied");
    idp.restart(&["--new-key", "--also-key-file", old_keys.to_str().unwrap()])
        .await;
    // The new key's token first: it makes the server fetch the set, which now holds both.
    let fresh = idp.token("editor", "data:write").await;
    assert_accepted(
        &server.call(&fresh, "write-data").await,
        "a new key's token",
    );
    assert_accepted(
        &server.call(&unused, "write-data").await,
        "an old key's token while the old key is published",
    );
    let stats = server.oidc.stats();
    assert_eq!(stats.unknown_key_refetches, 1, "{stats:?}");
    assert_eq!(idp.counters().await.jwks, 1);
    let _ = std::fs::remove_file(&keys);
    let _ = std::fs::remove_file(&old_keys);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn known_keys_keep_working_while_the_provider_is_down() {
    let (mut idp, server) = start(&[]).await;
    let warm = idp.token("viewer", "data:read").await;
    assert_accepted(&server.call(&warm, "read-data").await, "before the outage");
    // Minted before the outage, first shown to the server during it.
    let viewer = idp.token("viewer", "data:read").await;
    let editor = idp.token("editor", "data:write").await;
    let issuer = idp.issuer.clone();
    idp.stop().await;
    assert_accepted(
        &server.call(&viewer, "read-data").await,
        "viewer, provider down",
    );
    assert_accepted(
        &server.call(&editor, "write-data").await,
        "editor, provider down",
    );
    assert_eq!(server.oidc.stats().failed_key_set_fetches, 0);
    // An unknown kid tries the provider once, fails, and is refused as unknown (401), not as
    // unverifiable (503): the keys the server holds are still fresh.
    let forged = sign_es256(
        &test_key(),
        &random_kid(),
        &admin_claims(&issuer, &server.url),
    );
    assert_invalid_token(
        &server.call(&forged, "read-data").await,
        "an unknown kid while the provider is down",
    );
    let stats = server.oidc.stats();
    assert_eq!(
        (stats.unknown_key_refetches, stats.failed_key_set_fetches),
        (1, 1),
        "{stats:?}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_storm_of_unknown_kids_costs_the_provider_one_fetch() {
    const REQUESTS: usize = 200;
    // 40 source addresses, 5 requests each: under the failure throttle's 10 per address and
    // minute, so that every answer is the token's own (401), never a 429.
    const SOURCES: usize = 40;
    let (idp, server) = start(&[]).await;
    let before = idp.counters().await.jwks;
    let key = test_key();
    let claims = admin_claims(&idp.issuer, &server.url);
    let clients: Vec<reqwest::Client> = (0..SOURCES)
        .map(|n| client_from(&format!("127.0.3.{}", 10 + n)))
        .collect();
    let requests = (0..REQUESTS).map(|n| {
        let token = sign_es256(&key, &random_kid(), &claims);
        let mut mcp = Mcp::new(&server.url, Cred::Bearer(token), Version::V2026_07_28);
        mcp.http = clients[n % SOURCES].clone();
        async move { mcp.call("read-data", arguments("read-data")).await }
    });
    let started = Instant::now();
    let replies = futures::future::join_all(requests).await;
    let elapsed = started.elapsed();
    let mut statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    statuses.sort_unstable();
    statuses.dedup();
    assert_eq!(statuses, [401], "every forged token refused as invalid");
    for reply in &replies {
        assert_eq!(reply.json_body()["error"], "invalid_token");
    }
    let after = idp.counters().await.jwks;
    let stats = server.oidc.stats();
    println!(
        "{REQUESTS} unknown kids from {SOURCES} addresses in {elapsed:?}: {} key-set fetch(es), {stats:?}",
        after - before
    );
    assert_eq!(after - before, 1, "one fetch for the whole storm");
    assert_eq!(stats.unknown_key_refetches, 1, "{stats:?}");
    // The provider's real tokens are unaffected.
    let real = idp.token("viewer", "data:read").await;
    assert_accepted(&server.call(&real, "read-data").await, "after the storm");
    assert_eq!(idp.counters().await.jwks, after);
    server.stop().await;
}

/// A provider issuing opaque tokens for a new server (its JWTs are for another audience), and
/// the example introspecting them as `mcp-server`, or an authenticator `customize` builds.
async fn start_opaque(
    customize: impl FnOnce(mcp_gatekeeper::auth::OidcIssuer) -> mcp_gatekeeper::auth::OidcBuilder,
) -> (Idp, Served) {
    let (listener, url) = bind().await;
    let jwt_audience = url.replace("/mcp", "/jwt-only");
    let idp = start_idp(&jwt_audience, &["--opaque-audience", &url]).await;
    let mut config = config(&idp.issuer, &url);
    config.introspection = Some(("mcp-server".into(), "mcp-server-secret".into()));
    let issuer = Oidc::issuer(&idp.issuer)
        .audience(&url)
        .introspection("mcp-server", "mcp-server-secret");
    let oidc = customize(issuer)
        .build()
        .await
        .expect("the provider is usable");
    let served = serve_with(&config, oidc, listener);
    (idp, served)
}

#[tokio::test(flavor = "multi_thread")]
async fn opaque_tokens_are_introspected_once_and_then_served_from_the_cache() {
    // The example's own authenticator: OIDC_CLIENT_ID and OIDC_CLIENT_SECRET set.
    let (listener, url) = bind().await;
    let idp = start_idp(
        &url.replace("/mcp", "/jwt-only"),
        &["--opaque-audience", &url],
    )
    .await;
    let mut config = config(&idp.issuer, &url);
    config.introspection = Some(("mcp-server".into(), "mcp-server-secret".into()));
    let oidc = oidc_example::authenticator(&config).await.expect("usable");
    let server = serve_with(&config, oidc, listener);

    let opaque = idp
        .token_for(
            "editor",
            "data:read data:write",
            Some(&url),
            ClientAuth::Post,
        )
        .await;
    assert!(opaque.split('.').count() < 3, "not opaque: {opaque}");
    let written = server.call(&opaque, "write-data").await;
    assert_accepted(&written, "an opaque token");
    // oidc-provider's answer has no `sub`: the subject is the client.
    assert_eq!(
        written.result()["structuredContent"]["written_by"],
        "editor"
    );
    for _ in 0..4 {
        assert_accepted(&server.call(&opaque, "read-data").await, "from the cache");
    }
    let refused = server.call(&opaque, "delete-data").await;
    assert_eq!(refused.error()["data"]["reason"], "missing_role");
    let stats = server.oidc.stats();
    assert_eq!(
        (
            stats.introspection_requests,
            stats.introspection_cache_misses,
            stats.introspection_cache_hits
        ),
        (1, 1, 5),
        "{stats:?}"
    );
    assert_eq!(idp.counters().await.introspection, 1);

    // A token the provider never issued: asked about once, then remembered as inactive.
    for _ in 0..3 {
        assert_invalid_token(
            &server
                .call("not-a-token-the-provider-issued", "read-data")
                .await,
            "an unknown opaque token",
        );
    }
    assert_eq!(idp.counters().await.introspection, 2);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_opaque_token_is_refused_once_its_cache_entry_expires() {
    let (idp, server) = start_opaque(|issuer| {
        Oidc::builder()
            .issuer(issuer)
            .introspection_cache_ttl(Duration::from_secs(1))
    })
    .await;
    let opaque = idp
        .token_for("viewer", "data:read", Some(&server.url), ClientAuth::Basic)
        .await;
    let first = Instant::now();
    let reply = server.call(&opaque, "read-data").await;
    assert_accepted(&reply, "before revocation");
    idp.revoke(&opaque).await;
    // Within the cache's second the answer is the cached one. (The entry was made after
    // `first`, so it is alive for a call that ends within a second of it; on a machine too slow
    // for that, the provider was asked again and its "inactive" is what the last call finds.)
    let cached = server.call(&opaque, "read-data").await;
    if first.elapsed() < Duration::from_secs(1) {
        assert_accepted(&cached, "cached");
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    // ...then the provider is asked again, and says inactive.
    assert_invalid_token(
        &server.call(&opaque, "read-data").await,
        "a revoked token after the cache entry expired",
    );
    assert_eq!(idp.counters().await.introspection, 2);
    assert_eq!(idp.counters().await.revocation, 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_opaque_token_cannot_be_checked_while_the_provider_is_down() {
    let (mut idp, server) = start_opaque(|issuer| Oidc::builder().issuer(issuer)).await;
    let cached = idp
        .token_for("viewer", "data:read", Some(&server.url), ClientAuth::Basic)
        .await;
    assert_accepted(
        &server.call(&cached, "read-data").await,
        "before the outage",
    );
    let unseen = idp
        .token_for("viewer", "data:read", Some(&server.url), ClientAuth::Basic)
        .await;
    idp.stop().await;
    let reply = server.call(&unseen, "read-data").await;
    assert_eq!(reply.status, 503, "{reply:#?}");
    assert!(reply.header("retry-after").is_some(), "{reply:#?}");
    assert!(reply.header("www-authenticate").is_none(), "{reply:#?}");
    assert_eq!(reply.json_body()["error"], "temporarily_unavailable");
    assert_eq!(server.oidc.stats().failed_introspection_requests, 1);
    // What the provider said before the outage still holds, within the cache's lifetime.
    assert_accepted(
        &server.call(&cached, "read-data").await,
        "cached, provider down",
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn this_crates_authorization_server_is_a_provider_found_by_rfc_8414() {
    const CLIENT: &str = "reporting";
    const SECRET: &str = "reporting-secret-0123456789";
    // The authorization server, on a server of its own (with its own MCP endpoint)...
    let (as_listener, as_url) = bind().await;
    let as_base = as_url.trim_end_matches("/mcp").to_owned();
    // ...and the resource server trusting it, on another port.
    let (listener, url) = bind().await;
    let oauth = AuthorizationServer::new(&as_base)
        .resource(&as_url)
        .resource(&url)
        .scopes(OAuthDataTools::declared_scopes())
        .client(
            OAuthClient::confidential(CLIENT, SECRET)
                .role("viewer")
                .scopes(["data:read"]),
        )
        .build()
        .await
        .expect("the authorization server builds");
    let authorization = Gatekeeper::new(OAuthDataTools::default())
        .oauth(&oauth, &as_url)
        .serve_on(as_listener)
        .expect("the authorization server starts");
    // It serves RFC 8414 metadata, not OpenID Connect discovery.
    let http = reqwest::Client::new();
    let oidc_doc = http
        .get(format!("{as_base}/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap();
    assert_eq!(oidc_doc.status(), 404);
    let rfc8414: Value = http
        .get(format!("{as_base}/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(rfc8414["issuer"], as_base.as_str());

    // Its tokens carry the role in `role`.
    let mut config = config(&as_base, &url);
    config.roles_claim = "role".into();
    let oidc = oidc_example::authenticator(&config)
        .await
        .expect("discovered through RFC 8414");
    let server = serve_with(&config, oidc, listener);
    let token = |resource: String| {
        let http = http.clone();
        let endpoint = format!("{as_base}/oauth/token");
        async move {
            let body: Value = http
                .post(endpoint)
                .basic_auth(CLIENT, Some(SECRET))
                .form(&[
                    ("grant_type", "client_credentials"),
                    ("scope", "data:read"),
                    ("resource", &resource),
                ])
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            body["access_token"]
                .as_str()
                .unwrap_or_else(|| panic!("no token: {body}"))
                .to_owned()
        }
    };
    let ours = token(url.clone()).await;
    let reply = server.call(&ours, "read-data").await;
    assert_accepted(&reply, "the authorization server's token");
    assert_eq!(reply.text(), "welcome");
    assert_eq!(
        server.call(&ours, "write-data").await.error()["data"]["reason"],
        "missing_role"
    );
    // A token it issued for its own endpoint is not one for this server.
    let theirs = token(as_url.clone()).await;
    assert_invalid_token(
        &server.call(&theirs, "read-data").await,
        "a token for the authorization server's own endpoint",
    );
    server.stop().await;
    authorization.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread")]
async fn issuers_with_and_without_a_path_are_discovered() {
    for path in [REALM, ""] {
        let (listener, url) = bind().await;
        let idp = Idp::start(&["--audience", &url, "--path", path]).await;
        assert!(idp.issuer.ends_with(path), "{}", idp.issuer);
        let config = config(&idp.issuer, &url);
        let oidc = oidc_example::authenticator(&config)
            .await
            .unwrap_or_else(|e| panic!("issuer `{}`: {e}", idp.issuer));
        assert_eq!(oidc.issuers().collect::<Vec<_>>(), [idp.issuer.as_str()]);
        // OpenID Connect discovery at `<issuer>/.well-known/openid-configuration`, found at once.
        let counters = idp.counters().await;
        assert_eq!(
            counters,
            Counters {
                discovery: 1,
                jwks: 1,
                ..Counters::default()
            },
            "path `{path}`"
        );
        let server = serve_with(&config, oidc, listener);
        let token = idp.token("viewer", "data:read").await;
        assert_accepted(&server.call(&token, "read-data").await, path);
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_issuer_other_than_the_documents_fails_the_build() {
    let (_listener, url) = bind().await;
    let idp = start_idp(&url, &[]).await;
    let localhost = idp.issuer.replace("127.0.0.1", "localhost");
    for configured in [format!("{}/", idp.issuer), localhost] {
        let error = Oidc::issuer(&configured)
            .audience(&url)
            .build()
            .await
            .expect_err("the document names another issuer");
        match &error {
            ConfigError::IdentityProvider { issuer, reason } => {
                assert_eq!(issuer, &configured);
                assert!(
                    reason.contains(&format!("names the issuer `{}`", idp.issuer)),
                    "{reason}"
                );
            }
            other => panic!("{configured}: {other:?}"),
        }
        assert!(error.to_string().contains(&configured), "{error}");
    }
    // Its keys were never asked for.
    assert_eq!(idp.counters().await.jwks, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unusable_issuer_fails_the_start_saying_which_variable_to_fix() {
    // A loopback port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let unreachable = format!("http://{closed}{REALM}");
    let started = Instant::now();
    let error = Oidc::issuer(&unreachable)
        .audience("http://127.0.0.1/mcp")
        .build()
        .await
        .expect_err("nobody answers");
    assert!(started.elapsed() < Duration::from_secs(5));
    match &error {
        ConfigError::IdentityProvider { issuer, reason } => {
            assert_eq!(issuer, &unreachable);
            assert!(reason.contains("unreachable"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // Through the example: its message names the variable.
    for (issuer, expected) in [
        (unreachable.as_str(), "unreachable"),
        ("http://sso.example.com/realms/test", "https://"),
        ("not a url", "not an absolute URL"),
    ] {
        let (listener, url) = bind().await;
        let error = oidc_example::serve(config(issuer, &url), listener)
            .await
            .err()
            .unwrap_or_else(|| panic!("{issuer} was accepted"))
            .to_string();
        assert!(
            error.contains(&format!("OIDC_ISSUER `{issuer}`")) && error.contains(expected),
            "{error}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_protected_resource_metadata_names_the_provider() {
    let (idp, server) = start(&[]).await;
    let http = reqwest::Client::new();
    let response = http
        .get(format!(
            "{}/.well-known/oauth-protected-resource/mcp",
            server.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let doc: Value = response.json().await.unwrap();
    assert_eq!(doc["resource"], server.url.as_str());
    assert_eq!(doc["authorization_servers"], json!([idp.issuer]));
    assert_eq!(
        doc["scopes_supported"],
        json!(["data:delete", "data:read", "data:write", "users:manage"])
    );
    // A request without a token is pointed there.
    let anonymous = Mcp::new(&server.url, Cred::None, Version::V2026_07_28)
        .call("read-data", arguments("read-data"))
        .await;
    assert_eq!(anonymous.status, 401);
    let challenge = anonymous.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.contains(&format!(
            "resource_metadata=\"{}/.well-known/oauth-protected-resource/mcp\"",
            server.base
        )),
        "{challenge}"
    );
    server.stop().await;
}

/// The example binary, started with `vars` only (and `PATH`); killed when dropped.
fn start_example(vars: &[(&str, &str)]) -> CapturedProcess {
    let mut command = Command::new(example_binary("oidc"));
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn")
        .envs(vars.iter().copied())
        .stdin(Stdio::null());
    CapturedProcess::spawn(&mut command, "the oidc example")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_example_binary_serves_a_providers_tokens_and_its_printed_line_works() {
    // Any port: the audience is a fixed URL (a loopback name, answered to by default).
    let resource = common::RESOURCE;
    let idp = start_idp(resource, &[]).await;
    let mut example = start_example(&[
        ("BIND", "127.0.0.1:0"),
        ("STATELESS", "1"),
        ("MCP_RESOURCE", resource),
        ("OIDC_ISSUER", &idp.issuer),
    ]);
    let address = tokio::task::block_in_place(|| example.listening());
    let printed = example.printed();
    for expected in [
        format!("oidc: MCP endpoint http://{address}/mcp"),
        format!("identity provider:      {}", idp.issuer),
        format!("tokens must carry aud:  {resource}"),
        "protected resource:     http://localhost/.well-known/oauth-protected-resource/mcp"
            .to_owned(),
    ] {
        assert!(
            printed.contains(&expected),
            "{expected:?} not in:\n{printed}"
        );
    }
    // The lines under `try it`, run in a fresh shell with TOKEN set as they say.
    let lines: Vec<&str> = printed
        .lines()
        .skip_while(|l| !l.starts_with("try it"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .collect();
    assert!(
        lines.iter().any(|l| l.contains("curl ")) && lines.iter().all(|l| l.starts_with("  ")),
        "no `try it` lines:\n{printed}"
    );
    let token = idp.token("viewer", "data:read").await;
    let output = Command::new("bash")
        .arg("-c")
        .arg(format!("set -euo pipefail\n{}", lines.join("\n")))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("TOKEN", &token)
        .output()
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains(r#""text":"welcome""#),
        "the printed lines:\n{}\n--- gave ({}):\n{stdout}{}\n--- server:\n{}",
        lines.join("\n"),
        output.status,
        String::from_utf8_lossy(&output.stderr),
        example.printed()
    );
    // Its metadata names the provider; a foreign token is refused.
    let doc: Value = reqwest::get(format!(
        "http://{address}/.well-known/oauth-protected-resource/mcp"
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(doc["authorization_servers"], json!([idp.issuer]));
    let forged = sign_es256(&test_key(), &idp.kid, &admin_claims(&idp.issuer, resource));
    let reply = Mcp::new(
        &format!("http://{address}/mcp"),
        Cred::Bearer(forged),
        Version::V2026_07_28,
    )
    .call("read-data", arguments("read-data"))
    .await;
    assert_invalid_token(&reply, "a forged token at the example binary");
}

#[test]
fn the_example_binary_says_which_variable_is_missing_or_wrong() {
    for (vars, expected) in [
        (vec![], "OIDC_ISSUER is not set"),
        (vec![("OIDC_ISSUER", "  ")], "OIDC_ISSUER is not set"),
        (
            vec![("OIDC_ISSUER", "http://sso.example.com")],
            "OIDC_ISSUER `http://sso.example.com` cannot be used: must be https://",
        ),
        (
            vec![
                ("OIDC_ISSUER", "https://sso.example.com"),
                ("OIDC_CLIENT_ID", "mcp-server"),
            ],
            "OIDC_CLIENT_ID is set without OIDC_CLIENT_SECRET",
        ),
    ] {
        let mut all = vec![("BIND", "127.0.0.1:0")];
        all.extend(vars.iter().copied());
        let (status, printed) = start_example(&all).exit();
        assert!(!status.success(), "{vars:?}: exited {status}:\n{printed}");
        assert!(
            printed.contains(expected),
            "{vars:?}: {expected:?} not in:\n{printed}"
        );
        assert!(!printed.contains("listening on"), "{printed}");
    }
}
