//! Static API keys, presented as `X-API-Key: <key>` or `Authorization: Bearer <key>`.
//!
//! # Storage
//!
//! Keys are held only as SHA-256 digests: [`ApiKey::new`] hashes the secret at once and drops
//! it, and key files hold nothing but digests. A request's key is hashed, looked up by its
//! digest, compared in constant time with the stored digest, checked for expiry, and answered
//! with a principal that was built when the key was loaded, so the per-request path neither
//! allocates nor parses.
//!
//! # Which credentials are decided here
//!
//! * `X-API-Key` always names an API key: an unknown one is rejected (`Invalid API key`).
//! * A bearer token whose digest is a known key is decided here (accepted, or rejected when the
//!   key has expired). An unknown bearer token shaped like a JWT (`eyJ….….…`) is passed on to
//!   the next authenticator; any other unknown bearer token is rejected.
//! * A request without a credential is passed on.
//!
//! # Environment format
//!
//! [`ApiKeys::from_env`] reads a variable (conventionally `MCP_API_KEYS`) holding a
//! comma-separated list of entries; whitespace around entries and empty entries are ignored:
//!
//! ```text
//! MCP_API_KEYS="k3y-for-the-ci-runner-0001:admin, another-long-random-key-0002"
//! ```
//!
//! Each entry is `KEY` or `KEY:ROLE`. The entry is split at its **last** `:`, and what follows
//! it must be a role name (`[A-Za-z0-9_-]+`), so a key that itself contains `:` must be given
//! a role. Keys must be at least 16 characters of visible ASCII (what an HTTP header can
//! carry). An environment key's id — its subject, and what logs show — is `env-` followed by
//! the first 8 hex digits of its SHA-256 digest. Errors name the entry by its position among
//! the non-empty entries, counted from 1, and never show the key.
//!
//! # File format
//!
//! [`ApiKeys::from_file`] reads UTF-8 text with one key per line. Blank lines are ignored, and
//! so is everything from a field that starts with `#` to the end of the line:
//!
//! ```text
//! # ID        ROLE    DIGEST                                                                    OPTIONS
//! ci-runner   admin   sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
//! reporting   -       sha256:60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752  scopes=read,export subject=reports@example.com expires=2027-01-01T00:00:00Z
//! ```
//!
//! Fields are separated by whitespace: `ID ROLE sha256:HEX [scopes=A,B,C] [subject=NAME]
//! [expires=RFC3339]`.
//!
//! * `ID` names the key in logs and audit records (visible ASCII, unique in the file).
//! * `ROLE` is a role name (`[A-Za-z0-9_-]+`), or `-` for none.
//! * `sha256:HEX` is the SHA-256 digest of the key, 64 hex digits. Files never hold plaintext
//!   keys; compute a digest with `printf %s "$KEY" | sha256sum`.
//! * `scopes=` grants comma-separated scopes; `subject=` names who the key speaks for (the ID
//!   by default); `expires=` is an RFC 3339 timestamp after which the key is refused.
//!
//! Errors name the line number and what was expected.

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    fmt,
    path::Path,
    sync::Arc,
    time::SystemTime,
};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{
    AuthError, AuthErrorKind, AuthRequest, Authentication, Authenticator, Credential,
    CredentialKind, Verdict,
};
use crate::{AuthMethod, ConfigError, Principal};

/// Keys shorter than this are refused when loaded from the environment: short keys can be
/// guessed, and the digest offers no protection against guessing.
const MIN_SECRET_LEN: usize = 16;

/// The prefix that marks a digest in a key file (and, optionally, in
/// [`ApiKey::from_sha256_hex`]).
const DIGEST_PREFIX: &str = "sha256:";

/// The length of a SHA-256 digest written in hex.
const DIGEST_HEX_LEN: usize = 64;

/// The file-format reminder that ends every "what was expected" message about a line.
const LINE_FORMAT: &str = "`ID ROLE sha256:HEX [scopes=A,B] [subject=NAME] [expires=RFC3339]`";

type Sha256Digest = [u8; 32];

/// One API key's configuration: its id, the SHA-256 digest of its secret, and what it grants.
///
/// The secret itself is never stored. `Debug` shows the id, role, scopes and expiry only.
#[derive(Clone)]
#[must_use]
pub struct ApiKey {
    id: String,
    digest: Sha256Digest,
    role: Option<String>,
    scopes: Vec<String>,
    subject: Option<String>,
    expires_at: Option<SystemTime>,
}

/// What another part of the crate reads of a key loaded from a file (the token endpoint's
/// clients file has the key-file format).
#[cfg(feature = "jwt")]
impl ApiKey {
    pub(crate) fn id_str(&self) -> &str {
        &self.id
    }

    pub(crate) fn secret_digest(&self) -> [u8; 32] {
        self.digest
    }

    pub(crate) fn role_name(&self) -> Option<&str> {
        self.role.as_deref()
    }

    pub(crate) fn scope_names(&self) -> &[String] {
        &self.scopes
    }

    /// Whether the key names a subject or an expiry, which token clients cannot honour.
    pub(crate) fn has_subject_or_expiry(&self) -> bool {
        self.subject.is_some() || self.expires_at.is_some()
    }
}

impl ApiKey {
    /// A key with the given id (shown in logs and audit records) and secret. The secret is
    /// hashed at once and not kept.
    ///
    /// No minimum length is enforced here (the environment loader refuses keys shorter than
    /// 16 characters); keys meant for production should be long and random.
    pub fn new(id: impl Into<String>, secret: &str) -> Self {
        Self::with_digest(id.into(), sha256(secret))
    }

    /// A key known only by the SHA-256 digest of its secret: 64 hex digits, optionally
    /// preceded by `sha256:`.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] when the digest is not 64 hex digits; the message never
    /// repeats the input, which might be a secret pasted by mistake.
    pub fn from_sha256_hex(id: impl Into<String>, hex_digest: &str) -> Result<Self, ConfigError> {
        let id = id.into();
        let hex_digest = strip_digest_prefix(hex_digest).unwrap_or(hex_digest);
        let digest = decode_digest(hex_digest)
            .map_err(|problem| ConfigError::invalid(format!("API key `{id}`: {problem}")))?;
        Ok(Self::with_digest(id, digest))
    }

    /// The SHA-256 digest of `secret` in lowercase hex, as key files and
    /// [`ApiKey::from_sha256_hex`] expect it (the same as `printf %s "$KEY" | sha256sum`).
    pub fn digest_hex(secret: &str) -> String {
        hex::encode(sha256(secret))
    }

    /// Grants the role `role` (replacing any role set before).
    pub fn role(mut self, role: impl Into<String>) -> Self {
        self.role = Some(role.into());
        self
    }

    /// Grants scopes, in addition to any granted before.
    pub fn scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes.extend(scopes.into_iter().map(Into::into));
        self
    }

    /// Sets the subject the key speaks for. Defaults to the key id.
    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    /// Makes the key invalid from `at` on.
    pub fn expires_at(mut self, at: SystemTime) -> Self {
        self.expires_at = Some(at);
        self
    }

    /// The key's id: safe to log, never the secret.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn with_digest(id: String, digest: Sha256Digest) -> Self {
        Self {
            id,
            digest,
            role: None,
            scopes: Vec::new(),
            subject: None,
            expires_at: None,
        }
    }

    fn is_expired_at(&self, now: SystemTime) -> bool {
        self.expires_at.is_some_and(|at| now >= at)
    }

    /// The principal every request with this key gets, built once at load time.
    fn principal(&self, default_role: Option<&str>) -> Principal {
        let subject = self.subject.as_deref().unwrap_or(&self.id);
        let mut builder = Principal::builder(AuthMethod::ApiKey, subject)
            .scopes(self.scopes.iter().map(String::as_str))
            .credential_id(self.id.as_str());
        if let Some(role) = self.role.as_deref().or(default_role) {
            builder = builder.role(role);
        }
        if let Some(at) = self.expires_at {
            builder = builder.expires_at(at);
        }
        builder.build()
    }
}

impl fmt::Debug for ApiKey {
    // Written by hand so that neither the digest nor anything derived from the secret is
    // ever printed: a digest of a short key is as good as the key to an attacker.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKey")
            .field("id", &self.id)
            .field("role", &self.role)
            .field("scopes", &self.scopes)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// A loaded key and the principal it authenticates as.
struct Entry {
    key: ApiKey,
    principal: Arc<Principal>,
}

impl Entry {
    fn new(key: ApiKey, default_role: Option<&str>) -> Self {
        let principal = Arc::new(key.principal(default_role));
        Self { key, principal }
    }

    fn verdict(&self, now: SystemTime) -> Verdict {
        if self.key.is_expired_at(now) {
            let error = AuthError::new(AuthErrorKind::Expired, "API key expired")
                .with_credential_id(self.key.id.as_str());
            return Verdict::Reject(error);
        }
        Verdict::Accept(Arc::clone(&self.principal))
    }
}

/// Why a key could not be added: it repeats a key already loaded.
enum Duplicate {
    /// The same secret as the key with this id.
    Secret(String),
    /// A different secret under an id already used.
    Id,
}

/// An [`Authenticator`] for static API keys, presented as `X-API-Key: <key>` or
/// `Authorization: Bearer <key>`.
///
/// Keys are held only as SHA-256 digests. A key from `X-API-Key` is always decided here (an
/// unknown one is rejected). A bearer token is decided here when it is a known key; an unknown
/// one is passed on to the next authenticator when it is shaped like a JWT, and rejected
/// otherwise. A request without a credential is passed on. An expired key is rejected with its
/// id recorded for the audit log.
///
/// Keys come from code ([`ApiKeys::with_key`]), from an environment variable
/// ([`ApiKeys::from_env`]) or from a file of digests ([`ApiKeys::from_file`]); each of those
/// describes its format.
#[must_use]
#[derive(Default)]
pub struct ApiKeys {
    entries: HashMap<Sha256Digest, Entry>,
    ids: HashSet<String>,
    default_role: Option<String>,
}

impl ApiKeys {
    /// The environment variable API keys are conventionally read from.
    pub const DEFAULT_ENV_VAR: &'static str = "MCP_API_KEYS";

    /// An empty key set: it rejects every `X-API-Key` and every bearer token that is not a JWT.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a key.
    ///
    /// # Panics
    ///
    /// When the key repeats the secret or the id of a key already added. Use
    /// [`ApiKeys::try_with_key`] for keys that come from configuration rather than code.
    pub fn with_key(self, key: ApiKey) -> Self {
        match self.try_with_key(key) {
            Ok(keys) => keys,
            Err(error) => panic!("{error}"),
        }
    }

    /// Adds a key, refusing one that repeats the secret or the id of a key already added.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] naming the ids involved (never the secret).
    pub fn try_with_key(mut self, key: ApiKey) -> Result<Self, ConfigError> {
        let id = key.id.clone();
        match self.insert(key) {
            Ok(()) => Ok(self),
            Err(Duplicate::Secret(other)) => Err(ConfigError::invalid(format!(
                "API key `{id}` has the same secret as API key `{other}`"
            ))),
            Err(Duplicate::Id) => Err(ConfigError::invalid(format!(
                "two API keys have the id `{id}`"
            ))),
        }
    }

    /// Grants `role` to every key that has no role of its own (an environment entry without
    /// `:ROLE`, a file line with `-`, an [`ApiKey`] built without [`ApiKey::role`]), whether
    /// it was added before or after this call.
    pub fn default_role(mut self, role: impl Into<String>) -> Self {
        let role = role.into();
        for entry in self.entries.values_mut() {
            if entry.key.role.is_none() {
                entry.principal = Arc::new(entry.key.principal(Some(&role)));
            }
        }
        self.default_role = Some(role);
        self
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there is no key.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Checks `key` as a request presenting it is checked (one hash, one lookup, a
    /// constant-time comparison, the expiry), without HTTP: for keys that arrive some other
    /// way. The principal is the one built when the key was loaded.
    ///
    /// # Errors
    /// "Invalid API key" for a key that is not one of these, "API key expired" (with the key's
    /// id) for one past its expiry.
    pub fn verify(&self, key: &str) -> Result<Principal, AuthError> {
        match self.decide(Some(Credential::ApiKey(key))) {
            Verdict::Accept(principal) => Ok(Principal::clone(&principal)),
            Verdict::Reject(error) => Err(error),
            // An `X-API-Key` credential is never passed on; should that change, fail closed.
            Verdict::Pass => Err(AuthError::invalid_token()),
        }
    }

    /// Loads keys from the environment variable `var` (usually
    /// [`ApiKeys::DEFAULT_ENV_VAR`], `MCP_API_KEYS`).
    ///
    /// The value is a comma-separated list of `KEY` or `KEY:ROLE` entries; whitespace around
    /// entries and empty entries are ignored; the entry is split at its last `:`, and what
    /// follows must be a role name (`[A-Za-z0-9_-]+`). Keys must be at least 16 characters of
    /// visible ASCII. Each key's id (and subject) is `env-` plus the first 8 hex digits of
    /// its SHA-256 digest.
    ///
    /// # Errors
    ///
    /// [`ConfigError::MissingEnv`] when `var` is not set; [`ConfigError::Invalid`] when it is
    /// not UTF-8, holds no key, or an entry is malformed, too short, or repeated (the message
    /// names the entry by position, never by its key).
    pub fn from_env(var: &str) -> Result<Self, ConfigError> {
        let value = crate::error::env_var(var)?;
        let keys = Self::parse_env_list(&value, var)?;
        // A variable that is set but empty is almost always a deployment template that failed
        // to fill it in; starting anyway would lock every key holder out without a word.
        if keys.is_empty() {
            return Err(ConfigError::invalid(format!(
                "environment variable `{var}` is set but holds no API key"
            )));
        }
        Ok(keys)
    }

    /// Parses the value of an API key environment variable; see [`ApiKeys::from_env`] for the
    /// format. Unlike `from_env`, a value without any entry gives an empty key set.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] when an entry is malformed, too short, or repeated.
    pub fn parse_env_value(value: &str) -> Result<Self, ConfigError> {
        Self::parse_env_list(value, "the API key list")
    }

    /// Loads keys from a key file.
    ///
    /// The file is UTF-8 text with one key per line; blank lines are ignored, and so is
    /// everything from a field starting with `#` to the end of its line. A line is
    /// whitespace-separated fields:
    ///
    /// ```text
    /// ID ROLE sha256:HEX [scopes=A,B,C] [subject=NAME] [expires=RFC3339]
    /// ```
    ///
    /// * `ID` names the key in logs and audit records (visible ASCII, unique in the file).
    /// * `ROLE` is a role name (`[A-Za-z0-9_-]+`), or `-` for none.
    /// * `sha256:HEX` is the SHA-256 digest of the key as 64 hex digits. Plaintext keys are
    ///   refused: compute the digest with `printf %s "$KEY" | sha256sum` (or
    ///   [`ApiKey::digest_hex`]).
    /// * `scopes=` grants comma-separated scopes; `subject=` names who the key speaks for (the
    ///   ID by default); `expires=` is an RFC 3339 timestamp from which the key is refused.
    ///
    /// For example:
    ///
    /// ```text
    /// # ID       ROLE   DIGEST                                                                   OPTIONS
    /// ci-runner  admin  sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
    /// reporting  -      sha256:60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752  scopes=read,export expires=2027-01-01T00:00:00Z
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError::Io`] when the file cannot be read (or is not UTF-8);
    /// [`ConfigError::Invalid`] naming the file, the line and what was expected.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse_file(&text).map_err(|error| match error {
            ConfigError::Invalid(message) => {
                ConfigError::invalid(format!("{}: {message}", path.display()))
            }
            other => other,
        })
    }

    /// Parses the text of a key file; see [`ApiKeys::from_file`].
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] naming the line and what was expected.
    pub fn parse_file(text: &str) -> Result<Self, ConfigError> {
        // Editors on some platforms start UTF-8 files with a byte-order mark.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut keys = Self::new();
        let mut lines_by_id: HashMap<String, usize> = HashMap::new();
        for (index, line) in text.lines().enumerate() {
            let number = index + 1;
            let at_line =
                |problem: String| ConfigError::invalid(format!("line {number}: {problem}"));
            let Some(key) = parse_line(line).map_err(at_line)? else {
                continue;
            };
            let id = key.id.clone();
            if let Err(duplicate) = keys.insert(key) {
                return Err(at_line(duplicate_line(&duplicate, &id, &lines_by_id)));
            }
            lines_by_id.insert(id, number);
        }
        Ok(keys)
    }

    /// Parses a comma-separated key list; `source` names it in error messages.
    fn parse_env_list(value: &str, source: &str) -> Result<Self, ConfigError> {
        let mut keys = Self::new();
        let mut entries_by_id: HashMap<String, usize> = HashMap::new();
        let entries = value.split(',').map(str::trim).filter(|e| !e.is_empty());
        for (index, entry) in entries.enumerate() {
            let number = index + 1;
            let at_entry = |problem: String| {
                ConfigError::invalid(format!("entry {number} of {source} {problem}"))
            };
            let key = parse_env_entry(entry).map_err(at_entry)?;
            let id = key.id.clone();
            if let Err(duplicate) = keys.insert(key) {
                return Err(at_entry(duplicate_entry(&duplicate, &id, &entries_by_id)));
            }
            entries_by_id.insert(id, number);
        }
        Ok(keys)
    }

    fn insert(&mut self, key: ApiKey) -> Result<(), Duplicate> {
        if let Some(existing) = self.entries.get(&key.digest) {
            return Err(Duplicate::Secret(existing.key.id.clone()));
        }
        if self.ids.contains(&key.id) {
            return Err(Duplicate::Id);
        }
        self.ids.insert(key.id.clone());
        let entry = Entry::new(key, self.default_role.as_deref());
        self.entries.insert(entry.key.digest, entry);
        Ok(())
    }

    /// Every key, in no particular order.
    #[cfg(feature = "jwt")]
    pub(crate) fn keys(&self) -> impl Iterator<Item = &ApiKey> {
        self.entries.values().map(|entry| &entry.key)
    }

    /// Finds the key whose secret is `secret`.
    fn lookup(&self, secret: &str) -> Option<&Entry> {
        let digest = sha256(secret);
        let entry = self.entries.get(&digest)?;
        // The map compares digests with ordinary equality, which leaks nothing useful (timing
        // only tells an attacker about the digest of their own guess). Acceptance itself still
        // rests on a constant-time comparison, so it never depends on how `==` is compiled.
        bool::from(entry.key.digest[..].ct_eq(&digest[..])).then_some(entry)
    }

    /// The verdict about one credential.
    fn decide(&self, credential: Option<Credential<'_>>) -> Verdict {
        let Some(credential) = credential else {
            return Verdict::Pass;
        };
        if let Some(entry) = self.lookup(credential.secret()) {
            return entry.verdict(SystemTime::now());
        }
        match credential {
            // An unknown bearer token shaped like a JWT belongs to a token authenticator.
            Credential::Bearer(_) if credential.looks_like_jwt() => Verdict::Pass,
            // Anything else is an API key: passing it on would let a typo in a key reach a
            // scheme that might treat it more leniently.
            Credential::Bearer(_) | Credential::ApiKey(_) => Verdict::Reject(AuthError::new(
                AuthErrorKind::InvalidToken,
                "Invalid API key",
            )),
        }
    }
}

impl Authenticator for ApiKeys {
    fn name(&self) -> &'static str {
        "api_key"
    }

    fn authenticate<'a>(&'a self, request: &'a AuthRequest<'a>) -> Authentication<'a> {
        Authentication::Ready(self.decide(request.credential))
    }

    fn configured_roles(&self) -> Vec<String> {
        let roles: BTreeSet<&str> = self
            .entries
            .values()
            .flat_map(|entry| entry.principal.roles())
            .collect();
        roles.into_iter().map(str::to_owned).collect()
    }

    /// Keys are sent as `X-API-Key` or, by clients that only set `Authorization`, as a bearer
    /// token (see [`ApiKeys`]).
    fn accepted_credentials(&self) -> &'static [CredentialKind] {
        &[CredentialKind::ApiKey, CredentialKind::Bearer]
    }
}

impl fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Sorted by id so the output is stable; each key prints without its digest.
        let mut keys: Vec<&ApiKey> = self.entries.values().map(|entry| &entry.key).collect();
        keys.sort_unstable_by(|a, b| a.id.cmp(&b.id));
        f.debug_struct("ApiKeys")
            .field("keys", &keys)
            .field("default_role", &self.default_role)
            .finish()
    }
}

fn sha256(secret: &str) -> Sha256Digest {
    Sha256::digest(secret.as_bytes()).into()
}

fn is_role_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Whether `s` could be sent in an HTTP header as a key or shown safely in a log.
fn is_visible_ascii(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_graphic())
}

/// The hex part of `field` if it starts with `sha256:` (in any letter case).
fn strip_digest_prefix(field: &str) -> Option<&str> {
    let (prefix, hex_digest) = field.split_at_checked(DIGEST_PREFIX.len())?;
    prefix
        .eq_ignore_ascii_case(DIGEST_PREFIX)
        .then_some(hex_digest)
}

/// Decodes 64 hex digits; the error describes the problem without repeating the input.
fn decode_digest(hex_digest: &str) -> Result<Sha256Digest, String> {
    let length = hex_digest.chars().count();
    if length != DIGEST_HEX_LEN {
        return Err(format!(
            "a SHA-256 digest is {DIGEST_HEX_LEN} hex digits, found {length} characters"
        ));
    }
    let mut digest = [0u8; 32];
    hex::decode_to_slice(hex_digest, &mut digest)
        .map_err(|_| "the SHA-256 digest contains characters that are not hex digits".to_owned())?;
    Ok(digest)
}

/// Parses one `KEY` or `KEY:ROLE` entry. Errors complete "entry N of VAR ...".
fn parse_env_entry(entry: &str) -> Result<ApiKey, String> {
    let (secret, role) = match entry.rsplit_once(':') {
        Some((secret, role)) => (secret.trim(), Some(role.trim())),
        None => (entry, None),
    };
    // The suffix is never printed: if the entry was meant as a bare key containing ':', the
    // suffix is part of the secret.
    if role.is_some_and(|role| !is_role_name(role)) {
        return Err(
            "has text after its last ':' that is not a role name (letters, digits, \
                    '_' and '-'); write KEY or KEY:ROLE, and give a key that contains ':' a role"
                .to_owned(),
        );
    }
    if secret.chars().count() < MIN_SECRET_LEN {
        return Err(format!("is shorter than {MIN_SECRET_LEN} characters"));
    }
    if !is_visible_ascii(secret) {
        return Err(
            "contains characters an HTTP header cannot carry (only visible ASCII \
                    without spaces is allowed)"
                .to_owned(),
        );
    }
    let digest = sha256(secret);
    let id = format!("env-{}", hex::encode(&digest[..4]));
    let key = ApiKey::with_digest(id, digest);
    Ok(match role {
        Some(role) => key.role(role),
        None => key,
    })
}

fn duplicate_entry(
    duplicate: &Duplicate,
    id: &str,
    entries_by_id: &HashMap<String, usize>,
) -> String {
    match duplicate {
        Duplicate::Secret(other) => match entries_by_id.get(other) {
            Some(first) => format!("is the same key as entry {first}"),
            None => "repeats a key".to_owned(),
        },
        // Two different keys whose digests share their first 32 bits: astronomically rare,
        // but the ids must stay unique for the audit log to mean anything.
        Duplicate::Id => {
            format!("has the same key id `{id}` as another entry; replace one of the two keys")
        }
    }
}

fn duplicate_line(duplicate: &Duplicate, id: &str, lines_by_id: &HashMap<String, usize>) -> String {
    let line_of = |id: &str| {
        lines_by_id.get(id).map_or_else(
            || "an earlier line".to_owned(),
            |line| format!("line {line}"),
        )
    };
    match duplicate {
        Duplicate::Secret(other) => {
            format!(
                "key `{id}` has the same digest as key `{other}` on {}",
                line_of(other)
            )
        }
        Duplicate::Id => format!("key id `{id}` is already used on {}", line_of(id)),
    }
}

/// Parses one line of a key file: `None` for a blank or comment line. Errors complete
/// "line N: ...".
fn parse_line(line: &str) -> Result<Option<ApiKey>, String> {
    let mut fields = line
        .split_whitespace()
        .take_while(|field| !field.starts_with('#'));
    let Some(id) = fields.next() else {
        return Ok(None);
    };
    if !is_visible_ascii(id) {
        return Err("the key id must be visible ASCII".to_owned());
    }
    let role = fields.next().ok_or_else(|| {
        format!("expected a ROLE (or `-`) after the key id; the format is {LINE_FORMAT}")
    })?;
    let digest = fields.next().ok_or_else(|| {
        format!("expected `sha256:HEX` after the role; the format is {LINE_FORMAT}")
    })?;
    let mut key = ApiKey::with_digest(id.to_owned(), parse_file_digest(digest)?);
    if role != "-" {
        if !is_role_name(role) {
            return Err(format!(
                "`{role}` is not a role name (letters, digits, '_' and '-'; `-` for none)"
            ));
        }
        key = key.role(role);
    }
    for (index, option) in fields.enumerate() {
        key = apply_option(key, option, index + 4)?;
    }
    Ok(Some(key))
}

/// Parses the third field of a line, refusing anything that is not a `sha256:` digest.
fn parse_file_digest(field: &str) -> Result<Sha256Digest, String> {
    let Some(hex_digest) = strip_digest_prefix(field) else {
        // The field is most likely a plaintext key: say what to do, never repeat it.
        return Err(format!(
            "the third field must be a digest written `sha256:<{DIGEST_HEX_LEN} hex digits>`; \
             key files never hold plaintext keys, so store the key's SHA-256 digest instead, \
             computed with `printf %s \"$KEY\" | sha256sum`"
        ));
    };
    decode_digest(hex_digest).map_err(|problem| format!("{problem} after `sha256:`"))
}

/// Applies one `NAME=VALUE` option (field number `position`) to `key`.
fn apply_option(key: ApiKey, option: &str, position: usize) -> Result<ApiKey, String> {
    let Some((name, value)) = option.split_once('=') else {
        return Err(format!(
            "field {position} is not an option; expected `scopes=`, `subject=` or `expires=` \
             (the format is {LINE_FORMAT})"
        ));
    };
    match name {
        "scopes" if !key.scopes.is_empty() => Err(repeated("scopes")),
        "scopes" => parse_scopes(value).map(|scopes| key.scopes(scopes)),
        "subject" if key.subject.is_some() => Err(repeated("subject")),
        "subject" if value.is_empty() => Err("`subject=` needs a name".to_owned()),
        "subject" => Ok(key.subject(value)),
        "expires" if key.expires_at.is_some() => Err(repeated("expires")),
        "expires" => parse_expiry(value).map(|at| key.expires_at(at)),
        _ => Err(format!(
            "unknown option `{name}=`; expected `scopes=`, `subject=` or `expires=`"
        )),
    }
}

fn repeated(option: &str) -> String {
    format!("the option `{option}=` is given twice")
}

fn parse_scopes(value: &str) -> Result<Vec<&str>, String> {
    let scopes: Vec<&str> = value.split(',').collect();
    if scopes.iter().any(|scope| scope.is_empty()) {
        return Err(
            "`scopes=` needs a comma-separated list of scopes, without empty items".to_owned(),
        );
    }
    Ok(scopes)
}

fn parse_expiry(value: &str) -> Result<SystemTime, String> {
    chrono::DateTime::parse_from_rfc3339(value)
        .map(SystemTime::from)
        .map_err(|error| {
            format!(
                "`expires=` must be an RFC 3339 timestamp such as `2027-01-01T00:00:00Z` ({error})"
            )
        })
}

#[cfg(test)]
mod tests;

mod file;
pub use file::ApiKeyFile;
