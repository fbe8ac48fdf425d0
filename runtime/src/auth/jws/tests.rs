//! Tests of the parent module.

use aws_lc_rs::{
    rand::SystemRandom,
    signature::{
        ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair,
    },
};
use base64::engine::general_purpose::URL_SAFE;

use super::*;

const SECRET: &[u8] = b"a-secret-of-more-than-32-bytes-for-jws-tests";
const HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;
/// 28 and 13 bytes: base64 of either would end in padding.
const ODD_HEADER: &str = r#"{"alg":"HS256","typ":"JOSE"}"#;
const ODD_PAYLOAD: &str = r#"{"sub":"bob"}"#;

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn hs256() -> VerifyingKey {
    VerifyingKey::new(JwtAlgorithm::Hs256, &DecodingKey::from_secret(SECRET)).unwrap()
}

fn hmac_sha256(key: &[u8], message: &str) -> Vec<u8> {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    hmac::sign(&key, message.as_bytes()).as_ref().to_vec()
}

/// `header.payload.signature`, signed over the two segments exactly as written.
fn hs256_signed(header: &str, payload: &str) -> String {
    let signed = format!("{header}.{payload}");
    let tag = hmac_sha256(SECRET, &signed);
    format!("{signed}.{}", b64(tag))
}

fn token(header_json: &str, payload_json: &str) -> String {
    hs256_signed(&b64(header_json), &b64(payload_json))
}

/// The token with its signature segment replaced.
fn with_signature(token: &str, signature: &str) -> String {
    let (signed, _) = token.rsplit_once('.').unwrap();
    format!("{signed}.{signature}")
}

#[test]
fn a_well_formed_token_yields_its_payload() {
    let payload = hs256().verify(&token(HEADER, ODD_PAYLOAD)).unwrap();
    assert_eq!(payload, ODD_PAYLOAD.as_bytes());
    // Header members other than `alg` and `crit` are not looked at, whatever their type.
    let header = r#"{"typ":5,"kid":{"k":[1]},"alg":"HS256","x5c":null,"jwk":"?"}"#;
    assert!(hs256().verify(&token(header, ODD_PAYLOAD)).is_ok());
    // `alg` written with escapes is still `HS256`.
    let header = r#"{"alg":"HS\u0032\u0035\u0036"}"#;
    assert!(hs256().verify(&token(header, ODD_PAYLOAD)).is_ok());
    // A header too long for the stack buffer takes the heap path.
    let kid = "k".repeat(2 * STACK_HEADER_LEN);
    let header = format!(r#"{{"kid":"{kid}","alg":"HS256"}}"#);
    assert!(hs256().verify(&token(&header, ODD_PAYLOAD)).is_ok());
    let header = format!(r#"{{"kid":"{kid}","alg":"none"}}"#);
    assert_eq!(
        hs256().verify(&token(&header, ODD_PAYLOAD)),
        Err("algorithm")
    );
}

#[test]
fn tokens_without_exactly_three_segments_are_refused() {
    let (header, payload) = (b64(HEADER), b64(ODD_PAYLOAD));
    let good = token(HEADER, ODD_PAYLOAD);
    let signature = good.rsplit_once('.').unwrap().1;
    for bad in [
        String::new(),
        header.clone(),
        // Two segments, the second a valid signature of the first.
        format!("{header}.{}", b64(hmac_sha256(SECRET, &header))),
        format!("{header}.{payload}"),
        // Four segments, the last a valid signature of the first three.
        hs256_signed(&header, &format!("{payload}.{payload}")),
        format!("{good}.{signature}"),
        format!("{good}."),
        format!(".{good}"),
    ] {
        assert_eq!(hs256().verify(&bad), Err("segments"), "{bad}");
    }
}

#[test]
fn padded_segments_are_refused() {
    let (header, payload) = (b64(ODD_HEADER), b64(ODD_PAYLOAD));
    assert!(hs256().verify(&hs256_signed(&header, &payload)).is_ok());
    let padded_header = URL_SAFE.encode(ODD_HEADER);
    let padded_payload = URL_SAFE.encode(ODD_PAYLOAD);
    assert!(padded_header.ends_with('=') && padded_payload.ends_with('='));
    assert_eq!(
        hs256().verify(&hs256_signed(&padded_header, &payload)),
        Err("header_base64")
    );
    // Signed as written, so only the padding is wrong.
    assert_eq!(
        hs256().verify(&hs256_signed(&header, &padded_payload)),
        Err("payload_base64")
    );
    let good = hs256_signed(&header, &payload);
    let padded_signature = URL_SAFE.encode(hmac_sha256(SECRET, &format!("{header}.{payload}")));
    assert!(padded_signature.ends_with('='));
    assert_eq!(
        hs256().verify(&with_signature(&good, &padded_signature)),
        Err("signature_base64")
    );
}

#[test]
fn bytes_outside_the_base64url_alphabet_are_refused_in_every_segment() {
    let (header, payload) = (b64(HEADER), b64(ODD_PAYLOAD));
    let good = hs256_signed(&header, &payload);
    let signature = good.rsplit_once('.').unwrap().1;
    for stray in ["+", "/", "=", "*", " ", "%2", "é"] {
        let spoil = |segment: &str| format!("{}{stray}{}", &segment[..4], &segment[4..]);
        assert_eq!(
            hs256().verify(&hs256_signed(&spoil(&header), &payload)),
            Err("header_base64"),
            "{stray}"
        );
        assert_eq!(
            hs256().verify(&hs256_signed(&header, &spoil(&payload))),
            Err("payload_base64"),
            "{stray}"
        );
        assert_eq!(
            hs256().verify(&with_signature(&good, &spoil(signature))),
            Err("signature_base64"),
            "{stray}"
        );
    }
}

#[test]
fn a_signature_with_stray_trailing_bits_is_refused() {
    // 32 bytes take 43 characters; the last one carries 4 bits and 2 that must be zero.
    // Setting those gives another string for the same bytes, which must not verify.
    let good = token(HEADER, ODD_PAYLOAD);
    let signature = good.rsplit_once('.').unwrap().1;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let last = signature.as_bytes()[signature.len() - 1];
    let index = ALPHABET.iter().position(|&c| c == last).unwrap();
    assert_eq!(index % 4, 0);
    let twin = format!(
        "{}{}",
        &signature[..signature.len() - 1],
        char::from(ALPHABET[index + 1])
    );
    assert_eq!(
        hs256().verify(&with_signature(&good, &twin)),
        Err("signature_base64")
    );
}

#[test]
fn headers_that_are_not_one_json_object_are_refused() {
    for header in [
        "not json",
        "",
        r#"["HS256"]"#,
        r#""HS256""#,
        "null",
        "42",
        r#"{"alg":"HS256"}x"#,
        r#"{"alg":"HS256"}{}"#,
        r#"{"alg":"HS256""#,
        // Which of two `alg`s counts is left to the parser: refused either way round.
        r#"{"alg":"HS256","alg":"HS256"}"#,
        r#"{"alg":"none","alg":"HS256"}"#,
        r#"{"alg":"HS256","alg":"none"}"#,
        r#"{"alg":null}"#,
        r#"{"alg":["HS256"]}"#,
        r#"{"alg":256}"#,
    ] {
        assert_eq!(
            hs256().verify(&token(header, ODD_PAYLOAD)),
            Err("header_json"),
            "{header}"
        );
    }
}

#[test]
fn any_alg_but_the_configured_one_is_refused() {
    for header in [
        r#"{"typ":"JWT"}"#,
        "{}",
        r#"{"alg":"none"}"#,
        r#"{"alg":"None"}"#,
        r#"{"alg":"hs256"}"#,
        r#"{"alg":"HS256 "}"#,
        r#"{"alg":"HS384"}"#,
        r#"{"alg":"HS512"}"#,
        r#"{"alg":"ES256"}"#,
        r#"{"alg":"RS256"}"#,
        r#"{"alg":"EdDSA"}"#,
    ] {
        // Validly signed with the verifier's own key: only the name is wrong.
        assert_eq!(
            hs256().verify(&token(header, ODD_PAYLOAD)),
            Err("algorithm"),
            "{header}"
        );
    }
    // `none` with the empty signature it calls for.
    let unsigned = format!("{}.{}.", b64(r#"{"alg":"none"}"#), b64(ODD_PAYLOAD));
    assert_eq!(hs256().verify(&unsigned), Err("algorithm"));
}

#[test]
fn a_crit_header_is_refused_whatever_its_value() {
    for crit in [r#"["exp"]"#, "[]", "null", r#""b64""#] {
        let header = format!(r#"{{"alg":"HS256","crit":{crit}}}"#);
        assert_eq!(
            hs256().verify(&token(&header, ODD_PAYLOAD)),
            Err("crit_header"),
            "{crit}"
        );
    }
}

#[test]
fn signatures_of_the_wrong_size_or_value_are_refused() {
    let good = token(HEADER, ODD_PAYLOAD);
    let tag = hmac_sha256(SECRET, good.rsplit_once('.').unwrap().0);
    let mut flipped = tag.clone();
    flipped[7] ^= 1;
    let mut longer = tag.clone();
    longer.push(0);
    for signature in [
        b64(&tag[..31]),
        b64(&tag[..16]),
        String::new(),
        b64(&flipped),
        b64(&longer),
        b64([0u8; 64]),
        // Longer than any signature verified here: never decoded in full.
        b64(vec![0u8; MAX_SIGNATURE_LEN + 1]),
        b64(vec![0u8; 4 * MAX_SIGNATURE_LEN]),
    ] {
        assert_eq!(
            hs256().verify(&with_signature(&good, &signature)),
            Err("signature"),
            "{} bytes",
            signature.len()
        );
    }
    // The right tag for another header does not verify this one.
    let other = token(r#"{"alg":"HS256"}"#, ODD_PAYLOAD);
    let other_signature = other.rsplit_once('.').unwrap().1;
    assert_eq!(
        hs256().verify(&with_signature(&good, other_signature)),
        Err("signature")
    );
    // Another key's tag.
    let other_key = hmac_sha256(b"another-secret-of-more-than-32-bytes!!", &b64(HEADER));
    assert_eq!(
        hs256().verify(&with_signature(&good, &b64(other_key))),
        Err("signature")
    );
}

#[test]
fn the_payload_is_decoded_only_after_the_signature_verified() {
    let header = b64(HEADER);
    assert_eq!(
        hs256().verify(&hs256_signed(&header, "%%%")),
        Err("payload_base64")
    );
    // Not signed: the signature is what refuses it.
    let forged = with_signature(&hs256_signed(&header, "%%%"), &b64([0u8; 32]));
    assert_eq!(hs256().verify(&forged), Err("signature"));
    // A payload that is not JSON is the claims parser's business, not this one's.
    assert_eq!(
        hs256().verify(&hs256_signed(&header, &b64("not json"))),
        Ok(b"not json".to_vec())
    );
}

struct Es256 {
    pair: EcdsaKeyPair,
    verifier: VerifyingKey,
}

fn es256() -> Es256 {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
    // What `DecodingKey::from_ec_pem` and `from_ec_components` hold: the uncompressed point.
    let point = DecodingKey::from_ec_der(pair.public_key().as_ref());
    let verifier = VerifyingKey::new(JwtAlgorithm::Es256, &point).unwrap();
    Es256 { pair, verifier }
}

impl Es256 {
    fn sign(&self, header_json: &str) -> String {
        let signed = format!("{}.{}", b64(header_json), b64(ODD_PAYLOAD));
        let signature = self
            .pair
            .sign(&SystemRandom::new(), signed.as_bytes())
            .unwrap();
        format!("{signed}.{}", b64(signature))
    }
}

#[test]
fn a_valid_signature_under_another_algorithm_is_refused() {
    let es = es256();
    let es_token = es.sign(r#"{"alg":"ES256"}"#);
    assert_eq!(
        es.verifier.verify(&es_token).unwrap(),
        ODD_PAYLOAD.as_bytes()
    );
    // An ES256 token to an HS256 verifier.
    assert_eq!(hs256().verify(&es_token), Err("algorithm"));
    // An HS256 token to an ES256 verifier, keyed with the public key (key confusion).
    let public = es.pair.public_key().as_ref();
    let signed = format!("{}.{}", b64(r#"{"alg":"HS256"}"#), b64(ODD_PAYLOAD));
    let confused = format!("{signed}.{}", b64(hmac_sha256(public, &signed)));
    assert_eq!(es.verifier.verify(&confused), Err("algorithm"));
    // And the same MAC under the verifier's own algorithm name.
    let signed = format!("{}.{}", b64(r#"{"alg":"ES256"}"#), b64(ODD_PAYLOAD));
    let confused = format!("{signed}.{}", b64(hmac_sha256(public, &signed)));
    assert_eq!(es.verifier.verify(&confused), Err("signature"));
}

#[test]
fn ecdsa_signatures_must_be_fixed_size_r_and_s() {
    let es = es256();
    let good = es.sign(r#"{"alg":"ES256"}"#);
    let (signed, signature) = good.rsplit_once('.').unwrap();
    let fixed = URL_SAFE_NO_PAD.decode(signature).unwrap();
    assert_eq!(fixed.len(), 64);
    for bad in [
        &fixed[..63],
        &fixed[1..],
        &[fixed.as_slice(), &[0]].concat()[..],
    ] {
        assert_eq!(
            es.verifier.verify(&with_signature(&good, &b64(bad))),
            Err("signature")
        );
    }
    // The same key's signature in ASN.1 DER form, as X.509 would carry it.
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
    let der_pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref()).unwrap();
    let der_verifier = VerifyingKey::new(
        JwtAlgorithm::Es256,
        &DecodingKey::from_ec_der(der_pair.public_key().as_ref()),
    )
    .unwrap();
    let der = der_pair.sign(&rng, signed.as_bytes()).unwrap();
    assert_eq!(
        der_verifier.verify(&with_signature(&good, &b64(der))),
        Err("signature")
    );
}

#[test]
fn keys_that_do_not_fit_their_algorithm_are_refused() {
    let es = es256();
    let point = es.pair.public_key().as_ref().to_vec();
    let unusable = [
        // Public key bytes are never an HMAC secret, nor a secret a public key.
        (JwtAlgorithm::Hs256, DecodingKey::from_ec_der(&point)),
        (JwtAlgorithm::Es256, DecodingKey::from_secret(SECRET)),
        (JwtAlgorithm::EdDsa, DecodingKey::from_secret(&[7; 32])),
        // A P-256 point is not a P-384 key, nor an Ed25519 one.
        (JwtAlgorithm::Es384, DecodingKey::from_ec_der(&point)),
        (JwtAlgorithm::EdDsa, DecodingKey::from_ed_der(&point)),
        // Not a point on the curve.
        (JwtAlgorithm::Es256, DecodingKey::from_ec_der(&[4; 65])),
        (JwtAlgorithm::Rs256, DecodingKey::from_rsa_der(b"not DER")),
        // (n, e) components have no bytes to parse.
        (
            JwtAlgorithm::Rs256,
            DecodingKey::from_rsa_raw_components(&[0xc5; 256], &[1, 0, 1]),
        ),
    ];
    for (algorithm, key) in unusable {
        assert!(VerifyingKey::new(algorithm, &key).is_err(), "{algorithm}");
    }
}

#[test]
fn an_unusable_key_refuses_every_token() {
    let key = VerifyingKey::unusable(JwtAlgorithm::Hs256);
    assert_eq!(key.algorithm(), JwtAlgorithm::Hs256);
    assert_eq!(key.verify(&token(HEADER, ODD_PAYLOAD)), Err("unusable_key"));
}
