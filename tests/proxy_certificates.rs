//! Client certificates forwarded by a TLS-terminating proxy (issue 13): from a trusted proxy
//! (127.0.0.2) Envoy's `x-forwarded-client-cert` and nginx's escaped PEM authenticate like a
//! certificate presented to the server's own TLS, with the roles of `ClientCertificates`; from
//! any other peer (127.0.0.3) the header is ignored and audited; a malformed header, a hash
//! that does not match, or an expired certificate is refused.

use std::{path::PathBuf, time::Duration};

use base64::Engine as _;
use mcp_gatekeeper::{AuditLog, ForwardedCertificate, auth::ClientCertificates};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::common::{
    certs::{ClientSpec, Issued, TestCa},
    *,
};

const TRUSTED: &str = "127.0.0.2";
const UNTRUSTED: &str = "127.0.0.3";

const VIEWER_URI: &str = "spiffe://example.org/ns/reports/sa/viewer";
const ADMIN_URI: &str = "spiffe://example.org/ns/ops/sa/admin";

/// The RBAC example behind a trusted proxy, taking certificates from `header`, auditing to a
/// file of its own.
async fn server_behind_proxy(header: ForwardedCertificate, audit: &PathBuf) -> Server {
    let _ = std::fs::remove_file(audit);
    let certificates = ClientCertificates::new()
        .role(VIEWER_URI, "viewer")
        .role("spiffe://example.org/ns/ops/*", "admin");
    start(
        crate::rbac::gatekeeper(rbac_config(false))
            .unwrap()
            .authenticate(certificates)
            .trusted_proxies([TRUSTED])
            .client_certificate_header(header)
            .audit(AuditLog::json_lines(audit).unwrap().unlimited_refusals()),
    )
    .await
}

fn audit_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "mcpgk-proxy-cert-{name}-{}.jsonl",
        std::process::id()
    ))
}

/// An MCP client (protocol 2026-07-28: every request stands alone) connecting from `source`
/// and sending `header: value` with every request.
fn client(server: &Server, source: &str, header: &str, value: &str) -> Mcp {
    let mut headers = HeaderMap::new();
    headers.insert(
        HeaderName::from_bytes(header.as_bytes()).unwrap(),
        HeaderValue::from_str(value).unwrap(),
    );
    let mut mcp = Mcp::new(&server.url, Cred::None, Version::V2026_07_28);
    mcp.http = reqwest::Client::builder()
        .local_address(source.parse::<std::net::IpAddr>().unwrap())
        .default_headers(headers)
        .build()
        .unwrap();
    mcp
}

/// Everything but RFC 3986's unreserved characters as `%XX`, as Envoy and nginx escape PEM.
fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn sha256_hex(issued: &Issued) -> String {
    hex::encode(Sha256::digest(issued.der()))
}

/// The XFCC element Envoy appends for a client that presented `issued`.
fn xfcc(issued: &Issued, uri: &str) -> String {
    format!(
        "By=spiffe://example.org/ns/edge/sa/envoy;Hash={};Cert=\"{}\";Subject=\"CN=client\";URI={uri}",
        sha256_hex(issued),
        url_encode(&issued.cert)
    )
}

/// The audit records written so far (the writer thread is given time to catch up).
async fn audit_records(path: &PathBuf, until: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let mut records = Vec::new();
    for _ in 0..100 {
        records = std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if until(&records) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    records
}

fn from(record: &Value, source: &str) -> bool {
    record["remote_addr"]
        .as_str()
        .is_some_and(|a| a.starts_with(&format!("{source}:")))
}

#[tokio::test]
async fn envoy_certificates_from_the_trusted_proxy_carry_their_roles() {
    let audit = audit_path("envoy");
    let server = server_behind_proxy(ForwardedCertificate::envoy(), &audit).await;
    let mut ca = TestCa::new("proxy-verified clients");
    let viewer = ca.client(&ClientSpec::new("reporter").uri(VIEWER_URI));
    let admin = ca.client(&ClientSpec::new("operator").uri(ADMIN_URI));
    let header = "x-forwarded-client-cert";

    let admin_mcp = client(&server, TRUSTED, header, &xfcc(&admin, ADMIN_URI));
    let reply = admin_mcp
        .call("write-data", json!({ "key": "k", "value": "v" }))
        .await;
    assert_eq!(
        reply.result()["structuredContent"]["written_by"],
        ADMIN_URI,
        "{reply:#?}"
    );

    let viewer_mcp = client(&server, TRUSTED, header, &xfcc(&viewer, VIEWER_URI));
    let reply = viewer_mcp.call("read-data", json!({ "key": "k" })).await;
    assert_eq!(reply.text(), "v", "{reply:#?}");
    let reply = viewer_mcp.call("delete-data", json!({ "key": "k" })).await;
    assert_eq!(reply.error_code(), Some(-32003), "{reply:#?}");

    // A client that wrote its own element in front of the proxy's gets nothing from it: the
    // rightmost element, appended by the proxy, is the client's certificate.
    let forged = format!("{}, {}", xfcc(&admin, ADMIN_URI), xfcc(&viewer, VIEWER_URI));
    let reply = client(&server, TRUSTED, header, &forged)
        .call("delete-data", json!({ "key": "k" }))
        .await;
    assert_eq!(reply.error_code(), Some(-32003), "{reply:#?}");

    // Only the hash and the names (Istio's default): the proxy vouches for the fields.
    let fields = format!(
        "By=spiffe://example.org/ns/edge/sa/envoy;Hash={};Subject=\"CN=operator,O=tests\";URI={ADMIN_URI}",
        sha256_hex(&admin)
    );
    let reply = client(&server, TRUSTED, header, &fields)
        .call("delete-data", json!({ "key": "k" }))
        .await;
    assert_eq!(reply.error_code(), None, "{reply:#?}");
    assert!(!reply.is_tool_error(), "{reply:#?}");

    // The same header from a peer that is not a trusted proxy: no credential at all.
    let reply = client(&server, UNTRUSTED, header, &xfcc(&admin, ADMIN_URI))
        .call("read-data", json!({ "key": "k" }))
        .await;
    assert_eq!(reply.status, 401, "{reply:#?}");

    // A trusted proxy's garbage is refused, never read as "no certificate".
    for (bad, why) in [
        ("Hash=not-hex;URI=x".to_owned(), "Hash"),
        ("Cert=\"-----BEGIN".to_owned(), "unterminated"),
        (
            format!(
                "Hash={};Cert=\"{}\"",
                sha256_hex(&viewer),
                url_encode(&admin.cert)
            ),
            "is not the SHA-256 of `Cert`",
        ),
    ] {
        let reply = client(&server, TRUSTED, header, &bad)
            .call("read-data", json!({ "key": "k" }))
            .await;
        assert_eq!(reply.status, 400, "{bad}: {reply:#?}");
        let body = reply.json_body();
        assert_eq!(body["error"], "invalid_request", "{body}");
        let description = body["error_description"].as_str().unwrap();
        assert!(description.contains(why), "{description}");
    }

    // An expired certificate forwarded in full is refused like one presented directly.
    let expired = ca.client(&ClientSpec::new("late").uri(ADMIN_URI).expired());
    let reply = client(&server, TRUSTED, header, &xfcc(&expired, ADMIN_URI))
        .call("read-data", json!({ "key": "k" }))
        .await;
    assert_eq!(reply.status, 403, "{reply:#?}");
    assert!(
        reply.text.contains("expired"),
        "the reason is in the body: {reply:#?}"
    );

    server.stop().await;
    let records = audit_records(&audit, |records| {
        records
            .iter()
            .any(|r| r["reason"] == "forwarded_certificate_ignored")
            && records
                .iter()
                .filter(|r| r["reason"] == "invalid_forwarded_certificate")
                .count()
                == 3
    })
    .await;
    let lines = serde_json::to_string_pretty(&records).unwrap();
    assert!(
        records
            .iter()
            .any(|r| r["reason"] == "forwarded_certificate_ignored" && from(r, UNTRUSTED)),
        "{lines}"
    );
    assert!(
        records
            .iter()
            .filter(|r| r["reason"] == "invalid_forwarded_certificate")
            .all(|r| from(r, TRUSTED)),
        "{lines}"
    );
    // Accepted callers are audited under their certificate's thumbprint.
    assert!(
        records.iter().any(|r| r["method"] == "mtls"
            && r["subject"] == ADMIN_URI
            && r["credential_id"] == sha256_hex(&admin).as_str()),
        "{lines}"
    );
    let _ = std::fs::remove_file(&audit);
}

#[tokio::test]
async fn nginx_and_traefik_pem_headers_from_the_trusted_proxy() {
    let audit = audit_path("pem");
    let header = "ssl-client-cert";
    let server = server_behind_proxy(ForwardedCertificate::pem_header(header), &audit).await;
    let mut ca = TestCa::new("proxy-verified clients");
    let viewer = ca.client(&ClientSpec::new("reporter").uri(VIEWER_URI));
    let traefik = [viewer.der(), ca.client(&ClientSpec::new("other")).der()]
        .map(|der| base64::engine::general_purpose::STANDARD.encode(der))
        .join(",");
    for value in [url_encode(&viewer.cert), traefik] {
        let mcp = client(&server, TRUSTED, header, &value);
        let reply = mcp.call("read-data", json!({ "key": "missing" })).await;
        assert_eq!(reply.status, 200, "{reply:#?}");
        assert!(
            reply.is_tool_error(),
            "the viewer reads (nothing there): {reply:#?}"
        );
        let reply = mcp
            .call("write-data", json!({ "key": "k", "value": "v" }))
            .await;
        assert_eq!(reply.error_code(), Some(-32003), "{reply:#?}");
    }
    let reply = client(&server, UNTRUSTED, header, &url_encode(&viewer.cert))
        .call("read-data", json!({ "key": "missing" }))
        .await;
    assert_eq!(reply.status, 401, "{reply:#?}");
    let reply = client(&server, TRUSTED, header, "not%20a%20certificate")
        .call("read-data", json!({ "key": "missing" }))
        .await;
    assert_eq!(reply.status, 400, "{reply:#?}");
    server.stop().await;
    let records = audit_records(&audit, |records| {
        records
            .iter()
            .any(|r| r["reason"] == "forwarded_certificate_ignored")
    })
    .await;
    assert!(
        records
            .iter()
            .any(|r| r["reason"] == "forwarded_certificate_ignored" && from(r, UNTRUSTED)),
        "{records:#?}"
    );
    let _ = std::fs::remove_file(&audit);
}

#[test]
fn a_certificate_header_needs_trusted_proxies_and_a_usable_name() {
    let build = |forwarded: ForwardedCertificate, proxies: &[&str]| {
        crate::rbac::gatekeeper(rbac_config(false))
            .unwrap()
            .trusted_proxies(proxies.iter().copied())
            .client_certificate_header(forwarded)
            .into_router()
            .err()
            .map(|e| e.to_string())
    };
    let error = build(ForwardedCertificate::envoy(), &[]).unwrap();
    assert!(error.contains("trusted_proxies"), "{error}");
    let error = build(
        ForwardedCertificate::pem_header("ssl client cert"),
        &[TRUSTED],
    )
    .unwrap();
    assert!(error.contains("not a valid HTTP header name"), "{error}");
    let error = build(
        ForwardedCertificate::pem_header("Authorization"),
        &[TRUSTED],
    )
    .unwrap();
    assert!(error.contains("another meaning"), "{error}");
    assert_eq!(build(ForwardedCertificate::rfc9440(), &[TRUSTED]), None);
}
