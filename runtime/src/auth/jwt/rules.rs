//! What a verified token must say, and how its claims become a [`Principal`]: the rules every
//! token verifier of this crate shares (a [`Jwt`](super::Jwt) with a configured key, the
//! verifier of an external identity provider, and the answers of an introspection endpoint).
//!
//! The signature, `exp`, `iss` and `aud` of a JWT are checked by `jsonwebtoken` under the
//! [`Validation`] these rules build; everything else (`nbf`, `iat`, the subject, roles and
//! scopes, where they are found and how role names are mapped) is read here, each claim with
//! its type.

use std::{
    collections::BTreeMap,
    fmt,
    time::{Duration, UNIX_EPOCH},
};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{DecodingKey, Header, Validation, errors::ErrorKind};
use serde_json::Value;

use super::{
    JwtAlgorithm,
    claims::{ALWAYS_READ, Claims, Refusal},
    now, reason, refused,
};
use crate::{AuthMethod, Principal, auth::AuthError};

/// The claims every verifier of an external identity provider reads besides its role and
/// scope claims: only registered ones, since a provider's private claims (`role`, `groups`,
/// ...) may have any shape when they are not the configured ones.
#[cfg(feature = "oidc")]
pub(crate) const REGISTERED_READ: [&str; 7] =
    ["sub", "exp", "nbf", "iat", "jti", "client_id", "azp"];

/// Where in a token's claims a value is found: a claim name, or a path through nested objects
/// (`realm_access.roles`, `resource_access.my-client.roles`).
///
/// Parsed from a string by splitting at dots, except that a name containing `://` is one claim
/// (Auth0's namespaced claims, `https://example.com/roles`, hold dots of their own). A path
/// whose segments contain dots is built with [`ClaimPath::segments`].
///
/// ```
/// use mcp_gatekeeper::auth::ClaimPath;
///
/// assert_eq!(ClaimPath::from("realm_access.roles").to_string(), "realm_access.roles");
/// assert_eq!(ClaimPath::from("https://example.com/roles").len(), 1);
/// assert_eq!(ClaimPath::segments(["resource_access", "my.client", "roles"]).len(), 3);
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ClaimPath(Box<[String]>);

impl ClaimPath {
    /// A path of exactly these segments (none of them split further).
    pub fn segments<I, S>(segments: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self(segments.into_iter().map(Into::into).collect())
    }

    /// How many segments the path has (1 for a top-level claim).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the path has no segment at all (it then finds nothing).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The segments.
    pub(crate) fn as_slice(&self) -> &[String] {
        &self.0
    }

    /// The name, when the path is one top-level claim.
    fn single(&self) -> Option<&str> {
        match &*self.0 {
            [name] => Some(name),
            _ => None,
        }
    }
}

impl From<&str> for ClaimPath {
    fn from(path: &str) -> Self {
        if path.contains("://") {
            return Self::segments([path]);
        }
        Self::segments(path.split('.'))
    }
}

impl From<String> for ClaimPath {
    fn from(path: String) -> Self {
        Self::from(path.as_str())
    }
}

impl From<&String> for ClaimPath {
    fn from(path: &String) -> Self {
        Self::from(path.as_str())
    }
}

impl fmt::Display for ClaimPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("."))
    }
}

impl fmt::Debug for ClaimPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// The rules a token is accepted under, and how its claims make a principal.
#[derive(Clone, Debug)]
pub(crate) struct TokenRules {
    /// The `iss` required, when one is.
    pub(crate) issuer: Option<String>,
    /// `aud` must contain one of these (none: no check, see `any_audience`).
    pub(crate) audiences: Vec<String>,
    /// Set on purpose: no `aud` check.
    pub(crate) any_audience: bool,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
    pub(crate) leeway: u64,
    /// Where the caller's roles are.
    pub(crate) role_claim: ClaimPath,
    /// Whether the `roles` array claim is read as well (what `Jwt` has always done).
    pub(crate) also_roles_claim: bool,
    /// Where granted scopes are, as a union.
    pub(crate) scope_claims: Vec<ClaimPath>,
    /// Identity-provider role or group names → this server's roles. Empty: names are taken as
    /// they are; otherwise only mapped names grant anything.
    pub(crate) role_map: BTreeMap<String, Vec<String>>,
    /// The claims type-checked on every token besides the role and scope claims.
    pub(crate) always_read: &'static [&'static str],
    /// How principals built under these rules say they authenticated.
    pub(crate) method: AuthMethod,
    /// Whether principals carry the issuer (a server trusting several issuers keeps their
    /// subjects apart).
    pub(crate) principal_issuer: bool,
}

impl TokenRules {
    /// The rules of a `Jwt` with a configured key: its historic defaults.
    pub(crate) fn for_configured_key() -> Self {
        Self {
            issuer: None,
            audiences: Vec::new(),
            any_audience: false,
            leeway: super::DEFAULT_LEEWAY.as_secs(),
            role_claim: ClaimPath::from(super::DEFAULT_ROLE_CLAIM),
            also_roles_claim: true,
            scope_claims: super::DEFAULT_SCOPE_CLAIMS
                .iter()
                .map(|c| ClaimPath::from(*c))
                .collect(),
            role_map: BTreeMap::new(),
            always_read: &ALWAYS_READ,
            method: AuthMethod::Jwt,
            principal_issuer: false,
        }
    }

    /// The rules of tokens from an external identity provider: `roles` as the role claim,
    /// `scope`, `scp` and `permissions` as scope claims, only registered claims type-checked.
    #[cfg(feature = "oidc")]
    pub(crate) fn for_identity_provider(issuer: String) -> Self {
        Self {
            issuer: Some(issuer),
            role_claim: ClaimPath::from(super::ROLES_CLAIM),
            also_roles_claim: false,
            always_read: &REGISTERED_READ,
            method: AuthMethod::OAuth,
            principal_issuer: true,
            ..Self::for_configured_key()
        }
    }

    /// What `jsonwebtoken` checks for a token signed with `algorithm` under these rules.
    pub(crate) fn validation(&self, algorithm: JwtAlgorithm) -> Validation {
        let mut validation = Validation::new(algorithm.to_jsonwebtoken());
        validation.leeway = self.leeway;
        validation.validate_exp = true;
        // `nbf` is checked in `principal`: `jsonwebtoken` refuses `"nbf": null`, which this
        // crate has always read as no `nbf`, as it reads every other `null` claim.
        validation.validate_nbf = false;
        let mut required = vec!["exp", "sub"];
        match &self.issuer {
            Some(issuer) => {
                validation.set_issuer(&[issuer]);
                required.push("iss");
            }
            None => validation.iss = None,
        }
        if self.audiences.is_empty() {
            // No `aud` check at all (`accept_tokens_for_any_audience`, or a verifier the server
            // refuses to start with): `jsonwebtoken` would otherwise refuse every `aud`.
            validation.validate_aud = false;
        } else {
            validation.set_audience(&self.audiences);
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);
        validation
    }

    /// Verifies `token` with `key` under `validation` (built by [`validation`](Self::validation)
    /// for the key's algorithm) and builds its principal.
    pub(crate) fn verify(
        &self,
        token: &str,
        key: &DecodingKey,
        validation: &Validation,
    ) -> Result<Principal, AuthError> {
        match jsonwebtoken::decode::<Claims>(token, key, validation) {
            Ok(data) => {
                check_header(&data.header).map_err(refused)?;
                let read = self.read(&data.claims).map_err(refused)?;
                self.principal(read, now())
            }
            Err(error) if matches!(error.kind(), ErrorKind::ExpiredSignature) => {
                Err(self.expired(token))
            }
            Err(error) => Err(refused(reason(error.kind()))),
        }
    }

    /// What an expired token is told. `jsonwebtoken` checks expiry before the claims that only
    /// this crate reads, so a token whose other claims are malformed would be reported as
    /// expired, and its client would fetch a new one in vain; such a token is invalid, as it
    /// always was. `decode` reports expiry only once the signature has verified, so reading the
    /// payload again without verifying it reads what the signature covers.
    fn expired(&self, token: &str) -> AuthError {
        match jsonwebtoken::dangerous::insecure_decode::<Claims>(token) {
            Ok(data) if check_header(&data.header).is_ok() && self.read(&data.claims).is_ok() => {
                AuthError::expired()
            }
            _ => refused("claim_format"),
        }
    }

    /// Builds the principal of an RFC 7662 introspection answer under these rules: `active`
    /// must be `true`; `iss`, when the answer has one, must be the issuer; `aud` must name an
    /// audience unless any is accepted; `exp`, `nbf` and `iat`, when present, are checked as a
    /// JWT's. The subject is `sub`, else `username`, else `client_id` (a token a client got for
    /// itself has no user).
    #[cfg(feature = "oidc")]
    pub(crate) fn introspected(&self, answer: &Claims, now: u64) -> Result<Principal, AuthError> {
        let refuse = |reason| refused(reason);
        if answer.get("active").map_err(refuse)? != Some(&serde_json::Value::Bool(true)) {
            return Err(refused("inactive"));
        }
        if let (Some(issuer), Some(iss)) = (&self.issuer, answer.string("iss").map_err(refuse)?)
            && iss != issuer
        {
            return Err(refused("issuer"));
        }
        if !self.audiences.is_empty() {
            let mut audiences = Vec::new();
            answer
                .strings_at(&ClaimPath::from("aud"), false, &mut audiences)
                .map_err(refuse)?;
            if !audiences
                .iter()
                .any(|a| self.audiences.iter().any(|c| c == a))
            {
                return Err(refused("audience"));
            }
        }
        let mut read = self.read_claims(answer, false).map_err(refuse)?;
        if read
            .exp
            .is_some_and(|exp| exp.saturating_add(self.leeway) < now)
        {
            return Err(AuthError::expired());
        }
        if read.sub.is_empty() {
            read.sub = answer
                .string("username")
                .map_err(refuse)?
                .filter(|u| !u.is_empty())
                .or(read.client_id)
                .unwrap_or_default();
        }
        self.principal(read, now)
    }

    /// Reads the claims of a JWT `jsonwebtoken` accepted (`sub` and `exp` required).
    fn read<'c>(&'c self, claims: &'c Claims) -> Result<Read<'c>, Refusal> {
        if self.issuer.is_some() {
            claims.string("iss")?;
        }
        if !self.audiences.is_empty() {
            claims.check_strings("aud")?;
        }
        let read = self.read_claims(claims, true)?;
        if read.exp.is_none() {
            return Err("missing_claim");
        }
        Ok(read)
    }

    /// Reads the claims these rules use, each with its type, none given twice: the ones every
    /// verifier of this kind reads, and the role and scope claims. `sub` is required when
    /// `require_sub` (empty otherwise).
    fn read_claims<'c>(
        &'c self,
        claims: &'c Claims,
        require_sub: bool,
    ) -> Result<Read<'c>, Refusal> {
        for name in self.always_read {
            claims.get(name)?;
        }
        let sub = match claims.string("sub")? {
            Some(sub) => sub,
            None if require_sub => return Err("missing_claim"),
            None => "",
        };
        Ok(Read {
            sub,
            exp: claims.date("exp")?,
            nbf: claims.date("nbf")?,
            iat: claims.date("iat")?,
            jti: claims.string("jti")?,
            client_id: claims.string("client_id")?.or(claims.string("azp")?),
            roles: self.roles(claims)?,
            scopes: self.scopes(claims)?,
            certificate: certificate_confirmation(claims)?,
        })
    }

    /// Checks what `jsonwebtoken` leaves to us, and builds the principal.
    fn principal(&self, read: Read<'_>, now: u64) -> Result<Principal, AuthError> {
        let latest = now.saturating_add(self.leeway);
        if read.nbf.is_some_and(|nbf| nbf > latest) {
            return Err(refused("not_yet_valid"));
        }
        if read.iat.is_some_and(|iat| iat > latest) {
            return Err(refused("issued_in_future"));
        }
        if read.sub.is_empty() {
            return Err(refused("empty_sub"));
        }
        let mut builder = Principal::builder(self.method, read.sub)
            .roles(read.roles)
            .scopes(read.scopes);
        if let Some(exp) = read.exp {
            let expires_at = UNIX_EPOCH
                .checked_add(Duration::from_secs(exp))
                .ok_or_else(|| refused("claim_format"))?;
            builder = builder.expires_at(expires_at);
        }
        if let Some(client_id) = read.client_id.filter(|c| !c.is_empty()) {
            builder = builder.client_id(client_id);
        }
        if let Some(jti) = read.jti.filter(|j| !j.is_empty()) {
            builder = builder.credential_id(jti);
        }
        if let Some(thumbprint) = read.certificate {
            // Checked against the request's certificate on every request (`AuthChain`), since
            // the principal is cached and the certificate comes with each connection.
            builder = builder.certificate_thumbprint(thumbprint);
        }
        if self.principal_issuer
            && let Some(issuer) = &self.issuer
        {
            builder = builder.issuer(issuer.as_str());
        }
        Ok(builder.build())
    }

    fn roles<'c>(&'c self, claims: &'c Claims) -> Result<Vec<&'c str>, Refusal> {
        let mut names = Vec::new();
        claims.strings_at(&self.role_claim, false, &mut names)?;
        if self.also_roles_claim && self.role_claim.single() != Some(super::ROLES_CLAIM) {
            claims.strings(super::ROLES_CLAIM, false, &mut names)?;
        }
        names.retain(|r| !r.is_empty());
        let mut roles: Vec<&str> = Vec::with_capacity(names.len());
        let mut grant = |role: &'c str| {
            // The principal only removes adjacent duplicates; `role: a` + `roles: [b, a]` has
            // others.
            if !roles.contains(&role) {
                roles.push(role);
            }
        };
        if self.role_map.is_empty() {
            names.into_iter().for_each(&mut grant);
        } else {
            for name in names {
                for role in self.role_map.get(name).into_iter().flatten() {
                    grant(role);
                }
            }
        }
        Ok(roles)
    }

    fn scopes<'c>(&self, claims: &'c Claims) -> Result<Vec<&'c str>, Refusal> {
        let mut scopes = Vec::new();
        for path in &self.scope_claims {
            claims.strings_at(path, true, &mut scopes)?;
        }
        scopes.retain(|s| !s.is_empty());
        Ok(scopes)
    }

    /// The roles these rules can grant when they map names (checked against the tools' roles
    /// when a server is built); none when roles are taken from tokens as they are.
    pub(crate) fn mapped_roles(&self) -> Vec<String> {
        let mut roles: Vec<String> = self.role_map.values().flatten().cloned().collect();
        roles.sort_unstable();
        roles.dedup();
        roles
    }

    /// Maps identity-provider role (or group) name `from` to this server's role `to`.
    pub(crate) fn map_role(&mut self, from: String, to: String) {
        let roles = self.role_map.entry(from).or_default();
        if !roles.contains(&to) {
            roles.push(to);
        }
    }

    /// Whether a server may be built with these rules: they must check the audience, unless
    /// told not to.
    pub(crate) fn check(&self) -> Result<(), crate::ConfigError> {
        if self.audiences.is_empty() && !self.any_audience {
            return Err(crate::ConfigError::MissingAudience);
        }
        Ok(())
    }
}

/// The claims of a token, read and type-checked, that the principal is built from.
struct Read<'c> {
    /// Empty when the token has none (introspection answers only).
    sub: &'c str,
    /// Required of a JWT; optional in an introspection answer.
    exp: Option<u64>,
    nbf: Option<u64>,
    iat: Option<u64>,
    jti: Option<&'c str>,
    /// `client_id`, or else `azp`.
    client_id: Option<&'c str>,
    roles: Vec<&'c str>,
    scopes: Vec<&'c str>,
    /// `cnf.x5t#S256`, decoded.
    certificate: Option<[u8; 32]>,
}

/// The client certificate a token (or an introspection answer, RFC 8705 §3.2) is bound to:
/// `cnf` holding `x5t#S256`, the base64url SHA-256 of the certificate (RFC 8705 §3.1). A token
/// bound in a way this crate cannot check (a DPoP key's `jkt`, RFC 7800's `jwk`, ...) is
/// refused rather than accepted as a plain bearer token, which would drop the binding its
/// issuer asked for.
fn certificate_confirmation(claims: &Claims) -> Result<Option<[u8; 32]>, Refusal> {
    let Some(cnf) = claims.get("cnf")? else {
        return Ok(None);
    };
    let Value::Object(members) = cnf else {
        return Err("claim_format");
    };
    if members.keys().any(|name| name != "x5t#S256") {
        return Err("unsupported_confirmation");
    }
    let Some(Value::String(encoded)) = members.get("x5t#S256") else {
        return Err("claim_format");
    };
    let mut thumbprint = [0u8; 32];
    match URL_SAFE_NO_PAD.decode_slice(encoded, &mut thumbprint) {
        Ok(32) => Ok(Some(thumbprint)),
        _ => Err("claim_format"),
    }
}

/// `jsonwebtoken` 12 refuses every `crit` but `["b64"]` with `"b64": true`, which changes
/// nothing; this crate understands no extension at all, so it refuses that one too.
pub(crate) fn check_header(header: &Header) -> Result<(), Refusal> {
    if header.crit.is_some() {
        return Err("crit_header");
    }
    Ok(())
}
