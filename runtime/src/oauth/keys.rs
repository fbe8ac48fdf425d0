//! The authorization server's signing keys: generated on first start, persisted in the store,
//! published as a JWKS, rotated while old keys stay published until their tokens have expired.
//!
//! Servers sharing a store agree on them through it (DESIGN.md 50): a new key is installed by a
//! compare-and-swap on the current one ([`Store::replace_signing_key`]), so servers starting or
//! rotating together end with one, and every server signs with the key the store names
//! current. A server reads the keys again every minute, on JWKS requests, and on a token whose
//! `kid` it does not know (at most once per [`RELOAD_COOLDOWN`]), so another server's new key
//! is accepted from its first token.

use std::{
    collections::HashMap,
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use aws_lc_rs::{
    encoding::AsDer,
    rand::SystemRandom,
    signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair},
};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{DecodingKey, EncodingKey, Header};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::{
    ConfigError,
    auth::JwtAlgorithm,
    store::{SigningKeyRecord, Store, StoreError},
};

/// The algorithm the authorization server signs access tokens with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SigningAlgorithm {
    /// ECDSA on P-256 with SHA-256 (the default: understood by every JWT library).
    #[default]
    Es256,
    /// EdDSA on Ed25519 (smaller and faster; not every resource server verifies it).
    EdDsa,
}

impl SigningAlgorithm {
    fn as_str(self) -> &'static str {
        match self {
            SigningAlgorithm::Es256 => "ES256",
            SigningAlgorithm::EdDsa => "EdDSA",
        }
    }

    /// A new key pair of this algorithm with a random `kid`, created at `now` (unix seconds),
    /// as the authorization server makes its own: for tools that put a key in force with
    /// [`Store::replace_signing_key`] (the `mcp-gatekeeper signing-keys rotate` command).
    ///
    /// # Errors
    /// When the cryptography library fails to make or encode the key.
    pub fn generate_key(self, now: i64) -> Result<SigningKeyRecord, ConfigError> {
        generate(self, now).map_err(ConfigError::invalid)
    }

    /// The JWS `alg` name, as stored in [`SigningKeyRecord::algorithm`]: `ES256` or `EdDSA`.
    pub fn jws_name(self) -> &'static str {
        self.as_str()
    }

    fn jwt_algorithm(self) -> JwtAlgorithm {
        match self {
            SigningAlgorithm::Es256 => JwtAlgorithm::Es256,
            SigningAlgorithm::EdDsa => JwtAlgorithm::EdDsa,
        }
    }
}

/// A usable key: what signs, and what verifies, under one `kid`.
struct LoadedKey {
    kid: String,
    algorithm: SigningAlgorithm,
    encoding: EncodingKey,
    /// The public key as a JWK (`kty`, `crv`, `x`, `y`), without `kid`/`alg`/`use`.
    public_jwk: Value,
    decoding: DecodingKey,
    retired_at: Option<i64>,
}

/// The keys in use at one moment; replaced as a whole when the keys are read again.
pub(crate) struct KeySet {
    /// The key that signs new tokens.
    signing: Arc<LoadedKey>,
    /// Every published key by `kid`, the signing key included.
    verifying: HashMap<String, Arc<LoadedKey>>,
    /// The JWKS document, rendered once.
    jwks: Arc<Value>,
}

impl KeySet {
    /// The published JWKS document.
    pub(crate) fn jwks(&self) -> Arc<Value> {
        self.jwks.clone()
    }

    /// The `kid` that signs new tokens.
    pub(crate) fn signing_kid(&self) -> &str {
        &self.signing.kid
    }

    /// Signs `claims` as a JWT (`typ: at+jwt`, RFC 9068) with the current key.
    pub(crate) fn sign<C: Serialize>(
        &self,
        claims: &C,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let key = &self.signing;
        let mut header = Header::new(key.algorithm.jwt_algorithm().to_jsonwebtoken());
        header.kid = Some(key.kid.clone());
        header.typ = Some("at+jwt".into());
        jsonwebtoken::encode(&header, claims, &key.encoding)
    }

    /// A verifier for tokens signed with key `kid`, if it is published.
    pub(crate) fn decoding_key(&self, kid: &str) -> Option<(JwtAlgorithm, DecodingKey)> {
        self.verifying
            .get(kid)
            .map(|k| (k.algorithm.jwt_algorithm(), k.decoding.clone()))
    }

    /// Whether key `kid` is published.
    pub(crate) fn publishes(&self, kid: &str) -> bool {
        self.verifying.contains_key(kid)
    }

    /// The `kid`s published.
    #[cfg(test)]
    pub(crate) fn kids(&self) -> impl Iterator<Item = &str> {
        self.verifying.keys().map(String::as_str)
    }
}

/// The least time between two reads of the keys that requests start (a token whose `kid` is
/// unknown, a JWKS request): a flood of forged `kid`s costs the store one read per cool-down.
/// The reads the server makes by itself (at start, every minute, on rotation) do not count:
/// the first request after one is not made to wait.
pub(crate) const RELOAD_COOLDOWN: Duration = Duration::from_secs(2);

/// How long a JWKS request waits for the keys to be read before it publishes the keys in use
/// (a store that does not answer must not hold up the keys it cannot change).
const JWKS_READ_TIMEOUT: Duration = Duration::from_secs(1);

/// How long past the access-token lifetime a retired key stays published and stored: a
/// replica that has not read the keys since another one rotated them still signs with the
/// retired key until its next read (at most [`super::KEYS_RELOAD_EVERY`] later while the store
/// answers), and the tokens it signs meanwhile must stay verifiable to their end.
pub(crate) const RETIRED_KEY_MARGIN: i64 = 600;

/// The live key set of a server: read from the store (which names the current signing key for
/// every server sharing it) and swapped atomically. Readers clone an `Arc` and never hold the
/// lock across an `.await`.
pub(crate) struct KeyRing {
    current: RwLock<Arc<KeySet>>,
    /// The algorithm of the keys this server makes.
    algorithm: SigningAlgorithm,
    /// How long a retired key stays published: the longest access-token lifetime.
    publish_retired_for: i64,
    /// Held by every read of the keys from the store, so reads never overlap and a set read
    /// later is never replaced by one read earlier; says when the last read started.
    reads: tokio::sync::Mutex<LastRead>,
    /// Reads of the keys from the store, for tests.
    read_count: AtomicU64,
}

/// When the ring last started reading the keys from the store, and how that ended.
struct LastRead {
    started: Instant,
    failed: bool,
    /// When the last read a request started (for the cool-down) started.
    requested: Option<Instant>,
}

/// Whether to install a new key in place of the current one (`None`: there is none).
type Replace<'a> = &'a (dyn Fn(Option<&SigningKeyRecord>) -> bool + Send + Sync);

impl KeyRing {
    /// Loads the keys from the store. When the store has no current key for `algorithm` (a
    /// first start, a change of algorithm) a new one is installed — unless another server on
    /// the store installs one first, whose key is then used.
    pub(crate) async fn load(
        store: &dyn Store,
        algorithm: SigningAlgorithm,
        publish_retired_for: i64,
        now: i64,
    ) -> Result<Self, ConfigError> {
        let read_count = AtomicU64::new(0);
        let started = Instant::now();
        let wanted = algorithm.as_str();
        let (set, _) = converge(
            store,
            algorithm,
            publish_retired_for,
            now,
            &|current| current.is_none_or(|key| key.algorithm != wanted),
            true,
            &read_count,
        )
        .await
        .map_err(ConfigError::Store)?;
        if set.signing.algorithm != algorithm {
            tracing::warn!(
                target: crate::AUDIT_TARGET,
                kid = %set.signing.kid,
                configured = algorithm.as_str(),
                current = set.signing.algorithm.as_str(),
                "another server on the store installed a signing key of another algorithm; \
                 signing with it"
            );
        }
        Ok(Self {
            current: RwLock::new(Arc::new(set)),
            algorithm,
            publish_retired_for,
            reads: tokio::sync::Mutex::new(LastRead {
                started,
                failed: false,
                requested: None,
            }),
            read_count,
        })
    }

    /// The keys in use now.
    pub(crate) fn current(&self) -> Arc<KeySet> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Installs a new signing key in place of the current one, which stays published until its
    /// tokens expire, and starts signing with it. When another server replaces the key between
    /// this one's read and its swap, tries again on the newer key. Returns the new key's `kid`.
    pub(crate) async fn rotate(&self, store: &dyn Store, now: i64) -> Result<String, StoreError> {
        let mut last = self.reads.lock().await;
        for _ in 0..3 {
            if let Some(kid) = self.read(&mut last, store, now, &|_| true, true).await? {
                return Ok(kid);
            }
        }
        Err(StoreError::backend(
            "the signing key was replaced by other servers at every attempt to rotate it",
        ))
    }

    /// Reads the keys from the store (the periodic read: keys installed or retired by other
    /// servers are taken up), installs a new key when the current one is `lifetime` old
    /// (`None`: never) or there is none, and deletes keys retired so long ago that no token
    /// they signed can be alive. Returns the `kid` this server installed, if it did: of
    /// servers finding the key due together, one installs a key and all sign with it.
    pub(crate) async fn refresh(
        &self,
        store: &dyn Store,
        now: i64,
        lifetime: Option<i64>,
    ) -> Result<Option<String>, StoreError> {
        let mut last = self.reads.lock().await;
        let due = |current: Option<&SigningKeyRecord>| {
            current.is_none_or(|key| lifetime.is_some_and(|l| now - key.created_at >= l))
        };
        self.read(&mut last, store, now, &due, true).await
    }

    /// The keys as the store held them at `since` or later, for a token whose `kid` is not in
    /// the set: another server may have installed its key since this one last read them.
    /// Reads them again unless a read started at `since` or later already did (or the key
    /// arrived meanwhile), at most once per [`RELOAD_COOLDOWN`]: a caller that comes too soon
    /// after the last read a request started waits for the cool-down to end, so that a token
    /// signed with a new key is never refused, while a flood of forged `kid`s costs one read
    /// per cool-down. The waiting callers queue, and each read serves all of them that came
    /// before it started.
    ///
    /// # Errors
    /// When the read that would have found the key failed (the store is unavailable).
    pub(crate) async fn reloaded_since(
        &self,
        store: &dyn Store,
        since: Instant,
        kid: &str,
        now: i64,
    ) -> Result<Arc<KeySet>, StoreError> {
        let mut last = self.reads.lock().await;
        let keys = self.current();
        if keys.publishes(kid) {
            return Ok(keys);
        }
        if last.started >= since {
            return if last.failed {
                Err(StoreError::backend("the signing keys could not be read"))
            } else {
                Ok(keys)
            };
        }
        if let Some(requested) = last.requested {
            tokio::time::sleep_until(requested + RELOAD_COOLDOWN).await;
        }
        last.requested = Some(Instant::now());
        self.read(&mut last, store, now, &|_| false, false).await?;
        Ok(self.current())
    }

    /// The keys to publish in the JWKS: read again first when the last read a request
    /// started is a cool-down old and no other read is running (a JWKS request never waits
    /// for one); otherwise, or when the read fails, the keys in use.
    pub(crate) async fn for_jwks(&self, store: &dyn Store, now: i64) -> Arc<KeySet> {
        if let Ok(mut last) = self.reads.try_lock()
            && last
                .requested
                .is_none_or(|at| at.elapsed() >= RELOAD_COOLDOWN)
            && let Err(error) = {
                last.requested = Some(Instant::now());
                let read = self.read(&mut last, store, now, &|_| false, false);
                match tokio::time::timeout(JWKS_READ_TIMEOUT, read).await {
                    Ok(result) => result,
                    Err(_) => Err(StoreError::backend("the store did not answer in time")),
                }
            }
        {
            tracing::warn!(
                target: crate::AUDIT_TARGET,
                %error,
                "reading the signing keys for the JWKS failed; publishing the keys in use"
            );
        }
        self.current()
    }

    /// Reads of the keys from the store since the ring was made.
    #[cfg(test)]
    pub(crate) fn reads(&self) -> u64 {
        self.read_count.load(Ordering::Relaxed)
    }

    /// One read under the lock (see [`converge`]); records when it started and how it ended.
    /// A read abandoned half-way (its request went away) counts as never started, so the
    /// callers that were waiting for it read the keys themselves rather than fail.
    async fn read(
        &self,
        last: &mut LastRead,
        store: &dyn Store,
        now: i64,
        replace: Replace<'_>,
        prune: bool,
    ) -> Result<Option<String>, StoreError> {
        struct Unfinished<'a> {
            last: &'a mut LastRead,
            before: Option<(Instant, bool)>,
        }
        impl Drop for Unfinished<'_> {
            fn drop(&mut self) {
                if let Some((started, failed)) = self.before {
                    self.last.started = started;
                    self.last.failed = failed;
                }
            }
        }
        let mut guard = Unfinished {
            before: Some((last.started, last.failed)),
            last,
        };
        guard.last.started = Instant::now();
        let outcome = self.read_unguarded(store, now, replace, prune).await;
        guard.before = None;
        guard.last.failed = outcome.is_err();
        outcome
    }

    /// [`read`](Self::read) without the bookkeeping.
    async fn read_unguarded(
        &self,
        store: &dyn Store,
        now: i64,
        replace: Replace<'_>,
        prune: bool,
    ) -> Result<Option<String>, StoreError> {
        let (set, installed) = converge(
            store,
            self.algorithm,
            self.publish_retired_for,
            now,
            replace,
            prune,
            &self.read_count,
        )
        .await?;
        let previous = self.current();
        if set.signing.kid != previous.signing.kid {
            tracing::info!(
                target: crate::AUDIT_TARGET,
                kid = %set.signing.kid,
                installed_here = installed.is_some(),
                "signing with a new key"
            );
            if set.signing.algorithm != self.algorithm {
                tracing::warn!(
                    target: crate::AUDIT_TARGET,
                    kid = %set.signing.kid,
                    configured = self.algorithm.as_str(),
                    current = set.signing.algorithm.as_str(),
                    "another server on the store installed a signing key of another algorithm; \
                     signing with it"
                );
            }
        }
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(set);
        Ok(installed)
    }
}

/// Reads the keys from the store; when `replace` says so of the current key, installs a new
/// one in its place (a compare-and-swap on the current key: another server may win it, and its
/// key is then used) and reads them again. With `prune`, deletes the keys retired so long ago
/// that no token they signed can be alive. Returns the set to use and the `kid` installed by
/// this call, if any.
async fn converge(
    store: &dyn Store,
    algorithm: SigningAlgorithm,
    publish_retired_for: i64,
    now: i64,
    replace: Replace<'_>,
    prune: bool,
    read_count: &AtomicU64,
) -> Result<(KeySet, Option<String>), StoreError> {
    read_count.fetch_add(1, Ordering::Relaxed);
    let mut records = store.signing_keys().await?;
    let mut installed = None;
    let current = records.iter().find(|r| r.retired_at.is_none());
    if replace(current) {
        let replaces = current.map(|r| r.kid.clone());
        let record = generate(algorithm, now).map_err(StoreError::backend)?;
        let kid = record.kid.clone();
        if store
            .replace_signing_key(replaces.as_deref(), record, now)
            .await?
        {
            installed = Some(kid);
        }
        read_count.fetch_add(1, Ordering::Relaxed);
        records = store.signing_keys().await?;
    }
    let published = |r: &SigningKeyRecord| {
        r.retired_at
            .is_none_or(|retired| now <= retired + publish_retired_for + RETIRED_KEY_MARGIN)
    };
    if prune {
        for record in records.iter().filter(|r| !published(r)) {
            store.delete_signing_key(&record.kid).await?;
        }
    }
    records.retain(published);
    let set = KeySet::from_records(&records).map_err(StoreError::Corrupt)?;
    Ok((set, installed))
}

impl KeySet {
    /// The set of `records` (newest first, as [`Store::signing_keys`] returns them): every
    /// one published, the first unretired one signing.
    fn from_records(records: &[SigningKeyRecord]) -> Result<Self, String> {
        let mut loaded = Vec::with_capacity(records.len());
        for record in records {
            loaded.push(Arc::new(load_key(record)?));
        }
        let signing = loaded
            .iter()
            .find(|k| k.retired_at.is_none())
            .cloned()
            .ok_or("the store holds no current signing key")?;
        let keys: Vec<Value> = loaded
            .iter()
            .map(|k| {
                let mut jwk = k.public_jwk.clone();
                jwk["kid"] = json!(k.kid);
                jwk["alg"] = json!(k.algorithm.as_str());
                jwk["use"] = json!("sig");
                jwk
            })
            .collect();
        Ok(KeySet {
            signing,
            verifying: loaded.into_iter().map(|k| (k.kid.clone(), k)).collect(),
            jwks: Arc::new(json!({ "keys": keys })),
        })
    }
}

/// Whether a JWT whose `kid` is not in the set may be one that another server on the store
/// signed with a key installed since this one read the keys, so that reading them again could
/// help: the `kid` has the shape of the ones this crate makes, and the (unverified) claims name
/// `issuer` and an expiry not yet past. Anything else — another issuer's token passing through
/// on its way to the next authenticator, an expired token, garbage — is not worth a read of
/// the store. A forger can of course pass this; [`KeyRing::reloaded_since`] bounds what that
/// costs.
pub(crate) fn worth_reloading_for(token: &str, kid: &str, issuer: &str, now: i64) -> bool {
    #[derive(serde::Deserialize)]
    struct Unverified {
        iss: Option<String>,
        exp: Option<i64>,
    }
    let plausible_kid = (16..=64).contains(&kid.len())
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !plausible_kid {
        return false;
    }
    let Some(payload) = token.split('.').nth(1).filter(|p| p.len() <= 16 * 1024) else {
        return false;
    };
    let Ok(json) = URL_SAFE_NO_PAD.decode(payload) else {
        return false;
    };
    serde_json::from_slice::<Unverified>(&json).is_ok_and(|claims| {
        claims.iss.as_deref() == Some(issuer)
            && claims.exp.is_some_and(|exp| exp.saturating_add(60) > now)
    })
}

/// Makes a new key pair with a random `kid`.
fn generate(algorithm: SigningAlgorithm, now: i64) -> Result<SigningKeyRecord, String> {
    let failed = |what: &str| format!("generating a {} key failed: {what}", algorithm.as_str());
    let rng = SystemRandom::new();
    let (private_key_der, public_key_der) = match algorithm {
        SigningAlgorithm::Es256 => {
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .map_err(|_| failed("key generation"))?;
            let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
                .map_err(|_| failed("parsing the new key"))?;
            let spki = pair
                .public_key()
                .as_der()
                .map_err(|_| failed("encoding the public key"))?;
            (pkcs8.as_ref().to_vec(), spki.as_ref().to_vec())
        }
        SigningAlgorithm::EdDsa => {
            let pkcs8 =
                Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| failed("key generation"))?;
            let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
                .map_err(|_| failed("parsing the new key"))?;
            let spki = pair
                .public_key()
                .as_der()
                .map_err(|_| failed("encoding the public key"))?;
            (pkcs8.as_ref().to_vec(), spki.as_ref().to_vec())
        }
    };
    let mut kid = [0u8; 16];
    rand::fill(&mut kid);
    Ok(SigningKeyRecord {
        kid: URL_SAFE_NO_PAD.encode(kid),
        algorithm: algorithm.as_str().into(),
        private_key_der,
        public_key_der,
        created_at: now,
        retired_at: None,
    })
}

/// Turns a stored key into signing and verifying keys. The public key is taken from the end of
/// the SubjectPublicKeyInfo: the uncompressed P-256 point (`04 || x || y`) or the 32-byte
/// Ed25519 key.
fn load_key(record: &SigningKeyRecord) -> Result<LoadedKey, String> {
    let corrupt = |what: &str| format!("stored signing key `{}`: {what}", record.kid);
    let spki = &record.public_key_der;
    let (algorithm, public_jwk, decoding, encoding) = match record.algorithm.as_str() {
        "ES256" => {
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &record.private_key_der)
                .map_err(|_| corrupt("not a P-256 PKCS#8 key"))?;
            let point = spki
                .len()
                .checked_sub(65)
                .map(|at| &spki[at..])
                .filter(|p| p[0] == 0x04)
                .ok_or_else(|| corrupt("public key is not an uncompressed P-256 point"))?;
            let x = URL_SAFE_NO_PAD.encode(&point[1..33]);
            let y = URL_SAFE_NO_PAD.encode(&point[33..]);
            let decoding = DecodingKey::from_ec_components(&x, &y)
                .map_err(|_| corrupt("unusable public key"))?;
            (
                SigningAlgorithm::Es256,
                json!({ "kty": "EC", "crv": "P-256", "x": x, "y": y }),
                decoding,
                EncodingKey::from_ec_der(&record.private_key_der),
            )
        }
        "EdDSA" => {
            Ed25519KeyPair::from_pkcs8(&record.private_key_der)
                .map_err(|_| corrupt("not an Ed25519 PKCS#8 key"))?;
            let raw = spki
                .len()
                .checked_sub(32)
                .map(|at| &spki[at..])
                .ok_or_else(|| corrupt("public key too short"))?;
            let x = URL_SAFE_NO_PAD.encode(raw);
            let decoding =
                DecodingKey::from_ed_components(&x).map_err(|_| corrupt("unusable public key"))?;
            (
                SigningAlgorithm::EdDsa,
                json!({ "kty": "OKP", "crv": "Ed25519", "x": x }),
                decoding,
                EncodingKey::from_ed_der(&record.private_key_der),
            )
        }
        other => return Err(corrupt(&format!("unknown algorithm `{other}`"))),
    };
    Ok(LoadedKey {
        kid: record.kid.clone(),
        algorithm,
        encoding,
        public_jwk,
        decoding,
        retired_at: record.retired_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{auth::Jwt, store::MemoryStore};

    #[derive(Serialize)]
    struct Claims {
        sub: &'static str,
        exp: i64,
    }

    async fn round_trip(algorithm: SigningAlgorithm) {
        let store = MemoryStore::new();
        let ring = KeyRing::load(&store, algorithm, 3600, 1_000).await.unwrap();
        let set = ring.current();
        let token = set
            .sign(&Claims {
                sub: "alice",
                exp: 4_000_000_000,
            })
            .unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.kid.as_deref(), Some(set.signing_kid()));
        assert_eq!(header.typ.as_deref(), Some("at+jwt"));
        let (alg, key) = set.decoding_key(set.signing_kid()).unwrap();
        let principal = Jwt::from_decoding_key(alg, key).verify(&token).unwrap();
        assert_eq!(principal.subject(), "alice");
        let jwks = set.jwks();
        assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);
        assert_eq!(jwks["keys"][0]["kid"], set.signing_kid());
        assert!(
            jwks["keys"][0].get("d").is_none(),
            "no private part in the JWKS"
        );
    }

    #[tokio::test]
    async fn es256_and_eddsa_sign_and_verify() {
        round_trip(SigningAlgorithm::Es256).await;
        round_trip(SigningAlgorithm::EdDsa).await;
    }

    #[tokio::test]
    async fn keys_survive_reload_and_rotation_keeps_old_keys_published() {
        let store = MemoryStore::new();
        let ring = KeyRing::load(&store, SigningAlgorithm::Es256, 3600, 1_000)
            .await
            .unwrap();
        let first = ring.current().signing_kid().to_owned();
        let again = KeyRing::load(&store, SigningAlgorithm::Es256, 3600, 1_001)
            .await
            .unwrap();
        assert_eq!(
            again.current().signing_kid(),
            first,
            "the stored key is reused"
        );

        let second = ring.rotate(&store, 2_000).await.unwrap();
        assert_ne!(second, first);
        let set = ring.current();
        assert_eq!(set.signing_kid(), second);
        let mut kids: Vec<_> = set.kids().collect();
        kids.sort_unstable();
        let mut expected = vec![first.as_str(), second.as_str()];
        expected.sort_unstable();
        assert_eq!(kids, expected, "the retired key stays published");

        // Published (and stored) until every token of the retired key has expired, plus the
        // margin for servers that still signed with it; then dropped and deleted.
        let end = 2_000 + 3600 + RETIRED_KEY_MARGIN;
        let still = KeyRing::load(&store, SigningAlgorithm::Es256, 3600, end)
            .await
            .unwrap();
        assert!(still.current().publishes(&first));
        let later = KeyRing::load(&store, SigningAlgorithm::Es256, 3600, end + 1)
            .await
            .unwrap();
        assert_eq!(
            later.current().kids().collect::<Vec<_>>(),
            vec![second.as_str()]
        );
        assert_eq!(store.signing_keys().await.unwrap().len(), 1, "deleted");
    }

    #[tokio::test]
    async fn changing_the_algorithm_makes_a_new_key_and_retires_the_old() {
        let store = MemoryStore::new();
        let es = KeyRing::load(&store, SigningAlgorithm::Es256, 3600, 1_000)
            .await
            .unwrap();
        let ed = KeyRing::load(&store, SigningAlgorithm::EdDsa, 3600, 1_001)
            .await
            .unwrap();
        let set = ed.current();
        assert_ne!(set.signing_kid(), es.current().signing_kid());
        assert_eq!(set.kids().count(), 2);
    }

    #[tokio::test]
    async fn servers_on_one_store_take_up_each_others_keys() {
        let store = MemoryStore::new();
        let a = KeyRing::load(&store, SigningAlgorithm::Es256, 3600, 1_000)
            .await
            .unwrap();
        let b = KeyRing::load(&store, SigningAlgorithm::Es256, 3600, 1_000)
            .await
            .unwrap();
        let first = a.current().signing_kid().to_owned();
        assert_eq!(b.current().signing_kid(), first, "one first key");

        let second = a.rotate(&store, 2_000).await.unwrap();
        assert!(!b.current().publishes(&second), "not read yet");
        let keys = b
            .reloaded_since(&store, Instant::now(), &second, 2_000)
            .await
            .unwrap();
        assert!(keys.publishes(&second));
        assert_eq!(
            b.current().signing_kid(),
            second,
            "signs with the key the store names current"
        );
        assert!(
            b.current().publishes(&first),
            "the retired key stays published"
        );
        assert_eq!(b.current().jwks()["keys"].as_array().unwrap().len(), 2);

        // Both find the key due: one new key, which both use.
        let third_a = a.refresh(&store, 3_000, Some(1_000)).await.unwrap();
        let third_b = b.refresh(&store, 3_000, Some(1_000)).await.unwrap();
        assert!(third_a.is_some());
        assert_eq!(third_b, None, "already rotated by the other");
        assert_eq!(a.current().signing_kid(), b.current().signing_kid());
        let current: Vec<_> = store
            .signing_keys()
            .await
            .unwrap()
            .into_iter()
            .filter(|k| k.retired_at.is_none())
            .collect();
        assert_eq!(current.len(), 1);
    }

    /// A flood of tokens with unknown `kid`s costs the store one read per cool-down, and a
    /// token signed with a key another server installed in the middle of it is still accepted.
    #[tokio::test(start_paused = true)]
    async fn unknown_kids_cost_one_read_per_cooldown() {
        let store = Arc::new(MemoryStore::new());
        let a = KeyRing::load(store.as_ref(), SigningAlgorithm::Es256, 3600, 1_000)
            .await
            .unwrap();
        let b = Arc::new(
            KeyRing::load(store.as_ref(), SigningAlgorithm::Es256, 3600, 1_000)
                .await
                .unwrap(),
        );
        let before = b.reads();
        let flood = |n: usize| {
            let since = Instant::now();
            let tasks: Vec<_> = (0..n)
                .map(|i| {
                    let (b, store) = (b.clone(), store.clone());
                    tokio::spawn(async move {
                        let kid = format!("forged-kid-{i:012}");
                        b.reloaded_since(store.as_ref(), since, &kid, 1_000)
                            .await
                            .unwrap()
                            .publishes(&kid)
                    })
                })
                .collect();
            async move {
                for task in tasks {
                    assert!(!task.await.unwrap());
                }
            }
        };
        // (The clock is paused: requests come a moment after the last read, as they would.)
        tokio::time::advance(Duration::from_millis(10)).await;
        let started = Instant::now();
        flood(100).await;
        assert_eq!(b.reads(), before + 1, "one read for 100 requests");
        assert!(
            started.elapsed() <= RELOAD_COOLDOWN,
            "waited for the cool-down at most"
        );
        tokio::time::advance(Duration::from_millis(10)).await;
        flood(100).await;
        assert_eq!(b.reads(), before + 2);

        // In the middle of a flood, another server rotates: its token's key is found.
        tokio::time::advance(Duration::from_millis(10)).await;
        let flooding = tokio::spawn(flood(50));
        tokio::task::yield_now().await;
        let new = a.rotate(store.as_ref(), 1_100).await.unwrap();
        let asked = Instant::now();
        let keys = b
            .reloaded_since(store.as_ref(), asked, &new, 1_100)
            .await
            .unwrap();
        assert!(keys.publishes(&new));
        assert!(
            asked.elapsed() <= RELOAD_COOLDOWN * 2,
            "{:?}",
            asked.elapsed()
        );
        flooding.await.unwrap();
        assert!(b.reads() <= before + 4, "{}", b.reads() - before);
    }

    #[test]
    fn only_plausible_tokens_of_this_issuer_are_worth_a_read() {
        let token = |claims: Value| {
            format!(
                "eyJhbGciOiJFUzI1NiJ9.{}.c2ln",
                URL_SAFE_NO_PAD.encode(claims.to_string())
            )
        };
        let kid = "AAAAAAAAAAAAAAAAAAAAAA";
        let issuer = "https://as.example";
        let ours = token(json!({ "iss": issuer, "exp": 2_000 }));
        assert!(worth_reloading_for(&ours, kid, issuer, 1_000));
        assert!(!worth_reloading_for(&ours, kid, issuer, 3_000), "expired");
        assert!(
            !worth_reloading_for(&ours, "k1", issuer, 1_000),
            "not our kid shape"
        );
        assert!(!worth_reloading_for(
            &ours,
            "a.b/c+AAAAAAAAAAAAAAAA",
            issuer,
            1_000
        ));
        let theirs = token(json!({ "iss": "https://idp.example", "exp": 2_000 }));
        assert!(
            !worth_reloading_for(&theirs, kid, issuer, 1_000),
            "another issuer"
        );
        let no_exp = token(json!({ "iss": issuer }));
        assert!(!worth_reloading_for(&no_exp, kid, issuer, 1_000));
        assert!(!worth_reloading_for(
            "eyJ.not-base64!.x",
            kid,
            issuer,
            1_000
        ));
    }
}
