//! Bearer JSON Web Tokens verified with a configured key.
//!
//! The key, and with it the one accepted algorithm, is fixed when the server is configured and
//! never taken from the token: a token whose header names another algorithm (`none`, or `HS256`
//! presented to an `RS256` verifier, the classic key-confusion attack) is refused. All the
//! expensive set-up (parsing the key) happens once, at construction; verifying a request parses
//! the header once, checks the signature with the prepared key (see [`super::jws`]) and parses
//! the claims once (see [`claims`]).

mod claims;

use std::{
    fmt,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{
    Algorithm, AlgorithmFamily, DecodingKey,
    jwk::{AlgorithmParameters, EllipticCurve, Jwk},
};

use self::claims::{Claims, LIST_FIELDS, Reading};
use super::{
    AuthError, AuthRequest, Authentication, Authenticator, Credential, Verdict, jws::VerifyingKey,
    token_cache::VerifiedTokens,
};
use crate::{AuthMethod, ConfigError, Principal};

/// Clock skew tolerated on `exp`, `nbf` and `iat` unless configured otherwise.
const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);
/// Upper bound on the configurable leeway. Beyond it the validation arithmetic could overflow,
/// and no real clock is a day off.
const MAX_LEEWAY: Duration = Duration::from_secs(24 * 60 * 60);
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

/// Authenticates `Authorization: Bearer <jwt>` requests with one configured key.
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
#[derive(Clone)]
pub struct Jwt {
    /// The key, prepared once, and the one algorithm it verifies.
    key: Arc<VerifyingKey>,
    issuer: Option<String>,
    audiences: Vec<String>,
    /// Set by [`Jwt::accept_tokens_for_any_audience`]: no `aud` check, on purpose.
    any_audience: bool,
    leeway: u64,
    role_claim: String,
    scope_claims: Vec<String>,
    /// The configured role and scope claims that [`Claims`] has no field for, so the payload
    /// parser must keep them.
    extra_claims: Vec<String>,
    /// How principals built from verified tokens say they authenticated.
    method: AuthMethod,
    /// Tokens already verified, shared by the clones of this verifier.
    verified: Arc<VerifiedTokens>,
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

    /// Verifies tokens signed with an HMAC `algorithm` and a shared secret.
    ///
    /// # Errors
    /// When `algorithm` is not an HMAC algorithm, or the secret is shorter than the hash output
    /// (RFC 7518 §3.2). The error never contains the secret.
    pub fn hmac(algorithm: JwtAlgorithm, secret: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        if !algorithm.is_hmac() {
            return Err(ConfigError::invalid(format!(
                "{algorithm} verifies with a public key; use Jwt::from_pem"
            )));
        }
        check_secret(algorithm, secret.as_ref())?;
        let key = VerifyingKey::new(algorithm, &DecodingKey::from_secret(secret.as_ref()))
            .map_err(|_| ConfigError::invalid(format!("{algorithm} secret unusable")))?;
        Ok(Self::with_key(key))
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
        let key = VerifyingKey::new(algorithm, &key).map_err(|_| not_a_public_key(algorithm))?;
        Ok(Self::with_key(key))
    }

    /// A verifier for tokens of this crate's own authorization server: the key comes from its
    /// key ring, and the principals it builds say [`AuthMethod::OAuth`].
    ///
    /// The key ring only holds keys it checked when loading them; should one still not parse
    /// here, the verifier refuses every token (as `jsonwebtoken` did, failing on each) rather
    /// than making the caller pass the token on to another authenticator.
    pub(crate) fn from_decoding_key(algorithm: JwtAlgorithm, key: DecodingKey) -> Self {
        let key = VerifyingKey::new(algorithm, &key).unwrap_or_else(|_| {
            tracing::error!(
                target: "mcp_gatekeeper::auth",
                %algorithm,
                "unusable OAuth verification key; its tokens are refused"
            );
            VerifyingKey::unusable(algorithm)
        });
        Self {
            method: AuthMethod::OAuth,
            ..Self::with_key(key)
        }
    }

    /// Remembers accepted tokens in `cache`, shared with other verifiers of the same issuer and
    /// audience (the OAuth verifier's one per key). Call after the rule-changing builders, which
    /// start a cache of their own.
    pub(crate) fn sharing_cache(mut self, cache: Arc<VerifiedTokens>) -> Self {
        self.verified = cache;
        self
    }

    /// Builds the verifier with the default rules; the builder methods refine them.
    fn with_key(key: VerifyingKey) -> Self {
        Self {
            key: Arc::new(key),
            issuer: None,
            audiences: Vec::new(),
            any_audience: false,
            leeway: DEFAULT_LEEWAY.as_secs(),
            role_claim: DEFAULT_ROLE_CLAIM.to_owned(),
            scope_claims: DEFAULT_SCOPE_CLAIMS.map(str::to_owned).to_vec(),
            extra_claims: Vec::new(),
            method: AuthMethod::Jwt,
            verified: Arc::default(),
        }
    }

    /// Requires the `iss` claim to be present and equal to `issuer`. Calling it again replaces
    /// the issuer.
    #[must_use]
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        // Other rules: tokens accepted under the old ones must be checked again.
        self.verified = Arc::default();
        self.issuer = Some(issuer.into());
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
        // Other rules: tokens accepted under the old ones must be checked again.
        self.verified = Arc::default();
        self.audiences.push(audience.into());
        self.any_audience = false;
        self
    }

    /// Gives up the audience check: tokens are accepted whatever their `aud`, including tokens
    /// the same issuer made for *other* services, which anyone holding one could then replay
    /// here. Only for issuers that mint tokens for this server alone (and say so in your
    /// configuration); prefer [`audience`](Self::audience).
    #[must_use]
    pub fn accept_tokens_for_any_audience(mut self) -> Self {
        self.verified = Arc::default();
        self.audiences.clear();
        self.any_audience = true;
        self
    }

    /// The clock skew tolerated on `exp`, `nbf` and `iat` (default 30 s, whole seconds, at
    /// most one day).
    #[must_use]
    pub fn leeway(mut self, leeway: Duration) -> Self {
        // Other rules: tokens accepted under the old ones must be checked again.
        self.verified = Arc::default();
        self.leeway = leeway.min(MAX_LEEWAY).as_secs();
        self
    }

    /// The claim that holds the caller's role (default `role`): a string, or an array of
    /// strings. The `roles` array claim is read as well. Use a private claim name, not one of
    /// the registered ones (`sub`, `jti`, ...).
    #[must_use]
    pub fn role_claim(mut self, name: impl Into<String>) -> Self {
        // Other rules: tokens accepted under the old ones must be checked again.
        self.verified = Arc::default();
        self.role_claim = name.into();
        self.update_extra_claims();
        self
    }

    /// The claims whose scopes are granted, as a union (default `scope`, `scp`, `permissions`).
    /// Each may be a space-separated string or an array of strings (`permissions` must be an
    /// array). Use private claim names, not registered ones (`sub`, `jti`, ...).
    #[must_use]
    pub fn scope_claims<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        // Other rules: tokens accepted under the old ones must be checked again.
        self.verified = Arc::default();
        self.scope_claims = names.into_iter().map(Into::into).collect();
        self.update_extra_claims();
        self
    }

    fn update_extra_claims(&mut self) {
        let mut extra: Vec<String> = Vec::new();
        for name in std::iter::once(&self.role_claim).chain(&self.scope_claims) {
            if !LIST_FIELDS.contains(&name.as_str()) && !extra.contains(name) {
                extra.push(name.clone());
            }
        }
        self.extra_claims = extra;
    }

    /// The algorithm tokens must be signed with.
    pub fn algorithm(&self) -> JwtAlgorithm {
        self.key.algorithm()
    }

    /// Verifies `token` and returns the principal it speaks for.
    ///
    /// # Errors
    /// [`AuthError::expired`] for an expired token, [`AuthError::invalid_token`] for any other
    /// failure.
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let payload = self.key.verify(token).map_err(refused)?;
        let claims =
            claims::parse(&payload, self.reading()).map_err(|_| refused("claim_format"))?;
        self.check(&claims, now())?;
        self.principal(&claims)
    }

    /// [`verify`](Self::verify), answered from the cache of tokens this verifier accepted before
    /// when `token` is one of them and still unexpired: a client presents the same token on
    /// every request, and the signature check is the expensive part.
    pub(crate) fn verify_shared(&self, token: &str) -> Result<Arc<Principal>, AuthError> {
        let now = now();
        if let Some(principal) = self.verified.get(token, now) {
            return Ok(principal);
        }
        let principal = Arc::new(self.verify(token)?);
        let valid_until = principal
            .expires_at()
            .and_then(|at| at.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs().saturating_add(self.leeway));
        self.verified.insert(token, principal.clone(), valid_until);
        Ok(principal)
    }

    /// What the payload parser must read for this verifier's rules.
    fn reading(&self) -> Reading<'_> {
        Reading {
            issuer: self.issuer.is_some(),
            audience: !self.audiences.is_empty(),
            scp: self.role_claim == "scp" || self.scope_claims.iter().any(|name| name == "scp"),
            extra: &self.extra_claims,
        }
    }

    /// The rules on the registered claims. Presence comes first, then expiry (the one failure
    /// the client is told about), then the rest.
    fn check(&self, claims: &Claims<'_, '_>, now: u64) -> Result<(), AuthError> {
        let (Some(sub), Some(exp)) = (&claims.sub, claims.exp) else {
            return Err(refused("missing_claim"));
        };
        if (self.issuer.is_some() && claims.iss.is_none())
            || (!self.audiences.is_empty() && claims.aud.is_none())
        {
            return Err(refused("missing_claim"));
        }
        if exp < now.saturating_sub(self.leeway) {
            return Err(AuthError::expired());
        }
        let latest = now.saturating_add(self.leeway);
        if claims.nbf.is_some_and(|nbf| nbf > latest) {
            return Err(refused("not_yet_valid"));
        }
        if claims.iat.is_some_and(|iat| iat > latest) {
            return Err(refused("issued_in_future"));
        }
        if let Some(issuer) = &self.issuer
            && claims.iss.as_deref() != Some(issuer.as_str())
        {
            return Err(refused("issuer"));
        }
        if let Some(aud) = &claims.aud
            && !self.audiences.is_empty()
            && !self.audiences.iter().any(|wanted| aud.contains(wanted))
        {
            return Err(refused("audience"));
        }
        if sub.is_empty() {
            return Err(refused("empty_sub"));
        }
        Ok(())
    }

    /// Builds the principal from verified claims.
    fn principal(&self, claims: &Claims<'_, '_>) -> Result<Principal, AuthError> {
        let (Some(sub), Some(exp)) = (claims.sub.as_deref(), claims.exp) else {
            return Err(refused("missing_claim"));
        };
        let expires_at = UNIX_EPOCH
            .checked_add(Duration::from_secs(exp))
            .ok_or_else(|| refused("claim_format"))?;
        let mut builder = Principal::builder(self.method, sub)
            .roles(self.roles(claims)?)
            .scopes(self.scopes(claims)?)
            .expires_at(expires_at);
        let client_id = claims.client_id.as_deref().or(claims.azp.as_deref());
        if let Some(client_id) = client_id.filter(|c| !c.is_empty()) {
            builder = builder.client_id(client_id);
        }
        if let Some(jti) = claims.jti.as_deref().filter(|j| !j.is_empty()) {
            builder = builder.credential_id(jti);
        }
        Ok(builder.build())
    }

    fn roles<'c>(&self, claims: &'c Claims<'_, '_>) -> Result<Vec<&'c str>, AuthError> {
        let mut roles = Vec::new();
        claims
            .strings(&self.role_claim, false, &mut roles)
            .map_err(refused)?;
        if self.role_claim != ROLES_CLAIM {
            claims
                .strings(ROLES_CLAIM, false, &mut roles)
                .map_err(refused)?;
        }
        roles.retain(|r| !r.is_empty());
        // The principal only removes adjacent duplicates; `role: a` + `roles: [b, a]` has others.
        let mut unique = Vec::with_capacity(roles.len());
        for role in roles {
            if !unique.contains(&role) {
                unique.push(role);
            }
        }
        Ok(unique)
    }

    fn scopes<'c>(&self, claims: &'c Claims<'_, '_>) -> Result<Vec<&'c str>, AuthError> {
        let mut scopes = Vec::new();
        for name in &self.scope_claims {
            claims.strings(name, true, &mut scopes).map_err(refused)?;
        }
        scopes.retain(|s| !s.is_empty());
        Ok(scopes)
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
        match self.verify_shared(token) {
            Ok(principal) => Verdict::Accept(principal),
            Err(error) => Verdict::Reject(error),
        }
        .into()
    }

    /// Roles come from the tokens, so there are none to check at start-up.
    fn configured_roles(&self) -> Vec<String> {
        Vec::new()
    }

    fn check_configuration(&self) -> Result<(), crate::ConfigError> {
        if self.audiences.is_empty() && !self.any_audience {
            return Err(crate::ConfigError::invalid(
                "a JWT verifier must check the audience: set `.audience(\"<this server's \
                 resource URL, e.g. https://mcp.example.com/mcp>\")`, or \
                 `.accept_tokens_for_any_audience()` to accept tokens issued for any service",
            ));
        }
        Ok(())
    }
}

impl fmt::Debug for Jwt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jwt")
            .field("algorithm", &self.key.algorithm())
            .field("key", &"<redacted>")
            .field("issuer", &self.issuer)
            .field("audiences", &self.audiences)
            .field("any_audience", &self.any_audience)
            .field("leeway_secs", &self.leeway)
            .field("role_claim", &self.role_claim)
            .field("scope_claims", &self.scope_claims)
            .finish()
    }
}

/// Seconds since the epoch; a clock before 1970 counts as the epoch rather than panicking.
fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// An "Invalid token" rejection; the reason goes to the debug log only, never to the client.
fn refused(reason: &'static str) -> AuthError {
    tracing::debug!(target: "mcp_gatekeeper::auth", reason, "JWT refused");
    AuthError::invalid_token()
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
mod tests {
    use super::*;
    use crate::auth::AuthErrorKind;
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::{Value, json};

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-test-secret";

    const EC_PRIVATE: &str = r"-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgf7wBFoJiJFr4pVg/
39fj1I1G9KoaBoOtdGjKQo8vkDKhRANCAATWTqbge7qqRIHMWgcTkkBpAdjoCejf
dolkzLOiOJ9XEQP8hn2g8jY+X2H8YqD876k/oLWr9yx3ESJCFjijJ0Qc
-----END PRIVATE KEY-----";
    const EC_PUBLIC: &str = r"-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE1k6m4Hu6qkSBzFoHE5JAaQHY6Ano
33aJZMyzojifVxED/IZ9oPI2Pl9h/GKg/O+pP6C1q/csdxEiQhY4oydEHA==
-----END PUBLIC KEY-----";
    const ED_PRIVATE: &str = r"-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEICPJ0/MMsVCtZOPpejlsUa1qNKBG0nKm5a0Pk7/WzFEo
-----END PRIVATE KEY-----";
    const ED_PUBLIC: &str = r"-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAP5zfbNKAjsbRiyuy/Ag8/aMF+PI5ujAraBlaoQyWbaw=
-----END PUBLIC KEY-----";
    const RSA_PRIVATE: &str = r"-----BEGIN PRIVATE KEY-----
MIIEvwIBADANBgkqhkiG9w0BAQEFAASCBKkwggSlAgEAAoIBAQDbUvfNeoMXtZOg
yJ2PawgSkzCS1oOa8zND8ZD98uPtSbxz7kkz6LDvSCLMxkFC4Sn7jjaUOcF0f/TX
BKIuM1ytURAcupuBx97VtqYKlxoodOGsVO/t4OD46ca/2VE0/G+v0QC5gJ8czYTH
FyZSw8xetWgJRmJnwYVJtHYQXup7DL9+mDoEGyC6SO5Y+9Z/O6/3LpTmU8mJ6vxg
65U/fGAj8IOFFZaJqSPIY9j72LdPGDUlriOPSH5gFy17K8VXCG0xv0BxFzbHQo0N
ziake/mR3Da2bwvUJAyaNYLz3YWJSLrUSxfmraYvqPyqer6o+ng38C6GDIQBqoHL
t/HJQUXzAgMBAAECggEAA04vGhbGsAF82pdh0urP7qIiQSxGqnvc1QebrrNNuEji
tE3HwHNsazn6lq+sOLfpz10+Be9C5gcU2qkhHcu8K1Tr7PFRBtxkx6X4WNnpiBxb
pFW/xSWDYaz54Yocahod2TGWSBvTChBjRMupnuWAu7KsATiUb7ATQROdR4AVGsqe
WYs788Ed9JC0itG65t3sxlYVAik0AMelCinzIRJHmFLT768qIVJMok4qAAz305+X
HFKmVbXkKitNawAys1Tin8rQFGI3gmuOuD0gkNNiNyD+Y9hVs4odeu40NNPicC/X
bt6estbozR9SEDP4ADzRAH43WKY1p6ryWWFHcAyVuQKBgQDww6Jvo3pt3UPEcEsR
Is2JsOWB1LsM6AWjLLP4zddY+g4vxcdiDKQeaJ024jcL6gaoovFBzTb0kZUOZsni
DYW6fZ8A4VATPzFQ8WFXu7wkzSJfvFGe5YKPqoePlq/0Vg1cWbsYfmR6NO1l3WH6
jmQ4IJibScc/I9tddYWb20HhWQKBgQDpNAFMrJqNrKp4zKdOHAPfIzPcf55yxKqj
Jems0bKKVnwCl6ZF/LbB++lJA21lrOk8fvbE/55wd+Vrb4I78pvF461ozKLasKor
3GS4bIH6bNvdwffos3rWhpU27RTgGrfMz+zffGWReB9Naz61y4ezHcqKbpclObd/
5qKB9VpMKwKBgQCUKD8oJdhsDRHrqxJ2nA0RYxsIVuk4GvuFGzgwrjKLnWzndvSn
4JGJ6OR95pzrJvssAQEndeoQfBnWf+hRw/J7/VvAReZpwaROZAt72pn/p4A0m4U6
m49Jay36bUcfu2iDYPBiNT0Nes5vtdjaP49qfpyKSs9iimUuUOiELVuQGQKBgQDn
7Pql4LtMzz4zKYXyntYS4xW+44UXqxPxcdE2OM8R2fU3Ns78p9qyjfBy1t/D0PWd
Xr/ZKEfQns0hziJ9sEjPxCFAKtSEHlL/kA7zg6a5Ae6gWzpMycMO+4YGvD6YqrnF
Db0MftEcnZS0EEar0qFAuA4pItdbBE3E/AD+sp59RQKBgQDJ0yu58dZhRlEoeb2q
SKbqOXVuS2k+IyPIodTJU06iadJ8YMO08cdiyXtuQ0CVowPMxVJoTScuM4w7fdgU
ikyUQWbU188Z6UgI/Y+RWoPd2gjTPmcS+jHgnhSJ2SbuI4fHjplUUKlR67weLcaC
s1rmuz0T5jVxkFIzbstLdYy2Aw==
-----END PRIVATE KEY-----";
    const RSA_PUBLIC: &str = r"-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA21L3zXqDF7WToMidj2sI
EpMwktaDmvMzQ/GQ/fLj7Um8c+5JM+iw70gizMZBQuEp+442lDnBdH/01wSiLjNc
rVEQHLqbgcfe1bamCpcaKHThrFTv7eDg+OnGv9lRNPxvr9EAuYCfHM2ExxcmUsPM
XrVoCUZiZ8GFSbR2EF7qewy/fpg6BBsgukjuWPvWfzuv9y6U5lPJier8YOuVP3xg
I/CDhRWWiakjyGPY+9i3Txg1Ja4jj0h+YBcteyvFVwhtMb9AcRc2x0KNDc4mpHv5
kdw2tm8L1CQMmjWC892FiUi61EsX5q2mL6j8qnq+qPp4N/AuhgyEAaqBy7fxyUFF
8wIDAQAB
-----END PUBLIC KEY-----";
    const RSA_1024_PUBLIC: &str = r"-----BEGIN PUBLIC KEY-----
MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDqhVRjzVPLaUYQhKG1nLKWGqbV
gy684OG5gIWe2vLBlCHdTycetEvAZuP1PBiwLl7b/e/uCl84xDnluGq4fJ1bXZ9T
ZUIASEUyyd+OFwRNCAhKenoaeNmDAC0sziWEC9PCBEcNF2nv13hB9KOP/uE5LW3B
TlvHNUaF7TxkpfrVfQIDAQAB
-----END PUBLIC KEY-----";

    fn claims() -> Value {
        let now = now();
        json!({
            "sub": "alice",
            "exp": now + 600,
            "iat": now,
            "jti": "tok-1",
            "client_id": "cli",
            "role": "admin",
            "roles": ["ops", "admin"],
            "scope": "tools:read tools:write",
            "permissions": ["audit"],
        })
    }

    fn with(mut base: Value, patch: Value) -> Value {
        if let (Value::Object(base), Value::Object(patch)) = (&mut base, patch) {
            for (k, v) in patch {
                if v.is_null() {
                    base.remove(&k);
                } else {
                    base.insert(k, v);
                }
            }
        }
        base
    }

    fn hs256_token(claims: &Value) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap()
    }

    fn hs256() -> Jwt {
        Jwt::hs256(SECRET).unwrap()
    }

    /// `token` with the top bit of its last base64url character flipped: the signature's
    /// bytes always change (a fixed replacement character would leave the token unchanged one
    /// time in 64, or change only bits a lenient decoder ignores).
    fn with_last_char_changed(token: &str) -> String {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let (head, last) = token.split_at(token.len() - 1);
        let value = ALPHABET
            .iter()
            .position(|c| *c == last.as_bytes()[0])
            .unwrap();
        format!("{head}{}", ALPHABET[value ^ 0b10_0000] as char)
    }

    #[test]
    fn cached_tokens_follow_the_rules_of_the_verifier_they_were_checked_by() {
        let token = hs256_token(&json!({ "sub": "a", "iss": "one", "exp": now() + 600 }));
        let one = hs256().issuer("one");
        let first = one.verify_shared(&token).unwrap();
        let again = one.clone().verify_shared(&token).unwrap();
        assert!(
            Arc::ptr_eq(&first, &again),
            "the second check is a cache hit"
        );
        // A clone reconfigured with other rules does not inherit what the original accepted.
        assert!(one.clone().issuer("two").verify_shared(&token).is_err());
        assert!(one.clone().audience("aud").verify_shared(&token).is_err());
        // A refused token is never cached, and a forged one never matches a cached one.
        let forged = with_last_char_changed(&token);
        assert!(one.verify_shared(&forged).is_err());
        assert!(one.verify_shared(&forged).is_err());
    }

    #[test]
    fn a_cached_token_expires_like_any_other() {
        let token = hs256_token(&json!({ "sub": "a", "exp": now() + 1 }));
        let jwt = hs256().leeway(Duration::ZERO);
        assert!(jwt.verify_shared(&token).is_ok());
        std::thread::sleep(Duration::from_millis(2100));
        assert_eq!(
            jwt.verify_shared(&token).unwrap_err().kind(),
            AuthErrorKind::Expired,
            "the cache does not extend a token's life"
        );
    }

    fn assert_invalid(result: Result<Principal, AuthError>) {
        let err = result.expect_err("token should be refused");
        assert_eq!(err.kind(), AuthErrorKind::InvalidToken);
        assert_eq!(err.description(), "Invalid token");
    }

    fn assert_full_principal(p: &Principal) {
        assert_eq!(p.subject(), "alice");
        assert_eq!(p.method(), AuthMethod::Jwt);
        assert_eq!(p.roles().collect::<Vec<_>>(), ["admin", "ops"]);
        assert_eq!(
            p.scopes().collect::<Vec<_>>(),
            ["audit", "tools:read", "tools:write"]
        );
        assert_eq!(p.client_id(), Some("cli"));
        assert_eq!(p.credential_id(), Some("tok-1"));
        assert!(p.expires_at().is_some());
    }

    fn verdict(jwt: &Jwt, credential: Option<Credential<'_>>) -> Verdict {
        let parts = http::Request::new(()).into_parts().0;
        let request = AuthRequest {
            credential,
            parts: &parts,
        };
        futures::executor::block_on(jwt.authenticate(&request).verdict())
    }

    #[test]
    fn valid_hs256_token_is_accepted() {
        let p = hs256().verify(&hs256_token(&claims())).unwrap();
        assert_full_principal(&p);
    }

    #[test]
    fn valid_es256_token_is_accepted() {
        let key = EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap();
        let token = encode(&Header::new(Algorithm::ES256), &claims(), &key).unwrap();
        let jwt = Jwt::es256_pem(EC_PUBLIC.as_bytes()).unwrap();
        assert_full_principal(&jwt.verify(&token).unwrap());
    }

    #[test]
    fn valid_eddsa_token_is_accepted() {
        let key = EncodingKey::from_ed_pem(ED_PRIVATE.as_bytes()).unwrap();
        let token = encode(&Header::new(Algorithm::EdDSA), &claims(), &key).unwrap();
        let jwt = Jwt::eddsa_pem(ED_PUBLIC.as_bytes()).unwrap();
        assert_full_principal(&jwt.verify(&token).unwrap());
    }

    #[test]
    fn valid_rs256_token_is_accepted() {
        let key = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap();
        let token = encode(&Header::new(Algorithm::RS256), &claims(), &key).unwrap();
        let jwt = Jwt::rs256_pem(RSA_PUBLIC.as_bytes()).unwrap();
        assert_full_principal(&jwt.verify(&token).unwrap());
        // The same key under another RSA algorithm is another verifier: RS256 tokens fail.
        assert_invalid(
            Jwt::rs512_pem(RSA_PUBLIC.as_bytes())
                .unwrap()
                .verify(&token),
        );
    }

    #[test]
    fn azp_is_the_client_id_when_client_id_is_absent() {
        let c = with(claims(), json!({"client_id": null, "azp": "spa"}));
        let p = hs256().verify(&hs256_token(&c)).unwrap();
        assert_eq!(p.client_id(), Some("spa"));
    }

    #[test]
    fn expired_token_says_so() {
        let c = with(claims(), json!({"exp": now() - 3600, "iat": now() - 7200}));
        let err = hs256().verify(&hs256_token(&c)).unwrap_err();
        assert_eq!(err.kind(), AuthErrorKind::Expired);
        assert_eq!(err.description(), "Token expired");
    }

    #[test]
    fn leeway_tolerates_small_skew() {
        let c = with(claims(), json!({"exp": now() - 10}));
        assert!(hs256().verify(&hs256_token(&c)).is_ok());
        let strict = hs256().leeway(Duration::ZERO);
        assert_eq!(
            strict.verify(&hs256_token(&c)).unwrap_err().kind(),
            AuthErrorKind::Expired
        );
    }

    #[test]
    fn token_not_yet_valid_is_refused() {
        let c = with(claims(), json!({"nbf": now() + 3600}));
        assert_invalid(hs256().verify(&hs256_token(&c)));
    }

    #[test]
    fn token_issued_in_the_future_is_refused() {
        let c = with(claims(), json!({"iat": now() + 3600}));
        assert_invalid(hs256().verify(&hs256_token(&c)));
        let c = with(claims(), json!({"iat": now() + 5}));
        assert!(hs256().verify(&hs256_token(&c)).is_ok());
    }

    #[test]
    fn missing_exp_or_sub_is_refused() {
        assert_invalid(hs256().verify(&hs256_token(&with(claims(), json!({"exp": null})))));
        assert_invalid(hs256().verify(&hs256_token(&with(claims(), json!({"sub": null})))));
        assert_invalid(hs256().verify(&hs256_token(&with(claims(), json!({"sub": ""})))));
    }

    #[test]
    fn claims_of_the_wrong_type_are_refused() {
        for patch in [
            json!({"sub": 42}),
            json!({"exp": "tomorrow"}),
            json!({"iat": "now"}),
            json!({"role": ["admin"]}),
            json!({"roles": "admin"}),
            json!({"scope": ["a"]}),
            json!({"scp": 7}),
            json!({"scp": ["a", 1]}),
            json!({"permissions": "a b"}),
            json!({"jti": 1}),
            json!({"client_id": {}}),
        ] {
            let token = hs256_token(&with(claims(), patch.clone()));
            assert_invalid(hs256().verify(&token));
            let _ = patch;
        }
    }

    #[test]
    fn wrong_signature_is_refused() {
        let token = encode(
            &Header::new(Algorithm::HS256),
            &claims(),
            &EncodingKey::from_secret(b"another-secret-that-is-long-enough!!"),
        )
        .unwrap();
        assert_invalid(hs256().verify(&token));
        // A tampered payload under the original signature.
        let good = hs256_token(&claims());
        let mut parts = good.split('.');
        let (header, _, signature) = (parts.next().unwrap(), parts.next(), parts.next().unwrap());
        let forged = URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(&with(claims(), json!({"role": "root"}))).unwrap());
        assert_invalid(hs256().verify(&format!("{header}.{forged}.{signature}")));
    }

    #[test]
    fn alg_none_is_refused() {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims()).unwrap());
        let token = format!("{header}.{payload}.");
        assert!(Credential::Bearer(&token).looks_like_jwt());
        assert_invalid(hs256().verify(&token));
        let Verdict::Reject(err) = verdict(&hs256(), Some(Credential::Bearer(&token))) else {
            panic!("alg none must be rejected, not passed on");
        };
        assert_eq!(err.description(), "Invalid token");
    }

    #[test]
    fn key_confusion_is_refused() {
        // The attacker signs HS256 with the public key bytes as the HMAC secret.
        for (public, jwt) in [
            (RSA_PUBLIC, Jwt::rs256_pem(RSA_PUBLIC.as_bytes()).unwrap()),
            (EC_PUBLIC, Jwt::es256_pem(EC_PUBLIC.as_bytes()).unwrap()),
            (ED_PUBLIC, Jwt::eddsa_pem(ED_PUBLIC.as_bytes()).unwrap()),
        ] {
            let token = encode(
                &Header::new(Algorithm::HS256),
                &claims(),
                &EncodingKey::from_secret(public.as_bytes()),
            )
            .unwrap();
            assert_invalid(jwt.verify(&token));
        }
        // And an HS512 token to an HS256 verifier with the same secret.
        let token = encode(
            &Header::new(Algorithm::HS512),
            &claims(),
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        assert_invalid(hs256().verify(&token));
    }

    #[test]
    fn crit_header_is_refused() {
        let mut header = Header::new(Algorithm::HS256);
        header.crit = Some(vec!["exp".into()]);
        let token = encode(&header, &claims(), &EncodingKey::from_secret(SECRET)).unwrap();
        assert_invalid(hs256().verify(&token));
    }

    #[test]
    fn issuer_is_checked_when_configured() {
        let jwt = hs256().issuer("https://issuer.example");
        let good = with(claims(), json!({"iss": "https://issuer.example"}));
        assert!(jwt.verify(&hs256_token(&good)).is_ok());
        let wrong = with(claims(), json!({"iss": "https://evil.example"}));
        assert_invalid(jwt.verify(&hs256_token(&wrong)));
        assert_invalid(jwt.verify(&hs256_token(&claims())));
        // Without a configured issuer, any is fine.
        assert!(hs256().verify(&hs256_token(&wrong)).is_ok());
    }

    #[test]
    fn audience_is_checked_when_configured() {
        let jwt = hs256().audience("tools").audience("admin-api");
        for aud in [
            json!("tools"),
            json!("admin-api"),
            json!(["other", "tools"]),
        ] {
            let c = with(claims(), json!({ "aud": aud }));
            assert!(jwt.verify(&hs256_token(&c)).is_ok(), "{aud}");
        }
        for aud in [json!("other"), json!(["other"]), json!([])] {
            let c = with(claims(), json!({ "aud": aud }));
            assert_invalid(jwt.verify(&hs256_token(&c)));
        }
        assert_invalid(jwt.verify(&hs256_token(&claims())));
    }

    #[test]
    fn scp_may_be_an_array_or_a_string() {
        let base = with(claims(), json!({"scope": null, "permissions": null}));
        for scp in [json!(["a", "b"]), json!("a b")] {
            let c = with(base.clone(), json!({ "scp": scp }));
            let p = hs256().verify(&hs256_token(&c)).unwrap();
            assert_eq!(p.scopes().collect::<Vec<_>>(), ["a", "b"]);
        }
    }

    #[test]
    fn custom_role_and_scope_claims_are_read() {
        let jwt = hs256()
            .role_claim("https://example.com/role")
            .scope_claims(["perms"]);
        let c = json!({
            "sub": "bob",
            "exp": now() + 60,
            "https://example.com/role": ["editor"],
            "perms": "x y",
            "role": "ignored",
            "scope": "ignored",
        });
        let p = jwt.verify(&hs256_token(&c)).unwrap();
        assert_eq!(p.roles().collect::<Vec<_>>(), ["editor"]);
        assert_eq!(p.scopes().collect::<Vec<_>>(), ["x", "y"]);
        let bad = with(c, json!({"perms": 5}));
        assert_invalid(jwt.verify(&hs256_token(&bad)));
    }

    #[test]
    fn only_jwt_shaped_bearers_are_decided() {
        let jwt = hs256();
        assert!(matches!(verdict(&jwt, None), Verdict::Pass));
        assert!(matches!(
            verdict(&jwt, Some(Credential::Bearer("sk-live-123"))),
            Verdict::Pass
        ));
        let token = hs256_token(&claims());
        assert!(matches!(
            verdict(&jwt, Some(Credential::ApiKey(&token))),
            Verdict::Pass
        ));
        assert!(matches!(
            verdict(&jwt, Some(Credential::Bearer(&token))),
            Verdict::Accept(p) if p.subject() == "alice"
        ));
        assert!(matches!(
            verdict(&jwt, Some(Credential::Bearer("eyJhbGciOi.eyJzdWIi.sig"))),
            Verdict::Reject(_)
        ));
        assert_eq!(jwt.name(), "jwt");
        assert!(jwt.configured_roles().is_empty());
    }

    #[test]
    fn garbage_never_panics() {
        let jwt = hs256();
        for token in [
            "eyJ..",
            "eyJhbGciOiJIUzI1NiJ9..",
            "eyJhbGciOiJIUzI1NiJ9.%%%.sig",
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.!!!",
            "eyJ9.eyJ9.eyJ9",
        ] {
            assert_invalid(jwt.verify(token));
        }
        let huge = with(claims(), json!({"exp": u64::MAX, "iat": 1e300}));
        assert_invalid(jwt.verify(&hs256_token(&huge)));
        // Too far in the future to be a point in time this system can represent.
        let huge = with(claims(), json!({"exp": u64::MAX}));
        assert_invalid(jwt.verify(&hs256_token(&huge)));
        let negative = with(claims(), json!({"iat": -5}));
        assert_invalid(jwt.verify(&hs256_token(&negative)));
    }

    #[test]
    fn short_hmac_secrets_are_refused_without_echoing_them() {
        let err = Jwt::hs256("short-secret-value").unwrap_err();
        assert!(!err.to_string().contains("short-secret-value"));
        assert!(Jwt::hs256([7u8; 32]).is_ok());
        assert!(Jwt::hs384([7u8; 32]).is_err());
        assert!(Jwt::hs384([7u8; 48]).is_ok());
        assert!(Jwt::hs512([7u8; 48]).is_err());
        assert!(Jwt::hs512([7u8; 64]).is_ok());
        assert!(Jwt::hmac(JwtAlgorithm::Rs256, SECRET).is_err());
    }

    #[test]
    fn missing_env_secret_is_reported() {
        let var = "MCP_GATEKEEPER_TEST_UNSET_JWT_SECRET_7f3a";
        assert!(matches!(
            Jwt::hs256_from_env(var),
            Err(ConfigError::MissingEnv(v)) if v == var
        ));
    }

    #[test]
    fn unfit_public_keys_are_refused() {
        assert!(Jwt::rs256_pem(EC_PUBLIC.as_bytes()).is_err());
        assert!(Jwt::rs256_pem(RSA_1024_PUBLIC.as_bytes()).is_err());
        assert!(Jwt::rs256_pem(RSA_PRIVATE.as_bytes()).is_err());
        assert!(Jwt::es256_pem(RSA_PUBLIC.as_bytes()).is_err());
        assert!(Jwt::es256_pem(EC_PRIVATE.as_bytes()).is_err());
        assert!(Jwt::es384_pem(EC_PUBLIC.as_bytes()).is_err());
        assert!(Jwt::eddsa_pem(EC_PUBLIC.as_bytes()).is_err());
        assert!(Jwt::eddsa_pem(b"not a pem").is_err());
        assert!(Jwt::from_pem(JwtAlgorithm::Hs256, RSA_PUBLIC.as_bytes()).is_err());
    }

    #[test]
    fn debug_hides_the_key() {
        let shown = format!("{:?}", hs256());
        assert!(!shown.contains("0123456789abcdef"));
        assert!(shown.contains("<redacted>"));
        assert!(shown.contains("HS256") || shown.contains("Hs256"));
    }

    /// A token with exactly this header and payload JSON, HS256-signed with [`SECRET`] by
    /// `jsonwebtoken`.
    fn signed_raw(header_json: &str, payload_json: &str) -> String {
        let signed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header_json),
            URL_SAFE_NO_PAD.encode(payload_json)
        );
        let key = EncodingKey::from_secret(SECRET);
        let signature = jsonwebtoken::crypto::sign(signed.as_bytes(), &key, Algorithm::HS256);
        format!("{signed}.{}", signature.unwrap())
    }

    #[test]
    fn a_payload_that_is_not_one_json_object_is_refused() {
        let exp = now() + 600;
        let header = r#"{"alg":"HS256","typ":"JWT"}"#;
        let good = format!(r#"{{"sub":"a","exp":{exp}}}"#);
        assert!(hs256().verify(&signed_raw(header, &good)).is_ok());
        for payload in [
            "not json".to_owned(),
            String::new(),
            "null".to_owned(),
            r#""a""#.to_owned(),
            // What a derived struct would read by position.
            format!(r#"["a",{exp}]"#),
            format!("{good}x"),
            format!("{good}{good}"),
            format!(r#"{{"sub":"a","exp":{exp}"#),
        ] {
            assert_invalid(hs256().verify(&signed_raw(header, &payload)));
        }
    }

    #[test]
    fn a_claim_given_twice_is_refused() {
        let exp = now() + 600;
        let header = r#"{"alg":"HS256"}"#;
        for payload in [
            format!(r#"{{"sub":"a","sub":"b","exp":{exp}}}"#),
            format!(r#"{{"sub":"a","exp":{exp},"exp":{exp}}}"#),
            format!(r#"{{"sub":"a","exp":{exp},"role":"x","role":"admin"}}"#),
            format!(r#"{{"sub":"a","exp":{exp},"nbf":null,"nbf":1}}"#),
        ] {
            assert_invalid(hs256().verify(&signed_raw(header, &payload)));
        }
        let jwt = hs256().issuer("one").audience("tools").role_claim("grp");
        for payload in [
            format!(r#"{{"sub":"a","exp":{exp},"aud":"tools","iss":"one","iss":"one"}}"#),
            format!(r#"{{"sub":"a","exp":{exp},"iss":"one","aud":"x","aud":"tools"}}"#),
            format!(r#"{{"sub":"a","exp":{exp},"iss":"one","aud":"tools","grp":"a","grp":"b"}}"#),
        ] {
            assert_invalid(jwt.verify(&signed_raw(header, &payload)));
        }
        // Claims nobody reads may repeat, as JSON allows.
        let payload = format!(r#"{{"sub":"a","exp":{exp},"x":1,"x":2}}"#);
        assert!(hs256().verify(&signed_raw(header, &payload)).is_ok());
    }

    #[test]
    fn claims_with_escapes_are_read() {
        let exp = now() + 600;
        let payload =
            format!(r#"{{"\u0073ub":"al\u0069ce","exp":{exp},"role":"a\"b","scope":"x\ty"}}"#);
        let p = hs256()
            .verify(&signed_raw(r#"{"alg":"HS256"}"#, &payload))
            .unwrap();
        assert_eq!(p.subject(), "alice");
        assert_eq!(p.roles().collect::<Vec<_>>(), ["a\"b"]);
        assert_eq!(p.scopes().collect::<Vec<_>>(), ["x", "y"]);
    }

    #[test]
    fn a_token_for_another_algorithm_is_refused_though_its_signature_is_valid() {
        let es = encode(
            &Header::new(Algorithm::ES256),
            &claims(),
            &EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap(),
        )
        .unwrap();
        let ed = encode(
            &Header::new(Algorithm::EdDSA),
            &claims(),
            &EncodingKey::from_ed_pem(ED_PRIVATE.as_bytes()).unwrap(),
        )
        .unwrap();
        let rs = encode(
            &Header::new(Algorithm::RS256),
            &claims(),
            &EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap(),
        )
        .unwrap();
        let es256 = Jwt::es256_pem(EC_PUBLIC.as_bytes()).unwrap();
        let eddsa = Jwt::eddsa_pem(ED_PUBLIC.as_bytes()).unwrap();
        let rs256 = Jwt::rs256_pem(RSA_PUBLIC.as_bytes()).unwrap();
        assert!(es256.verify(&es).is_ok());
        for token in [&es, &ed, &rs] {
            assert_invalid(hs256().verify(token));
        }
        assert_invalid(es256.verify(&hs256_token(&claims())));
        assert_invalid(es256.verify(&ed));
        assert_invalid(es256.verify(&rs));
        assert_invalid(eddsa.verify(&es));
        assert_invalid(rs256.verify(&es));
        // Nor is an ES256 token one for an ES384 verifier.
        let es384 = Jwt::es384_pem(&p384_public_pem(&p384_pair().1)).unwrap();
        assert_invalid(es384.verify(&es));
    }

    #[test]
    fn aud_of_the_wrong_type_is_refused_when_audiences_are_configured() {
        let jwt = hs256().audience("tools");
        for aud in [
            json!(5),
            json!([5]),
            json!(["tools", 5]),
            json!({"tools": true}),
            json!([["tools"]]),
            json!(true),
        ] {
            let c = with(claims(), json!({ "aud": aud }));
            assert_invalid(jwt.verify(&hs256_token(&c)));
            // Without configured audiences `aud` is not read, whatever it holds.
            assert!(hs256().verify(&hs256_token(&c)).is_ok(), "{aud}");
        }
        let c = with(claims(), json!({"aud": ["x", "tools", "y"]}));
        assert!(jwt.verify(&hs256_token(&c)).is_ok());
    }

    #[test]
    fn iss_must_be_the_configured_string() {
        let jwt = hs256().issuer("https://issuer.example");
        for iss in [
            json!(["https://issuer.example"]),
            json!(5),
            json!({"iss": "https://issuer.example"}),
            json!("https://issuer.example/"),
            json!("HTTPS://ISSUER.EXAMPLE"),
            json!(""),
        ] {
            let c = with(claims(), json!({ "iss": iss }));
            assert_invalid(jwt.verify(&hs256_token(&c)));
            // Without a configured issuer `iss` is not read, whatever it holds.
            assert!(hs256().verify(&hs256_token(&c)).is_ok(), "{iss}");
        }
        let with_null = signed_raw(
            r#"{"alg":"HS256"}"#,
            &format!(r#"{{"sub":"a","exp":{},"iss":null}}"#, now() + 60),
        );
        assert_invalid(jwt.verify(&with_null));
    }

    #[test]
    fn nbf_is_honoured_within_the_leeway_and_must_be_a_date() {
        let soon = with(claims(), json!({"nbf": now() + 10}));
        assert!(hs256().verify(&hs256_token(&soon)).is_ok());
        assert_invalid(hs256().leeway(Duration::ZERO).verify(&hs256_token(&soon)));
        let past = with(claims(), json!({"nbf": now() - 10}));
        assert!(
            hs256()
                .leeway(Duration::ZERO)
                .verify(&hs256_token(&past))
                .is_ok()
        );
        let fraction = with(claims(), json!({"nbf": (now() - 10) as f64 + 0.5}));
        assert!(hs256().verify(&hs256_token(&fraction)).is_ok());
        for nbf in [
            json!("now"),
            json!(-1),
            json!(-0.5),
            json!([1]),
            json!(1e300),
        ] {
            let c = with(claims(), json!({ "nbf": nbf }));
            assert_invalid(hs256().verify(&hs256_token(&c)));
        }
        let payload = format!(r#"{{"sub":"a","exp":{},"nbf":null}}"#, now() + 60);
        assert!(
            hs256()
                .verify(&signed_raw(r#"{"alg":"HS256"}"#, &payload))
                .is_ok()
        );
    }

    #[test]
    fn exp_may_be_a_fraction_but_not_negative_or_null() {
        let fraction = with(claims(), json!({"exp": (now() + 60) as f64 + 0.25}));
        assert!(hs256().verify(&hs256_token(&fraction)).is_ok());
        for exp in [json!(-1), json!(-1.5), json!(true), json!([now() + 60])] {
            let c = with(claims(), json!({ "exp": exp }));
            assert_invalid(hs256().verify(&hs256_token(&c)));
        }
        let payload = r#"{"sub":"a","exp":null}"#;
        assert_invalid(hs256().verify(&signed_raw(r#"{"alg":"HS256"}"#, payload)));
    }

    #[test]
    fn an_expired_token_is_still_invalid_when_it_is_malformed() {
        let old = now() - 3600;
        for patch in [json!({"sub": null}), json!({"sub": 5}), json!({"role": 5})] {
            let c = with(claims(), patch);
            let c = with(c, json!({ "exp": old }));
            assert_invalid(hs256().verify(&hs256_token(&c)));
        }
        // A missing issuer or audience is reported as invalid, not expired.
        let c = with(claims(), json!({ "exp": old }));
        assert_invalid(hs256().issuer("one").verify(&hs256_token(&c)));
        assert_invalid(hs256().audience("aud").verify(&hs256_token(&c)));
    }

    #[test]
    fn claims_this_verifier_does_not_read_are_not_type_checked() {
        let jwt = hs256().role_claim("grp").scope_claims(["perms"]);
        let c = with(
            claims(),
            json!({"scp": 7, "iss": 1, "aud": {}, "other": [1, {"a": null}], "grp": ["g"]}),
        );
        let p = jwt.verify(&hs256_token(&c)).unwrap();
        assert_eq!(p.roles().collect::<Vec<_>>(), ["g", "ops", "admin"]);
        // `scp` is read by the default verifier, which then checks it.
        assert_invalid(hs256().verify(&hs256_token(&c)));
    }

    fn p384_pair() -> (Vec<u8>, Vec<u8>) {
        use aws_lc_rs::{
            encoding::AsDer,
            rand::SystemRandom,
            signature::{ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, KeyPair},
        };
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &rng).unwrap();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
        let spki = pair.public_key().as_der().unwrap();
        (pkcs8.as_ref().to_vec(), spki.as_ref().to_vec())
    }

    fn p384_public_pem(spki: &[u8]) -> Vec<u8> {
        use base64::engine::general_purpose::STANDARD;
        let body = STANDARD.encode(spki);
        let lines: Vec<&str> = body
            .as_bytes()
            .chunks(64)
            .map(|line| std::str::from_utf8(line).unwrap())
            .collect();
        format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            lines.join("\n")
        )
        .into_bytes()
    }

    #[test]
    fn valid_es384_token_is_accepted() {
        let (pkcs8, spki) = p384_pair();
        let key = EncodingKey::from_ec_der(&pkcs8);
        let token = encode(&Header::new(Algorithm::ES384), &claims(), &key).unwrap();
        let jwt = Jwt::es384_pem(&p384_public_pem(&spki)).unwrap();
        assert_full_principal(&jwt.verify(&token).unwrap());
        // A P-384 key is not a P-256 one.
        assert!(Jwt::es256_pem(&p384_public_pem(&spki)).is_err());
        let forged = with_last_char_changed(&token);
        assert_invalid(jwt.verify(&forged));
    }

    #[test]
    fn rs384_rs512_hs384_and_hs512_tokens_are_accepted() {
        let rsa = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap();
        for (algorithm, jwt) in [
            (Algorithm::RS384, Jwt::rs384_pem(RSA_PUBLIC.as_bytes())),
            (Algorithm::RS512, Jwt::rs512_pem(RSA_PUBLIC.as_bytes())),
        ] {
            let token = encode(&Header::new(algorithm), &claims(), &rsa).unwrap();
            assert_full_principal(&jwt.unwrap().verify(&token).unwrap());
        }
        let secret = [9u8; 64];
        let hmac = EncodingKey::from_secret(&secret);
        for (algorithm, jwt) in [
            (Algorithm::HS384, Jwt::hs384(secret)),
            (Algorithm::HS512, Jwt::hs512(secret)),
        ] {
            let token = encode(&Header::new(algorithm), &claims(), &hmac).unwrap();
            let jwt = jwt.unwrap();
            assert_full_principal(&jwt.verify(&token).unwrap());
            assert_invalid(hs256().verify(&token));
        }
    }

    #[test]
    fn an_oauth_verifier_with_an_unusable_key_refuses_every_token() {
        let zero = URL_SAFE_NO_PAD.encode([0u8; 32]);
        let off_curve = DecodingKey::from_ec_components(&zero, &zero).unwrap();
        let jwt = Jwt::from_decoding_key(JwtAlgorithm::Es256, off_curve);
        assert_eq!(jwt.algorithm(), JwtAlgorithm::Es256);
        let token = encode(
            &Header::new(Algorithm::ES256),
            &claims(),
            &EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap(),
        )
        .unwrap();
        assert_invalid(jwt.verify(&token));
        // The same path with a good key accepts, and says how the caller authenticated.
        let good = DecodingKey::from_ec_pem(EC_PUBLIC.as_bytes()).unwrap();
        let p = Jwt::from_decoding_key(JwtAlgorithm::Es256, good)
            .verify(&token)
            .unwrap();
        assert_eq!(p.method(), AuthMethod::OAuth);
    }
}
