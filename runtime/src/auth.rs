//! Authentication: turning the credential on an HTTP request into a [`Principal`].
//!
//! Every request passes through the configured [`Authenticator`]s in order. Each one either
//! *recognises* the credential (and then decides: accept or reject) or passes it on. The first
//! that recognises it decides; a credential that one authenticator rejected is never offered to
//! the next, so a forged token can never be "rescued" by a more lenient scheme.

mod api_key;
// HTTP Basic client credentials: only the token endpoints take them (the OAuth server needs
// `jwt` too).
#[cfg(feature = "jwt")]
pub(crate) mod basic;
mod chain;
mod credential;
mod error;
#[cfg(feature = "jwt")]
mod jwt;
pub(crate) mod lockout;
#[cfg(feature = "mtls")]
mod mtls;
#[cfg(feature = "oidc")]
mod oidc;
mod reload;
mod resource;
#[cfg(feature = "jwt")]
pub(crate) mod revoked;
#[cfg(feature = "jwt")]
mod token_cache;
#[cfg(feature = "jwt")]
#[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
pub mod token_endpoint;

use std::sync::Arc;

use futures::future::BoxFuture;
pub use http::request::Parts;

pub use api_key::{ApiKey, ApiKeyFile, ApiKeys};
pub(crate) use chain::AuthChain;
pub use credential::{API_KEY_HEADER, Credential, CredentialKind, UNSUPPORTED_SCHEME};
pub use error::{AuthError, AuthErrorKind};
#[cfg(feature = "jwt")]
#[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
pub use jwt::{ClaimPath, Jwt, JwtAlgorithm};
pub(crate) use lockout::FailureThrottle;
pub use lockout::Lockout;
#[cfg(feature = "oauth")]
pub(crate) use lockout::PasswordGuard;
#[cfg(feature = "mtls")]
pub(crate) use mtls::ForwardedFields;
#[cfg(feature = "mtls")]
#[cfg_attr(docsrs, doc(cfg(feature = "mtls")))]
pub use mtls::{
    CertificateError, CertificateField, CertificateSource, ClientCertificate, ClientCertificates,
};
// RFC 4514 names, for the authorization server's `tls_client_auth_subject_dn` clients.
#[cfg(all(feature = "mtls", feature = "oauth"))]
pub(crate) use mtls::dn as distinguished_name;
#[cfg(feature = "oidc")]
#[cfg_attr(docsrs, doc(cfg(feature = "oidc")))]
pub use oidc::{ClientAuthentication, Oidc, OidcBuilder, OidcIssuer, OidcStats};
pub use resource::ProtectedResource;
#[cfg(feature = "oauth")]
pub(crate) use token_cache::VerifiedTokens;

use crate::Principal;

/// What an authenticator concluded about a request's credential.
#[derive(Debug)]
pub enum Verdict {
    /// Not a credential this authenticator handles; the next one is asked.
    Pass,
    /// The credential is valid and speaks for this principal.
    Accept(Arc<Principal>),
    /// The credential is one this authenticator handles, and it is not valid.
    Reject(AuthError),
}

/// The result of [`Authenticator::authenticate`]: most schemes decide synchronously (API keys,
/// JWTs with configured keys) and return `Ready` without allocating; schemes that must do I/O
/// (fetching a key set, introspecting a token) return a boxed future.
pub enum Authentication<'a> {
    /// The verdict is known now.
    Ready(Verdict),
    /// The verdict needs I/O first.
    Pending(BoxFuture<'a, Verdict>),
}

impl Authentication<'_> {
    /// Waits for the verdict.
    pub async fn verdict(self) -> Verdict {
        match self {
            Authentication::Ready(verdict) => verdict,
            Authentication::Pending(future) => future.await,
        }
    }
}

impl From<Verdict> for Authentication<'_> {
    fn from(verdict: Verdict) -> Self {
        Authentication::Ready(verdict)
    }
}

/// What an authenticator gets to look at: the one credential the request presented (if any)
/// and the rest of the request head (for schemes such as mTLS that read extensions).
#[derive(Debug)]
pub struct AuthRequest<'a> {
    /// The credential taken from the request headers, if one was presented.
    pub credential: Option<Credential<'a>>,
    /// The request head.
    pub parts: &'a Parts,
}

/// A way of authenticating callers.
///
/// Implementations must never log or keep the credential, and should compare secrets in
/// constant time.
pub trait Authenticator: Send + Sync + 'static {
    /// A short name for logs and errors (`"api_key"`, `"jwt"`).
    fn name(&self) -> &'static str;

    /// Decides about the request's credential.
    fn authenticate<'a>(&'a self, request: &'a AuthRequest<'a>) -> Authentication<'a>;

    /// The role names this authenticator can grant, so the server can refuse to start when a
    /// configured role is not one of the tools' roles (a typo in a key file must not silently
    /// lock a caller out, or in).
    fn configured_roles(&self) -> Vec<String> {
        Vec::new()
    }

    /// The credentials this authenticator decides, in the order a client should prefer them.
    /// The server names the union of its authenticators' (in chain order) in the `401` a
    /// request without a credential gets, once, when it is built, so clients are told only
    /// what this server accepts. The default is a bearer token; an authenticator reading
    /// `X-API-Key`, or no header at all (mTLS: return an empty list), says so.
    fn accepted_credentials(&self) -> &'static [CredentialKind] {
        &[CredentialKind::Bearer]
    }

    /// The authorization servers (issuer identifiers) whose tokens this authenticator accepts.
    /// A server that declares itself a [`ProtectedResource`] lists them in its metadata's
    /// `authorization_servers`, so clients discover where to get a token. The default: none.
    fn authorization_servers(&self) -> Vec<String> {
        Vec::new()
    }

    /// Checks the authenticator's configuration when a server is built with it; an error stops
    /// the build (for example a JWT verifier that would accept tokens issued for any service).
    fn check_configuration(&self) -> Result<(), crate::ConfigError> {
        Ok(())
    }

    /// Called once by each server built with this authenticator, after its configuration was
    /// checked, with what the server knows that the authenticator may need later (the tools'
    /// roles, to check keys reloaded at run time; the audit log, to record reloads). The
    /// default does nothing.
    fn attach(&self, server: &ServerContext<'_>) {
        let _ = server;
    }
}

/// What a server tells each of its authenticators when it is built (see
/// [`Authenticator::attach`]).
#[derive(Debug)]
#[non_exhaustive]
pub struct ServerContext<'a> {
    /// The role names the tools declare, when the server knows them (a
    /// [`Gatekeeper`](crate::Gatekeeper); not a [`GatekeeperLayer`](crate::GatekeeperLayer) in
    /// front of another service).
    pub roles: Option<&'a [&'static str]>,
    /// The server's audit log.
    pub audit: &'a crate::AuditLog,
}

impl<'a> ServerContext<'a> {
    /// What a server with `audit` and, if it knows them, the tools' `roles` says.
    pub fn new(roles: Option<&'a [&'static str]>, audit: &'a crate::AuditLog) -> Self {
        Self { roles, audit }
    }
}
