//! The authentication layer on its own: around a server written with rmcp alone
//! (`examples/rmcp_layer.rs`) and around axum routes; the `Principal` extractor with and
//! without it; `Gatekeeper::merge_authenticated` and `into_router_and_layer`; authenticators
//! used without HTTP.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{Router, routing::get};
use mcp_gatekeeper::{
    ApiKey, ApiKeys, AuthMethod, CancellationToken, Gatekeeper, GatekeeperLayer, Lockout,
    Principal, ProtectedResource, auth::Credential,
};
use serde_json::json;

use crate::{
    common::{self, Cred, Mcp, VERSIONS, Version},
    rmcp_layer,
};

const ALICE_KEY: &str = "alice-key-0123456789abcdef";

/// One key, whose subject is `alice` (no role: the `hello` tools declare none).
fn keys() -> ApiKeys {
    ApiKeys::new().with_key(ApiKey::new("alice", ALICE_KEY))
}

/// An app served as the example serves it (with the client's address), stopped when dropped.
struct Served {
    base: String,
    stop: CancellationToken,
}

impl Served {
    async fn start(app: Router) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async move { stopped.cancelled().await })
            .await
            .unwrap();
        });
        Self { base, stop }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// `GET path` with `cred`: status and body.
async fn get_with(url: &str, cred: &Cred) -> (u16, String) {
    let response = reqwest::Client::new()
        .get(url)
        .headers(cred.headers())
        .send()
        .await
        .unwrap();
    (
        response.status().as_u16(),
        response.text().await.unwrap_or_default(),
    )
}

#[tokio::test]
async fn a_wrong_key_is_refused_by_the_layer_before_rmcp_runs() {
    let shutdown = CancellationToken::new();
    let reached_rmcp = Arc::new(AtomicUsize::new(0));
    let counter = reached_rmcp.clone();
    // The example's pieces, with a count of the requests that get past the layer to rmcp.
    let app = rmcp_layer::mcp_routes(true, &shutdown)
        .route_layer(axum::middleware::map_request(
            move |request: axum::extract::Request| {
                counter.fetch_add(1, Ordering::SeqCst);
                async move { request }
            },
        ))
        .route_layer(rmcp_layer::layer(keys()).unwrap());
    let served = Served::start(app).await;
    let url = served.url("/mcp");

    let wrong = Mcp::new(
        &url,
        Cred::ApiKey("wrong-key-0123456789abcdef".into()),
        Version::V2026_07_28,
    );
    let refused = wrong.call("whoami", json!({})).await;
    assert_eq!(refused.status, 403, "{refused:#?}");
    assert_eq!(
        refused.json_body(),
        json!({ "error": "invalid_token", "error_description": "Invalid API key" })
    );
    let missing = Mcp::new(&url, Cred::None, Version::V2026_07_28)
        .call("whoami", json!({}))
        .await;
    assert_eq!(missing.status, 401, "{missing:#?}");
    assert_eq!(
        missing.header("www-authenticate"),
        Some("Bearer realm=\"mcp\"")
    );
    let foreign_host = reqwest::Client::new()
        .post(&url)
        .header("host", "evil.example")
        .header("x-api-key", ALICE_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(foreign_host.status(), 403);
    assert_eq!(reached_rmcp.load(Ordering::SeqCst), 0, "rmcp saw a refusal");

    let alice = Mcp::new(&url, Cred::ApiKey(ALICE_KEY.into()), Version::V2026_07_28);
    let reply = alice.call("whoami", json!({})).await;
    assert_eq!(reply.text(), "alice (api_key)", "{reply:#?}");
    assert_eq!(reached_rmcp.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn the_rmcp_tool_sees_the_callers_subject_in_every_mode_and_version() {
    for stateless in [false, true] {
        let shutdown = CancellationToken::new();
        let served = Served::start(rmcp_layer::app(keys(), stateless, &shutdown).unwrap()).await;
        for version in VERSIONS {
            let alice =
                Mcp::connect(&served.url("/mcp"), Cred::ApiKey(ALICE_KEY.into()), version).await;
            let reply = alice.call("whoami", json!({})).await;
            assert_eq!(
                reply.text(),
                "alice (api_key)",
                "stateless={stateless} {version:?}: {reply:#?}"
            );
            let echoed = alice.call("echo", json!({ "text": "hi" })).await;
            assert_eq!(echoed.text(), "hi");
        }
        shutdown.cancel();
    }
}

#[tokio::test]
async fn without_the_layer_the_extractors_fail_closed() {
    let shutdown = CancellationToken::new();
    let bare = rmcp_layer::mcp_routes(true, &shutdown).route("/whoami", get(rmcp_layer::whoami));
    let served = Served::start(bare).await;
    let alice = Cred::ApiKey(ALICE_KEY.into());

    let (status, body) = get_with(&served.url("/whoami"), &alice).await;
    assert_eq!(status, 401);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap(),
        json!({ "error": "unauthorized", "error_description": "Authentication required" })
    );
    let reply = Mcp::new(&served.url("/mcp"), alice, Version::V2026_07_28)
        .call("whoami", json!({}))
        .await;
    assert_eq!(
        reply.error_code(),
        Some(i64::from(mcp_gatekeeper::codes::UNAUTHENTICATED)),
        "{reply:#?}"
    );
}

#[tokio::test]
async fn an_axum_route_behind_the_layer_gets_the_principal() {
    let shutdown = CancellationToken::new();
    let served = Served::start(rmcp_layer::app(keys(), true, &shutdown).unwrap()).await;
    let whoami = served.url("/whoami");
    assert_eq!(
        get_with(&whoami, &Cred::ApiKey(ALICE_KEY.into())).await,
        (200, "alice".to_owned())
    );
    assert_eq!(
        get_with(&whoami, &Cred::Bearer(ALICE_KEY.into())).await,
        (200, "alice".to_owned())
    );
    assert_eq!(get_with(&whoami, &Cred::None).await.0, 401);
    // `route_layer`: a path the app does not have is not the layer's business.
    assert_eq!(get_with(&served.url("/nothing"), &Cred::None).await.0, 404);
}

/// Who called, or that nobody was authenticated.
async fn open(caller: Option<Principal>) -> String {
    caller.map_or_else(|| "nobody".to_owned(), |c| c.subject().to_owned())
}

#[tokio::test]
async fn merge_authenticated_routes_get_the_caller_and_merged_ones_do_not() {
    let server = common::start(
        Gatekeeper::new(crate::hello::Hello)
            .authenticate(keys())
            .merge_authenticated(Router::new().route("/admin/stats", get(rmcp_layer::whoami)))
            .merge(Router::new().route("/open", get(open))),
    )
    .await;
    let stats = format!("{}/admin/stats", server.base);
    let alice = Cred::ApiKey(ALICE_KEY.into());
    assert_eq!(get_with(&stats, &alice).await, (200, "alice".to_owned()));
    assert_eq!(get_with(&stats, &Cred::None).await.0, 401);
    assert_eq!(
        get_with(&stats, &Cred::ApiKey("wrong-key-0123456789abcdef".into()))
            .await
            .0,
        403
    );
    // Merged with `merge`: served, but nobody is authenticated there.
    assert_eq!(
        get_with(&format!("{}/open", server.base), &alice).await,
        (200, "nobody".to_owned())
    );
    // The MCP endpoint is unchanged.
    let mcp = Mcp::connect(&server.url, alice, Version::V2026_07_28).await;
    assert_eq!(
        mcp.call("hello", json!({ "name": "layer" })).await.text(),
        "Hello, layer!"
    );
    server.stop().await;
}

#[tokio::test]
async fn the_gatekeepers_layer_shares_its_failure_throttle() {
    let (router, layer) = Gatekeeper::new(crate::hello::Hello)
        .authenticate(keys())
        .lockout(Lockout::new(
            3,
            Duration::from_secs(60),
            Duration::from_secs(60),
        ))
        .into_router_and_layer()
        .unwrap();
    let own = Router::new()
        .route("/mine", get(rmcp_layer::whoami))
        .route_layer(layer);
    let served = Served::start(router.merge(own)).await;
    let wrong = Cred::ApiKey("wrong-key-0123456789abcdef".into());
    for _ in 0..2 {
        let refused = Mcp::new(&served.url("/mcp"), wrong.clone(), Version::V2026_07_28)
            .call("hello", json!({ "name": "x" }))
            .await;
        assert_eq!(refused.status, 403, "{refused:#?}");
    }
    // The endpoint's two failures count on the app's own route too: its first is the third.
    assert_eq!(get_with(&served.url("/mine"), &wrong).await.0, 429);
    assert_eq!(
        get_with(&served.url("/mine"), &Cred::ApiKey(ALICE_KEY.into())).await,
        (200, "alice".to_owned())
    );
}

/// Two replicas of an app behind the layer alone, sharing its failure throttle through Redis.
#[tokio::test]
async fn layers_of_two_replicas_share_their_lockout_through_redis() {
    let redis = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!("mcp-layer-{:016x}:", rand::random::<u64>());
    let replica = || async {
        let layer = GatekeeperLayer::builder()
            .authenticate(keys())
            .lockout(Lockout::new(
                3,
                Duration::from_secs(60),
                Duration::from_secs(60),
            ))
            .shared_lockout(mcp_gatekeeper::RedisLockout::new(&redis).prefix(&prefix))
            .shared_sessions(mcp_gatekeeper::RedisSessions::new(&redis).prefix(&prefix))
            .build()
            .unwrap();
        Served::start(
            Router::new()
                .route("/mine", get(rmcp_layer::whoami))
                .route_layer(layer),
        )
        .await
    };
    let (first, second) = (replica().await, replica().await);
    let wrong = Cred::ApiKey("wrong-key-0123456789abcdef".into());
    for _ in 0..2 {
        assert_eq!(get_with(&first.url("/mine"), &wrong).await.0, 403);
    }
    // Redis must answer for the third failure to be throttled on the other replica: fail loudly
    // (never pass by accident) when it is not there.
    let (status, body) = get_with(&second.url("/mine"), &wrong).await;
    assert_eq!(
        status, 429,
        "the second replica counts the first one's failures (is Redis running at {redis}?): \
         {body}"
    );
    assert_eq!(
        get_with(&second.url("/mine"), &Cred::ApiKey(ALICE_KEY.into())).await,
        (200, "alice".to_owned())
    );
    // Settings that cannot be used fail the build.
    let bad = GatekeeperLayer::builder()
        .authenticate(keys())
        .shared_lockout(mcp_gatekeeper::RedisLockout::new("not a url"))
        .build();
    assert!(bad.is_err());
}

#[tokio::test]
async fn the_layers_mistakes_are_reported_by_build() {
    let bad_host = GatekeeperLayer::builder()
        .authenticate(keys())
        .allowed_hosts(["not a host"])
        .build();
    assert!(bad_host.unwrap_err().to_string().contains("not a host"));
    let bad_origin = GatekeeperLayer::builder()
        .allowed_origins(["mcp.example.com"])
        .build();
    assert!(bad_origin.is_err());
    let no_issuer = GatekeeperLayer::builder()
        .protected_resource(ProtectedResource::new("https://mcp.example.com/mcp").unwrap())
        .build();
    assert!(
        no_issuer
            .unwrap_err()
            .to_string()
            .contains("authorization server")
    );
    let any_audience = GatekeeperLayer::builder()
        .authenticate(mcp_gatekeeper::Jwt::hs256(common::SECRET).unwrap())
        .build();
    assert!(any_audience.unwrap_err().to_string().contains("audience"));
}

#[tokio::test]
async fn with_a_protected_resource_the_layer_challenges_with_its_metadata() {
    let resource = ProtectedResource::new("http://localhost/mcp")
        .unwrap()
        .authorization_server("https://auth.example.com")
        .scopes_supported(["notes"]);
    let layer = GatekeeperLayer::builder()
        .authenticate(keys())
        .protected_resource(resource)
        .build()
        .unwrap();
    let shutdown = CancellationToken::new();
    let app = rmcp_layer::mcp_routes(true, &shutdown)
        .route_layer(layer.clone())
        .merge(layer.metadata_routes());
    let served = Served::start(app).await;
    let missing = Mcp::new(&served.url("/mcp"), Cred::None, Version::V2026_07_28)
        .call("whoami", json!({}))
        .await;
    assert_eq!(missing.status, 401);
    assert_eq!(
        missing.header("www-authenticate"),
        Some(
            "Bearer realm=\"mcp\", resource_metadata=\"http://localhost/.well-known/oauth-protected-resource/mcp\", scope=\"notes\""
        )
    );
    // With OAuth, a wrong credential is 401 `invalid_token` (the client can get a new one).
    let wrong = Mcp::new(
        &served.url("/mcp"),
        Cred::ApiKey("wrong-key-0123456789abcdef".into()),
        Version::V2026_07_28,
    )
    .call("whoami", json!({}))
    .await;
    assert_eq!(wrong.status, 401);
    let (status, body) = get_with(
        &served.url("/.well-known/oauth-protected-resource/mcp"),
        &Cred::None,
    )
    .await;
    assert_eq!(status, 200);
    let metadata: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(metadata["resource"], "http://localhost/mcp");
    assert_eq!(
        metadata["authorization_servers"][0],
        "https://auth.example.com"
    );
}

#[tokio::test]
async fn authenticators_work_without_http() {
    let expired = ApiKey::new("old", "old-key-0123456789abcdef")
        .expires_at(std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1));
    let keys = keys()
        .with_key(expired)
        .with_key(ApiKey::new("ci", "ci-key-0123456789abcdef").role("editor"));
    let alice = keys.verify(ALICE_KEY).unwrap();
    assert_eq!(alice.subject(), "alice");
    assert_eq!(alice.method(), AuthMethod::ApiKey);
    assert_eq!(alice.credential_id(), Some("alice"));
    let ci = keys.verify("ci-key-0123456789abcdef").unwrap();
    assert_eq!(ci.roles().collect::<Vec<_>>(), ["editor"]);
    assert_eq!(
        keys.verify("wrong-key-0123456789abcdef")
            .unwrap_err()
            .description(),
        "Invalid API key"
    );
    let old = keys.verify("old-key-0123456789abcdef").unwrap_err();
    assert_eq!(old.description(), "API key expired");
    assert_eq!(old.credential_id(), Some("old"));

    let layer = GatekeeperLayer::builder()
        .authenticate(keys)
        .build()
        .unwrap();
    let by_layer = layer.verify(Credential::ApiKey(ALICE_KEY)).await.unwrap();
    assert_eq!(*by_layer, alice);
    assert!(
        layer
            .verify(Credential::Bearer("wrong-key-0123456789abcdef"))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn a_layer_verifies_tokens_from_the_verifiers_cache() {
    let jwt = mcp_gatekeeper::Jwt::hs256(common::SECRET)
        .unwrap()
        .issuer(common::ISSUER)
        .audience(common::RESOURCE);
    let token = common::jwt("bob", "viewer");
    // `Jwt::verify` checks the signature every time; the layer asks the verifier as a request
    // would, and a token accepted once is answered from its cache: the very same principal.
    assert_eq!(jwt.verify(&token).unwrap().subject(), "bob");
    let layer = GatekeeperLayer::builder()
        .authenticate(keys())
        .authenticate(jwt)
        .build()
        .unwrap();
    let first = layer.verify(Credential::Bearer(&token)).await.unwrap();
    let again = layer.verify(Credential::Bearer(&token)).await.unwrap();
    assert!(Arc::ptr_eq(&first, &again));
    assert_eq!(first.subject(), "bob");
    assert_eq!(first.method(), AuthMethod::Jwt);
    let forged = format!("{}x", &token[..token.len() - 1]);
    assert!(layer.verify(Credential::Bearer(&forged)).await.is_err());
}

/// A child process, killed when dropped (also when an assertion fails).
struct Reaper(std::process::Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_example_serves_with_the_examples_environment() {
    use std::io::{BufRead, BufReader};

    let child = std::process::Command::new(common::example_binary("rmcp_layer"))
        .env("BIND", "127.0.0.1:0")
        .env("STATELESS", "1")
        .env("MCP_API_KEYS", ALICE_KEY)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the example starts");
    let mut child = Reaper(child);
    let stdout = child.0.stdout.take().unwrap();
    let address = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find_map(|line| line.strip_prefix("listening on ").map(str::to_owned))
    })
    .await
    .unwrap();
    let address = address.expect("a `listening on` line");
    let subject = format!("env-{}", &ApiKey::digest_hex(ALICE_KEY)[..8]);
    let mcp = Mcp::new(
        &format!("http://{address}/mcp"),
        Cred::ApiKey(ALICE_KEY.into()),
        Version::V2026_07_28,
    );
    let reply = mcp.call("whoami", json!({})).await;
    // `STATELESS=1`: plain JSON.
    assert!(
        reply
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/json")),
        "{reply:#?}"
    );
    assert_eq!(reply.text(), format!("{subject} (api_key)"));
    let whoami = get_with(
        &format!("http://{address}/whoami"),
        &Cred::ApiKey(ALICE_KEY.into()),
    )
    .await;
    assert_eq!(whoami, (200, subject));
}
