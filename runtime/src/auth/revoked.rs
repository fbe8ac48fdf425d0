//! Tokens revoked before they expire: the `jti`s a [`TokenEndpoint`](crate::TokenEndpoint)'s
//! clients gave up at `POST /auth/revoke`, refused from then on by the [`Jwt`](crate::Jwt)
//! verifiers that endpoint made.
//!
//! A revocation is kept until the token's own expiry (after which the verifier refuses the
//! token anyway) and never longer, so the list holds at most the tokens revoked within one
//! token lifetime, and never more than [`MAX_REVOKED`]: a revocation that does not fit is
//! refused (`503`, the client retries) rather than another one dropped. Entries are named by
//! the SHA-256 of the `jti` (by the replicas' keyed hash when shared), which is what Redis
//! holds too.
//!
//! Shared through Redis ([`RedisRevocations`](crate::RedisRevocations), feature `redis`), a
//! revocation is written to Redis before `/auth/revoke` answers, and every replica reads what
//! changed at most [`redis::SYNC_EVERY`] after its last look, before it answers a token: a
//! token revoked through one replica is refused by every other within that bound.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{SystemTime, UNIX_EPOCH},
};

use sha2::{Digest, Sha256};

#[cfg(feature = "redis")]
use crate::auth::AuthError;

/// Most revocations kept at once (each until its token expires).
pub(crate) const MAX_REVOKED: usize = 100_000;

/// A revocation list: see [the module docs](self).
#[derive(Debug, Default)]
pub(crate) struct RevokedTokens {
    /// Token name → its expiry (Unix seconds).
    entries: Mutex<HashMap<[u8; 16], u64>>,
    /// The list every replica sees, once configured.
    #[cfg(feature = "redis")]
    shared: std::sync::OnceLock<redis::SharedRevocations>,
}

/// Why a revocation could not be recorded.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RevokeError {
    /// The list is full of unexpired revocations.
    Full,
    /// The shared list did not answer: nothing was revoked anywhere.
    #[cfg(feature = "redis")]
    Unavailable,
}

/// Whether a token may be used.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Standing {
    /// Not revoked (as far as the list knows within its bound).
    Valid,
    /// Revoked.
    Revoked,
    /// The shared list must be read again first (`RevokedTokens::refresh`).
    #[cfg(feature = "redis")]
    Stale,
}

impl RevokedTokens {
    /// Shares the list through Redis from now on; `Err` if it already is.
    #[cfg(feature = "redis")]
    pub(crate) fn share(&self, shared: redis::SharedRevocations) -> Result<(), ()> {
        self.shared.set(shared).map_err(drop)
    }

    /// Whether the token `jti` may be used, from what this replica knows. A revocation it
    /// knows of holds however old its knowledge (revocations are never undone).
    pub(crate) fn standing(&self, jti: &str) -> Standing {
        {
            let entries = lock(&self.entries);
            // Most servers never revoke a token: no hash is computed for them.
            if !entries.is_empty() && entries.contains_key(&self.name(jti)) {
                return Standing::Revoked;
            }
        }
        #[cfg(feature = "redis")]
        if let Some(shared) = self.shared.get()
            && !shared.fresh()
        {
            return Standing::Stale;
        }
        Standing::Valid
    }

    /// Whether this replica knows `jti` to be revoked, however old its knowledge.
    #[cfg(feature = "redis")]
    pub(crate) fn is_known_revoked(&self, jti: &str) -> bool {
        let entries = lock(&self.entries);
        !entries.is_empty() && entries.contains_key(&self.name(jti))
    }

    /// Reads what changed in the shared list; `Err` (already logged) when Redis did not
    /// answer.
    #[cfg(feature = "redis")]
    pub(crate) async fn refresh(&self) -> Result<(), AuthError> {
        let Some(shared) = self.shared.get() else {
            return Ok(());
        };
        match shared.changes().await {
            Ok(Some(changes)) => {
                let now = now();
                let mut entries = lock(&self.entries);
                for (name, expires_at) in changes {
                    if expires_at > now && entries.len() < MAX_REVOKED {
                        entries.insert(name, expires_at);
                    }
                }
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(()) => Err(AuthError::unavailable(
                "the revocation list cannot be read; try again shortly",
            )),
        }
    }

    /// Whether a failed refresh lets tokens through on what this replica knows.
    #[cfg(feature = "redis")]
    pub(crate) fn falls_back(&self) -> bool {
        self.shared.get().is_some_and(|s| s.falls_back())
    }

    /// Revokes the token `jti` until `expires_at` (Unix seconds): in the shared list first
    /// when there is one, so that `Ok` means every replica will refuse it.
    pub(crate) async fn revoke(&self, jti: &str, expires_at: u64) -> Result<(), RevokeError> {
        let now = now();
        if expires_at <= now {
            return Ok(());
        }
        let name = self.name(jti);
        {
            let mut entries = lock(&self.entries);
            if entries.len() >= MAX_REVOKED {
                entries.retain(|_, until| *until > now);
            }
            if entries.len() >= MAX_REVOKED && !entries.contains_key(&name) {
                return Err(RevokeError::Full);
            }
        }
        #[cfg(feature = "redis")]
        if let Some(shared) = self.shared.get() {
            shared
                .revoke(&name, expires_at, now)
                .await
                .map_err(|()| RevokeError::Unavailable)?;
        }
        lock(&self.entries).insert(name, expires_at);
        Ok(())
    }

    /// The name of `jti` in the list (and in Redis).
    fn name(&self, jti: &str) -> [u8; 16] {
        #[cfg(feature = "redis")]
        if let Some(shared) = self.shared.get() {
            return shared.name(jti);
        }
        let digest = Sha256::digest(jti.as_bytes());
        let mut name = [0u8; 16];
        name.copy_from_slice(&digest[..16]);
        name
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        lock(&self.entries).len()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(feature = "redis")]
pub(crate) mod redis;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn revoked_tokens_are_refused_until_they_expire() {
        let list = RevokedTokens::default();
        assert_eq!(list.standing("a"), Standing::Valid);
        list.revoke("a", now() + 60).await.unwrap();
        assert_eq!(list.standing("a"), Standing::Revoked);
        assert_eq!(list.standing("b"), Standing::Valid);
        // An expired token needs no entry.
        list.revoke("old", now() - 1).await.unwrap();
        assert_eq!(list.len(), 1);
    }

    #[tokio::test]
    async fn the_list_is_bounded_and_makes_room_from_expired_entries() {
        let list = RevokedTokens::default();
        let name_of = |i: u64| {
            let mut name = [0u8; 16];
            name[..8].copy_from_slice(&i.to_le_bytes());
            name
        };
        {
            // Far from expiry, so that a slow machine crossing a second changes nothing.
            let until = now() + 600;
            let mut entries = lock(&list.entries);
            for i in 0..MAX_REVOKED as u64 {
                entries.insert(name_of(i), until);
            }
        }
        assert_eq!(
            list.revoke("new", now() + 60).await,
            Err(RevokeError::Full),
            "full of unexpired revocations: refused, none dropped"
        );
        assert_eq!(list.standing("new"), Standing::Valid);
        assert_eq!(list.len(), MAX_REVOKED);
        {
            // Half of them reach their expiry.
            let expired = now() - 1;
            let mut entries = lock(&list.entries);
            for i in (0..MAX_REVOKED as u64).step_by(2) {
                entries.insert(name_of(i), expired);
            }
        }
        list.revoke("new", now() + 60).await.unwrap();
        assert_eq!(list.standing("new"), Standing::Revoked);
        assert_eq!(list.len(), MAX_REVOKED / 2 + 1);
        assert_eq!(list.standing("a"), Standing::Valid);
    }
}
