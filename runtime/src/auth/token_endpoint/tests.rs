//! Tests of the parent module.

use super::*;
use axum::body::Body;
use base64::{Engine as _, engine::general_purpose::STANDARD};
use serde_json::{Value, json};
use tower::ServiceExt as _;

const SECRET: &str = "an-hs256-secret-of-at-least-32-bytes!";

fn endpoint() -> TokenEndpoint {
    TokenEndpoint::hs256(SECRET)
        .unwrap()
        .client(
            TokenClient::new("reporting", "s3cret+/=0123456789")
                .role("analyst")
                .scopes(["reports:read", "reports:export"]),
        )
        .client(TokenClient::new("bare", "bare-secret-0123456789"))
}

fn json_request(body: &Value) -> http::Request<Body> {
    http::Request::post(TOKEN_PATH)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

fn form_request(body: &'static str) -> http::Request<Body> {
    http::Request::post(TOKEN_PATH)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body))
        .unwrap()
}

fn basic_request(user_pass: &str) -> http::Request<Body> {
    http::Request::post(TOKEN_PATH)
        .header(
            header::AUTHORIZATION,
            format!("Basic {}", STANDARD.encode(user_pass)),
        )
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from("grant_type=client_credentials"))
        .unwrap()
}

async fn send(request: http::Request<Body>) -> (StatusCode, HeaderMap, Value) {
    send_to(endpoint().router().unwrap(), request).await
}

async fn send_to(router: Router, request: http::Request<Body>) -> (StatusCode, HeaderMap, Value) {
    let response = router.oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (parts.status, parts.headers, json)
}

fn assert_no_store(headers: &HeaderMap) {
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    assert_eq!(headers[header::PRAGMA], "no-cache");
}

fn assert_issued(status: StatusCode, headers: &HeaderMap, body: &Value) -> String {
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_no_store(headers);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    body["access_token"].as_str().unwrap().to_owned()
}

fn assert_error(status: StatusCode, body: &Value, expected: StatusCode, error: &str) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(body["error"], error, "{body}");
    assert!(body["error_description"].is_string());
}

#[tokio::test]
async fn json_credentials_get_a_token_the_verifier_accepts() {
    let (status, headers, body) = send(json_request(
        &json!({"client_id": "reporting", "client_secret": "s3cret+/=0123456789"}),
    ))
    .await;
    let token = assert_issued(status, &headers, &body);
    let principal = endpoint().verifier().unwrap().verify(&token).unwrap();
    assert_eq!(principal.subject(), "reporting");
    assert_eq!(principal.client_id(), Some("reporting"));
    assert_eq!(principal.roles().collect::<Vec<_>>(), ["analyst"]);
    assert_eq!(
        principal.scopes().collect::<Vec<_>>(),
        ["reports:export", "reports:read"]
    );
    assert_eq!(principal.credential_id().map(str::len), Some(32));
}

#[tokio::test]
async fn issued_claims_are_complete() {
    let (status, headers, body) = send(json_request(
        &json!({"client_id": "reporting", "client_secret": "s3cret+/=0123456789"}),
    ))
    .await;
    let token = assert_issued(status, &headers, &body);
    let payload = token.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["sub"], "reporting");
    assert_eq!(claims["client_id"], "reporting");
    assert_eq!(claims["role"], "analyst");
    assert_eq!(
        claims["permissions"],
        json!(["reports:read", "reports:export"])
    );
    assert_eq!(claims["scope"], "reports:read reports:export");
    assert_eq!(claims["iss"], "mcp-auth-server");
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        3600
    );
    assert!(
        claims["jti"]
            .as_str()
            .unwrap()
            .bytes()
            .all(|b| b.is_ascii_hexdigit())
    );
}

#[tokio::test]
async fn form_credentials_get_a_token() {
    let (status, headers, body) = send(form_request(
        "grant_type=client_credentials&client_id=reporting&client_secret=s3cret%2B%2F%3D0123456789",
    ))
    .await;
    assert_issued(status, &headers, &body);
}

#[tokio::test]
async fn basic_credentials_get_a_token_encoded_or_not() {
    for user_pass in [
        "reporting:s3cret%2B%2F%3D0123456789",
        "reporting:s3cret+/=0123456789",
    ] {
        let (status, headers, body) = send(basic_request(user_pass)).await;
        assert_issued(status, &headers, &body);
    }
    let request = http::Request::post(TOKEN_PATH)
        .header(
            header::AUTHORIZATION,
            format!("Basic {}", STANDARD.encode("bare:bare-secret-0123456789")),
        )
        .body(Body::empty())
        .unwrap();
    let (status, headers, body) = send(request).await;
    let token = assert_issued(status, &headers, &body);
    let principal = endpoint().verifier().unwrap().verify(&token).unwrap();
    assert_eq!(principal.roles().len(), 0);
    assert_eq!(principal.scopes().len(), 0);
}

#[tokio::test]
async fn wrong_secret_and_unknown_client_look_the_same() {
    let wrong = send(json_request(
        &json!({"client_id": "reporting", "client_secret": "nope"}),
    ))
    .await;
    let unknown = send(json_request(
        &json!({"client_id": "ghost", "client_secret": "nope"}),
    ))
    .await;
    for (status, headers, body) in [&wrong, &unknown] {
        assert_error(*status, body, StatusCode::UNAUTHORIZED, "invalid_client");
        assert_eq!(body["error_description"], "Invalid client credentials");
        assert!(headers.get(header::WWW_AUTHENTICATE).is_none());
        assert_no_store(headers);
    }
    assert_eq!(wrong.2, unknown.2);
}

#[tokio::test]
async fn failed_basic_authentication_is_challenged() {
    for header_value in [
        format!("Basic {}", STANDARD.encode("reporting:wrong")),
        format!("Basic {}", STANDARD.encode("no-colon")),
        "Basic !!!".to_owned(),
        "Bearer abc".to_owned(),
    ] {
        let request = http::Request::post(TOKEN_PATH)
            .header(header::AUTHORIZATION, header_value)
            .body(Body::empty())
            .unwrap();
        let (status, headers, body) = send(request).await;
        assert_error(status, &body, StatusCode::UNAUTHORIZED, "invalid_client");
        assert_eq!(headers[header::WWW_AUTHENTICATE], BASIC_CHALLENGE);
    }
}

#[tokio::test]
async fn empty_secrets_never_authenticate() {
    let request = json_request(&json!({"client_id": "reporting", "client_secret": ""}));
    let response = endpoint().router().unwrap().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let request = http::Request::post(TOKEN_PATH)
        .header(
            header::AUTHORIZATION,
            format!("Basic {}", STANDARD.encode("reporting:")),
        )
        .body(Body::empty())
        .unwrap();
    let response = endpoint().router().unwrap().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[test]
fn short_secrets_are_refused_when_mounted() {
    for secret in ["", "ab", "fifteen-chars-x"] {
        let ep = TokenEndpoint::hs256(SECRET)
            .unwrap()
            .client(TokenClient::new("x", secret));
        let error = ep.router().unwrap_err().to_string();
        assert!(error.contains("shorter than 16"), "{error}");
        assert!(!error.contains(secret) || secret.is_empty(), "{error}");
    }
    let ok = TokenEndpoint::hs256(SECRET)
        .unwrap()
        .client(TokenClient::new("x", "sixteen-chars-xx"));
    assert!(ok.router().is_ok());
    let error = TokenEndpoint::parse_clients("a:ab:viewer")
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("entry 1") && error.contains("shorter"),
        "{error}"
    );
}

#[tokio::test]
async fn missing_fields_are_invalid_requests() {
    for body in [
        json!({"client_id": "reporting"}),
        json!({"client_secret": "s3cret+/=0123456789"}),
        json!({"client_id": "", "client_secret": "s3cret+/=0123456789"}),
        json!({}),
    ] {
        let (status, headers, body) = send(json_request(&body)).await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_request");
        assert_no_store(&headers);
    }
    let (status, _, body) = send(form_request("grant_type=client_credentials")).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_request");
}

#[tokio::test]
async fn malformed_bodies_are_invalid_requests() {
    for (content_type, body) in [
        ("application/json", "{not json"),
        (
            "application/json",
            r#"{"client_id": 1, "client_secret": "x"}"#,
        ),
        ("application/json", r#"["client_id"]"#),
        (
            "application/json",
            r#"{"client_id":"a","client_id":"b","client_secret":"x"}"#,
        ),
        (
            "application/x-www-form-urlencoded",
            "client_id=a&client_id=b&client_secret=x",
        ),
        ("application/json", ""),
    ] {
        let request = http::Request::post(TOKEN_PATH)
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(body))
            .unwrap();
        let (status, _, json) = send(request).await;
        assert_error(status, &json, StatusCode::BAD_REQUEST, "invalid_request");
    }
}

#[tokio::test]
async fn unsupported_content_types_are_invalid_requests() {
    for content_type in [
        Some("text/plain"),
        Some("multipart/form-data; boundary=x"),
        None,
    ] {
        let mut request = http::Request::post(TOKEN_PATH);
        if let Some(content_type) = content_type {
            request = request.header(header::CONTENT_TYPE, content_type);
        }
        let request = request
            .body(Body::from(
                r#"{"client_id":"reporting","client_secret":"s3cret+/=0123456789"}"#,
            ))
            .unwrap();
        let (status, headers, body) = send(request).await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_request");
        assert_no_store(&headers);
    }
}

#[tokio::test]
async fn other_grant_types_are_unsupported() {
    let (status, headers, body) = send(form_request(
        "grant_type=password&client_id=reporting&client_secret=s3cret%2B%2F%3D0123456789",
    ))
    .await;
    assert_error(
        status,
        &body,
        StatusCode::BAD_REQUEST,
        "unsupported_grant_type",
    );
    assert_no_store(&headers);
    let (status, _, body) = send(json_request(&json!({
        "grant_type": "authorization_code", "client_id": "reporting", "client_secret": "s3cret+/=0123456789"
    })))
    .await;
    assert_error(
        status,
        &body,
        StatusCode::BAD_REQUEST,
        "unsupported_grant_type",
    );
}

#[tokio::test]
async fn two_authentication_methods_are_refused() {
    let request = http::Request::post(TOKEN_PATH)
        .header(
            header::AUTHORIZATION,
            format!("Basic {}", STANDARD.encode("reporting:s3cret+/=0123456789")),
        )
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            r#"{"client_id":"reporting","client_secret":"s3cret+/=0123456789"}"#,
        ))
        .unwrap();
    let (status, _, body) = send(request).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_request");
}

#[tokio::test]
async fn other_methods_still_get_no_store() {
    let request = http::Request::get(TOKEN_PATH).body(Body::empty()).unwrap();
    let (status, headers, _) = send(request).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_no_store(&headers);
}

#[tokio::test]
async fn custom_issuer_and_lifetime_are_used() {
    let ep = endpoint()
        .issuer("https://tokens.example")
        .lifetime(Duration::from_secs(60));
    let verifier = ep.verifier().unwrap();
    let request =
        json_request(&json!({"client_id": "reporting", "client_secret": "s3cret+/=0123456789"}));
    let response = ep.router().unwrap().oneshot(request).await.unwrap();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(body["expires_in"], 60);
    let token = body["access_token"].as_str().unwrap();
    assert!(verifier.verify(token).is_ok());
    // A verifier expecting the default issuer refuses it.
    assert!(endpoint().verifier().unwrap().verify(token).is_err());
}

#[test]
fn client_lists_parse() {
    let clients = TokenEndpoint::parse_clients(
        " reporting:s3cret-0123456789ab:analyst:reports:read  reports:export ,\n ops:0ther-secret-456789:admin, ",
    )
    .unwrap();
    assert_eq!(clients.len(), 2);
    assert_eq!(clients[0].id(), "reporting");
    assert_eq!(clients[0].role.as_deref(), Some("analyst"));
    assert_eq!(clients[0].scopes, ["reports:read", "reports:export"]);
    assert_eq!(
        clients[0].secret_digest,
        <[u8; 32]>::from(Sha256::digest(b"s3cret-0123456789ab"))
    );
    assert_eq!(clients[1].id(), "ops");
    assert!(clients[1].scopes.is_empty());
}

#[test]
fn client_list_errors_name_the_entry_not_the_secret() {
    for (spec, position) in [
        ("a:sekrit-one-0123456:r,b:sekrit-two-0123456", "entry 2"),
        ("a:sekrit-one-0123456:r,:sekrit-two-0123456:r", "entry 2"),
        ("a::r", "entry 1"),
        ("a:sekrit-one-0123456:", "entry 1"),
        ("a:sekrit-one-0123456:r,a:sekrit-two-0123456:r", "entry 2"),
        ("a:sekrit-one-0123456:r,b:sekrit:r", "entry 2"),
    ] {
        let message = TokenEndpoint::parse_clients(spec).unwrap_err().to_string();
        assert!(message.contains(position), "{message}");
        assert!(!message.contains("sekrit"), "{message}");
    }
    assert!(TokenEndpoint::parse_clients(" , ").is_err());
}

#[test]
fn configuration_errors() {
    assert!(TokenEndpoint::hs256("too-short").is_err());
    let var = "MCP_GATEKEEPER_TEST_UNSET_VAR_19c2";
    assert!(matches!(
        TokenEndpoint::hs256_from_env(var),
        Err(ConfigError::MissingEnv(_))
    ));
    assert!(matches!(
        TokenEndpoint::clients_from_env(var),
        Err(ConfigError::MissingEnv(_))
    ));
}

#[test]
fn debug_hides_secrets() {
    let shown = format!("{:?}", endpoint());
    assert!(!shown.contains(SECRET));
    assert!(!shown.contains("s3cret"));
    assert!(shown.contains("reporting"));
}

#[tokio::test]
async fn basic_credentials_follow_the_shared_parser() {
    // The scheme in any case, and a client id that needed form-encoding.
    for header_value in [
        format!("BASIC {}", STANDARD.encode("bare:bare-secret-0123456789")),
        format!("basic {}", STANDARD.encode("b%61re:bare-secret-0123456789")),
    ] {
        let request = http::Request::post(TOKEN_PATH)
            .header(header::AUTHORIZATION, header_value)
            .body(Body::empty())
            .unwrap();
        let (status, headers, body) = send(request).await;
        assert_issued(status, &headers, &body);
    }
    // No client id at all is malformed, with the Basic challenge.
    let request = basic_request(":bare-secret-0123456789");
    let (status, headers, body) = send(request).await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "invalid_client");
    assert_eq!(headers[header::WWW_AUTHENTICATE], BASIC_CHALLENGE);
    // Two Authorization headers are one too many.
    let value = format!("Basic {}", STANDARD.encode("bare:bare-secret-0123456789"));
    let request = http::Request::post(TOKEN_PATH)
        .header(header::AUTHORIZATION, &value)
        .header(header::AUTHORIZATION, &value)
        .body(Body::empty())
        .unwrap();
    let (status, _, body) = send(request).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_request");
}

/// What `jwt` decides about `token`, as the HTTP layer asks it.
async fn verdict(jwt: &Jwt, token: &str) -> crate::auth::Verdict {
    use crate::auth::{AuthRequest, Authenticator, Credential};
    let (parts, ()) = http::Request::new(()).into_parts();
    let request = AuthRequest {
        credential: Some(Credential::Bearer(token)),
        parts: &parts,
    };
    jwt.authenticate(&request).verdict().await
}

fn revoke_request(client: &str, secret: &str, token: &str) -> http::Request<Body> {
    http::Request::post(REVOKE_PATH)
        .header(
            header::AUTHORIZATION,
            format!("Basic {}", STANDARD.encode(format!("{client}:{secret}"))),
        )
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!("token={token}")))
        .unwrap()
}

#[tokio::test]
async fn a_client_revokes_its_token_and_the_verifier_refuses_it() {
    use crate::auth::Verdict;
    let endpoint = endpoint();
    let jwt = endpoint.verifier().unwrap();
    let mine = endpoint.token_for("reporting").unwrap();
    let kept = endpoint.token_for("reporting").unwrap();
    let theirs = endpoint.token_for("bare").unwrap();
    let router = endpoint.router().unwrap();
    let send = |request: http::Request<Body>| {
        let router = router.clone();
        async move { router.oneshot(request).await.unwrap() }
    };
    assert!(matches!(verdict(&jwt, &mine).await, Verdict::Accept(_)));

    let answer = send(revoke_request("reporting", "s3cret+/=0123456789", &mine)).await;
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(answer.headers()[header::CACHE_CONTROL], "no-store");
    match verdict(&jwt, &mine).await {
        Verdict::Reject(error) => {
            assert_eq!(error.kind(), crate::auth::AuthErrorKind::InvalidToken);
            assert!(error.credential_id().is_some(), "names the jti");
        }
        other => panic!("a revoked token: {other:?}"),
    }
    // The client's other token, and other clients' tokens, are untouched.
    assert!(matches!(verdict(&jwt, &kept).await, Verdict::Accept(_)));
    // A client cannot revoke another's token: `200` all the same, nothing revoked.
    let answer = send(revoke_request("reporting", "s3cret+/=0123456789", &theirs)).await;
    assert_eq!(answer.status(), StatusCode::OK);
    assert!(matches!(verdict(&jwt, &theirs).await, Verdict::Accept(_)));
    // Garbage, or a token signed with another secret: `200`, nothing to revoke.
    let forged = TokenEndpoint::hs256("another-hs256-secret-of-32-bytes-or-more")
        .unwrap()
        .client(TokenClient::new("reporting", "s3cret+/=0123456789"))
        .token_for("reporting")
        .unwrap();
    for token in ["not-a-token", forged.as_str()] {
        let answer = send(revoke_request("reporting", "s3cret+/=0123456789", token)).await;
        assert_eq!(answer.status(), StatusCode::OK);
    }
    assert!(matches!(verdict(&jwt, &kept).await, Verdict::Accept(_)));
}

#[tokio::test]
async fn revocation_requests_are_authenticated_and_checked() {
    let endpoint = endpoint();
    let token = endpoint.token_for("reporting").unwrap();
    let router = endpoint.router().unwrap();
    let call = |request: http::Request<Body>| {
        let router = router.clone();
        async move {
            let response = router.oneshot(request).await.unwrap();
            let (parts, body) = response.into_parts();
            let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
            (
                parts.status,
                parts.headers,
                serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null),
            )
        }
    };
    let (status, headers, body) = call(revoke_request(
        "reporting",
        "wrong-secret-0123456789",
        &token,
    ))
    .await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "invalid_client");
    assert_eq!(headers[header::WWW_AUTHENTICATE], BASIC_CHALLENGE);
    let (status, _, body) = call(revoke_request("nobody", "s3cret+/=0123456789", &token)).await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "invalid_client");
    let no_token = http::Request::post(REVOKE_PATH)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(
            "client_id=reporting&client_secret=s3cret%2B%2F%3D0123456789",
        ))
        .unwrap();
    let (status, _, body) = call(no_token).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_request");
    let json = http::Request::post(REVOKE_PATH)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            json!({"client_id": "reporting", "client_secret": "s3cret+/=0123456789", "token": token})
                .to_string(),
        ))
        .unwrap();
    let (status, _, _) = call(json).await;
    assert_eq!(status, StatusCode::OK);
}

/// Secrets of an endpoint by kid: the one being retired and its successor.
const PREVIOUS_SECRET: &str = "the-previous-hs256-secret-of-32-bytes-or-more";
const CURRENT_SECRET: &str = "the-current-hs256-secret-of-32-bytes-or-more!";

/// An endpoint holding `keys`, signing with `current`'s, with one client.
fn keyed_endpoint(current: &str, keys: &[(&str, &str)]) -> TokenEndpoint {
    TokenEndpoint::hs256_keys(current, keys.iter().copied())
        .unwrap()
        .audience("https://mcp.example.com/mcp")
        .client(TokenClient::new("reporting", "s3cret+/=0123456789").role("analyst"))
}

fn kid_of(token: &str) -> Option<String> {
    jsonwebtoken::decode_header(token).unwrap().kid
}

#[tokio::test]
async fn the_endpoint_signs_with_the_current_kid_and_accepts_the_previous_one_during_overlap() {
    use crate::auth::Verdict;
    // Before the rotation: one kid.
    let previous = keyed_endpoint("k1", &[("k1", PREVIOUS_SECRET)])
        .token_for("reporting")
        .unwrap();
    assert_eq!(kid_of(&previous).as_deref(), Some("k1"));

    // Overlap: both secrets, the new one current.
    let overlap = keyed_endpoint("k2", &[("k1", PREVIOUS_SECRET), ("k2", CURRENT_SECRET)]);
    let jwt = overlap.verifier().unwrap();
    let (status, headers, body) = send_to(
        overlap.router().unwrap(),
        json_request(&json!({"client_id": "reporting", "client_secret": "s3cret+/=0123456789"})),
    )
    .await;
    let current = assert_issued(status, &headers, &body);
    assert_eq!(kid_of(&current).as_deref(), Some("k2"));
    for token in [&previous, &current] {
        assert!(matches!(verdict(&jwt, token).await, Verdict::Accept(_)));
    }
    // Signed with the current kid's secret, not merely labelled with its kid.
    let current_only = Jwt::hs256_keys([("k2", CURRENT_SECRET)])
        .unwrap()
        .audience("https://mcp.example.com/mcp");
    assert!(current_only.verify(&current).is_ok());

    // After the longest token lifetime: the previous kid removed.
    let after = keyed_endpoint("k2", &[("k2", CURRENT_SECRET)])
        .verifier()
        .unwrap();
    assert!(matches!(
        verdict(&after, &previous).await,
        Verdict::Reject(_)
    ));
    assert!(matches!(
        verdict(&after, &current).await,
        Verdict::Accept(_)
    ));
    // A token of the single-secret endpoint names no kid: the keyed verifier refuses it.
    let unnamed = endpoint().token_for("reporting").unwrap();
    assert_eq!(kid_of(&unnamed), None);
    assert!(matches!(
        verdict(&after, &unnamed).await,
        Verdict::Reject(_)
    ));
}

#[tokio::test]
async fn a_token_of_the_previous_kid_is_revoked_during_overlap() {
    use crate::auth::Verdict;
    let previous = keyed_endpoint("k1", &[("k1", PREVIOUS_SECRET)])
        .token_for("reporting")
        .unwrap();
    let overlap = keyed_endpoint("k2", &[("k1", PREVIOUS_SECRET), ("k2", CURRENT_SECRET)]);
    let jwt = overlap.verifier().unwrap();
    let current = overlap.token_for("reporting").unwrap();
    let router = overlap.router().unwrap();
    assert!(matches!(verdict(&jwt, &previous).await, Verdict::Accept(_)));
    let answer = router
        .clone()
        .oneshot(revoke_request(
            "reporting",
            "s3cret+/=0123456789",
            &previous,
        ))
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    assert!(matches!(verdict(&jwt, &previous).await, Verdict::Reject(_)));
    assert!(matches!(verdict(&jwt, &current).await, Verdict::Accept(_)));
    // A token naming a kid the endpoint does not hold is nothing to revoke: `200`, as ever.
    let foreign = keyed_endpoint("k3", &[("k3", CURRENT_SECRET)])
        .token_for("reporting")
        .unwrap();
    let answer = router
        .oneshot(revoke_request("reporting", "s3cret+/=0123456789", &foreign))
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    assert!(matches!(verdict(&jwt, &current).await, Verdict::Accept(_)));
}

#[test]
fn keyed_endpoint_configuration_errors_never_show_a_secret() {
    let refusals = [
        TokenEndpoint::hs256_keys("k3", [("k1", PREVIOUS_SECRET), ("k2", CURRENT_SECRET)]),
        TokenEndpoint::hs256_keys("k1", [("k1", PREVIOUS_SECRET), ("k1", CURRENT_SECRET)]),
        TokenEndpoint::hs256_keys("k1", [("k1", "short-sekrit-value")]),
        TokenEndpoint::hs256_keys("", [("", CURRENT_SECRET)]),
        TokenEndpoint::hs256_keys("k1", Vec::<(&str, &str)>::new()),
    ];
    let expected = [
        "the current kid \"k3\" is not one of the keys",
        "HMAC key 2 (kid \"k1\"): has the same kid as HMAC key 1",
        "HMAC key 1 (kid \"k1\"): the HS256 secret is too short",
        "the kid must be non-empty visible ASCII",
        "no HS256 key given",
    ];
    for (refusal, expected) in refusals.into_iter().zip(expected) {
        let message = refusal.unwrap_err().to_string();
        assert!(message.contains(expected), "{message}");
        for secret in [PREVIOUS_SECRET, CURRENT_SECRET, "short-sekrit-value"] {
            assert!(!message.contains(secret), "{message}");
        }
    }
}

#[test]
fn keyed_endpoints_from_the_environment() {
    let value = format!("k1:{PREVIOUS_SECRET}, k2:{CURRENT_SECRET}");
    let endpoint = TokenEndpoint::hs256_keys_in("JWT_KEYS", &value, "k2")
        .unwrap()
        .client(TokenClient::new("bare", "bare-secret-0123456789"));
    assert_eq!(
        kid_of(&endpoint.token_for("bare").unwrap()).as_deref(),
        Some("k2")
    );
    let shown = format!("{endpoint:?}");
    assert!(
        shown.contains(r#"kids: ["k1", "k2"], current_kid: "k2""#),
        "{shown}"
    );
    assert!(!shown.contains(PREVIOUS_SECRET) && !shown.contains(CURRENT_SECRET));

    let refusal = |value: &str, current: &str| {
        TokenEndpoint::hs256_keys_in("JWT_KEYS", value, current)
            .unwrap_err()
            .to_string()
    };
    let message = refusal(&format!("k1:{PREVIOUS_SECRET}"), "k2");
    assert!(
        message.starts_with("environment variable `JWT_KEYS`: "),
        "{message}"
    );
    assert!(message.contains("current kid \"k2\""), "{message}");
    let message = refusal(&format!("k1:{PREVIOUS_SECRET},k2:short-sekrit-value"), "k1");
    assert!(
        message.contains("key entry 2: the HS256 secret is too short"),
        "{message}"
    );
    assert!(!message.contains("sekrit") && !message.contains(PREVIOUS_SECRET));
    let message = refusal(&format!("k1:{PREVIOUS_SECRET},k1:{CURRENT_SECRET}"), "k1");
    assert!(
        message.contains("key entry 2: has the same kid as key entry 1"),
        "{message}"
    );
    assert!(matches!(
        TokenEndpoint::hs256_keys_from_env("MCP_GATEKEEPER_TEST_UNSET_VAR_5b07", "k1"),
        Err(ConfigError::MissingEnv(_))
    ));
}
