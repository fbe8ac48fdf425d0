//! RFC 8705 over real HTTPS on loopback (issue 13): OAuth clients that authenticate at the
//! token endpoint with their TLS client certificate (`tls_client_auth`, by a name in a
//! certificate from the client CA; `self_signed_tls_client_auth`, by a registered certificate),
//! the certificate-bound tokens issued to them (`cnf.x5t#S256`), which the MCP endpoint accepts
//! only on a request with that very certificate, the refresh tokens of public clients bound to
//! theirs, the metadata that says all this, and a bound token replayed through a proxy header
//! nobody trusts.

use std::{path::PathBuf, time::Duration};

use base64::{
    Engine as _,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
use http::{HeaderMap, StatusCode, header};
use mcp_gatekeeper::{
    AuditLog, ForwardedCertificate, Gatekeeper, RunningServer, Tls,
    auth::ClientCertificates,
    oauth::{AuthorizationServer, OAuthClient, OAuthServer, TlsClientAuth},
};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use tokio::net::TcpListener;

use super::{APP_ID, APP_REDIRECT, USER, configure, pkce, start_oauth};
use crate::{
    common::{
        Cred, Mcp, Reply, Version,
        certs::{ClientSpec, Issued, TestCa, self_signed_client},
    },
    step_up::Notes,
};

/// A client authenticating with a certificate from the client CA that names it by DNS name.
const MTLS_ID: &str = "reporting-mtls";
const MTLS_DNS: &str = "reporting.tests.example";
/// A client authenticating with a self-signed certificate it registered.
const SELF_SIGNED_ID: &str = "self-signed-service";
/// A mutual-TLS client that signs users in (authorization code), named by its subject DN.
const MTLS_APP_ID: &str = "mtls-web-app";
/// (RFC 4514 writes the last RDN first; the test CA puts the common name first, then `O`.)
const MTLS_APP_DN: &str = "o=mcp-gatekeeper tests, cn=mtls-web-app";

/// The test PKI: a CA for the server and the clients, and the clients' certificates.
struct Pki {
    ca: TestCa,
    server: Issued,
    /// `MTLS_DNS`, from the CA.
    service: Issued,
    /// Another certificate from the same CA, for another name.
    other: Issued,
    /// The certificate `SELF_SIGNED_ID` registered.
    self_signed: Issued,
    /// The subject `MTLS_APP_DN`, from the CA.
    app: Issued,
}

impl Pki {
    fn new() -> Self {
        let mut ca = TestCa::new("RFC 8705 tests CA");
        Self {
            server: ca.server(),
            service: ca.client(&ClientSpec::new("reporting").dns(MTLS_DNS)),
            other: ca.client(&ClientSpec::new("intruder").dns("intruder.tests.example")),
            self_signed: self_signed_client(SELF_SIGNED_ID),
            app: ca.client(&ClientSpec::new(MTLS_APP_ID)),
            ca,
        }
    }
}

/// The Notes tools and their authorization server over HTTPS, client certificates optional
/// (from the CA, or self-signed), certificates also authenticating on their own.
struct MtlsHarness {
    base: String,
    url: String,
    oauth: OAuthServer,
    running: RunningServer,
    pki: Pki,
    /// The MCP endpoint's audit trail.
    audit: PathBuf,
    /// The authorization server's audit trail.
    oauth_audit: PathBuf,
}

fn audit_path(name: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "mcpgk-mtls-bound-{name}-{}.jsonl",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&path);
    path
}

/// The configured clients of every harness here, on top of the usual ones.
fn with_mtls_clients(server: AuthorizationServer, pki: &Pki) -> AuthorizationServer {
    server
        .client(
            OAuthClient::mutual_tls(MTLS_ID, TlsClientAuth::SanDns(MTLS_DNS.into()))
                .role("member")
                .scopes(["notes:read"]),
        )
        .client(
            OAuthClient::mutual_tls(
                SELF_SIGNED_ID,
                TlsClientAuth::self_signed_pem(&pki.self_signed.cert).unwrap(),
            )
            .role("member")
            .scopes(["notes:read"]),
        )
        .client(
            OAuthClient::mutual_tls(MTLS_APP_ID, TlsClientAuth::SubjectDn(MTLS_APP_DN.into()))
                .redirect_uris([APP_REDIRECT]),
        )
}

async fn start_mtls(name: &str) -> MtlsHarness {
    let pki = Pki::new();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!(
        "https://localhost:{}",
        listener.local_addr().unwrap().port()
    );
    let url = format!("{base}/mcp");
    let audit = audit_path(name);
    let oauth_audit = audit_path(&format!("{name}-oauth"));
    let oauth = with_mtls_clients(configure(&base, &url), &pki)
        .insecure_auto_approve(USER)
        .audit(
            AuditLog::json_lines(&oauth_audit)
                .unwrap()
                .unlimited_refusals(),
        )
        .build()
        .await
        .expect("authorization server builds");
    let tls = Tls::from_pem(pki.server.cert.clone(), pki.server.key.clone())
        .client_ca_pem(pki.ca.pem.clone())
        .client_certificate_optional()
        .accept_self_signed_client_certificates();
    let running = Gatekeeper::new(Notes)
        .oauth(&oauth, &url)
        .authenticate(ClientCertificates::new())
        .audit(AuditLog::json_lines(&audit).unwrap().unlimited_refusals())
        .tls(tls)
        .serve_on(listener)
        .unwrap();
    MtlsHarness {
        base,
        url,
        oauth,
        running,
        pki,
        audit,
        oauth_audit,
    }
}

impl MtlsHarness {
    async fn stop(self) {
        self.running.shutdown().await.expect("clean shutdown");
    }

    /// An HTTPS client trusting the test CA, presenting `identity` if given, never following
    /// redirects.
    fn client(&self, identity: Option<&Issued>) -> reqwest::Client {
        let mut builder = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(self.pki.ca.pem.as_bytes()).unwrap()])
            .redirect(reqwest::redirect::Policy::none());
        if let Some(identity) = identity {
            builder = builder
                .identity(reqwest::Identity::from_pem(identity.identity_pem().as_bytes()).unwrap());
        }
        builder.build().unwrap()
    }

    /// POSTs `form` to the token endpoint with `identity`'s certificate.
    async fn token(
        &self,
        identity: Option<&Issued>,
        form: &[(&str, &str)],
    ) -> (StatusCode, HeaderMap, Value) {
        let response = self
            .client(identity)
            .post(format!("{}/oauth/token", self.base))
            .form(form)
            .send()
            .await
            .expect("token endpoint answers");
        let status = response.status();
        let headers = response.headers().clone();
        (
            status,
            headers,
            response.json().await.unwrap_or(Value::Null),
        )
    }

    /// A client-credentials token for `client_id`, authenticated by `identity`.
    async fn client_credentials(
        &self,
        client_id: &str,
        identity: Option<&Issued>,
    ) -> (StatusCode, HeaderMap, Value) {
        self.token(
            identity,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", client_id),
            ],
        )
        .await
    }

    /// Calls the `read` tool with `token`, over a connection presenting `identity`.
    async fn read(&self, token: &str, identity: Option<&Issued>) -> Reply {
        let mut mcp = Mcp::new(
            &self.url,
            Cred::Bearer(token.to_owned()),
            Version::V2026_07_28,
        );
        mcp.http = self.client(identity);
        mcp.call("read", json!({})).await
    }
}

/// The claims of a JWT, unverified.
fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// `cnf.x5t#S256` for `issued`: its DER's SHA-256, base64url.
fn x5t_s256(issued: &Issued) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(issued.der()))
}

/// The first audit record written to `path` that `matches`, waiting for the writer thread.
async fn audited(path: &PathBuf, matches: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..100 {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if let Some(record) = text
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .find(|record| matches(record))
        {
            return record;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "no such record in {}:\n{}",
        path.display(),
        std::fs::read_to_string(path).unwrap_or_default()
    );
}

/// The `WWW-Authenticate` of a refusal.
fn challenge(reply: &Reply) -> &str {
    reply.header("www-authenticate").unwrap_or_default()
}

#[tokio::test]
async fn a_tls_client_auth_client_gets_a_token_only_its_certificate_can_use() {
    let h = start_mtls("tls-client-auth").await;
    let (status, headers, body) = h.client_credentials(MTLS_ID, Some(&h.pki.service)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    assert_eq!(body["token_type"], "Bearer");
    let token = body["access_token"].as_str().unwrap();
    let claims = claims_of(token);
    assert_eq!(claims["cnf"]["x5t#S256"], x5t_s256(&h.pki.service));
    assert_eq!(claims["client_id"], MTLS_ID);
    assert_eq!(claims["scope"], "notes:read");

    // With its certificate, the token works.
    let reply = h.read(token, Some(&h.pki.service)).await;
    assert_eq!(reply.status, 200, "{reply:#?}");
    assert_eq!(reply.text(), "nothing yet");

    // Another certificate from the same CA: refused, with a reason the client can act on.
    let reply = h.read(token, Some(&h.pki.other)).await;
    assert_eq!(reply.status, 401, "{reply:#?}");
    assert!(
        challenge(&reply).contains(r#"error="invalid_token""#),
        "{reply:#?}"
    );
    assert!(
        challenge(&reply)
            .contains(r#"error_description="Token is bound to another client certificate""#),
        "{reply:#?}"
    );
    // No certificate at all (the server lets clients without one connect): refused.
    let reply = h.read(token, None).await;
    assert_eq!(reply.status, 401, "{reply:#?}");
    assert!(
        challenge(&reply)
            .contains("Token is bound to a client certificate; the request came without one"),
        "{reply:#?}"
    );
    assert_eq!(reply.json_body()["error"], "invalid_token");
    // Each refusal is audited with the token's id and why.
    let jti = claims["jti"].as_str().unwrap().to_owned();
    let record = audited(&h.audit, |r| {
        r["outcome"] == "denied"
            && r["credential_id"] == jti.as_str()
            && r["detail"] == "Token is bound to another client certificate"
    })
    .await;
    assert_eq!(record["reason"], "invalid_credential");
    assert_eq!(record["method"], "oauth");
    // Without a token the certificate itself is the caller: authenticated, with no scope.
    let mut by_certificate = Mcp::new(&h.url, Cred::None, Version::V2026_07_28);
    by_certificate.http = h.client(Some(&h.pki.service));
    let reply = by_certificate.call("read", json!({})).await;
    assert_eq!(reply.status, 200, "{reply:#?}");
    assert_eq!(reply.error_code(), Some(-32003), "{reply:#?}");
    h.stop().await;
}

#[tokio::test]
async fn a_token_request_without_the_registered_certificate_is_invalid_client() {
    let h = start_mtls("invalid-client").await;
    for (identity, why) in [
        (
            Some(&h.pki.other),
            "client certificate does not match the client's registration",
        ),
        (None, "no client certificate"),
        // Self-signed with any name it likes: its names prove nothing.
        (
            Some(&h.pki.self_signed),
            "client certificate not issued by a trusted CA",
        ),
    ] {
        let (status, headers, body) = h.client_credentials(MTLS_ID, identity).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{why}: {body}");
        assert_eq!(body["error"], "invalid_client", "{why}");
        assert_eq!(headers[header::CACHE_CONTROL], "no-store");
        let record = audited(&h.oauth_audit, |r| {
            r["event"] == "token" && r["client_id"] == MTLS_ID && r["detail"] == why
        })
        .await;
        assert_eq!(record["outcome"], "denied");
        assert_eq!(record["reason"], "invalid_client");
    }
    // A mutual-TLS client never authenticates with a secret, nor passes for a public client.
    let (status, _, body) = h
        .token(
            Some(&h.pki.service),
            &[
                ("grant_type", "client_credentials"),
                ("client_id", MTLS_ID),
                ("client_secret", "a-secret-it-never-had-0123456789"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"], "invalid_client");
    // The right certificate for another client's id is refused too.
    let (status, _, body) = h
        .client_credentials(SELF_SIGNED_ID, Some(&h.pki.service))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    h.stop().await;
}

#[tokio::test]
async fn a_self_signed_client_authenticates_by_the_certificate_it_registered() {
    let h = start_mtls("self-signed").await;
    let (status, _, body) = h
        .client_credentials(SELF_SIGNED_ID, Some(&h.pki.self_signed))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(
        claims_of(token)["cnf"]["x5t#S256"],
        x5t_s256(&h.pki.self_signed)
    );
    let reply = h.read(token, Some(&h.pki.self_signed)).await;
    assert_eq!(reply.status, 200, "{reply:#?}");
    assert_eq!(h.read(token, Some(&h.pki.service)).await.status, 401);

    // Another self-signed certificate, even with the same name, is not the registered one.
    let impostor = self_signed_client(SELF_SIGNED_ID);
    let (status, _, body) = h.client_credentials(SELF_SIGNED_ID, Some(&impostor)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"], "invalid_client");

    // On its own, a self-signed certificate is nobody: the certificate authenticator refuses it.
    let mut alone = Mcp::new(&h.url, Cred::None, Version::V2026_07_28);
    alone.http = h.client(Some(&h.pki.self_signed));
    let reply = alone.call("read", json!({})).await;
    assert_eq!(reply.status, 401, "{reply:#?}");
    assert!(
        challenge(&reply).contains("Client certificate not issued by a trusted CA"),
        "{reply:#?}"
    );
    h.stop().await;
}

/// Runs the authorization-code flow for `client_id` (approved at once for `USER`) and
/// exchanges the code over a connection presenting `identity`.
async fn code_exchange(
    h: &MtlsHarness,
    client_id: &str,
    identity: Option<&Issued>,
) -> (StatusCode, Value) {
    let (verifier, challenge) = pkce();
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    query
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", APP_REDIRECT)
        .append_pair("state", "s")
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256")
        .append_pair("scope", "notes:read")
        .append_pair("resource", &h.url);
    let answer = h
        .client(identity)
        .get(format!("{}/oauth/authorize?{}", h.base, query.finish()))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::SEE_OTHER);
    let location = url::Url::parse(answer.headers()[header::LOCATION].to_str().unwrap()).unwrap();
    let code = location
        .query_pairs()
        .find(|(name, _)| name == "code")
        .map(|(_, code)| code.into_owned())
        .expect("a code");
    let (status, _, body) = h
        .token(
            identity,
            &[
                ("grant_type", "authorization_code"),
                ("client_id", client_id),
                ("code", &code),
                ("redirect_uri", APP_REDIRECT),
                ("code_verifier", &verifier),
            ],
        )
        .await;
    (status, body)
}

#[tokio::test]
async fn a_public_clients_refresh_token_is_bound_to_its_certificate() {
    let h = start_mtls("public-refresh").await;
    // RFC 8705 §4: a public client presenting a certificate gets tokens bound to it.
    let (status, body) = code_exchange(&h, APP_ID, Some(&h.pki.self_signed)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let bound = x5t_s256(&h.pki.self_signed);
    assert_eq!(
        claims_of(body["access_token"].as_str().unwrap())["cnf"]["x5t#S256"],
        bound
    );
    let refresh_token = body["refresh_token"].as_str().unwrap().to_owned();
    let refresh = |identity| {
        let refresh_token = refresh_token.clone();
        let h = &h;
        async move {
            h.token(
                identity,
                &[
                    ("grant_type", "refresh_token"),
                    ("client_id", APP_ID),
                    ("refresh_token", &refresh_token),
                ],
            )
            .await
        }
    };
    // Without it, or with another, the refresh token is worthless (and the grant stays).
    for identity in [None, Some(&h.pki.service)] {
        let (status, _, body) = refresh(identity).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error"], "invalid_grant");
    }
    let (status, _, body) = refresh(Some(&h.pki.self_signed)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        claims_of(body["access_token"].as_str().unwrap())["cnf"]["x5t#S256"],
        bound
    );
    // The successor stays bound.
    let next = body["refresh_token"].as_str().unwrap();
    let (status, _, body) = h
        .token(
            None,
            &[
                ("grant_type", "refresh_token"),
                ("client_id", APP_ID),
                ("refresh_token", next),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // Without a certificate, a public client's tokens are bearer tokens, as before.
    let (status, body) = code_exchange(&h, APP_ID, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        claims_of(body["access_token"].as_str().unwrap())
            .get("cnf")
            .is_none()
    );
    h.stop().await;
}

#[tokio::test]
async fn a_confidential_clients_grant_outlives_its_certificate() {
    let mut h = start_mtls("confidential-refresh").await;
    let (status, body) = code_exchange(&h, MTLS_APP_ID, Some(&h.pki.app)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        claims_of(body["access_token"].as_str().unwrap())["cnf"]["x5t#S256"],
        x5t_s256(&h.pki.app)
    );
    // The client renews its certificate (same name, new key): its refresh token, bound to the
    // client by its authentication rather than to the old certificate, still works, and the new
    // access token is bound to the new certificate.
    let renewed = h.pki.ca.client(&ClientSpec::new(MTLS_APP_ID));
    let (status, _, body) = h
        .token(
            Some(&renewed),
            &[
                ("grant_type", "refresh_token"),
                ("client_id", MTLS_APP_ID),
                ("refresh_token", body["refresh_token"].as_str().unwrap()),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        claims_of(body["access_token"].as_str().unwrap())["cnf"]["x5t#S256"],
        x5t_s256(&renewed)
    );
    h.stop().await;
}

/// The RFC 8414 metadata of a server at `base`, fetched with `client`.
async fn metadata(client: &reqwest::Client, base: &str) -> Value {
    client
        .get(format!("{base}/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_metadata_offers_mutual_tls_only_where_certificates_arrive() {
    let h = start_mtls("metadata").await;
    let document = metadata(&h.client(None), &h.base).await;
    assert_eq!(document["tls_client_certificate_bound_access_tokens"], true);
    for methods in [
        &document["token_endpoint_auth_methods_supported"],
        &document["revocation_endpoint_auth_methods_supported"],
    ] {
        assert_eq!(
            *methods,
            json!([
                "client_secret_basic",
                "client_secret_post",
                "none",
                "tls_client_auth",
                "self_signed_tls_client_auth"
            ])
        );
    }
    h.stop().await;

    // Plain HTTP: no certificate can ever arrive, so none of it is offered.
    let plain = start_oauth(|c| c).await;
    let document = metadata(&plain.http, &plain.base).await;
    assert!(
        document
            .get("tls_client_certificate_bound_access_tokens")
            .is_none()
    );
    assert_eq!(
        document["token_endpoint_auth_methods_supported"],
        json!(["client_secret_basic", "client_secret_post", "none"])
    );
    plain.stop().await;
}

#[tokio::test]
async fn clients_register_themselves_for_mutual_tls_where_certificates_arrive() {
    let h = start_mtls("registration").await;
    let register = |body: Value| {
        let client = h.client(None);
        let url = format!("{}/oauth/register", h.base);
        async move {
            let response = client.post(url).json(&body).send().await.unwrap();
            (
                response.status(),
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let (status, body) = register(json!({
        "redirect_uris": [APP_REDIRECT],
        "token_endpoint_auth_method": "tls_client_auth",
        "tls_client_auth_san_dns": MTLS_DNS,
    }))
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["token_endpoint_auth_method"], "tls_client_auth");
    assert_eq!(body["tls_client_auth_san_dns"], MTLS_DNS);
    assert!(body.get("client_secret").is_none(), "{body}");
    let registered = body["client_id"].as_str().unwrap().to_owned();
    // It authenticates with the certificate (and, self-registered, may only sign users in);
    // with another certificate it does not authenticate at all.
    let (status, _, body) = h
        .client_credentials(&registered, Some(&h.pki.service))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "unauthorized_client");
    let (status, _, body) = h.client_credentials(&registered, Some(&h.pki.other)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");

    let x5c = STANDARD.encode(h.pki.self_signed.der());
    let jwks = json!({ "keys": [{ "kty": "EC", "x5c": [x5c] }] });
    let (status, body) = register(json!({
        "redirect_uris": [APP_REDIRECT],
        "token_endpoint_auth_method": "self_signed_tls_client_auth",
        "jwks": jwks,
    }))
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["jwks"], jwks);
    let stored = h
        .oauth
        .store()
        .get_client(body["client_id"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stored.tls_client_auth,
        Some(TlsClientAuth::SelfSigned(vec![
            Sha256::digest(h.pki.self_signed.der()).into()
        ]))
    );
    let (status, body) = register(json!({
        "redirect_uris": [APP_REDIRECT],
        "token_endpoint_auth_method": "tls_client_auth",
        "tls_client_auth_san_dns": MTLS_DNS,
        "tls_client_auth_san_uri": "spiffe://tests.example/reporting",
    }))
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_client_metadata");
    h.stop().await;

    // Where no certificate arrives, the method is not offered, and not registered.
    let plain = start_oauth(|c| c).await;
    let response = plain
        .http
        .post(format!("{}/oauth/register", plain.base))
        .json(&json!({
            "redirect_uris": [APP_REDIRECT],
            "token_endpoint_auth_method": "tls_client_auth",
            "tls_client_auth_san_dns": MTLS_DNS,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client_metadata");
    plain.stop().await;
}

/// The proxy trusted to forward client certificates, and an address that is not.
const PROXY: &str = "127.0.0.2";
const NOT_A_PROXY: &str = "127.0.0.3";
/// The header the proxy forwards the certificate in (URL-escaped PEM, as nginx sends it).
const CERTIFICATE_HEADER: &str = "x-ssl-client-cert";

#[tokio::test]
async fn a_bound_token_replayed_through_a_proxy_header_nobody_trusts_is_refused() {
    let pki = Pki::new();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let url = format!("{base}/mcp");
    let oauth = with_mtls_clients(configure(&base, &url), &pki)
        .build()
        .await
        .unwrap();
    let running = Gatekeeper::new(Notes)
        .oauth(&oauth, &url)
        .trusted_proxies([PROXY])
        .client_certificate_header(ForwardedCertificate::pem_header(CERTIFICATE_HEADER))
        .serve_on(listener)
        .unwrap();
    // Through the proxy: the certificate it forwards is the request's.
    // Every byte but RFC 3986's unreserved characters as `%XX`, as nginx escapes it.
    let escaped: String = pki
        .service
        .cert
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    let from = |source: &str| {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(CERTIFICATE_HEADER, escaped.parse().unwrap());
        reqwest::Client::builder()
            .local_address(source.parse::<std::net::IpAddr>().unwrap())
            .default_headers(headers)
            .build()
            .unwrap()
    };
    let document = metadata(&from(PROXY), &base).await;
    assert_eq!(
        document["tls_client_certificate_bound_access_tokens"], true,
        "{document}"
    );
    let response = from(PROXY)
        .post(format!("{base}/oauth/token"))
        .form(&[("grant_type", "client_credentials"), ("client_id", MTLS_ID)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(claims_of(token)["cnf"]["x5t#S256"], x5t_s256(&pki.service));
    let read = |source: &str| {
        let mut mcp = Mcp::new(&url, Cred::Bearer(token.to_owned()), Version::V2026_07_28);
        mcp.http = from(source);
        async move { mcp.call("read", json!({})).await }
    };
    assert_eq!(read(PROXY).await.status, 200);
    // The same token and header from a peer that is no trusted proxy: the header is dropped,
    // so the request has no certificate and the bound token is refused.
    let reply = read(NOT_A_PROXY).await;
    assert_eq!(reply.status, 401, "{reply:#?}");
    assert!(
        challenge(&reply).contains("the request came without one"),
        "{reply:#?}"
    );
    // Nor can the token endpoint be fooled that way.
    let response = from(NOT_A_PROXY)
        .post(format!("{base}/oauth/token"))
        .form(&[("grant_type", "client_credentials"), ("client_id", MTLS_ID)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    running.shutdown().await.unwrap();
}
