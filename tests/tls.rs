//! HTTPS and mutual TLS over real loopback connections: certificates made by the test PKI
//! (rcgen) and by `openssl`, clients from reqwest, curl, Python's `ssl`, a raw rustls + hyper
//! HTTP/2 client and rmcp's client.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Command,
    sync::Arc,
    time::Duration,
};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use mcp_gatekeeper::{
    ApiKey, ApiKeys, Gatekeeper, RunningServer, ServeError, Tls, auth::ClientCertificates,
};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::common::{
    Cred, Mcp, Version,
    certs::{ClientSpec, Issued, TestCa},
    example_binary,
    process::CapturedProcess,
};
use crate::rbac::DataTools;

const ROLE_RULES: &str = "spiffe://tests.example/viewer=viewer,\
                          spiffe://tests.example/editor=editor,\
                          spiffe://tests.example/ops/*=admin";

/// A CA, the server's certificate and a client certificate per role.
struct Pki {
    ca: TestCa,
    server: Issued,
    viewer: Issued,
    editor: Issued,
    admin: Issued,
}

impl Pki {
    fn new() -> Self {
        let mut ca = TestCa::new("tests client and server CA");
        let server = ca.server();
        let viewer = ca.client(&ClientSpec::new("viewer").uri("spiffe://tests.example/viewer"));
        let editor = ca.client(&ClientSpec::new("editor").uri("spiffe://tests.example/editor"));
        let admin = ca.client(&ClientSpec::new("ops").uri("spiffe://tests.example/ops/deployer"));
        Self {
            ca,
            server,
            viewer,
            editor,
            admin,
        }
    }

    /// HTTPS with this PKI's server certificate, client certificates from its CA required.
    fn tls(&self) -> Tls {
        Tls::from_pem(self.server.cert.clone(), self.server.key.clone())
            .client_ca_pem(self.ca.pem.clone())
    }
}

/// A reqwest client trusting `ca` only, presenting `identity` if given.
fn https_client(ca: &str, identity: Option<&Issued>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca.as_bytes()).unwrap()])
        .tls_info(true);
    if let Some(identity) = identity {
        builder = builder
            .identity(reqwest::Identity::from_pem(identity.identity_pem().as_bytes()).unwrap());
    }
    builder.build().unwrap()
}

fn server_with(tls: Tls, rules: &str) -> Gatekeeper<DataTools> {
    Gatekeeper::new(DataTools::default())
        .authenticate(ClientCertificates::new().parse_roles(rules).unwrap())
        .tls(tls)
}

async fn start(server: Gatekeeper<DataTools>) -> (RunningServer, String) {
    let running = server.bind("127.0.0.1:0").await.expect("server starts");
    let url = format!("https://localhost:{}/mcp", running.local_addr().port());
    (running, url)
}

/// An MCP client speaking 2026-07-28 (no session) with `http` and no header credential.
fn mcp(url: &str, http: reqwest::Client) -> Mcp {
    let mut mcp = Mcp::new(url, Cred::None, Version::V2026_07_28);
    mcp.http = http;
    mcp
}

/// Whether a request with `client` gets any HTTP answer (false: the TLS handshake failed).
async fn handshake_succeeds(client: &reqwest::Client, url: &str) -> bool {
    client.get(url).send().await.is_ok()
}

#[tokio::test]
async fn only_a_valid_client_certificate_from_a_trusted_ca_completes_the_handshake() {
    let mut pki = Pki::new();
    let expired = pki.ca.client(
        &ClientSpec::new("late")
            .uri("spiffe://tests.example/viewer")
            .expired(),
    );
    let future = pki.ca.client(
        &ClientSpec::new("early")
            .uri("spiffe://tests.example/viewer")
            .not_yet_valid(),
    );
    let server_only = pki.ca.client(
        &ClientSpec::new("server-usage")
            .uri("spiffe://tests.example/viewer")
            .server_auth_only(),
    );
    let revoked = pki
        .ca
        .client(&ClientSpec::new("revoked").uri("spiffe://tests.example/viewer"));
    let mut other_ca = TestCa::new("someone else's CA");
    let foreign = other_ca.client(&ClientSpec::new("foreign").uri("spiffe://tests.example/viewer"));
    let tls = pki.tls().crl_pem(pki.ca.crl(&[revoked.serial]));
    let (running, url) = start(server_with(tls, ROLE_RULES)).await;

    for (what, identity) in [
        ("no certificate", None),
        ("another CA's certificate", Some(&foreign)),
        ("an expired certificate", Some(&expired)),
        ("a certificate not yet valid", Some(&future)),
        ("a certificate the CRL revokes", Some(&revoked)),
        (
            "a certificate for server authentication only",
            Some(&server_only),
        ),
    ] {
        let client = https_client(&pki.ca.pem, identity);
        assert!(
            !handshake_succeeds(&client, &url).await,
            "{what} got through the handshake"
        );
    }
    let viewer = mcp(&url, https_client(&pki.ca.pem, Some(&pki.viewer)));
    let reply = viewer.call("read-data", json!({ "key": "a" })).await;
    assert_eq!(
        reply.result()["content"][0]["text"],
        "welcome",
        "{reply:#?}"
    );
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn each_roles_certificate_gets_the_hierarchys_answers() {
    let pki = Pki::new();
    let (running, url) = start(server_with(pki.tls(), ROLE_RULES)).await;
    let as_role = |identity: &Issued| mcp(&url, https_client(&pki.ca.pem, Some(identity)));
    let (viewer, editor, admin) = (
        as_role(&pki.viewer),
        as_role(&pki.editor),
        as_role(&pki.admin),
    );

    assert!(
        !viewer
            .call("read-data", json!({ "key": "a" }))
            .await
            .is_tool_error()
    );
    let denied = viewer
        .call("write-data", json!({ "key": "k", "value": "v" }))
        .await;
    assert_eq!(denied.error_code(), Some(-32003), "{denied:#?}");

    let written = editor
        .call("write-data", json!({ "key": "k", "value": "v" }))
        .await;
    assert_eq!(
        written.result()["structuredContent"]["written_by"],
        "spiffe://tests.example/editor",
        "the subject is the SAN URI: {written:#?}"
    );
    let denied = editor.call("delete-data", json!({ "key": "k" })).await;
    assert_eq!(denied.error_code(), Some(-32003), "{denied:#?}");

    // The admin rule is a prefix: spiffe://tests.example/ops/*.
    let deleted = admin.call("delete-data", json!({ "key": "k" })).await;
    assert_eq!(
        deleted.result()["content"][0]["text"],
        "deleted `k`",
        "{deleted:#?}"
    );
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_certificate_no_rule_names_authenticates_with_no_role() {
    let mut pki = Pki::new();
    let stranger = pki
        .ca
        .client(&ClientSpec::new("stranger").dns("stranger.tests.example"));
    let (running, url) = start(server_with(pki.tls(), ROLE_RULES)).await;
    let client = mcp(&url, https_client(&pki.ca.pem, Some(&stranger)));
    let reply = client.call("read-data", json!({ "key": "a" })).await;
    assert_eq!(
        reply.error_code(),
        Some(-32003),
        "deny by default: {reply:#?}"
    );
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn optional_client_certificates_leave_room_for_api_keys_but_not_for_bad_certificates() {
    let mut pki = Pki::new();
    let mut other_ca = TestCa::new("someone else's CA");
    let foreign = other_ca.client(&ClientSpec::new("foreign").uri("spiffe://tests.example/ops/x"));
    let expired = pki.ca.client(
        &ClientSpec::new("late")
            .uri("spiffe://tests.example/ops/x")
            .expired(),
    );
    let server = Gatekeeper::new(DataTools::default())
        .authenticate(ClientCertificates::new().parse_roles(ROLE_RULES).unwrap())
        .authenticate(
            ApiKeys::new()
                .with_key(ApiKey::new("tls-editor", "tls-editor-key-0000000001").role("editor")),
        )
        .tls(pki.tls().client_certificate_optional());
    let (running, url) = start(server).await;

    // No certificate, an API key: the key decides.
    let mut keyed = Mcp::new(
        &url,
        Cred::ApiKey("tls-editor-key-0000000001".into()),
        Version::V2026_07_28,
    );
    keyed.http = https_client(&pki.ca.pem, None);
    let written = keyed
        .call("write-data", json!({ "key": "k", "value": "v" }))
        .await;
    assert!(!written.is_tool_error(), "{written:#?}");
    // No certificate, no key: 401.
    let anonymous = mcp(&url, https_client(&pki.ca.pem, None));
    let reply = anonymous.call("read-data", json!({ "key": "a" })).await;
    assert_eq!(reply.status, 401, "{reply:#?}");
    // A certificate must still be a valid one.
    for identity in [&foreign, &expired] {
        let client = https_client(&pki.ca.pem, Some(identity));
        assert!(!handshake_succeeds(&client, &url).await);
    }
    // And a valid one is the caller.
    let admin = mcp(&url, https_client(&pki.ca.pem, Some(&pki.admin)));
    let deleted = admin.call("delete-data", json!({ "key": "k" })).await;
    assert!(!deleted.is_tool_error(), "{deleted:#?}");
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn responses_over_tls_carry_hsts_and_plain_http_does_not() {
    let pki = Pki::new();
    let (running, url) = start(server_with(pki.tls(), ROLE_RULES)).await;
    let client = https_client(&pki.ca.pem, Some(&pki.viewer));
    let response = client.get(&url).send().await.unwrap();
    assert_eq!(
        response.headers()["strict-transport-security"],
        "max-age=31536000"
    );
    running.shutdown().await.unwrap();

    let shorter = server_with(
        pki.tls().hsts_max_age(Some(Duration::from_secs(600))),
        ROLE_RULES,
    );
    let (running, url) = start(shorter).await;
    let response = client.get(&url).send().await.unwrap();
    assert_eq!(
        response.headers()["strict-transport-security"],
        "max-age=600"
    );
    running.shutdown().await.unwrap();

    let plain = crate::common::start_rbac(false).await;
    let response = reqwest::get(&plain.url).await.unwrap();
    assert!(
        response
            .headers()
            .get("strict-transport-security")
            .is_none()
    );
    plain.stop().await;
}

/// The DER of the certificate the server presented on `client`'s connection.
async fn served_certificate(client: &reqwest::Client, url: &str) -> Vec<u8> {
    let response = client.get(url).send().await.expect("handshake");
    response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|info| info.peer_certificate())
        .expect("the server's certificate")
        .to_vec()
}

/// Waits until `url` serves the certificate `want` (with fresh connections), 10 s at most.
async fn wait_for_certificate(ca: &str, identity: &Issued, url: &str, want: &[u8]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let client = https_client(ca, Some(identity));
        if served_certificate(&client, url).await == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new certificate is not served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn temp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gatekeeper-tls-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Replaces `path`'s contents in one step (a rename), as deployment tools do.
fn replace_file(path: &Path, text: &str) {
    let staged = path.with_extension("staged");
    std::fs::write(&staged, text).unwrap();
    std::fs::rename(&staged, path).unwrap();
}

#[tokio::test]
async fn a_changed_certificate_file_is_served_and_a_corrupt_one_keeps_the_old() {
    let mut pki = Pki::new();
    let dir = temp_dir("reload");
    let (cert_path, key_path) = pki.server.write(&dir, "server");
    let ca_path = dir.join("ca.pem");
    std::fs::write(&ca_path, &pki.ca.pem).unwrap();
    let tls = Tls::from_pem_files(&cert_path, &key_path)
        .client_ca_file(&ca_path)
        .reload_interval(Some(Duration::from_millis(100)));
    let (running, url) = start(server_with(tls, ROLE_RULES)).await;
    let first = pki.server.der();
    assert_eq!(
        served_certificate(&https_client(&pki.ca.pem, Some(&pki.viewer)), &url).await,
        first
    );

    // A new certificate and key: served to new connections without a restart.
    let renewed = pki.ca.server();
    replace_file(&key_path, &renewed.key);
    replace_file(&cert_path, &renewed.cert);
    wait_for_certificate(&pki.ca.pem, &pki.viewer, &url, &renewed.der()).await;

    // A corrupt certificate file (half written, or a key that does not match): refused, the
    // renewed certificate stays in service.
    replace_file(&cert_path, "-----BEGIN CERTIFICATE-----\nnot base64\n");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let client = https_client(&pki.ca.pem, Some(&pki.viewer));
    assert_eq!(served_certificate(&client, &url).await, renewed.der());
    let other = pki.ca.server();
    replace_file(&cert_path, &other.cert); // with the renewed key: no match
    tokio::time::sleep(Duration::from_millis(500)).await;
    let client = https_client(&pki.ca.pem, Some(&pki.viewer));
    assert_eq!(served_certificate(&client, &url).await, renewed.der());
    let reply = mcp(&url, client)
        .call("read-data", json!({ "key": "a" }))
        .await;
    assert!(!reply.is_tool_error(), "{reply:#?}");
    running.shutdown().await.unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn sighup_reloads_the_files_and_a_new_crl_refuses_a_certificate() {
    let pki = Pki::new();
    let dir = temp_dir("sighup");
    let (cert_path, key_path) = pki.server.write(&dir, "server");
    let ca_path = dir.join("ca.pem");
    let crl_path = dir.join("clients.crl");
    std::fs::write(&ca_path, &pki.ca.pem).unwrap();
    std::fs::write(&crl_path, pki.ca.crl(&[])).unwrap();
    // No polling: only SIGHUP reloads.
    let tls = Tls::from_pem_files(&cert_path, &key_path)
        .client_ca_file(&ca_path)
        .crl_file(&crl_path)
        .reload_interval(None);
    let (running, url) = start(server_with(tls, ROLE_RULES)).await;
    let viewer = https_client(&pki.ca.pem, Some(&pki.viewer));
    assert!(handshake_succeeds(&viewer, &url).await);

    // The viewer's certificate is revoked: nothing changes until SIGHUP.
    std::fs::write(&crl_path, pki.ca.crl(&[pki.viewer.serial])).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(handshake_succeeds(&https_client(&pki.ca.pem, Some(&pki.viewer)), &url).await);
    let status = Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while handshake_succeeds(&https_client(&pki.ca.pem, Some(&pki.viewer)), &url).await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the revocation was not loaded on SIGHUP"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Others still get in.
    assert!(handshake_succeeds(&https_client(&pki.ca.pem, Some(&pki.editor)), &url).await);
    running.shutdown().await.unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_stalled_or_garbage_handshake_is_closed_and_never_stops_the_accept_loop() {
    let pki = Pki::new();
    let tls = pki.tls().handshake_timeout(Duration::from_millis(300));
    let (running, url) = start(server_with(tls, ROLE_RULES)).await;
    let addr = running.local_addr();

    // Silent after connecting: closed once the handshake timeout passes.
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 64];
    let closed = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "a silent connection stayed open: {closed:?}"
    );
    // Plain HTTP and random bytes on the TLS port: refused, and the server goes on.
    for garbage in [
        b"GET /mcp HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(),
        (0..4096).map(|i| (i * 7 % 251) as u8).collect(),
    ] {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let _ = stream.write_all(&garbage).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await;
    }
    let viewer = mcp(&url, https_client(&pki.ca.pem, Some(&pki.viewer)));
    let reply = viewer.call("read-data", json!({ "key": "a" })).await;
    assert!(!reply.is_tool_error(), "{reply:#?}");
    running.shutdown().await.unwrap();
}

/// A rustls client configuration trusting `ca` and presenting `identity`, offering `alpn`.
fn rustls_client(ca: &str, identity: &Issued, alpn: &[&[u8]]) -> rustls::ClientConfig {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let chain = CertificateDer::pem_slice_iter(identity.cert.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(identity.key.as_bytes()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, key)
    .unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

async fn tls_connect(
    addr: SocketAddr,
    config: rustls::ClientConfig,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let stream = TcpStream::connect(addr).await.unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect("localhost".try_into().unwrap(), stream)
        .await
        .expect("TLS handshake")
}

#[tokio::test]
async fn http2_and_http1_are_chosen_by_alpn_and_tls_below_1_2_is_refused() {
    let pki = Pki::new();
    let (running, _) = start(server_with(pki.tls(), ROLE_RULES)).await;
    let addr = running.local_addr();

    let stream = tls_connect(
        addr,
        rustls_client(&pki.ca.pem, &pki.viewer, &[b"h2", b"http/1.1"]),
    )
    .await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("HTTP/2 over TLS");
    tokio::spawn(connection);
    let body = json!({
        "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {
            "name": "read-data", "arguments": { "key": "a" },
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {},
                "io.modelcontextprotocol/clientInfo": { "name": "h2", "version": "0" },
            },
        },
    });
    let request = http::Request::post(format!("https://localhost:{}/mcp", addr.port()))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "read-data")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("strict-transport-security"));
    let text = String::from_utf8(
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    assert!(text.contains("welcome"), "{text}");

    let stream = tls_connect(
        addr,
        rustls_client(&pki.ca.pem, &pki.viewer, &[b"http/1.1"]),
    )
    .await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));

    // TLS 1.0 and 1.1 do not exist in rustls; ask openssl for them.
    // (tokio's Command: the server runs on this test's thread, which must not block.)
    let output = tokio::process::Command::new("openssl")
        .args(["s_client", "-connect", &addr.to_string(), "-tls1_1"])
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    assert!(!output.status.success(), "a TLS 1.1 handshake succeeded");
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_configuration_is_checked_when_the_server_starts() {
    let mut pki = Pki::new();
    let other = pki.ca.server();
    let start = |tls: Tls| async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        match server_with(tls, ROLE_RULES).serve_on(listener) {
            Ok(_) => panic!("started"),
            Err(ServeError::Config(error)) => error.to_string(),
            Err(other) => panic!("{other}"),
        }
    };
    let missing = start(Tls::from_pem_files(
        "/nonexistent/server.pem",
        "/nonexistent/server.key",
    ))
    .await;
    assert!(missing.contains("/nonexistent/server.pem"), "{missing}");
    let mismatched = start(Tls::from_pem(pki.server.cert.clone(), other.key.clone())).await;
    assert!(mismatched.contains("key"), "{mismatched}");
    let no_ca = start(
        Tls::from_pem(pki.server.cert.clone(), pki.server.key.clone())
            .client_certificate_optional(),
    )
    .await;
    assert!(no_ca.contains("client CA"), "{no_ca}");
    let not_a_ca = start(pki.tls().client_ca_pem("hello")).await;
    assert!(not_a_ca.contains("client CA"), "{not_a_ca}");
    // The key never appears in an error or a Debug.
    let tls = Tls::from_pem(pki.server.cert.clone(), pki.server.key.clone());
    assert!(!format!("{tls:?}").contains("PRIVATE KEY"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_python_and_the_rmcp_client_present_certificates() {
    let pki = Pki::new();
    let dir = temp_dir("clients");
    let (viewer_cert, viewer_key) = pki.viewer.write(&dir, "viewer");
    let ca_path = dir.join("ca.pem");
    std::fs::write(&ca_path, &pki.ca.pem).unwrap();
    let (running, url) = start(server_with(pki.tls(), ROLE_RULES)).await;
    let call = json!({
        "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {
            "name": "read-data", "arguments": { "key": "a" },
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {},
                "io.modelcontextprotocol/clientInfo": { "name": "cli", "version": "0" },
            },
        },
    })
    .to_string();
    let headers = [
        "Content-Type: application/json",
        "Accept: application/json, text/event-stream",
        "MCP-Protocol-Version: 2026-07-28",
        "Mcp-Method: tools/call",
        "Mcp-Name: read-data",
    ];

    // curl
    let mut curl = Command::new("curl");
    curl.args(["-sS", &url, "--cacert"])
        .arg(&ca_path)
        .arg("--cert")
        .arg(&viewer_cert)
        .arg("--key")
        .arg(&viewer_key)
        .args(["-d", &call]);
    for header in headers {
        curl.args(["-H", header]);
    }
    let output = tokio::task::block_in_place(|| curl.output()).unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("welcome"),
        "curl: {text} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    // curl without its certificate does not get through.
    let output = tokio::task::block_in_place(|| {
        Command::new("curl")
            .args(["-sS", &url, "--cacert"])
            .arg(&ca_path)
            .args(["-d", &call])
            .output()
    })
    .unwrap();
    assert!(!String::from_utf8_lossy(&output.stdout).contains("welcome"));

    // Python's ssl + http.client
    let script = r#"
import http.client, json, ssl, sys
port, ca, cert, key, body = sys.argv[1:6]
context = ssl.create_default_context(cafile=ca)
context.load_cert_chain(cert, key)
connection = http.client.HTTPSConnection("localhost", int(port), context=context)
connection.request("POST", "/mcp", body=body, headers={
    "Content-Type": "application/json",
    "Accept": "application/json, text/event-stream",
    "MCP-Protocol-Version": "2026-07-28",
    "Mcp-Method": "tools/call",
    "Mcp-Name": "read-data",
})
response = connection.getresponse()
print(response.status, response.getheader("Strict-Transport-Security"), response.read().decode())
"#;
    let port = running.local_addr().port().to_string();
    let output = tokio::task::block_in_place(|| {
        Command::new("python3")
            .args(["-c", script, &port])
            .arg(&ca_path)
            .arg(&viewer_cert)
            .arg(&viewer_key)
            .arg(&call)
            .output()
    })
    .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.starts_with("200 max-age=31536000") && text.contains("welcome"),
        "python: {text} {}",
        String::from_utf8_lossy(&output.stderr)
    );

    // rmcp's client over HTTPS, with a reqwest client presenting the certificate.
    use rmcp::{
        ServiceExt,
        model::CallToolRequestParams,
        transport::{
            StreamableHttpClientTransport,
            streamable_http_client::StreamableHttpClientTransportConfig,
        },
    };
    let transport = StreamableHttpClientTransport::with_client(
        https_client(&pki.ca.pem, Some(&pki.viewer)),
        StreamableHttpClientTransportConfig::with_uri(url.as_str()),
    );
    let client = ().serve(transport).await.expect("rmcp client connects");
    let tools = client.list_all_tools().await.unwrap();
    assert!(tools.iter().any(|t| t.name == "read-data"));
    let result = client
        .call_tool(
            CallToolRequestParams::new("read-data")
                .with_arguments(json!({ "key": "a" }).as_object().unwrap().clone()),
        )
        .await
        .unwrap();
    assert_eq!(
        serde_json::to_value(&result.content).unwrap()[0]["text"],
        Value::from("welcome")
    );
    client.cancel().await.unwrap();
    running.shutdown().await.unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

/// Runs each printed `curl` line (from the line after `marker` on) through `sh`.
fn run_printed_curl_lines(printed: &str) -> Vec<String> {
    printed
        .lines()
        .map(str::trim)
        .filter(|line| line.starts_with("curl "))
        .map(|line| {
            let output = Command::new("sh").args(["-c", line]).output().unwrap();
            String::from_utf8_lossy(&output.stdout).into_owned()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_prints_curl_lines_that_work_as_printed() {
    let mut example = CapturedProcess::spawn(
        Command::new(example_binary("mtls"))
            .env("BIND", "127.0.0.1:0")
            .env_remove("TLS_CERT")
            .env_remove("TLS_KEY")
            .env_remove("TLS_CLIENT_CA")
            .env_remove("MTLS_ROLES"),
        "the mtls example",
    );
    tokio::task::block_in_place(|| example.listening());
    let printed = example.printed();
    let answers = tokio::task::block_in_place(|| run_printed_curl_lines(&printed));
    assert_eq!(answers.len(), 4, "{printed}");
    assert!(answers[0].contains("welcome"), "viewer: {answers:?}");
    assert!(
        answers[1].contains(r#"written_by\":\"spiffe://demo.mcp-gatekeeper.local/editor"#),
        "editor: {answers:?}"
    );
    assert!(answers[2].contains("deleted `b`"), "admin: {answers:?}");
    assert!(answers[3].is_empty(), "no certificate: {answers:?}");
}

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_takes_a_reviewers_openssl_ca_through_the_environment() {
    let dir = temp_dir("openssl");
    tokio::task::block_in_place(|| {
        std::fs::write(
            dir.join("server.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("client.ext"),
            "subjectAltName=URI:spiffe://reviewer.example/team/alice\nextendedKeyUsage=clientAuth\n",
        )
        .unwrap();
        openssl(
            &dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=Reviewer CA",
            ],
        );
        for (name, subject) in [
            ("server", "/CN=localhost"),
            ("client", "/CN=alice/O=Reviewers"),
        ] {
            openssl(
                &dir,
                &[
                    "req",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-keyout",
                    &format!("{name}.key"),
                    "-out",
                    &format!("{name}.csr"),
                    "-subj",
                    subject,
                ],
            );
            openssl(
                &dir,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &format!("{name}.csr"),
                    "-CA",
                    "ca.pem",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-days",
                    "2",
                    "-extfile",
                    &format!("{name}.ext"),
                    "-out",
                    &format!("{name}.pem"),
                ],
            );
        }
    });
    let mut example = CapturedProcess::spawn(
        Command::new(example_binary("mtls"))
            .env("BIND", "127.0.0.1:0")
            .env("TLS_CERT", dir.join("server.pem"))
            .env("TLS_KEY", dir.join("server.key"))
            .env("TLS_CLIENT_CA", dir.join("ca.pem"))
            .env("MTLS_ROLES", "spiffe://reviewer.example/team/*=editor"),
        "the mtls example",
    );
    let address = tokio::task::block_in_place(|| example.listening());
    let port = address.rsplit(':').next().unwrap();
    let url = format!("https://localhost:{port}/mcp");
    let identity = Issued {
        cert: std::fs::read_to_string(dir.join("client.pem")).unwrap(),
        key: std::fs::read_to_string(dir.join("client.key")).unwrap(),
        serial: 0,
    };
    let ca = std::fs::read_to_string(dir.join("ca.pem")).unwrap();
    let alice = mcp(&url, https_client(&ca, Some(&identity)));
    let written = alice
        .call("write-data", json!({ "key": "k", "value": "v" }))
        .await;
    assert_eq!(
        written.result()["structuredContent"]["written_by"],
        "spiffe://reviewer.example/team/alice",
        "{written:#?}"
    );
    let denied = alice.call("delete-data", json!({ "key": "k" })).await;
    assert_eq!(denied.error_code(), Some(-32003), "{denied:#?}");
    drop(example);

    // One variable of three: said which ones are missing.
    let mut partial = CapturedProcess::spawn(
        Command::new(example_binary("mtls"))
            .env("BIND", "127.0.0.1:0")
            .env("TLS_CERT", dir.join("server.pem"))
            .env_remove("TLS_KEY")
            .env_remove("TLS_CLIENT_CA"),
        "the mtls example",
    );
    let (status, printed) = tokio::task::block_in_place(|| partial.exit());
    assert!(!status.success());
    assert!(printed.contains("TLS_KEY and TLS_CLIENT_CA"), "{printed}");
    let _ = std::fs::remove_dir_all(dir);
}
