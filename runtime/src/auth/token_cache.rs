//! A cache of verified tokens: a client sends the same bearer token on every request, and
//! checking a JWT signature (an HMAC over the token, or an ECDSA verification) costs far more
//! than finding the principal it was already verified as.
//!
//! Only accepted tokens are cached, never refusals (those are attacker-controlled), so the
//! cache holds at most as many entries as there are valid tokens in use, and is bounded anyway.
//! An entry is used only while its token is unexpired (the verifier's leeway included), and the
//! presented token is compared with the cached one in constant time, so a hash collision can
//! never let one token stand for another and the comparison leaks nothing about cached tokens.
//! Everything else the verifier checks (signature, issuer, audience, `nbf`, `iat`) cannot change
//! for a given token as time passes forward.

use std::{
    collections::HashMap,
    hash::{BuildHasher, RandomState},
    sync::{Arc, Mutex},
};

use subtle::ConstantTimeEq;

use crate::Principal;

/// Shards, so concurrent requests rarely wait for one another.
const SHARDS: usize = 16;
/// Entries per shard; a full shard is emptied (rare: that many distinct live tokens).
const PER_SHARD: usize = 1024;

struct Entry {
    token: Box<[u8]>,
    principal: Arc<Principal>,
    /// Unix seconds after which the token is no longer accepted (`exp` + leeway).
    valid_until: u64,
}

/// Verified tokens by a keyed hash of the token.
pub(crate) struct VerifiedTokens {
    hasher: RandomState,
    shards: [Mutex<HashMap<u64, Entry>>; SHARDS],
}

impl Default for VerifiedTokens {
    fn default() -> Self {
        Self {
            hasher: RandomState::new(),
            shards: std::array::from_fn(|_| Mutex::new(HashMap::new())),
        }
    }
}

impl VerifiedTokens {
    /// The principal `token` was verified as, if it is cached and still valid at `now`.
    pub(crate) fn get(&self, token: &str, now: u64) -> Option<Arc<Principal>> {
        let key = self.hasher.hash_one(token.as_bytes());
        let shard = self.shard(key).lock().unwrap_or_else(|e| e.into_inner());
        let entry = shard.get(&key)?;
        let same = entry.token.len() == token.len()
            && bool::from(entry.token.as_ref().ct_eq(token.as_bytes()));
        (same && now <= entry.valid_until).then(|| entry.principal.clone())
    }

    /// Remembers that `token` was verified as `principal`, valid until `valid_until`.
    pub(crate) fn insert(&self, token: &str, principal: Arc<Principal>, valid_until: u64) {
        let key = self.hasher.hash_one(token.as_bytes());
        let mut shard = self.shard(key).lock().unwrap_or_else(|e| e.into_inner());
        if shard.len() >= PER_SHARD && !shard.contains_key(&key) {
            shard.clear();
        }
        shard.insert(
            key,
            Entry {
                token: token.as_bytes().into(),
                principal,
                valid_until,
            },
        );
    }

    fn shard(&self, key: u64) -> &Mutex<HashMap<u64, Entry>> {
        // The low bits pick the bucket inside the map; the high bits pick the shard.
        &self.shards[(key >> 60) as usize % SHARDS]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AuthMethod;

    fn principal(sub: &str) -> Arc<Principal> {
        Arc::new(Principal::builder(AuthMethod::Jwt, sub).build())
    }

    #[test]
    fn hits_only_the_same_token_while_valid() {
        let cache = VerifiedTokens::default();
        cache.insert("token-a", principal("a"), 100);
        assert_eq!(cache.get("token-a", 100).unwrap().subject(), "a");
        assert!(cache.get("token-a", 101).is_none(), "expired");
        assert!(cache.get("token-b", 50).is_none());
        assert!(cache.get("token-", 50).is_none());
    }

    #[test]
    fn stays_bounded() {
        let cache = VerifiedTokens::default();
        for i in 0..(SHARDS * PER_SHARD * 3) {
            cache.insert(&format!("token-{i}"), principal("x"), 100);
        }
        let total: usize = cache.shards.iter().map(|s| s.lock().unwrap().len()).sum();
        assert!(total <= SHARDS * PER_SHARD, "{total}");
    }
}
