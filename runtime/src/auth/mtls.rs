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
    common_name: Option<String>,
    san_uris: Vec<String>,
    san_dns: Vec<String>,
    san_emails: Vec<String>,
    not_before: SystemTime,
    not_after: SystemTime,
    source: CertificateSource,
}

/// Why a certificate could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a readable X.509 certificate: {0}")]
pub struct CertificateError(String);

impl ClientCertificate {
    /// Reads a DER-encoded certificate. It is not verified here: the TLS handshake (or the
    /// trusted proxy) did that.
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
            not_before: time(cert.validity().not_before),
            not_after: time(cert.validity().not_after),
            source,
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

    /// When the certificate stops being valid.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// When it starts being valid.
    pub fn not_before(&self) -> SystemTime {
        self.not_before
    }

    /// Where it came from.
    pub fn source(&self) -> CertificateSource {
        self.source
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
    /// When the certificate is outside its validity period (the handshake checks it too; a
    /// connection may outlive it) or has none of the subject fields.
    pub fn principal(
        &self,
        certificate: &ClientCertificate,
        now: SystemTime,
    ) -> Result<Principal, AuthError> {
        if now > certificate.not_after || now < certificate.not_before {
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
        Ok(Principal::builder(AuthMethod::Mtls, subject)
            .roles(roles)
            .scopes(scopes)
            .credential_id(hex::encode(certificate.thumbprint))
            .expires_at(certificate.not_after)
            .build())
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
