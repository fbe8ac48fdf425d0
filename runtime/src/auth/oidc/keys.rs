//! An identity provider's signing keys: the JSON Web Key Set it publishes, reduced to the keys
//! this crate may verify tokens with.
//!
//! A key set is attacker-adjacent input (anyone who can tamper with the provider's answer, or a
//! provider that publishes keys for other purposes), so each key is taken only when it is
//! plainly a public signature key for a configured algorithm, and everything else is ignored,
//! key by key, never failing the whole set:
//! - symmetric keys (`kty: oct`) are never taken: a published shared secret verifies nothing;
//! - `use` other than `sig`, `key_ops` without `verify`: not a verification key;
//! - `alg` that is `none`, unknown, or not one of the configured algorithms; a key without
//!   `alg` serves the configured algorithms that fit its type and curve;
//! - RSA moduli under 2048 bits (RFC 7518 §3.3) or over 8192, EC points aws-lc refuses.
//!
//! At most [`MAX_KEYS`] keys are kept.

use std::sync::Arc;

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{
    DecodingKey, Validation,
    jwk::{AlgorithmParameters, EllipticCurve, Jwk},
};
use serde_json::Value;

use crate::auth::JwtAlgorithm;

/// Keys kept from one key set; real providers publish a handful.
pub(crate) const MAX_KEYS: usize = 64;

/// RSA moduli accepted, in bits (aws-lc verifies up to 8192).
const RSA_BITS: std::ops::RangeInclusive<usize> = 2048..=8192;

/// The algorithms a key without `alg` may serve, by its type, before the configured set
/// narrows them.
const RSA_ALGORITHMS: [JwtAlgorithm; 3] = [
    JwtAlgorithm::Rs256,
    JwtAlgorithm::Rs384,
    JwtAlgorithm::Rs512,
];

/// One usable key.
pub(crate) struct SigningKey {
    /// `kid`, when the key has one.
    pub(crate) kid: Option<String>,
    /// The algorithms it verifies (one when the key names its `alg`).
    pub(crate) algorithms: Vec<JwtAlgorithm>,
    pub(crate) key: DecodingKey,
}

/// The usable keys of one key set, and what was ignored (for the log).
#[derive(Default)]
pub(crate) struct KeySet {
    keys: Vec<Arc<SigningKey>>,
}

/// A key set read from a provider: the keys, and why others were ignored.
pub(crate) struct ParsedKeySet {
    pub(crate) keys: KeySet,
    /// `(kid, reason)` of each ignored key.
    pub(crate) ignored: Vec<(String, &'static str)>,
}

impl KeySet {
    /// Reads a JWK Set (RFC 7517 §5), keeping the keys usable with `allowed` algorithms.
    ///
    /// # Errors
    /// When the document is not a JSON object with a `keys` array.
    pub(crate) fn parse(body: &[u8], allowed: &[JwtAlgorithm]) -> Result<ParsedKeySet, String> {
        let document: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
        let Some(entries) = document.get("keys").and_then(Value::as_array) else {
            return Err("not a JWK Set (no `keys` array)".to_owned());
        };
        let mut keys = Vec::new();
        let mut ignored = Vec::new();
        for entry in entries {
            let kid = entry
                .get("kid")
                .and_then(Value::as_str)
                .unwrap_or("<no kid>")
                .chars()
                .take(64)
                .collect::<String>();
            if keys.len() == MAX_KEYS {
                ignored.push((kid, "too many keys"));
                continue;
            }
            match usable_key(entry, allowed) {
                Ok(key) => keys.push(Arc::new(key)),
                Err(reason) => ignored.push((kid, reason)),
            }
        }
        Ok(ParsedKeySet {
            keys: KeySet { keys },
            ignored,
        })
    }

    /// The key a token signed with `algorithm` under `kid` is verified with: the key with that
    /// `kid` serving the algorithm; for a token without `kid`, the only key serving it.
    pub(crate) fn find(
        &self,
        kid: Option<&str>,
        algorithm: JwtAlgorithm,
    ) -> Option<Arc<SigningKey>> {
        let mut serving = self
            .keys
            .iter()
            .filter(|k| k.algorithms.contains(&algorithm));
        match kid {
            Some(kid) => serving.find(|k| k.kid.as_deref() == Some(kid)).cloned(),
            None => {
                let only = serving.next()?;
                serving.next().is_none().then(|| only.clone())
            }
        }
    }

    /// How many usable keys the set has.
    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    /// The `kid`s of the usable keys, for the log.
    pub(crate) fn kids(&self) -> Vec<&str> {
        self.keys
            .iter()
            .map(|k| k.kid.as_deref().unwrap_or("<no kid>"))
            .collect()
    }
}

/// `entry` as a usable key, or why not.
fn usable_key(entry: &Value, allowed: &[JwtAlgorithm]) -> Result<SigningKey, &'static str> {
    let member = |name| entry.get(name);
    match member("kty").and_then(Value::as_str) {
        Some("RSA" | "EC" | "OKP") => {}
        Some("oct") => return Err("symmetric key"),
        _ => return Err("unsupported key type"),
    }
    if let Some(usage) = member("use")
        && usage.as_str() != Some("sig")
    {
        return Err("not a signature key (use)");
    }
    if let Some(ops) = member("key_ops")
        && !ops
            .as_array()
            .is_some_and(|ops| ops.iter().any(|op| op.as_str() == Some("verify")))
    {
        return Err("not a verification key (key_ops)");
    }
    let named = match member("alg") {
        None | Some(Value::Null) => None,
        Some(alg) => Some(algorithm_named(alg.as_str().ok_or("unsupported alg")?)?),
    };
    // jsonwebtoken's own reading of the key; its `alg` (one we know, checked above) is not
    // needed again, and an unknown member elsewhere must not make the key unreadable.
    let jwk: Jwk = serde_json::from_value(entry.clone()).map_err(|_| "malformed key")?;
    let fitting: Vec<JwtAlgorithm> = match &jwk.algorithm {
        AlgorithmParameters::RSA(rsa) => {
            check_rsa(&rsa.n, &rsa.e)?;
            RSA_ALGORITHMS.to_vec()
        }
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => vec![JwtAlgorithm::Es256],
            EllipticCurve::P384 => vec![JwtAlgorithm::Es384],
            _ => return Err("unsupported curve"),
        },
        AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
            vec![JwtAlgorithm::EdDsa]
        }
        _ => return Err("unsupported key type"),
    };
    let algorithms: Vec<JwtAlgorithm> = match named {
        Some(alg) if !fitting.contains(&alg) => return Err("alg does not fit the key"),
        Some(alg) => vec![alg],
        None => fitting,
    }
    .into_iter()
    .filter(|alg| allowed.contains(alg))
    .collect();
    if algorithms.is_empty() {
        return Err("alg not accepted");
    }
    let key = DecodingKey::from_jwk(&jwk).map_err(|_| "malformed key")?;
    if !algorithms
        .iter()
        .all(|&alg| alg.to_jsonwebtoken().family() == key.family())
        || !super::super::jwt::key_is_usable(algorithms[0], &key)
    {
        return Err("key aws-lc cannot use");
    }
    Ok(SigningKey {
        kid: member("kid").and_then(Value::as_str).map(str::to_owned),
        algorithms,
        key,
    })
}

/// A JWS `alg` this crate verifies; `none`, HMAC and unknown ones are refused.
fn algorithm_named(name: &str) -> Result<JwtAlgorithm, &'static str> {
    Ok(match name {
        "RS256" => JwtAlgorithm::Rs256,
        "RS384" => JwtAlgorithm::Rs384,
        "RS512" => JwtAlgorithm::Rs512,
        "ES256" => JwtAlgorithm::Es256,
        "ES384" => JwtAlgorithm::Es384,
        "EdDSA" => JwtAlgorithm::EdDsa,
        "none" => return Err("alg none"),
        "HS256" | "HS384" | "HS512" => return Err("symmetric alg"),
        _ => return Err("unsupported alg"),
    })
}

/// An RSA modulus within [`RSA_BITS`] and a plausible public exponent (odd, at least 3).
fn check_rsa(modulus: &str, exponent: &str) -> Result<(), &'static str> {
    let n = URL_SAFE_NO_PAD
        .decode(modulus)
        .map_err(|_| "malformed key")?;
    let e = URL_SAFE_NO_PAD
        .decode(exponent)
        .map_err(|_| "malformed key")?;
    let significant = |bytes: &[u8]| -> usize {
        match bytes.iter().position(|&b| b != 0) {
            Some(first) => {
                (bytes.len() - first - 1) * 8 + (8 - bytes[first].leading_zeros() as usize)
            }
            None => 0,
        }
    };
    if !RSA_BITS.contains(&significant(&n)) {
        return Err("RSA key size");
    }
    let odd = e.last().is_some_and(|b| b & 1 == 1);
    if !odd || significant(&e) < 2 || significant(&e) > 64 {
        return Err("RSA exponent");
    }
    Ok(())
}

/// What `jsonwebtoken` checks for each algorithm under an issuer's rules, built once.
pub(crate) struct Validations(Vec<(JwtAlgorithm, Arc<Validation>)>);

impl Validations {
    pub(crate) fn new(rules: &crate::auth::jwt::TokenRules, allowed: &[JwtAlgorithm]) -> Self {
        Self(
            allowed
                .iter()
                .map(|&alg| (alg, Arc::new(rules.validation(alg))))
                .collect(),
        )
    }

    pub(crate) fn get(&self, algorithm: JwtAlgorithm) -> Option<&Validation> {
        self.0
            .iter()
            .find(|(alg, _)| *alg == algorithm)
            .map(|(_, v)| v.as_ref())
    }
}

#[cfg(test)]
pub(crate) mod tests;
