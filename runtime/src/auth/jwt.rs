//! Bearer JSON Web Tokens verified with a configured key.
//!
//! The key, and with it the one accepted algorithm, is fixed when the server is configured and
//! never taken from the token: a token whose header names another algorithm (`none`, or `HS256`
//! presented to an `RS256` verifier, the classic key-confusion attack) is refused. The key
//! (`jsonwebtoken`'s `DecodingKey`) and the rules (its `Validation`) are built when the verifier
//! is configured; a token is verified by `jsonwebtoken::decode` (header, algorithm, signature,
//! `exp`, `iss`, `aud`), and the claims this crate reads beyond those (`nbf`, `iat`, roles,
//! scopes, ...) are read by [`claims`].
//! Tokens accepted once are answered from [`VerifiedTokens`] until they expire.
//!
//! A verifier may instead hold several HMAC secrets by `kid` ([`key_set`]), so that a shared
//! secret can be rotated without refusing every token at once; a token then names its secret
//! in its header, and a token that names none, or one the verifier does not hold, is refused.

pub(crate) mod claims;
pub(crate) mod key_set;
mod rules;

use std::{
    fmt,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P384_SHA384_FIXED, ED25519, ParsedPublicKey,
    RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_2048_8192_SHA384, RSA_PKCS1_2048_8192_SHA512,
    VerificationAlgorithm,
};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{
    Algorithm, AlgorithmFamily, DecodingKey, Validation,
    errors::ErrorKind,
    jwk::{AlgorithmParameters, EllipticCurve, Jwk},
};

use self::claims::Refusal;
use self::key_set::DecodingKeys;
pub use self::rules::ClaimPath;
pub(crate) use self::rules::TokenRules;
use super::{
    AuthError, AuthRequest, Authentication, Authenticator, Credential, Verdict,
    revoked::{RevokedTokens, Standing},
    token_cache::VerifiedTokens,
};
use crate::{ConfigError, Principal};

/// Clock skew tolerated on `exp`, `nbf` and `iat` unless configured otherwise.
const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);
/// Upper bound on the configurable leeway. Beyond it the validation arithmetic could overflow,
/// and no real clock is a day off.
pub(crate) const MAX_LEEWAY: Duration = Duration::from_secs(24 * 60 * 60);
/// The claim holding the caller's role unless configured otherwise.
const DEFAULT_ROLE_CLAIM: &str = "role";
/// The array claim of roles that is always read in addition to the role claim.
const ROLES_CLAIM: &str = "roles";
/// The claims holding scopes unless configured otherwise.
const DEFAULT_SCOPE_CLAIMS: [&str; 3] = ["scope", "scp", "permissions"];
/// RFC 7518 §3.3: RSA keys of fewer bits MUST NOT be used.
const MIN_RSA_BITS: usize = 2048;

/// A JWS signature algorithm this crate verifies.
///
/// Our own type rather than `jsonwebtoken`'s, so that the public API does not change when that
/// dependency does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum JwtAlgorithm {
    /// HMAC with SHA-256 (shared secret of at least 32 bytes).
    Hs256,
    /// HMAC with SHA-384 (shared secret of at least 48 bytes).
    Hs384,
    /// HMAC with SHA-512 (shared secret of at least 64 bytes).
    Hs512,
    /// RSASSA-PKCS1-v1_5 with SHA-256 (RSA key of at least 2048 bits).
    Rs256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    Rs384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    Rs512,
    /// ECDSA on P-256 with SHA-256.
    Es256,
    /// ECDSA on P-384 with SHA-384.
    Es384,
    /// EdDSA on Ed25519.
    EdDsa,
}

impl JwtAlgorithm {
    /// The algorithm's name as written in a JWS header (`"HS256"`, `"EdDSA"`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            JwtAlgorithm::Hs256 => "HS256",
            JwtAlgorithm::Hs384 => "HS384",
            JwtAlgorithm::Hs512 => "HS512",
            JwtAlgorithm::Rs256 => "RS256",
            JwtAlgorithm::Rs384 => "RS384",
            JwtAlgorithm::Rs512 => "RS512",
            JwtAlgorithm::Es256 => "ES256",
            JwtAlgorithm::Es384 => "ES384",
            JwtAlgorithm::EdDsa => "EdDSA",
        }
    }

    /// Whether the algorithm uses a shared secret (HMAC) rather than a public key.
    pub const fn is_hmac(self) -> bool {
        matches!(
            self,
            JwtAlgorithm::Hs256 | JwtAlgorithm::Hs384 | JwtAlgorithm::Hs512
        )
    }

    /// RFC 7518 §3.2: an HMAC key must be at least as long as the hash output.
    const fn min_secret_len(self) -> usize {
        match self {
            JwtAlgorithm::Hs384 => 48,
            JwtAlgorithm::Hs512 => 64,
            _ => 32,
        }
    }

    pub(crate) const fn to_jsonwebtoken(self) -> Algorithm {
        match self {
            JwtAlgorithm::Hs256 => Algorithm::HS256,
            JwtAlgorithm::Hs384 => Algorithm::HS384,
            JwtAlgorithm::Hs512 => Algorithm::HS512,
            JwtAlgorithm::Rs256 => Algorithm::RS256,
            JwtAlgorithm::Rs384 => Algorithm::RS384,
            JwtAlgorithm::Rs512 => Algorithm::RS512,
            JwtAlgorithm::Es256 => Algorithm::ES256,
            JwtAlgorithm::Es384 => Algorithm::ES384,
            JwtAlgorithm::EdDsa => Algorithm::EdDSA,
        }
    }
}

impl fmt::Display for JwtAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Authenticates `Authorization: Bearer <jwt>` requests with a configured key, or with one of
/// several HMAC secrets named by the token's `kid`.
///
/// A bearer credential shaped like a JWT is always decided here (accepted or rejected), so a
/// forged token is never offered to a later, more lenient authenticator; any other credential is
/// passed on.
///
/// A token is accepted when its signature verifies with the configured key under the configured
/// algorithm, it carries `exp` (not past, within the leeway), a non-empty `sub`, its `nbf` and
/// `iat` (when present) are not in the future, and its `iss` / `aud` match when an issuer /
/// audiences are configured. An expired token is refused with "Token expired", every other
/// failure with "Invalid token".
///
/// The principal gets `sub` as subject, the role claim (default `role`, a string) plus the
/// `roles` array as roles, the union of the scope claims (default `scope` — space-separated,
/// `scp` — space-separated string or array, and `permissions` — array) as scopes, `client_id`
/// (or else `azp`) as client id, `jti` as credential id and `exp` as expiry. A claim this
/// verifier reads that has the wrong type makes the token invalid.
///
/// ```no_run
/// # fn main() -> Result<(), mcp_gatekeeper::ConfigError> {
/// use mcp_gatekeeper::auth::Jwt;
///
/// let jwt = Jwt::hs256_from_env("JWT_SECRET")?
///     .issuer("https://auth.example.com")
///     .audience("mcp-tools");
/// # let _ = jwt; Ok(()) }
/// ```
///
/// # Rotating a shared secret
///
/// A verifier of one secret ([`Jwt::hs256`]) refuses every token the moment the secret
/// changes. To replace a secret while its tokens are still in use, give every secret a key id
/// (`kid`) and have the signer put the `kid` of the secret it used in each token's header
/// ([`Jwt::hs256_keys`], [`Jwt::hs256_keys_from_env`]; the seed's
/// [`TokenEndpoint::hs256_keys`](crate::TokenEndpoint::hs256_keys) does both sides):
///
/// 1. add the new secret under a new kid to every verifier (`JWT_KEYS=k1:old...,k2:new...`),
///    the signer still signing with the old kid;
/// 2. once every verifier runs with both, switch the signer's current kid to the new one;
/// 3. after the longest token lifetime (plus the leeway) has passed, remove the old kid from
///    the verifiers (`JWT_KEYS=k2:new...`): its tokens have all expired.
///
/// A verifier with secrets by kid refuses a token without `kid`, or with a kid it does not hold,
/// as an invalid token, without trying its secrets on it. Tokens signed for a verifier of one
/// secret carry no `kid`: when moving to secrets by kid, first have the signer name the old
/// secret's kid (a verifier of one secret ignores it), and key the verifiers a token lifetime
/// later.
///
/// ```no_run
/// # fn main() -> Result<(), mcp_gatekeeper::ConfigError> {
/// use mcp_gatekeeper::auth::Jwt;
///
/// // JWT_KEYS="2025-06:<at least 32 bytes>,2025-09:<at least 32 bytes>"
/// let jwt = Jwt::hs256_keys_from_env("JWT_KEYS")?.audience("mcp-tools");
/// # let _ = jwt; Ok(()) }
/// ```
#[derive(Clone)]
pub struct Jwt {
    /// The key (or keys by kid), parsed once, and the one algorithm it verifies.
    key: Arc<VerificationKey>,
    /// What `jsonwebtoken` checks, rebuilt by every builder method that changes a rule.
    validation: Arc<Validation>,
    /// What a token must say, and how its claims make a principal.
    rules: TokenRules,
    /// Tokens already verified, shared by the clones of this verifier.
    verified: Arc<VerifiedTokens>,
    /// Tokens revoked before they expire (those of a `TokenEndpoint`), if any.
    revoked: Option<Arc<RevokedTokens>>,
}

/// A verifier's key, or keys by kid: `jsonwebtoken`'s, for the one algorithm it verifies.
struct VerificationKey {
    algorithm: JwtAlgorithm,
    keys: DecodingKeys,
}

impl Jwt {
    /// Verifies HS256 tokens with a shared secret of at least 32 bytes.
    ///
    /// # Errors
    /// When the secret is shorter than RFC 7518 §3.2 requires.
    pub fn hs256(secret: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        Self::hmac(JwtAlgorithm::Hs256, secret)
    }

    /// Verifies HS384 tokens with a shared secret of at least 48 bytes.
    ///
    /// # Errors
    /// When the secret is shorter than RFC 7518 §3.2 requires.
    pub fn hs384(secret: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        Self::hmac(JwtAlgorithm::Hs384, secret)
    }

    /// Verifies HS512 tokens with a shared secret of at least 64 bytes.
    ///
    /// # Errors
    /// When the secret is shorter than RFC 7518 §3.2 requires.
    pub fn hs512(secret: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        Self::hmac(JwtAlgorithm::Hs512, secret)
    }

    /// Verifies HS256 tokens with the secret in environment variable `var` (its UTF-8 bytes, as
    /// written; not base64-decoded).
    ///
    /// # Errors
    /// [`ConfigError::MissingEnv`] when the variable is not set; [`ConfigError::Invalid`] when it
    /// is not UTF-8 or too short.
    pub fn hs256_from_env(var: &str) -> Result<Self, ConfigError> {
        let secret = crate::error::env_var(var)?;
        Self::hs256(secret).map_err(|e| crate::error::in_env_var(var, e))
    }

    /// Verifies HS256 tokens with any of several secrets, each named by a key id: a token must
    /// carry `kid` in its header, naming one of `keys`, and is checked with that secret only.
    /// See [`Jwt::hmac_keys`], and the rotation recipe above.
    ///
    /// ```
    /// # fn main() -> Result<(), mcp_gatekeeper::ConfigError> {
    /// use mcp_gatekeeper::auth::Jwt;
    ///
    /// let jwt = Jwt::hs256_keys([
    ///     ("2025-06", "the-previous-secret-of-at-least-32-bytes"),
    ///     ("2025-09", "the-current-secret-of-at-least-32-bytes!"),
    /// ])?
    /// .audience("mcp-tools");
    /// # let _ = jwt; Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`Jwt::hmac_keys`].
    pub fn hs256_keys<I, K, S>(keys: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (K, S)>,
        K: AsRef<str>,
        S: AsRef<[u8]>,
    {
        Self::hmac_keys(JwtAlgorithm::Hs256, keys)
    }

    /// [`Jwt::hs256_keys`] with the keys in environment variable `var`: comma-separated
    /// `KID:SECRET` entries (`k1:secret1,k2:secret2`), each split at its first `:` (a secret
    /// may contain `:`, a kid may not; neither may contain `,`). Whitespace around entries and
    /// fields, and empty entries, are ignored; a secret is its UTF-8 bytes, as written.
    ///
    /// # Errors
    /// [`ConfigError::MissingEnv`] when the variable is not set; [`ConfigError::Invalid`] when it
    /// is not UTF-8, holds no entry, or an entry lacks its `:`, has an empty or non-ASCII kid,
    /// repeats a kid, or has a secret shorter than 32 bytes. The message names the variable and
    /// the entry by its position (1-based, among the non-empty ones), never a secret.
    pub fn hs256_keys_from_env(var: &str) -> Result<Self, ConfigError> {
        Self::hs256_keys_in(var, &crate::error::env_var(var)?)
    }

    /// [`Jwt::hs256_keys_from_env`], given the variable's value.
    fn hs256_keys_in(var: &str, value: &str) -> Result<Self, ConfigError> {
        key_set::parse_key_list(value)
            .and_then(|keys| {
                key_set::hmac_by_kid(JwtAlgorithm::Hs256, keys, key_set::label_by_position)
            })
            .map(|keys| Self::with_keys(JwtAlgorithm::Hs256, keys))
            .map_err(|e| crate::error::in_env_var(var, e))
    }

    /// Verifies tokens signed with an HMAC `algorithm` and a shared secret.
    ///
    /// # Errors
    /// When `algorithm` is not an HMAC algorithm, or the secret is shorter than the hash output
    /// (RFC 7518 §3.2). The error never contains the secret.
    pub fn hmac(algorithm: JwtAlgorithm, secret: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        require_hmac(algorithm)?;
        check_secret(algorithm, secret.as_ref())?;
        let key = DecodingKey::from_secret(secret.as_ref())
            .map_err(|_| ConfigError::invalid(format!("{algorithm} secret unusable")))?;
        Ok(Self::with_key(algorithm, key))
    }

    /// Verifies tokens signed with an HMAC `algorithm` and any of several secrets, each named
    /// by a key id (`kid`): a token must carry a `kid` header naming one of `keys`, and is
    /// checked with that secret only. A token without `kid`, or with one not among `keys`, is
    /// refused as invalid (the debug log says `missing_kid` or `unknown_kid`).
    ///
    /// Unlike [`Jwt::hmac`], which ignores any `kid`, this verifier reads the token's header on
    /// a cache miss to choose the secret; tokens it already accepted are answered from its
    /// cache as before.
    ///
    /// # Errors
    /// When `algorithm` is not an HMAC algorithm, `keys` is empty, a kid is empty or not
    /// visible ASCII, a kid is given twice, or a secret is shorter than the hash output
    /// (RFC 7518 §3.2). The message names the key by its position and kid, never its secret.
    pub fn hmac_keys<I, K, S>(algorithm: JwtAlgorithm, keys: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (K, S)>,
        K: AsRef<str>,
        S: AsRef<[u8]>,
    {
        require_hmac(algorithm)?;
        let keys = key_set::hmac_by_kid(algorithm, keys, key_set::label_by_kid)?;
        Ok(Self::with_keys(algorithm, keys))
    }

    /// Verifies RS256 tokens with a PEM-encoded RSA public key (`BEGIN PUBLIC KEY` or
    /// `BEGIN RSA PUBLIC KEY`) of at least 2048 bits.
    ///
    /// # Errors
    /// When the PEM is not such a key.
    pub fn rs256_pem(public_key_pem: &[u8]) -> Result<Self, ConfigError> {
        Self::from_pem(JwtAlgorithm::Rs256, public_key_pem)
    }

    /// Verifies RS384 tokens with a PEM-encoded RSA public key; see [`Jwt::rs256_pem`].
    ///
    /// # Errors
    /// When the PEM is not such a key.
    pub fn rs384_pem(public_key_pem: &[u8]) -> Result<Self, ConfigError> {
        Self::from_pem(JwtAlgorithm::Rs384, public_key_pem)
    }

    /// Verifies RS512 tokens with a PEM-encoded RSA public key; see [`Jwt::rs256_pem`].
    ///
    /// # Errors
    /// When the PEM is not such a key.
    pub fn rs512_pem(public_key_pem: &[u8]) -> Result<Self, ConfigError> {
        Self::from_pem(JwtAlgorithm::Rs512, public_key_pem)
    }

    /// Verifies ES256 tokens with a PEM-encoded P-256 public key (`BEGIN PUBLIC KEY`).
    ///
    /// # Errors
    /// When the PEM is not a P-256 public key.
    pub fn es256_pem(public_key_pem: &[u8]) -> Result<Self, ConfigError> {
        Self::from_pem(JwtAlgorithm::Es256, public_key_pem)
    }

    /// Verifies ES384 tokens with a PEM-encoded P-384 public key (`BEGIN PUBLIC KEY`).
    ///
    /// # Errors
    /// When the PEM is not a P-384 public key.
    pub fn es384_pem(public_key_pem: &[u8]) -> Result<Self, ConfigError> {
        Self::from_pem(JwtAlgorithm::Es384, public_key_pem)
    }

    /// Verifies EdDSA tokens with a PEM-encoded Ed25519 public key (`BEGIN PUBLIC KEY`).
    ///
    /// # Errors
    /// When the PEM is not an Ed25519 public key.
    pub fn eddsa_pem(public_key_pem: &[u8]) -> Result<Self, ConfigError> {
        Self::from_pem(JwtAlgorithm::EdDsa, public_key_pem)
    }

    /// Verifies tokens signed with a public-key `algorithm`, given the PEM-encoded public key.
    ///
    /// The key is checked now, so a wrong key stops the server from starting instead of
    /// rejecting every request: its type must fit the algorithm, an EC key must be on the
    /// algorithm's curve and an RSA key must have at least 2048 bits (RFC 7518 §3.3).
    ///
    /// # Errors
    /// When `algorithm` is an HMAC algorithm or the PEM is not a fitting public key.
    pub fn from_pem(algorithm: JwtAlgorithm, public_key_pem: &[u8]) -> Result<Self, ConfigError> {
        let family = algorithm.to_jsonwebtoken().family();
        let key = match family {
            AlgorithmFamily::Rsa => DecodingKey::from_rsa_pem(public_key_pem),
            AlgorithmFamily::Ec => DecodingKey::from_ec_pem(public_key_pem),
            AlgorithmFamily::Ed => DecodingKey::from_ed_pem(public_key_pem),
            AlgorithmFamily::Hmac => {
                return Err(ConfigError::invalid(format!(
                    "{algorithm} verifies with a shared secret; use Jwt::hmac"
                )));
            }
        }
        .map_err(|_| not_a_public_key(algorithm))?;
        check_public_key(algorithm, &key)?;
        if !key_parses(algorithm, &key) {
            return Err(not_a_public_key(algorithm));
        }
        Ok(Self::with_key(algorithm, key))
    }

    /// A verifier for tokens of this crate's own authorization server: the key comes from its
    /// key ring, and the principals it builds say [`AuthMethod::OAuth`](crate::AuthMethod::OAuth).
    ///
    /// The key ring only holds keys it checked when loading them; should one still not parse,
    /// the verifier refuses every token (`jsonwebtoken` fails on each) rather than making the
    /// caller pass the token on to another authenticator, and says so once, here.
    #[cfg(feature = "oauth")]
    pub(crate) fn from_decoding_key(algorithm: JwtAlgorithm, key: DecodingKey) -> Self {
        if !key_parses(algorithm, &key) {
            tracing::error!(
                target: "mcp_gatekeeper::auth",
                %algorithm,
                "unusable OAuth verification key; its tokens are refused"
            );
        }
        let mut jwt = Self::with_key(algorithm, key);
        jwt.rules.method = crate::AuthMethod::OAuth;
        jwt
    }

    /// Refuses the tokens `revoked` lists, checked on every request (the cache of verified
    /// tokens only spares the signature).
    pub(crate) fn refusing_revoked(mut self, revoked: Arc<RevokedTokens>) -> Self {
        self.revoked = Some(revoked);
        self
    }

    /// Remembers accepted tokens in `cache`, shared with other verifiers of the same issuer and
    /// audience (the OAuth verifier's one per key). Call after the rule-changing builders, which
    /// start a cache of their own.
    #[cfg(feature = "oauth")]
    pub(crate) fn sharing_cache(mut self, cache: Arc<VerifiedTokens>) -> Self {
        self.verified = cache;
        self
    }

    /// A verifier of one key, whatever `kid` its tokens name.
    fn with_key(algorithm: JwtAlgorithm, key: DecodingKey) -> Self {
        Self::with_keys(algorithm, DecodingKeys::Single(key))
    }

    /// Builds the verifier with the default rules; the builder methods refine them.
    fn with_keys(algorithm: JwtAlgorithm, keys: DecodingKeys) -> Self {
        let rules = TokenRules::for_configured_key();
        Self {
            key: Arc::new(VerificationKey { algorithm, keys }),
            validation: Arc::new(rules.validation(algorithm)),
            rules,
            verified: Arc::default(),
            revoked: None,
        }
    }

    /// After a builder method changed a rule: `jsonwebtoken`'s validation is rebuilt, and a new
    /// cache started, since tokens accepted under the old rules must be checked again.
    fn rules_changed(&mut self) {
        self.verified = Arc::default();
        self.validation = Arc::new(self.rules.validation(self.key.algorithm));
    }

    /// Requires the `iss` claim to be present and equal to `issuer`. Calling it again replaces
    /// the issuer.
    #[must_use]
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.rules.issuer = Some(issuer.into());
        self.rules_changed();
        self
    }

    /// Requires the `aud` claim to be present and to contain `audience`: for an MCP server,
    /// its resource URL (`https://mcp.example.com/mcp`), so that a token issued for another
    /// service is refused (MCP authorization: servers MUST validate that tokens were issued for
    /// them). Call it several times to accept any of several audiences.
    ///
    /// A server refuses to start with a verifier that has neither an audience nor
    /// [`accept_tokens_for_any_audience`](Self::accept_tokens_for_any_audience).
    #[must_use]
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.rules.audiences.push(audience.into());
        self.rules.any_audience = false;
        self.rules_changed();
        self
    }

    /// Gives up the audience check: tokens are accepted whatever their `aud`, including tokens
    /// the same issuer made for *other* services, which anyone holding one could then replay
    /// here. Only for issuers that mint tokens for this server alone (and say so in your
    /// configuration); prefer [`audience`](Self::audience).
    #[must_use]
    pub fn accept_tokens_for_any_audience(mut self) -> Self {
        self.rules.audiences.clear();
        self.rules.any_audience = true;
        self.rules_changed();
        self
    }

    /// The clock skew tolerated on `exp`, `nbf` and `iat` (default 30 s, whole seconds, at
    /// most one day).
    #[must_use]
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.rules.leeway = leeway.min(MAX_LEEWAY).as_secs();
        self.rules_changed();
        self
    }

    /// The claim that holds the caller's role (default `role`): a string, or an array of
    /// strings; or a path into nested objects ([`ClaimPath`]: `realm_access.roles`). The
    /// `roles` array claim is read as well. Use a private claim name, not one of the registered
    /// ones (`sub`, `jti`, ...).
    #[must_use]
    pub fn role_claim(mut self, path: impl Into<ClaimPath>) -> Self {
        self.rules.role_claim = path.into();
        self.rules_changed();
        self
    }

    /// The claims whose scopes are granted, as a union (default `scope`, `scp`, `permissions`).
    /// Each may be a space-separated string or an array of strings (`permissions` must be an
    /// array), or a path into nested objects ([`ClaimPath`]). Use private claim names, not
    /// registered ones (`sub`, `jti`, ...).
    #[must_use]
    pub fn scope_claims<I, S>(mut self, paths: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<ClaimPath>,
    {
        self.rules.scope_claims = paths.into_iter().map(Into::into).collect();
        self.rules_changed();
        self
    }

    /// Grants this server's role `role` to tokens whose role claim names `idp_role` (a role
    /// or group name of the token's issuer). Once one mapping is configured, only mapped names
    /// grant roles; the others are ignored. Call it once per name (several times for a name
    /// that grants several roles). A mapping to a role the tools do not declare stops the
    /// server from starting.
    #[must_use]
    pub fn map_role(mut self, idp_role: impl Into<String>, role: impl Into<String>) -> Self {
        self.rules.map_role(idp_role.into(), role.into());
        self.rules_changed();
        self
    }

    /// The algorithm tokens must be signed with.
    pub fn algorithm(&self) -> JwtAlgorithm {
        self.key.algorithm
    }

    /// Verifies `token` and returns the principal it speaks for.
    ///
    /// # Errors
    /// [`AuthError::expired`] for an expired token, [`AuthError::invalid_token`] for any other
    /// failure.
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let key = self.key.keys.for_token(token).map_err(refused)?;
        self.rules.verify(token, key, &self.validation)
    }

    /// [`verify`](Self::verify), answered from the cache of tokens this verifier accepted before
    /// when `token` is one of them and still unexpired: a client presents the same token on
    /// every request, and the signature check is the expensive part. What the HTTP layer uses;
    /// the cache is bounded and keyed by a random-keyed hash of the token (DESIGN.md 20).
    ///
    /// # Errors
    /// As [`verify`](Self::verify); refusals are never cached.
    pub fn verify_cached(&self, token: &str) -> Result<Arc<Principal>, AuthError> {
        let now = now();
        if let Some(principal) = self.verified.get(token, now) {
            return Ok(principal);
        }
        let principal = Arc::new(self.verify(token)?);
        self.verified.insert(
            token,
            principal.clone(),
            valid_until(&principal, self.rules.leeway),
        );
        Ok(principal)
    }
}

/// `principal`, unless its token was revoked; reads the shared revocation list first when what
/// this replica knows of it is too old.
fn not_revoked(revoked: &RevokedTokens, principal: Arc<Principal>) -> Authentication<'_> {
    let Some(jti) = principal.credential_id() else {
        // A token without a `jti` cannot have been revoked (the endpoint always sets one).
        return Verdict::Accept(principal).into();
    };
    match revoked.standing(jti) {
        Standing::Valid => Verdict::Accept(principal).into(),
        Standing::Revoked => Verdict::Reject(revoked_token(jti)).into(),
        #[cfg(feature = "redis")]
        Standing::Stale => Authentication::Pending(Box::pin(async move {
            let refreshed = revoked.refresh().await;
            let jti = principal.credential_id().unwrap_or_default();
            if revoked.is_known_revoked(jti) {
                return Verdict::Reject(revoked_token(jti));
            }
            match refreshed {
                Ok(()) => Verdict::Accept(principal),
                Err(_) if revoked.falls_back() => Verdict::Accept(principal),
                Err(error) => {
                    tracing::error!(target: crate::AUDIT_TARGET, jti, "revocation list unavailable; token refused");
                    Verdict::Reject(error.with_credential_id(jti))
                }
            }
        })),
    }
}

fn revoked_token(jti: &str) -> AuthError {
    tracing::debug!(target: "mcp_gatekeeper::auth", "revoked token refused");
    AuthError::invalid_token().with_credential_id(jti)
}

/// Until when (unix seconds) a verified principal may be answered from a cache: its expiry
/// plus the leeway; never for one without an expiry.
pub(crate) fn valid_until(principal: &Principal, leeway: u64) -> u64 {
    principal
        .expires_at()
        .and_then(|at| at.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs().saturating_add(leeway))
}

/// Why `jsonwebtoken` refused a token, for the debug log.
pub(crate) fn reason(kind: &ErrorKind) -> Refusal {
    match kind {
        ErrorKind::InvalidSignature => "signature",
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => "algorithm",
        ErrorKind::MissingRequiredClaim(_) => "missing_claim",
        ErrorKind::InvalidClaimFormat(_) => "claim_format",
        ErrorKind::ImmatureSignature => "not_yet_valid",
        ErrorKind::InvalidIssuer => "issuer",
        ErrorKind::InvalidAudience => "audience",
        ErrorKind::Base64(_) | ErrorKind::Json(_) | ErrorKind::Utf8(_) => "malformed",
        ErrorKind::InvalidToken => "malformed_token",
        _ => "key",
    }
}

impl Authenticator for Jwt {
    fn name(&self) -> &'static str {
        "jwt"
    }

    fn authenticate<'a>(&'a self, request: &'a AuthRequest<'a>) -> Authentication<'a> {
        let Some(credential @ Credential::Bearer(token)) = request.credential else {
            return Verdict::Pass.into();
        };
        if !credential.looks_like_jwt() {
            return Verdict::Pass.into();
        }
        match self.verify_cached(token) {
            Ok(principal) => match &self.revoked {
                Some(revoked) => not_revoked(revoked, principal),
                None => Verdict::Accept(principal).into(),
            },
            Err(error) => Verdict::Reject(error).into(),
        }
    }

    /// The roles names are mapped to; roles taken from tokens as they are cannot be checked
    /// at start-up.
    fn configured_roles(&self) -> Vec<String> {
        self.rules.mapped_roles()
    }

    fn check_configuration(&self) -> Result<(), crate::ConfigError> {
        self.rules.check()
    }
}

impl fmt::Debug for Jwt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut jwt = f.debug_struct("Jwt");
        jwt.field("algorithm", &self.key.algorithm);
        // Kids name secrets without revealing them; a verifier of one key has none.
        if let Some(kids) = self.key.keys.kids() {
            jwt.field("kids", &kids);
        }
        jwt.field("key", &"<redacted>")
            .field("issuer", &self.rules.issuer)
            .field("audiences", &self.rules.audiences)
            .field("any_audience", &self.rules.any_audience)
            .field("leeway_secs", &self.rules.leeway)
            .field("role_claim", &self.rules.role_claim)
            .field("scope_claims", &self.rules.scope_claims)
            .field("role_map", &self.rules.role_map)
            .finish()
    }
}

/// Seconds since the epoch; a clock before 1970 counts as the epoch rather than panicking.
pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// An "Invalid token" rejection; the reason goes to the debug log only, never to the client.
pub(crate) fn refused(reason: &'static str) -> AuthError {
    tracing::debug!(target: "mcp_gatekeeper::auth", reason, "JWT refused");
    AuthError::invalid_token()
}

fn require_hmac(algorithm: JwtAlgorithm) -> Result<(), ConfigError> {
    if !algorithm.is_hmac() {
        return Err(ConfigError::invalid(format!(
            "{algorithm} verifies with a public key; use Jwt::from_pem"
        )));
    }
    Ok(())
}

fn check_secret(algorithm: JwtAlgorithm, secret: &[u8]) -> Result<(), ConfigError> {
    let min = algorithm.min_secret_len();
    if secret.len() < min {
        // Never echo the secret, nor its length: only what is required.
        return Err(ConfigError::invalid(format!(
            "the {algorithm} secret is too short: RFC 7518 §3.2 requires at least {min} bytes \
             (generate one with `openssl rand -hex {min}`)"
        )));
    }
    Ok(())
}

fn not_a_public_key(algorithm: JwtAlgorithm) -> ConfigError {
    let kind = match algorithm.to_jsonwebtoken().family() {
        AlgorithmFamily::Rsa => "an RSA public key",
        AlgorithmFamily::Ec if algorithm == JwtAlgorithm::Es384 => "a P-384 public key",
        AlgorithmFamily::Ec => "a P-256 public key",
        _ => "an Ed25519 public key",
    };
    ConfigError::invalid(format!(
        "the {algorithm} verification key must be {kind} in PEM form (BEGIN PUBLIC KEY)"
    ))
}

/// Whether aws-lc, which `jsonwebtoken` verifies with, takes `key` for `algorithm` (an EC point
/// on the curve, an RSA key of 2048 to 8192 bits, ...), with the very algorithms `jsonwebtoken`
/// uses: a key that could never verify anything is refused at start-up rather than on every
/// request.
fn key_parses(algorithm: JwtAlgorithm, key: &DecodingKey) -> bool {
    let verification: &'static dyn VerificationAlgorithm = match algorithm {
        JwtAlgorithm::Rs256 => &RSA_PKCS1_2048_8192_SHA256,
        JwtAlgorithm::Rs384 => &RSA_PKCS1_2048_8192_SHA384,
        JwtAlgorithm::Rs512 => &RSA_PKCS1_2048_8192_SHA512,
        JwtAlgorithm::Es256 => &ECDSA_P256_SHA256_FIXED,
        JwtAlgorithm::Es384 => &ECDSA_P384_SHA384_FIXED,
        JwtAlgorithm::EdDsa => &ED25519,
        // An HMAC secret is any bytes.
        _ => return key.family() == AlgorithmFamily::Hmac,
    };
    key.family() == algorithm.to_jsonwebtoken().family()
        && key
            .try_get_as_bytes()
            .is_ok_and(|bytes| ParsedPublicKey::new(verification, bytes).is_ok())
}

/// Whether `key` can verify `algorithm` signatures: [`key_parses`], except for an RSA key
/// given as modulus and exponent (a JWK), which aws-lc takes as it is; its size is checked
/// where it is read.
#[cfg(feature = "oidc")]
pub(crate) fn key_is_usable(algorithm: JwtAlgorithm, key: &DecodingKey) -> bool {
    if key.family() == AlgorithmFamily::Rsa && key.try_get_as_bytes().is_err() {
        return algorithm.to_jsonwebtoken().family() == AlgorithmFamily::Rsa;
    }
    key_parses(algorithm, key)
}

/// The algorithm of a JWS header as one this crate verifies (`None` for the PS* family).
#[cfg(feature = "oidc")]
pub(crate) fn algorithm_of(algorithm: Algorithm) -> Option<JwtAlgorithm> {
    Some(match algorithm {
        Algorithm::HS256 => JwtAlgorithm::Hs256,
        Algorithm::HS384 => JwtAlgorithm::Hs384,
        Algorithm::HS512 => JwtAlgorithm::Hs512,
        Algorithm::RS256 => JwtAlgorithm::Rs256,
        Algorithm::RS384 => JwtAlgorithm::Rs384,
        Algorithm::RS512 => JwtAlgorithm::Rs512,
        Algorithm::ES256 => JwtAlgorithm::Es256,
        Algorithm::ES384 => JwtAlgorithm::Es384,
        Algorithm::EdDSA => JwtAlgorithm::EdDsa,
        _ => return None,
    })
}

/// Parses the key the way verification will, so a key that can never verify anything is
/// refused at start-up; also enforces the RSA size and EC curve the algorithm requires.
fn check_public_key(algorithm: JwtAlgorithm, key: &DecodingKey) -> Result<(), ConfigError> {
    let jwk = Jwk::from_decoding_key(key, None).map_err(|_| not_a_public_key(algorithm))?;
    let fits = match (&jwk.algorithm, algorithm) {
        (AlgorithmParameters::RSA(rsa), _) => {
            return check_rsa_size(algorithm, &rsa.n);
        }
        (AlgorithmParameters::EllipticCurve(ec), JwtAlgorithm::Es256) => {
            ec.curve == EllipticCurve::P256
        }
        (AlgorithmParameters::EllipticCurve(ec), JwtAlgorithm::Es384) => {
            ec.curve == EllipticCurve::P384
        }
        (AlgorithmParameters::OctetKeyPair(okp), JwtAlgorithm::EdDsa) => {
            okp.curve == EllipticCurve::Ed25519
        }
        _ => false,
    };
    if fits {
        Ok(())
    } else {
        Err(not_a_public_key(algorithm))
    }
}

fn check_rsa_size(algorithm: JwtAlgorithm, modulus_b64: &str) -> Result<(), ConfigError> {
    let modulus = URL_SAFE_NO_PAD
        .decode(modulus_b64)
        .map_err(|_| not_a_public_key(algorithm))?;
    let modulus = match modulus.iter().position(|&b| b != 0) {
        Some(first) => &modulus[first..],
        None => &[][..],
    };
    let bits = modulus.first().map_or(0, |&top| {
        (modulus.len() - 1) * 8 + (8 - top.leading_zeros() as usize)
    });
    if bits < MIN_RSA_BITS {
        return Err(ConfigError::invalid(format!(
            "the {algorithm} key has {bits} bits; RFC 7518 §3.3 requires at least {MIN_RSA_BITS}"
        )));
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests;
