//! The keys a [`Jwt`](super::Jwt) checks signatures with: one key, whatever the token says, or
//! several HMAC secrets by `kid`, so that a shared secret can be replaced while tokens signed
//! with the old one are still in use.
//!
//! A token checked against secrets by `kid` must name one of them in its header, and is checked
//! against that one only: trying every secret would multiply what a forged token costs by the
//! number of secrets, and a token that names no key, or a key that was retired, says plainly
//! why it is refused.

use std::collections::BTreeMap;

use jsonwebtoken::DecodingKey;

use super::{JwtAlgorithm, check_secret, claims::Refusal, reason};
use crate::ConfigError;

/// One entry of a key list in an environment variable, for error messages.
const KEY_ENTRY_FORMAT: &str = "KID:SECRET";

/// The key, or keys, a verifier checks signatures with.
pub(crate) enum DecodingKeys {
    /// One key, whatever `kid` the token names, if any: what a verifier of one secret or one
    /// public key has always done.
    Single(DecodingKey),
    /// Secrets by `kid`, built once: a token must name one of them. A handful of entries, so a
    /// B-tree lookup is a few string comparisons and the `Debug` listing comes out sorted.
    ByKid(BTreeMap<Box<str>, DecodingKey>),
}

impl DecodingKeys {
    /// The key `token` is to be checked with. With secrets by `kid` the token's header is
    /// decoded, which verifiers do only for tokens their cache does not know; a single key is
    /// returned without reading the token at all.
    pub(crate) fn for_token(&self, token: &str) -> Result<&DecodingKey, Refusal> {
        let keys = match self {
            DecodingKeys::Single(key) => return Ok(key),
            DecodingKeys::ByKid(keys) => keys,
        };
        let header = jsonwebtoken::decode_header(token).map_err(|error| reason(error.kind()))?;
        let kid = header.kid.ok_or("missing_kid")?;
        keys.get(kid.as_str()).ok_or("unknown_kid")
    }

    /// The kids, sorted; `None` for a single key, which needs none.
    pub(crate) fn kids(&self) -> Option<Vec<&str>> {
        match self {
            DecodingKeys::Single(_) => None,
            DecodingKeys::ByKid(keys) => Some(keys.keys().map(AsRef::as_ref).collect()),
        }
    }
}

/// How a configuration error names the key at `position` (1-based) whose kid is `kid`.
pub(crate) type KeyLabel = fn(usize, &str) -> String;

/// Names keys given in code by position and kid: a kid is no secret, and naming it is what
/// lets the operator find the entry.
pub(crate) fn label_by_kid(position: usize, kid: &str) -> String {
    format!("HMAC key {position} (kid {kid:?})")
}

/// Names keys read from an environment variable by position only: an entry written without
/// its `KID:` starts with part of the secret, which would then be printed as the kid.
pub(crate) fn label_by_position(position: usize, _kid: &str) -> String {
    format!("key entry {position}")
}

/// Secrets by kid for `algorithm`, each checked as [`Jwt::hmac`](super::Jwt::hmac) checks its
/// one secret. A kid must be non-empty visible ASCII and given once; there must be at least one
/// key. Errors name the key with `label`, never its secret.
pub(crate) fn hmac_by_kid<I, K, S>(
    algorithm: JwtAlgorithm,
    keys: I,
    label: KeyLabel,
) -> Result<DecodingKeys, ConfigError>
where
    I: IntoIterator<Item = (K, S)>,
    K: AsRef<str>,
    S: AsRef<[u8]>,
{
    // The position of each kid's first entry, to name it when the kid comes again.
    let mut by_kid: BTreeMap<Box<str>, (usize, DecodingKey)> = BTreeMap::new();
    for (index, (kid, secret)) in keys.into_iter().enumerate() {
        let (position, kid, secret) = (index + 1, kid.as_ref(), secret.as_ref());
        let at_key =
            |problem: String| ConfigError::invalid(format!("{}: {problem}", label(position, kid)));
        if !is_kid(kid) {
            return Err(at_key(
                "the kid must be non-empty visible ASCII, without spaces".to_owned(),
            ));
        }
        if let Some((first, _)) = by_kid.get(kid) {
            return Err(at_key(format!(
                "has the same kid as {}",
                label(*first, kid)
            )));
        }
        check_secret(algorithm, secret).map_err(|error| at_key(error.to_string()))?;
        let key = DecodingKey::from_secret(secret)
            .map_err(|_| at_key(format!("the {algorithm} secret is unusable")))?;
        by_kid.insert(kid.into(), (position, key));
    }
    if by_kid.is_empty() {
        return Err(ConfigError::invalid(format!(
            "no {algorithm} key given; secrets by kid need at least one"
        )));
    }
    Ok(DecodingKeys::ByKid(
        by_kid
            .into_iter()
            .map(|(kid, (_, key))| (kid, key))
            .collect(),
    ))
}

/// Splits a `KID:SECRET,KID:SECRET` list (the value of an environment variable) into its
/// entries, each at its first `:` (a secret may hold `:`, a kid may not; neither may hold `,`).
/// Whitespace around entries and fields and empty entries (a trailing comma, line breaks) are
/// ignored. The entries are checked by [`hmac_by_kid`], given [`label_by_position`], which
/// counts them as this function does.
///
/// Errors name an entry by its position among the non-empty ones, never by its text.
pub(crate) fn parse_key_list(value: &str) -> Result<Vec<(&str, &str)>, ConfigError> {
    let entries = value.split(',').map(str::trim).filter(|e| !e.is_empty());
    let mut keys = Vec::new();
    for (index, entry) in entries.enumerate() {
        let Some((kid, secret)) = entry.split_once(':') else {
            return Err(ConfigError::invalid(format!(
                "{}: expected {KEY_ENTRY_FORMAT}",
                label_by_position(index + 1, "")
            )));
        };
        keys.push((kid.trim(), secret.trim()));
    }
    if keys.is_empty() {
        return Err(ConfigError::invalid(format!(
            "holds no key; expected comma-separated {KEY_ENTRY_FORMAT} entries"
        )));
    }
    Ok(keys)
}

/// RFC 7515 lets a `kid` be any string; these come from configuration files and environment
/// variables, where visible ASCII is what survives copying between them intact.
fn is_kid(kid: &str) -> bool {
    !kid.is_empty() && kid.bytes().all(|b| b.is_ascii_graphic())
}
