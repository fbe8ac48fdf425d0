//! OAuth clients: pre-registered ones configured in code, finding a client by id (stored, or
//! its Client ID Metadata Document), and client authentication at the token and revocation
//! endpoints (`client_secret_basic`, `client_secret_post`, RFC 8705's `tls_client_auth` and
//! `self_signed_tls_client_auth` by the request's client certificate, or none for public
//! clients).

use std::{fmt, net::IpAddr};

use http::HeaderMap;
use subtle::ConstantTimeEq;

use super::{AsState, error::OAuthError, grants, redirect};
use crate::{
    AuditEvent, AuditRecord, ConfigError, Outcome,
    auth::basic::{self, BasicError},
    store::{ClientRecord, TlsClientAuth, hash_secret},
};

/// Compared against when the client is unknown or public, so every failure costs the same.
const DUMMY_HASH: [u8; 32] = [0; 32];

/// A client registered in code (see
/// [`AuthorizationServer::client`](super::AuthorizationServer::client)).
///
/// ```
/// use mcp_gatekeeper::oauth::OAuthClient;
/// // A service using the client-credentials grant with the `ops` role:
/// let service = OAuthClient::confidential("reporting", "a-long-random-secret-from-the-env")
///     .role("ops")
///     .scopes(["data:read"]);
/// // A desktop app signing users in (authorization code with PKCE):
/// let app = OAuthClient::public("desktop-app")
///     .name("Desktop App")
///     .redirect_uris(["http://127.0.0.1/callback"]);
/// # let _ = (service, app);
/// ```
#[derive(Clone)]
pub struct OAuthClient {
    id: String,
    secret: Option<String>,
    /// The certificate of a mutual-TLS client (RFC 8705), instead of a secret.
    tls_client_auth: Option<TlsClientAuth>,
    name: Option<String>,
    redirect_uris: Vec<String>,
    grant_types: Option<Vec<String>>,
    scopes: Option<Vec<String>>,
    role: Option<String>,
}

impl fmt::Debug for OAuthClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthClient")
            .field("id", &self.id)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("tls_client_auth", &self.tls_client_auth)
            .field("name", &self.name)
            .field("redirect_uris", &self.redirect_uris)
            .field("grant_types", &self.grant_types)
            .field("scopes", &self.scopes)
            .field("role", &self.role)
            .finish()
    }
}

impl OAuthClient {
    /// A confidential client that authenticates with `secret` (HTTP Basic or form parameters).
    /// Only the secret's SHA-256 is stored; use a long random secret.
    pub fn confidential(id: impl Into<String>, secret: impl Into<String>) -> Self {
        Self {
            secret: Some(secret.into()),
            ..Self::public(id)
        }
    }

    /// A confidential client that authenticates at the token endpoint with its TLS client
    /// certificate (RFC 8705 §2) instead of a secret, recognised as `auth` says: by a name in a
    /// certificate from a CA the server trusts (`tls_client_auth`), or by the thumbprint of a
    /// certificate it registered (`self_signed_tls_client_auth`, see
    /// [`TlsClientAuth::self_signed_pem`]). The client sends its `client_id` as a form
    /// parameter and presents the certificate in the TLS handshake (or through a trusted proxy,
    /// `Gatekeeper::client_certificate_header`); its tokens are bound to that certificate
    /// (`cnf.x5t#S256`, RFC 8705 §3). Like [`confidential`](Self::confidential) clients, it uses
    /// `client_credentials` unless given redirect URIs or grant types.
    ///
    /// ```
    /// use mcp_gatekeeper::oauth::{OAuthClient, TlsClientAuth};
    /// let reporting = OAuthClient::mutual_tls(
    ///     "reporting",
    ///     TlsClientAuth::SanDns("reporting.internal.example.org".into()),
    /// )
    /// .role("ops");
    /// # let _ = reporting;
    /// ```
    #[cfg(feature = "mtls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "mtls")))]
    pub fn mutual_tls(id: impl Into<String>, auth: TlsClientAuth) -> Self {
        Self {
            tls_client_auth: Some(auth),
            ..Self::public(id)
        }
    }

    /// A public client (a native or browser app): no secret, authorization code with PKCE.
    pub fn public(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            secret: None,
            tls_client_auth: None,
            name: None,
            redirect_uris: Vec::new(),
            grant_types: None,
            scopes: None,
            role: None,
        }
    }

    /// The name shown on the consent page (default: the id).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The redirect URIs authorization requests may use (https, or http on loopback).
    pub fn redirect_uris<I, S>(mut self, uris: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.redirect_uris = uris.into_iter().map(Into::into).collect();
        self
    }

    /// The grant types the client may use. Default: a client with redirect URIs uses
    /// `authorization_code` and `refresh_token`; a confidential client also (or, without
    /// redirect URIs, only) `client_credentials`.
    pub fn grant_types<I, S>(mut self, grants: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.grant_types = Some(grants.into_iter().map(Into::into).collect());
        self
    }

    /// The scopes the client may be granted (default: every scope the server supports).
    pub fn scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes = Some(scopes.into_iter().map(Into::into).collect());
        self
    }

    /// The role carried by the client's own (client-credentials) tokens.
    pub fn role(mut self, role: impl Into<String>) -> Self {
        self.role = Some(role.into());
        self
    }

    /// The client id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The role of the client's own tokens.
    pub(crate) fn role_name(&self) -> Option<&str> {
        self.role.as_deref()
    }

    /// Checks the configuration and makes the record to store, created at `now` (unix
    /// seconds): what [`AuthorizationServer::build`](super::AuthorizationServer::build) stores
    /// for a configured client, for tools that register clients in a store themselves (the
    /// `mcp-gatekeeper clients add` command, the `oauth` example's `add-client`). Only the
    /// secret's SHA-256 is in the record.
    ///
    /// `server_scopes` are the scopes the server supports: a client configured without
    /// [`scopes`](Self::scopes) may be granted all of them, and one with scopes outside them
    /// is refused. A tool that does not know the server's scopes passes the client's own.
    ///
    /// # Errors
    /// When the id, the secret (shorter than 16 characters), a redirect URI, the grant types
    /// or the scopes cannot be used.
    pub fn to_record(
        &self,
        server_scopes: &[String],
        now: i64,
    ) -> Result<ClientRecord, ConfigError> {
        let invalid =
            |why: String| ConfigError::invalid(format!("OAuth client `{}`: {why}", self.id));
        if self.id.is_empty() || self.id.chars().any(|c| c.is_control() || c == ':') {
            return Err(invalid(
                "a client id is non-empty printable text without `:`".into(),
            ));
        }
        if let Some(secret) = &self.secret
            && secret.len() < 16
        {
            return Err(ConfigError::WeakSecret {
                what: format!("the secret of OAuth client `{}`", self.id),
                minimum: 16,
                unit: "characters",
            });
        }
        for uri in &self.redirect_uris {
            redirect::check_registrable(uri).map_err(invalid)?;
        }
        let tls_client_auth = match &self.tls_client_auth {
            Some(auth) => Some(checked_tls_client_auth(auth).map_err(invalid)?),
            None => None,
        };
        let confidential = self.secret.is_some() || tls_client_auth.is_some();
        let grant_types = match &self.grant_types {
            Some(grants) => grants.clone(),
            None => {
                let mut grants = Vec::new();
                if !self.redirect_uris.is_empty() {
                    grants.push(grants::AUTHORIZATION_CODE.to_owned());
                    grants.push(grants::REFRESH_TOKEN.to_owned());
                }
                if confidential {
                    grants.push(grants::CLIENT_CREDENTIALS.to_owned());
                }
                grants
            }
        };
        for grant in &grant_types {
            match grant.as_str() {
                grants::AUTHORIZATION_CODE | grants::REFRESH_TOKEN => {}
                grants::CLIENT_CREDENTIALS if confidential => {}
                grants::CLIENT_CREDENTIALS => {
                    return Err(invalid(
                        "a public client cannot use client_credentials".into(),
                    ));
                }
                other => return Err(invalid(format!("unknown grant type `{other}`"))),
            }
        }
        if grant_types.iter().any(|g| g == grants::AUTHORIZATION_CODE)
            && self.redirect_uris.is_empty()
        {
            return Err(invalid(
                "the authorization_code grant needs a redirect URI".into(),
            ));
        }
        let allowed_scopes = self
            .scopes
            .clone()
            .unwrap_or_else(|| server_scopes.to_vec());
        for scope in &allowed_scopes {
            if !server_scopes.contains(scope) {
                return Err(invalid(format!(
                    "scope `{scope}` is not one the server supports ({})",
                    server_scopes.join(" ")
                )));
            }
        }
        Ok(ClientRecord {
            client_id: self.id.clone(),
            secret_hash: self.secret.as_deref().map(hash_secret),
            name: self.name.clone().unwrap_or_else(|| self.id.clone()),
            redirect_uris: self.redirect_uris.clone(),
            grant_types,
            allowed_scopes,
            role: self.role.clone(),
            token_endpoint_auth_method: match (&tls_client_auth, &self.secret) {
                (Some(auth), _) => auth.auth_method().into(),
                (None, Some(_)) => "client_secret_basic".into(),
                (None, None) => "none".into(),
            },
            tls_client_auth,
            metadata_url: None,
            self_registered: false,
            created_at: now,
        })
    }
}

/// The client with this id: stored, or (for an `https` URL id when metadata documents are on)
/// fetched from its Client ID Metadata Document.
///
/// `remote` is the requester's address: a document fetch counts toward its limits.
pub(crate) async fn find(
    state: &AsState,
    client_id: &str,
    remote: Option<IpAddr>,
) -> Result<Option<ClientRecord>, OAuthError> {
    #[cfg(feature = "http-client")]
    if let Some(fetcher) = &state.metadata_documents
        && fetcher.is_metadata_url(client_id)
    {
        return fetcher.client(state, client_id, remote).await;
    }
    #[cfg(not(feature = "http-client"))]
    let _ = remote; // only a document fetch counts toward the requester's limits
    // A client stored from a metadata document is trusted only through the fetcher, which
    // re-fetches it when its cache lifetime ends (and not at all once documents are off).
    Ok(state
        .store
        .get_client(client_id)
        .await?
        .filter(|c| c.metadata_url.is_none()))
}

/// The credentials a request to the token or revocation endpoint presents.
#[derive(Default)]
pub(crate) struct PresentedClient<'a> {
    /// `client_id` form parameter.
    pub(crate) form_id: Option<&'a str>,
    /// `client_secret` form parameter.
    pub(crate) form_secret: Option<&'a str>,
    /// The client certificate the request came with (TLS handshake or trusted proxy).
    #[cfg(feature = "mtls")]
    pub(crate) certificate: Option<&'a crate::auth::ClientCertificate>,
}

/// Authenticates the client of a token or revocation request: `client_secret_basic`,
/// `client_secret_post`, `tls_client_auth` or `self_signed_tls_client_auth` (the request's
/// client certificate, RFC 8705 §2; the client names itself with the `client_id` parameter),
/// or `none` for a public client (which then only identifies itself). A client authenticates
/// only by the method it registered: a mutual-TLS client's secret-less request is never taken
/// for a public client's. Failures are counted per address (past the limit they are answered
/// `429`) and audited; a correct secret or certificate is never refused.
pub(crate) async fn authenticate(
    state: &AsState,
    headers: &HeaderMap,
    presented: PresentedClient<'_>,
    remote: Option<IpAddr>,
    event: AuditEvent,
) -> Result<ClientRecord, OAuthError> {
    // RFC 6749 §2.3.1: id and secret are form-encoded, and only the decoded secret is checked
    // (the seed token endpoint also tries the secret as sent; see `auth::basic`).
    let basic = basic::from_headers(headers).map_err(|error| match error {
        BasicError::Several => OAuthError::invalid_request("more than one Authorization header"),
        BasicError::NotBasic | BasicError::Malformed => OAuthError::invalid_client(true),
    })?;
    let used_basic = basic.is_some();
    let (client_id, secret) = match (basic, presented.form_secret) {
        (Some(_), Some(_)) => {
            return Err(OAuthError::invalid_request(
                "use one client authentication method, not both",
            ));
        }
        (Some(basic), None) => {
            if presented.form_id.is_some_and(|f| f != basic.id) {
                return Err(OAuthError::invalid_request(
                    "client_id differs from the authenticated client",
                ));
            }
            (basic.id, Some(basic.secret))
        }
        (None, secret) => match presented.form_id {
            Some(id) if !id.is_empty() => (id.to_owned(), secret.map(str::to_owned)),
            _ => return Err(OAuthError::invalid_client(false)),
        },
    };
    // Client secrets are high-entropy: the secret is always checked, a correct one is never
    // refused, and only failures count (per address). A public client presents no secret, so
    // nothing about it can be locked: anyone who learns its id cannot stop its users.
    let client = find(state, &client_id, remote).await?;
    // Why a mutual-TLS client was refused, for the audit record.
    let mut certificate_refusal = None;
    let accepted = match (&client, &secret) {
        (Some(c), secret) if c.tls_client_auth.is_some() => match secret {
            Some(secret) => {
                let _ = hash_secret(secret).ct_eq(&DUMMY_HASH);
                certificate_refusal = Some("a mutual-TLS client presented a secret");
                false
            }
            None => match certificate_authenticates(c, &presented) {
                Ok(()) => true,
                Err(why) => {
                    certificate_refusal = Some(why);
                    false
                }
            },
        },
        (Some(c), Some(secret)) => match &c.secret_hash {
            Some(expected) => bool::from(hash_secret(secret).ct_eq(expected)),
            None => {
                let _ = hash_secret(secret).ct_eq(&DUMMY_HASH);
                false // a public client has no secret to present
            }
        },
        // A public client only identifies itself; PKCE protects its codes.
        (Some(c), None) => c.secret_hash.is_none(),
        (None, secret) => {
            let _ = hash_secret(secret.as_deref().unwrap_or_default()).ct_eq(&DUMMY_HASH);
            false
        }
    };
    match client {
        Some(client) if accepted => Ok(client),
        _ => {
            let throttled = match remote {
                Some(addr) => state.client_failures.record(addr).await,
                None => None,
            };
            audit_failure(
                state,
                event,
                (&client_id, remote),
                if throttled.is_some() {
                    "too_many_failures"
                } else {
                    "invalid_client"
                },
                certificate_refusal,
            );
            Err(match throttled {
                Some(wait) => OAuthError::locked_out(wait),
                None => OAuthError::invalid_client(used_basic),
            })
        }
    }
}

fn audit_failure(
    state: &AsState,
    event: AuditEvent,
    (client_id, remote): (&str, Option<IpAddr>),
    reason: &str,
    detail: Option<&str>,
) {
    let mut record = AuditRecord::new(event, Outcome::Denied);
    record.client_id = Some(client_id);
    record.reason = Some(reason);
    record.detail = detail;
    record.remote_addr = remote.map(|ip| std::net::SocketAddr::new(ip, 0));
    state.audit.record(&record);
}

/// Whether the request's client certificate authenticates mutual-TLS client `client`
/// (RFC 8705 §2); `Err` says why not, for the audit trail. The certificate must be within its
/// validity period now (a connection may outlive it). `tls_client_auth` needs a certificate
/// that chains to a trusted CA with the registered name (the subject DN compared as
/// [`ClientCertificate::subject_dn`](crate::auth::ClientCertificate::subject_dn) writes it,
/// DNS names without regard to ASCII case, URIs and e-mail addresses exactly);
/// `self_signed_tls_client_auth` needs one of the registered certificates, by thumbprint,
/// compared in constant time, whoever issued it.
#[cfg(feature = "mtls")]
fn certificate_authenticates(
    client: &ClientRecord,
    presented: &PresentedClient<'_>,
) -> Result<(), &'static str> {
    let Some(auth) = &client.tls_client_auth else {
        return Err("not a mutual-TLS client");
    };
    let Some(certificate) = presented.certificate else {
        return Err("no client certificate");
    };
    let now = std::time::SystemTime::now();
    if certificate.not_before().is_some_and(|from| now < from)
        || certificate.not_after().is_some_and(|until| now > until)
    {
        return Err("client certificate expired or not yet valid");
    }
    let matches = match auth {
        TlsClientAuth::SelfSigned(thumbprints) => {
            let mut found = subtle::Choice::from(0);
            for thumbprint in thumbprints {
                found |= thumbprint.ct_eq(certificate.thumbprint());
            }
            bool::from(found)
        }
        // A name counts only in a certificate a trusted CA issued: anyone can self-sign any.
        _ if !certificate.is_ca_verified() => {
            return Err("client certificate not issued by a trusted CA");
        }
        TlsClientAuth::SubjectDn(dn) => certificate.subject_dn() == dn,
        TlsClientAuth::SanDns(dns) => certificate
            .san_dns()
            .iter()
            .any(|name| name.eq_ignore_ascii_case(dns)),
        TlsClientAuth::SanUri(uri) => certificate.san_uris().iter().any(|name| name == uri),
        TlsClientAuth::SanEmail(email) => certificate.san_emails().iter().any(|name| name == email),
    };
    if matches {
        Ok(())
    } else {
        Err("client certificate does not match the client's registration")
    }
}

/// Without the `mtls` feature no certificate reaches the server: a mutual-TLS client (stored by
/// a build with it) cannot authenticate.
#[cfg(not(feature = "mtls"))]
fn certificate_authenticates(
    _client: &ClientRecord,
    _presented: &PresentedClient<'_>,
) -> Result<(), &'static str> {
    Err("client certificates need the mtls feature")
}

/// The most certificates a `self_signed_tls_client_auth` client may register.
pub(crate) const MAX_CLIENT_CERTIFICATES: usize = 10;

/// The longest name a `tls_client_auth` client may be registered with, in bytes.
const MAX_CERTIFICATE_NAME_BYTES: usize = 1024;

/// A mutual-TLS client's expected certificate, checked and in the form it is stored and
/// compared in: a subject DN rewritten by RFC 4514's rules (so that spacing and the case of
/// type names do not matter), a SAN non-empty printable text, at least one and at most
/// [`MAX_CLIENT_CERTIFICATES`] thumbprints (duplicates dropped). `Err` says why not.
pub(crate) fn checked_tls_client_auth(auth: &TlsClientAuth) -> Result<TlsClientAuth, String> {
    match auth {
        TlsClientAuth::SubjectDn(dn) => {
            #[cfg(feature = "mtls")]
            return crate::auth::distinguished_name::normalize(dn)
                .map(TlsClientAuth::SubjectDn)
                .map_err(|why| format!("tls_client_auth_subject_dn: {why}"));
            #[cfg(not(feature = "mtls"))]
            return Err(format!(
                "tls_client_auth_subject_dn `{dn}`: client certificates need the mtls feature"
            ));
        }
        TlsClientAuth::SanDns(name)
        | TlsClientAuth::SanUri(name)
        | TlsClientAuth::SanEmail(name) => {
            let (member, _) = auth.metadata_member().unwrap_or_default();
            if name.is_empty()
                || name.len() > MAX_CERTIFICATE_NAME_BYTES
                || name.chars().any(|c| c.is_control() || c.is_whitespace())
            {
                return Err(format!(
                    "{member} must be a name of at most {MAX_CERTIFICATE_NAME_BYTES} bytes \
                     without spaces or control characters"
                ));
            }
            Ok(auth.clone())
        }
        TlsClientAuth::SelfSigned(thumbprints) => {
            let mut unique: Vec<[u8; 32]> = Vec::with_capacity(thumbprints.len());
            for thumbprint in thumbprints {
                if !unique.contains(thumbprint) {
                    unique.push(*thumbprint);
                }
            }
            if unique.is_empty() || unique.len() > MAX_CLIENT_CERTIFICATES {
                return Err(format!(
                    "self_signed_tls_client_auth needs 1 to {MAX_CLIENT_CERTIFICATES} certificates"
                ));
            }
            Ok(TlsClientAuth::SelfSigned(unique))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_clients_are_checked() {
        let scopes = vec!["a".to_owned(), "b".to_owned()];
        let service = OAuthClient::confidential("svc", "0123456789abcdef0123")
            .to_record(&scopes, 1)
            .unwrap();
        assert_eq!(service.grant_types, vec!["client_credentials"]);
        assert_eq!(service.allowed_scopes, scopes);
        assert!(service.secret_hash.is_some());
        let app = OAuthClient::public("app")
            .redirect_uris(["http://127.0.0.1/cb"])
            .to_record(&scopes, 1)
            .unwrap();
        assert_eq!(app.grant_types, vec!["authorization_code", "refresh_token"]);
        assert_eq!(app.token_endpoint_auth_method, "none");

        for bad in [
            OAuthClient::confidential("svc", "short"),
            OAuthClient::public("app").grant_types(["client_credentials"]),
            OAuthClient::public("app").grant_types(["authorization_code"]),
            OAuthClient::public("app").redirect_uris(["http://evil.example/cb"]),
            OAuthClient::public("app").scopes(["c"]),
            OAuthClient::public("a:b"),
            OAuthClient::public("app").grant_types(["password"]),
        ] {
            assert!(bad.to_record(&scopes, 1).is_err(), "{bad:?}");
        }
        let printed = format!(
            "{:?}",
            OAuthClient::confidential("svc", "0123456789abcdef0123")
        );
        assert!(!printed.contains("0123456789"), "{printed}");
    }

    #[cfg(feature = "mtls")]
    #[test]
    fn mutual_tls_clients_are_confidential_and_checked() {
        let scopes = vec!["a".to_owned()];
        let service = OAuthClient::mutual_tls("svc", TlsClientAuth::SanDns("svc.example".into()))
            .to_record(&scopes, 1)
            .unwrap();
        assert_eq!(service.grant_types, ["client_credentials"]);
        assert_eq!(service.token_endpoint_auth_method, "tls_client_auth");
        assert_eq!(service.secret_hash, None);
        assert!(service.is_confidential());
        let app = OAuthClient::mutual_tls("app", TlsClientAuth::SelfSigned(vec![[1; 32], [1; 32]]))
            .redirect_uris(["http://127.0.0.1/cb"])
            .to_record(&scopes, 1)
            .unwrap();
        assert_eq!(
            app.grant_types,
            ["authorization_code", "refresh_token", "client_credentials"]
        );
        assert_eq!(
            app.token_endpoint_auth_method,
            "self_signed_tls_client_auth"
        );
        assert_eq!(
            app.tls_client_auth,
            Some(TlsClientAuth::SelfSigned(vec![[1; 32]])),
            "duplicates dropped"
        );
        let dn =
            OAuthClient::mutual_tls("dn", TlsClientAuth::SubjectDn("cn=svc, o=Example".into()))
                .to_record(&scopes, 1)
                .unwrap();
        assert_eq!(
            dn.tls_client_auth,
            Some(TlsClientAuth::SubjectDn("CN=svc,O=Example".into())),
            "stored as certificates are written"
        );
        let many: Vec<[u8; 32]> = (0..=MAX_CLIENT_CERTIFICATES as u8)
            .map(|i| [i; 32])
            .collect();
        for bad in [
            TlsClientAuth::SubjectDn("not a name".into()),
            TlsClientAuth::SanDns(String::new()),
            TlsClientAuth::SanUri("spiffe://a b".into()),
            TlsClientAuth::SanEmail("a@example.org\n".into()),
            TlsClientAuth::SelfSigned(vec![]),
            TlsClientAuth::SelfSigned(many),
        ] {
            let client = OAuthClient::mutual_tls("svc", bad);
            assert!(client.to_record(&scopes, 1).is_err(), "{client:?}");
        }
    }

    /// A certificate for `names` (SAN DNS) with subject `CN=cn`, self-signed, valid between
    /// the years given.
    #[cfg(feature = "mtls")]
    fn certificate(cn: &str, names: &[&str], years: (i32, i32)) -> crate::auth::ClientCertificate {
        let mut params = rcgen::CertificateParams::new(
            names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>(),
        )
        .unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params.not_before = rcgen::date_time_ymd(years.0, 1, 1);
        params.not_after = rcgen::date_time_ymd(years.1, 1, 1);
        let key = rcgen::KeyPair::generate().unwrap();
        let der = params.self_signed(&key).unwrap().der().to_vec();
        crate::auth::ClientCertificate::from_der(&der, crate::auth::CertificateSource::Tls).unwrap()
    }

    #[cfg(feature = "mtls")]
    #[test]
    fn a_mutual_tls_client_is_recognised_by_its_certificate_only() {
        let record = |auth: TlsClientAuth| {
            OAuthClient::mutual_tls("svc", auth)
                .to_record(&[], 1)
                .unwrap()
        };
        let check = |client: &ClientRecord,
                     certificate: Option<&crate::auth::ClientCertificate>| {
            certificate_authenticates(
                client,
                &PresentedClient {
                    form_id: Some("svc"),
                    form_secret: None,
                    certificate,
                },
            )
        };
        let svc = certificate("svc", &["svc.example"], (2020, 2100));
        let other = certificate("other", &["other.example"], (2020, 2100));
        let expired = certificate("svc", &["svc.example"], (2000, 2001));

        let by_dns = record(TlsClientAuth::SanDns("SVC.example".into()));
        assert_eq!(check(&by_dns, Some(&svc)), Ok(()), "DNS names ignore case");
        assert!(check(&by_dns, Some(&other)).is_err());
        assert_eq!(check(&by_dns, None), Err("no client certificate"));
        assert_eq!(
            check(&by_dns, Some(&expired)),
            Err("client certificate expired or not yet valid")
        );
        let by_dn = record(TlsClientAuth::SubjectDn("cn=svc".into()));
        assert_eq!(check(&by_dn, Some(&svc)), Ok(()));
        assert!(check(&by_dn, Some(&other)).is_err());
        // A name in a certificate nobody vouches for proves nothing.
        let unverified = svc.clone().not_ca_verified();
        assert_eq!(
            check(&by_dns, Some(&unverified)),
            Err("client certificate not issued by a trusted CA")
        );
        // A registered certificate is recognised by its thumbprint, whoever issued it.
        let by_thumbprint = record(TlsClientAuth::SelfSigned(vec![[9; 32], *svc.thumbprint()]));
        assert_eq!(check(&by_thumbprint, Some(&unverified)), Ok(()));
        assert_eq!(check(&by_thumbprint, Some(&svc)), Ok(()));
        assert!(check(&by_thumbprint, Some(&other)).is_err());
    }
}
