//! Why a credential was refused, in terms an HTTP client and an audit log understand.

use std::{borrow::Cow, fmt};

/// The category of an authentication failure; decides the HTTP status and the RFC 6750 error
/// code of the `WWW-Authenticate` challenge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AuthErrorKind {
    /// No credential was presented (`401`, challenge without an error code).
    Missing,
    /// The credential is unknown, forged, malformed or for another audience (`401 invalid_token`).
    InvalidToken,
    /// The credential was valid once and has expired (`401 invalid_token`, "Token expired").
    Expired,
    /// The request itself is malformed: two credentials, a non-Bearer scheme, a credential in
    /// the query string (`400 invalid_request`).
    InvalidRequest,
    /// The credential cannot be checked right now: the identity provider that must vouch for
    /// it is unreachable (`503` with `Retry-After`; no challenge, since a new token would not
    /// help). Never an acceptance: the request is refused, and the client may retry.
    Unavailable,
}

impl AuthErrorKind {
    /// The HTTP status this failure is answered with.
    pub fn status(self) -> http::StatusCode {
        match self {
            AuthErrorKind::InvalidRequest => http::StatusCode::BAD_REQUEST,
            AuthErrorKind::Unavailable => http::StatusCode::SERVICE_UNAVAILABLE,
            _ => http::StatusCode::UNAUTHORIZED,
        }
    }

    /// The RFC 6750 `error` code, if the challenge carries one. A request without any
    /// credential gets none (RFC 6750 §3.1).
    pub fn error_code(self) -> Option<&'static str> {
        match self {
            AuthErrorKind::Missing | AuthErrorKind::Unavailable => None,
            AuthErrorKind::InvalidToken | AuthErrorKind::Expired => Some("invalid_token"),
            AuthErrorKind::InvalidRequest => Some("invalid_request"),
        }
    }

    /// A stable name for audit records.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthErrorKind::Missing => "missing_credential",
            AuthErrorKind::InvalidToken => "invalid_credential",
            AuthErrorKind::Expired => "expired_credential",
            AuthErrorKind::InvalidRequest => "invalid_request",
            AuthErrorKind::Unavailable => "credential_check_unavailable",
        }
    }
}

/// A refused credential. The description is shown to the client, so it names what is wrong
/// without echoing the credential or hinting which part of a secret matched.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthError {
    kind: AuthErrorKind,
    description: Cow<'static, str>,
    credential_id: Option<String>,
}

impl AuthError {
    /// A failure of `kind`, explained by `description`.
    pub fn new(kind: AuthErrorKind, description: impl Into<Cow<'static, str>>) -> Self {
        Self {
            kind,
            description: description.into(),
            credential_id: None,
        }
    }

    /// No credential presented.
    pub fn missing() -> Self {
        Self::new(AuthErrorKind::Missing, "Authentication required")
    }

    /// An invalid token (`"Invalid token"`).
    pub fn invalid_token() -> Self {
        Self::new(AuthErrorKind::InvalidToken, "Invalid token")
    }

    /// An expired token (`"Token expired"`).
    pub fn expired() -> Self {
        Self::new(AuthErrorKind::Expired, "Token expired")
    }

    /// The credential cannot be checked now (`503`): `description` says why, without naming
    /// internal hosts.
    pub fn unavailable(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(AuthErrorKind::Unavailable, description)
    }

    /// Records which credential failed (a key id, never the key), for the audit log.
    pub fn with_credential_id(mut self, id: impl Into<String>) -> Self {
        self.credential_id = Some(id.into());
        self
    }

    /// The failure category.
    pub fn kind(&self) -> AuthErrorKind {
        self.kind
    }

    /// The client-facing explanation.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The id of the credential that failed, when it is known and safe to log.
    pub fn credential_id(&self) -> Option<&str> {
        self.credential_id.as_deref()
    }
}

impl fmt::Debug for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthError")
            .field("kind", &self.kind)
            .field("description", &self.description)
            .field("credential_id", &self.credential_id)
            .finish()
    }
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.description)
    }
}

impl std::error::Error for AuthError {}
