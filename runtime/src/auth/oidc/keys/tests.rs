//! Tests of the parent module.

use aws_lc_rs::{
    rand::SystemRandom,
    signature::{
        ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair,
        KeyPair as _,
    },
};
use serde_json::{Value, json};

use super::*;

/// A P-256 (or P-384) public key as a JWK with `kid`, and its private key (PKCS#8).
pub(crate) fn ec_jwk(kid: &str, p384: bool) -> (Value, Vec<u8>) {
    let alg = if p384 {
        &ECDSA_P384_SHA384_FIXED_SIGNING
    } else {
        &ECDSA_P256_SHA256_FIXED_SIGNING
    };
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &SystemRandom::new()).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref()).unwrap();
    let point = pair.public_key().as_ref();
    let half = (point.len() - 1) / 2;
    let jwk = json!({
        "kty": "EC",
        "crv": if p384 { "P-384" } else { "P-256" },
        "x": URL_SAFE_NO_PAD.encode(&point[1..=half]),
        "y": URL_SAFE_NO_PAD.encode(&point[1 + half..]),
        "kid": kid,
    });
    (jwk, pkcs8.as_ref().to_vec())
}

/// The RSA test key of the JWT tests as a JWK.
fn rsa_jwk(kid: &str) -> Value {
    let key = DecodingKey::from_rsa_pem(crate::auth::jwt::tests::RSA_PUBLIC.as_bytes()).unwrap();
    let mut jwk = serde_json::to_value(Jwk::from_decoding_key(&key, None).unwrap()).unwrap();
    jwk["kid"] = json!(kid);
    jwk
}

fn with(mut jwk: Value, patch: Value) -> Value {
    for (name, value) in patch.as_object().unwrap() {
        if value.is_null() {
            jwk.as_object_mut().unwrap().remove(name);
        } else {
            jwk[name] = value.clone();
        }
    }
    jwk
}

fn parse(keys: &[Value], allowed: &[JwtAlgorithm]) -> ParsedKeySet {
    let set = json!({ "keys": keys }).to_string();
    KeySet::parse(set.as_bytes(), allowed).unwrap()
}

/// Every algorithm a provider's keys may serve.
const ALL: [JwtAlgorithm; 6] = crate::auth::oidc::DEFAULT_ALGORITHMS;

#[test]
fn usable_keys_are_found_by_kid_and_algorithm() {
    let (p256, _) = ec_jwk("ec", false);
    let (p384, _) = ec_jwk("ec384", true);
    let parsed = parse(&[p256, p384, rsa_jwk("rsa")], &ALL);
    assert!(parsed.ignored.is_empty(), "{:?}", parsed.ignored);
    let keys = parsed.keys;
    assert_eq!(keys.kids(), ["ec", "ec384", "rsa"]);
    assert!(keys.find(Some("ec"), JwtAlgorithm::Es256).is_some());
    assert!(
        keys.find(Some("ec"), JwtAlgorithm::Es384).is_none(),
        "wrong curve"
    );
    assert!(keys.find(Some("ec384"), JwtAlgorithm::Es384).is_some());
    // An RSA key without `alg` serves every RSA algorithm accepted.
    for alg in [
        JwtAlgorithm::Rs256,
        JwtAlgorithm::Rs384,
        JwtAlgorithm::Rs512,
    ] {
        assert!(keys.find(Some("rsa"), alg).is_some(), "{alg}");
    }
    assert!(keys.find(Some("rsa"), JwtAlgorithm::Es256).is_none());
    assert!(keys.find(Some("nope"), JwtAlgorithm::Es256).is_none());
    // Without `kid`, only when exactly one key serves the algorithm.
    assert!(keys.find(None, JwtAlgorithm::Es256).is_some());
    assert!(keys.find(None, JwtAlgorithm::Rs256).is_some());
    let (second, _) = ec_jwk("ec-2", false);
    let (first, _) = ec_jwk("ec", false);
    let two = parse(&[first, second], &ALL).keys;
    assert!(two.find(None, JwtAlgorithm::Es256).is_none(), "ambiguous");
}

#[test]
fn keys_that_are_not_public_signature_keys_for_configured_algorithms_are_ignored() {
    let (ec, _) = ec_jwk("ec", false);
    let cases = [
        (
            json!({"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0", "kid": "hs"}),
            "symmetric key",
        ),
        (with(ec.clone(), json!({"alg": "HS256"})), "symmetric alg"),
        (with(ec.clone(), json!({"alg": "none"})), "alg none"),
        (with(ec.clone(), json!({"alg": "PS256"})), "unsupported alg"),
        (with(ec.clone(), json!({"alg": 5})), "unsupported alg"),
        (
            with(ec.clone(), json!({"alg": "RS256"})),
            "alg does not fit the key",
        ),
        (
            with(ec.clone(), json!({"alg": "ES384"})),
            "alg does not fit the key",
        ),
        (
            with(ec.clone(), json!({"use": "enc"})),
            "not a signature key (use)",
        ),
        (
            with(ec.clone(), json!({"key_ops": ["encrypt"]})),
            "not a verification key (key_ops)",
        ),
        (
            with(ec.clone(), json!({"key_ops": "verify"})),
            "not a verification key (key_ops)",
        ),
        (
            with(ec.clone(), json!({"crv": "P-521"})),
            "unsupported curve",
        ),
        (with(ec.clone(), json!({"x": "!!"})), "malformed key"),
        (with(ec.clone(), json!({"y": null})), "unsupported key type"),
        (
            with(
                ec.clone(),
                json!({"x": URL_SAFE_NO_PAD.encode([0u8; 32]), "y": URL_SAFE_NO_PAD.encode([0u8; 32])}),
            ),
            "key aws-lc cannot use",
        ),
        (
            with(ec.clone(), json!({"kty": "XYZ"})),
            "unsupported key type",
        ),
        (json!({"kid": "none"}), "unsupported key type"),
        (
            with(
                rsa_jwk("small"),
                json!({"n": URL_SAFE_NO_PAD.encode([0xffu8; 128])}),
            ),
            "RSA key size",
        ),
        (
            with(
                rsa_jwk("even"),
                json!({"e": URL_SAFE_NO_PAD.encode([1u8, 0])}),
            ),
            "RSA exponent",
        ),
        (with(rsa_jwk("one"), json!({"e": "AQ"})), "RSA exponent"),
    ];
    for (key, reason) in cases {
        let parsed = parse(std::slice::from_ref(&key), &ALL);
        assert_eq!(parsed.keys.len(), 0, "{key}");
        assert_eq!(parsed.ignored.len(), 1, "{key}");
        assert_eq!(parsed.ignored[0].1, reason, "{key}");
    }
    // What is fine: `use: sig`, `key_ops` with `verify`, a matching `alg`.
    let fine = with(
        ec,
        json!({"use": "sig", "key_ops": ["verify"], "alg": "ES256"}),
    );
    assert_eq!(parse(&[fine], &ALL).keys.len(), 1);
}

#[test]
fn algorithms_not_configured_are_ignored_and_one_bad_key_spoils_nothing() {
    let (ec, _) = ec_jwk("ec", false);
    let only_rsa = [JwtAlgorithm::Rs256];
    let parsed = parse(&[ec.clone(), rsa_jwk("rsa")], &only_rsa);
    assert_eq!(parsed.keys.kids(), ["rsa"]);
    assert_eq!(parsed.ignored, [("ec".to_owned(), "alg not accepted")]);
    let rsa = parsed.keys.find(Some("rsa"), JwtAlgorithm::Rs256).unwrap();
    assert_eq!(rsa.algorithms, [JwtAlgorithm::Rs256]);
    // Malformed neighbours spoil nothing, and unknown members are ignored.
    let parsed = parse(
        &[
            json!("not an object"),
            json!({"kty": "RSA"}),
            with(ec, json!({"ext": true, "extra": {}})),
        ],
        &ALL,
    );
    assert_eq!(parsed.keys.len(), 1);
    assert_eq!(parsed.ignored.len(), 2);
}

#[test]
fn a_key_set_is_an_object_with_keys_and_stays_bounded() {
    for bad in [&b"[]"[..], b"{}", b"{\"keys\": {}}", b"not json", b""] {
        assert!(
            KeySet::parse(bad, &ALL).is_err(),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
    let (ec, _) = ec_jwk("ec", false);
    let many: Vec<Value> = (0..MAX_KEYS + 10)
        .map(|i| with(ec.clone(), json!({ "kid": format!("k{i}") })))
        .collect();
    let parsed = parse(&many, &ALL);
    assert_eq!(parsed.keys.len(), MAX_KEYS);
    assert_eq!(parsed.ignored.len(), 10);
    assert!(
        parsed
            .ignored
            .iter()
            .all(|(_, why)| *why == "too many keys")
    );
}
