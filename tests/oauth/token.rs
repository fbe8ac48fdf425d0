//! The token endpoint (client credentials, code exchange with PKCE, refresh rotation) and the
//! revocation endpoint, over real HTTP against the harness: every grant, and every refusal.

use std::time::Duration;

use mcp_gatekeeper::{
    AuditLog, Lockout,
    store::{AuthCodeRecord, ClientRecord, UserRecord, hash_secret},
};
use serde_json::json;

use super::*;
use crate::common::{Cred, Mcp, Version, now};

/// The redirect URI of the codes the tests insert (a loopback port of `APP_REDIRECT`).
const CALLBACK: &str = "http://127.0.0.1:4567/callback";

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A random code or other secret.
fn random() -> String {
    pkce().0
}

/// An authorization code record for [`APP_ID`] and [`USER`], as the authorization page would
/// store it; tests adjust fields before [`put_code`].
fn code_record(h: &OAuthHarness, code: &str, challenge: &str, scope: &str) -> AuthCodeRecord {
    AuthCodeRecord {
        code_hash: hash_secret(code),
        client_id: APP_ID.into(),
        subject: USER.into(),
        redirect_uri: CALLBACK.into(),
        code_challenge: challenge.into(),
        scope: scope.into(),
        resource: Some(h.url.clone()),
        family_id: random(),
        expires_at: now() as i64 + 300,
    }
}

async fn put_code(h: &OAuthHarness, record: AuthCodeRecord) {
    h.oauth.store().put_code(record).await.expect("code stored");
}

/// Stores a fresh code for [`APP_ID`]/[`USER`] with `scope`; returns `(code, verifier)`.
async fn new_code(h: &OAuthHarness, scope: &str) -> (String, String) {
    let code = random();
    let (verifier, challenge) = pkce();
    put_code(h, code_record(h, &code, &challenge, scope)).await;
    (code, verifier)
}

/// Exchanges a code as the public [`APP_ID`], with `extra` parameters replacing the defaults
/// (an empty value removes one).
async fn exchange(
    h: &OAuthHarness,
    code: &str,
    verifier: &str,
    extra: &[(&str, &str)],
) -> (StatusCode, HeaderMap, Value) {
    let mut form: Vec<(&str, &str)> = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", CALLBACK),
        ("code_verifier", verifier),
        ("client_id", APP_ID),
        ("resource", &h.url),
    ];
    for (name, value) in extra {
        form.retain(|(n, _)| n != name);
        if !value.is_empty() {
            form.push((name, value));
        }
    }
    h.token(&form).await
}

/// Tokens for [`USER`] through [`APP_ID`] with `scope`: `(access, refresh)`.
async fn user_tokens(h: &OAuthHarness, scope: &str) -> (String, String) {
    let (code, verifier) = new_code(h, scope).await;
    let (status, _, body) = exchange(h, &code, &verifier, &[]).await;
    assert_eq!(status, 200, "{body}");
    (
        body["access_token"].as_str().unwrap().to_owned(),
        body["refresh_token"].as_str().unwrap().to_owned(),
    )
}

/// Refreshes as the public [`APP_ID`].
async fn refresh(
    h: &OAuthHarness,
    refresh_token: &str,
    extra: &[(&str, &str)],
) -> (StatusCode, HeaderMap, Value) {
    let mut form = vec![
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token),
        ("client_id", APP_ID),
    ];
    form.extend_from_slice(extra);
    h.token(&form).await
}

/// A client-credentials token of [`SERVICE_ID`] with `extra` parameters.
async fn service_token(h: &OAuthHarness, extra: &[(&str, &str)]) -> (StatusCode, HeaderMap, Value) {
    let mut form = vec![("grant_type", "client_credentials")];
    form.extend_from_slice(extra);
    h.token_with(&form, Some((SERVICE_ID, SERVICE_SECRET)))
        .await
}

/// The HTTP status of `tools/list` at `url` with `token`.
async fn mcp_status(url: &str, token: &str) -> u16 {
    Mcp::new(url, Cred::Bearer(token.into()), Version::V2026_07_28)
        .request("tools/list", json!({}))
        .await
        .status
}

/// The tools `token` sees at `url` (through a full session-based connection).
async fn tools(url: &str, token: &str) -> Vec<String> {
    let mut names = Mcp::connect(url, Cred::Bearer(token.into()), Version::V2025_11_25)
        .await
        .list()
        .await;
    names.sort();
    names
}

/// The claims of a JWT (not verified: the server's own checks are what the tests exercise).
fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fn error_of(body: &Value) -> &str {
    body["error"].as_str().unwrap_or_default()
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// POSTs a raw body to `path` with `content_type`.
async fn post_raw(
    h: &OAuthHarness,
    path: &str,
    content_type: Option<&str>,
    body: String,
    basic: Option<(&str, &str)>,
) -> (StatusCode, HeaderMap, Value) {
    let mut request = h.http.post(format!("{}{path}", h.base)).body(body);
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    if let Some((id, secret)) = basic {
        request = request.basic_auth(id, Some(secret));
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, headers, body)
}

/// POSTs a form to the revocation endpoint; returns status, headers and the raw body.
async fn revoke(
    h: &OAuthHarness,
    form: &[(&str, &str)],
    basic: Option<(&str, &str)>,
) -> (StatusCode, HeaderMap, String) {
    let mut request = h.http.post(format!("{}/oauth/revoke", h.base)).form(form);
    if let Some((id, secret)) = basic {
        request = request.basic_auth(id, Some(secret));
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    (status, headers, response.text().await.unwrap())
}

fn assert_no_store(headers: &HeaderMap) {
    assert_eq!(header(headers, "cache-control"), Some("no-store"));
    assert_eq!(header(headers, "pragma"), Some("no-cache"));
    assert!(
        header(headers, "content-type").is_some_and(|c| c.starts_with("application/json")),
        "{headers:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// client_credentials
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn client_credentials_with_basic_issue_a_token_for_the_mcp_endpoint() {
    let h = start_oauth(|c| c).await;
    let (status, headers, body) = service_token(&h, &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_no_store(&headers);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["scope"], "notes:read");
    assert!(body.get("refresh_token").is_none(), "{body}");
    let token = body["access_token"].as_str().unwrap();
    let claims = claims(token);
    assert_eq!(claims["sub"], SERVICE_ID);
    assert_eq!(claims["client_id"], SERVICE_ID);
    assert_eq!(claims["role"], "member");
    assert_eq!(claims["aud"], h.url);
    assert_eq!(claims["iss"], h.base);
    // Role member + scope notes:read: `read` only (`write` also needs notes:write).
    assert_eq!(tools(&h.url, token).await, ["read"]);
    h.stop().await;
}

#[tokio::test]
async fn client_credentials_with_post() {
    let h = start_oauth(|c| c).await;
    let (status, headers, body) = h
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", SERVICE_ID),
            ("client_secret", SERVICE_SECRET),
            ("resource", &h.url),
        ])
        .await;
    assert_eq!(status, 200, "{body}");
    assert_no_store(&headers);
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(tools(&h.url, token).await, ["read"]);
    h.stop().await;
}

#[tokio::test]
async fn a_wrong_secret_is_invalid_client_with_a_basic_challenge_when_basic_was_used() {
    let h = start_oauth(|c| c).await;
    let form = [("grant_type", "client_credentials")];
    let (status, headers, body) = h
        .token_with(&form, Some((SERVICE_ID, "not-the-secret-0123456789")))
        .await;
    assert_eq!(status, 401);
    assert_eq!(error_of(&body), "invalid_client");
    assert!(
        header(&headers, "www-authenticate").is_some_and(|v| v.starts_with("Basic")),
        "{headers:?}"
    );
    assert_no_store(&headers);

    let (status, headers, body) = h
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", SERVICE_ID),
            ("client_secret", "not-the-secret-0123456789"),
        ])
        .await;
    assert_eq!(status, 401);
    assert_eq!(error_of(&body), "invalid_client");
    assert!(header(&headers, "www-authenticate").is_none());
    h.stop().await;
}

#[tokio::test]
async fn an_unknown_client_is_invalid_client() {
    let h = start_oauth(|c| c).await;
    let form = [("grant_type", "client_credentials")];
    let (status, _, body) = h
        .token_with(&form, Some(("nobody", "some-secret-0123456789")))
        .await;
    assert_eq!(status, 401);
    assert_eq!(error_of(&body), "invalid_client");
    let (status, _, body) = h
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", "nobody"),
        ])
        .await;
    assert_eq!(status, 401);
    assert_eq!(error_of(&body), "invalid_client");
    // No client at all.
    let (status, _, body) = h.token(&[("grant_type", "client_credentials")]).await;
    assert_eq!(status, 401);
    assert_eq!(error_of(&body), "invalid_client");
    h.stop().await;
}

#[tokio::test]
async fn basic_and_a_form_secret_together_are_invalid_request() {
    let h = start_oauth(|c| c).await;
    let (status, headers, body) = h
        .token_with(
            &[
                ("grant_type", "client_credentials"),
                ("client_secret", SERVICE_SECRET),
            ],
            Some((SERVICE_ID, SERVICE_SECRET)),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(error_of(&body), "invalid_request");
    assert_no_store(&headers);
    h.stop().await;
}

#[tokio::test]
async fn basic_credentials_are_read_as_rfc_7617_and_6749_say() {
    use base64::{Engine as _, engine::general_purpose::STANDARD};
    let h = start_oauth(|c| c).await;
    let post = |values: &[String]| {
        let mut request = h
            .http
            .post(format!("{}/oauth/token", h.base))
            .form(&[("grant_type", "client_credentials")]);
        for value in values {
            request = request.header("authorization", value);
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status();
            let headers = response.headers().clone();
            (status, headers, response.json::<Value>().await.unwrap())
        }
    };
    let pair = STANDARD.encode(format!("{SERVICE_ID}:{SERVICE_SECRET}"));
    // The scheme in any case (RFC 7617), the id form-encoded (RFC 6749 §2.3.1).
    let encoded_id = STANDARD.encode(format!("report%69ng:{SERVICE_SECRET}"));
    for value in [format!("BASIC {pair}"), format!("basic {encoded_id}")] {
        let (status, _, body) = post(&[value]).await;
        assert_eq!(status, 200, "{body}");
    }
    // Another scheme is no client authentication, answered with the Basic challenge.
    let (status, headers, body) = post(&["Bearer abc".into()]).await;
    assert_eq!((status.as_u16(), error_of(&body)), (401, "invalid_client"));
    assert!(header(&headers, "www-authenticate").is_some_and(|v| v.starts_with("Basic")));
    // Two Authorization headers: which one counts would be a guess.
    let value = format!("Basic {pair}");
    let (status, _, body) = post(&[value.clone(), value]).await;
    assert_eq!((status.as_u16(), error_of(&body)), (400, "invalid_request"));
    h.stop().await;
}

#[tokio::test]
async fn public_clients_cannot_use_client_credentials() {
    let h = start_oauth(|c| c).await;
    // Not among its grant types.
    let (status, _, body) = h
        .token(&[("grant_type", "client_credentials"), ("client_id", APP_ID)])
        .await;
    assert_eq!(status, 400);
    assert_eq!(error_of(&body), "unauthorized_client");
    // Even a public client recorded with the grant (a store edited by hand) is refused.
    h.oauth
        .store()
        .put_client(ClientRecord {
            client_id: "odd-public".into(),
            secret_hash: None,
            name: "Odd".into(),
            redirect_uris: vec![],
            grant_types: vec!["client_credentials".into()],
            allowed_scopes: vec!["notes:read".into()],
            role: Some("member".into()),
            token_endpoint_auth_method: "none".into(),
            tls_client_auth: None,
            metadata_url: None,
            self_registered: false,
            created_at: 0,
        })
        .await
        .unwrap();
    let (status, _, body) = h
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", "odd-public"),
        ])
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error_of(&body), "unauthorized_client");
    h.stop().await;
}

#[tokio::test]
async fn grant_types_are_checked() {
    let h = start_oauth(|c| c).await;
    let basic = Some((SERVICE_ID, SERVICE_SECRET));
    let (status, _, body) = h.token_with(&[("grant_type", "password")], basic).await;
    assert_eq!(status, 400);
    assert_eq!(error_of(&body), "unsupported_grant_type");
    let (status, _, body) = h.token_with(&[("scope", "notes:read")], basic).await;
    assert_eq!(status, 400);
    assert_eq!(error_of(&body), "invalid_request");
    // The service is registered for client_credentials only.
    let (status, _, body) = h
        .token_with(
            &[("grant_type", "refresh_token"), ("refresh_token", "x")],
            basic,
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(error_of(&body), "unauthorized_client");
    h.stop().await;
}

#[tokio::test]
async fn client_credentials_scopes_are_filtered_to_the_clients() {
    let h = start_oauth(|c| c).await;
    let (status, _, body) = service_token(&h, &[("scope", "notes:write notes:read")]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "notes:read");
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(claims(token)["scope"], "notes:read");
    assert_eq!(tools(&h.url, token).await, ["read"]);

    let (status, headers, body) = service_token(&h, &[("scope", "notes:write notes:admin")]).await;
    assert_eq!(status, 400);
    assert_eq!(error_of(&body), "invalid_scope");
    assert_no_store(&headers);
    h.stop().await;
}

#[tokio::test]
async fn a_resource_of_another_server_is_invalid_target() {
    let h = start_oauth(|c| c).await;
    let (status, _, body) = service_token(&h, &[("resource", "https://evil.example/mcp")]).await;
    assert_eq!(status, 400);
    assert_eq!(error_of(&body), "invalid_target");
    // Several resources in one request: this server issues single-audience tokens.
    let body = format!(
        "grant_type=client_credentials&resource={0}&resource={0}",
        url_encode(&h.url)
    );
    let (status, _, body) = post_raw(
        &h,
        "/oauth/token",
        Some("application/x-www-form-urlencoded"),
        body,
        Some((SERVICE_ID, SERVICE_SECRET)),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(error_of(&body), "invalid_target");
    h.stop().await;
}

fn url_encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

#[tokio::test]
async fn a_token_for_another_resource_of_the_server_is_refused_at_mcp() {
    let other = "http://127.0.0.1:1/other";
    let h = start_oauth(|c| c.resource(other)).await;
    let (status, _, body) = service_token(&h, &[("resource", other)]).await;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(claims(token)["aud"], other);
    assert_eq!(mcp_status(&h.url, token).await, 401);
    // The same client's token for this endpoint works.
    let (_, _, body) = service_token(&h, &[("resource", &h.url)]).await;
    assert_eq!(
        mcp_status(&h.url, body["access_token"].as_str().unwrap()).await,
        200
    );
    h.stop().await;
}

#[tokio::test]
async fn only_form_bodies_are_read() {
    let h = start_oauth(|c| c).await;
    let basic = Some((SERVICE_ID, SERVICE_SECRET));
    let json_body = r#"{"grant_type":"client_credentials"}"#.to_owned();
    for content_type in [Some("application/json"), Some("text/plain"), None] {
        let (status, headers, body) =
            post_raw(&h, "/oauth/token", content_type, json_body.clone(), basic).await;
        assert_eq!(status, 400, "{content_type:?}");
        assert_eq!(error_of(&body), "invalid_request");
        assert_no_store(&headers);
    }
    // The same grant as a form works.
    let (status, _, _) = post_raw(
        &h,
        "/oauth/token",
        Some("application/x-www-form-urlencoded; charset=utf-8"),
        "grant_type=client_credentials".into(),
        basic,
    )
    .await;
    assert_eq!(status, 200);
    h.stop().await;
}

#[tokio::test]
async fn repeated_parameters_are_invalid_request() {
    let h = start_oauth(|c| c).await;
    let basic = Some((SERVICE_ID, SERVICE_SECRET));
    for body in [
        "grant_type=client_credentials&grant_type=client_credentials",
        "grant_type=client_credentials&scope=notes:read&scope=notes:write",
    ] {
        let (status, headers, json) = post_raw(
            &h,
            "/oauth/token",
            Some("application/x-www-form-urlencoded"),
            body.into(),
            basic,
        )
        .await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(error_of(&json), "invalid_request", "{body}");
        assert_no_store(&headers);
    }
    h.stop().await;
}

#[tokio::test]
async fn every_answer_is_no_store() {
    let h = start_oauth(|c| c).await;
    let (status, headers, _) = service_token(&h, &[]).await;
    assert_eq!(status, 200);
    assert_no_store(&headers);
    let (status, headers, _) = service_token(&h, &[("scope", "notes:admin")]).await;
    assert_eq!(status, 400);
    assert_no_store(&headers);
    let (status, headers, _) = h
        .token_with(
            &[("grant_type", "client_credentials")],
            Some((SERVICE_ID, "wrong-secret-0123456789")),
        )
        .await;
    assert_eq!(status, 401);
    assert_no_store(&headers);
    h.stop().await;
}

// ---------------------------------------------------------------------------------------------
// authorization_code
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_code_is_exchanged_for_access_and_refresh_tokens() {
    let h = start_oauth(|c| c).await;
    let (code, verifier) = new_code(&h, "notes:read").await;
    let (status, headers, body) = exchange(&h, &code, &verifier, &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_no_store(&headers);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "notes:read");
    let refresh_token = body["refresh_token"].as_str().unwrap();
    assert!(refresh_token.len() >= 43);
    let token = body["access_token"].as_str().unwrap();
    let claims = claims(token);
    assert_eq!(claims["sub"], USER);
    assert_eq!(claims["client_id"], APP_ID);
    assert_eq!(claims["role"], "member");
    assert_eq!(claims["aud"], h.url);
    assert!(claims["jti"].as_str().unwrap().contains('.'), "{claims}");
    assert_eq!(tools(&h.url, token).await, ["read"]);

    // With write consented too, the member sees `write`.
    let (token, _) = user_tokens(&h, "notes:read notes:write").await;
    assert_eq!(tools(&h.url, &token).await, ["read", "write"]);
    h.stop().await;
}

#[tokio::test]
async fn a_client_without_the_refresh_grant_gets_no_refresh_token() {
    let h = start_oauth(|c| {
        c.client(
            OAuthClient::public("no-refresh")
                .redirect_uris([APP_REDIRECT])
                .grant_types(["authorization_code"]),
        )
    })
    .await;
    let code = random();
    let (verifier, challenge) = pkce();
    let mut record = code_record(&h, &code, &challenge, "notes:read");
    record.client_id = "no-refresh".into();
    put_code(&h, record).await;
    let (status, _, body) = exchange(&h, &code, &verifier, &[("client_id", "no-refresh")]).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.get("refresh_token").is_none(), "{body}");
    h.stop().await;
}

#[tokio::test]
async fn a_wrong_verifier_is_invalid_grant_and_uses_the_code_up() {
    let h = start_oauth(|c| c).await;
    let (code, verifier) = new_code(&h, "notes:read").await;
    let (other, _) = pkce();
    let (status, headers, body) = exchange(&h, &code, &other, &[]).await;
    assert_eq!(status, 400);
    assert_eq!(error_of(&body), "invalid_grant");
    assert_no_store(&headers);
    let (status, _, body) = exchange(&h, &code, &verifier, &[]).await;
    assert_eq!(status, 400);
    assert_eq!(error_of(&body), "invalid_grant");
    h.stop().await;
}

#[tokio::test]
async fn a_missing_verifier_is_invalid_request() {
    let h = start_oauth(|c| c).await;
    let (code, verifier) = new_code(&h, "notes:read").await;
    let (status, _, body) = exchange(&h, &code, "", &[]).await;
    assert_eq!(status, 400);
    assert_eq!(error_of(&body), "invalid_request");
    // A malformed request does not use the code up.
    let (status, _, body) = exchange(&h, &code, &verifier, &[]).await;
    assert_eq!(status, 200, "{body}");
    h.stop().await;
}

#[tokio::test]
async fn other_missing_code_parameters_are_invalid_request() {
    let h = start_oauth(|c| c).await;
    let (code, verifier) = new_code(&h, "notes:read").await;
    for missing in ["code", "redirect_uri"] {
        let (status, _, body) = exchange(&h, &code, &verifier, &[(missing, "")]).await;
        assert_eq!(status, 400, "{missing}");
        assert_eq!(error_of(&body), "invalid_request", "{missing}");
    }
    h.stop().await;
}

#[tokio::test]
async fn malformed_verifiers_are_refused_even_when_their_hash_matches() {
    let h = start_oauth(|c| c).await;
    let short = "a".repeat(42);
    let long = "b".repeat(129);
    let bad_charset = format!("{}+/", "c".repeat(41));
    for verifier in [short, long, bad_charset] {
        let code = random();
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        put_code(&h, code_record(&h, &code, &challenge, "notes:read")).await;
        let (status, _, body) = exchange(&h, &code, &verifier, &[]).await;
        assert_eq!(status, 400, "{verifier}");
        assert_eq!(error_of(&body), "invalid_grant", "{verifier}");
    }
    h.stop().await;
}

#[tokio::test]
async fn a_wrong_redirect_uri_is_invalid_grant() {
    let h = start_oauth(|c| c).await;
    let (code, verifier) = new_code(&h, "notes:read").await;
    let (status, _, body) = exchange(
        &h,
        &code,
        &verifier,
        &[("redirect_uri", "http://127.0.0.1:4568/callback")],
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(error_of(&body), "invalid_grant");
    h.stop().await;
}

#[tokio::test]
async fn a_code_issued_to_another_client_is_invalid_grant() {
    let h = start_oauth(|c| c).await;
    let (code, verifier) = new_code(&h, "notes:read").await;
    let (status, _, body) = h
        .token_with(
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", CALLBACK),
                ("code_verifier", &verifier),
            ],
            Some((WEB_ID, WEB_SECRET)),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error_of(&body), "invalid_grant");
    h.stop().await;
}

#[tokio::test]
async fn unknown_and_expired_codes_are_invalid_grant() {
    let h = start_oauth(|c| c).await;
    let (verifier, challenge) = pkce();
    let (status, _, body) = exchange(&h, &random(), &verifier, &[]).await;
    assert_eq!(status, 400);
    assert_eq!(error_of(&body), "invalid_grant");

    let code = random();
    let mut record = code_record(&h, &code, &challenge, "notes:read");
    record.expires_at = now() as i64 - 1;
    put_code(&h, record).await;
    let (status, _, body) = exchange(&h, &code, &verifier, &[]).await;
    assert_eq!(status, 400);
    assert_eq!(error_of(&body), "invalid_grant");
    h.stop().await;
}

#[tokio::test]
async fn a_code_for_another_resource_is_invalid_target() {
    let other = "http://127.0.0.1:1/other";
    let h = start_oauth(|c| c.resource(other)).await;
    let (code, verifier) = new_code(&h, "notes:read").await;
    let (status, _, body) = exchange(&h, &code, &verifier, &[("resource", other)]).await;
    assert_eq!(status, 400);
    assert_eq!(error_of(&body), "invalid_target");
    h.stop().await;
}

#[tokio::test]
async fn a_code_of_a_deleted_user_is_invalid_grant() {
    let h = start_oauth(|c| c).await;
    let (code, verifier) = new_code(&h, "notes:read").await;
    assert!(h.oauth.store().delete_user(USER).await.unwrap());
    let (status, _, body) = exchange(&h, &code, &verifier, &[]).await;
    assert_eq!(status, 400);
    assert_eq!(error_of(&body), "invalid_grant");
    h.stop().await;
}

#[tokio::test]
async fn a_replayed_code_revokes_everything_issued_from_it() {
    let h = start_oauth(|c| c).await;
    let (code, verifier) = new_code(&h, "notes:read").await;
    let (status, _, first) = exchange(&h, &code, &verifier, &[]).await;
    assert_eq!(status, 200, "{first}");
    let access = first["access_token"].as_str().unwrap();
    let refresh_token = first["refresh_token"].as_str().unwrap();
    assert_eq!(mcp_status(&h.url, access).await, 200);

    let (status, _, body) = exchange(&h, &code, &verifier, &[]).await;
    assert_eq!(status, 400);
    assert_eq!(error_of(&body), "invalid_grant");
    assert_eq!(mcp_status(&h.url, access).await, 401);
    let (status, _, body) = refresh(&h, refresh_token, &[]).await;
    assert_eq!(status, 400);
    assert_eq!(error_of(&body), "invalid_grant");
    h.stop().await;
}

// ---------------------------------------------------------------------------------------------
// refresh_token
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn refresh_tokens_rotate_and_reuse_revokes_the_family() {
    // Without a grace period: presenting the old token again at once is reuse, never a retry.
    let h = start_oauth(|c| c.refresh_grace_period(Duration::ZERO)).await;
    let (access, first) = user_tokens(&h, "notes:read").await;
    let (status, headers, body) = refresh(&h, &first, &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_no_store(&headers);
    assert_eq!(body["scope"], "notes:read");
    let second = body["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(second, first);
    let renewed = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(tools(&h.url, &renewed).await, ["read"]);

    // The old token again: reuse. The family ends.
    let (status, _, body) = refresh(&h, &first, &[]).await;
    assert_eq!(status, 400);
    assert_eq!(error_of(&body), "invalid_grant");
    let (status, _, body) = refresh(&h, &second, &[]).await;
    assert_eq!(status, 400);
    assert_eq!(error_of(&body), "invalid_grant");
    assert_eq!(mcp_status(&h.url, &access).await, 401);
    assert_eq!(mcp_status(&h.url, &renewed).await, 401);
    h.stop().await;
}

#[tokio::test]
async fn a_refresh_whose_answer_was_lost_is_retried_within_the_grace_period() {
    let dir = std::env::temp_dir().join(format!("mcpgk-token-it-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let audit = dir.join("refresh-retry.jsonl");
    let _ = std::fs::remove_file(&audit);
    let log = AuditLog::json_lines(&audit).unwrap();
    let h = start_oauth(move |c| c.audit(log)).await;
    let (access, first) = user_tokens(&h, "notes:read").await;
    // The server rotates, but the answer never reaches the client.
    let (status, _, body) = refresh(&h, &first, &[]).await;
    assert_eq!(status, 200, "{body}");
    let lost = body["refresh_token"].as_str().unwrap().to_owned();

    // The client retries with the token it still has: a new pair, not a revoked grant.
    let (status, headers, body) = refresh(&h, &first, &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_no_store(&headers);
    let retried = body["refresh_token"].as_str().unwrap().to_owned();
    assert!(retried != lost && retried != first);
    let renewed = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(tools(&h.url, &renewed).await, ["read"]);
    assert_eq!(mcp_status(&h.url, &access).await, 200);
    let (status, _, body) = refresh(&h, &retried, &[]).await;
    assert_eq!(status, 200, "the new refresh token works: {body}");
    let current = body["refresh_token"].as_str().unwrap().to_owned();

    // The retry is audited as such.
    let mut audited = false;
    for _ in 0..250 {
        let text = std::fs::read_to_string(&audit).unwrap_or_default();
        audited = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .any(|r| {
                r["event"] == "token"
                    && r["outcome"] == "allowed"
                    && r["reason"] == "refresh_retried_within_grace"
            });
        if audited {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(audited, "no audited retry in {}", audit.display());

    // The token whose answer was lost was replaced: if it turns up (a copy leaked), it is
    // reuse, and the whole grant ends.
    let (status, _, body) = refresh(&h, &lost, &[]).await;
    assert_eq!(status, 400);
    assert_eq!(error_of(&body), "invalid_grant");
    let (status, _, body) = refresh(&h, &current, &[]).await;
    assert_eq!(status, 400);
    assert_eq!(error_of(&body), "invalid_grant");
    assert_eq!(mcp_status(&h.url, &renewed).await, 401);
    assert_eq!(mcp_status(&h.url, &access).await, 401);
    h.stop().await;

    // Without a grace period the same retry ends the grant.
    let h = start_oauth(|c| c.refresh_grace_period(Duration::ZERO)).await;
    let (access, first) = user_tokens(&h, "notes:read").await;
    let (status, _, body) = refresh(&h, &first, &[]).await;
    assert_eq!(status, 200, "{body}");
    let lost = body["refresh_token"].as_str().unwrap().to_owned();
    let (status, _, body) = refresh(&h, &first, &[]).await;
    assert_eq!(status, 400);
    assert_eq!(error_of(&body), "invalid_grant");
    let (status, _, _) = refresh(&h, &lost, &[]).await;
    assert_eq!(status, 400);
    assert_eq!(mcp_status(&h.url, &access).await, 401);
    h.stop().await;
    let _ = std::fs::remove_file(&audit);
}

#[tokio::test]
async fn unknown_or_missing_refresh_tokens_are_refused() {
    let h = start_oauth(|c| c).await;
    let (status, _, body) = refresh(&h, &random(), &[]).await;
    assert_eq!(status, 400);
    assert_eq!(error_of(&body), "invalid_grant");
    let (status, _, body) = h
        .token(&[("grant_type", "refresh_token"), ("client_id", APP_ID)])
        .await;
    assert_eq!(status, 400);
    assert_eq!(error_of(&body), "invalid_request");
    h.stop().await;
}

#[tokio::test]
async fn refresh_cannot_escalate_scope() {
    let h = start_oauth(|c| c).await;
    let (_, refresh_token) = user_tokens(&h, "notes:read").await;
    let (status, headers, body) =
        refresh(&h, &refresh_token, &[("scope", "notes:read notes:write")]).await;
    assert_eq!(status, 400);
    assert_eq!(error_of(&body), "invalid_scope");
    assert_no_store(&headers);
    // Refused before rotation: the token still works.
    let (status, _, body) = refresh(&h, &refresh_token, &[]).await;
    assert_eq!(status, 200, "{body}");
    h.stop().await;
}

#[tokio::test]
async fn refresh_may_narrow_scope_for_the_access_token_only() {
    let h = start_oauth(|c| c).await;
    let (_, refresh_token) = user_tokens(&h, "notes:read notes:write").await;
    let (status, _, body) = refresh(&h, &refresh_token, &[("scope", "notes:read")]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "notes:read");
    let narrow = body["access_token"].as_str().unwrap();
    assert_eq!(tools(&h.url, narrow).await, ["read"]);
    // The grant keeps its scope (RFC 6749 §6).
    let next = body["refresh_token"].as_str().unwrap();
    let (status, _, body) = refresh(&h, next, &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "notes:read notes:write");
    h.stop().await;
}

#[tokio::test]
async fn refresh_for_another_resource_is_invalid_target() {
    let other = "http://127.0.0.1:1/other";
    let h = start_oauth(|c| c.resource(other)).await;
    let (_, refresh_token) = user_tokens(&h, "notes:read").await;
    let (status, _, body) = refresh(&h, &refresh_token, &[("resource", other)]).await;
    assert_eq!(status, 400);
    assert_eq!(error_of(&body), "invalid_target");
    let (status, _, body) = refresh(&h, &refresh_token, &[("resource", &h.url)]).await;
    assert_eq!(status, 200, "{body}");
    h.stop().await;
}

#[tokio::test]
async fn a_refresh_token_presented_by_another_client_is_refused_and_stays_its_owners() {
    let h = start_oauth(|c| c).await;
    let (_, refresh_token) = user_tokens(&h, "notes:read").await;
    let (status, _, body) = h
        .token_with(
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &refresh_token),
            ],
            Some((WEB_ID, WEB_SECRET)),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(error_of(&body), "invalid_grant");
    let (status, _, body) = refresh(&h, &refresh_token, &[]).await;
    assert_eq!(status, 200, "{body}");
    h.stop().await;
}

#[tokio::test]
async fn a_deleted_users_refresh_is_refused_and_ends_the_grant() {
    let h = start_oauth(|c| c).await;
    let (access, refresh_token) = user_tokens(&h, "notes:read").await;
    assert!(h.oauth.store().delete_user(USER).await.unwrap());
    let (status, _, body) = refresh(&h, &refresh_token, &[]).await;
    assert_eq!(status, 400);
    assert_eq!(error_of(&body), "invalid_grant");
    assert_eq!(mcp_status(&h.url, &access).await, 401);
    h.stop().await;
}

#[tokio::test]
async fn refresh_drops_scopes_the_user_may_no_longer_grant() {
    let h = start_oauth(|c| c).await;
    let (_, refresh_token) = user_tokens(&h, "notes:read notes:write").await;
    let store = h.oauth.store();
    let mut alice: UserRecord = store.get_user(USER).await.unwrap().unwrap();
    alice.scopes = vec!["notes:read".into()];
    store.put_user(alice).await.unwrap();
    let (status, _, body) = refresh(&h, &refresh_token, &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "notes:read");
    assert_eq!(
        tools(&h.url, body["access_token"].as_str().unwrap()).await,
        ["read"]
    );
    h.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Revocation
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_revoked_access_token_is_refused_at_mcp() {
    let h = start_oauth(|c| c).await;
    let (_, _, body) = service_token(&h, &[]).await;
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(mcp_status(&h.url, token).await, 200);
    let (status, headers, text) = revoke(
        &h,
        &[("token", token), ("token_type_hint", "access_token")],
        Some((SERVICE_ID, SERVICE_SECRET)),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(text, "");
    assert_eq!(header(&headers, "cache-control"), Some("no-store"));
    assert_eq!(mcp_status(&h.url, token).await, 401);

    // A user's access token, revoked by its public client without a hint.
    let (access, refresh_token) = user_tokens(&h, "notes:read").await;
    let (status, _, _) = revoke(&h, &[("token", &access), ("client_id", APP_ID)], None).await;
    assert_eq!(status, 200);
    assert_eq!(mcp_status(&h.url, &access).await, 401);
    // Only that token: the grant goes on.
    let (status, _, body) = refresh(&h, &refresh_token, &[]).await;
    assert_eq!(status, 200, "{body}");
    h.stop().await;
}

#[tokio::test]
async fn a_revoked_refresh_token_ends_the_grant() {
    let h = start_oauth(|c| c).await;
    let (access, refresh_token) = user_tokens(&h, "notes:read").await;
    // An unknown hint is ignored.
    let (status, _, text) = revoke(
        &h,
        &[
            ("token", &refresh_token),
            ("token_type_hint", "something_else"),
            ("client_id", APP_ID),
        ],
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(text, "");
    let (status, _, body) = refresh(&h, &refresh_token, &[]).await;
    assert_eq!(status, 400);
    assert_eq!(error_of(&body), "invalid_grant");
    assert_eq!(mcp_status(&h.url, &access).await, 401);
    h.stop().await;
}

#[tokio::test]
async fn revoking_garbage_is_a_quiet_success() {
    let h = start_oauth(|c| c).await;
    let basic = Some((SERVICE_ID, SERVICE_SECRET));
    for token in ["garbage", "a.b.c", "eyJhbGciOiJub25lIn0.eyJqdGkiOiJ4In0."] {
        let (status, _, text) = revoke(&h, &[("token", token)], basic).await;
        assert_eq!(status, 200, "{token}");
        assert_eq!(text, "");
    }
    h.stop().await;
}

#[tokio::test]
async fn revocation_needs_a_token_and_an_authenticated_client() {
    let h = start_oauth(|c| c).await;
    let (_, _, body) = service_token(&h, &[]).await;
    let token = body["access_token"].as_str().unwrap();
    let (status, headers, text) = revoke(&h, &[], Some((SERVICE_ID, SERVICE_SECRET))).await;
    assert_eq!(status, 400);
    assert_eq!(header(&headers, "cache-control"), Some("no-store"));
    assert!(text.contains("invalid_request"), "{text}");
    let (status, _, text) = revoke(
        &h,
        &[("token", token)],
        Some((SERVICE_ID, "not-the-secret-0123456789")),
    )
    .await;
    assert_eq!(status, 401);
    assert!(text.contains("invalid_client"), "{text}");
    assert_eq!(mcp_status(&h.url, token).await, 200, "nothing revoked");
    // Not a form.
    let (status, _, body) = post_raw(
        &h,
        "/oauth/revoke",
        Some("application/json"),
        json!({ "token": token }).to_string(),
        Some((SERVICE_ID, SERVICE_SECRET)),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(error_of(&body), "invalid_request");
    assert_eq!(mcp_status(&h.url, token).await, 200, "nothing revoked");
    h.stop().await;
}

#[tokio::test]
async fn revoking_another_clients_tokens_succeeds_but_revokes_nothing() {
    let h = start_oauth(|c| c).await;
    let web = Some((WEB_ID, WEB_SECRET));
    let (_, _, body) = service_token(&h, &[]).await;
    let service_access = body["access_token"].as_str().unwrap();
    let (user_access, refresh_token) = user_tokens(&h, "notes:read").await;
    for token in [service_access, &user_access, &refresh_token] {
        let (status, _, text) = revoke(&h, &[("token", token)], web).await;
        assert_eq!(status, 200);
        assert_eq!(text, "");
    }
    assert_eq!(mcp_status(&h.url, service_access).await, 200);
    assert_eq!(mcp_status(&h.url, &user_access).await, 200);
    let (status, _, body) = refresh(&h, &refresh_token, &[]).await;
    assert_eq!(status, 200, "{body}");
    h.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Lockout
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn repeated_wrong_secrets_are_throttled_but_the_right_one_always_works() {
    let h = start_oauth(|c| {
        c.lockout(Lockout::new(
            3,
            Duration::from_secs(60),
            Duration::from_secs(60),
        ))
    })
    .await;
    let form = [("grant_type", "client_credentials")];
    for attempt in 0..5 {
        let (status, headers, body) = h
            .token_with(&form, Some((SERVICE_ID, "wrong-secret-0123456789")))
            .await;
        if attempt < 2 {
            assert_eq!(status, 401, "attempt {attempt}: {body}");
        } else {
            assert_eq!(status, 429, "attempt {attempt}: {body}");
            assert!(
                header(&headers, "retry-after")
                    .is_some_and(|s| s.parse::<u64>().is_ok_and(|s| s > 0)),
                "{headers:?}"
            );
            assert_no_store(&headers);
        }
    }
    // The client's own secret is never refused because someone failed from its address.
    let (status, _, body) = h
        .token_with(&form, Some((SERVICE_ID, SERVICE_SECRET)))
        .await;
    assert_eq!(status, 200, "{body}");
    h.stop().await;
}

#[tokio::test]
async fn the_authorization_servers_scope_hierarchy_reaches_the_tools() {
    use mcp_gatekeeper::ScopeHierarchy;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let url = format!("{base}/mcp");
    // The server grants only the broad scope; the tools require the narrow ones.
    let oauth = AuthorizationServer::new(&base)
        .resource(&url)
        .scope_hierarchy(
            ScopeHierarchy::new().include("notes", ["notes:read", "notes:write", "notes:admin"]),
        )
        .client(
            OAuthClient::confidential(SERVICE_ID, SERVICE_SECRET)
                .role("member")
                .scopes(["notes"]),
        )
        .build()
        .await
        .unwrap();
    let running = Gatekeeper::new(crate::step_up::Notes)
        .oauth(&oauth, &url)
        .serve_on(listener)
        .unwrap();
    let metadata: Value = reqwest::get(format!("{base}/.well-known/oauth-authorization-server"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for scope in ["notes", "notes:read", "notes:write", "notes:admin"] {
        assert!(
            metadata["scopes_supported"]
                .as_array()
                .unwrap()
                .contains(&json!(scope)),
            "{scope}: {metadata}"
        );
    }
    let response = reqwest::Client::new()
        .post(format!("{base}/oauth/token"))
        .basic_auth(SERVICE_ID, Some(SERVICE_SECRET))
        .form(&[("grant_type", "client_credentials"), ("scope", "notes")])
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    let token = body["access_token"].as_str().unwrap();
    let mcp = crate::common::Mcp::connect(
        &url,
        crate::common::Cred::Bearer(token.into()),
        crate::common::Version::V2026_07_28,
    )
    .await;
    assert_eq!(
        mcp.call("write", json!({ "text": "hi" })).await.text(),
        "noted: hi"
    );
    running.shutdown().await.unwrap();
}
