//! Client certificates forwarded by a TLS-terminating proxy.
//!
//! A proxy that terminates TLS (Envoy, nginx, Traefik, a load balancer) verifies the client's
//! certificate itself and passes it on in a header. Anyone can write a header, so it is believed
//! only from a trusted proxy (`Gatekeeper::trusted_proxies`, the same list that may name the
//! client's address); there it authenticates exactly like a certificate presented to this
//! server's own TLS: the layer parses it once and puts it in the request's extensions as
//! `Arc<ClientCertificate>` (source `Proxy`), where `ClientCertificates` reads it.
//!
//! - From a trusted proxy, the connection's own TLS certificate (if the proxy presented one) is
//!   the proxy's, never a client's: it is removed, header or not.
//! - From a trusted proxy, a header that does not parse is refused with `400` and audited
//!   (`invalid_forwarded_certificate`): a proxy that says a certificate was presented and sends
//!   garbage must not turn the request into one without a certificate.
//! - From any other peer the header is removed (nothing behind the layer can read it) and
//!   audited (`forwarded_certificate_ignored`).
//!
//! The layer sits outside `ClientAddrLayer`, so it sees the TCP peer, not the client a proxy
//! names.

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::Arc,
    task::{Context, Poll},
};

use axum::{
    extract::{ConnectInfo, Request},
    response::{IntoResponse as _, Response},
};
use base64::{
    Engine as _, alphabet,
    engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig},
};
use futures::future::{Either, Ready, ready};
use http::{HeaderMap, HeaderName, StatusCode};
use tower::{Layer, Service};

use crate::{
    AuditEvent, AuditLog, AuditRecord, ConfigError, Outcome,
    auth::{CertificateSource, ClientCertificate, ForwardedFields},
    http::forwarded::TrustedProxies,
};

/// The most bytes of certificate header read from one request (all its lines together); a
/// certificate with its chain fits several times over.
const MAX_HEADER_BYTES: usize = 16 * 1024;

/// The most XFCC elements (one per proxy that appended one) in a header.
const MAX_ELEMENTS: usize = 16;

/// The most `key=value` pairs in one XFCC element (`URI` and `DNS` repeat per name).
const MAX_PAIRS: usize = 80;

/// Headers a certificate header must not be: stripping them from untrusted peers would break
/// authentication, routing or the MCP protocol.
const RESERVED: [&str; 13] = [
    "authorization",
    "x-api-key",
    "cookie",
    "host",
    "origin",
    "forwarded",
    "x-forwarded-for",
    "content-type",
    "content-length",
    "transfer-encoding",
    "connection",
    "mcp-session-id",
    "mcp-protocol-version",
];

/// How the proxy writes the certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// Envoy's `x-forwarded-client-cert`.
    Envoy,
    /// (URL-escaped) PEM or bare base64 DER.
    Pem,
    /// RFC 9440 `Client-Cert`: `:base64 DER:`.
    Rfc9440,
}

/// Where a TLS-terminating proxy in front of the server passes the client certificate it
/// verified, for [`Gatekeeper::client_certificate_header`](crate::Gatekeeper::client_certificate_header).
///
/// The header is believed only from a [trusted proxy](crate::Gatekeeper::trusted_proxies):
/// there it authenticates with [`ClientCertificates`](crate::auth::ClientCertificates) exactly
/// like a certificate presented to this server's own TLS, and a header that does not parse is
/// refused with `400`. From any other peer it is removed from the request and audited. The
/// proxy must set (or remove) the header on every request, so that a client can never pass its
/// own through.
///
/// ```
/// use mcp_gatekeeper::ForwardedCertificate;
///
/// // Envoy: `forward_client_cert_details: SANITIZE_SET` with `cert: true` (or at least the
/// // hash and the names).
/// let envoy = ForwardedCertificate::envoy();
/// // nginx: `proxy_set_header ssl-client-cert $ssl_client_escaped_cert;`
/// let nginx = ForwardedCertificate::pem_header("ssl-client-cert");
/// // Traefik: the `passTLSClientCert` middleware with `pem: true`.
/// let traefik = ForwardedCertificate::pem_header("X-Forwarded-Tls-Client-Cert");
/// # let _ = (envoy, nginx, traefik);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct ForwardedCertificate {
    header: String,
    format: Format,
}

impl ForwardedCertificate {
    /// Envoy's `x-forwarded-client-cert` (XFCC): comma-separated elements, one per proxy that
    /// appended one, each `Key=value` pairs separated by `;`, values double-quoted when they
    /// hold `,`, `;` or `=` (with `\"` for a quote). The rightmost element is used: Envoy
    /// appends, so it describes the client of the trusted proxy nearest this server (configure
    /// that proxy with `SANITIZE_SET` for one element only).
    ///
    /// From that element, `Cert` (the URL-encoded PEM certificate; or else the first
    /// certificate of `Chain`) is read like a certificate from a TLS handshake, and `Hash`,
    /// when also present, must be its SHA-256. With `Hash` alone, the certificate is what the
    /// element's `Subject`, `URI` and `DNS` fields say (the common name read from `Subject`
    /// when it names exactly one), without validity dates: the proxy checked them. An element
    /// with neither is refused.
    pub fn envoy() -> Self {
        Self {
            header: "x-forwarded-client-cert".to_owned(),
            format: Format::Envoy,
        }
    }

    /// A header holding the leaf certificate as PEM, URL-escaped or not (nginx's
    /// `$ssl_client_escaped_cert`), or as base64 DER without the PEM armour (Traefik's
    /// `passTLSClientCert` with `pem: true`, `X-Forwarded-Tls-Client-Cert`; several
    /// certificates are comma-separated, leaf first). `%XX` escapes are decoded (a `+` is kept:
    /// it is base64). An empty value means no certificate; the header sent twice is refused.
    pub fn pem_header(name: impl Into<String>) -> Self {
        Self {
            header: name.into(),
            format: Format::Pem,
        }
    }

    /// RFC 9440's `Client-Cert`: the DER certificate as a structured-field byte sequence
    /// (`:base64:`).
    pub fn rfc9440() -> Self {
        Self {
            header: "client-cert".to_owned(),
            format: Format::Rfc9440,
        }
    }

    /// The header's name, as configured.
    pub fn header(&self) -> &str {
        &self.header
    }

    /// The header as the layer reads it; an unusable name is a configuration error.
    fn checked(&self) -> Result<CertificateHeader, ConfigError> {
        let name = HeaderName::from_bytes(self.header.trim().as_bytes()).map_err(|_| {
            ConfigError::invalid(format!(
                "client certificate header `{}` is not a valid HTTP header name",
                self.header
            ))
        })?;
        if RESERVED.contains(&name.as_str()) {
            return Err(ConfigError::invalid(format!(
                "client certificate header `{name}`: that header has another meaning, and \
                 removing it from requests of untrusted peers would break them"
            )));
        }
        Ok(CertificateHeader {
            name,
            format: self.format,
        })
    }
}

/// The configured header, ready to read.
#[derive(Debug, Clone)]
struct CertificateHeader {
    name: HeaderName,
    format: Format,
}

/// Why a trusted proxy's certificate header was refused: the `400`'s description and the
/// audit record's detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Malformed(&'static str);

impl CertificateHeader {
    /// The certificate the request's header lines carry; `Ok(None)` when the value is empty
    /// (the proxy says no certificate was presented).
    fn parse(&self, headers: &HeaderMap) -> Result<Option<ClientCertificate>, Malformed> {
        let mut total = 0;
        let mut values = Vec::new();
        for value in headers.get_all(&self.name) {
            total += value.len();
            if total > MAX_HEADER_BYTES {
                return Err(Malformed("longer than 16 KiB"));
            }
            values.push(value.to_str().map_err(|_| Malformed("not visible ASCII"))?);
        }
        match self.format {
            // Several XFCC lines are one list (RFC 9110 §5.3), in order.
            Format::Envoy => parse_xfcc(&values.join(",")),
            Format::Pem | Format::Rfc9440 => {
                let [value] = values.as_slice() else {
                    return Err(Malformed("sent more than once"));
                };
                if self.format == Format::Pem {
                    parse_pem_header(value)
                } else {
                    parse_rfc9440(value)
                }
            }
        }
    }
}

/// The certificate of the rightmost element of an `x-forwarded-client-cert` value.
fn parse_xfcc(text: &str) -> Result<Option<ClientCertificate>, Malformed> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let elements = split_unquoted(text, b',', MAX_ELEMENTS)?;
    // Envoy appends its element: the rightmost is what the proxy nearest us saw, and nothing
    // to its left can have been written after it.
    let last = elements.last().copied().unwrap_or_default();
    XfccElement::parse(last)?.certificate().map(Some)
}

/// `text` cut at every `separator` outside a double-quoted string; at most `max` parts.
/// Inside quotes a backslash takes the next character with it, so `\"` never closes them.
fn split_unquoted(text: &str, separator: u8, max: usize) -> Result<Vec<&str>, Malformed> {
    let bytes = text.as_bytes();
    let mut parts = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if quoted => i += 1,
            b'"' => quoted = !quoted,
            byte if byte == separator && !quoted => {
                if parts.len() + 1 >= max {
                    return Err(Malformed("too many elements or fields"));
                }
                // `separator` is ASCII, so both ends are character boundaries.
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    if quoted {
        return Err(Malformed("an unterminated quoted value"));
    }
    parts.push(&text[start..]);
    Ok(parts)
}

/// The fields of one XFCC element this crate reads (`By` and unknown keys are skipped).
#[derive(Debug, Default)]
struct XfccElement {
    hash: Option<String>,
    cert: Option<String>,
    chain: Option<String>,
    subject: Option<String>,
    uris: Vec<String>,
    dns: Vec<String>,
}

impl XfccElement {
    fn parse(element: &str) -> Result<Self, Malformed> {
        let element = element.trim();
        if element.is_empty() {
            return Err(Malformed("an empty element"));
        }
        let mut parsed = Self::default();
        let mut by = None;
        for pair in split_unquoted(element, b';', MAX_PAIRS)? {
            let (key, value) = pair
                .split_once('=')
                .ok_or(Malformed("a field without `=`"))?;
            let key = key.trim();
            if key.is_empty()
                || !key
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(Malformed("a field name that is not a token"));
            }
            let value = unquote(value.trim())?;
            let once = |slot: &mut Option<String>, value: String| match slot.replace(value) {
                None => Ok(()),
                Some(_) => Err(Malformed("a field given twice in one element")),
            };
            match key.to_ascii_lowercase().as_str() {
                "hash" => once(&mut parsed.hash, value)?,
                "cert" => once(&mut parsed.cert, value)?,
                "chain" => once(&mut parsed.chain, value)?,
                "subject" => once(&mut parsed.subject, value)?,
                "by" => once(&mut by, value)?,
                "uri" => parsed.uris.push(value),
                "dns" => parsed.dns.push(value),
                // Keys a later Envoy may add say nothing this crate reads.
                _ => {}
            }
        }
        Ok(parsed)
    }

    fn certificate(self) -> Result<ClientCertificate, Malformed> {
        let hash = self.hash.as_deref().map(parse_hash).transpose()?;
        if let Some(pem) = self.cert.as_deref().or(self.chain.as_deref()) {
            let der = first_pem_certificate(&percent_decode(pem)?)?;
            let certificate = certificate_from_der(&der)?;
            if hash.is_some_and(|hash| &hash != certificate.thumbprint()) {
                return Err(Malformed("`Hash` is not the SHA-256 of `Cert`"));
            }
            return Ok(certificate);
        }
        let Some(thumbprint) = hash else {
            return Err(Malformed("the element has neither `Cert` nor `Hash`"));
        };
        let subject = self.subject.unwrap_or_default();
        Ok(ClientCertificate::from_forwarded_fields(ForwardedFields {
            thumbprint,
            common_name: common_name(&subject),
            subject,
            san_uris: self.uris,
            san_dns: self.dns,
        }))
    }
}

/// A field value: as is, or the inside of a double-quoted string with `\"` read as a quote.
/// Other backslashes are kept (Envoy does not escape them, and a DN's own `\,` must survive).
fn unquote(value: &str) -> Result<String, Malformed> {
    let Some(inner) = value.strip_prefix('"') else {
        if value.contains('"') {
            return Err(Malformed("a quote inside an unquoted value"));
        }
        return Ok(value.to_owned());
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('"') => out.push('"'),
                Some(other) => {
                    out.push('\\');
                    out.push(other);
                }
                None => break,
            },
            '"' if chars.as_str().is_empty() => return Ok(out),
            '"' => return Err(Malformed("text after a quoted value")),
            other => out.push(other),
        }
    }
    Err(Malformed("an unterminated quoted value"))
}

/// A hex SHA-256 digest (Envoy's `Hash`).
fn parse_hash(text: &str) -> Result<[u8; 32], Malformed> {
    let mut hash = [0; 32];
    hex::decode_to_slice(text, &mut hash)
        .map_err(|_| Malformed("`Hash` is not a hex SHA-256 digest"))?;
    Ok(hash)
}

/// Decodes `%XX` escapes (and nothing else: a `+` in base64 is a plus).
fn percent_decode(text: &str) -> Result<String, Malformed> {
    if !text.contains('%') {
        return Ok(text.to_owned());
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let digit = |at: usize| bytes.get(at).and_then(|&b| char::from(b).to_digit(16));
            let (Some(high), Some(low)) = (digit(i + 1), digit(i + 2)) else {
                return Err(Malformed("a `%` not followed by two hex digits"));
            };
            // Two hex digits make at most 0xff.
            out.push(u8::try_from((high << 4) | low).unwrap_or(u8::MAX));
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| Malformed("escaped bytes that are not UTF-8"))
}

/// The DER bytes of the first PEM certificate in `text`.
fn first_pem_certificate(text: &str) -> Result<Vec<u8>, Malformed> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let start = text.find(BEGIN).ok_or(Malformed(
        "no PEM certificate (`-----BEGIN CERTIFICATE-----`)",
    ))? + BEGIN.len();
    let length = text[start..]
        .find(END)
        .ok_or(Malformed("a PEM certificate without its END line"))?;
    decode_base64(&text[start..start + length])
}

/// Standard base64, padded or not, with any line breaks and spaces removed.
fn decode_base64(text: &str) -> Result<Vec<u8>, Malformed> {
    const BASE64: GeneralPurpose = GeneralPurpose::new(
        &alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    if compact.is_empty() {
        return Err(Malformed("an empty certificate"));
    }
    BASE64
        .decode(compact)
        .map_err(|_| Malformed("a certificate that is not base64"))
}

fn certificate_from_der(der: &[u8]) -> Result<ClientCertificate, Malformed> {
    ClientCertificate::from_der(der, CertificateSource::Proxy)
        .map_err(|_| Malformed("not an X.509 certificate"))
}

/// A PEM-style header: URL-escaped PEM, PEM, or Traefik's base64 DER list (leaf first).
fn parse_pem_header(value: &str) -> Result<Option<ClientCertificate>, Malformed> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    let text = percent_decode(value)?;
    let der = if text.contains("-----BEGIN") {
        first_pem_certificate(&text)?
    } else {
        decode_base64(text.split(',').next().unwrap_or_default())?
    };
    certificate_from_der(&der).map(Some)
}

/// RFC 9440 `Client-Cert`: `:base64:`.
fn parse_rfc9440(value: &str) -> Result<Option<ClientCertificate>, Malformed> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    let inner = value
        .strip_prefix(':')
        .and_then(|v| v.strip_suffix(':'))
        .ok_or(Malformed("not a byte sequence (`:base64:`)"))?;
    certificate_from_der(&decode_base64(inner)?).map(Some)
}

/// The common name of a distinguished name as a proxy writes it: RFC 4514 (`CN=alice,O=Example`,
/// `\` escapes; what Envoy writes) or OpenSSL's one-line form (`/O=Example/CN=alice`). `None`
/// unless exactly one readable CN is found: a guessed name could match a rule the certificate's
/// real name does not.
fn common_name(dn: &str) -> Option<String> {
    let names = match dn.strip_prefix('/') {
        Some(oneline) => oneline_common_names(oneline),
        None => rfc4514_common_names(dn)?,
    };
    match names.as_slice() {
        [name] if !name.is_empty() => Some(name.clone()),
        _ => None,
    }
}

fn is_common_name(attribute: &str) -> bool {
    let attribute = attribute.trim();
    attribute.eq_ignore_ascii_case("cn")
        || attribute == "2.5.4.3"
        || attribute.eq_ignore_ascii_case("oid.2.5.4.3")
}

/// The CN values of an RFC 4514 DN; `None` when the DN, or a CN in it, cannot be read.
fn rfc4514_common_names(dn: &str) -> Option<Vec<String>> {
    let bytes = dn.as_bytes();
    let mut attributes = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            // `+` joins the attributes of a multi-valued RDN: each is an attribute all the same.
            b',' | b'+' => {
                attributes.push(&dn[start..i]);
                start = i + 1;
                i += 1;
            }
            _ => i += 1,
        }
    }
    attributes.push(&dn[start..]);
    let mut names = Vec::new();
    for attribute in attributes {
        let (kind, value) = attribute.split_once('=')?;
        if is_common_name(kind) {
            names.push(unescape_dn_value(value.trim())?);
        }
    }
    Some(names)
}

/// An RFC 4514 attribute value: `\,` is `,`, `\C3\A9` is `é`; a `#`-encoded (BER) value is not
/// text and cannot be read.
fn unescape_dn_value(value: &str) -> Option<String> {
    if value.starts_with('#') {
        return None;
    }
    let bytes = value.as_bytes();
    let hex = |at: usize| bytes.get(at).and_then(|&b| char::from(b).to_digit(16));
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => {
                let escaped = *bytes.get(i + 1)?;
                if let (Some(high), Some(low)) = (hex(i + 1), hex(i + 2)) {
                    out.push(u8::try_from((high << 4) | low).ok()?);
                    i += 3;
                } else {
                    out.push(escaped);
                    i += 2;
                }
            }
            // RFC 2253's quoted values are not what proxies write; not guessed at.
            b'"' => return None,
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The CN values of OpenSSL's one-line DN (`C=US/O=Example/CN=alice`, leading `/` removed). Its
/// values are not escaped: a part without `=` continues the value before it (`CN=a/b`).
fn oneline_common_names(dn: &str) -> Vec<String> {
    let mut attributes: Vec<(&str, String)> = Vec::new();
    for part in dn.split('/') {
        match (part.split_once('='), attributes.last_mut()) {
            (Some((kind, value)), _) => attributes.push((kind, value.to_owned())),
            (None, Some((_, value))) => {
                value.push('/');
                value.push_str(part);
            }
            (None, None) => {}
        }
    }
    attributes
        .into_iter()
        .filter(|(kind, _)| is_common_name(kind))
        .map(|(_, value)| value)
        .collect()
}

/// The layer that reads forwarded certificates (see the [module docs](self)).
#[derive(Clone)]
pub(crate) struct ForwardedCertificateLayer {
    shared: Arc<Shared>,
}

struct Shared {
    header: CertificateHeader,
    proxies: TrustedProxies,
    audit: AuditLog,
}

impl ForwardedCertificateLayer {
    /// The layer for `forwarded`, believed from `proxies`.
    ///
    /// # Errors
    /// An unusable header name, or no trusted proxy (the header could never be believed, so
    /// every certificate would be refused: surely not what was meant).
    pub(crate) fn new(
        forwarded: &ForwardedCertificate,
        proxies: TrustedProxies,
        audit: AuditLog,
    ) -> Result<Self, ConfigError> {
        let header = forwarded.checked()?;
        if proxies.is_empty() {
            return Err(ConfigError::invalid(format!(
                "client_certificate_header(`{}`) needs trusted_proxies([...]): the header is \
                 believed only from a trusted proxy, so without one no request could ever \
                 authenticate with it; list the proxies that terminate TLS",
                header.name
            )));
        }
        Ok(Self {
            shared: Arc::new(Shared {
                header,
                proxies,
                audit,
            }),
        })
    }
}

impl<S> Layer<S> for ForwardedCertificateLayer {
    type Service = ForwardedCertificateService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ForwardedCertificateService {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service of [`ForwardedCertificateLayer`].
#[derive(Clone)]
pub(crate) struct ForwardedCertificateService<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> Service<Request> for ForwardedCertificateService<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<S::Future, Ready<Result<Response, Infallible>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        match self.shared.resolve(&mut request) {
            Ok(()) => Either::Left(self.inner.call(request)),
            Err(detail) => {
                let body = serde_json::json!({
                    "error": "invalid_request",
                    "error_description": detail,
                });
                let refusal = (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
                Either::Right(ready(Ok(refusal)))
            }
        }
    }
}

impl Shared {
    /// Puts the forwarded certificate in `request`'s extensions, or strips the header it may
    /// not carry; `Err` says why a trusted proxy's header is refused (the `400`'s description).
    fn resolve(&self, request: &mut Request) -> Result<(), String> {
        let name = &self.header.name;
        let peer = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0);
        // Without a peer (a router served without connect info) no one can be trusted.
        if !peer.is_some_and(|peer| self.proxies.contains(peer.ip())) {
            if request.headers_mut().remove(name).is_some() {
                let detail = format!("`{name}` from a peer that is not a trusted proxy");
                self.audit_refusal("forwarded_certificate_ignored", &detail, peer);
            }
            return Ok(());
        }
        // The connection's own certificate is the proxy's, never one of its clients'.
        request.extensions_mut().remove::<Arc<ClientCertificate>>();
        if !request.headers().contains_key(name) {
            return Ok(());
        }
        match self.header.parse(request.headers()) {
            Ok(Some(certificate)) => {
                request.extensions_mut().insert(Arc::new(certificate));
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(Malformed(why)) => {
                let detail = format!("`{name}` from a trusted proxy is malformed: {why}");
                self.audit_refusal("invalid_forwarded_certificate", &detail, peer);
                Err(detail)
            }
        }
    }

    fn audit_refusal(&self, reason: &'static str, detail: &str, peer: Option<SocketAddr>) {
        let mut record = AuditRecord::new(AuditEvent::Authentication, Outcome::Denied);
        record.reason = Some(reason);
        record.detail = Some(detail);
        record.remote_addr = peer;
        self.audit.record(&record);
    }
}

#[cfg(test)]
mod tests;
