//! Who is calling: the authenticated identity every authorization decision is made on.

use std::{
    fmt,
    hash::{BuildHasher, RandomState},
    sync::{
        Arc, LazyLock,
        atomic::{AtomicBool, Ordering},
    },
    time::SystemTime,
};

/// How a caller proved who they are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AuthMethod {
    /// A static API key (`X-API-Key` or `Authorization: Bearer`).
    ApiKey,
    /// A JSON Web Token verified with a configured key.
    Jwt,
    /// An access token issued by an OAuth 2.1 authorization server.
    OAuth,
    /// A TLS client certificate.
    Mtls,
    /// No credential at all; only possible when the server allows anonymous callers.
    Anonymous,
}

impl AuthMethod {
    /// A short, stable name for logs and audit records (`api_key`, `jwt`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            AuthMethod::ApiKey => "api_key",
            AuthMethod::Jwt => "jwt",
            AuthMethod::OAuth => "oauth",
            AuthMethod::Mtls => "mtls",
            AuthMethod::Anonymous => "anonymous",
        }
    }
}

impl fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An authenticated caller.
///
/// Authenticators build one per credential; the HTTP layer stores it as an `Arc<Principal>` in the
/// request extensions, where the generated tool guard and the [`Caller`](crate::Caller) extractor
/// find it. A principal never holds a secret: only names, role and scope strings, and the id of
/// the credential that was used, so it is safe to log.
#[derive(Clone, PartialEq, Eq)]
pub struct Principal {
    subject: Arc<str>,
    roles: Arc<[Arc<str>]>,
    scopes: Arc<[Arc<str>]>,
    client_id: Option<Arc<str>>,
    credential_id: Option<Arc<str>>,
    issuer: Option<Arc<str>>,
    method: AuthMethod,
    expires_at: Option<SystemTime>,
    /// `cnf.x5t#S256` of a certificate-bound token (RFC 8705 §3.1).
    certificate_thumbprint: Option<[u8; 32]>,
    caller_key: Arc<str>,
    caller_id: CallerId,
}

/// A caller as a number: a 64-bit hash of [`Principal::caller_key`] under a key chosen at
/// random when the process starts, so nobody outside can aim for collisions. Rate limiters are
/// keyed by it: a check then compares 8 bytes instead of chasing a string, and a tracked
/// caller costs a few dozen bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CallerId(u64);

impl CallerId {
    /// The id of the caller `key` (`method:subject`).
    pub fn of(key: &str) -> Self {
        static KEYS: LazyLock<RandomState> = LazyLock::new(RandomState::new);
        CallerId(KEYS.hash_one(key))
    }

    /// The number.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl Principal {
    /// Starts a principal for `subject`, authenticated by `method`.
    pub fn builder(method: AuthMethod, subject: impl Into<Arc<str>>) -> PrincipalBuilder {
        PrincipalBuilder {
            method,
            subject: subject.into(),
            roles: Vec::new(),
            scopes: Vec::new(),
            client_id: None,
            credential_id: None,
            issuer: None,
            expires_at: None,
            certificate_thumbprint: None,
        }
    }

    /// The caller of a server that lets unauthenticated requests through: no role, no scope.
    pub fn anonymous() -> Self {
        Self::builder(AuthMethod::Anonymous, "anonymous").build()
    }

    /// The subject: the user or service the credential speaks for (`sub` of a JWT, the owner
    /// of an API key).
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The role names the credential grants, as written in it (`"admin"`).
    pub fn roles(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.roles.iter().map(|r| &**r)
    }

    /// The scopes the credential grants, sorted and without duplicates.
    pub fn scopes(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.scopes.iter().map(|s| &**s)
    }

    /// Whether the credential grants `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.binary_search_by(|s| (**s).cmp(scope)).is_ok()
    }

    /// The OAuth client the credential was issued to, if any.
    pub fn client_id(&self) -> Option<&str> {
        self.client_id.as_deref()
    }

    /// The id of the credential itself (API key id, token `jti`), for logs. Never the secret.
    pub fn credential_id(&self) -> Option<&str> {
        self.credential_id.as_deref()
    }

    /// The issuer of the token the caller presented, when the server trusts tokens of an
    /// external identity provider (several issuers may use the same subject for different
    /// callers).
    pub fn issuer(&self) -> Option<&str> {
        self.issuer.as_deref()
    }

    /// The SHA-256 thumbprint of the client certificate the caller's token is bound to
    /// (`cnf.x5t#S256`, RFC 8705 §3.1), if it is certificate-bound. The authentication layer
    /// lets such a token through only on a request that comes with that very certificate.
    pub fn certificate_thumbprint(&self) -> Option<&[u8; 32]> {
        self.certificate_thumbprint.as_ref()
    }

    /// How the caller authenticated.
    pub fn method(&self) -> AuthMethod {
        self.method
    }

    /// When the credential stops being valid, if it expires.
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.expires_at
    }

    /// The key rate limits are counted under: one per authentication method, issuer and
    /// subject, so that a service token and a user that happen to share a `sub` (or two
    /// issuers' callers with the same `sub`) never share a budget.
    pub fn caller_key(&self) -> &Arc<str> {
        &self.caller_key
    }

    /// [`Principal::caller_key`] as a number, for rate limiting.
    pub fn caller_id(&self) -> CallerId {
        self.caller_id
    }
}

impl fmt::Debug for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Principal")
            .field("subject", &self.subject)
            .field("method", &self.method)
            .field("roles", &self.roles)
            .field("scopes", &self.scopes)
            .field("client_id", &self.client_id)
            .field("credential_id", &self.credential_id)
            .field("issuer", &self.issuer)
            .field(
                "certificate_thumbprint",
                &self.certificate_thumbprint.map(hex::encode),
            )
            .finish_non_exhaustive()
    }
}

/// Builds a [`Principal`]; see [`Principal::builder`].
#[derive(Debug)]
#[must_use]
pub struct PrincipalBuilder {
    method: AuthMethod,
    subject: Arc<str>,
    roles: Vec<Arc<str>>,
    scopes: Vec<Arc<str>>,
    client_id: Option<Arc<str>>,
    credential_id: Option<Arc<str>>,
    issuer: Option<Arc<str>>,
    expires_at: Option<SystemTime>,
    certificate_thumbprint: Option<[u8; 32]>,
}

impl PrincipalBuilder {
    /// Adds a role name.
    pub fn role(mut self, role: impl Into<Arc<str>>) -> Self {
        self.roles.push(role.into());
        self
    }

    /// Adds role names.
    pub fn roles<I, S>(mut self, roles: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<Arc<str>>,
    {
        self.roles.extend(roles.into_iter().map(Into::into));
        self
    }

    /// Adds scopes.
    pub fn scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<Arc<str>>,
    {
        self.scopes.extend(scopes.into_iter().map(Into::into));
        self
    }

    /// Sets the OAuth client id.
    pub fn client_id(mut self, client_id: impl Into<Arc<str>>) -> Self {
        self.client_id = Some(client_id.into());
        self
    }

    /// Sets the credential id (API key id, token `jti`).
    pub fn credential_id(mut self, id: impl Into<Arc<str>>) -> Self {
        self.credential_id = Some(id.into());
        self
    }

    /// Sets the issuer of the caller's token (an external identity provider's `iss`).
    pub fn issuer(mut self, issuer: impl Into<Arc<str>>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// Sets when the credential expires.
    pub fn expires_at(mut self, at: SystemTime) -> Self {
        self.expires_at = Some(at);
        self
    }

    /// Binds the principal's token to the client certificate with this SHA-256 thumbprint
    /// (the decoded `cnf.x5t#S256` of RFC 8705): requests must then come with that certificate.
    pub fn certificate_thumbprint(mut self, thumbprint: [u8; 32]) -> Self {
        self.certificate_thumbprint = Some(thumbprint);
        self
    }

    /// Finishes the principal.
    pub fn build(self) -> Principal {
        let mut scopes = self.scopes;
        scopes.sort_unstable();
        scopes.dedup();
        let mut roles = self.roles;
        roles.dedup();
        // An issuer is a URL, which holds no space: `oauth:https://a b` cannot be another
        // issuer's subject.
        let caller_key: Arc<str> = match &self.issuer {
            None => format!("{}:{}", self.method.as_str(), self.subject),
            Some(issuer) => format!("{}:{issuer} {}", self.method.as_str(), self.subject),
        }
        .into();
        Principal {
            subject: self.subject,
            roles: roles.into(),
            scopes: scopes.into(),
            client_id: self.client_id,
            credential_id: self.credential_id,
            issuer: self.issuer,
            method: self.method,
            expires_at: self.expires_at,
            certificate_thumbprint: self.certificate_thumbprint,
            caller_id: CallerId::of(&caller_key),
            caller_key,
        }
    }
}

/// What the HTTP layer tells the tool-call handler about a request it let through, in the
/// request's extensions (one allocation and one insertion per request).
pub(crate) struct Authenticated {
    /// Who is calling.
    pub(crate) principal: Arc<Principal>,
    /// Set by the tool-call handler once it has written the call's audit record, which makes
    /// the request's "authentication allowed" record redundant.
    tool_call_audited: AtomicBool,
    /// Set when the client went away before the response was complete (the layer dropped the
    /// response body unfinished); the tool call still running for it is then ended.
    disconnected: AtomicBool,
    gone: tokio::sync::Notify,
}

impl Authenticated {
    /// The record of a request `principal` made, its tool call not audited yet.
    pub(crate) fn new(principal: Arc<Principal>) -> Self {
        Self {
            principal,
            tool_call_audited: AtomicBool::new(false),
            disconnected: AtomicBool::new(false),
            gone: tokio::sync::Notify::new(),
        }
    }

    /// Records that the client went away and wakes whoever waits in [`Self::disconnected`].
    pub(crate) fn disconnect(&self) {
        self.disconnected.store(true, Ordering::Release);
        self.gone.notify_waiters();
    }

    /// Completes once the client has gone away.
    pub(crate) async fn disconnected(&self) {
        let gone = self.gone.notified();
        let mut gone = std::pin::pin!(gone);
        // Registered before the flag is read: a disconnect in between still wakes us.
        gone.as_mut().enable();
        if self.disconnected.load(Ordering::Acquire) {
            return;
        }
        gone.await;
    }

    /// Whether the tool-call handler wrote the request's audit record.
    pub(crate) fn tool_call_audited(&self) -> bool {
        self.tool_call_audited.load(Ordering::Relaxed)
    }

    /// Marks the request's tool call as audited.
    pub(crate) fn mark_tool_call_audited(&self) {
        self.tool_call_audited.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_sorted_deduplicated_and_searchable() {
        let p = Principal::builder(AuthMethod::Jwt, "alice")
            .scopes(["b", "a", "b", "c"])
            .build();
        assert_eq!(p.scopes().collect::<Vec<_>>(), ["a", "b", "c"]);
        assert!(p.has_scope("c"));
        assert!(!p.has_scope("d"));
    }

    #[test]
    fn caller_key_separates_methods() {
        let a = Principal::builder(AuthMethod::Jwt, "svc").build();
        let b = Principal::builder(AuthMethod::ApiKey, "svc").build();
        assert_ne!(a.caller_key(), b.caller_key());
        assert_ne!(a.caller_id(), b.caller_id());
        let again = Principal::builder(AuthMethod::Jwt, "svc").build();
        assert_eq!(a.caller_id(), again.caller_id());
    }

    #[test]
    fn caller_key_separates_issuers() {
        let one = |iss: &str, sub: &str| {
            Principal::builder(AuthMethod::OAuth, sub)
                .issuer(iss)
                .build()
        };
        let a = one("https://a.example", "42");
        assert_ne!(a.caller_id(), one("https://b.example", "42").caller_id());
        assert_ne!(
            a.caller_id(),
            Principal::builder(AuthMethod::OAuth, "42")
                .build()
                .caller_id()
        );
        assert_eq!(a.caller_id(), one("https://a.example", "42").caller_id());
        assert_eq!(a.issuer(), Some("https://a.example"));
    }
}
