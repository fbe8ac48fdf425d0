//! Authorization requests waiting for the user, and the sessions of signed-in users.
//!
//! A waiting request is not kept on the server: it is sealed (see [`super::sealed`]) into the
//! login and consent pages and the URLs between them, so an unauthenticated flood of
//! authorization requests costs no memory at all. Its CSRF tokens are MACs of its random id
//! (login form) and of its id and the signed-in session (consent form). What the server does
//! keep is small, created only by people who signed in, and kept in the store, so that every
//! replica on the store sees it: the sessions (at most [`MAX_SESSIONS_PER_USER`] per user and
//! [`MAX_SESSIONS`] in all) and the single use of each decision until its request expires, so
//! a decision cannot be replayed on any replica. A process keeps nothing of its own.

use std::sync::Arc;

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{request::Validated, sealed::Secrets};
use crate::{
    oauth::{random_secret, users::SignedIn},
    store::{SessionRecord, Store, StoreError, hash_secret},
};

/// How long an authorization request waits for the user to sign in and decide (seconds).
pub(super) const REQUEST_LIFETIME: i64 = 600;
/// How long a sign-in lasts (seconds).
pub(super) const SESSION_LIFETIME: i64 = 3600;
/// Most live sessions at once, in the store (only created by successful, lockout-limited
/// sign-ins).
pub(super) const MAX_SESSIONS: usize = 10_000;
/// Most sessions of one user: a user signing in over and over (or a script with one user's
/// password) replaces their own oldest session instead of filling the store.
pub(super) const MAX_SESSIONS_PER_USER: usize = 16;
/// Length of a session cookie's value: base64url of 32 random bytes ([`random_secret`]).
const SESSION_COOKIE_LEN: usize = 43;

/// How a session is found: the SHA-256 of its cookie value, so the store never holds the
/// bearer secret.
pub(super) type SessionKey = [u8; 32];

/// A valid authorization request, waiting for the user's decision.
#[derive(Clone, Serialize, Deserialize)]
pub(super) struct PendingRequest {
    /// Random; names the request in its CSRF tokens and makes its decision single-use.
    id: [u8; 16],
    /// The client asking.
    pub(super) client_id: String,
    /// The client's display name (from a stranger for registered clients: always escaped).
    pub(super) client_name: String,
    /// For a Client ID Metadata Document client: its `client_id` URL, shown on the consent page.
    pub(super) client_id_url: Option<String>,
    /// The redirect URI the answer goes to, validated against the registered ones.
    pub(super) redirect_uri: String,
    /// The client's `state`, echoed back.
    pub(super) state: Option<String>,
    /// The PKCE S256 challenge.
    pub(super) code_challenge: String,
    /// The scopes the request may be granted: requested (or all the client's) ∩ the client's,
    /// in the server's order. The user's own scopes narrow them further.
    pub(super) scopes: Vec<String>,
    /// The canonical resource (audience) of the tokens.
    pub(super) resource: String,
    /// Unix seconds.
    pub(super) expires_at: i64,
    /// The session the request was sealed for (the browser was signed in, or signed in for
    /// it): only that session is shown its consent page and may decide.
    session: Option<SessionKey>,
}

impl PendingRequest {
    /// A validated request, waiting from `now`.
    pub(super) fn new(request: Validated, now: i64) -> Self {
        let client = request.client;
        let mut id = [0u8; 16];
        rand::fill(&mut id);
        Self {
            id,
            // A metadata-document client is known by its URL: the consent page shows it.
            client_id_url: client
                .metadata_url
                .is_some()
                .then(|| client.client_id.clone()),
            client_id: client.client_id,
            client_name: client.name,
            redirect_uri: request.redirect_uri,
            state: request.state,
            code_challenge: request.code_challenge,
            scopes: request.scopes,
            resource: request.resource,
            expires_at: now + REQUEST_LIFETIME,
            session: None,
        }
    }

    /// The scopes the user may grant for this request: the request's ∩ the user's (`None`:
    /// every scope).
    pub(super) fn offered<'a>(&'a self, user_scopes: Option<&[String]>) -> Vec<&'a str> {
        self.scopes
            .iter()
            .filter(|s| user_scopes.is_none_or(|mine| mine.contains(s)))
            .map(String::as_str)
            .collect()
    }

    /// Whether the request was sealed for `session`.
    pub(super) fn is_for(&self, session: &SessionKey) -> bool {
        self.session.as_ref() == Some(session)
    }
}

/// A signed-in user.
#[derive(Clone)]
#[cfg_attr(test, derive(Debug))]
pub(super) struct Session {
    /// The user (the tokens' `sub`).
    pub(super) subject: String,
    /// The scopes the user may grant; `None`: every scope.
    pub(super) scopes: Option<Vec<String>>,
}

/// Why a decision was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refused {
    /// Not a request of this server, expired, or already decided (on any replica).
    Unknown,
    /// The form's CSRF token is not the request's.
    Csrf,
    /// The request was sealed for another session.
    OtherSession,
    /// The store could not record the decision.
    Unavailable,
}

impl Refused {
    /// The audit reason.
    pub(super) fn reason(self) -> &'static str {
        match self {
            Refused::Unknown => "unknown_request",
            Refused::Csrf => "csrf_mismatch",
            Refused::OtherSession => "other_session",
            Refused::Unavailable => "temporarily_unavailable",
        }
    }
}

/// Authorization requests waiting for the user (sealed, nothing stored), the decisions made,
/// and the sessions of signed-in users (both in the store).
pub(crate) struct PendingRequests {
    secrets: Secrets,
    store: Arc<dyn Store>,
}

/// Whether the token `presented` is `expected` (base64url of a MAC), in constant time.
fn token_matches(expected: &[u8; 32], presented: &str) -> bool {
    URL_SAFE_NO_PAD
        .decode(presented)
        .is_ok_and(|bytes| bool::from(bytes.as_slice().ct_eq(expected)))
}

/// The store's key for the decision of request `id` ([`Store::use_once`]).
fn decision_key(id: &[u8; 16]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(b"mcp-gatekeeper/authorization-decision\0");
    hasher.update(id);
    hasher.finalize().into()
}

/// Whether `value` could be a session cookie's value at all: anything else is not looked up.
fn could_be_session(value: &str) -> bool {
    value.len() == SESSION_COOKIE_LEN
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl PendingRequests {
    /// The pages' state: `secrets` for what travels through the browser, `store` for the
    /// sessions and decisions.
    pub(crate) fn new(secrets: Secrets, store: Arc<dyn Store>) -> Self {
        Self { secrets, store }
    }

    /// The keys, for the device cookies (see `super::device`).
    pub(super) fn secrets(&self) -> &Secrets {
        &self.secrets
    }

    /// Seals `request` for the browser, bound to `session` if the browser is signed in.
    pub(super) fn seal(&self, request: &PendingRequest, session: Option<SessionKey>) -> String {
        let mut request = request.clone();
        request.session = session;
        serde_json::to_vec(&request)
            .ok()
            .and_then(|plain| self.secrets.seal(plain))
            .unwrap_or_default()
    }

    /// The live request `sealed` stands for, if a server with these keys sealed it.
    pub(super) fn request(&self, sealed: &str, now: i64) -> Option<PendingRequest> {
        let plain = self.secrets.open(sealed)?;
        let request: PendingRequest = serde_json::from_slice(&plain).ok()?;
        (request.expires_at > now).then_some(request)
    }

    /// The CSRF token of the request's login (and sign-out) form.
    pub(super) fn login_csrf(&self, request: &PendingRequest) -> String {
        URL_SAFE_NO_PAD.encode(self.secrets.mac(&[b"login", &request.id]))
    }

    /// The CSRF token of the request's consent form, shown to `session`.
    pub(super) fn consent_csrf(&self, request: &PendingRequest, session: &SessionKey) -> String {
        URL_SAFE_NO_PAD.encode(self.consent_mac(request, session))
    }

    fn consent_mac(&self, request: &PendingRequest, session: &SessionKey) -> [u8; 32] {
        self.secrets.mac(&[b"consent", &request.id, session])
    }

    /// The live request `sealed` stands for, if `csrf` is its login-form token, or its
    /// consent-form token for `session`.
    pub(super) fn checked_request(
        &self,
        sealed: &str,
        csrf: &str,
        session: Option<&SessionKey>,
        now: i64,
    ) -> Option<PendingRequest> {
        let request = self.request(sealed, now)?;
        let login = self.secrets.mac(&[b"login", &request.id]);
        let consent = session.map(|s| self.consent_mac(&request, s));
        (token_matches(&login, csrf) || consent.is_some_and(|c| token_matches(&c, csrf)))
            .then_some(request)
    }

    /// The request `sealed` stands for, for its decision by `session`: it must be sealed for
    /// that session, `csrf` must be its consent token, and it must not have been decided
    /// before, on this server or any other on the store. Its decision is then recorded in the
    /// store until the request expires, so a replayed or concurrent second decision finds it
    /// taken.
    pub(super) async fn take(
        &self,
        sealed: &str,
        csrf: &str,
        session: SessionKey,
        now: i64,
    ) -> Result<PendingRequest, Refused> {
        let request = self.request(sealed, now).ok_or(Refused::Unknown)?;
        if !token_matches(&self.consent_mac(&request, &session), csrf) {
            return Err(Refused::Csrf);
        }
        if !request.is_for(&session) {
            return Err(Refused::OtherSession);
        }
        match self
            .store
            .use_once(decision_key(&request.id), request.expires_at, now)
            .await
        {
            Ok(true) => Ok(request),
            Ok(false) => Err(Refused::Unknown),
            Err(error) => {
                tracing::error!(target: crate::AUDIT_TARGET, %error, "recording a consent decision failed");
                Err(Refused::Unavailable)
            }
        }
    }

    /// Starts a session for `user`; returns the cookie value and the session's key, or `None`
    /// when too many sessions are live. A user at [`MAX_SESSIONS_PER_USER`] loses their oldest.
    pub(super) async fn start_session(
        &self,
        user: SignedIn,
        now: i64,
    ) -> Result<Option<(String, SessionKey)>, StoreError> {
        let secret = random_secret();
        let key = hash_secret(&secret);
        let session = SessionRecord {
            session_hash: key,
            subject: user.subject,
            scopes: user.scopes,
            created_at: now,
            expires_at: now + SESSION_LIFETIME,
        };
        let stored = self
            .store
            .put_session(session, MAX_SESSIONS_PER_USER, MAX_SESSIONS, now)
            .await?;
        Ok(stored.then_some((secret, key)))
    }

    /// The live session whose cookie value is `secret`, if its user still exists.
    ///
    /// A session whose user is gone (deleted while a sign-in was in flight, by a backend that
    /// does not end sessions with the user, or by an older version) is ended here: it would
    /// otherwise be shown the consent page and given a code nobody can exchange. The user is
    /// read only once a live session was found, so only signed-in browsers pay the read.
    pub(super) async fn session(
        &self,
        secret: &str,
        now: i64,
    ) -> Result<Option<(SessionKey, Session)>, StoreError> {
        if !could_be_session(secret) {
            return Ok(None);
        }
        let key = hash_secret(secret);
        let Some(record) = self.store.get_session(key, now).await? else {
            return Ok(None);
        };
        if self.store.get_user(&record.subject).await?.is_none() {
            self.store.delete_session(key).await?;
            return Ok(None);
        }
        Ok(Some((
            key,
            Session {
                subject: record.subject,
                scopes: record.scopes,
            },
        )))
    }

    /// Ends the session whose cookie value is `secret`, on every server of the store.
    pub(super) async fn end_session(&self, secret: &str) -> Result<(), StoreError> {
        if could_be_session(secret) {
            self.store.delete_session(hash_secret(secret)).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
impl PendingRequest {
    /// A request of a client named `name` (a metadata-document client when `metadata_url` is
    /// given) for scopes `a` and `b`.
    pub(super) fn example(
        name: &str,
        metadata_url: Option<&str>,
        redirect_uri: &str,
        now: i64,
    ) -> Self {
        let client = crate::store::ClientRecord {
            client_id: metadata_url.unwrap_or("app").into(),
            secret_hash: None,
            name: name.into(),
            redirect_uris: vec![redirect_uri.into()],
            grant_types: vec!["authorization_code".into()],
            allowed_scopes: vec!["a".into(), "b".into()],
            role: None,
            token_endpoint_auth_method: "none".into(),
            tls_client_auth: None,
            metadata_url: metadata_url.map(Into::into),
            self_registered: false,
            created_at: 0,
        };
        PendingRequest::new(
            Validated {
                client,
                redirect_uri: redirect_uri.into(),
                state: Some("xyz".into()),
                code_challenge: "c".repeat(43),
                scopes: vec!["a".into(), "b".into()],
                resource: "https://rs.example/mcp".into(),
            },
            now,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    fn request(now: i64) -> PendingRequest {
        PendingRequest::example("App", None, "http://127.0.0.1/cb", now)
    }

    fn user(name: &str) -> SignedIn {
        SignedIn {
            subject: name.into(),
            role: None,
            scopes: None,
        }
    }

    /// A store holding users `alice` and `bob`, as a session's user must exist.
    fn store_with_users() -> Arc<dyn Store> {
        use futures::FutureExt as _;
        let store = MemoryStore::new();
        for name in ["alice", "bob"] {
            store
                .put_user(crate::store::conformance::fixtures::user(name))
                .now_or_never()
                .expect("a memory store answers at once")
                .unwrap();
        }
        Arc::new(store)
    }

    /// The pages of a server with a store and keys of its own.
    fn server() -> PendingRequests {
        PendingRequests::new(Secrets::random(), store_with_users())
    }

    /// Two replicas: one store, one secret, one issuer.
    fn replicas() -> (PendingRequests, PendingRequests, Arc<dyn Store>) {
        let store = store_with_users();
        let secret = [5u8; 32];
        let issuer = "https://mcp.example.com";
        (
            PendingRequests::new(Secrets::derive(&secret, issuer), store.clone()),
            PendingRequests::new(Secrets::derive(&secret, issuer), store.clone()),
            store,
        )
    }

    #[test]
    fn requests_are_sealed_and_expire_after_ten_minutes() {
        let pending = server();
        let sealed = pending.seal(&request(100), None);
        let opened = pending.request(&sealed, 100).unwrap();
        assert_eq!(opened.redirect_uri, "http://127.0.0.1/cb");
        assert_eq!(opened.state.as_deref(), Some("xyz"));
        assert!(
            pending
                .request(&sealed, 100 + REQUEST_LIFETIME - 1)
                .is_some()
        );
        assert!(pending.request(&sealed, 100 + REQUEST_LIFETIME).is_none());
        assert!(
            server().request(&sealed, 100).is_none(),
            "another server's keys"
        );
        assert!(!sealed.contains("127.0.0.1"), "the request is encrypted");
    }

    #[test]
    fn a_flood_of_requests_keeps_nothing_on_the_server() {
        let store = Arc::new(MemoryStore::new());
        let pending = PendingRequests::new(Secrets::random(), store.clone());
        for _ in 0..20_000 {
            let _ = pending.seal(&request(1), None);
        }
        let printed = format!("{store:?}");
        assert!(printed.contains("sessions: 0"), "{printed}");
        assert!(printed.contains("used_once: 0"), "{printed}");
    }

    #[tokio::test]
    async fn csrf_and_session_are_checked_and_a_decision_is_single_use() {
        let pending = server();
        let (_, alice) = pending
            .start_session(user("alice"), 1)
            .await
            .unwrap()
            .unwrap();
        let (_, bob) = pending
            .start_session(user("bob"), 1)
            .await
            .unwrap()
            .unwrap();
        let request = request(1);
        let unbound = pending.seal(&request, None);
        let login = pending.login_csrf(&request);
        assert!(
            pending
                .checked_request(&unbound, "wrong", None, 1)
                .is_none()
        );
        assert!(pending.checked_request(&unbound, &login, None, 1).is_some());
        let sealed = pending.seal(&request, Some(alice));
        let csrf = pending.consent_csrf(&request, &alice);
        assert!(
            pending
                .checked_request(&sealed, &csrf, Some(&alice), 1)
                .is_some()
        );
        assert!(
            pending
                .checked_request(&sealed, &csrf, Some(&bob), 1)
                .is_none()
        );
        assert_eq!(
            pending.take(&sealed, "wrong", alice, 1).await.err(),
            Some(Refused::Csrf)
        );
        assert_eq!(
            pending.take(&sealed, &login, alice, 1).await.err(),
            Some(Refused::Csrf),
            "the login token does not decide"
        );
        assert_eq!(
            pending.take(&sealed, &csrf, bob, 1).await.err(),
            Some(Refused::Csrf),
            "the token is bound to the session it was shown to"
        );
        let bobs_csrf = pending.consent_csrf(&request, &bob);
        assert_eq!(
            pending.take(&sealed, &bobs_csrf, bob, 1).await.err(),
            Some(Refused::OtherSession)
        );
        assert_eq!(
            pending.take(&unbound, &csrf, alice, 1).await.err(),
            Some(Refused::OtherSession),
            "an unbound request needs a sign-in first"
        );
        assert!(pending.take(&sealed, &csrf, alice, 1).await.is_ok());
        assert_eq!(
            pending.take(&sealed, &csrf, alice, 1).await.err(),
            Some(Refused::Unknown)
        );
        let resealed = pending.seal(&request, Some(alice));
        assert_eq!(
            pending.take(&resealed, &csrf, alice, 1).await.err(),
            Some(Refused::Unknown),
            "the same request sealed again is the same decision"
        );
    }

    #[tokio::test]
    async fn replicas_on_one_store_share_requests_sessions_and_decisions() {
        let (a, b, _) = replicas();
        let request = request(1);
        // A page of replica A, its form posted to B.
        let unbound = a.seal(&request, None);
        let login = a.login_csrf(&request);
        assert!(b.checked_request(&unbound, &login, None, 1).is_some());
        // Signed in on B, the consent page shown by A.
        let (cookie, key) = b.start_session(user("alice"), 1).await.unwrap().unwrap();
        let (found, session) = a.session(&cookie, 2).await.unwrap().unwrap();
        assert_eq!((found, session.subject.as_str()), (key, "alice"));
        let sealed = b.seal(&request, Some(key));
        let csrf = a.consent_csrf(&a.request(&sealed, 2).unwrap(), &key);
        // Decided on B; a replay on A finds the decision taken.
        assert!(b.take(&sealed, &csrf, key, 2).await.is_ok());
        assert_eq!(
            a.take(&sealed, &csrf, key, 2).await.err(),
            Some(Refused::Unknown)
        );
        // Signed out on A: B no longer knows the session.
        a.end_session(&cookie).await.unwrap();
        assert!(b.session(&cookie, 3).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn sessions_are_found_by_their_cookie_only() {
        let pending = server();
        let (secret, key) = pending
            .start_session(user("alice"), 1)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(secret.len(), SESSION_COOKIE_LEN);
        let (found, session) = pending.session(&secret, 2).await.unwrap().unwrap();
        assert_eq!((found, session.subject.as_str()), (key, "alice"));
        assert!(pending.session("other", 2).await.unwrap().is_none());
        assert!(
            pending
                .session(&"A".repeat(SESSION_COOKIE_LEN), 2)
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            pending
                .session(&secret, 1 + SESSION_LIFETIME)
                .await
                .unwrap()
                .is_none()
        );
        let (secret, _) = pending
            .start_session(user("alice"), 1)
            .await
            .unwrap()
            .unwrap();
        pending.end_session(&secret).await.unwrap();
        assert!(pending.session(&secret, 2).await.unwrap().is_none());
        pending.end_session("not a session").await.unwrap();
    }

    #[tokio::test]
    async fn a_session_whose_user_is_gone_is_ended() {
        let pending = server();
        let (secret, key) = pending
            .start_session(user("carol"), 1)
            .await
            .unwrap()
            .unwrap();
        assert!(pending.session(&secret, 2).await.unwrap().is_none());
        assert_eq!(
            pending.store.get_session(key, 2).await.unwrap(),
            None,
            "deleted, not only ignored"
        );
        // The same sign-in holds once the user exists.
        pending
            .store
            .put_user(crate::store::conformance::fixtures::user("carol"))
            .await
            .unwrap();
        let (secret, _) = pending
            .start_session(user("carol"), 3)
            .await
            .unwrap()
            .unwrap();
        assert!(pending.session(&secret, 4).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn one_user_holds_a_bounded_number_of_sessions() {
        let pending = server();
        let mut cookies = Vec::new();
        for n in 0..100 {
            let (cookie, _) = pending
                .start_session(user("alice"), 1 + n)
                .await
                .unwrap()
                .unwrap();
            cookies.push(cookie);
        }
        let (bob, _) = pending
            .start_session(user("bob"), 1)
            .await
            .unwrap()
            .unwrap();
        let now = 101;
        let mut alices = 0;
        for cookie in &cookies {
            alices += usize::from(pending.session(cookie, now).await.unwrap().is_some());
        }
        assert_eq!(alices, MAX_SESSIONS_PER_USER);
        for cookie in &cookies[cookies.len() - MAX_SESSIONS_PER_USER..] {
            assert!(
                pending.session(cookie, now).await.unwrap().is_some(),
                "the newest stay"
            );
        }
        assert!(
            pending.session(&cookies[0], now).await.unwrap().is_none(),
            "the oldest went first"
        );
        assert!(pending.session(&bob, now).await.unwrap().is_some());
    }

    #[test]
    fn offered_scopes_are_narrowed_by_the_user() {
        let r = request(1);
        assert_eq!(r.offered(None), ["a", "b"]);
        assert_eq!(r.offered(Some(&["b".into(), "z".into()])), ["b"]);
    }
}
