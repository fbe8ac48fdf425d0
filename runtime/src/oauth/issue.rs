//! Minting access tokens (RFC 9068 JWTs signed with the current key, bound to a client
//! certificate when one was presented: RFC 8705 §3) and refresh tokens.

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use serde::Serialize;

use super::{AsState, error::OAuthError, random_id, random_secret};

/// What an access token is issued for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TokenGrant<'a> {
    /// The `sub`: the user, or the client itself for client credentials.
    pub(crate) subject: &'a str,
    /// The client the token is issued to.
    pub(crate) client_id: &'a str,
    /// Granted scopes, space-separated (may be empty).
    pub(crate) scope: &'a str,
    /// The role the token carries, if any.
    pub(crate) role: Option<&'a str>,
    /// The audience: the canonical resource URI.
    pub(crate) resource: &'a str,
    /// The refresh-token family (grant) the token belongs to; revoking the family revokes it.
    pub(crate) family_id: Option<&'a str>,
    /// The SHA-256 thumbprint of the client certificate the token is bound to, if any.
    pub(crate) certificate: Option<&'a [u8; 32]>,
}

/// An issued access token.
pub(crate) struct AccessToken {
    /// The compact JWT.
    pub(crate) token: String,
    /// Its `jti`.
    pub(crate) jti: String,
    /// Its lifetime in seconds (`expires_in`).
    pub(crate) expires_in: i64,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    client_id: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    scope: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'a str>,
    iat: i64,
    exp: i64,
    jti: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    cnf: Option<Confirmation>,
}

/// RFC 8705 §3.1: the confirmation claim of a certificate-bound token.
#[derive(Serialize)]
struct Confirmation {
    /// The base64url SHA-256 of the certificate's DER encoding.
    #[serde(rename = "x5t#S256")]
    x5t_s256: String,
}

/// The separator between the family id and the random part of a `jti`. Family ids and random
/// ids are base64url, which never contains it.
pub(crate) const JTI_FAMILY_SEPARATOR: char = '.';

/// The family a `jti` names, if the token belongs to a refresh-token family.
pub(crate) fn family_of(jti: &str) -> Option<&str> {
    jti.split_once(JTI_FAMILY_SEPARATOR)
        .map(|(family, _)| family)
}

/// Signs an access token for `grant`, valid from `now`.
pub(crate) fn access_token(
    state: &AsState,
    grant: TokenGrant<'_>,
    now: i64,
) -> Result<AccessToken, OAuthError> {
    // A family's tokens carry the family in their `jti`, so the resource server can refuse
    // every token of a revoked family (a replayed code revokes what was issued from it).
    let jti = match grant.family_id {
        Some(family) => format!("{family}{JTI_FAMILY_SEPARATOR}{}", random_id()),
        None => random_id(),
    };
    let expires_in = state.access_token_lifetime;
    let claims = Claims {
        iss: &state.issuer,
        sub: grant.subject,
        aud: grant.resource,
        client_id: grant.client_id,
        scope: grant.scope,
        role: grant.role,
        iat: now,
        exp: now + expires_in,
        jti: &jti,
        cnf: grant.certificate.map(|thumbprint| Confirmation {
            x5t_s256: URL_SAFE_NO_PAD.encode(thumbprint),
        }),
    };
    let token = state.keys.current().sign(&claims).map_err(|error| {
        tracing::error!(target: crate::AUDIT_TARGET, %error, "signing an access token failed");
        OAuthError::unavailable()
    })?;
    Ok(AccessToken {
        token,
        jti,
        expires_in,
    })
}

/// A new refresh token (or authorization code): 256 random bits. Only its hash is stored.
pub(crate) fn refresh_token() -> String {
    random_secret()
}

/// Normalises a space-separated scope list: no duplicates, sorted, single spaces.
pub(crate) fn normalize_scope<'a>(scopes: impl IntoIterator<Item = &'a str>) -> String {
    let mut list: Vec<&str> = scopes.into_iter().filter(|s| !s.is_empty()).collect();
    list.sort_unstable();
    list.dedup();
    list.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_read_back_from_jtis() {
        assert_eq!(family_of("fam123.rand456"), Some("fam123"));
        assert_eq!(family_of("rand456"), None);
    }

    #[test]
    fn scopes_are_normalized() {
        assert_eq!(normalize_scope("b a  b c".split(' ')), "a b c");
        assert_eq!(normalize_scope([]), "");
    }
}
