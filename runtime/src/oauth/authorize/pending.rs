//! Authorization requests waiting for the user, and the sessions of signed-in users.
//!
//! A waiting request is not kept on the server: it is sealed (see [`super::sealed`]) into the
//! login and consent pages and the URLs between them, so an unauthenticated flood of
//! authorization requests costs no memory at all. Its CSRF tokens are MACs of its random id
//! (login form) and of its id and the signed-in session (consent form). What the server does
//! keep is small and created only by people who signed in: the sessions (bounded, at most
//! [`MAX_SESSIONS_PER_USER`] per user) and the ids of decided requests until they expire, so
//! a decision cannot be replayed.

use std::{borrow::Borrow, collections::HashMap, hash::Hash, sync::Mutex, sync::MutexGuard};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::{request::Validated, sealed::Secrets};
use crate::{
    oauth::{random_secret, users::SignedIn},
    store::hash_secret,
};

/// How long an authorization request waits for the user to sign in and decide (seconds).
pub(super) const REQUEST_LIFETIME: i64 = 600;
/// How long a sign-in lasts (seconds).
pub(super) const SESSION_LIFETIME: i64 = 3600;
/// Most sessions at once (only created by successful, lockout-limited sign-ins).
const MAX_SESSIONS: usize = 10_000;
/// Most sessions of one user: a user signing in over and over (or a script with one user's
/// password) replaces their own oldest session instead of filling the table.
pub(super) const MAX_SESSIONS_PER_USER: usize = 16;
/// Most decided requests remembered at once (each only until its request expires).
const MAX_DECIDED: usize = 100_000;

/// How a session is found: the SHA-256 of its cookie value, so the map never holds the bearer
/// secret and lookups do not compare it byte by byte.
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
    /// Unix seconds.
    pub(super) expires_at: i64,
}

/// Why a decision was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refused {
    /// Not a request of this server, expired, or already decided.
    Unknown,
    /// The form's CSRF token is not the request's.
    Csrf,
    /// The request was sealed for another session.
    OtherSession,
    /// Too many decisions are remembered right now (only signed-in users can add them).
    Busy,
}

impl Refused {
    /// The audit reason.
    pub(super) fn reason(self) -> &'static str {
        match self {
            Refused::Unknown => "unknown_request",
            Refused::Csrf => "csrf_mismatch",
            Refused::OtherSession => "other_session",
            Refused::Busy => "too_many_decisions",
        }
    }
}

/// Something that stops being valid at a point in time.
pub(super) trait Expiring {
    /// Unix seconds; expired when `now >= expires_at`.
    fn expires_at(&self) -> i64;
}

impl Expiring for Session {
    fn expires_at(&self) -> i64 {
        self.expires_at
    }
}

impl Expiring for i64 {
    fn expires_at(&self) -> i64 {
        *self
    }
}

/// A map with a capacity whose entries expire.
pub(super) struct Bounded<K, V> {
    entries: HashMap<K, V>,
    capacity: usize,
}

impl<K: Hash + Eq, V: Expiring> Bounded<K, V> {
    /// An empty map holding at most `capacity` entries.
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            entries: HashMap::new(),
            capacity,
        }
    }

    /// Inserts, unless the map is full of live entries.
    fn insert(&mut self, key: K, value: V, now: i64) -> bool {
        if self.entries.len() >= self.capacity {
            self.entries.retain(|_, v| v.expires_at() > now);
            if self.entries.len() >= self.capacity {
                return false;
            }
        }
        self.entries.insert(key, value);
        true
    }

    /// The live entry under `key`; an expired one is removed.
    fn live<Q>(&mut self, key: &Q, now: i64) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if self.entries.get(key)?.expires_at() <= now {
            self.entries.remove(key);
            return None;
        }
        self.entries.get_mut(key)
    }

    /// Removes the entry under `key`.
    fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.entries.remove(key)
    }
}

/// Authorization requests waiting for the user (sealed, nothing stored), the decisions made,
/// and the sessions of signed-in users.
pub(crate) struct PendingRequests {
    secrets: Secrets,
    decided: Mutex<Bounded<[u8; 16], i64>>,
    sessions: Mutex<Bounded<SessionKey, Session>>,
}

impl Default for PendingRequests {
    fn default() -> Self {
        Self {
            secrets: Secrets::default(),
            decided: Mutex::new(Bounded::new(MAX_DECIDED)),
            sessions: Mutex::new(Bounded::new(MAX_SESSIONS)),
        }
    }
}

/// Every update under these locks is a single insert, get or remove (or a sweep), so a panic
/// elsewhere leaves the map consistent and a poisoned lock is still usable. None is ever held
/// across an `.await`: every caller is synchronous.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether the token `presented` is `expected` (base64url of a MAC), in constant time.
fn token_matches(expected: &[u8; 32], presented: &str) -> bool {
    URL_SAFE_NO_PAD
        .decode(presented)
        .is_ok_and(|bytes| bool::from(bytes.as_slice().ct_eq(expected)))
}

impl PendingRequests {
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

    /// The live request `sealed` stands for, if this server sealed it.
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
    /// before. It is then remembered as decided until it expires, so a replayed or concurrent
    /// second decision finds it taken.
    pub(super) fn take(
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
        let mut decided = lock(&self.decided);
        if decided.live(&request.id, now).is_some() {
            return Err(Refused::Unknown);
        }
        if !decided.insert(request.id, request.expires_at, now) {
            return Err(Refused::Busy);
        }
        Ok(request)
    }

    /// Starts a session for `user`; returns the cookie value and the session's key, or `None`
    /// when too many sessions are live. A user at [`MAX_SESSIONS_PER_USER`] loses their oldest.
    pub(super) fn start_session(&self, user: SignedIn, now: i64) -> Option<(String, SessionKey)> {
        let secret = random_secret();
        let key = hash_secret(&secret);
        let mut sessions = lock(&self.sessions);
        let mine: Vec<(SessionKey, i64)> = sessions
            .entries
            .iter()
            .filter(|(_, s)| s.subject == user.subject)
            .map(|(k, s)| (*k, s.expires_at))
            .collect();
        if mine.len() >= MAX_SESSIONS_PER_USER
            && let Some((oldest, _)) = mine.iter().min_by_key(|(_, expires_at)| *expires_at)
        {
            sessions.remove(oldest);
        }
        let session = Session {
            subject: user.subject,
            scopes: user.scopes,
            expires_at: now + SESSION_LIFETIME,
        };
        sessions.insert(key, session, now).then_some((secret, key))
    }

    /// The live session whose cookie value is `secret`.
    pub(super) fn session(&self, secret: &str, now: i64) -> Option<(SessionKey, Session)> {
        let key = hash_secret(secret);
        lock(&self.sessions)
            .live(&key, now)
            .map(|s| (key, s.clone()))
    }

    /// Ends the session whose cookie value is `secret`.
    pub(super) fn end_session(&self, secret: &str) {
        lock(&self.sessions).remove(&hash_secret(secret));
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

    #[test]
    fn requests_are_sealed_and_expire_after_ten_minutes() {
        let pending = PendingRequests::default();
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
            PendingRequests::default().request(&sealed, 100).is_none(),
            "another server's keys"
        );
        assert!(!sealed.contains("127.0.0.1"), "the request is encrypted");
    }

    #[test]
    fn a_flood_of_requests_keeps_nothing_on_the_server() {
        let pending = PendingRequests::default();
        for _ in 0..20_000 {
            let _ = pending.seal(&request(1), None);
        }
        assert_eq!(lock(&pending.decided).entries.len(), 0);
        assert_eq!(lock(&pending.sessions).entries.len(), 0);
    }

    #[test]
    fn csrf_and_session_are_checked_and_a_decision_is_single_use() {
        let pending = PendingRequests::default();
        let (_, alice) = pending.start_session(user("alice"), 1).unwrap();
        let (_, bob) = pending.start_session(user("bob"), 1).unwrap();
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
            pending.take(&sealed, "wrong", alice, 1).err(),
            Some(Refused::Csrf)
        );
        assert_eq!(
            pending.take(&sealed, &login, alice, 1).err(),
            Some(Refused::Csrf),
            "the login token does not decide"
        );
        assert_eq!(
            pending.take(&sealed, &csrf, bob, 1).err(),
            Some(Refused::Csrf),
            "the token is bound to the session it was shown to"
        );
        let bobs_csrf = pending.consent_csrf(&request, &bob);
        assert_eq!(
            pending.take(&sealed, &bobs_csrf, bob, 1).err(),
            Some(Refused::OtherSession)
        );
        assert_eq!(
            pending.take(&unbound, &csrf, alice, 1).err(),
            Some(Refused::OtherSession),
            "an unbound request needs a sign-in first"
        );
        assert!(pending.take(&sealed, &csrf, alice, 1).is_ok());
        assert_eq!(
            pending.take(&sealed, &csrf, alice, 1).err(),
            Some(Refused::Unknown)
        );
        let resealed = pending.seal(&request, Some(alice));
        assert_eq!(
            pending.take(&resealed, &csrf, alice, 1).err(),
            Some(Refused::Unknown),
            "the same request sealed again is the same decision"
        );
    }

    #[test]
    fn maps_are_bounded_and_swept() {
        let mut map: Bounded<u32, Session> = Bounded::new(2);
        let session = |expires_at| Session {
            subject: "s".into(),
            scopes: None,
            expires_at,
        };
        assert!(map.insert(1, session(10), 0));
        assert!(map.insert(2, session(20), 0));
        assert!(!map.insert(3, session(30), 5), "full of live entries");
        assert!(map.insert(3, session(30), 10), "the expired entry is swept");
        assert_eq!(map.entries.len(), 2);
    }

    #[test]
    fn sessions_are_found_by_their_cookie_only() {
        let pending = PendingRequests::default();
        let (secret, key) = pending.start_session(user("alice"), 1).unwrap();
        assert!(!lock(&pending.sessions).entries.contains_key(&[0; 32]));
        assert_eq!(pending.session(&secret, 2).unwrap().0, key);
        assert_eq!(pending.session(&secret, 2).unwrap().1.subject, "alice");
        assert!(pending.session("other", 2).is_none());
        assert!(pending.session(&secret, 1 + SESSION_LIFETIME).is_none());
        let (secret, _) = pending.start_session(user("alice"), 1).unwrap();
        pending.end_session(&secret);
        assert!(pending.session(&secret, 2).is_none());
    }

    #[test]
    fn one_user_holds_a_bounded_number_of_sessions() {
        let pending = PendingRequests::default();
        let (first, _) = pending.start_session(user("alice"), 1).unwrap();
        for n in 0..100 {
            pending.start_session(user("alice"), 2 + n).unwrap();
        }
        pending.start_session(user("bob"), 1).unwrap();
        let sessions = lock(&pending.sessions);
        let alices = sessions
            .entries
            .values()
            .filter(|s| s.subject == "alice")
            .count();
        assert_eq!(alices, MAX_SESSIONS_PER_USER);
        drop(sessions);
        assert!(
            pending.session(&first, 3).is_none(),
            "the oldest went first"
        );
    }

    #[test]
    fn offered_scopes_are_narrowed_by_the_user() {
        let r = request(1);
        assert_eq!(r.offered(None), ["a", "b"]);
        assert_eq!(r.offered(Some(&["b".into(), "z".into()])), ["b"]);
    }
}
