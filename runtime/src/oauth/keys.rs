//! The authorization server's signing keys: generated on first start, persisted in the store,
//! published as a JWKS, rotated while old keys stay published until their tokens have expired.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
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
    created_at: i64,
    retired_at: Option<i64>,
}

/// The keys in use at one moment; replaced as a whole on rotation.
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

    /// When the signing key was created (unix seconds).
    pub(crate) fn signing_created_at(&self) -> i64 {
        self.signing.created_at
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

/// The live key set of a server, swapped atomically on rotation. Readers clone an `Arc` and
/// never hold the lock across an `.await`.
pub(crate) struct KeyRing {
    current: RwLock<Arc<KeySet>>,
    algorithm: SigningAlgorithm,
    /// How long a retired key stays published: the longest access-token lifetime.
    publish_retired_for: i64,
}

impl KeyRing {
    /// Loads the keys from the store, generating and storing a first key when there is none
    /// usable for `algorithm`.
    pub(crate) async fn load(
        store: &dyn Store,
        algorithm: SigningAlgorithm,
        publish_retired_for: i64,
        now: i64,
    ) -> Result<Self, ConfigError> {
        let set = Self::load_set(store, algorithm, publish_retired_for, now).await?;
        Ok(Self {
            current: RwLock::new(Arc::new(set)),
            algorithm,
            publish_retired_for,
        })
    }

    /// The keys in use now.
    pub(crate) fn current(&self) -> Arc<KeySet> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Generates a new signing key, retires the current one (still published until its tokens
    /// expire), deletes keys retired long enough ago, and starts signing with the new key.
    /// Returns the new key's `kid`.
    pub(crate) async fn rotate(&self, store: &dyn Store, now: i64) -> Result<String, StoreError> {
        let old = self.current();
        let record = generate(self.algorithm, now).map_err(StoreError::backend)?;
        let kid = record.kid.clone();
        store.put_signing_key(record).await?;
        store.retire_signing_key(old.signing_kid(), now).await?;
        let set = Self::load_set(store, self.algorithm, self.publish_retired_for, now)
            .await
            .map_err(|e| StoreError::backend(e.to_string()))?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(set);
        Ok(kid)
    }

    async fn load_set(
        store: &dyn Store,
        algorithm: SigningAlgorithm,
        publish_retired_for: i64,
        now: i64,
    ) -> Result<KeySet, ConfigError> {
        let store_error = ConfigError::Store;
        let mut records = store.signing_keys().await.map_err(store_error)?;
        // Keys retired so long ago that no token they signed can be alive are deleted.
        let mut kept = Vec::with_capacity(records.len());
        for record in records.drain(..) {
            match record.retired_at {
                Some(retired) if retired + publish_retired_for < now => {
                    store
                        .delete_signing_key(&record.kid)
                        .await
                        .map_err(store_error)?;
                }
                _ => kept.push(record),
            }
        }
        let usable =
            |r: &SigningKeyRecord| r.retired_at.is_none() && r.algorithm == algorithm.as_str();
        if !kept.iter().any(usable) {
            // First start (or a change of algorithm): make a key and keep the old ones published.
            let record = generate(algorithm, now).map_err(ConfigError::invalid)?;
            store
                .put_signing_key(record.clone())
                .await
                .map_err(store_error)?;
            for old in kept.iter().filter(|r| r.retired_at.is_none()) {
                store
                    .retire_signing_key(&old.kid, now)
                    .await
                    .map_err(store_error)?;
            }
            kept = store.signing_keys().await.map_err(store_error)?;
        }
        let mut loaded = Vec::with_capacity(kept.len());
        for record in &kept {
            loaded.push(Arc::new(load_key(record).map_err(ConfigError::invalid)?));
        }
        // Newest first: the first unretired key of the configured algorithm signs.
        let signing = loaded
            .iter()
            .find(|k| k.retired_at.is_none() && k.algorithm == algorithm)
            .cloned()
            .ok_or_else(|| ConfigError::invalid("no usable signing key after generating one"))?;
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
        created_at: record.created_at,
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

        // Once every token of the retired key has expired, it is dropped.
        let later = KeyRing::load(&store, SigningAlgorithm::Es256, 3600, 2_000 + 3601)
            .await
            .unwrap();
        assert_eq!(
            later.current().kids().collect::<Vec<_>>(),
            vec![second.as_str()]
        );
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
}
