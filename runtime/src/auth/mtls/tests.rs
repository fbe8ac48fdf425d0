//! Tests of the parent module, with certificates made by rcgen.

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType, date_time_ymd};

use super::*;
use crate::auth::{AuthErrorKind, Credential};

/// A self-signed certificate with `cn` and these SANs, valid between the years given.
fn certificate(cn: Option<&str>, sans: Vec<SanType>, from: i32, until: i32) -> Vec<u8> {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    if let Some(cn) = cn {
        name.push(DnType::CommonName, cn);
    }
    name.push(DnType::OrganizationName, "Example");
    params.distinguished_name = name;
    params.subject_alt_names = sans;
    params.not_before = date_time_ymd(from, 1, 1);
    params.not_after = date_time_ymd(until, 1, 1);
    let key = KeyPair::generate().unwrap();
    params.self_signed(&key).unwrap().der().to_vec()
}

fn uri(value: &str) -> SanType {
    SanType::URI(value.try_into().unwrap())
}

fn dns(value: &str) -> SanType {
    SanType::DnsName(value.try_into().unwrap())
}

fn email(value: &str) -> SanType {
    SanType::Rfc822Name(value.try_into().unwrap())
}

fn parsed(der: &[u8]) -> ClientCertificate {
    ClientCertificate::from_der(der, CertificateSource::Tls).unwrap()
}

#[test]
fn a_certificate_is_read_once_with_its_names_and_thumbprint() {
    let der = certificate(
        Some("ci-bot"),
        vec![
            uri("spiffe://example.org/ns/ops/sa/ci"),
            dns("ci.example.org"),
            email("ci@example.org"),
        ],
        2020,
        2100,
    );
    let cert = parsed(&der);
    assert_eq!(cert.common_name(), Some("ci-bot"));
    assert!(cert.subject().contains("CN=ci-bot"), "{}", cert.subject());
    assert_eq!(cert.san_uris(), ["spiffe://example.org/ns/ops/sa/ci"]);
    assert_eq!(cert.san_dns(), ["ci.example.org"]);
    assert_eq!(cert.san_emails(), ["ci@example.org"]);
    let expected: [u8; 32] = Sha256::digest(&der).into();
    assert_eq!(cert.thumbprint(), &expected);
    assert_eq!(
        cert.thumbprint_base64url(),
        URL_SAFE_NO_PAD.encode(expected)
    );
    assert_eq!(
        cert.not_after(),
        Some(UNIX_EPOCH + Duration::from_secs(4_102_444_800))
    );
    for bad in [&b""[..], b"not a certificate", &der[..der.len() - 1]] {
        assert!(ClientCertificate::from_der(bad, CertificateSource::Tls).is_err());
    }
    let mut trailing = der.clone();
    trailing.push(0);
    assert!(ClientCertificate::from_der(&trailing, CertificateSource::Tls).is_err());
}

#[test]
fn subjects_come_from_the_preferred_field_and_roles_from_rules() {
    let certificates = ClientCertificates::new()
        .role("spiffe://example.org/ns/ops/*", "admin")
        .role("reporting.example.org", "viewer")
        .scopes("spiffe://example.org/ns/ops/*", ["data:read", "data:write"])
        .role("legacy-*", "editor");
    assert_eq!(
        certificates.configured_roles(),
        ["admin", "editor", "viewer"]
    );
    let now = SystemTime::now();
    let ops = parsed(&certificate(
        Some("ignored-cn"),
        vec![uri("spiffe://example.org/ns/ops/sa/deploy")],
        2020,
        2100,
    ));
    let p = certificates.principal(&ops, now).unwrap();
    assert_eq!(p.subject(), "spiffe://example.org/ns/ops/sa/deploy");
    assert_eq!(p.method(), AuthMethod::Mtls);
    assert_eq!(p.roles().collect::<Vec<_>>(), ["admin"]);
    assert_eq!(p.scopes().collect::<Vec<_>>(), ["data:read", "data:write"]);
    assert_eq!(
        p.credential_id(),
        Some(hex::encode(ops.thumbprint()).as_str())
    );
    assert_eq!(p.expires_at(), ops.not_after());
    // A DNS name, exactly; the common name by prefix.
    let reporting = parsed(&certificate(
        None,
        vec![dns("reporting.example.org")],
        2020,
        2100,
    ));
    let p = certificates.principal(&reporting, now).unwrap();
    assert_eq!(
        (p.subject(), p.roles().collect::<Vec<_>>()),
        ("reporting.example.org", vec!["viewer"])
    );
    let legacy = parsed(&certificate(Some("legacy-batch"), vec![], 2020, 2100));
    let p = certificates.principal(&legacy, now).unwrap();
    assert_eq!(
        (p.subject(), p.roles().collect::<Vec<_>>()),
        ("legacy-batch", vec!["editor"])
    );
    // Not a prefix unless it says so; an unmatched certificate has no role.
    for name in ["reporting.example.org.evil", "spiffe://example.org/ns/opsx"] {
        let other = parsed(&certificate(None, vec![dns_or_uri(name)], 2020, 2100));
        let p = certificates.principal(&other, now).unwrap();
        assert_eq!(p.roles().count(), 0, "{name}");
    }
    // The subject field order is configurable; a certificate with none of them is refused.
    let by_cn = ClientCertificates::new().subject_from([CertificateField::CommonName]);
    assert_eq!(by_cn.principal(&ops, now).unwrap().subject(), "ignored-cn");
    let error = by_cn.principal(&reporting, now).unwrap_err();
    assert_eq!(error.kind(), AuthErrorKind::InvalidToken);
}

fn dns_or_uri(name: &str) -> SanType {
    if name.contains("://") {
        uri(name)
    } else {
        dns(name)
    }
}

#[test]
fn a_certificate_outside_its_validity_is_refused() {
    let certificates = ClientCertificates::new();
    let now = SystemTime::now();
    for (from, until) in [(2020, 2021), (2099, 2100)] {
        let cert = parsed(&certificate(Some("x"), vec![], from, until));
        let error = certificates.principal(&cert, now).unwrap_err();
        assert_eq!(error.kind(), AuthErrorKind::InvalidToken, "{from}-{until}");
    }
}

#[test]
fn a_certificate_forwarded_as_fields_has_no_dates_to_check() {
    let long = "x".repeat(MAX_NAME_LEN + 1);
    let cert = ClientCertificate::from_forwarded_fields(ForwardedFields {
        thumbprint: [7; 32],
        subject: "CN=ci,O=Example".to_owned(),
        common_name: Some("ci".to_owned()),
        san_uris: std::iter::once(long.clone())
            .chain((0..MAX_NAMES + 5).map(|i| format!("spiffe://example.org/ns/ops/{i}")))
            .collect(),
        san_dns: vec![long],
    });
    assert_eq!(cert.source(), CertificateSource::Proxy);
    assert_eq!((cert.not_before(), cert.not_after()), (None, None));
    // Too long a name is dropped, never cut; at most MAX_NAMES are kept.
    assert_eq!(cert.san_uris().len(), MAX_NAMES);
    assert_eq!(cert.san_uris()[0], "spiffe://example.org/ns/ops/0");
    assert!(cert.san_dns().is_empty());
    let certificates = ClientCertificates::new().role("spiffe://example.org/ns/ops/*", "admin");
    let p = certificates.principal(&cert, SystemTime::now()).unwrap();
    assert_eq!(p.subject(), "spiffe://example.org/ns/ops/0");
    assert_eq!(p.roles().collect::<Vec<_>>(), ["admin"]);
    assert_eq!(p.credential_id(), Some(hex::encode([7; 32]).as_str()));
    assert_eq!(p.expires_at(), None);
}

#[test]
fn the_certificate_decides_only_requests_without_a_header_credential() {
    let certificates = ClientCertificates::new().role("svc", "viewer");
    let cert = Arc::new(parsed(&certificate(Some("svc"), vec![], 2020, 2100)));
    let mut parts = http::Request::new(()).into_parts().0;
    let none = AuthRequest {
        credential: None,
        parts: &parts,
    };
    assert!(
        matches!(certificates.decide_now(&none), Verdict::Pass),
        "no certificate"
    );
    parts.extensions.insert(cert);
    let alone = AuthRequest {
        credential: None,
        parts: &parts,
    };
    let Verdict::Accept(p) = certificates.decide_now(&alone) else {
        panic!("the certificate authenticates");
    };
    assert_eq!(p.roles().collect::<Vec<_>>(), ["viewer"]);
    let with_token = AuthRequest {
        credential: Some(Credential::Bearer("token")),
        parts: &parts,
    };
    assert!(matches!(
        certificates.decide_now(&with_token),
        Verdict::Pass
    ));
    assert!(certificates.accepted_credentials().is_empty());
}

#[test]
fn rules_parse_from_the_environment_form() {
    let parsed = ClientCertificates::new()
        .parse_roles(" spiffe://x/ns/a/*=admin , ci.example.org=viewer,")
        .unwrap();
    assert_eq!(parsed.configured_roles(), ["admin", "viewer"]);
    for bad in ["admin", "=admin", "x=", "x=,"] {
        assert!(ClientCertificates::new().parse_roles(bad).is_err(), "{bad}");
    }
}

impl ClientCertificates {
    /// The verdict, which this authenticator always knows at once.
    fn decide_now(&self, request: &AuthRequest<'_>) -> Verdict {
        match self.authenticate(request) {
            Authentication::Ready(verdict) => verdict,
            Authentication::Pending(_) => panic!("certificates are decided at once"),
        }
    }
}
