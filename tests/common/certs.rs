//! A test PKI made with rcgen: certificate authorities, server and client certificates with
//! any names, validity and key usage, and CRLs, as PEM text and as files.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, RevokedCertParams, SanType,
    SerialNumber,
};
use time::{Duration, OffsetDateTime};

/// A certificate authority.
pub struct TestCa {
    pub pem: String,
    issuer: Issuer<'static, KeyPair>,
    next_serial: u64,
}

/// A certificate and its private key, as PEM.
#[derive(Clone)]
pub struct Issued {
    pub cert: String,
    pub key: String,
    pub serial: u64,
}

impl Issued {
    /// Certificate then key: what `reqwest::Identity::from_pem` reads.
    pub fn identity_pem(&self) -> String {
        format!("{}{}", self.cert, self.key)
    }

    /// The certificate's DER bytes.
    pub fn der(&self) -> Vec<u8> {
        rustls_pem_to_der(&self.cert)
    }

    /// Writes `<name>.pem` and `<name>.key` into `dir`.
    pub fn write(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{name}.pem"));
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&cert, &self.cert).unwrap();
        std::fs::write(&key, &self.key).unwrap();
        (cert, key)
    }
}

fn rustls_pem_to_der(pem: &str) -> Vec<u8> {
    use base64::Engine as _;
    let body: String = pem
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}

/// What a client certificate says.
#[derive(Clone, Debug)]
pub struct ClientSpec {
    pub common_name: String,
    pub san_uris: Vec<String>,
    pub san_dns: Vec<String>,
    pub san_emails: Vec<String>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    /// Extended key usage: client authentication unless changed.
    pub client_auth: bool,
}

impl ClientSpec {
    /// A certificate valid from yesterday for a year, for client authentication, with
    /// `common_name` and no SAN.
    pub fn new(common_name: &str) -> Self {
        let now = OffsetDateTime::now_utc();
        Self {
            common_name: common_name.to_owned(),
            san_uris: Vec::new(),
            san_dns: Vec::new(),
            san_emails: Vec::new(),
            not_before: now - Duration::days(1),
            not_after: now + Duration::days(365),
            client_auth: true,
        }
    }

    pub fn uri(mut self, uri: &str) -> Self {
        self.san_uris.push(uri.to_owned());
        self
    }

    pub fn dns(mut self, name: &str) -> Self {
        self.san_dns.push(name.to_owned());
        self
    }

    pub fn email(mut self, email: &str) -> Self {
        self.san_emails.push(email.to_owned());
        self
    }

    /// Expired yesterday.
    pub fn expired(mut self) -> Self {
        let now = OffsetDateTime::now_utc();
        self.not_before = now - Duration::days(30);
        self.not_after = now - Duration::days(1);
        self
    }

    /// Valid from tomorrow.
    pub fn not_yet_valid(mut self) -> Self {
        let now = OffsetDateTime::now_utc();
        self.not_before = now + Duration::days(1);
        self.not_after = now + Duration::days(30);
        self
    }

    /// For server authentication only: not usable by a client.
    pub fn server_auth_only(mut self) -> Self {
        self.client_auth = false;
        self
    }
}

impl TestCa {
    /// A self-signed CA named `name`, valid from yesterday for ten years.
    pub fn new(name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::days(1);
        params.not_after = now + Duration::days(3650);
        let cert = params.self_signed(&key).unwrap();
        Self {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
            next_serial: 1,
        }
    }

    fn serial(&mut self) -> u64 {
        self.next_serial += 1;
        self.next_serial
    }

    /// A server certificate for `localhost` and `127.0.0.1`.
    pub fn server(&mut self) -> Issued {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let serial = self.serial();
        params.serial_number = Some(SerialNumber::from(serial));
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::days(1);
        params.not_after = now + Duration::days(365);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Issued {
            cert: cert.pem(),
            key: key.serialize_pem(),
            serial,
        }
    }

    /// A client certificate as `spec` says.
    pub fn client(&mut self, spec: &ClientSpec) -> Issued {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, spec.common_name.as_str());
        params
            .distinguished_name
            .push(DnType::OrganizationName, "mcp-gatekeeper tests");
        let mut names = Vec::new();
        for uri in &spec.san_uris {
            names.push(SanType::URI(uri.as_str().try_into().unwrap()));
        }
        for dns in &spec.san_dns {
            names.push(SanType::DnsName(dns.as_str().try_into().unwrap()));
        }
        for email in &spec.san_emails {
            names.push(SanType::Rfc822Name(email.as_str().try_into().unwrap()));
        }
        params.subject_alt_names = names;
        params.extended_key_usages = vec![if spec.client_auth {
            ExtendedKeyUsagePurpose::ClientAuth
        } else {
            ExtendedKeyUsagePurpose::ServerAuth
        }];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let serial = self.serial();
        params.serial_number = Some(SerialNumber::from(serial));
        params.not_before = spec.not_before;
        params.not_after = spec.not_after;
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Issued {
            cert: cert.pem(),
            key: key.serialize_pem(),
            serial,
        }
    }

    /// A CRL revoking the certificates with these serial numbers.
    pub fn crl(&self, revoked: &[u64]) -> String {
        let now = OffsetDateTime::now_utc();
        let params = CertificateRevocationListParams {
            this_update: now - Duration::hours(1),
            next_update: now + Duration::days(7),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|&serial| RevokedCertParams {
                    serial_number: SerialNumber::from(serial),
                    revocation_time: now - Duration::minutes(30),
                    reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        params.signed_by(&self.issuer).unwrap().pem().unwrap()
    }
}

/// A self-signed client certificate (RFC 8705 `self_signed_tls_client_auth`).
pub fn self_signed_client(common_name: &str) -> Issued {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::days(1);
    params.not_after = now + Duration::days(365);
    let cert = params.self_signed(&key).unwrap();
    Issued {
        cert: cert.pem(),
        key: key.serialize_pem(),
        serial: 0,
    }
}
