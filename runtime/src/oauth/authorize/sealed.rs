//! Values the browser carries for the server, unreadable and unforgeable by anyone else:
//! authorization requests waiting for the user (sealed with AES-256-GCM) and the MACs of the
//! pages' CSRF tokens and device cookies (HMAC-SHA256).
//!
//! An authorization request arrives before anyone has authenticated. Kept on the server, every
//! such request would cost memory for ten minutes, and a flood of them from one address would
//! fill any bounded table and deny sign-in to everyone (a review filled 10,000 slots in 3.5 s).
//! Sealed into the login page instead, it costs the server nothing until a user signs in.
//!
//! The keys are derived (HKDF-SHA256, one per purpose, bound to the issuer) from a random
//! secret kept in the store ([`Store::shared_secret`](crate::store::Store::shared_secret)):
//! every server on one store (the replicas of one server) opens what another sealed and checks
//! its MACs, so each step of a sign-in may reach any of them, and a restart keeps the sign-ins
//! in progress and the browsers trusted. Another issuer on the same store derives other keys.

use aws_lc_rs::{
    aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey},
    hkdf, hmac,
};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};

/// The name of the store's secret the keys are derived from.
pub(crate) const SECRET_NAME: &str = "authorization-pages";
/// The HKDF salt: what the secret is for.
const SALT: &[u8] = b"mcp-gatekeeper/authorization-pages";
/// The HKDF labels of the two keys.
const SEAL_LABEL: &[u8] = b"seal/v1";
const MAC_LABEL: &[u8] = b"mac/v1";
/// Binds sealed values to their purpose and format version.
const AAD: &[u8] = b"mcp-gatekeeper/authorization-request/v1";
/// Length of an AES-GCM tag.
const TAG_LEN: usize = 16;
/// Longest sealed value accepted from a browser (base64url): a request is at most a few
/// kilobytes (the authorization query is capped at 8 KiB).
const MAX_SEALED_CHARS: usize = 24 * 1024;

/// The keys of one issuer's pages.
pub(crate) struct Secrets {
    aead: RandomizedNonceKey,
    mac: hmac::Key,
}

impl Secrets {
    /// The keys of `issuer`'s pages, derived from the store's `secret`: the same on every
    /// server with that issuer and secret.
    pub(crate) fn derive(secret: &[u8; 32], issuer: &str) -> Self {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, SALT).extract(secret);
        let expand = |label: &[u8]| {
            let mut key = [0u8; 32];
            prk.expand(&[label, b"\0", issuer.as_bytes()], hkdf::HKDF_SHA256)
                .and_then(|okm| okm.fill(&mut key))
                .expect("32 bytes is a valid HKDF-SHA256 output length");
            key
        };
        let aead = RandomizedNonceKey::new(&AES_256_GCM, &expand(SEAL_LABEL))
            .expect("a 32-byte key is valid for AES-256-GCM");
        Self {
            aead,
            mac: hmac::Key::new(hmac::HMAC_SHA256, &expand(MAC_LABEL)),
        }
    }

    /// Keys from a fresh random secret, shared with nobody (tests).
    #[cfg(test)]
    pub(crate) fn random() -> Self {
        let mut secret = [0u8; 32];
        rand::fill(&mut secret);
        Self::derive(&secret, "https://issuer.example")
    }

    /// Encrypts and authenticates `plaintext`: base64url of nonce, ciphertext and tag.
    pub(crate) fn seal(&self, mut plaintext: Vec<u8>) -> Option<String> {
        let nonce = self
            .aead
            .seal_in_place_append_tag(Aad::from(AAD), &mut plaintext)
            .ok()?;
        let mut sealed = Vec::with_capacity(NONCE_LEN + plaintext.len());
        sealed.extend_from_slice(nonce.as_ref());
        sealed.extend_from_slice(&plaintext);
        Some(URL_SAFE_NO_PAD.encode(sealed))
    }

    /// The plaintext of a value [`seal`](Self::seal) made with these keys; `None` for anything
    /// else (forged, altered, truncated, from another process, too long).
    pub(crate) fn open(&self, sealed: &str) -> Option<Vec<u8>> {
        if sealed.len() > MAX_SEALED_CHARS {
            return None;
        }
        let mut bytes = URL_SAFE_NO_PAD.decode(sealed).ok()?;
        if bytes.len() < NONCE_LEN + TAG_LEN {
            return None;
        }
        let nonce = Nonce::try_assume_unique_for_key(&bytes[..NONCE_LEN]).ok()?;
        let opened = self
            .aead
            .open_in_place(nonce, Aad::from(AAD), &mut bytes[NONCE_LEN..])
            .ok()?;
        Some(opened.to_vec())
    }

    /// HMAC-SHA256 over `parts`, each prefixed with its length (so no two lists of parts
    /// authenticate the same bytes).
    pub(crate) fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut context = hmac::Context::with_key(&self.mac);
        for part in parts {
            context.update(&(part.len() as u64).to_be_bytes());
            context.update(part);
        }
        let tag = context.sign();
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_unaltered_and_with_the_same_keys() {
        let secrets = Secrets::random();
        let sealed = secrets.seal(b"hello".to_vec()).unwrap();
        assert_eq!(secrets.open(&sealed).unwrap(), b"hello");
        assert_ne!(
            secrets.seal(b"hello".to_vec()).unwrap(),
            sealed,
            "random nonces"
        );
        assert!(Secrets::random().open(&sealed).is_none(), "other keys");
        let mut bytes = URL_SAFE_NO_PAD.decode(&sealed).unwrap();
        for i in 0..bytes.len() {
            bytes[i] ^= 1;
            assert!(
                secrets.open(&URL_SAFE_NO_PAD.encode(&bytes)).is_none(),
                "{i}"
            );
            bytes[i] ^= 1;
        }
        for bad in [
            "",
            "AAAA",
            "not base64 !",
            &"A".repeat(MAX_SEALED_CHARS + 4),
        ] {
            assert!(secrets.open(bad).is_none(), "{bad}");
        }
        assert!(secrets.open(&sealed[..sealed.len() - 2]).is_none());
    }

    #[test]
    fn servers_sharing_the_secret_and_issuer_share_the_keys() {
        let secret = [42u8; 32];
        let issuer = "https://mcp.example.com";
        let (a, b) = (
            Secrets::derive(&secret, issuer),
            Secrets::derive(&secret, issuer),
        );
        let sealed = a.seal(b"request".to_vec()).unwrap();
        assert_eq!(b.open(&sealed).unwrap(), b"request", "a replica opens it");
        assert_eq!(a.mac(&[b"x"]), b.mac(&[b"x"]));
        let other_issuer = Secrets::derive(&secret, "https://other.example.com");
        assert!(other_issuer.open(&sealed).is_none());
        assert_ne!(a.mac(&[b"x"]), other_issuer.mac(&[b"x"]));
        let other_secret = Secrets::derive(&[43; 32], issuer);
        assert!(other_secret.open(&sealed).is_none());
        assert_ne!(a.mac(&[b"x"]), other_secret.mac(&[b"x"]));
        // The two keys differ from each other and from the secret itself.
        let mac_key = hmac::Key::new(hmac::HMAC_SHA256, &secret);
        assert_ne!(
            hmac::sign(&mac_key, b"x").as_ref(),
            hmac::sign(&a.mac, b"x").as_ref()
        );
    }

    #[test]
    fn macs_separate_their_parts() {
        let secrets = Secrets::random();
        assert_eq!(secrets.mac(&[b"a", b"bc"]), secrets.mac(&[b"a", b"bc"]));
        assert_ne!(secrets.mac(&[b"a", b"bc"]), secrets.mac(&[b"ab", b"c"]));
        assert_ne!(
            secrets.mac(&[b"a"]),
            Secrets::random().mac(&[b"a"]),
            "random keys"
        );
    }
}
