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
}

#[derive(Debug)]
struct Owner {
    caller: Arc<str>,
    last_seen: Instant,
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
    pub(crate) fn check(&self, session: &str, caller: &Arc<str>) -> Binding {
        let mut owners = self.owners.lock().unwrap_or_else(|e| e.into_inner());
        match owners.get_mut(session) {
            Some(owner) if owner.caller == *caller => {
                owner.last_seen = Instant::now();
                Binding::Allowed
            }
            Some(_) => Binding::Foreign,
            None => Binding::Allowed,
        }
    }

    pub(crate) fn bind(&self, session: &str, caller: Arc<str>) {
        let now = Instant::now();
        let mut owners = self.owners.lock().unwrap_or_else(|e| e.into_inner());
        if owners.len() > SWEEP_ABOVE {
            owners.retain(|_, owner| now.duration_since(owner.last_seen) < IDLE);
        }
        owners.insert(
            session.into(),
            Owner {
                caller,
                last_seen: now,
            },
        );
    }

    pub(crate) fn forget(&self, session: &str) {
        self.owners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(session);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_serves_only_its_owner() {
        let bindings = SessionBindings::default();
        let alice: Arc<str> = "jwt:alice".into();
        let bob: Arc<str> = "jwt:bob".into();
        bindings.bind("s1", alice.clone());
        assert_eq!(bindings.check("s1", &alice), Binding::Allowed);
        assert_eq!(bindings.check("s1", &bob), Binding::Foreign);
        assert_eq!(bindings.check("unknown", &bob), Binding::Allowed);
        bindings.forget("s1");
        assert_eq!(bindings.check("s1", &bob), Binding::Allowed);
    }
}
