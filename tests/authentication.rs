//! Every refused credential gets the right status, challenge and message — never a 500.

use std::time::Duration;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use mcp_gatekeeper::{Lockout, ProtectedResource};
use serde_json::{Value, json};

use crate::common::*;

fn unsigned(header: Value, claims: Value, signature: &str) -> String {
    format!(
        "{}.{}.{signature}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

fn valid_claims() -> Value {
    json!({ "sub": "mallory", "role": "admin", "iss": ISSUER, "aud": RESOURCE, "iat": now(), "exp": now() + 600 })
}

async fn initialize(server: &Server, cred: Cred) -> Reply {
    let mcp = Mcp::new(&server.url, cred, Version::V2025_06_18);
    mcp.request(
        "initialize",
        json!({ "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": { "name": "t", "version": "0" } }),
    )
    .await
}

fn assert_challenge(reply: &Reply, status: u16, error: Option<&str>, description: &str) {
    assert_eq!(reply.status, status, "{reply:#?}");
    let challenge = reply
        .header("www-authenticate")
        .expect("a WWW-Authenticate challenge");
    assert!(challenge.starts_with("Bearer "), "{challenge}");
    match error {
        Some(code) => {
            assert!(
                challenge.contains(&format!("error=\"{code}\"")),
                "{challenge}"
            );
            assert!(
                challenge.contains(&format!("error_description=\"{description}\"")),
                "{challenge}"
            );
        }
        None => assert!(!challenge.contains("error="), "{challenge}"),
    }
    let body = reply.json_body();
    assert_eq!(body["error"], error.unwrap_or("unauthorized"));
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains(description),
        "{body}"
    );
    assert_eq!(reply.header("cache-control"), Some("no-store"));
}

/// A refused credential on a server that offers no OAuth: `403`, no challenge (MCP clients
/// would start OAuth discovery on a `401` and hide the reason), the reason in the body.
fn assert_refused(reply: &Reply, description: &str) {
    assert_eq!(reply.status, 403, "{reply:#?}");
    assert_eq!(reply.header("www-authenticate"), None, "{reply:#?}");
    let body = reply.json_body();
    assert_eq!(body["error"], "invalid_token");
    assert_eq!(body["error_description"], description, "{body}");
    assert_eq!(reply.header("cache-control"), Some("no-store"));
}

/// The RBAC example as an OAuth protected resource (its tokens then may be replaced through
/// the authorization server, so refusals are RFC 6750 `401`s).
fn rbac_protected(lockout: Lockout) -> mcp_gatekeeper::Gatekeeper<crate::rbac::DataTools> {
    crate::rbac::gatekeeper(rbac_config(false))
        .unwrap()
        .lockout(lockout)
        .protected_resource(
            ProtectedResource::new(RESOURCE)
                .unwrap()
                .authorization_server("https://auth.example.com"),
        )
}

#[tokio::test]
async fn missing_credentials_get_a_plain_bearer_challenge() {
    let server = start_rbac(false).await;
    let reply = initialize(&server, Cred::None).await;
    assert_challenge(&reply, 401, None, "Authentication required");
    server.stop().await;
}

#[tokio::test]
async fn bad_tokens_get_401_invalid_token_or_without_oauth_403() {
    // More bad tokens than the default lockout allows from one address.
    let lenient = Lockout::new(100, Duration::from_secs(60), Duration::from_secs(60));
    let server = start(
        crate::rbac::gatekeeper(rbac_config(false))
            .unwrap()
            .lockout(lenient),
    )
    .await;
    let protected = start(rbac_protected(lenient)).await;
    let mut expired = valid_claims();
    expired["exp"] = json!(now() - 3600);
    expired["iat"] = json!(now() - 7200);
    let mut wrong_issuer = valid_claims();
    wrong_issuer["iss"] = json!("someone-else");
    let mut not_yet = valid_claims();
    not_yet["nbf"] = json!(now() + 3600);
    let mut no_exp = valid_claims();
    no_exp.as_object_mut().unwrap().remove("exp");
    let forged = sign(
        jsonwebtoken::Algorithm::HS256,
        b"not-the-secret-not-the-secret-00",
        &valid_claims(),
    );
    let hs384 = sign(
        jsonwebtoken::Algorithm::HS384,
        SECRET.as_bytes(),
        &valid_claims(),
    );
    let good = jwt_with(valid_claims());
    let tampered = {
        let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
        let mut claims: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[1]).unwrap()).unwrap();
        claims["role"] = json!("admin");
        claims["sub"] = json!("someone-else");
        parts[1] = URL_SAFE_NO_PAD.encode(claims.to_string());
        parts.join(".")
    };
    let cases = [
        ("expired", jwt_with(expired), "Token expired"),
        ("forged signature", forged, "Invalid token"),
        ("tampered claims", tampered, "Invalid token"),
        (
            "alg none",
            unsigned(json!({ "alg": "none", "typ": "JWT" }), valid_claims(), ""),
            "Invalid token",
        ),
        (
            "alg None",
            unsigned(json!({ "alg": "None" }), valid_claims(), "e30"),
            "Invalid token",
        ),
        ("wrong algorithm HS384", hs384, "Invalid token"),
        (
            "RS256 header on an HS256 verifier",
            unsigned(json!({ "alg": "RS256" }), valid_claims(), "c2ln"),
            "Invalid token",
        ),
        ("wrong issuer", jwt_with(wrong_issuer), "Invalid token"),
        ("not yet valid", jwt_with(not_yet), "Invalid token"),
        ("no exp", jwt_with(no_exp), "Invalid token"),
        (
            "garbage JWT",
            "eyJhbGciOi.eyJzdWIi.sig".into(),
            "Invalid token",
        ),
    ];
    for (name, token, description) in cases {
        let reply = initialize(&protected, Cred::Bearer(token.clone())).await;
        assert_eq!(reply.status, 401, "{name}: {reply:#?}");
        assert_challenge(&reply, 401, Some("invalid_token"), description);
        assert!(
            reply
                .header("www-authenticate")
                .unwrap()
                .contains("resource_metadata="),
            "{name}"
        );
        let reply = initialize(&server, Cred::Bearer(token)).await;
        assert_refused(&reply, description);
    }
    server.stop().await;
    protected.stop().await;
}

#[tokio::test]
async fn unknown_api_keys_are_refused_by_either_header() {
    let server = start_rbac(false).await;
    for cred in [
        Cred::ApiKey("no-such-key-1234567890".into()),
        Cred::Bearer("no-such-key-1234567890".into()),
    ] {
        let reply = initialize(&server, cred).await;
        assert_refused(&reply, "Invalid API key");
    }
    server.stop().await;
}

#[tokio::test]
async fn malformed_or_ambiguous_credentials_are_bad_requests() {
    let server = start_rbac(false).await;
    let http = reqwest::Client::new();
    let init = json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": { "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": { "name": "t", "version": "0" } } });
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("empty bearer", vec![("authorization", "Bearer ")]),
        ("no scheme", vec![("authorization", "abc=def")]),
        (
            "two credentials",
            vec![("authorization", "Bearer x"), ("x-api-key", ADMIN_KEY)],
        ),
        (
            "an unsupported scheme and an API key",
            vec![
                ("authorization", "Basic YWRtaW46YWRtaW4="),
                ("x-api-key", ADMIN_KEY),
            ],
        ),
        (
            "two bearer headers",
            vec![("authorization", "Bearer a"), ("authorization", "Bearer b")],
        ),
        (
            "space inside the token",
            vec![("authorization", "Bearer a b")],
        ),
    ];
    for (name, headers) in cases {
        let mut request = http
            .post(&server.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(init.to_string());
        for (k, v) in headers {
            request = request.header(k, v);
        }
        let reply = read_reply(request.send().await.unwrap(), None).await;
        assert_eq!(reply.status, 400, "{name}: {reply:#?}");
        assert!(
            reply
                .header("www-authenticate")
                .unwrap()
                .contains("error=\"invalid_request\""),
            "{name}"
        );
        assert_eq!(reply.json_body()["error"], "invalid_request", "{name}");
    }
    server.stop().await;
}

/// RFC 6750 §3.1: a request in another scheme carries no authentication information it can use:
/// `401` with the plain challenge (no error code), not `400`.
#[tokio::test]
async fn other_authorization_schemes_count_as_no_credential() {
    let server = start_rbac(false).await;
    let protected = start(rbac_protected(Lockout::default())).await;
    let http = reqwest::Client::new();
    let init = json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": { "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": { "name": "t", "version": "0" } } });
    for server in [&server, &protected] {
        for value in [
            "Basic YWRtaW46YWRtaW4=",
            "Digest username=\"admin\", realm=\"mcp\", nonce=\"x\", uri=\"/mcp\", response=\"y\"",
        ] {
            let response = http
                .post(&server.url)
                .header("content-type", "application/json")
                .header("accept", "application/json, text/event-stream")
                .header("authorization", value)
                .body(init.to_string())
                .send()
                .await
                .unwrap();
            let reply = read_reply(response, None).await;
            assert_challenge(&reply, 401, None, "Unsupported authorization scheme");
            let expected = initialize(server, Cred::None).await;
            assert_eq!(
                reply.header("www-authenticate"),
                expected.header("www-authenticate"),
                "the challenge of a request without a credential"
            );
        }
    }
    server.stop().await;
    protected.stop().await;
}

/// Without OAuth a `401` would only send clients into OAuth discovery, so the reason is a
/// `400`; with OAuth, MCP wants a `401` so that clients re-authorize.
#[tokio::test]
async fn credentials_in_the_query_string_are_refused_even_when_valid() {
    let server = start_rbac(false).await;
    let protected = start(rbac_protected(Lockout::default())).await;
    let http = reqwest::Client::new();
    for (server, status) in [(&server, 400), (&protected, 401)] {
        for query in [
            format!("access_token={}", jwt("q", "admin")),
            format!("api_key={ADMIN_KEY}"),
        ] {
            let response = http
                .post(format!("{}?{query}", server.url))
                .header("content-type", "application/json")
                .header("accept", "application/json, text/event-stream")
                .header("x-api-key", ADMIN_KEY)
                .body(json!({ "jsonrpc": "2.0", "id": 1, "method": "ping" }).to_string())
                .send()
                .await
                .unwrap();
            let reply = read_reply(response, None).await;
            assert_eq!(reply.status, status, "{query}: {reply:#?}");
            assert!(
                reply.json_body()["error_description"]
                    .as_str()
                    .unwrap()
                    .contains("query string")
            );
        }
    }
    server.stop().await;
    protected.stop().await;
}

#[tokio::test]
async fn every_http_method_is_authenticated() {
    let server = start_rbac(false).await;
    let http = reqwest::Client::new();
    let admin = Mcp::connect(
        &server.url,
        Cred::ApiKey(ADMIN_KEY.into()),
        Version::V2025_06_18,
    )
    .await;
    let session = admin.session.clone().expect("a session id");
    for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
        let response = http
            .request(method.clone(), &server.url)
            .header("accept", "text/event-stream")
            .header("mcp-session-id", &session)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{method}");
    }
    server.stop().await;
}

#[tokio::test]
async fn an_expired_api_key_is_refused() {
    use mcp_gatekeeper::{ApiKey, ApiKeys, Gatekeeper};
    let keys = ApiKeys::new()
        .with_key(ApiKey::new("old", "expired-key-0123456789").expires_at(std::time::UNIX_EPOCH))
        .with_key(ApiKey::new("new", "current-key-0123456789"));
    let server = start(Gatekeeper::new(crate::hello::Hello).authenticate(keys)).await;
    let reply = initialize(&server, Cred::ApiKey("expired-key-0123456789".into())).await;
    assert_refused(&reply, "API key expired");
    let reply = initialize(&server, Cred::ApiKey("current-key-0123456789".into())).await;
    assert_eq!(reply.status, 200);
    server.stop().await;
}

#[tokio::test]
async fn a_server_without_authenticators_refuses_everything() {
    let server = start(mcp_gatekeeper::Gatekeeper::new(crate::hello::Hello)).await;
    assert_eq!(initialize(&server, Cred::None).await.status, 401);
    assert_eq!(
        initialize(&server, Cred::ApiKey("anything-at-all-123".into()))
            .await
            .status,
        403
    );
    server.stop().await;
}

#[tokio::test]
async fn anonymous_callers_reach_public_tools_only_when_allowed() {
    let server =
        start(mcp_gatekeeper::Gatekeeper::new(crate::hello::Hello).allow_anonymous()).await;
    let mcp = Mcp::connect(&server.url, Cred::None, Version::V2025_11_25).await;
    assert_eq!(mcp.list().await, ["hello"]);
    assert_eq!(
        mcp.call("hello", json!({ "name": "anon" })).await.text(),
        "Hello, anon!"
    );
    // A credential that is presented must still be valid.
    assert_eq!(
        initialize(&server, Cred::Bearer("bogus-token-123456789".into()))
            .await
            .status,
        403
    );
    server.stop().await;
}

#[tokio::test]
async fn guessing_credentials_is_throttled_but_never_refuses_a_valid_one() {
    let policy = Lockout::new(5, Duration::from_secs(60), Duration::from_secs(2));
    let server = start(
        crate::rbac::gatekeeper(rbac_config(false))
            .unwrap()
            .lockout(policy),
    )
    .await;
    for i in 0..4 {
        let reply = initialize(&server, Cred::ApiKey(format!("guess-{i:020}"))).await;
        assert_eq!(reply.status, 403, "guess {i}");
    }
    // The fifth failure reaches the limit: failures are now answered 429, with a retry time
    // and the same body (no challenge, as the 403: the server offers no OAuth).
    for i in 4..8 {
        let reply = initialize(&server, Cred::ApiKey(format!("guess-{i:020}"))).await;
        assert_eq!(reply.status, 429, "guess {i}: {reply:#?}");
        let retry: u64 = reply.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=2).contains(&retry), "{retry}");
        assert_eq!(reply.json_body()["error"], "invalid_token");
        assert_eq!(reply.json_body()["error_description"], "Invalid API key");
        assert_eq!(reply.header("www-authenticate"), None);
    }
    // The right key from the same address is served all along.
    assert_eq!(
        initialize(&server, Cred::ApiKey(ADMIN_KEY.into()))
            .await
            .status,
        200
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let reply = initialize(&server, Cred::ApiKey("guess-after-0000000000".into())).await;
    assert_eq!(reply.status, 403, "the throttle ended");
    server.stop().await;
}

#[tokio::test]
async fn missing_credentials_do_not_count_as_guesses() {
    let policy = Lockout::new(3, Duration::from_secs(60), Duration::from_secs(60));
    let server = start(
        crate::rbac::gatekeeper(rbac_config(false))
            .unwrap()
            .lockout(policy),
    )
    .await;
    for _ in 0..10 {
        assert_eq!(initialize(&server, Cred::None).await.status, 401);
    }
    assert_eq!(
        initialize(&server, Cred::ApiKey(ADMIN_KEY.into()))
            .await
            .status,
        200
    );
    server.stop().await;
}

#[tokio::test]
async fn a_session_serves_only_the_caller_that_opened_it() {
    let server = start_rbac(false).await;
    let admin = Mcp::connect(
        &server.url,
        Cred::Bearer(jwt("owner", "admin")),
        Version::V2025_11_25,
    )
    .await;
    let session = admin.session.clone().unwrap();
    // Another valid caller presenting the admin's session id is not let into it.
    let mut intruder = Mcp::new(
        &server.url,
        Cred::ApiKey(VIEWER_KEY.into()),
        Version::V2025_11_25,
    );
    intruder.session = Some(session.clone());
    let reply = intruder.call("read-data", json!({ "key": "k" })).await;
    assert_eq!(reply.status, 404, "{reply:#?}");
    // Even with a token of the same role but another subject.
    let mut other_admin = Mcp::new(
        &server.url,
        Cred::Bearer(jwt("someone", "admin")),
        Version::V2025_11_25,
    );
    other_admin.session = Some(session.clone());
    assert_eq!(
        other_admin
            .call("delete-data", json!({ "key": "k" }))
            .await
            .status,
        404
    );
    // The owner, with a fresh token for the same subject, keeps working.
    let mut owner = Mcp::new(
        &server.url,
        Cred::Bearer(jwt("owner", "admin")),
        Version::V2025_11_25,
    );
    owner.session = Some(session);
    assert!(
        owner
            .call("read-data", json!({ "key": "k" }))
            .await
            .result()
            .is_object()
    );
    server.stop().await;
}

#[tokio::test]
async fn a_jwt_verifier_must_check_the_audience() {
    use mcp_gatekeeper::Jwt;
    let without = crate::rbac::gatekeeper(rbac_config(true))
        .unwrap()
        .authenticate(Jwt::hs256(SECRET).unwrap().issuer(ISSUER))
        .into_router()
        .unwrap_err()
        .to_string();
    assert!(
        without.contains(".audience(") && without.contains("accept_tokens_for_any_audience"),
        "{without}"
    );
    assert!(
        crate::rbac::gatekeeper(rbac_config(true))
            .unwrap()
            .authenticate(
                Jwt::hs256(SECRET)
                    .unwrap()
                    .issuer(ISSUER)
                    .accept_tokens_for_any_audience()
            )
            .into_router()
            .is_ok()
    );
    // A token issued for another service is refused; one for this server is served.
    let server = start_rbac(true).await;
    let claims = |aud: Value| {
        jwt_with(
            json!({ "sub": "alice", "role": "viewer", "iss": ISSUER, "aud": aud, "exp": now() + 60 }),
        )
    };
    for (aud, status) in [
        (json!("https://other.example/api"), 403),
        (json!(["https://other.example/api", RESOURCE]), 200),
        (json!(RESOURCE), 200),
        (Value::Null, 403),
    ] {
        let token = if aud.is_null() {
            jwt_with(json!({ "sub": "alice", "role": "viewer", "iss": ISSUER, "exp": now() + 60 }))
        } else {
            claims(aud.clone())
        };
        assert_eq!(
            initialize(&server, Cred::Bearer(token)).await.status,
            status,
            "aud {aud}"
        );
    }
    server.stop().await;
}
