//! Binding MCP sessions to the principal that opened them.
//!
//! A session id is not a credential: every request is authenticated on its own. But a
//! request that presents a valid credential of *another* caller together with a session id
//! must not be served inside that session (session hijacking: replies, notifications and
//! server-side state of the session belong to its owner). The binding is to the caller
//! (authentication method and subject), not to the token, so token refresh keeps working.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// Sessions idle for longer than this are forgotten (rmcp ends idle sessions after 5 minutes).
const IDLE: Duration = Duration::from_secs(3600);
/// Past this many bindings, idle ones are swept when a new one is added.
const SWEEP_ABOVE: usize = 10_000;

#[derive(Debug, Default)]
pub(crate) struct SessionBindings {
    owners: Mutex<HashMap<Box<str>, Owner>>,
    /// The owners every replica sees, when the builder was given them (`shared_sessions`).
    #[cfg(feature = "redis")]
    shared: Option<Arc<redis::SharedSessions>>,
}

#[derive(Debug)]
struct Owner {
    caller: Arc<str>,
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

impl SessionBindings {
    /// Owners shared with other replicas through Redis as well as kept here.
    #[cfg(feature = "redis")]
    pub(crate) fn shared(shared: Option<Arc<redis::SharedSessions>>) -> Self {
        Self {
            owners: Mutex::default(),
            shared,
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
        let mut owners = self.owners.lock().unwrap_or_else(|e| e.into_inner());
        let owner = owners.get_mut(session)?;
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
            shared.clone().keep(session, IDLE);
        }
        Some(Binding::Allowed)
    }

    pub(crate) fn bind(&self, session: &str, caller: Arc<str>) {
        let now = Instant::now();
        #[cfg(feature = "redis")]
        if let Some(shared) = &self.shared {
            shared.clone().bind(session, &caller, IDLE);
        }
        let mut owners = self.owners.lock().unwrap_or_else(|e| e.into_inner());
        if owners.len() > SWEEP_ABOVE {
            owners.retain(|_, owner| now.duration_since(owner.last_seen) < IDLE);
        }
        owners.insert(
            session.into(),
            Owner {
                caller,
                last_seen: now,
                #[cfg(feature = "redis")]
                shared_at: now,
            },
        );
    }

    pub(crate) fn forget(&self, session: &str) {
        #[cfg(feature = "redis")]
        if let Some(shared) = &self.shared {
            shared.clone().forget(session);
        }
        self.owners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(session);
    }
}

#[cfg(feature = "redis")]
pub(crate) mod redis;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_serves_only_its_owner() {
        let bindings = SessionBindings::default();
        let alice: Arc<str> = "jwt:alice".into();
        let bob: Arc<str> = "jwt:bob".into();
        bindings.bind("s1", alice.clone());
        assert_eq!(bindings.check_here("s1", &alice), Some(Binding::Allowed));
        assert_eq!(bindings.check_here("s1", &bob), Some(Binding::Foreign));
        assert_eq!(bindings.check_here("unknown", &bob), None);
        bindings.forget("s1");
        assert_eq!(bindings.check_here("s1", &bob), None);
    }
}
