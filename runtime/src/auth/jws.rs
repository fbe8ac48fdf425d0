//! Compact JWS signatures (RFC 7515 §7.1) checked with a key prepared once.
//!
//! `jsonwebtoken::decode` builds a new verifier and key for every token and parses the header
//! twice. Here the key is parsed when the verifier is configured, the header is parsed once into
//! the two members that matter (`alg`, `crit`), and the payload is handed back undecoded as JSON
//! so the caller parses its claims exactly once.

use std::{borrow::Cow, fmt, ops::Deref};

use aws_lc_rs::{
    hmac,
    signature::{
        ECDSA_P256_SHA256_FIXED, ECDSA_P384_SHA384_FIXED, ED25519, ParsedPublicKey,
        RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_2048_8192_SHA384, RSA_PKCS1_2048_8192_SHA512,
        VerificationAlgorithm,
    },
};
use base64::{DecodeSliceError, Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::DecodingKey;
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};

use super::JwtAlgorithm;

/// The longest signature of any algorithm verified here: RSA with an 8192-bit modulus, the
/// largest aws-lc accepts.
const MAX_SIGNATURE_LEN: usize = 1024;
/// Headers up to this many bytes are decoded on the stack; a longer one (an embedded `jwk` or
/// `x5c`) goes to the heap.
const STACK_HEADER_LEN: usize = 256;

/// Why a token was refused, for the debug log only.
pub(super) type Refusal = &'static str;

/// The key a verifier checks signatures with, parsed once for its one algorithm.
pub(super) struct VerifyingKey {
    algorithm: JwtAlgorithm,
    kind: KeyKind,
}

// An HMAC key carries its precomputed inner and outer states (about 1.2 kB); there is one per
// verifier, behind the verifier's `Arc`, so boxing it would only add an indirection per token.
#[allow(clippy::large_enum_variant)]
enum KeyKind {
    Hmac(hmac::Key),
    Public(ParsedPublicKey),
    /// A key that could not be parsed: every signature is refused.
    Unusable,
}

/// A key that does not fit its algorithm, or does not parse.
#[derive(Debug)]
pub(super) struct UnusableKey;

impl VerifyingKey {
    /// Prepares `key` for `algorithm`, from the very bytes `jsonwebtoken` would give aws-lc
    /// (a secret, a PKCS#1 or SPKI RSA key, an uncompressed EC point or a raw Ed25519 key), with
    /// the same aws-lc algorithms, so what verifies is unchanged.
    ///
    /// # Errors
    /// When the key belongs to another family of algorithms, or aws-lc cannot parse it.
    pub(super) fn new(algorithm: JwtAlgorithm, key: &DecodingKey) -> Result<Self, UnusableKey> {
        let family = algorithm.to_jsonwebtoken().family();
        // A key of the wrong family is never used, least of all public key bytes as an HMAC
        // secret.
        if key.family() != family {
            return Err(UnusableKey);
        }
        // Only RSA keys given as (n, e) components have no bytes; this crate makes none.
        let bytes = key.try_get_as_bytes().map_err(|_| UnusableKey)?;
        let kind = match algorithm {
            JwtAlgorithm::Hs256 => KeyKind::Hmac(hmac::Key::new(hmac::HMAC_SHA256, bytes)),
            JwtAlgorithm::Hs384 => KeyKind::Hmac(hmac::Key::new(hmac::HMAC_SHA384, bytes)),
            JwtAlgorithm::Hs512 => KeyKind::Hmac(hmac::Key::new(hmac::HMAC_SHA512, bytes)),
            public => KeyKind::Public(
                ParsedPublicKey::new(public_key_algorithm(public), bytes)
                    .map_err(|_| UnusableKey)?,
            ),
        };
        Ok(Self { algorithm, kind })
    }

    /// A key that refuses every token, for a configured key that turned out unusable where
    /// failing is not an option: the tokens it would have checked are refused, as
    /// `jsonwebtoken` refused them when it failed to parse the key on each token.
    pub(super) fn unusable(algorithm: JwtAlgorithm) -> Self {
        Self {
            algorithm,
            kind: KeyKind::Unusable,
        }
    }

    /// The one algorithm tokens must name and be signed with.
    pub(super) fn algorithm(&self) -> JwtAlgorithm {
        self.algorithm
    }

    /// Checks that `token` is a compact JWS signed with this key under this key's algorithm,
    /// and returns its payload (base64url-decoded, not yet parsed).
    ///
    /// Each of the three segments must be unpadded base64url with no stray bits; the header
    /// must be a JSON object whose `alg` is exactly this key's algorithm and that has no
    /// `crit` (RFC 7515 §4.1.11: we understand no extension). Other header members are
    /// ignored. The payload is decoded only once the signature has verified.
    pub(super) fn verify(&self, token: &str) -> Result<Vec<u8>, Refusal> {
        let mut segments = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) = (
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
        ) else {
            return Err("segments");
        };
        self.check_header(header)?;
        let mut signature_bytes = [0u8; MAX_SIGNATURE_LEN];
        let signature_len = match URL_SAFE_NO_PAD.decode_slice(signature, &mut signature_bytes) {
            Ok(len) => len,
            Err(DecodeSliceError::OutputSliceTooSmall) => return Err("signature"),
            Err(DecodeSliceError::DecodeError(_)) => return Err("signature_base64"),
        };
        let signed = &token.as_bytes()[..header.len() + 1 + payload.len()];
        self.check_signature(signed, &signature_bytes[..signature_len])?;
        URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| "payload_base64")
    }

    fn check_header(&self, encoded: &str) -> Result<(), Refusal> {
        let mut on_stack = [0u8; STACK_HEADER_LEN];
        let mut on_heap = Vec::new();
        let json = match URL_SAFE_NO_PAD.decode_slice(encoded, &mut on_stack) {
            Ok(len) => &on_stack[..len],
            Err(DecodeSliceError::OutputSliceTooSmall) => {
                URL_SAFE_NO_PAD
                    .decode_vec(encoded, &mut on_heap)
                    .map_err(|_| "header_base64")?;
                &on_heap[..]
            }
            Err(DecodeSliceError::DecodeError(_)) => return Err("header_base64"),
        };
        let header: Header<'_> = serde_json::from_slice(json).map_err(|_| "header_json")?;
        // Exactly our algorithm: never `none`, never another family (key confusion), never
        // another hash of ours.
        if header.alg.as_deref() != Some(self.algorithm.as_str()) {
            return Err("algorithm");
        }
        if header.crit {
            return Err("crit_header");
        }
        Ok(())
    }

    fn check_signature(&self, signed: &[u8], signature: &[u8]) -> Result<(), Refusal> {
        let verified = match &self.kind {
            // Constant time, and a tag of another length never matches.
            KeyKind::Hmac(key) => hmac::verify(key, signed, signature),
            KeyKind::Public(key) => key.verify_sig(signed, signature),
            KeyKind::Unusable => return Err("unusable_key"),
        };
        verified.map_err(|_| "signature")
    }
}

/// The aws-lc algorithm `jsonwebtoken` 11 verifies `algorithm` with: PKCS#1 v1.5 for RSA with
/// moduli of 2048 to 8192 bits, fixed-size `r || s` ECDSA signatures as JWS encodes them.
fn public_key_algorithm(algorithm: JwtAlgorithm) -> &'static dyn VerificationAlgorithm {
    match algorithm {
        JwtAlgorithm::Rs256 => &RSA_PKCS1_2048_8192_SHA256,
        JwtAlgorithm::Rs384 => &RSA_PKCS1_2048_8192_SHA384,
        JwtAlgorithm::Rs512 => &RSA_PKCS1_2048_8192_SHA512,
        JwtAlgorithm::Es256 => &ECDSA_P256_SHA256_FIXED,
        JwtAlgorithm::Es384 => &ECDSA_P384_SHA384_FIXED,
        // HMAC never gets here; EdDSA is the remaining one.
        _ => &ED25519,
    }
}

/// The header members a verifier acts on.
struct Header<'h> {
    alg: Option<JsonStr<'h>>,
    /// Whether `crit` is present, whatever its value (even `null`).
    crit: bool,
}

impl<'de> Deserialize<'de> for Header<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(HeaderVisitor)
    }
}

struct HeaderVisitor;

impl<'de> Visitor<'de> for HeaderVisitor {
    type Value = Header<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JWS header object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut header = Header {
            alg: None,
            crit: false,
        };
        while let Some(name) = map.next_key::<JsonStr<'de>>()? {
            match &*name {
                // Two `alg`s would leave it to the parser which one counts.
                "alg" if header.alg.is_some() => return Err(de::Error::duplicate_field("alg")),
                "alg" => header.alg = Some(map.next_value()?),
                "crit" => {
                    map.next_value::<IgnoredAny>()?;
                    header.crit = true;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(header)
    }
}

/// A JSON string, borrowed from the input unless it contains escapes.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct JsonStr<'a>(pub(super) Cow<'a, str>);

impl Deref for JsonStr<'_> {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for JsonStr<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(JsonStrVisitor)
    }
}

struct JsonStrVisitor;

impl<'de> Visitor<'de> for JsonStrVisitor {
    type Value = JsonStr<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
        Ok(JsonStr(Cow::Borrowed(s)))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        Ok(JsonStr(Cow::Owned(s.to_owned())))
    }

    fn visit_string<E: de::Error>(self, s: String) -> Result<Self::Value, E> {
        Ok(JsonStr(Cow::Owned(s)))
    }
}

#[cfg(test)]
mod tests;
