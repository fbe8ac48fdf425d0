//! Tests of the parent module, against identity providers the tests serve on loopback (real
//! HTTP; the provider's answers, delays and outages are the test's to choose). The end-to-end
//! tests against a real OpenID Provider are in `tests/oidc.rs`.

use std::{
    collections::HashMap,
    net::Ipv4Addr,
    sync::{
        Mutex,
        atomic::{AtomicBool, AtomicU64},
    },
    time::{Duration, Instant as StdInstant},
};

use axum::{
    Json, Router,
    extract::{Form, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};

use super::{keys::tests::ec_jwk, *};
use crate::auth::AuthErrorKind;

const RESOURCE: &str = "https://mcp.example.com/mcp";
/// `mcp:mcp-secret` in HTTP Basic.
const INTROSPECTION_BASIC: &str = "Basic bWNwOm1jcC1zZWNyZXQ=";

/// An identity provider served by the test.
struct Provider {
    issuer: String,
    state: Arc<ProviderState>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct ProviderState {
    /// What the discovery document says the issuer is (the real one unless a test lies).
    stated_issuer: Mutex<String>,
    jwks: Mutex<Value>,
    jwks_max_age: Mutex<Option<u64>>,
    jwks_delay: Mutex<Duration>,
    introspection_delay: Mutex<Duration>,
    /// Introspection answers by token; others are inactive.
    answers: Mutex<HashMap<String, Value>>,
    /// Every endpoint answers 503.
    down: AtomicBool,
    discovery_fetches: AtomicU64,
    jwks_fetches: AtomicU64,
    introspections: AtomicU64,
}

impl Drop for Provider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Provider {
    async fn start(path: &str, keys: &[&TestKey]) -> Self {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .unwrap();
        let issuer = format!("http://{}{path}", listener.local_addr().unwrap());
        let state = Arc::new(ProviderState::default());
        *state.stated_issuer.lock().unwrap() = issuer.clone();
        *state.jwks.lock().unwrap() =
            json!({ "keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() });
        let router = Router::new()
            .route(
                &format!("{path}/.well-known/openid-configuration"),
                get(discovery),
            )
            .route(&format!("{path}/jwks"), get(jwks))
            .route(&format!("{path}/introspect"), post(introspect))
            .with_state((state.clone(), issuer.clone()));
        let task = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        Self {
            issuer,
            state,
            task,
        }
    }

    fn set_keys(&self, keys: &[&TestKey]) {
        *self.state.jwks.lock().unwrap() =
            json!({ "keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() });
    }

    fn answer(&self, token: &str, answer: Value) {
        self.state
            .answers
            .lock()
            .unwrap()
            .insert(token.to_owned(), answer);
    }

    fn jwks_fetches(&self) -> u64 {
        self.state.jwks_fetches.load(Ordering::SeqCst)
    }

    fn introspections(&self) -> u64 {
        self.state.introspections.load(Ordering::SeqCst)
    }

    fn set_down(&self, down: bool) {
        self.state.down.store(down, Ordering::SeqCst);
    }

    /// Claims a token of this provider for `RESOURCE` carries, valid for ten minutes.
    fn claims(&self, sub: &str) -> Value {
        let now = now();
        json!({
            "iss": self.issuer,
            "aud": RESOURCE,
            "sub": sub,
            "iat": now,
            "exp": now + 600,
            "roles": ["viewer"],
            "scope": "data:read",
        })
    }

    fn issuer(&self) -> OidcIssuer {
        Oidc::issuer(&self.issuer).audience(RESOURCE)
    }
}

type Shared = (Arc<ProviderState>, String);

async fn discovery(State((state, issuer)): State<Shared>) -> Response {
    state.discovery_fetches.fetch_add(1, Ordering::SeqCst);
    if state.down.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    Json(json!({
        "issuer": *state.stated_issuer.lock().unwrap(),
        "jwks_uri": format!("{issuer}/jwks"),
        "introspection_endpoint": format!("{issuer}/introspect"),
    }))
    .into_response()
}

async fn jwks(State((state, _)): State<Shared>) -> Response {
    state.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    let delay = *state.jwks_delay.lock().unwrap();
    tokio::time::sleep(delay).await;
    if state.down.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let body = state.jwks.lock().unwrap().clone();
    let mut response = Json(body).into_response();
    if let Some(max_age) = *state.jwks_max_age.lock().unwrap() {
        response.headers_mut().insert(
            header::CACHE_CONTROL,
            format!("max-age={max_age}").parse().unwrap(),
        );
    }
    response
}

async fn introspect(
    State((state, _)): State<Shared>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    state.introspections.fetch_add(1, Ordering::SeqCst);
    let delay = *state.introspection_delay.lock().unwrap();
    tokio::time::sleep(delay).await;
    if state.down.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    if headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        != Some(INTROSPECTION_BASIC)
    {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let token = form.get("token").cloned().unwrap_or_default();
    let answer = state.answers.lock().unwrap().get(&token).cloned();
    Json(answer.unwrap_or_else(|| json!({ "active": false }))).into_response()
}

/// A P-256 signing key of a provider.
struct TestKey {
    kid: String,
    jwk: Value,
    encoding: EncodingKey,
}

impl TestKey {
    fn new(kid: &str) -> Self {
        let (mut jwk, pkcs8) = ec_jwk(kid, false);
        jwk["alg"] = json!("ES256");
        jwk["use"] = json!("sig");
        Self {
            kid: kid.to_owned(),
            jwk,
            encoding: EncodingKey::from_ec_der(&pkcs8),
        }
    }

    fn sign(&self, claims: &Value) -> String {
        self.sign_as(Some(&self.kid), claims)
    }

    fn sign_as(&self, kid: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = kid.map(str::to_owned);
        encode(&header, claims, &self.encoding).unwrap()
    }
}

fn random_kid() -> String {
    let mut bytes = [0u8; 8];
    rand::fill(&mut bytes);
    hex::encode(bytes)
}

fn assert_refused(result: Result<Arc<Principal>, AuthError>, kind: AuthErrorKind) {
    match result {
        Ok(principal) => panic!("accepted: {principal:?}"),
        Err(error) => assert_eq!(error.kind(), kind, "{error:?}"),
    }
}

#[tokio::test]
async fn tokens_of_a_discovered_provider_are_accepted_with_its_claims() {
    let key = TestKey::new("k1");
    let provider = Provider::start("/realms/acme", &[&key]).await;
    let oidc = provider.issuer().build().await.unwrap();
    assert_eq!(
        oidc.issuers().collect::<Vec<_>>(),
        [provider.issuer.as_str()]
    );
    assert_eq!(
        oidc.authorization_servers(),
        std::slice::from_ref(&provider.issuer)
    );
    let token = key.sign(&provider.claims("alice"));
    let principal = oidc.verify(&token, None).await.unwrap();
    assert_eq!(principal.subject(), "alice");
    assert_eq!(principal.issuer(), Some(provider.issuer.as_str()));
    assert_eq!(principal.method(), crate::AuthMethod::OAuth);
    assert_eq!(principal.roles().collect::<Vec<_>>(), ["viewer"]);
    assert_eq!(principal.scopes().collect::<Vec<_>>(), ["data:read"]);
    // Answered from the verified-token cache the second time: the same principal.
    let again = oidc.verify(&token, None).await.unwrap();
    assert!(Arc::ptr_eq(&principal, &again));
    assert_eq!(oidc.stats().key_set_fetches, 1);
    assert_eq!(provider.jwks_fetches(), 1);
    assert_eq!(provider.state.discovery_fetches.load(Ordering::SeqCst), 1);
    // The rules hold: another audience, another issuer in a token signed by the right key,
    // expired, no `sub`.
    let mut claims = provider.claims("alice");
    claims["aud"] = json!("https://other.example/mcp");
    assert_refused(
        oidc.verify(&key.sign(&claims), None).await,
        AuthErrorKind::InvalidToken,
    );
    let mut claims = provider.claims("alice");
    claims["exp"] = json!(now() - 3600);
    assert_refused(
        oidc.verify(&key.sign(&claims), None).await,
        AuthErrorKind::Expired,
    );
    let mut claims = provider.claims("alice");
    claims.as_object_mut().unwrap().remove("sub");
    assert_refused(
        oidc.verify(&key.sign(&claims), None).await,
        AuthErrorKind::InvalidToken,
    );
    // A key the provider does not publish, under its kid.
    let forger = TestKey::new("k1");
    assert_refused(
        oidc.verify(&forger.sign(&provider.claims("alice")), None)
            .await,
        AuthErrorKind::InvalidToken,
    );
}

#[tokio::test]
async fn a_rotated_key_is_fetched_once_and_the_old_one_is_dropped() {
    let old = TestKey::new("old");
    let provider = Provider::start("", &[&old]).await;
    let oidc = provider.issuer().build().await.unwrap();
    let before_rotation = old.sign(&provider.claims("early"));
    oidc.verify(&old.sign(&provider.claims("a")), None)
        .await
        .unwrap();
    let new = TestKey::new("new");
    provider.set_keys(&[&new]);
    let principal = oidc
        .verify(&new.sign(&provider.claims("b")), None)
        .await
        .unwrap();
    assert_eq!(principal.subject(), "b");
    assert_eq!(oidc.stats().unknown_key_refetches, 1);
    assert_eq!(provider.jwks_fetches(), 2);
    // More tokens of the new key need no fetch; one of the withdrawn key (never seen before)
    // is refused without one.
    oidc.verify(&new.sign(&provider.claims("c")), None)
        .await
        .unwrap();
    assert_refused(
        oidc.verify(&before_rotation, None).await,
        AuthErrorKind::InvalidToken,
    );
    assert_eq!(provider.jwks_fetches(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_unknown_kids_costs_the_provider_one_fetch_per_cooldown() {
    let key = TestKey::new("real");
    let provider = Provider::start("", &[&key]).await;
    let oidc = Oidc::builder()
        .issuer(provider.issuer())
        .unknown_key_cooldown(Duration::from_millis(500))
        .build()
        .await
        .unwrap();
    // A slow provider, so that the requests really overlap the fetch.
    *provider.state.jwks_delay.lock().unwrap() = Duration::from_millis(200);
    let claims = provider.claims("mallory");
    let tokens: Vec<String> = (0..200)
        .map(|_| key.sign_as(Some(&random_kid()), &claims))
        .collect();
    let results = futures::future::join_all(tokens.iter().map(|t| oidc.verify(t, None))).await;
    for result in results {
        assert_refused(result, AuthErrorKind::InvalidToken);
    }
    assert_eq!(
        provider.jwks_fetches(),
        2,
        "the first fetch at build, then one"
    );
    assert_eq!(oidc.stats().unknown_key_refetches, 1);
    // Within the cool-down: no fetch at all.
    let token = key.sign_as(Some(&random_kid()), &claims);
    assert_refused(oidc.verify(&token, None).await, AuthErrorKind::InvalidToken);
    assert_eq!(provider.jwks_fetches(), 2);
    // After it: one more.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let token = key.sign_as(Some(&random_kid()), &claims);
    assert_refused(oidc.verify(&token, None).await, AuthErrorKind::InvalidToken);
    assert_eq!(provider.jwks_fetches(), 3);
    // The real key still works throughout.
    oidc.verify(&key.sign(&claims), None).await.unwrap();
}

#[tokio::test]
async fn a_request_waits_for_a_slow_provider_no_longer_than_the_deadline() {
    let key = TestKey::new("k");
    let provider = Provider::start("", &[&key]).await;
    let oidc = Oidc::builder()
        .issuer(provider.issuer())
        .request_deadline(Duration::from_millis(200))
        .build()
        .await
        .unwrap();
    *provider.state.jwks_delay.lock().unwrap() = Duration::from_secs(2);
    let rotated = TestKey::new("rotated");
    provider.set_keys(&[&key, &rotated]);
    let token = rotated.sign(&provider.claims("bob"));
    let started = StdInstant::now();
    assert_refused(oidc.verify(&token, None).await, AuthErrorKind::Unavailable);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    // The fetch went on; once it is done the token is accepted without another.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    oidc.verify(&token, None).await.unwrap();
    assert_eq!(provider.jwks_fetches(), 2);
}

#[tokio::test]
async fn while_the_provider_is_down_known_keys_serve_until_the_staleness_bound() {
    let key = TestKey::new("k");
    let provider = Provider::start("", &[&key]).await;
    let oidc = Oidc::builder()
        .issuer(provider.issuer())
        .key_set_lifetime_bounds(Duration::from_millis(100), Duration::from_millis(100))
        .max_key_staleness(Duration::from_millis(1500))
        .unknown_key_cooldown(Duration::ZERO)
        .build()
        .await
        .unwrap();
    provider.set_down(true);
    // The background refresh (at 80 ms) fails; the keys stay in use.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(oidc.stats().failed_key_set_fetches >= 1);
    oidc.verify(&key.sign(&provider.claims("during")), None)
        .await
        .unwrap();
    // Past the bound: refused as unverifiable (503), not as invalid, never accepted.
    tokio::time::sleep(Duration::from_millis(1400)).await;
    assert_refused(
        oidc.verify(&key.sign(&provider.claims("later")), None)
            .await,
        AuthErrorKind::Unavailable,
    );
    // The provider is back: the next token fetches the keys and is accepted.
    provider.set_down(false);
    oidc.verify(&key.sign(&provider.claims("after")), None)
        .await
        .unwrap();
}

#[tokio::test]
async fn max_age_decides_when_the_background_refresh_runs() {
    let key = TestKey::new("k");
    let provider = Provider::start("", &[&key]).await;
    *provider.state.jwks_max_age.lock().unwrap() = Some(1);
    let oidc = Oidc::builder()
        .issuer(provider.issuer())
        .key_set_lifetime_bounds(Duration::from_millis(500), Duration::from_secs(60))
        .build()
        .await
        .unwrap();
    // 1 s of max-age: refreshed at 0.8 s, 1.6 s, ... without any request.
    tokio::time::sleep(Duration::from_millis(1900)).await;
    let fetches = provider.jwks_fetches();
    assert!((2..=4).contains(&fetches), "{fetches}");
    // A rotation the background refresh picked up needs no request-time fetch.
    let new = TestKey::new("new");
    provider.set_keys(&[&new]);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    oidc.verify(&new.sign(&provider.claims("a")), None)
        .await
        .unwrap();
    assert_eq!(oidc.stats().unknown_key_refetches, 0);
    drop(oidc);
    // Dropping the authenticator stops its refresh.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let at_drop = provider.jwks_fetches();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(provider.jwks_fetches(), at_drop);
}

#[tokio::test]
async fn several_issuers_each_with_their_rules_and_no_fetch_for_strangers() {
    let key_a = TestKey::new("a");
    let key_b = TestKey::new("b");
    let key_c = TestKey::new("c");
    let a = Provider::start("", &[&key_a]).await;
    let b = Provider::start("/tenant-b", &[&key_b]).await;
    let stranger = Provider::start("", &[&key_c]).await;
    let oidc = Oidc::builder()
        .issuer(a.issuer())
        .issuer(
            b.issuer()
                .role_claim("realm_access.roles")
                .map_role("mcp-editors", "editor"),
        )
        .build()
        .await
        .unwrap();
    assert_eq!(oidc.configured_roles(), ["editor"]);
    let from_a = oidc
        .verify(&key_a.sign(&a.claims("42")), None)
        .await
        .unwrap();
    assert_eq!(from_a.roles().collect::<Vec<_>>(), ["viewer"]);
    let mut claims = b.claims("42");
    claims["realm_access"] = json!({ "roles": ["mcp-editors", "unmapped"] });
    let from_b = oidc.verify(&key_b.sign(&claims), None).await.unwrap();
    assert_eq!(
        from_b.roles().collect::<Vec<_>>(),
        ["editor"],
        "only mapped names"
    );
    // The same `sub` at two issuers is two callers.
    assert_ne!(from_a.caller_id(), from_b.caller_id());
    // A's key does not verify B's tokens (the issuer chooses the key set).
    assert_refused(
        oidc.verify(&key_a.sign(&b.claims("x")), None).await,
        AuthErrorKind::InvalidToken,
    );
    // A stranger's token is passed on, and costs nobody a fetch.
    let fetches = (a.jwks_fetches(), b.jwks_fetches());
    let token = key_c.sign(&stranger.claims("x"));
    let request_parts = http::Request::new(()).into_parts().0;
    let request = AuthRequest {
        credential: Some(Credential::Bearer(&token)),
        parts: &request_parts,
    };
    assert!(matches!(
        oidc.authenticate(&request).verdict().await,
        Verdict::Pass
    ));
    assert_refused(oidc.verify(&token, None).await, AuthErrorKind::InvalidToken);
    assert_eq!((a.jwks_fetches(), b.jwks_fetches()), fetches);
    assert_eq!(stranger.jwks_fetches(), 0);
    // So is an API key, and no opaque token is decided without introspection.
    let api_key = AuthRequest {
        credential: Some(Credential::ApiKey("key-123")),
        parts: &request_parts,
    };
    assert!(matches!(
        oidc.authenticate(&api_key).verdict().await,
        Verdict::Pass
    ));
    assert_refused(
        oidc.verify("opaque-token", None).await,
        AuthErrorKind::InvalidToken,
    );
}

fn introspected(provider: &Provider, client: &str) -> Value {
    json!({
        "active": true,
        "client_id": client,
        "scope": "data:read data:write",
        "aud": [RESOURCE, "https://other.example"],
        "iss": provider.issuer,
        "exp": now() + 600,
        "roles": ["editor"],
    })
}

async fn introspecting(
    provider: &Provider,
    builder: impl FnOnce(OidcBuilder) -> OidcBuilder,
) -> Oidc {
    builder(Oidc::builder().issuer(provider.issuer().introspection("mcp", "mcp-secret")))
        .build()
        .await
        .unwrap()
}

#[tokio::test]
async fn opaque_tokens_are_introspected_once_and_cached() {
    let key = TestKey::new("k");
    let provider = Provider::start("", &[&key]).await;
    let oidc = introspecting(&provider, |b| b).await;
    provider.answer("opaque-1", introspected(&provider, "svc"));
    let client = Some(IpAddr::from([127, 0, 0, 2]));
    let principal = oidc.verify("opaque-1", client).await.unwrap();
    assert_eq!(principal.subject(), "svc", "no sub: the client id");
    assert_eq!(principal.roles().collect::<Vec<_>>(), ["editor"]);
    assert_eq!(
        principal.scopes().collect::<Vec<_>>(),
        ["data:read", "data:write"]
    );
    assert_eq!(principal.issuer(), Some(provider.issuer.as_str()));
    for _ in 0..5 {
        oidc.verify("opaque-1", client).await.unwrap();
    }
    assert_eq!(provider.introspections(), 1);
    let stats = oidc.stats();
    assert_eq!(
        (
            stats.introspection_cache_hits,
            stats.introspection_cache_misses,
            stats.introspection_requests
        ),
        (5, 1, 1)
    );
    // Inactive: refused, and remembered as inactive (not asked again at once).
    for _ in 0..3 {
        assert_refused(
            oidc.verify("revoked", client).await,
            AuthErrorKind::InvalidToken,
        );
    }
    assert_eq!(provider.introspections(), 2);
    // Answers that break the rules are refused like a JWT would be.
    let mut wrong_audience = introspected(&provider, "svc");
    wrong_audience["aud"] = json!("https://other.example");
    let mut wrong_issuer = introspected(&provider, "svc");
    wrong_issuer["iss"] = json!("https://evil.example");
    let mut no_audience = introspected(&provider, "svc");
    no_audience.as_object_mut().unwrap().remove("aud");
    let mut not_true = introspected(&provider, "svc");
    not_true["active"] = json!("true");
    let mut expired = introspected(&provider, "svc");
    expired["exp"] = json!(now() - 3600);
    let mut bad_scope = introspected(&provider, "svc");
    bad_scope["scope"] = json!(5);
    for (i, answer) in [
        wrong_audience,
        wrong_issuer,
        no_audience,
        not_true,
        expired,
        bad_scope,
    ]
    .into_iter()
    .enumerate()
    {
        let token = format!("bad-{i}");
        provider.answer(&token, answer.clone());
        let kind = if i == 4 {
            AuthErrorKind::Expired
        } else {
            AuthErrorKind::InvalidToken
        };
        assert_refused(oidc.verify(&token, client).await, kind);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_with_one_token_share_one_introspection() {
    let key = TestKey::new("k");
    let provider = Provider::start("", &[&key]).await;
    let oidc = introspecting(&provider, |b| b).await;
    provider.answer("opaque", introspected(&provider, "svc"));
    *provider.state.introspection_delay.lock().unwrap() = Duration::from_millis(200);
    let results = futures::future::join_all((0..50).map(|_| oidc.verify("opaque", None))).await;
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(provider.introspections(), 1);
}

#[tokio::test]
async fn introspection_is_bounded_per_address_and_fails_closed() {
    let key = TestKey::new("k");
    let provider = Provider::start("", &[&key]).await;
    let oidc = introspecting(&provider, |b| {
        b.introspections_per_address_per_minute(2)
            .request_deadline(Duration::from_millis(300))
    })
    .await;
    let guesser = Some(IpAddr::from([127, 0, 0, 2]));
    let other = Some(IpAddr::from([127, 0, 0, 3]));
    for token in ["guess-1", "guess-2"] {
        assert_refused(
            oidc.verify(token, guesser).await,
            AuthErrorKind::InvalidToken,
        );
    }
    assert_refused(
        oidc.verify("guess-3", guesser).await,
        AuthErrorKind::Unavailable,
    );
    assert_eq!(provider.introspections(), 2);
    // Another address is unaffected, and a cached answer costs no budget.
    provider.answer("good", introspected(&provider, "svc"));
    oidc.verify("good", other).await.unwrap();
    oidc.verify("good", guesser).await.unwrap();
    // The provider down: refused with 503, audited as such by the HTTP layer.
    provider.set_down(true);
    assert_refused(oidc.verify("new", other).await, AuthErrorKind::Unavailable);
    assert_eq!(oidc.stats().failed_introspection_requests, 1);
    // A provider that does not answer in time.
    provider.set_down(false);
    *provider.state.introspection_delay.lock().unwrap() = Duration::from_secs(2);
    let started = StdInstant::now();
    assert_refused(
        oidc.verify("slow", Some(IpAddr::from([127, 0, 0, 4])))
            .await,
        AuthErrorKind::Unavailable,
    );
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn an_active_answer_is_cached_no_longer_than_the_ttl_nor_the_token() {
    let key = TestKey::new("k");
    let provider = Provider::start("", &[&key]).await;
    let oidc = introspecting(&provider, |b| {
        b.introspection_cache_ttl(Duration::from_millis(300))
    })
    .await;
    provider.answer("short-ttl", introspected(&provider, "svc"));
    oidc.verify("short-ttl", None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    // Revoked meanwhile: the next request asks again and is refused.
    provider.answer("short-ttl", json!({ "active": false }));
    assert_refused(
        oidc.verify("short-ttl", None).await,
        AuthErrorKind::InvalidToken,
    );
    assert_eq!(provider.introspections(), 2);
    // A token expiring in a second is not cached past its `exp` even with a long TTL.
    let long = introspecting(&provider, |b| {
        b.introspection_cache_ttl(Duration::from_secs(600))
    })
    .await;
    let mut soon = introspected(&provider, "svc");
    soon["exp"] = json!(now() + 1);
    provider.answer("expiring", soon);
    long.verify("expiring", None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let before = provider.introspections();
    let _ = long.verify("expiring", None).await;
    assert_eq!(provider.introspections(), before + 1);
}

#[tokio::test]
async fn jwts_may_be_introspected_too() {
    let key = TestKey::new("k");
    let provider = Provider::start("", &[&key]).await;
    let oidc = Oidc::builder()
        .issuer(
            provider
                .issuer()
                .introspection("mcp", "mcp-secret")
                .introspect_jwts(),
        )
        .build()
        .await
        .unwrap();
    let revoked = key.sign(&provider.claims("revoked"));
    assert_refused(
        oidc.verify(&revoked, None).await,
        AuthErrorKind::InvalidToken,
    );
    let live = key.sign(&provider.claims("live"));
    provider.answer(
        &live,
        json!({ "active": true, "aud": RESOURCE, "sub": "live" }),
    );
    let principal = oidc.verify(&live, None).await.unwrap();
    // The principal is the JWT's: its roles and scopes, not the answer's.
    assert_eq!(principal.roles().collect::<Vec<_>>(), ["viewer"]);
    // A verified-cache hit still consults the (cached) introspection answer.
    oidc.verify(&live, None).await.unwrap();
    assert_eq!(oidc.stats().introspection_cache_hits, 1);
}

#[tokio::test]
async fn building_fails_clearly_on_what_cannot_work() {
    let key = TestKey::new("k");
    let provider = Provider::start("", &[&key]).await;
    let error = |result: Result<Oidc, ConfigError>| result.unwrap_err().to_string();
    // No audience.
    let e = Oidc::issuer(&provider.issuer).build().await.unwrap_err();
    assert!(matches!(e, ConfigError::MissingAudience), "{e}");
    // The document names another issuer (here: a trailing slash more).
    *provider.state.stated_issuer.lock().unwrap() = format!("{}/", provider.issuer);
    let e = error(provider.issuer().build().await);
    assert!(
        e.contains("names the issuer") && e.contains(&provider.issuer),
        "{e}"
    );
    *provider.state.stated_issuer.lock().unwrap() = provider.issuer.clone();
    // Unreachable.
    let e = error(
        Oidc::issuer("http://127.0.0.1:1")
            .audience(RESOURCE)
            .build()
            .await,
    );
    assert!(
        e.contains("identity provider `http://127.0.0.1:1`") && e.contains("unreachable"),
        "{e}"
    );
    // Plain http off loopback, not a URL, a query.
    for issuer in [
        "http://idp.example.com",
        "idp.example.com",
        "https://idp.example.com/?tenant=1",
    ] {
        let e = Oidc::issuer(issuer)
            .audience(RESOURCE)
            .build()
            .await
            .unwrap_err();
        assert!(matches!(e, ConfigError::InvalidUrl { .. }), "{issuer}: {e}");
    }
    // A key set without a usable key.
    provider.set_keys(&[]);
    *provider.state.jwks.lock().unwrap() =
        json!({ "keys": [{ "kty": "oct", "k": "c2VjcmV0", "kid": "hs" }] });
    let e = error(provider.issuer().build().await);
    assert!(e.contains("no key") && e.contains("symmetric key"), "{e}");
    // Two issuers that would both introspect opaque tokens; HMAC algorithms; duplicates.
    let other = Provider::start("/other", &[&key]).await;
    let e = error(
        Oidc::builder()
            .issuer(provider.issuer().introspection("a", "b"))
            .issuer(other.issuer().introspection("a", "b"))
            .build()
            .await,
    );
    assert!(e.contains("only one issuer may introspect"), "{e}");
    let e = error(
        provider
            .issuer()
            .algorithms([JwtAlgorithm::Hs256])
            .build()
            .await,
    );
    assert!(e.contains("public-key"), "{e}");
    let e = error(
        Oidc::builder()
            .issuer(provider.issuer())
            .issuer(provider.issuer())
            .build()
            .await,
    );
    assert!(e.contains("configured twice"), "{e}");
    let e = error(Oidc::builder().build().await);
    assert!(e.contains("at least one issuer"), "{e}");
    let e = error(provider.issuer().introspect_jwts().build().await);
    assert!(e.contains("introspect_jwts needs"), "{e}");
}

#[tokio::test]
async fn rediscovery_moves_only_what_discovery_found() {
    // The provider's own key set lacks the key its tokens are signed with; the configured
    // `jwks_uri` (another server's) has it. Discovery runs anyway (for the introspection
    // endpoint), and again every 100 ms here.
    let signing = TestKey::new("signing");
    let decoy = TestKey::new("decoy");
    let provider = Provider::start("", &[&decoy]).await;
    let keys = Provider::start("/keys", &[&signing]).await;
    let builder = Oidc::builder()
        .issuer(
            provider
                .issuer()
                .jwks_uri(format!("{}/jwks", keys.issuer))
                .introspection("mcp", "mcp-secret"),
        )
        .key_set_lifetime_bounds(Duration::from_millis(100), Duration::from_millis(100));
    let oidc = OidcBuilder {
        rediscover_every: Duration::from_millis(100),
        ..builder
    }
    .build()
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(provider.state.discovery_fetches.load(Ordering::SeqCst) >= 3);
    assert!(
        keys.jwks_fetches() >= 3,
        "the configured key set is refreshed"
    );
    assert_eq!(
        provider.jwks_fetches(),
        0,
        "the discovered one is never used"
    );
    oidc.verify(&signing.sign(&provider.claims("late")), None)
        .await
        .unwrap();
}
