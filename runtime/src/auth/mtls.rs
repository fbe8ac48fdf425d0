//! TLS client certificates as callers: the certificate a connection presented (verified by the
//! server's TLS, or by a trusted proxy that forwarded it), read once per connection, and the
//! authenticator that turns it into a [`Principal`].

use std::{
    fmt,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use sha2::{Digest as _, Sha256};
use x509_parser::{extensions::GeneralName, prelude::FromDer as _};

use super::{AuthError, AuthRequest, Authentication, Authenticator, CredentialKind, Verdict};
use crate::{AuthMethod, Principal};

pub(crate) mod dn;

/// The most SAN entries of each kind kept from one certificate.
const MAX_NAMES: usize = 32;
/// The longest name kept (longer ones are dropped, never cut: a cut name could match a rule
/// the whole one does not).
const MAX_NAME_LEN: usize = 1024;

/// Where a client certificate came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CertificateSource {
    /// The TLS handshake of this server's own connection.
    Tls,
    /// A header set by a trusted proxy that terminated TLS and verified the certificate.
    Proxy,
}

/// A client certificate a request came with: what this crate reads from it, parsed once per
/// connection. Found in the request's extensions as `Arc<ClientCertificate>`.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientCertificate {
    thumbprint: [u8; 32],
    subject: String,
    /// The subject as RFC 4514 writes it (see [`dn`]); empty when a proxy wrote a subject
    /// that does not read as one.
    subject_dn: String,
    common_name: Option<String>,
    san_uris: Vec<String>,
    san_dns: Vec<String>,
    san_emails: Vec<String>,
    /// `(not_before, not_after)`; `None` when a proxy forwarded fields, not the certificate.
    validity: Option<(SystemTime, SystemTime)>,
    source: CertificateSource,
    /// Whether it chains to a CA the server (or its proxy) trusts; see
    /// [`is_ca_verified`](ClientCertificate::is_ca_verified).
    ca_verified: bool,
}

/// What a proxy can forward about a certificate without the certificate itself (Envoy's
/// `x-forwarded-client-cert` with `Hash`, `Subject`, `URI` and `DNS` but no `Cert`).
pub(crate) struct ForwardedFields {
    /// SHA-256 of the certificate's DER encoding, as the proxy computed it.
    pub(crate) thumbprint: [u8; 32],
    /// The subject's distinguished name, as the proxy wrote it.
    pub(crate) subject: String,
    /// The common name read from that distinguished name, when it names exactly one.
    pub(crate) common_name: Option<String>,
    pub(crate) san_uris: Vec<String>,
    pub(crate) san_dns: Vec<String>,
}

/// Why a certificate could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a readable X.509 certificate: {0}")]
pub struct CertificateError(String);

impl ClientCertificate {
    /// Reads a DER-encoded certificate. It is not verified here: the TLS handshake (or the
    /// trusted proxy) did that, and it counts as [CA-verified](Self::is_ca_verified).
    ///
    /// # Errors
    /// When `der` is not an X.509 certificate.
    pub fn from_der(der: &[u8], source: CertificateSource) -> Result<Self, CertificateError> {
        let (rest, cert) = x509_parser::certificate::X509Certificate::from_der(der)
            .map_err(|e| CertificateError(e.to_string()))?;
        if !rest.is_empty() {
            return Err(CertificateError("trailing bytes".to_owned()));
        }
        let time = |t: x509_parser::time::ASN1Time| {
            let secs = t.timestamp();
            if secs < 0 {
                UNIX_EPOCH
            } else {
                UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs())
            }
        };
        let mut certificate = Self {
            thumbprint: Sha256::digest(der).into(),
            subject: cert.subject().to_string(),
            subject_dn: dn::of_certificate(cert.subject()),
            common_name: cert
                .subject()
                .iter_common_name()
                .next()
                .and_then(|cn| cn.as_str().ok())
                .filter(|cn| cn.len() <= MAX_NAME_LEN)
                .map(str::to_owned),
            san_uris: Vec::new(),
            san_dns: Vec::new(),
            san_emails: Vec::new(),
            validity: Some((
                time(cert.validity().not_before),
                time(cert.validity().not_after),
            )),
            source,
            ca_verified: true,
        };
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                let (list, value) = match name {
                    GeneralName::URI(uri) => (&mut certificate.san_uris, *uri),
                    GeneralName::DNSName(dns) => (&mut certificate.san_dns, *dns),
                    GeneralName::RFC822Name(email) => (&mut certificate.san_emails, *email),
                    _ => continue,
                };
                if list.len() < MAX_NAMES && value.len() <= MAX_NAME_LEN {
                    list.push(value.to_owned());
                }
            }
        }
        Ok(certificate)
    }

    /// A certificate a trusted proxy described by its fields: no validity dates (the proxy
    /// checked them at its handshake), names kept under the same bounds as [`from_der`]'s.
    ///
    /// [`from_der`]: Self::from_der
    pub(crate) fn from_forwarded_fields(fields: ForwardedFields) -> Self {
        let keep = |names: Vec<String>| -> Vec<String> {
            names
                .into_iter()
                .filter(|name| name.len() <= MAX_NAME_LEN)
                .take(MAX_NAMES)
                .collect()
        };
        Self {
            thumbprint: fields.thumbprint,
            // A subject the proxy wrote in another form matches no `tls_client_auth_subject_dn`.
            subject_dn: dn::normalize(&fields.subject).unwrap_or_default(),
            subject: fields.subject,
            common_name: fields.common_name.filter(|cn| cn.len() <= MAX_NAME_LEN),
            san_uris: keep(fields.san_uris),
            san_dns: keep(fields.san_dns),
            san_emails: Vec::new(),
            validity: None,
            source: CertificateSource::Proxy,
            ca_verified: true,
        }
    }

    /// SHA-256 of the certificate's DER encoding.
    pub fn thumbprint(&self) -> &[u8; 32] {
        &self.thumbprint
    }

    /// The thumbprint as RFC 8705 writes it in `cnf.x5t#S256` (base64url, no padding).
    pub fn thumbprint_base64url(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.thumbprint)
    }

    /// The subject's distinguished name (`CN=alice, O=Example`).
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The subject's distinguished name as RFC 4514 writes it, last RDN first:
    /// `CN=svc,O=Example,C=DE` (short type names from RFC 4514's table, others as OIDs; `+`
    /// between the sorted values of a multi-valued RDN). The form an OAuth client's
    /// `tls_client_auth_subject_dn` is compared with (RFC 8705 §2.1.2).
    pub fn subject_dn(&self) -> &str {
        &self.subject_dn
    }

    /// The subject's common name, if it has one.
    pub fn common_name(&self) -> Option<&str> {
        self.common_name.as_deref()
    }

    /// The URI subject alternative names (a SPIFFE ID: `spiffe://example.org/ns/prod/sa/ci`).
    pub fn san_uris(&self) -> &[String] {
        &self.san_uris
    }

    /// The DNS subject alternative names.
    pub fn san_dns(&self) -> &[String] {
        &self.san_dns
    }

    /// The e-mail subject alternative names.
    pub fn san_emails(&self) -> &[String] {
        &self.san_emails
    }

    /// When the certificate stops being valid; `None` when a trusted proxy forwarded only its
    /// fields (Envoy's `Hash`, `Subject`, `URI`, `DNS` without `Cert`), having checked the
    /// validity itself.
    pub fn not_after(&self) -> Option<SystemTime> {
        self.validity.map(|(_, not_after)| not_after)
    }

    /// When it starts being valid; `None` as for [`not_after`](Self::not_after).
    pub fn not_before(&self) -> Option<SystemTime> {
        self.validity.map(|(not_before, _)| not_before)
    }

    /// Where it came from.
    pub fn source(&self) -> CertificateSource {
        self.source
    }

    /// Whether the certificate chains to a CA the server trusts (the TLS client CAs, or the
    /// trusted proxy's). `false` only for a self-signed certificate let in by
    /// `Tls::accept_self_signed_client_certificates` (feature `tls`): nobody vouches for its
    /// names, so it never makes a caller of its own (the [`ClientCertificates`] authenticator
    /// refuses it). It can still authenticate an OAuth client that registered its thumbprint
    /// (`self_signed_tls_client_auth`, RFC 8705 §2.2) and bind that client's tokens: what
    /// counts then is holding the key, which the handshake proved.
    pub fn is_ca_verified(&self) -> bool {
        self.ca_verified
    }

    /// The same certificate, marked as not chaining to a trusted CA.
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    pub(crate) fn not_ca_verified(mut self) -> Self {
        self.ca_verified = false;
        self
    }

    /// The first value of `field` the certificate has.
    fn field(&self, field: CertificateField) -> Option<&str> {
        match field {
            CertificateField::SanUri => self.san_uris.first().map(String::as_str),
            CertificateField::SanDns => self.san_dns.first().map(String::as_str),
            CertificateField::SanEmail => self.san_emails.first().map(String::as_str),
            CertificateField::CommonName => self.common_name.as_deref(),
        }
    }

    /// Every name a rule may match: SAN URIs, DNS names, e-mails, then the common name.
    fn names(&self) -> impl Iterator<Item = &str> {
        self.san_uris
            .iter()
            .chain(&self.san_dns)
            .chain(&self.san_emails)
            .map(String::as_str)
            .chain(self.common_name.as_deref())
    }
}

impl fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCertificate")
            .field("subject", &self.subject)
            .field("san_uris", &self.san_uris)
            .field("san_dns", &self.san_dns)
            .field("san_emails", &self.san_emails)
            .field("thumbprint", &self.thumbprint_base64url())
            .field("source", &self.source)
            .field("ca_verified", &self.ca_verified)
            .finish_non_exhaustive()
    }
}

/// A field of a certificate a caller's subject can be taken from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CertificateField {
    /// The first URI subject alternative name (a SPIFFE ID).
    SanUri,
    /// The first DNS subject alternative name.
    SanDns,
    /// The first e-mail subject alternative name.
    SanEmail,
    /// The subject's common name.
    CommonName,
}

/// A name pattern: exact, or a prefix when it ends with `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    text: String,
    prefix: bool,
}

impl Pattern {
    fn new(pattern: &str) -> Self {
        match pattern.strip_suffix('*') {
            Some(prefix) => Self {
                text: prefix.to_owned(),
                prefix: true,
            },
            None => Self {
                text: pattern.to_owned(),
                prefix: false,
            },
        }
    }

    fn matches(&self, name: &str) -> bool {
        if self.prefix {
            name.starts_with(&self.text)
        } else {
            name == self.text
        }
    }
}

/// A rule: certificates with a name matching the pattern get these roles and scopes.
#[derive(Debug, Clone)]
struct Rule {
    pattern: Pattern,
    roles: Vec<String>,
    scopes: Vec<String>,
}

/// Authenticates requests by the client certificate of their connection (verified by this
/// server's TLS, see `Tls::client_ca_file`, or forwarded by a trusted proxy).
///
/// The subject is taken from the first of the configured fields the certificate has (default:
/// SAN URI, SAN DNS, SAN e-mail, common name); roles and scopes from rules matched against
/// every SAN URI, DNS name and e-mail and the common name, exactly or, for a pattern ending in
/// `*`, as a prefix. A certificate no rule matches authenticates with no role and no scope:
/// deny by default still holds at every tool. The credential id (in the audit trail) is the
/// certificate's SHA-256 thumbprint; the principal expires with the certificate.
///
/// A request that also presents a header credential (a bearer token, an API key) is left to
/// the authenticator of that credential: the certificate then only binds the token (RFC 8705).
///
/// ```
/// use mcp_gatekeeper::auth::{ClientCertificates, CertificateField};
///
/// let certificates = ClientCertificates::new()
///     .subject_from([CertificateField::SanUri, CertificateField::CommonName])
///     .role("spiffe://example.org/ns/ops/*", "admin")
///     .role("reporting.internal.example.org", "viewer")
///     .scopes("spiffe://example.org/ns/ops/*", ["data:read", "data:write"]);
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct ClientCertificates {
    subject_fields: Vec<CertificateField>,
    rules: Arc<Vec<Rule>>,
}

impl Default for ClientCertificates {
    fn default() -> Self {
        Self::new()
    }
}

impl ClientCertificates {
    /// Certificates authenticate with the default subject fields and no rule (no roles).
    pub fn new() -> Self {
        Self {
            subject_fields: vec![
                CertificateField::SanUri,
                CertificateField::SanDns,
                CertificateField::SanEmail,
                CertificateField::CommonName,
            ],
            rules: Arc::new(Vec::new()),
        }
    }

    /// The fields the subject is taken from, in order of preference; a certificate with none
    /// of them is refused.
    pub fn subject_from<I: IntoIterator<Item = CertificateField>>(mut self, fields: I) -> Self {
        self.subject_fields = fields.into_iter().collect();
        self
    }

    /// Grants `role` to certificates with a name matching `pattern` (exact, or a prefix when
    /// it ends with `*`). A role the tools do not declare stops the server from starting.
    pub fn role(mut self, pattern: &str, role: impl Into<String>) -> Self {
        self.rule(pattern).roles.push(role.into());
        self
    }

    /// Grants `scopes` to certificates with a name matching `pattern`.
    pub fn scopes<I, S>(mut self, pattern: &str, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let rule = self.rule(pattern);
        rule.scopes.extend(scopes.into_iter().map(Into::into));
        self
    }

    /// Parses `PATTERN=ROLE` rules separated by commas (the `mtls` example's `MTLS_ROLES`).
    ///
    /// # Errors
    /// When an entry has no `=`, or an empty pattern or role.
    pub fn parse_roles(mut self, rules: &str) -> Result<Self, crate::ConfigError> {
        for entry in rules.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (pattern, role) = entry
                .rsplit_once('=')
                .map(|(p, r)| (p.trim(), r.trim()))
                .filter(|(p, r)| !p.is_empty() && !r.is_empty())
                .ok_or_else(|| {
                    crate::ConfigError::invalid(format!(
                        "certificate role rule `{entry}`: expected PATTERN=ROLE"
                    ))
                })?;
            self = self.role(pattern, role);
        }
        Ok(self)
    }

    fn rule(&mut self, pattern: &str) -> &mut Rule {
        let rules = Arc::make_mut(&mut self.rules);
        let pattern = Pattern::new(pattern);
        let index = match rules.iter().position(|r| r.pattern == pattern) {
            Some(index) => index,
            None => {
                rules.push(Rule {
                    pattern,
                    roles: Vec::new(),
                    scopes: Vec::new(),
                });
                rules.len() - 1
            }
        };
        &mut rules[index]
    }

    /// The principal `certificate` speaks for, at `now`.
    ///
    /// # Errors
    /// When the certificate does not chain to a trusted CA (a self-signed one, see
    /// [`ClientCertificate::is_ca_verified`]), is outside its validity period (the handshake checks it too; a
    /// connection may outlive it, and a proxy may forward a certificate it did not check) or
    /// has none of the subject fields. A certificate forwarded as fields only has no dates to
    /// check: the proxy that verified it vouches for them.
    pub fn principal(
        &self,
        certificate: &ClientCertificate,
        now: SystemTime,
    ) -> Result<Principal, AuthError> {
        if !certificate.ca_verified {
            // Anyone can make a self-signed certificate with any name: its names prove nothing.
            return Err(AuthError::new(
                super::AuthErrorKind::InvalidToken,
                "Client certificate not issued by a trusted CA",
            ));
        }
        if let Some((not_before, not_after)) = certificate.validity
            && (now > not_after || now < not_before)
        {
            return Err(AuthError::new(
                super::AuthErrorKind::InvalidToken,
                "Client certificate expired or not yet valid",
            ));
        }
        let Some(subject) = self
            .subject_fields
            .iter()
            .find_map(|&field| certificate.field(field))
        else {
            return Err(AuthError::new(
                super::AuthErrorKind::InvalidToken,
                "Client certificate names no subject this server reads",
            ));
        };
        let mut roles: Vec<&str> = Vec::new();
        let mut scopes: Vec<&str> = Vec::new();
        for rule in self.rules.iter() {
            if certificate.names().any(|name| rule.pattern.matches(name)) {
                for role in &rule.roles {
                    if !roles.contains(&role.as_str()) {
                        roles.push(role);
                    }
                }
                scopes.extend(rule.scopes.iter().map(String::as_str));
            }
        }
        let mut principal = Principal::builder(AuthMethod::Mtls, subject)
            .roles(roles)
            .scopes(scopes)
            .credential_id(hex::encode(certificate.thumbprint));
        if let Some(not_after) = certificate.not_after() {
            principal = principal.expires_at(not_after);
        }
        Ok(principal.build())
    }
}

impl Authenticator for ClientCertificates {
    fn name(&self) -> &'static str {
        "mtls"
    }

    fn authenticate<'a>(&'a self, request: &'a AuthRequest<'a>) -> Authentication<'a> {
        if request.credential.is_some() {
            // The header credential decides; the certificate may bind it (RFC 8705).
            return Verdict::Pass.into();
        }
        let Some(certificate) = request.parts.extensions.get::<Arc<ClientCertificate>>() else {
            return Verdict::Pass.into();
        };
        match self.principal(certificate, SystemTime::now()) {
            Ok(principal) => Verdict::Accept(Arc::new(principal)),
            Err(error) => {
                Verdict::Reject(error.with_credential_id(hex::encode(certificate.thumbprint)))
            }
        }
        .into()
    }

    fn configured_roles(&self) -> Vec<String> {
        let mut roles: Vec<String> = self.rules.iter().flat_map(|r| r.roles.clone()).collect();
        roles.sort_unstable();
        roles.dedup();
        roles
    }

    /// No header: the certificate comes with the connection.
    fn accepted_credentials(&self) -> &'static [CredentialKind] {
        &[]
    }
}

#[cfg(test)]
mod tests;
