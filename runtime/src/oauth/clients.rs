//! OAuth clients: pre-registered ones configured in code, finding a client by id (stored, or
//! its Client ID Metadata Document), and client authentication at the token and revocation
//! endpoints (`client_secret_basic`, `client_secret_post`, or none for public clients).

use std::{fmt, net::IpAddr};

use http::HeaderMap;
use subtle::ConstantTimeEq;

use super::{AsState, error::OAuthError, grants, redirect};
use crate::{
    AuditEvent, AuditRecord, ConfigError, Outcome,
    auth::basic::{self, BasicError},
    store::{ClientRecord, hash_secret},
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

    /// A public client (a native or browser app): no secret, authorization code with PKCE.
    pub fn public(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            secret: None,
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

    /// Checks the configuration and makes the stored record.
    pub(crate) fn to_record(
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
        let grant_types = match &self.grant_types {
            Some(grants) => grants.clone(),
            None => {
                let mut grants = Vec::new();
                if !self.redirect_uris.is_empty() {
                    grants.push(grants::AUTHORIZATION_CODE.to_owned());
                    grants.push(grants::REFRESH_TOKEN.to_owned());
                }
                if self.secret.is_some() {
                    grants.push(grants::CLIENT_CREDENTIALS.to_owned());
                }
                grants
            }
        };
        for grant in &grant_types {
            match grant.as_str() {
                grants::AUTHORIZATION_CODE | grants::REFRESH_TOKEN => {}
                grants::CLIENT_CREDENTIALS if self.secret.is_some() => {}
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
            token_endpoint_auth_method: if self.secret.is_some() {
                "client_secret_basic".into()
            } else {
                "none".into()
            },
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
}

/// Authenticates the client of a token or revocation request: `client_secret_basic`,
/// `client_secret_post`, or `none` for a public client (which then only identifies itself).
/// Failures are counted per address (past the limit they are answered `429`) and audited; a
/// correct secret is never refused.
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
    let accepted = match (&client, &secret) {
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
            let throttled = remote.and_then(|addr| state.client_failures.record_failure(addr));
            audit_failure(
                state,
                event,
                &client_id,
                remote,
                if throttled.is_some() {
                    "too_many_failures"
                } else {
                    "invalid_client"
                },
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
    client_id: &str,
    remote: Option<IpAddr>,
    reason: &str,
) {
    let mut record = AuditRecord::new(event, Outcome::Denied);
    record.client_id = Some(client_id);
    record.reason = Some(reason);
    record.remote_addr = remote.map(|ip| std::net::SocketAddr::new(ip, 0));
    state.audit.record(&record);
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
}
