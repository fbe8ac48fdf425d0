//! Binding MCP sessions to the principal that opened them.
//!
//! A session id is not a credential: every request is authenticated on its own. But a
//! request that presents a valid credential of *another* caller together with a session id
//! must not be served inside that session (session hijacking: replies, notifications and
//! server-side state of the session belong to its owner). The binding is to the caller
//! (authentication method and subject), not to the token, so token refresh keeps working.
//!
//! The bindings also bound what one caller holds: at most [`SessionLimits::per_caller`] live
//! sessions each (opening one more ends the caller's least recently used session), and at most
//! [`SessionLimits::total`] in all (then `initialize` is refused with `503`). A session costs
//! the process tens of kilobytes until rmcp ends it, idle, after [`SessionLimits::idle`]; a
//! caller holding the weakest valid credential could otherwise open sessions in a loop until
//! the process runs out of memory. Anonymous callers are counted per address.

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::future::BoxFuture;

use crate::{AuthMethod, ConfigError, Principal};

/// How many MCP sessions callers may hold at once, and how long an idle one lives. Given to
/// [`Gatekeeper::session_limits`](crate::Gatekeeper::session_limits); applies to the stateful
/// MCP endpoint of a [`Gatekeeper`](crate::Gatekeeper).
///
/// ```
/// use std::time::Duration;
/// use mcp_gatekeeper::SessionLimits;
///
/// let limits = SessionLimits::new()
///     .per_caller(4)
///     .total(2_000)
///     .idle(Duration::from_secs(120));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    per_caller: usize,
    total: usize,
    idle: Duration,
}

impl Default for SessionLimits {
    /// 16 sessions per caller, 10,000 in all, ended after 5 minutes without a request.
    fn default() -> Self {
        Self {
            per_caller: 16,
            total: 10_000,
            idle: Duration::from_secs(300),
        }
    }
}

impl SessionLimits {
    /// The defaults: 16 sessions per caller, 10,000 in all, 5 minutes idle.
    pub fn new() -> Self {
        Self::default()
    }

    /// Most live sessions of one caller (one credential's subject; anonymous callers per
    /// address, IPv6 per /64). Opening one more ends the caller's least recently used session
    /// (audited `session_evicted`): a client that never deletes its sessions keeps working,
    /// and what it holds stays bounded.
    pub fn per_caller(mut self, sessions: usize) -> Self {
        self.per_caller = sessions;
        self
    }

    /// Most live sessions in all. When they are all live and in use, `initialize` is refused
    /// with `503` and `Retry-After` (audited `session_limit`) until some end.
    pub fn total(mut self, sessions: usize) -> Self {
        self.total = sessions;
        self
    }

    /// How long a session lives without a request before it is ended (rmcp's keep-alive).
    pub fn idle(mut self, idle: Duration) -> Self {
        self.idle = idle;
        self
    }

    /// Most live sessions of one caller.
    pub fn caller_limit(&self) -> usize {
        self.per_caller
    }

    /// Most live sessions in all.
    pub fn total_limit(&self) -> usize {
        self.total
    }

    /// How long an idle session lives.
    pub fn idle_time(&self) -> Duration {
        self.idle
    }

    pub(crate) fn check(&self) -> Result<(), ConfigError> {
        if self.per_caller == 0 || self.total < self.per_caller {
            return Err(ConfigError::invalid(
                "SessionLimits: per_caller must be at least 1 and total at least per_caller",
            ));
        }
        if self.idle.is_zero() {
            return Err(ConfigError::invalid("SessionLimits: idle must not be zero"));
        }
        Ok(())
    }
}

/// The sessions the MCP service actually holds: asked before bindings are dropped as dead, and
/// told to end the sessions evicted from a caller's budget.
pub(crate) trait LiveSessions: Send + Sync + 'static {
    /// The ids of the sessions alive now.
    fn alive(&self) -> BoxFuture<'_, HashSet<Box<str>>>;
    /// Ends session `id` (its streams close, its state is dropped).
    fn end(&self, id: Box<str>) -> BoxFuture<'_, ()>;
}

impl LiveSessions for rmcp::transport::streamable_http_server::session::local::LocalSessionManager {
    fn alive(&self) -> BoxFuture<'_, HashSet<Box<str>>> {
        Box::pin(async move {
            self.sessions
                .read()
                .await
                .keys()
                .map(|id| Box::from(&**id))
                .collect()
        })
    }

    fn end(&self, id: Box<str>) -> BoxFuture<'_, ()> {
        use rmcp::transport::streamable_http_server::SessionManager;
        Box::pin(async move {
            let id: Arc<str> = id.into();
            if let Err(error) = self.close_session(&id).await {
                tracing::debug!(%error, "ending an evicted session failed");
            }
        })
    }
}

/// Bindings older than this without a request are forgotten when no [`LiveSessions`] can say
/// which sessions are alive (the layer in front of a service of the user's).
const IDLE: Duration = Duration::from_secs(3600);
/// Past this many bindings, idle ones are swept when a new one is added (without
/// [`LiveSessions`]).
const SWEEP_ABOVE: usize = 10_000;

#[derive(Default)]
pub(crate) struct SessionBindings {
    owners: Mutex<Owners>,
    /// The limits, enforced when the sessions' service can be asked and told (`live`).
    limits: SessionLimits,
    live: Option<Arc<dyn LiveSessions>>,
    /// The owners every replica sees, when the builder was given them (`shared_sessions`).
    #[cfg(feature = "redis")]
    shared: Option<Arc<redis::SharedSessions>>,
}

impl std::fmt::Debug for SessionBindings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionBindings")
            .field("limits", &self.limits)
            .field("enforced", &self.live.is_some())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct Owners {
    sessions: HashMap<Box<str>, Owner>,
    /// Each budget's sessions (small: at most `per_caller` + 1).
    budgets: HashMap<Arc<str>, Vec<Box<str>>>,
}

impl Owners {
    fn remove(&mut self, session: &str) -> Option<Owner> {
        let owner = self.sessions.remove(session)?;
        if let Some(list) = self.budgets.get_mut(&owner.budget) {
            list.retain(|s| &**s != session);
            if list.is_empty() {
                self.budgets.remove(&owner.budget);
            }
        }
        Some(owner)
    }
}

#[derive(Debug)]
struct Owner {
    caller: Arc<str>,
    /// What the session counts against: the caller, or an anonymous caller's address.
    budget: Arc<str>,
    last_seen: Instant,
    /// When the shared binding's expiry was last pushed back.
    #[cfg(feature = "redis")]
    shared_at: Instant,
}

/// Whether a request may use a session.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Binding {
    /// The session is the caller's, or unknown here (rmcp answers unknown sessions itself).
    Allowed,
    /// The session belongs to another caller.
    Foreign,
}

/// The budget `principal`'s sessions count against: its caller key, or for anonymous callers
/// (who share one) their address.
pub(crate) fn budget_of(principal: &Principal, addr: Option<IpAddr>) -> Arc<str> {
    match (principal.method(), addr) {
        (AuthMethod::Anonymous, Some(addr)) => {
            format!("anonymous@{}", crate::auth::lockout::address_key(addr)).into()
        }
        _ => principal.caller_key().clone(),
    }
}

impl SessionBindings {
    /// Bindings that enforce `limits` on the sessions `live` holds, and share the owners
    /// through Redis when `shared` is given.
    pub(crate) fn new(
        limits: SessionLimits,
        live: Option<Arc<dyn LiveSessions>>,
        #[cfg(feature = "redis")] shared: Option<Arc<redis::SharedSessions>>,
    ) -> Self {
        Self {
            owners: Mutex::default(),
            limits,
            live,
            #[cfg(feature = "redis")]
            shared,
        }
    }

    /// Owners shared with other replicas through Redis as well as kept here (the layer alone:
    /// no limits enforced).
    #[cfg(feature = "redis")]
    pub(crate) fn shared(shared: Option<Arc<redis::SharedSessions>>) -> Self {
        Self::new(SessionLimits::default(), None, shared)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Owners> {
        self.owners.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `budget` may open one more session: `Err` when [`SessionLimits::total`] live
    /// sessions exist, unless the budget is full itself (its new session then replaces its
    /// least recently used one, and the total does not grow). Bindings of sessions the service
    /// already ended are dropped first.
    pub(crate) async fn admit(&self, budget: &Arc<str>) -> Result<(), usize> {
        let Some(live) = &self.live else {
            return Ok(());
        };
        {
            let owners = self.lock();
            if owners.sessions.len() < self.limits.total
                || owners
                    .budgets
                    .get(budget)
                    .is_some_and(|list| list.len() >= self.limits.per_caller)
            {
                return Ok(());
            }
        }
        let alive = live.alive().await;
        let mut owners = self.lock();
        let dead: Vec<Box<str>> = owners
            .sessions
            .keys()
            .filter(|id| !alive.contains(*id))
            .cloned()
            .collect();
        for id in dead {
            owners.remove(&id);
        }
        if owners.sessions.len() < self.limits.total
            || owners
                .budgets
                .get(budget)
                .is_some_and(|list| list.len() >= self.limits.per_caller)
        {
            Ok(())
        } else {
            Err(self.limits.total)
        }
    }

    /// Whether `caller` may use `session`. A session opened here is decided here; one unknown
    /// here is looked up among the shared owners (one Redis round trip), so that a caller
    /// presenting another caller's session is refused by every replica, not only by the one
    /// holding the session.
    pub(crate) async fn check(&self, session: &str, caller: &Arc<str>) -> Binding {
        match self.check_here(session, caller) {
            Some(binding) => binding,
            #[cfg(feature = "redis")]
            None => match &self.shared {
                Some(shared) => shared.check(session, caller).await,
                None => Binding::Allowed,
            },
            #[cfg(not(feature = "redis"))]
            None => Binding::Allowed,
        }
    }

    /// The binding of a session opened here; `None` for a session unknown here.
    fn check_here(&self, session: &str, caller: &Arc<str>) -> Option<Binding> {
        let mut owners = self.lock();
        let owner = owners.sessions.get_mut(session)?;
        if owner.caller != *caller {
            return Some(Binding::Foreign);
        }
        let now = Instant::now();
        owner.last_seen = now;
        #[cfg(feature = "redis")]
        if let Some(shared) = &self.shared
            && now.duration_since(owner.shared_at) >= redis::REFRESH_EVERY
        {
            owner.shared_at = now;
            shared.clone().keep(session, self.shared_idle());
        }
        Some(Binding::Allowed)
    }

    /// How long a shared binding lives without being used.
    #[cfg(feature = "redis")]
    fn shared_idle(&self) -> Duration {
        if self.live.is_some() {
            self.limits.idle + Duration::from_secs(60)
        } else {
            IDLE
        }
    }

    /// Records that `caller` opened `session`, counted against `budget`. Returns the sessions
    /// evicted to keep the budget within [`SessionLimits::per_caller`] (least recently used
    /// first; already forgotten here): end them with [`end`](Self::end).
    pub(crate) fn bind(&self, session: &str, caller: Arc<str>, budget: Arc<str>) -> Vec<Box<str>> {
        let now = Instant::now();
        #[cfg(feature = "redis")]
        if let Some(shared) = &self.shared {
            shared.clone().bind(session, &caller, self.shared_idle());
        }
        let mut owners = self.lock();
        if self.live.is_none() && owners.sessions.len() > SWEEP_ABOVE {
            let stale: Vec<Box<str>> = owners
                .sessions
                .iter()
                .filter(|(_, owner)| now.duration_since(owner.last_seen) >= IDLE)
                .map(|(id, _)| id.clone())
                .collect();
            for id in stale {
                owners.remove(&id);
            }
        }
        let session: Box<str> = session.into();
        owners.remove(&session);
        owners.sessions.insert(
            session.clone(),
            Owner {
                caller,
                budget: budget.clone(),
                last_seen: now,
                #[cfg(feature = "redis")]
                shared_at: now,
            },
        );
        let owners = &mut *owners;
        let list = owners.budgets.entry(budget).or_default();
        list.push(session);
        if self.live.is_none() || list.len() <= self.limits.per_caller {
            return Vec::new();
        }
        let mut held: Vec<(Instant, Box<str>)> = list
            .iter()
            .filter_map(|id| Some((owners.sessions.get(id)?.last_seen, id.clone())))
            .collect();
        held.sort();
        let excess = held.len() - self.limits.per_caller;
        let evicted: Vec<Box<str>> = held.into_iter().take(excess).map(|(_, id)| id).collect();
        for id in &evicted {
            owners.remove(id);
        }
        evicted
    }

    /// Ends evicted sessions in the service, in the background.
    pub(crate) fn end(&self, evicted: Vec<Box<str>>) {
        let Some(live) = self.live.clone() else {
            return;
        };
        #[cfg(feature = "redis")]
        if let Some(shared) = &self.shared {
            for id in &evicted {
                shared.clone().forget(id);
            }
        }
        tokio::spawn(async move {
            for id in evicted {
                live.end(id).await;
            }
        });
    }

    pub(crate) fn forget(&self, session: &str) {
        #[cfg(feature = "redis")]
        if let Some(shared) = &self.shared {
            shared.clone().forget(session);
        }
        self.lock().remove(session);
    }

    /// How many sessions are bound (tests).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().sessions.len()
    }
}

#[cfg(feature = "redis")]
pub(crate) mod redis;

#[cfg(test)]
mod tests {
    use rmcp::transport::streamable_http_server::{
        SessionManager, session::local::LocalSessionManager,
    };

    use super::*;

    #[test]
    fn a_session_serves_only_its_owner() {
        let bindings = SessionBindings::default();
        let alice: Arc<str> = "jwt:alice".into();
        let bob: Arc<str> = "jwt:bob".into();
        bindings.bind("s1", alice.clone(), alice.clone());
        assert_eq!(bindings.check_here("s1", &alice), Some(Binding::Allowed));
        assert_eq!(bindings.check_here("s1", &bob), Some(Binding::Foreign));
        assert_eq!(bindings.check_here("unknown", &bob), None);
        bindings.forget("s1");
        assert_eq!(bindings.check_here("s1", &bob), None);
    }

    /// Bindings in front of a real rmcp session manager, with `limits`.
    fn enforcing(limits: SessionLimits) -> (SessionBindings, Arc<LocalSessionManager>) {
        let manager = Arc::new(LocalSessionManager::default());
        let bindings = SessionBindings::new(
            limits,
            Some(manager.clone() as Arc<dyn LiveSessions>),
            #[cfg(feature = "redis")]
            None,
        );
        (bindings, manager)
    }

    /// Opens a session in `manager` for `caller`, as `initialize` does; its id.
    async fn open(
        bindings: &SessionBindings,
        manager: &LocalSessionManager,
        caller: &Arc<str>,
    ) -> Arc<str> {
        let (id, _transport) = manager.create_session().await.unwrap();
        let evicted = bindings.bind(&id, caller.clone(), caller.clone());
        bindings.end(evicted);
        id
    }

    #[tokio::test]
    async fn a_caller_over_its_budget_loses_its_least_recently_used_session() {
        let (bindings, manager) = enforcing(SessionLimits::new().per_caller(3));
        let alice: Arc<str> = "api_key:alice".into();
        let bob: Arc<str> = "api_key:bob".into();
        let bobs = open(&bindings, &manager, &bob).await;
        let mut alices = Vec::new();
        for _ in 0..3 {
            alices.push(open(&bindings, &manager, &alice).await);
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        // The first is used again: the second is now the least recently used.
        assert_eq!(
            bindings.check_here(&alices[0], &alice),
            Some(Binding::Allowed)
        );
        let fourth = open(&bindings, &manager, &alice).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!manager.has_session(&alices[1]).await.unwrap(), "evicted");
        for kept in [&alices[0], &alices[2], &fourth, &bobs] {
            assert!(manager.has_session(kept).await.unwrap());
        }
        assert_eq!(bindings.check_here(&alices[1], &alice), None, "forgotten");
        assert_eq!(bindings.len(), 4);
        // A hundred more: the caller still holds three, the other caller keeps its own.
        for _ in 0..100 {
            open(&bindings, &manager, &alice).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(manager.sessions.read().await.len(), 4);
        assert!(manager.has_session(&bobs).await.unwrap());
    }

    #[tokio::test]
    async fn the_total_refuses_only_while_every_session_is_alive() {
        let (bindings, manager) = enforcing(SessionLimits::new().per_caller(2).total(4));
        let callers: Vec<Arc<str>> = (0..2).map(|i| format!("api_key:c{i}").into()).collect();
        let mut opened = Vec::new();
        for caller in &callers {
            for _ in 0..2 {
                opened.push(open(&bindings, &manager, caller).await);
            }
        }
        let newcomer: Arc<str> = "api_key:new".into();
        assert_eq!(bindings.admit(&newcomer).await, Err(4));
        // A caller at its own limit may replace its oldest session.
        assert_eq!(bindings.admit(&callers[0]).await, Ok(()));
        // A session the service ended (idle, deleted) frees its place.
        manager.close_session(&opened[0]).await.unwrap();
        assert_eq!(bindings.admit(&newcomer).await, Ok(()));
        assert_eq!(bindings.len(), 3);
    }

    #[test]
    fn anonymous_callers_are_counted_per_address() {
        let anonymous = Principal::anonymous();
        let one = budget_of(&anonymous, Some("192.0.2.1".parse().unwrap()));
        let other = budget_of(&anonymous, Some("192.0.2.2".parse().unwrap()));
        assert_ne!(one, other);
        let v6a = budget_of(&anonymous, Some("2001:db8::1".parse().unwrap()));
        let v6b = budget_of(&anonymous, Some("2001:db8::2".parse().unwrap()));
        assert_eq!(v6a, v6b, "IPv6 per /64");
        let alice = Principal::builder(AuthMethod::ApiKey, "alice").build();
        assert_eq!(
            budget_of(&alice, Some("192.0.2.1".parse().unwrap())),
            *alice.caller_key()
        );
    }

    #[test]
    fn limits_are_checked() {
        assert!(SessionLimits::new().check().is_ok());
        assert!(SessionLimits::new().per_caller(0).check().is_err());
        assert!(SessionLimits::new().per_caller(5).total(4).check().is_err());
        assert!(SessionLimits::new().idle(Duration::ZERO).check().is_err());
    }
}
