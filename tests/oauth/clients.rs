//! Clients that introduce themselves: Dynamic Client Registration (RFC 7591) and Client ID
//! Metadata Documents, with every refusal, including the SSRF protections of the document
//! fetcher.
//!
//! Whether the server knows a client is probed at the token endpoint: an authorization-code
//! request with a made-up code answers `invalid_grant` for a known public client and
//! `invalid_client` for an unknown one.

use std::{
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::Body,
    extract::State,
    http::{Uri, header},
    response::{IntoResponse, Response},
    routing::get,
};
use mcp_gatekeeper::{AuditLog, oauth::ClientMetadataDocuments};
use serde_json::json;

use super::*;

/// The redirect URI every test client registers.
const REDIRECT: &str = "http://127.0.0.1/callback";

// ---------------------------------------------------------------------------------------------
// Dynamic Client Registration
// ---------------------------------------------------------------------------------------------

/// POSTs a registration request with a JSON body.
async fn register(h: &OAuthHarness, body: Value) -> (StatusCode, HeaderMap, Value) {
    register_raw(h, "application/json", body.to_string()).await
}

async fn register_raw(
    h: &OAuthHarness,
    content_type: &str,
    body: String,
) -> (StatusCode, HeaderMap, Value) {
    let response = h
        .http
        .post(format!("{}/oauth/register", h.base))
        .header(header::CONTENT_TYPE, content_type)
        .body(body)
        .send()
        .await
        .expect("registration endpoint answers");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, headers, body)
}

/// POSTs to the revocation endpoint with `client_secret_post` credentials, or HTTP Basic.
async fn revoke_as(h: &OAuthHarness, id: &str, secret: &str, basic: bool) -> StatusCode {
    let mut form = vec![("token", "not-a-token")];
    let mut request = h.http.post(format!("{}/oauth/revoke", h.base));
    if basic {
        request = request.basic_auth(id, Some(secret));
    } else {
        form.extend([("client_id", id), ("client_secret", secret)]);
    }
    request.form(&form).send().await.unwrap().status()
}

#[tokio::test]
async fn a_public_client_registers() {
    let h = start_oauth(|c| c).await;
    let (status, headers, body) = register(
        &h,
        json!({
            "redirect_uris": [REDIRECT],
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
            "client_name": "Inspector",
            "application_type": "native",
            "scope": "notes:read",
            "logo_uri": "https://ignored.example/logo.png",
        }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    assert!(body.get("client_secret").is_none(), "{body}");
    assert!(
        body.get("logo_uri").is_none(),
        "unknown metadata is not echoed"
    );
    assert_eq!(body["token_endpoint_auth_method"], "none");
    assert_eq!(body["redirect_uris"], json!([REDIRECT]));
    assert_eq!(
        body["grant_types"],
        json!(["authorization_code", "refresh_token"])
    );
    assert_eq!(body["response_types"], json!(["code"]));
    assert_eq!(body["client_name"], "Inspector");
    assert_eq!(body["application_type"], "native");
    assert_eq!(body["scope"], "notes:read");
    assert!(body["client_id_issued_at"].as_i64().unwrap() > 0);

    let id = body["client_id"].as_str().unwrap();
    let stored = h
        .oauth
        .store()
        .get_client(id)
        .await
        .unwrap()
        .expect("stored");
    assert_eq!(stored.secret_hash, None);
    assert_eq!(stored.name, "Inspector");
    assert_eq!(stored.role, None);
    assert_eq!(stored.allowed_scopes, ["notes:read"]);
    assert_eq!(stored.metadata_url, None);
    assert!(stored.self_registered, "nobody vouched for it");
    assert!(client_is_known(&h, id).await);
    h.stop().await;
}

#[tokio::test]
async fn defaults_give_a_confidential_client_with_every_scope() {
    let h = start_oauth(|c| c).await;
    let (status, _, body) = register(&h, json!({ "redirect_uris": [REDIRECT] })).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // RFC 7591 §2: client_secret_basic by default.
    assert_eq!(body["token_endpoint_auth_method"], "client_secret_basic");
    assert_eq!(body["grant_types"], json!(["authorization_code"]));
    assert_eq!(body["client_name"], "Unnamed client");
    assert_eq!(body["scope"], SCOPES.join(" "));
    assert!(body.get("application_type").is_none());
    let id = body["client_id"].as_str().unwrap();
    let secret = body["client_secret"].as_str().expect("a secret");
    assert_eq!(revoke_as(&h, id, secret, true).await, StatusCode::OK);
    assert_eq!(
        revoke_as(&h, id, "wrong-secret-0123456789", true).await,
        StatusCode::UNAUTHORIZED
    );
    h.stop().await;
}

#[tokio::test]
async fn a_confidential_client_gets_a_secret_that_authenticates() {
    let h = start_oauth(|c| c).await;
    let (status, headers, body) = register(
        &h,
        json!({ "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "client_secret_post" }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    assert_eq!(body["client_secret_expires_at"], 0);
    let id = body["client_id"].as_str().unwrap();
    let secret = body["client_secret"].as_str().expect("a secret");
    assert!(secret.len() >= 43, "256 bits");

    // Only the hash is stored.
    let stored = h.oauth.store().get_client(id).await.unwrap().unwrap();
    let expected: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
    assert_eq!(stored.secret_hash, Some(expected));
    assert_eq!(stored.token_endpoint_auth_method, "client_secret_post");
    assert!(!stored.grant_types.iter().any(|g| g == "client_credentials"));

    assert_eq!(revoke_as(&h, id, secret, false).await, StatusCode::OK);
    assert_eq!(
        revoke_as(&h, id, "wrong-secret-0123456789", false).await,
        StatusCode::UNAUTHORIZED
    );
    // The registered client cannot mint tokens without a user.
    let (status, _, body) = h
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", id),
            ("client_secret", secret),
        ])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "unauthorized_client");
    h.stop().await;
}

#[tokio::test]
async fn unacceptable_redirect_uris_are_refused() {
    let h = start_oauth(|c| c).await;
    for uri in [
        "http://evil.example/cb",
        "javascript:alert(document.cookie)",
        "com.example.app:/callback",
        "https://app.example/cb#fragment",
        "https://user:pw@app.example/cb",
    ] {
        let (status, headers, body) = register(
            &h,
            json!({ "redirect_uris": [uri], "token_endpoint_auth_method": "none" }),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
        assert_eq!(body["error"], "invalid_redirect_uri", "{uri}");
        assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    }
    let too_many: Vec<String> = (0..11)
        .map(|i| format!("https://app.example/cb{i}"))
        .collect();
    let (status, _, body) = register(&h, json!({ "redirect_uris": too_many })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_redirect_uri");
    let long = format!("https://app.example/{}", "a".repeat(2000));
    let (status, _, body) = register(&h, json!({ "redirect_uris": [long] })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_redirect_uri");
    h.stop().await;
}

#[tokio::test]
async fn invalid_metadata_is_refused() {
    let h = start_oauth(|c| c).await;
    let cases = [
        ("missing redirect_uris", json!({ "client_name": "x" })),
        (
            "redirect_uris not a list",
            json!({ "redirect_uris": REDIRECT }),
        ),
        (
            "client_credentials",
            json!({ "redirect_uris": [REDIRECT], "grant_types": ["client_credentials"] }),
        ),
        (
            "client_credentials among others",
            json!({
                "redirect_uris": [REDIRECT],
                "grant_types": ["authorization_code", "client_credentials"],
            }),
        ),
        (
            "implicit",
            json!({ "redirect_uris": [REDIRECT], "grant_types": ["implicit"] }),
        ),
        (
            "token response type",
            json!({ "redirect_uris": [REDIRECT], "response_types": ["token"] }),
        ),
        (
            "unknown scope",
            json!({ "redirect_uris": [REDIRECT], "scope": "notes:read notes:delete-everything" }),
        ),
        (
            "private_key_jwt",
            json!({ "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "private_key_jwt" }),
        ),
        (
            "name with a newline",
            json!({ "redirect_uris": [REDIRECT], "client_name": "App\nlevel=admin" }),
        ),
        (
            "name too long",
            json!({ "redirect_uris": [REDIRECT], "client_name": "x".repeat(201) }),
        ),
        (
            "application type",
            json!({ "redirect_uris": [REDIRECT], "application_type": "daemon" }),
        ),
        ("not an object", json!([REDIRECT])),
    ];
    for (what, body) in cases {
        let (status, _, answer) = register(&h, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {answer}");
        assert_eq!(answer["error"], "invalid_client_metadata", "{what}");
    }
    h.stop().await;
}

#[tokio::test]
async fn a_body_that_is_not_json_is_refused() {
    let h = start_oauth(|c| c).await;
    let json_text = json!({ "redirect_uris": [REDIRECT] }).to_string();
    let cases = [
        ("text/plain", json_text.clone()),
        (
            "application/x-www-form-urlencoded",
            "redirect_uris=x".into(),
        ),
        ("application/json", "{\"redirect_uris\": [".into()),
        ("application/json", String::new()),
    ];
    for (content_type, body) in cases {
        let (status, headers, answer) = register_raw(&h, content_type, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{content_type} {body}");
        assert_eq!(answer["error"], "invalid_client_metadata");
        assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    }
    h.stop().await;
}

#[tokio::test]
async fn a_registration_flood_is_cut_off() {
    let h = start_oauth(|c| c).await;
    let request = json!({ "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none" });
    for i in 0..30 {
        let (status, _, body) = register(&h, request.clone()).await;
        assert_eq!(status, StatusCode::CREATED, "registration {i}: {body}");
    }
    let (status, headers, body) = register(&h, request.clone()).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    let retry: u64 = headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry > 0 && retry <= 3600, "{retry}");
    assert!(body.get("client_id").is_none());
    h.stop().await;
}

/// A client whose connections come from `source`, a loopback address (on Linux every address
/// of 127.0.0.0/8 is local, so each test "host" can have its own address and network).
fn client_from(source: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(source.parse::<std::net::IpAddr>().unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Registers a public client from `http`'s address; the status and `Retry-After`, if any.
async fn register_from(h: &OAuthHarness, http: &reqwest::Client) -> (StatusCode, Option<u64>) {
    let response = http
        .post(format!("{}/oauth/register", h.base))
        .json(&json!({ "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none" }))
        .send()
        .await
        .expect("registration endpoint answers");
    let retry_after = response
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok()?.parse().ok());
    (response.status(), retry_after)
}

#[tokio::test]
async fn registration_limits_count_per_address_and_per_network() {
    let h = start_oauth(|c| c).await;
    // Four addresses of 127.0.1.0/24 register 30 clients each; the first one then hits its own
    // limit without stopping its neighbours.
    for host in 1..=4 {
        let http = client_from(&format!("127.0.1.{host}"));
        for i in 0..30 {
            let (status, _) = register_from(&h, &http).await;
            assert_eq!(
                status,
                StatusCode::CREATED,
                "127.0.1.{host}, registration {i}"
            );
        }
        if host == 1 {
            let (status, retry_after) = register_from(&h, &http).await;
            assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
            assert!(
                retry_after.is_some_and(|s| s > 0 && s <= 3600),
                "{retry_after:?}"
            );
        }
    }
    // The /24 has spent its 120: a fresh address in it is refused too.
    let (status, retry_after) = register_from(&h, &client_from("127.0.1.5")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        retry_after.is_some_and(|s| s > 0 && s <= 3600),
        "{retry_after:?}"
    );
    // Another network is not affected by either.
    let (status, _) = register_from(&h, &client_from("127.0.2.1")).await;
    assert_eq!(status, StatusCode::CREATED);
    h.stop().await;
}

#[tokio::test]
async fn an_invalid_request_of_a_self_registered_client_is_never_redirected() {
    let h = start_oauth(|c| c).await;
    let (status, _, body) = register(
        &h,
        json!({
            "redirect_uris": ["https://attacker.example/landing"],
            "token_endpoint_auth_method": "none",
        }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["client_id"].as_str().unwrap();
    let authorize = |client_id: &str| {
        let mut url = url::Url::parse(&format!("{}/oauth/authorize", h.base)).unwrap();
        url.query_pairs_mut()
            .append_pair("client_id", client_id)
            .append_pair("response_type", "x");
        url
    };
    // Nobody vouched for the attacker's redirect URI: the error is shown here, not sent there.
    let response = h.http.get(authorize(id)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.headers().get(header::LOCATION).is_none());
    assert!(
        response.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let page = response.text().await.unwrap();
    assert!(page.contains("response_type"), "{page}");

    // A configured client keeps RFC 6749's error redirect to its (vouched-for) redirect URI.
    let response = h.http.get(authorize(WEB_ID)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let location = response.headers()[header::LOCATION].to_str().unwrap();
    let location = url::Url::parse(location).unwrap();
    assert!(location.as_str().starts_with(WEB_REDIRECT), "{location}");
    assert!(
        location
            .query_pairs()
            .any(|(n, v)| n == "error" && v == "unsupported_response_type"),
        "{location}"
    );
    h.stop().await;
}

#[tokio::test]
async fn registration_can_be_turned_off() {
    let h = start_oauth(|c| c.dynamic_registration(false)).await;
    let (status, _, _) = register(&h, json!({ "redirect_uris": [REDIRECT] })).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let metadata = server_metadata(&h).await;
    assert!(
        metadata.get("registration_endpoint").is_none(),
        "{metadata}"
    );
    h.stop().await;
}

#[tokio::test]
async fn the_metadata_advertises_registration_and_documents() {
    let h = start_oauth(|c| c).await;
    let metadata = server_metadata(&h).await;
    assert_eq!(
        metadata["registration_endpoint"],
        format!("{}/oauth/register", h.base)
    );
    assert_eq!(metadata["client_id_metadata_document_supported"], true);
    h.stop().await;

    let h = start_oauth(|c| c.client_metadata_documents(None)).await;
    assert_eq!(
        server_metadata(&h).await["client_id_metadata_document_supported"],
        false
    );
    h.stop().await;
}

async fn server_metadata(h: &OAuthHarness) -> Value {
    h.http
        .get(h.oauth.metadata_url())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// Client ID Metadata Documents
// ---------------------------------------------------------------------------------------------

/// Whether the server knows `client_id` as a public client (see the module documentation).
async fn client_is_known(h: &OAuthHarness, client_id: &str) -> bool {
    let (verifier, _) = pkce();
    let (status, _, body) = h
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", "not-a-code-issued-by-this-server"),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &verifier),
            ("client_id", client_id),
        ])
        .await;
    match (status, body["error"].as_str()) {
        (StatusCode::BAD_REQUEST, Some("invalid_grant")) => true,
        (StatusCode::UNAUTHORIZED, Some("invalid_client")) => false,
        other => panic!("unexpected token endpoint answer {other:?}: {body}"),
    }
}

/// How a test document server answers `/client.json`.
#[derive(Clone, Copy)]
enum Serve {
    /// A valid document.
    Valid,
    /// A valid document, with `Cache-Control: max-age=…`.
    ValidFor(u64),
    /// 302 to `/moved.json`, which serves a valid document for the original URL.
    Redirect,
    /// A valid document padded beyond 5 KiB, with a `Content-Length`.
    Oversized,
    /// The same, streamed in chunks without a `Content-Length`.
    OversizedStreamed,
    /// A document naming another client id.
    Mismatch,
    /// A document asking for `client_secret_basic`.
    SecretMethod,
    /// A valid document, after `delay`.
    Slow(Duration),
    /// A valid document served as `text/plain`.
    NotJson,
}

/// A document server on loopback: the document URL and the number of requests it received.
struct DocServer {
    url: String,
    hits: Arc<AtomicUsize>,
}

#[derive(Clone)]
struct DocState {
    serve: Serve,
    url: String,
    hits: Arc<AtomicUsize>,
}

async fn doc_server(serve: Serve) -> DocServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/client.json", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let state = DocState {
        serve,
        url: url.clone(),
        hits: hits.clone(),
    };
    let app = Router::new()
        .route("/client.json", get(serve_document))
        .route("/moved.json", get(serve_document))
        .with_state(state);
    tokio::spawn(async move { axum::serve(listener, app).await });
    DocServer { url, hits }
}

fn document(client_id: &str) -> Value {
    json!({
        "client_id": client_id,
        "client_name": "Document App",
        "redirect_uris": [REDIRECT],
        "grant_types": ["authorization_code", "refresh_token"],
        "token_endpoint_auth_method": "none",
    })
}

fn json_response(body: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn serve_document(State(state): State<DocState>, uri: Uri) -> Response {
    state.hits.fetch_add(1, Ordering::SeqCst);
    let valid = document(&state.url);
    let padded = || {
        let mut doc = valid.clone();
        doc["padding"] = json!("x".repeat(6 * 1024));
        doc.to_string()
    };
    match state.serve {
        Serve::Valid => json_response(valid.to_string()),
        Serve::ValidFor(seconds) => (
            [
                (header::CONTENT_TYPE, "application/json".to_owned()),
                (header::CACHE_CONTROL, format!("max-age={seconds}")),
            ],
            valid.to_string(),
        )
            .into_response(),
        Serve::Redirect if uri.path() == "/client.json" => (
            StatusCode::FOUND,
            [(header::LOCATION, "/moved.json")],
            "moved",
        )
            .into_response(),
        Serve::Redirect => json_response(valid.to_string()),
        Serve::Oversized => json_response(padded()),
        Serve::OversizedStreamed => {
            let body = padded().into_bytes();
            let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
                body.chunks(512).map(|c| Ok(c.to_vec())).collect();
            (
                [(header::CONTENT_TYPE, "application/json")],
                Body::from_stream(futures::stream::iter(chunks)),
            )
                .into_response()
        }
        Serve::Mismatch => {
            json_response(document("https://trusted.example/client.json").to_string())
        }
        Serve::SecretMethod => {
            let mut doc = valid;
            doc["token_endpoint_auth_method"] = json!("client_secret_basic");
            json_response(doc.to_string())
        }
        Serve::Slow(delay) => {
            tokio::time::sleep(delay).await;
            json_response(valid.to_string())
        }
        Serve::NotJson => {
            ([(header::CONTENT_TYPE, "text/plain")], valid.to_string()).into_response()
        }
    }
}

/// A fresh audit file for one test.
fn audit_path(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mcpgk-clients-it-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{test}.jsonl"));
    let _ = std::fs::remove_file(&path);
    path
}

/// The reason of the `registration` record for `client_id`, once the audit writer wrote it.
async fn refusal_reason(path: &std::path::Path, client_id: &str) -> String {
    for _ in 0..250 {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let reason = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|r| {
                r["event"] == "registration"
                    && r["client_id"] == client_id
                    && r["outcome"] == "denied"
            })
            .and_then(|r| r["reason"].as_str().map(str::to_owned));
        if let Some(reason) = reason {
            return reason;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no refusal of {client_id} was audited");
}

/// An authorization server that may fetch test documents over http from loopback, auditing to
/// `audit`.
async fn start_lenient(audit: &std::path::Path, timeout: Option<Duration>) -> OAuthHarness {
    let mut documents = ClientMetadataDocuments::default()
        .allow_private_addresses()
        .insecure_allow_http();
    if let Some(timeout) = timeout {
        documents = documents.timeout(timeout);
    }
    let log = AuditLog::json_lines(audit).unwrap();
    start_oauth(move |c| c.client_metadata_documents(Some(documents)).audit(log)).await
}

/// Refusal by a lenient server: the client stays unknown, for `reason`.
async fn assert_refused(serve: Serve, reason: &str) -> DocServer {
    // One file per call: two tests refused for the same reason run in parallel, and a shared
    // path would let the second remove the file the first is still writing.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = audit_path(&format!("{reason}-{call}"));
    let docs = doc_server(serve).await;
    let h = start_lenient(&path, None).await;
    assert!(!client_is_known(&h, &docs.url).await, "{reason}");
    assert_eq!(refusal_reason(&path, &docs.url).await, reason);
    assert!(
        h.oauth
            .store()
            .get_client(&docs.url)
            .await
            .unwrap()
            .is_none(),
        "a refused document is not stored"
    );
    h.stop().await;
    docs
}

#[tokio::test]
async fn a_document_client_is_fetched_once_and_cached() {
    let docs = doc_server(Serve::Valid).await;
    let path = audit_path("cached");
    let h = start_lenient(&path, None).await;
    assert!(client_is_known(&h, &docs.url).await);
    let stored = h
        .oauth
        .store()
        .get_client(&docs.url)
        .await
        .unwrap()
        .expect("stored");
    assert_eq!(stored.metadata_url.as_deref(), Some(docs.url.as_str()));
    assert!(!stored.self_registered, "recognised by its metadata_url");
    assert_eq!(stored.name, "Document App");
    assert_eq!(stored.secret_hash, None);
    assert_eq!(stored.redirect_uris, [REDIRECT]);
    assert_eq!(stored.allowed_scopes, SCOPES);
    assert!(client_is_known(&h, &docs.url).await);
    assert!(client_is_known(&h, &docs.url).await);
    assert_eq!(docs.hits.load(Ordering::SeqCst), 1, "served from the store");
    h.stop().await;
}

#[tokio::test]
async fn a_document_client_reaches_the_login_page() {
    let docs = doc_server(Serve::ValidFor(600)).await;
    let path = audit_path("authorize");
    let h = start_lenient(&path, None).await;
    let (_, challenge) = pkce();
    let mut authorize = url::Url::parse(&format!("{}/oauth/authorize", h.base)).unwrap();
    authorize
        .query_pairs_mut()
        .append_pair("client_id", &docs.url)
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("response_type", "code")
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256")
        .append_pair("state", "x");
    let response = h.http.get(authorize.clone()).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let page = response.text().await.unwrap();
    assert!(page.contains("Document App"), "{page}");
    assert_eq!(docs.hits.load(Ordering::SeqCst), 1);

    // The document's redirect URI is the document author's word only: an invalid request is
    // answered here, never redirected there.
    authorize
        .query_pairs_mut()
        .clear()
        .append_pair("client_id", &docs.url)
        .append_pair("response_type", "x");
    let response = h.http.get(authorize).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.headers().get(header::LOCATION).is_none());
    h.stop().await;
}

/// A listener that counts the connections it accepts (and drops them).
async fn counting_listener() -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = connections.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            drop(socket);
        }
    });
    (port, connections)
}

#[tokio::test]
async fn by_default_loopback_documents_are_refused_without_connecting() {
    let (port, connections) = counting_listener().await;
    let path = audit_path("default-loopback");
    let log = AuditLog::json_lines(&path).unwrap();
    // The default configuration (documents on, SSRF protections on).
    let h = start_oauth(move |c| c.audit(log)).await;
    for url in [
        format!("https://127.0.0.1:{port}/client.json"),
        format!("https://localhost:{port}/client.json"),
        // IPv4-mapped IPv6 (written as the parser writes it: ids are compared in canonical form)
        format!("https://[::ffff:7f00:1]:{port}/client.json"),
        format!("https://[::1]:{port}/client.json"),
    ] {
        assert!(!client_is_known(&h, &url).await, "{url}");
        assert_eq!(
            refusal_reason(&path, &url).await,
            "address_refused",
            "{url}"
        );
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        connections.load(Ordering::SeqCst),
        0,
        "no connection was made"
    );
    h.stop().await;
}

#[tokio::test]
async fn without_private_addresses_a_loopback_document_server_gets_no_request() {
    let docs = doc_server(Serve::Valid).await;
    let path = audit_path("http-loopback");
    let log = AuditLog::json_lines(&path).unwrap();
    // http is allowed, so only the address rules stand between the server and the document.
    let documents = ClientMetadataDocuments::default().insecure_allow_http();
    let h = start_oauth(move |c| c.client_metadata_documents(Some(documents)).audit(log)).await;
    let by_name = docs.url.replace("127.0.0.1", "localhost");
    for url in [docs.url.clone(), by_name] {
        assert!(!client_is_known(&h, &url).await, "{url}");
        assert_eq!(
            refusal_reason(&path, &url).await,
            "address_refused",
            "{url}"
        );
    }
    assert_eq!(
        docs.hits.load(Ordering::SeqCst),
        0,
        "the document server got no request"
    );
    h.stop().await;
}

#[tokio::test]
async fn the_cloud_metadata_address_is_refused_without_connecting() {
    let path = audit_path("metadata-ip");
    let log = AuditLog::json_lines(&path).unwrap();
    let h = start_oauth(move |c| c.audit(log)).await;
    for url in [
        "https://169.254.169.254/latest/meta-data/iam",
        "https://[fd00:ec2::254]/latest/meta-data/iam",
        "https://[64:ff9b::a9fe:a9fe]/latest/meta-data/iam",
        "https://10.0.0.1/client.json",
        "https://[fe80::1]/client.json",
    ] {
        let started = Instant::now();
        assert!(!client_is_known(&h, url).await, "{url}");
        // Refused before any connection attempt: no 5-second connect timeout ran.
        assert!(started.elapsed() < Duration::from_secs(2), "{url}");
        assert_eq!(refusal_reason(&path, url).await, "address_refused", "{url}");
    }
    h.stop().await;
}

#[tokio::test]
async fn a_redirecting_document_server_is_refused() {
    let docs = assert_refused(Serve::Redirect, "redirect").await;
    assert_eq!(
        docs.hits.load(Ordering::SeqCst),
        1,
        "the redirect was not followed"
    );
}

#[tokio::test]
async fn an_oversized_document_is_refused() {
    assert_refused(Serve::Oversized, "too_large").await;
}

#[tokio::test]
async fn an_oversized_document_without_length_is_refused() {
    assert_refused(Serve::OversizedStreamed, "too_large").await;
}

#[tokio::test]
async fn a_document_naming_another_client_is_refused() {
    assert_refused(Serve::Mismatch, "client_id_mismatch").await;
}

#[tokio::test]
async fn a_document_asking_for_a_secret_is_refused() {
    assert_refused(Serve::SecretMethod, "secret_auth_method").await;
}

#[tokio::test]
async fn a_document_not_served_as_json_is_refused() {
    assert_refused(Serve::NotJson, "content_type").await;
}

#[tokio::test]
async fn a_slow_document_server_is_refused() {
    let docs = doc_server(Serve::Slow(Duration::from_secs(5))).await;
    let path = audit_path("slow");
    let h = start_lenient(&path, Some(Duration::from_secs(1))).await;
    let started = Instant::now();
    assert!(!client_is_known(&h, &docs.url).await);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(refusal_reason(&path, &docs.url).await, "timeout");
    h.stop().await;
}

#[tokio::test]
async fn documents_are_not_fetched_when_turned_off() {
    let docs = doc_server(Serve::Valid).await;
    let path = audit_path("off");
    let h = start_lenient(&path, None).await;
    assert!(client_is_known(&h, &docs.url).await);
    let store = h.oauth.store().clone();
    h.stop().await;

    // The same store, documents off: the stored document client is no longer served.
    let h = start_oauth_with(store, None, |c| c.client_metadata_documents(None)).await;
    assert!(!client_is_known(&h, &docs.url).await);
    assert_eq!(docs.hits.load(Ordering::SeqCst), 1);
    h.stop().await;
}
