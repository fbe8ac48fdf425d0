//! Authorization requests waiting for the user, and the sessions of signed-in users. Both live
//! in memory only, expire, and are bounded so that a flood of requests cannot exhaust memory:
//! when a map is full, expired entries are swept and, if it is still full, the new entry is
//! refused (the caller answers "try again later").

use std::{borrow::Borrow, collections::HashMap, hash::Hash, sync::MutexGuard};

use subtle::ConstantTimeEq;

use super::{PendingRequests, request::Validated};
use crate::{
    oauth::{random_id, random_secret, users::SignedIn},
    store::hash_secret,
};

/// How long an authorization request waits for the user to sign in and decide (seconds).
pub(super) const REQUEST_LIFETIME: i64 = 600;
/// How long a sign-in lasts (seconds).
pub(super) const SESSION_LIFETIME: i64 = 3600;
/// Most authorization requests waiting at once.
const MAX_REQUESTS: usize = 10_000;
/// Most sessions at once (only created by a successful, lockout-limited sign-in).
const MAX_SESSIONS: usize = 10_000;

/// How a session is found: the SHA-256 of its cookie value, so the map never holds the bearer
/// secret and lookups do not compare it byte by byte.
pub(super) type SessionKey = [u8; 32];

/// A valid authorization request, waiting for the user's decision.
#[derive(Clone)]
pub(super) struct PendingRequest {
    /// Proves that a form was served by this server for this request (compared in constant
    /// time).
    pub(super) csrf: String,
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
    /// The session the consent page was shown to: only it may decide.
    session: Option<SessionKey>,
}

impl PendingRequest {
    /// A validated request, waiting from `now`.
    pub(super) fn new(request: Validated, now: i64) -> Self {
        let client = request.client;
        Self {
            csrf: random_secret(),
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
    /// No such request, it expired, or it was already decided.
    Unknown,
    /// The form's CSRF token is not the request's.
    Csrf,
    /// The request's consent page was shown to another session.
    OtherSession,
}

impl Refused {
    /// The audit reason.
    pub(super) fn reason(self) -> &'static str {
        match self {
            Refused::Unknown => "unknown_request",
            Refused::Csrf => "csrf_mismatch",
            Refused::OtherSession => "other_session",
        }
    }
}

/// Something that stops being valid at a point in time.
pub(super) trait Expiring {
    /// Unix seconds; expired when `now >= expires_at`.
    fn expires_at(&self) -> i64;
}

impl Expiring for PendingRequest {
    fn expires_at(&self) -> i64 {
        self.expires_at
    }
}

impl Expiring for Session {
    fn expires_at(&self) -> i64 {
        self.expires_at
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

impl Default for PendingRequests {
    fn default() -> Self {
        Self {
            requests: std::sync::Mutex::new(Bounded::new(MAX_REQUESTS)),
            sessions: std::sync::Mutex::new(Bounded::new(MAX_SESSIONS)),
        }
    }
}

/// Whether `presented` is the request's CSRF token, in constant time.
fn csrf_matches(request: &PendingRequest, presented: &str) -> bool {
    bool::from(request.csrf.as_bytes().ct_eq(presented.as_bytes()))
}

impl PendingRequests {
    /// The waiting requests, locked (never across an `.await`: every caller is synchronous).
    fn requests(&self) -> MutexGuard<'_, Bounded<String, PendingRequest>> {
        // A panic elsewhere while holding the lock leaves the map consistent (every operation
        // is a single insert, get or remove), so a poisoned lock is still usable.
        self.requests.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The sessions, locked.
    fn sessions(&self) -> MutexGuard<'_, Bounded<SessionKey, Session>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps `request` under a new random id (bound to `session` if given); `None` when too
    /// many requests are waiting.
    pub(super) fn add_request(
        &self,
        mut request: PendingRequest,
        session: Option<SessionKey>,
        now: i64,
    ) -> Option<String> {
        request.session = session;
        let id = random_id();
        self.requests()
            .insert(id.clone(), request, now)
            .then_some(id)
    }

    /// The waiting request `id`, if `csrf` is its token.
    pub(super) fn checked_request(&self, id: &str, csrf: &str, now: i64) -> Option<PendingRequest> {
        let mut requests = self.requests();
        let request = requests.live(id, now)?;
        csrf_matches(request, csrf).then(|| request.clone())
    }

    /// The waiting request `id`, for showing its consent page to `session`: bound to it if not
    /// bound yet; `Err(())` when it is bound to another session (that browser must sign in).
    pub(super) fn show_to(
        &self,
        id: &str,
        session: SessionKey,
        now: i64,
    ) -> Option<Result<PendingRequest, ()>> {
        let mut requests = self.requests();
        let request = requests.live(id, now)?;
        match request.session {
            Some(bound) if bound != session => Some(Err(())),
            _ => {
                request.session = Some(session);
                Some(Ok(request.clone()))
            }
        }
    }

    /// The waiting request `id`, whatever session it is bound to.
    pub(super) fn request(&self, id: &str, now: i64) -> Option<PendingRequest> {
        self.requests().live(id, now).map(|r| r.clone())
    }

    /// Binds request `id` to the session that just signed in for it (the user proved who they
    /// are; an earlier binding is replaced).
    pub(super) fn bind(&self, id: &str, session: SessionKey, now: i64) {
        if let Some(request) = self.requests().live(id, now) {
            request.session = Some(session);
        }
    }

    /// Removes request `id` for its decision, if `csrf` is its token and its consent page was
    /// shown to `session`. Checked and removed under one lock: a replayed or concurrent second
    /// decision finds nothing.
    pub(super) fn take(
        &self,
        id: &str,
        csrf: &str,
        session: SessionKey,
        now: i64,
    ) -> Result<PendingRequest, Refused> {
        let mut requests = self.requests();
        let request = requests.live(id, now).ok_or(Refused::Unknown)?;
        if !csrf_matches(request, csrf) {
            return Err(Refused::Csrf);
        }
        if request.session != Some(session) {
            return Err(Refused::OtherSession);
        }
        requests.remove(id).ok_or(Refused::Unknown)
    }

    /// Starts a session for `user`; returns the cookie value and the session's key, or `None`
    /// when too many sessions are live.
    pub(super) fn start_session(&self, user: SignedIn, now: i64) -> Option<(String, SessionKey)> {
        let secret = random_secret();
        let key = hash_secret(&secret);
        let session = Session {
            subject: user.subject,
            scopes: user.scopes,
            expires_at: now + SESSION_LIFETIME,
        };
        self.sessions()
            .insert(key, session, now)
            .then_some((secret, key))
    }

    /// The live session whose cookie value is `secret`.
    pub(super) fn session(&self, secret: &str, now: i64) -> Option<(SessionKey, Session)> {
        let key = hash_secret(secret);
        self.sessions().live(&key, now).map(|s| (key, s.clone()))
    }

    /// Ends the session whose cookie value is `secret`.
    pub(super) fn end_session(&self, secret: &str) {
        self.sessions().remove(&hash_secret(secret));
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
            metadata_url: metadata_url.map(Into::into),
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
    fn requests_expire_after_ten_minutes() {
        let pending = PendingRequests::default();
        let id = pending.add_request(request(100), None, 100).unwrap();
        assert!(pending.request(&id, 100 + REQUEST_LIFETIME - 1).is_some());
        assert!(pending.request(&id, 100 + REQUEST_LIFETIME).is_none());
        assert!(
            pending.request(&id, 100).is_none(),
            "expired entries are removed"
        );
    }

    #[test]
    fn csrf_and_session_are_checked_and_a_decision_is_single_use() {
        let pending = PendingRequests::default();
        let (_, alice) = pending.start_session(user("alice"), 1).unwrap();
        let (_, bob) = pending.start_session(user("bob"), 1).unwrap();
        let id = pending.add_request(request(1), None, 1).unwrap();
        let csrf = pending.request(&id, 1).unwrap().csrf;
        assert!(pending.checked_request(&id, "wrong", 1).is_none());
        assert!(pending.checked_request(&id, &csrf, 1).is_some());
        assert!(pending.show_to(&id, alice, 1).unwrap().is_ok());
        assert!(pending.show_to(&id, bob, 1).unwrap().is_err());
        assert_eq!(
            pending.take(&id, "wrong", alice, 1).err(),
            Some(Refused::Csrf)
        );
        assert_eq!(
            pending.take(&id, &csrf, bob, 1).err(),
            Some(Refused::OtherSession)
        );
        assert!(pending.take(&id, &csrf, alice, 1).is_ok());
        assert_eq!(
            pending.take(&id, &csrf, alice, 1).err(),
            Some(Refused::Unknown)
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
        assert!(!pending.sessions().entries.contains_key(&[0; 32]));
        assert_eq!(pending.session(&secret, 2).unwrap().0, key);
        assert_eq!(pending.session(&secret, 2).unwrap().1.subject, "alice");
        assert!(pending.session("other", 2).is_none());
        assert!(pending.session(&secret, 1 + SESSION_LIFETIME).is_none());
        let (secret, _) = pending.start_session(user("alice"), 1).unwrap();
        pending.end_session(&secret);
        assert!(pending.session(&secret, 2).is_none());
    }

    #[test]
    fn offered_scopes_are_narrowed_by_the_user() {
        let r = request(1);
        assert_eq!(r.offered(None), ["a", "b"]);
        assert_eq!(r.offered(Some(&["b".into(), "z".into()])), ["b"]);
    }
}
