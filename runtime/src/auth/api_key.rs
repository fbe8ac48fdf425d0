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
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    const SECRET: &str = "k3y-for-the-ci-runner-0001";
    const OTHER: &str = "another-long-random-key-0002";
    const JWT: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln";

    fn parts() -> http::request::Parts {
        http::Request::builder().body(()).unwrap().into_parts().0
    }

    fn verdict(keys: &ApiKeys, credential: Option<Credential<'_>>) -> Verdict {
        let parts = parts();
        let request = AuthRequest {
            credential,
            parts: &parts,
        };
        match keys.authenticate(&request) {
            Authentication::Ready(verdict) => verdict,
            Authentication::Pending(_) => panic!("API keys must decide synchronously"),
        }
    }

    fn accepted(verdict: Verdict) -> Arc<Principal> {
        match verdict {
            Verdict::Accept(principal) => principal,
            other => panic!("expected Accept, got {other:?}"),
        }
    }

    fn rejected(verdict: Verdict) -> AuthError {
        match verdict {
            Verdict::Reject(error) => error,
            other => panic!("expected Reject, got {other:?}"),
        }
    }

    fn invalid_message(result: Result<ApiKeys, ConfigError>) -> String {
        match result {
            Err(ConfigError::Invalid(message)) => message,
            Err(other) => panic!("expected ConfigError::Invalid, got {other:?}"),
            Ok(keys) => panic!("expected an error, got {keys:?}"),
        }
    }

    fn env_id(secret: &str) -> String {
        format!("env-{}", &ApiKey::digest_hex(secret)[..8])
    }

    fn file_line(id: &str, role: &str, secret: &str, options: &str) -> String {
        format!(
            "{id} {role} sha256:{} {options}\n",
            ApiKey::digest_hex(secret)
        )
    }

    fn roles(principal: &Principal) -> Vec<&str> {
        principal.roles().collect()
    }

    // --- ApiKey -----------------------------------------------------------------------------

    #[test]
    fn digest_hex_matches_sha256sum() {
        // printf %s test | sha256sum
        assert_eq!(
            ApiKey::digest_hex("test"),
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        );
    }

    #[test]
    fn from_sha256_hex_accepts_bare_and_prefixed_digests() {
        let hex_digest = ApiKey::digest_hex(SECRET);
        for written in [
            hex_digest.clone(),
            format!("sha256:{hex_digest}"),
            hex_digest.to_uppercase(),
        ] {
            let keys = ApiKeys::new().with_key(ApiKey::from_sha256_hex("ci", &written).unwrap());
            let principal = accepted(verdict(&keys, Some(Credential::ApiKey(SECRET))));
            assert_eq!(principal.credential_id(), Some("ci"));
        }
    }

    #[test]
    fn from_sha256_hex_refuses_bad_digests_without_echoing_them() {
        for bad in ["abc", &"g".repeat(64), SECRET, ""] {
            let error = ApiKey::from_sha256_hex("ci", bad).unwrap_err();
            let message = error.to_string();
            assert!(message.contains("`ci`"), "{message}");
            if !bad.is_empty() {
                assert!(!message.contains(bad), "{message}");
            }
        }
    }

    #[test]
    fn debug_shows_neither_secret_nor_digest() {
        let key = ApiKey::new("ci", SECRET)
            .role("admin")
            .scopes(["read"])
            .expires_at(UNIX_EPOCH + Duration::from_secs(4_000_000_000));
        let digest = sha256(SECRET);
        let hex_digest = ApiKey::digest_hex(SECRET);
        let keys = ApiKeys::new().with_key(key.clone());
        for shown in [
            format!("{key:?}"),
            format!("{keys:?}"),
            format!("{keys:#?}"),
        ] {
            assert!(!shown.contains(SECRET), "{shown}");
            assert!(!shown.contains(&hex_digest), "{shown}");
            assert!(!shown.contains(&hex_digest[..16]), "{shown}");
            assert!(!shown.contains(&format!("{digest:?}")), "{shown}");
            assert!(shown.contains("ci") && shown.contains("admin") && shown.contains("read"));
        }
    }

    // --- Authentication ---------------------------------------------------------------------

    #[test]
    fn known_key_is_accepted_from_either_header() {
        let keys =
            ApiKeys::new().with_key(ApiKey::new("ci", SECRET).role("admin").scopes(["b", "a"]));
        for credential in [Credential::ApiKey(SECRET), Credential::Bearer(SECRET)] {
            let principal = accepted(verdict(&keys, Some(credential)));
            assert_eq!(principal.method(), AuthMethod::ApiKey);
            assert_eq!(principal.subject(), "ci");
            assert_eq!(principal.credential_id(), Some("ci"));
            assert_eq!(roles(&principal), ["admin"]);
            assert_eq!(principal.scopes().collect::<Vec<_>>(), ["a", "b"]);
            assert_eq!(principal.expires_at(), None);
        }
    }

    #[test]
    fn accepted_principal_is_shared_not_rebuilt() {
        let keys = ApiKeys::new().with_key(ApiKey::new("ci", SECRET));
        let first = accepted(verdict(&keys, Some(Credential::ApiKey(SECRET))));
        let second = accepted(verdict(&keys, Some(Credential::Bearer(SECRET))));
        assert!(Arc::ptr_eq(&first, &second));
    }

    #[test]
    fn subject_and_expiry_reach_the_principal() {
        let later = SystemTime::now() + Duration::from_secs(3600);
        let keys = ApiKeys::new().with_key(
            ApiKey::new("ci", SECRET)
                .subject("svc@example.com")
                .expires_at(later),
        );
        let principal = accepted(verdict(&keys, Some(Credential::ApiKey(SECRET))));
        assert_eq!(principal.subject(), "svc@example.com");
        assert_eq!(principal.credential_id(), Some("ci"));
        assert_eq!(principal.expires_at(), Some(later));
    }

    #[test]
    fn unknown_x_api_key_is_rejected_even_when_jwt_shaped() {
        let keys = ApiKeys::new().with_key(ApiKey::new("ci", SECRET));
        for secret in [OTHER, JWT] {
            let error = rejected(verdict(&keys, Some(Credential::ApiKey(secret))));
            assert_eq!(error.kind(), AuthErrorKind::InvalidToken);
            assert_eq!(error.description(), "Invalid API key");
            assert_eq!(error.credential_id(), None);
        }
    }

    #[test]
    fn unknown_bearer_is_rejected_unless_jwt_shaped() {
        let keys = ApiKeys::new().with_key(ApiKey::new("ci", SECRET));
        let error = rejected(verdict(&keys, Some(Credential::Bearer(OTHER))));
        assert_eq!(error.kind(), AuthErrorKind::InvalidToken);
        assert_eq!(error.description(), "Invalid API key");
        assert!(matches!(
            verdict(&keys, Some(Credential::Bearer(JWT))),
            Verdict::Pass
        ));
    }

    #[test]
    fn jwt_shaped_bearer_that_is_a_known_key_is_decided_here() {
        let keys = ApiKeys::new().with_key(ApiKey::new("odd", JWT));
        let principal = accepted(verdict(&keys, Some(Credential::Bearer(JWT))));
        assert_eq!(principal.credential_id(), Some("odd"));
    }

    #[test]
    fn no_credential_passes() {
        let keys = ApiKeys::new().with_key(ApiKey::new("ci", SECRET));
        assert!(matches!(verdict(&keys, None), Verdict::Pass));
        assert!(matches!(verdict(&ApiKeys::new(), None), Verdict::Pass));
    }

    #[test]
    fn expired_key_is_rejected_with_its_id() {
        let past = UNIX_EPOCH + Duration::from_secs(1);
        let keys = ApiKeys::new().with_key(ApiKey::new("old", SECRET).expires_at(past));
        for credential in [Credential::ApiKey(SECRET), Credential::Bearer(SECRET)] {
            let error = rejected(verdict(&keys, Some(credential)));
            assert_eq!(error.kind(), AuthErrorKind::Expired);
            assert_eq!(error.description(), "API key expired");
            assert_eq!(error.credential_id(), Some("old"));
        }
    }

    #[test]
    fn name_and_configured_roles() {
        let keys = ApiKeys::new()
            .with_key(ApiKey::new("a", SECRET).role("writer"))
            .with_key(ApiKey::new("b", OTHER).role("admin"))
            .with_key(ApiKey::new("c", "third-key-long-enough").role("admin"));
        assert_eq!(keys.name(), "api_key");
        assert_eq!(keys.configured_roles(), ["admin", "writer"]);
        assert!(ApiKeys::new().configured_roles().is_empty());
    }

    #[test]
    fn default_role_applies_only_to_keys_without_a_role_whenever_added() {
        let keys = ApiKeys::new()
            .with_key(ApiKey::new("before", SECRET))
            .with_key(ApiKey::new("admin", OTHER).role("admin"))
            .default_role("reader")
            .with_key(ApiKey::new("after", "third-key-long-enough"));
        for (secret, role) in [
            (SECRET, "reader"),
            (OTHER, "admin"),
            ("third-key-long-enough", "reader"),
        ] {
            let principal = accepted(verdict(&keys, Some(Credential::ApiKey(secret))));
            assert_eq!(roles(&principal), [role]);
        }
        assert_eq!(keys.configured_roles(), ["admin", "reader"]);
    }

    #[test]
    fn duplicates_are_refused() {
        let error = ApiKeys::new()
            .with_key(ApiKey::new("a", SECRET))
            .try_with_key(ApiKey::new("b", SECRET))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("`a`") && error.contains("`b`") && !error.contains(SECRET),
            "{error}"
        );
        let error = ApiKeys::new()
            .with_key(ApiKey::new("a", SECRET))
            .try_with_key(ApiKey::new("a", OTHER))
            .unwrap_err()
            .to_string();
        assert!(error.contains("`a`"), "{error}");
    }

    #[test]
    #[should_panic(expected = "same secret")]
    fn with_key_panics_on_duplicates() {
        let _ = ApiKeys::new()
            .with_key(ApiKey::new("a", SECRET))
            .with_key(ApiKey::new("b", SECRET));
    }

    #[test]
    fn len_and_is_empty() {
        assert!(ApiKeys::new().is_empty());
        let keys = ApiKeys::new().with_key(ApiKey::new("a", SECRET));
        assert_eq!((keys.len(), keys.is_empty()), (1, false));
    }

    // --- Environment format -----------------------------------------------------------------

    #[test]
    fn env_entries_with_and_without_role() {
        let keys = ApiKeys::parse_env_value(&format!("{SECRET}:admin,{OTHER}")).unwrap();
        assert_eq!(keys.len(), 2);
        let admin = accepted(verdict(&keys, Some(Credential::ApiKey(SECRET))));
        assert_eq!(roles(&admin), ["admin"]);
        assert_eq!(admin.credential_id(), Some(env_id(SECRET).as_str()));
        assert_eq!(admin.subject(), env_id(SECRET));
        let plain = accepted(verdict(&keys, Some(Credential::Bearer(OTHER))));
        assert!(roles(&plain).is_empty());
        assert_eq!(keys.configured_roles(), ["admin"]);
    }

    #[test]
    fn env_whitespace_and_empty_entries_are_ignored() {
        let value = format!(" , {SECRET}:admin ,\n\t{OTHER} ,, ");
        let keys = ApiKeys::parse_env_value(&value).unwrap();
        assert_eq!(keys.len(), 2);
        accepted(verdict(&keys, Some(Credential::ApiKey(SECRET))));
        accepted(verdict(&keys, Some(Credential::ApiKey(OTHER))));
        assert!(ApiKeys::parse_env_value("").unwrap().is_empty());
        assert!(ApiKeys::parse_env_value(" , ").unwrap().is_empty());
    }

    #[test]
    fn env_key_containing_colon_needs_a_role() {
        let keys = ApiKeys::parse_env_value("prefix:with-a-colon-inside:reader").unwrap();
        let principal = accepted(verdict(
            &keys,
            Some(Credential::ApiKey("prefix:with-a-colon-inside")),
        ));
        assert_eq!(roles(&principal), ["reader"]);
    }

    #[test]
    fn env_invalid_role_suffix_is_refused_without_echoing() {
        for entry in [
            "long-enough-secret-123:not a role",
            "long-enough-secret-123:",
            "long-enough-secret:x!y",
        ] {
            let message = invalid_message(ApiKeys::parse_env_value(&format!("{SECRET},{entry}")));
            assert!(message.starts_with("entry 2 of "), "{message}");
            assert!(message.contains("role name"), "{message}");
            assert!(!message.contains("long-enough-secret"), "{message}");
            assert!(!message.contains("x!y"), "{message}");
        }
    }

    #[test]
    fn env_short_secret_is_refused_without_echoing() {
        let message = invalid_message(ApiKeys::parse_env_value(&format!(
            "{SECRET}, short-key:admin"
        )));
        assert_eq!(
            message,
            "entry 2 of the API key list is shorter than 16 characters"
        );
        let message = invalid_message(ApiKeys::parse_env_list("fifteen-chars-x", "MCP_API_KEYS"));
        assert_eq!(
            message,
            "entry 1 of MCP_API_KEYS is shorter than 16 characters"
        );
        // Exactly 16 characters is enough.
        assert_eq!(
            ApiKeys::parse_env_value("sixteen-chars-xx").unwrap().len(),
            1
        );
    }

    #[test]
    fn env_secret_must_be_sendable_in_a_header() {
        let message = invalid_message(ApiKeys::parse_env_value("a key with spaces inside"));
        assert!(
            message.starts_with("entry 1 of") && message.contains("visible ASCII"),
            "{message}"
        );
        assert!(!message.contains("spaces inside"), "{message}");
        let message = invalid_message(ApiKeys::parse_env_value("schlüssel-mit-umlaut-123"));
        assert!(message.contains("visible ASCII"), "{message}");
    }

    #[test]
    fn env_duplicates_are_refused() {
        let value = format!("{SECRET}:admin, {OTHER}, {SECRET}:reader");
        let message = invalid_message(ApiKeys::parse_env_value(&value));
        assert_eq!(
            message,
            "entry 3 of the API key list is the same key as entry 1"
        );
    }

    #[test]
    fn env_default_role_applies_to_entries_without_role() {
        let keys = ApiKeys::parse_env_value(&format!("{SECRET}:admin,{OTHER}"))
            .unwrap()
            .default_role("reader");
        let plain = accepted(verdict(&keys, Some(Credential::ApiKey(OTHER))));
        assert_eq!(roles(&plain), ["reader"]);
        assert_eq!(keys.configured_roles(), ["admin", "reader"]);
    }

    #[test]
    fn from_env_unset_is_missing_env() {
        let var = "MCP_GATEKEEPER_API_KEY_TEST_VARIABLE_THAT_IS_NEVER_SET";
        match ApiKeys::from_env(var) {
            Err(ConfigError::MissingEnv(name)) => assert_eq!(name, var),
            other => panic!("expected MissingEnv, got {other:?}"),
        }
    }

    // --- File format ------------------------------------------------------------------------

    #[test]
    fn file_with_comments_blank_lines_and_all_options() {
        let text = format!(
            "\u{feff}# API keys\n\n   \n{}{}{}",
            file_line("ci", "admin", SECRET, "# trailing comment"),
            file_line(
                "reports",
                "-",
                OTHER,
                "scopes=read,export subject=reports@example.com expires=2999-01-01T00:00:00+01:00"
            ),
            "\t# indented comment\r\n",
        );
        let keys = ApiKeys::parse_file(&text).unwrap();
        assert_eq!(keys.len(), 2);
        let ci = accepted(verdict(&keys, Some(Credential::ApiKey(SECRET))));
        assert_eq!((ci.subject(), ci.credential_id()), ("ci", Some("ci")));
        assert_eq!(roles(&ci), ["admin"]);
        let reports = accepted(verdict(&keys, Some(Credential::Bearer(OTHER))));
        assert_eq!(reports.subject(), "reports@example.com");
        assert_eq!(reports.credential_id(), Some("reports"));
        assert!(roles(&reports).is_empty());
        assert_eq!(reports.scopes().collect::<Vec<_>>(), ["export", "read"]);
        let expected = chrono::DateTime::parse_from_rfc3339("2998-12-31T23:00:00Z").unwrap();
        assert_eq!(reports.expires_at(), Some(SystemTime::from(expected)));
        assert_eq!(keys.configured_roles(), ["admin"]);
    }

    #[test]
    fn file_expired_key_is_loaded_and_rejected() {
        let text = file_line("old", "admin", SECRET, "expires=2000-01-01T00:00:00Z");
        let keys = ApiKeys::parse_file(&text).unwrap();
        let error = rejected(verdict(&keys, Some(Credential::ApiKey(SECRET))));
        assert_eq!(error.kind(), AuthErrorKind::Expired);
        assert_eq!(error.credential_id(), Some("old"));
    }

    #[test]
    fn file_default_role_fills_dash_roles() {
        let text = file_line("ci", "-", SECRET, "");
        let keys = ApiKeys::parse_file(&text).unwrap().default_role("reader");
        assert_eq!(keys.configured_roles(), ["reader"]);
    }

    #[test]
    fn empty_file_gives_no_keys() {
        assert!(ApiKeys::parse_file("# nothing yet\n\n").unwrap().is_empty());
    }

    fn file_error(text: &str) -> String {
        invalid_message(ApiKeys::parse_file(text))
    }

    #[test]
    fn file_missing_fields_say_what_was_expected() {
        let message = file_error("# header\nci\n");
        assert!(message.starts_with("line 2: expected a ROLE"), "{message}");
        assert!(message.contains("sha256:HEX"), "{message}");
        let message = file_error("ci admin\n");
        assert!(
            message.starts_with("line 1: expected `sha256:HEX`"),
            "{message}"
        );
    }

    #[test]
    fn file_plaintext_key_is_refused_with_instructions() {
        for text in [
            format!("ci admin {SECRET}\n"),
            format!("ci admin {}\n", ApiKey::digest_hex(SECRET)),
        ] {
            let message = file_error(&text);
            assert!(message.starts_with("line 1:"), "{message}");
            assert!(message.contains("sha256:"), "{message}");
            assert!(
                message.contains("printf %s \"$KEY\" | sha256sum"),
                "{message}"
            );
            assert!(!message.contains(SECRET), "{message}");
            assert!(!message.contains(&ApiKey::digest_hex(SECRET)), "{message}");
        }
    }

    #[test]
    fn file_bad_digests_are_refused() {
        let message = file_error("ci admin sha256:abcd\n");
        assert!(
            message.starts_with("line 1:") && message.contains("found 4 characters"),
            "{message}"
        );
        let long = "a".repeat(65);
        let message = file_error(&format!("ci admin sha256:{long}\n"));
        assert!(message.contains("found 65 characters"), "{message}");
        let not_hex = format!("{}zz", "a".repeat(62));
        let message = file_error(&format!("ci admin sha256:{not_hex}\n"));
        assert!(
            message.contains("not hex digits") && !message.contains(&not_hex),
            "{message}"
        );
    }

    #[test]
    fn file_bad_role_is_refused() {
        let message = file_error(&file_line("ci", "ad.min", SECRET, ""));
        assert!(
            message.starts_with("line 1: `ad.min` is not a role name"),
            "{message}"
        );
    }

    #[test]
    fn file_bad_expiry_is_refused() {
        for expiry in ["2027-01-01", "tomorrow", "2027-13-01T00:00:00Z", ""] {
            let message = file_error(&file_line(
                "ci",
                "admin",
                SECRET,
                &format!("expires={expiry}"),
            ));
            assert!(
                message.starts_with("line 1: `expires=` must be an RFC 3339"),
                "{message}"
            );
        }
    }

    #[test]
    fn file_unknown_or_malformed_options_are_refused() {
        let message = file_error(&file_line("ci", "admin", SECRET, "colour=blue"));
        assert!(
            message.starts_with("line 1: unknown option `colour=`"),
            "{message}"
        );
        let message = file_error(&file_line("ci", "admin", SECRET, "scopes=a oops"));
        assert!(
            message.starts_with("line 1: field 5 is not an option"),
            "{message}"
        );
        assert!(!message.contains("oops"), "{message}");
        for options in ["scopes=", "scopes=a,,b", "scopes=a,"] {
            let message = file_error(&file_line("ci", "admin", SECRET, options));
            assert!(message.contains("`scopes=` needs"), "{message}");
        }
        let message = file_error(&file_line("ci", "admin", SECRET, "subject="));
        assert!(message.contains("`subject=` needs a name"), "{message}");
        for options in [
            "scopes=a scopes=b",
            "subject=a subject=b",
            "expires=2030-01-01T00:00:00Z expires=2031-01-01T00:00:00Z",
        ] {
            let message = file_error(&file_line("ci", "admin", SECRET, options));
            assert!(message.contains("is given twice"), "{message}");
        }
    }

    #[test]
    fn file_duplicates_name_both_lines() {
        let text = format!(
            "# keys\n{}{}",
            file_line("ci", "admin", SECRET, ""),
            file_line("ci", "admin", OTHER, "")
        );
        assert_eq!(
            file_error(&text),
            "line 3: key id `ci` is already used on line 2"
        );
        let text = format!(
            "{}\n{}",
            file_line("ci", "admin", SECRET, ""),
            file_line("deploy", "admin", SECRET, "")
        );
        assert_eq!(
            file_error(&text),
            "line 3: key `deploy` has the same digest as key `ci` on line 1"
        );
    }

    #[test]
    fn from_file_reads_and_names_the_file_in_errors() {
        let dir = std::env::temp_dir().join(format!(
            "mcp-gatekeeper-api-key-test-{}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("keys.txt");
        std::fs::write(&good, file_line("ci", "admin", SECRET, "")).unwrap();
        let keys = ApiKeys::from_file(&good).unwrap();
        accepted(verdict(&keys, Some(Credential::ApiKey(SECRET))));

        let bad = dir.join("bad.txt");
        std::fs::write(&bad, format!("ci admin {SECRET}\n")).unwrap();
        let message = invalid_message(ApiKeys::from_file(&bad));
        assert!(
            message.starts_with(&format!("{}: line 1:", bad.display())),
            "{message}"
        );

        match ApiKeys::from_file(dir.join("missing.txt")) {
            Err(ConfigError::Io { path, .. }) => assert_eq!(path, dir.join("missing.txt")),
            other => panic!("expected Io, got {other:?}"),
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
