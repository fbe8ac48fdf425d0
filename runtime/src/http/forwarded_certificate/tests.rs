//! Tests of the parent module: the three header formats, the DN reader, bounds, random input,
//! and the layer's decisions per peer.

use std::net::{IpAddr, Ipv4Addr};

use axum::body::Body;
use base64::engine::general_purpose::STANDARD;
use rand::{Rng as _, SeedableRng as _, rngs::StdRng};
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType, date_time_ymd};
use sha2::{Digest as _, Sha256};
use tower::ServiceExt as _;

use super::*;

/// A self-signed certificate for `cn` with a URI SAN: `(DER, PEM)`.
fn certificate(cn: &str, uri: &str) -> (Vec<u8>, String) {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, cn);
    name.push(DnType::OrganizationName, "Example");
    params.distinguished_name = name;
    params.subject_alt_names = vec![SanType::URI(uri.try_into().unwrap())];
    params.not_before = date_time_ymd(2020, 1, 1);
    params.not_after = date_time_ymd(2100, 1, 1);
    let cert = params.self_signed(&KeyPair::generate().unwrap()).unwrap();
    (cert.der().to_vec(), cert.pem())
}

/// Everything but RFC 3986's unreserved characters as `%XX`: how Envoy and nginx escape PEM.
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

fn sha256_hex(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

fn cert_of(result: Result<Option<ClientCertificate>, Malformed>) -> ClientCertificate {
    result
        .expect("the header parses")
        .expect("the header names a certificate")
}

#[test]
fn xfcc_cert_is_read_and_checked_against_hash() {
    let (der, pem) = certificate("alice", "spiffe://example.org/alice");
    let hash = sha256_hex(&der);
    let header = format!(
        "By=spiffe://example.org/proxy;Hash={hash};Cert=\"{}\";Subject=\"CN=alice,O=Example\";\
         URI=spiffe://example.org/alice",
        url_encode(&pem)
    );
    let cert = cert_of(parse_xfcc(&header));
    assert_eq!(cert.source(), CertificateSource::Proxy);
    assert_eq!(cert.san_uris(), ["spiffe://example.org/alice"]);
    assert_eq!(cert.common_name(), Some("alice"));
    assert_eq!(hex::encode(cert.thumbprint()), hash);
    assert!(
        cert.not_after().is_some(),
        "a full certificate has its dates"
    );
    // Keys are case-insensitive, `Cert` may be unquoted, `Hash` may be upper-case hex.
    let header = format!("hash={};cert={}", hash.to_uppercase(), url_encode(&pem));
    assert_eq!(cert_of(parse_xfcc(&header)).thumbprint(), cert.thumbprint());
    // Without `Cert`, the leaf of `Chain`.
    let (_, other_pem) = certificate("ca", "spiffe://example.org/ca");
    let header = format!("Chain=\"{}\"", url_encode(&format!("{pem}{other_pem}")));
    assert_eq!(cert_of(parse_xfcc(&header)).thumbprint(), cert.thumbprint());
    // A hash of another certificate.
    let (other_der, _) = certificate("mallory", "spiffe://example.org/mallory");
    let header = format!(
        "Hash={};Cert=\"{}\"",
        sha256_hex(&other_der),
        url_encode(&pem)
    );
    assert_eq!(
        parse_xfcc(&header).unwrap_err(),
        Malformed("`Hash` is not the SHA-256 of `Cert`")
    );
}

#[test]
fn xfcc_uses_the_rightmost_element() {
    let (der, pem) = certificate("alice", "spiffe://example.org/alice");
    // The client wrote the left element itself; the proxy appended the right one.
    let header = format!(
        "Hash={};URI=spiffe://example.org/admin, By=spiffe://proxy;Cert=\"{}\"",
        "ab".repeat(32),
        url_encode(&pem)
    );
    let cert = cert_of(parse_xfcc(&header));
    assert_eq!(hex::encode(cert.thumbprint()), sha256_hex(&der));
    assert_eq!(cert.san_uris(), ["spiffe://example.org/alice"]);
    // With only the hash and the names, the certificate is what they say.
    let header = format!(
        "Cert=\"{}\",By=spiffe://proxy;Hash={};Subject=\"CN=Doe\\, John,OU=ops,O=Example\";\
         URI=spiffe://example.org/ns/ops/sa/ci;DNS=ci.example.org;DNS=ci2.example.org",
        url_encode(&pem),
        "cd".repeat(32)
    );
    let cert = cert_of(parse_xfcc(&header));
    assert_eq!(cert.thumbprint(), &[0xcd; 32]);
    assert_eq!(cert.subject(), "CN=Doe\\, John,OU=ops,O=Example");
    assert_eq!(cert.common_name(), Some("Doe, John"));
    assert_eq!(cert.san_uris(), ["spiffe://example.org/ns/ops/sa/ci"]);
    assert_eq!(cert.san_dns(), ["ci.example.org", "ci2.example.org"]);
    assert_eq!(cert.not_after(), None);
}

#[test]
fn xfcc_quoting() {
    let hash = "01".repeat(32);
    // `,` `;` `=` inside quotes belong to the value; `\"` is a quote; other backslashes stay.
    let header =
        format!("Hash={hash};Subject=\"CN=a\\\"b;c=d, e\\,f,O=x\";URI=\"spiffe://x/y;z=1,2\"");
    let cert = cert_of(parse_xfcc(&header));
    assert_eq!(cert.subject(), "CN=a\"b;c=d, e\\,f,O=x");
    assert_eq!(cert.san_uris(), ["spiffe://x/y;z=1,2"]);
    // Spaces around separators are not part of anything.
    let header = format!("  By=a ; Hash = {hash} ;  URI= spiffe://x/y  ");
    assert_eq!(cert_of(parse_xfcc(&header)).san_uris(), ["spiffe://x/y"]);
    let cases = [
        (
            format!("Hash={hash};Subject=\"CN=x"),
            "an unterminated quoted value",
        ),
        (
            format!("Hash={hash};Subject=\"CN=x\\\""),
            "an unterminated quoted value",
        ),
        (
            format!("Hash={hash};Subject=\"a\"b"),
            "text after a quoted value",
        ),
        (
            format!("Hash={hash};URI=a\"b\""),
            "a quote inside an unquoted value",
        ),
        (format!("Hash={hash};URI"), "a field without `=`"),
        (
            format!("Hash={hash};=x"),
            "a field name that is not a token",
        ),
        (
            format!("Hash={hash};Hash={hash}"),
            "a field given twice in one element",
        ),
        (format!("Hash={hash};;URI=x"), "a field without `=`"),
        (format!("Hash={hash},"), "an empty element"),
        (
            "By=spiffe://proxy;URI=spiffe://x".to_owned(),
            "the element has neither `Cert` nor `Hash`",
        ),
        ("Hash=abcd".to_owned(), "`Hash` is not a hex SHA-256 digest"),
        ("Cert=%2".to_owned(), "a `%` not followed by two hex digits"),
        ("Cert=%FF".to_owned(), "escaped bytes that are not UTF-8"),
        (
            "Cert=abc".to_owned(),
            "no PEM certificate (`-----BEGIN CERTIFICATE-----`)",
        ),
        (
            url_encode("Cert=-----BEGIN CERTIFICATE-----\nAAAA\n"),
            "a field without `=`",
        ),
        (
            format!("Cert={}", url_encode("-----BEGIN CERTIFICATE-----\nAAAA\n")),
            "a PEM certificate without its END line",
        ),
        (
            format!(
                "Cert={}",
                url_encode("-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n")
            ),
            "a certificate that is not base64",
        ),
        (
            format!(
                "Cert={}",
                url_encode("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
            ),
            "not an X.509 certificate",
        ),
    ];
    for (header, why) in cases {
        assert_eq!(parse_xfcc(&header).unwrap_err(), Malformed(why), "{header}");
    }
    assert_eq!(
        parse_xfcc("  ").unwrap(),
        None,
        "an empty value names no certificate"
    );
}

#[test]
fn xfcc_bounds() {
    let hash = "01".repeat(32);
    let element = format!("Hash={hash}");
    let most = vec![element.as_str(); MAX_ELEMENTS].join(",");
    assert!(parse_xfcc(&most).is_ok());
    let too_many = vec![element.as_str(); MAX_ELEMENTS + 1].join(",");
    assert_eq!(
        parse_xfcc(&too_many).unwrap_err(),
        Malformed("too many elements or fields")
    );
    let pairs = format!("Hash={hash}{}", ";DNS=x".repeat(MAX_PAIRS));
    assert_eq!(
        parse_xfcc(&pairs).unwrap_err(),
        Malformed("too many elements or fields")
    );
    // Commas inside quotes do not count.
    let quoted = format!("Hash={hash};Subject=\"{}\"", ",".repeat(1000));
    assert!(parse_xfcc(&quoted).is_ok());
    // The whole header, over all its lines.
    let header = CertificateHeader {
        name: HeaderName::from_static("x-forwarded-client-cert"),
        format: Format::Envoy,
    };
    let mut headers = HeaderMap::new();
    let line = format!("Hash={hash};DNS={}", "d".repeat(8 * 1024));
    headers.append(&header.name, line.parse().unwrap());
    assert!(header.parse(&headers).is_ok());
    headers.append(&header.name, line.parse().unwrap());
    assert_eq!(
        header.parse(&headers).unwrap_err(),
        Malformed("longer than 16 KiB")
    );
    // Two lines are one list: the second line's element is the rightmost.
    let mut headers = HeaderMap::new();
    headers.append(&header.name, format!("Hash={hash}").parse().unwrap());
    headers.append(
        &header.name,
        format!("Hash={}", "02".repeat(32)).parse().unwrap(),
    );
    assert_eq!(
        header.parse(&headers).unwrap().unwrap().thumbprint(),
        &[2; 32]
    );
    let mut headers = HeaderMap::new();
    headers.append(
        &header.name,
        http::HeaderValue::from_bytes(b"Hash=\xff").unwrap(),
    );
    assert_eq!(
        header.parse(&headers).unwrap_err(),
        Malformed("not visible ASCII")
    );
}

#[test]
fn pem_headers_of_nginx_and_traefik() {
    let (der, pem) = certificate("alice", "spiffe://example.org/alice");
    let (ca_der, _) = certificate("ca", "spiffe://example.org/ca");
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let forms = [
        // nginx `$ssl_client_escaped_cert`.
        url_encode(&pem),
        // Traefik v3: base64 DER without armour, leaf first.
        format!("{},{}", STANDARD.encode(&der), STANDARD.encode(&ca_der)),
        // Traefik v2: the same, URL-escaped.
        url_encode(&body),
        // PEM on one line (no escaping needed for these characters but the line breaks).
        pem.replace('\n', " "),
    ];
    for form in forms {
        let cert = cert_of(parse_pem_header(&form));
        assert_eq!(hex::encode(cert.thumbprint()), sha256_hex(&der), "{form}");
        assert_eq!(cert.source(), CertificateSource::Proxy);
    }
    assert_eq!(parse_pem_header("").unwrap(), None);
    for bad in ["%", "not base64!", "AAAA", "-----BEGIN CERTIFICATE-----"] {
        assert!(parse_pem_header(bad).is_err(), "{bad}");
    }
    let header = CertificateHeader {
        name: HeaderName::from_static("ssl-client-cert"),
        format: Format::Pem,
    };
    let mut headers = HeaderMap::new();
    headers.append(&header.name, url_encode(&pem).parse().unwrap());
    assert!(header.parse(&headers).unwrap().is_some());
    headers.append(&header.name, url_encode(&pem).parse().unwrap());
    assert_eq!(
        header.parse(&headers).unwrap_err(),
        Malformed("sent more than once")
    );
}

#[test]
fn rfc9440_byte_sequence() {
    let (der, _) = certificate("alice", "spiffe://example.org/alice");
    let value = format!(":{}:", STANDARD.encode(&der));
    assert_eq!(
        hex::encode(cert_of(parse_rfc9440(&value)).thumbprint()),
        sha256_hex(&der)
    );
    for bad in [STANDARD.encode(&der), ":AAAA:".to_owned(), ":".to_owned()] {
        assert!(parse_rfc9440(&bad).is_err(), "{bad}");
    }
}

#[test]
fn common_names_of_distinguished_names() {
    let cases = [
        (
            "CN=Test Client,OU=Lyft,L=San Francisco,ST=CA,C=US",
            Some("Test Client"),
        ),
        ("cn = alice , o=Example", Some("alice")),
        ("O=Example+CN=alice", Some("alice")),
        ("2.5.4.3=alice,O=x", Some("alice")),
        ("CN=Doe\\, John", Some("Doe, John")),
        ("CN=caf\\C3\\A9", Some("café")),
        ("CN=a\\+b\\\\", Some("a+b\\")),
        ("/C=US/ST=CA/O=Lyft/CN=Test Client", Some("Test Client")),
        ("/O=x/CN=a/b", Some("a/b")),
        // Two common names: which one a rule should see is not ours to guess.
        ("CN=a,CN=b", None),
        ("/CN=a/CN=b", None),
        ("CN=#0403616263", None),
        ("CN=\"quoted\"", None),
        ("CN=", None),
        ("O=no common name", None),
        ("not a dn", None),
        ("CN=\\ff", None),
        ("", None),
    ];
    for (dn, expected) in cases {
        assert_eq!(common_name(dn).as_deref(), expected, "{dn}");
    }
}

#[test]
fn random_input_never_panics() {
    let mut rng = StdRng::seed_from_u64(13);
    let alphabet = b"=;,\"\\%:/+ #-aAcCfFhHeEsSrRtTuUiInNdD019";
    for round in 0..20_000 {
        let len = rng.random_range(0..120);
        let text: String = if round % 4 == 0 {
            // Any bytes, as a string.
            let bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            String::from_utf8_lossy(&bytes).into_owned()
        } else {
            (0..len)
                .map(|_| char::from(alphabet[rng.random_range(0..alphabet.len())]))
                .collect()
        };
        let _ = parse_xfcc(&text);
        let _ = parse_xfcc(&format!("Hash={};Subject=\"{text}\"", "00".repeat(32)));
        let _ = parse_pem_header(&text);
        let _ = parse_rfc9440(&text);
        let _ = common_name(&text);
        let _ = common_name(&format!("/{text}"));
    }
}

#[test]
fn configuration_is_checked() {
    let proxies = || TrustedProxies::parse(&["10.0.0.1"]).unwrap();
    let audit = AuditLog::tracing_only;
    assert!(
        ForwardedCertificateLayer::new(&ForwardedCertificate::envoy(), proxies(), audit()).is_ok()
    );
    assert_eq!(ForwardedCertificate::rfc9440().header(), "client-cert");
    let error = ForwardedCertificateLayer::new(
        &ForwardedCertificate::envoy(),
        TrustedProxies::default(),
        audit(),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(error.contains("needs trusted_proxies"), "{error}");
    for bad in ["bad header", "", "Authorization", "x-forwarded-for"] {
        let forwarded = ForwardedCertificate::pem_header(bad);
        assert!(
            ForwardedCertificateLayer::new(&forwarded, proxies(), audit()).is_err(),
            "{bad}"
        );
    }
    let mixed_case = ForwardedCertificate::pem_header("X-Forwarded-Tls-Client-Cert");
    assert!(ForwardedCertificateLayer::new(&mixed_case, proxies(), audit()).is_ok());
}

/// What the service behind the layer saw.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    header: bool,
    certificate: Option<CertificateSource>,
}

/// Sends a request from `peer` with `header` (and a TLS certificate on the connection) through
/// the layer; the status, and what the inner service saw when it was called.
async fn send(peer: Option<[u8; 4]>, header: Option<&str>) -> (StatusCode, Option<Seen>) {
    let layer = ForwardedCertificateLayer::new(
        &ForwardedCertificate::envoy(),
        TrustedProxies::parse(&["10.0.0.1"]).unwrap(),
        AuditLog::tracing_only(),
    )
    .unwrap();
    let (seen_tx, seen_rx) = std::sync::mpsc::channel();
    let inner = tower::service_fn(move |request: Request| {
        let seen_tx = seen_tx.clone();
        async move {
            let _ = seen_tx.send(Seen {
                header: request.headers().contains_key("x-forwarded-client-cert"),
                certificate: request
                    .extensions()
                    .get::<Arc<ClientCertificate>>()
                    .map(|c| c.source()),
            });
            Ok::<_, Infallible>(Response::new(Body::empty()))
        }
    });
    let mut request = Request::new(Body::empty());
    if let Some(header) = header {
        request
            .headers_mut()
            .insert("x-forwarded-client-cert", header.parse().unwrap());
    }
    if let Some(peer) = peer {
        let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::from(peer)), 4711);
        request.extensions_mut().insert(ConnectInfo(addr));
    }
    let (der, _) = certificate("proxy", "spiffe://example.org/proxy");
    let tls = ClientCertificate::from_der(&der, CertificateSource::Tls).unwrap();
    request.extensions_mut().insert(Arc::new(tls));
    let response = layer.layer(inner).oneshot(request).await.unwrap();
    (response.status(), seen_rx.try_recv().ok())
}

#[tokio::test]
async fn the_layer_believes_only_trusted_proxies() {
    let valid = format!("Hash={};URI=spiffe://example.org/alice", "01".repeat(32));
    let seen = |header, certificate| {
        Some(Seen {
            header,
            certificate,
        })
    };
    // From a trusted proxy: its own certificate is dropped, the forwarded one is read.
    assert_eq!(
        send(Some([10, 0, 0, 1]), Some(&valid)).await,
        (StatusCode::OK, seen(true, Some(CertificateSource::Proxy)))
    );
    assert_eq!(
        send(Some([10, 0, 0, 1]), None).await,
        (StatusCode::OK, seen(false, None))
    );
    assert_eq!(
        send(Some([10, 0, 0, 1]), Some("")).await,
        (StatusCode::OK, seen(true, None))
    );
    // Garbage from a trusted proxy stops the request.
    assert_eq!(
        send(Some([10, 0, 0, 1]), Some("Hash=nope")).await,
        (StatusCode::BAD_REQUEST, None)
    );
    // From anyone else (or no known peer), the header is gone and the TLS certificate stays.
    for peer in [Some([10, 0, 0, 2]), None] {
        assert_eq!(
            send(peer, Some(&valid)).await,
            (StatusCode::OK, seen(false, Some(CertificateSource::Tls)))
        );
        assert_eq!(
            send(peer, Some("Hash=nope")).await,
            (StatusCode::OK, seen(false, Some(CertificateSource::Tls)))
        );
    }
}
