//! [`MemoryStore`]: the whole store in one mutex-guarded struct.

use std::{
    collections::{HashMap, HashSet},
    fmt,
    sync::{Mutex, MutexGuard, PoisonError},
};

use futures::{
    FutureExt,
    future::{self, BoxFuture},
};

use super::{
    AuthCodeRecord, ClientRecord, CodeRedemption, FAMILY_REVOCATION_RETENTION_SECS,
    RefreshTokenRecord, Rotation, SessionRecord, SigningKeyRecord, Store, StoreError,
    UNUSED_CLIENT_RETENTION_SECS, UserRecord, session_evictions, within_grace,
};

/// A [`Store`] kept in memory: for tests and servers whose grants may end with the process.
///
/// Every operation runs synchronously under one `std::sync::Mutex` (never held across an
/// `await`), so every operation is atomic; the futures are ready at once.
#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `f` under the lock. A panic in an earlier operation cannot leave a half-made change
    /// behind (every operation checks before it mutates), so a poisoned lock is taken over.
    fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut State) -> Result<T, StoreError>,
    ) -> BoxFuture<'_, Result<T, StoreError>> {
        let result = f(&mut self.lock());
        future::ready(result).boxed()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("MemoryStore")
            .field("clients", &state.clients.len())
            .field("users", &state.users.len())
            .field("codes", &state.codes.len())
            .field("refresh_tokens", &state.refresh.len())
            .field("signing_keys", &state.signing_keys.len())
            .field("sessions", &state.sessions.len())
            .field("used_once", &state.used_once.len())
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct State {
    clients: HashMap<String, ClientRecord>,
    users: HashMap<String, UserRecord>,
    codes: HashMap<[u8; 32], StoredCode>,
    refresh: HashMap<[u8; 32], StoredRefresh>,
    /// family id → hash of the family's current (unrotated) refresh token.
    current: HashMap<String, [u8; 32]>,
    /// family id → revoked at.
    revoked_families: HashMap<String, i64>,
    /// jti → expires at.
    revoked_access: HashMap<String, i64>,
    /// In insertion order.
    signing_keys: Vec<SigningKeyRecord>,
    /// name → secret.
    secrets: HashMap<String, [u8; 32]>,
    /// session hash → session.
    sessions: HashMap<[u8; 32], SessionRecord>,
    /// key → remembered until.
    used_once: HashMap<[u8; 32], i64>,
}

struct StoredCode {
    record: AuthCodeRecord,
    used_at: Option<i64>,
}

struct StoredRefresh {
    record: RefreshTokenRecord,
    /// When the token was first rotated; `None` while it is its family's current token.
    rotated_at: Option<i64>,
    /// The hash of the token that replaced it (the latest one, after retries).
    replaced_by: Option<[u8; 32]>,
}

impl StoredRefresh {
    /// A token as stored by `put_refresh` or as a new successor: current, replaced by nothing.
    fn current(record: RefreshTokenRecord) -> Self {
        Self {
            record,
            rotated_at: None,
            replaced_by: None,
        }
    }
}

impl State {
    fn revoke_family(&mut self, family_id: &str, now: i64) {
        self.revoked_families
            .entry(family_id.to_owned())
            .or_insert(now);
    }

    /// Revokes a family whose codes and tokens [`Store::delete_user`] deletes, which has no
    /// `now` to date it by: as of `retained_from`, the latest expiry among them, unless an
    /// earlier revocation is dated later. Once the rows are gone only this date keeps the
    /// revocation, so it must outlast every access token issued with them.
    fn remember_ended_family(&mut self, family_id: String, retained_from: i64) {
        let revoked_at = self
            .revoked_families
            .entry(family_id)
            .or_insert(retained_from);
        *revoked_at = (*revoked_at).max(retained_from);
    }

    fn remove_refresh(&mut self, hash: &[u8; 32]) {
        if let Some(token) = self.refresh.remove(hash)
            && self.current.get(&token.record.family_id) == Some(hash)
        {
            self.current.remove(&token.record.family_id);
        }
    }

    /// Whether the token `old` (already rotated) may be retried at `now`: within the grace
    /// period, its successor still the family's unused, unexpired current token.
    fn may_retry(&self, old: &StoredRefresh, now: i64, grace: i64) -> bool {
        let (Some(rotated_at), Some(successor)) = (old.rotated_at, old.replaced_by) else {
            return false;
        };
        within_grace(rotated_at, now, grace)
            && self.current.get(&old.record.family_id) == Some(&successor)
            && self
                .refresh
                .get(&successor)
                .is_some_and(|next| next.rotated_at.is_none() && now < next.record.expires_at)
    }

    /// Checks that `new` may be stored as `old`'s successor (same grant, unused hash).
    fn check_successor(
        &self,
        old: &RefreshTokenRecord,
        new: &RefreshTokenRecord,
    ) -> Result<(), StoreError> {
        if !old.same_grant(new) {
            return Err(StoreError::Invalid(
                "the new refresh token does not continue the old one's grant",
            ));
        }
        if self.refresh.contains_key(&new.token_hash) {
            return Err(StoreError::Conflict("refresh token"));
        }
        Ok(())
    }

    /// Stores `new` as its family's current token and as the successor of `old_hash`.
    fn replace_with(&mut self, old_hash: &[u8; 32], new: RefreshTokenRecord) {
        if let Some(old) = self.refresh.get_mut(old_hash) {
            old.replaced_by = Some(new.token_hash);
        }
        self.current.insert(new.family_id.clone(), new.token_hash);
        self.refresh
            .insert(new.token_hash, StoredRefresh::current(new));
    }

    /// The signing keys in [`Store::signing_keys`]' order: newest insertion first, then a
    /// stable sort by creation time, newest first.
    fn signing_keys_newest_first(&self) -> Vec<&SigningKeyRecord> {
        let mut keys: Vec<&SigningKeyRecord> = self.signing_keys.iter().rev().collect();
        keys.sort_by_key(|k| std::cmp::Reverse(k.created_at));
        keys
    }

    fn require_client(&self, client_id: &str) -> Result<(), StoreError> {
        if self.clients.contains_key(client_id) {
            Ok(())
        } else {
            Err(StoreError::UnknownClient(client_id.to_owned()))
        }
    }
}

impl Store for MemoryStore {
    fn put_client(&self, client: ClientRecord) -> BoxFuture<'_, Result<(), StoreError>> {
        self.with(move |s| {
            s.clients.insert(client.client_id.clone(), client);
            Ok(())
        })
    }

    fn get_client<'a>(
        &'a self,
        client_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<ClientRecord>, StoreError>> {
        self.with(|s| Ok(s.clients.get(client_id).cloned()))
    }

    fn delete_client<'a>(&'a self, client_id: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        self.with(|s| {
            if s.clients.remove(client_id).is_none() {
                return Ok(false);
            }
            s.codes.retain(|_, code| code.record.client_id != client_id);
            let tokens: Vec<[u8; 32]> = s
                .refresh
                .iter()
                .filter(|(_, token)| token.record.client_id == client_id)
                .map(|(hash, _)| *hash)
                .collect();
            for hash in &tokens {
                s.remove_refresh(hash);
            }
            Ok(true)
        })
    }

    fn put_user(&self, user: UserRecord) -> BoxFuture<'_, Result<(), StoreError>> {
        self.with(move |s| {
            s.users.insert(user.username.clone(), user);
            Ok(())
        })
    }

    fn get_user<'a>(
        &'a self,
        username: &'a str,
    ) -> BoxFuture<'a, Result<Option<UserRecord>, StoreError>> {
        self.with(|s| Ok(s.users.get(username).cloned()))
    }

    fn delete_user<'a>(&'a self, username: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        self.with(|s| {
            let mut families: HashMap<String, i64> = HashMap::new();
            let held = s
                .codes
                .values()
                .filter(|code| code.record.subject == username)
                .map(|code| (&code.record.family_id, code.record.expires_at))
                .chain(
                    s.refresh
                        .values()
                        .filter(|token| token.record.subject == username)
                        .map(|token| (&token.record.family_id, token.record.expires_at)),
                );
            for (family_id, expires_at) in held {
                let latest = families.entry(family_id.clone()).or_insert(expires_at);
                *latest = (*latest).max(expires_at);
            }
            for (family_id, retained_from) in families {
                s.remember_ended_family(family_id, retained_from);
            }
            s.codes.retain(|_, code| code.record.subject != username);
            let tokens: Vec<[u8; 32]> = s
                .refresh
                .iter()
                .filter(|(_, token)| token.record.subject == username)
                .map(|(hash, _)| *hash)
                .collect();
            for hash in &tokens {
                s.remove_refresh(hash);
            }
            s.sessions.retain(|_, session| session.subject != username);
            Ok(s.users.remove(username).is_some())
        })
    }

    fn end_sessions_of<'a>(
        &'a self,
        subject: &'a str,
        now: i64,
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        self.with(move |s| {
            let mut ended = 0;
            s.sessions.retain(|_, session| {
                let theirs = session.subject == subject;
                ended += u64::from(theirs && now < session.expires_at);
                !theirs
            });
            Ok(ended)
        })
    }

    fn list_clients(&self) -> BoxFuture<'_, Result<Vec<ClientRecord>, StoreError>> {
        self.with(|s| {
            let mut clients: Vec<ClientRecord> = s.clients.values().cloned().collect();
            // `String`'s order is byte order, as the databases' `ORDER BY` is asked to be.
            clients.sort_by(|a, b| a.client_id.cmp(&b.client_id));
            Ok(clients)
        })
    }

    fn list_users(&self) -> BoxFuture<'_, Result<Vec<UserRecord>, StoreError>> {
        self.with(|s| {
            let mut users: Vec<UserRecord> = s.users.values().cloned().collect();
            users.sort_by(|a, b| a.username.cmp(&b.username));
            Ok(users)
        })
    }

    fn put_code(&self, code: AuthCodeRecord) -> BoxFuture<'_, Result<(), StoreError>> {
        self.with(move |s| {
            if s.codes.contains_key(&code.code_hash) {
                return Err(StoreError::Conflict("authorization code"));
            }
            s.require_client(&code.client_id)?;
            s.codes.insert(
                code.code_hash,
                StoredCode {
                    record: code,
                    used_at: None,
                },
            );
            Ok(())
        })
    }

    fn redeem_code(
        &self,
        code_hash: [u8; 32],
        now: i64,
    ) -> BoxFuture<'_, Result<CodeRedemption, StoreError>> {
        self.with(move |s| {
            let Some(code) = s.codes.get_mut(&code_hash) else {
                return Ok(CodeRedemption::Unknown);
            };
            if code.used_at.is_some() {
                let family_id = code.record.family_id.clone();
                s.revoke_family(&family_id, now);
                return Ok(CodeRedemption::Replayed { family_id });
            }
            if now >= code.record.expires_at {
                return Ok(CodeRedemption::Expired);
            }
            code.used_at = Some(now);
            Ok(CodeRedemption::Redeemed(code.record.clone()))
        })
    }

    fn put_refresh(&self, token: RefreshTokenRecord) -> BoxFuture<'_, Result<(), StoreError>> {
        self.with(move |s| {
            if s.refresh.contains_key(&token.token_hash) {
                return Err(StoreError::Conflict("refresh token"));
            }
            if s.current.contains_key(&token.family_id) {
                return Err(StoreError::Conflict("current refresh token of the family"));
            }
            s.require_client(&token.client_id)?;
            s.current.insert(token.family_id.clone(), token.token_hash);
            s.refresh
                .insert(token.token_hash, StoredRefresh::current(token));
            Ok(())
        })
    }

    fn get_refresh(
        &self,
        token_hash: [u8; 32],
    ) -> BoxFuture<'_, Result<Option<RefreshTokenRecord>, StoreError>> {
        self.with(move |s| Ok(s.refresh.get(&token_hash).map(|t| t.record.clone())))
    }

    fn rotate_refresh(
        &self,
        old_hash: [u8; 32],
        new: RefreshTokenRecord,
        now: i64,
        grace: i64,
    ) -> BoxFuture<'_, Result<Rotation, StoreError>> {
        self.with(move |s| {
            let Some(old) = s.refresh.get(&old_hash) else {
                return Ok(Rotation::Unknown);
            };
            let family_id = old.record.family_id.clone();
            if s.revoked_families.contains_key(&family_id) {
                return Ok(Rotation::Revoked);
            }
            if old.rotated_at.is_some() {
                if !s.may_retry(old, now, grace) {
                    s.revoke_family(&family_id, now);
                    return Ok(Rotation::Reused { family_id });
                }
                s.check_successor(&old.record, &new)?;
                let (previous, unused) = (old.record.clone(), old.replaced_by);
                // The unused successor is retired: `new` takes its place.
                if let Some(successor) = unused.and_then(|hash| s.refresh.get_mut(&hash)) {
                    successor.rotated_at = Some(now);
                }
                s.replace_with(&old_hash, new);
                return Ok(Rotation::Retried(previous));
            }
            if now >= old.record.expires_at {
                return Ok(Rotation::Expired);
            }
            s.check_successor(&old.record, &new)?;
            let previous = old.record.clone();
            if let Some(old) = s.refresh.get_mut(&old_hash) {
                old.rotated_at = Some(now);
            }
            s.replace_with(&old_hash, new);
            Ok(Rotation::Rotated(previous))
        })
    }

    fn revoke_refresh(
        &self,
        token_hash: [u8; 32],
        now: i64,
    ) -> BoxFuture<'_, Result<bool, StoreError>> {
        self.with(move |s| {
            let Some(token) = s.refresh.get(&token_hash) else {
                return Ok(false);
            };
            let family_id = token.record.family_id.clone();
            s.revoke_family(&family_id, now);
            Ok(true)
        })
    }

    fn revoke_family<'a>(
        &'a self,
        family_id: &'a str,
        now: i64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.with(move |s| {
            s.revoke_family(family_id, now);
            Ok(())
        })
    }

    fn is_family_revoked<'a>(
        &'a self,
        family_id: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        self.with(|s| Ok(s.revoked_families.contains_key(family_id)))
    }

    fn revoke_access_token<'a>(
        &'a self,
        jti: &'a str,
        expires_at: i64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.with(move |s| {
            let until = s.revoked_access.entry(jti.to_owned()).or_insert(expires_at);
            *until = (*until).max(expires_at);
            Ok(())
        })
    }

    fn is_access_token_revoked<'a>(
        &'a self,
        jti: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        self.with(|s| Ok(s.revoked_access.contains_key(jti)))
    }

    fn put_signing_key(&self, key: SigningKeyRecord) -> BoxFuture<'_, Result<(), StoreError>> {
        self.with(move |s| {
            if s.signing_keys.iter().any(|k| k.kid == key.kid) {
                return Err(StoreError::Conflict("signing key"));
            }
            s.signing_keys.push(key);
            Ok(())
        })
    }

    fn signing_keys(&self) -> BoxFuture<'_, Result<Vec<SigningKeyRecord>, StoreError>> {
        self.with(|s| Ok(s.signing_keys_newest_first().into_iter().cloned().collect()))
    }

    fn retire_signing_key<'a>(
        &'a self,
        kid: &'a str,
        now: i64,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        self.with(move |s| {
            let Some(key) = s.signing_keys.iter_mut().find(|k| k.kid == kid) else {
                return Ok(false);
            };
            key.retired_at.get_or_insert(now);
            Ok(true)
        })
    }

    fn delete_signing_key<'a>(&'a self, kid: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        self.with(|s| {
            let before = s.signing_keys.len();
            s.signing_keys.retain(|k| k.kid != kid);
            Ok(s.signing_keys.len() != before)
        })
    }

    fn replace_signing_key<'a>(
        &'a self,
        replaces: Option<&'a str>,
        key: SigningKeyRecord,
        now: i64,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        self.with(move |s| {
            if key.retired_at.is_some() {
                return Err(StoreError::Invalid("a new signing key cannot be retired"));
            }
            if s.signing_keys.iter().any(|k| k.kid == key.kid) {
                return Err(StoreError::Conflict("signing key"));
            }
            let current = s
                .signing_keys_newest_first()
                .into_iter()
                .find(|k| k.retired_at.is_none())
                .map(|k| k.kid.as_str());
            if current != replaces {
                return Ok(false);
            }
            for old in s.signing_keys.iter_mut() {
                old.retired_at.get_or_insert(now);
            }
            s.signing_keys.push(key);
            Ok(true)
        })
    }

    fn purge_expired(&self, now: i64) -> BoxFuture<'_, Result<u64, StoreError>> {
        self.with(move |s| {
            let mut removed = 0usize;

            let before = s.codes.len();
            s.codes.retain(|_, code| now < code.record.expires_at);
            removed += before - s.codes.len();

            let expired: Vec<[u8; 32]> = s
                .refresh
                .iter()
                .filter(|(_, token)| now >= token.record.expires_at)
                .map(|(hash, _)| *hash)
                .collect();
            for hash in &expired {
                s.remove_refresh(hash);
            }
            removed += expired.len();

            let before = s.revoked_access.len();
            s.revoked_access.retain(|_, expires_at| now < *expires_at);
            removed += before - s.revoked_access.len();

            let before = s.sessions.len();
            s.sessions.retain(|_, session| now < session.expires_at);
            removed += before - s.sessions.len();

            let before = s.used_once.len();
            s.used_once.retain(|_, expires_at| now < *expires_at);
            removed += before - s.used_once.len();

            let State {
                codes,
                refresh,
                revoked_families,
                ..
            } = s;
            let live: HashSet<&str> = codes
                .values()
                .map(|c| c.record.family_id.as_str())
                .chain(refresh.values().map(|t| t.record.family_id.as_str()))
                .collect();
            let cutoff = now.saturating_sub(FAMILY_REVOCATION_RETENTION_SECS);
            let before = revoked_families.len();
            revoked_families.retain(|family_id, revoked_at| {
                *revoked_at > cutoff || live.contains(family_id.as_str())
            });
            removed += before - revoked_families.len();

            // After the expired codes and tokens are gone: clients nobody vouched for that
            // hold nothing any more.
            let State {
                clients,
                codes,
                refresh,
                ..
            } = s;
            let holders: HashSet<&str> = codes
                .values()
                .map(|c| c.record.client_id.as_str())
                .chain(refresh.values().map(|t| t.record.client_id.as_str()))
                .collect();
            let cutoff = now.saturating_sub(UNUSED_CLIENT_RETENTION_SECS);
            let before = clients.len();
            clients.retain(|client_id, client| {
                client.vouched_for()
                    || client.created_at >= cutoff
                    || holders.contains(client_id.as_str())
            });
            removed += before - clients.len();

            Ok(removed as u64)
        })
    }

    fn shared_secret<'a>(
        &'a self,
        name: &'a str,
        candidate: [u8; 32],
    ) -> BoxFuture<'a, Result<[u8; 32], StoreError>> {
        self.with(move |s| Ok(*s.secrets.entry(name.to_owned()).or_insert(candidate)))
    }

    fn put_session(
        &self,
        session: SessionRecord,
        max_per_subject: usize,
        max_live: usize,
        now: i64,
    ) -> BoxFuture<'_, Result<bool, StoreError>> {
        self.with(move |s| {
            if s.sessions.contains_key(&session.session_hash) {
                return Err(StoreError::Conflict("session"));
            }
            let live = s.sessions.values().filter(|x| now < x.expires_at).count();
            let mut mine: Vec<(i64, [u8; 32])> = s
                .sessions
                .values()
                .filter(|x| now < x.expires_at && x.subject == session.subject)
                .map(|x| (x.created_at, x.session_hash))
                .collect();
            let Some(evict) = session_evictions(live, mine.len(), max_per_subject, max_live) else {
                return Ok(false);
            };
            mine.sort_unstable();
            for (_, hash) in &mine[..evict] {
                s.sessions.remove(hash);
            }
            s.sessions.insert(session.session_hash, session);
            Ok(true)
        })
    }

    fn get_session(
        &self,
        session_hash: [u8; 32],
        now: i64,
    ) -> BoxFuture<'_, Result<Option<SessionRecord>, StoreError>> {
        self.with(move |s| {
            Ok(s.sessions
                .get(&session_hash)
                .filter(|x| now < x.expires_at)
                .cloned())
        })
    }

    fn delete_session(&self, session_hash: [u8; 32]) -> BoxFuture<'_, Result<bool, StoreError>> {
        self.with(move |s| Ok(s.sessions.remove(&session_hash).is_some()))
    }

    fn use_once(
        &self,
        key: [u8; 32],
        expires_at: i64,
        now: i64,
    ) -> BoxFuture<'_, Result<bool, StoreError>> {
        self.with(move |s| {
            if s.used_once.get(&key).is_some_and(|until| now < *until) {
                return Ok(false);
            }
            s.used_once.insert(key, expires_at);
            Ok(true)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn store() -> (Arc<dyn Store>, ()) {
        (Arc::new(MemoryStore::new()), ())
    }

    use crate::store::conformance::{conformance_tests_by_arc, conformance_tests_by_ref};
    crate::store::conformance::store_conformance_tests!(store);

    #[test]
    fn debug_shows_counts_only() {
        let printed = format!("{:?}", MemoryStore::new());
        assert!(printed.starts_with("MemoryStore { clients: 0"), "{printed}");
    }
}
