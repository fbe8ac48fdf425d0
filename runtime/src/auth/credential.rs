//! Finding the one credential a request presents.

use http::{HeaderMap, HeaderName, header};

use super::{AuthError, AuthErrorKind};

/// The header that carries an API key when it is not sent as a bearer token.
pub const API_KEY_HEADER: &str = "x-api-key";

/// [`API_KEY_HEADER`] as a header name, so a lookup does not parse the name again.
static API_KEY_HEADER_NAME: HeaderName = HeaderName::from_static(API_KEY_HEADER);

/// A kind of credential a client can present, so a server can tell clients what it accepts
/// (see [`Authenticator::accepted_credentials`](super::Authenticator::accepted_credentials)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CredentialKind {
    /// `Authorization: Bearer <token>`.
    Bearer,
    /// `X-API-Key: <key>`.
    ApiKey,
}

impl CredentialKind {
    /// How a client sends it, as the answer to a request without a credential names it.
    pub fn how_to_send(self) -> &'static str {
        match self {
            CredentialKind::Bearer => "`Authorization: Bearer <token>`",
            CredentialKind::ApiKey => "`X-API-Key: <key>`",
        }
    }
}

/// What a request whose `Authorization` header uses another scheme than `Bearer` is told. Such a
/// request carries no authentication information this server can use (RFC 6750 §3.1), so it is
/// answered like one without a credential, not as a malformed request.
pub const UNSUPPORTED_SCHEME: &str = "Unsupported authorization scheme";

/// A credential presented by the client. Borrowed from the request headers; never stored.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Credential<'a> {
    /// `Authorization: Bearer <token>`.
    Bearer(&'a str),
    /// `X-API-Key: <key>`.
    ApiKey(&'a str),
}

impl<'a> Credential<'a> {
    /// The secret itself. Handle with care: never log it.
    pub fn secret(&self) -> &'a str {
        match self {
            Credential::Bearer(s) | Credential::ApiKey(s) => s,
        }
    }

    /// Whether the secret has the shape of a compact JWS (`header.payload.signature`).
    pub fn looks_like_jwt(&self) -> bool {
        let s = self.secret();
        s.bytes().filter(|&b| b == b'.').count() == 2 && s.starts_with("eyJ")
    }

    /// Extracts the single credential of a request.
    ///
    /// Refuses, with `invalid_request`, a request that presents more than one credential
    /// (several `Authorization` headers, or both `Authorization` and `X-API-Key`): which one
    /// would count is ambiguous, and ambiguity is where bypasses live. Also refuses empty
    /// tokens, headers that are not visible ASCII and `Authorization` values without a
    /// well-formed scheme. A well-formed scheme other than `Bearer` (`Basic`, `Digest`) is
    /// refused as [`AuthErrorKind::Missing`] with [`UNSUPPORTED_SCHEME`]: RFC 6750 §3.1 treats
    /// it as no authentication information, which gets a challenge without an error code.
    pub fn from_headers(headers: &'a HeaderMap) -> Result<Option<Self>, AuthError> {
        let mut authorization = headers.get_all(header::AUTHORIZATION).iter();
        let mut api_key = headers.get_all(&API_KEY_HEADER_NAME).iter();
        let (first_auth, first_key) = (authorization.next(), api_key.next());
        if authorization.next().is_some() || api_key.next().is_some() {
            return Err(invalid("more than one credential header"));
        }
        match (first_auth, first_key) {
            (None, None) => Ok(None),
            (Some(_), Some(_)) => Err(invalid("send either Authorization or X-API-Key, not both")),
            (Some(value), None) => {
                let value = value
                    .to_str()
                    .map_err(|_| invalid("the Authorization header is not visible ASCII"))?;
                let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
                if !scheme.eq_ignore_ascii_case("bearer") {
                    if !is_token(scheme) {
                        return Err(invalid("the Authorization header has no valid scheme"));
                    }
                    return Err(AuthError::new(AuthErrorKind::Missing, UNSUPPORTED_SCHEME));
                }
                let token = token.trim_matches(' ');
                check_token(token)?;
                Ok(Some(Credential::Bearer(token)))
            }
            (None, Some(value)) => {
                let key = value
                    .to_str()
                    .map_err(|_| invalid("the X-API-Key header is not visible ASCII"))?
                    .trim_matches(' ');
                check_token(key)?;
                Ok(Some(Credential::ApiKey(key)))
            }
        }
    }
}

impl std::fmt::Debug for Credential<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Bearer(_) => f.write_str("Bearer(<redacted>)"),
            Credential::ApiKey(_) => f.write_str("ApiKey(<redacted>)"),
        }
    }
}

/// Rejects empty credentials and ones with characters no token or key uses (RFC 6750 b64token
/// plus the few extra characters API keys commonly carry).
fn check_token(token: &str) -> Result<(), AuthError> {
    if token.is_empty() {
        return Err(invalid("empty credential"));
    }
    if token.len() > 16 * 1024 {
        return Err(invalid("credential too long"));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid(
            "credential contains characters outside visible ASCII",
        ));
    }
    Ok(())
}

/// Whether `text` is an RFC 9110 `token` (what an authentication scheme's name must be).
fn is_token(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn invalid(description: &'static str) -> AuthError {
    AuthError::new(AuthErrorKind::InvalidRequest, description)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    #[test]
    fn bearer_and_api_key_are_found() {
        let h = headers(&[("authorization", "Bearer abc.def")]);
        assert_eq!(
            Credential::from_headers(&h).unwrap(),
            Some(Credential::Bearer("abc.def"))
        );
        let h = headers(&[("authorization", "bearer   abc")]);
        assert_eq!(
            Credential::from_headers(&h).unwrap(),
            Some(Credential::Bearer("abc"))
        );
        let h = headers(&[("x-api-key", "k1")]);
        assert_eq!(
            Credential::from_headers(&h).unwrap(),
            Some(Credential::ApiKey("k1"))
        );
        assert_eq!(Credential::from_headers(&HeaderMap::new()).unwrap(), None);
    }

    #[test]
    fn ambiguous_or_malformed_credentials_are_refused() {
        for case in [
            vec![("authorization", "Bearer a"), ("x-api-key", "b")],
            vec![("authorization", "Bearer a"), ("authorization", "Bearer b")],
            vec![("x-api-key", "a"), ("x-api-key", "b")],
            vec![
                ("authorization", "Basic YWxhZGRpbjpvcGVuc2VzYW1l"),
                ("x-api-key", "b"),
            ],
            vec![("authorization", "Bearer")],
            vec![("authorization", "")],
            vec![("authorization", "Bearer:abc")],
            vec![("authorization", " Bearer abc")],
            vec![("authorization", "Bearer ")],
            vec![("x-api-key", "")],
            vec![("authorization", "Bearer a b")],
        ] {
            let h = headers(&case);
            let err = Credential::from_headers(&h).unwrap_err();
            assert_eq!(err.kind(), AuthErrorKind::InvalidRequest, "{case:?}");
        }
        let mut h = HeaderMap::new();
        h.insert(
            "authorization",
            HeaderValue::from_bytes(b"Bearer \xff").unwrap(),
        );
        assert!(Credential::from_headers(&h).is_err());
    }

    #[test]
    fn other_schemes_count_as_no_credential() {
        for value in [
            "Basic YWxhZGRpbjpvcGVuc2VzYW1l",
            "Digest username=\"a\", realm=\"mcp\"",
            "basic",
            "Negotiate abc",
        ] {
            let h = headers(&[("authorization", value)]);
            let err = Credential::from_headers(&h).unwrap_err();
            assert_eq!(err.kind(), AuthErrorKind::Missing, "{value}");
            assert_eq!(err.description(), UNSUPPORTED_SCHEME, "{value}");
        }
    }

    #[test]
    fn jwt_shape_is_recognised() {
        assert!(Credential::Bearer("eyJhbGciOi.eyJzdWIi.sig").looks_like_jwt());
        assert!(!Credential::Bearer("sk-live-123").looks_like_jwt());
        assert!(!Credential::Bearer("a.b.c").looks_like_jwt());
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let shown = format!("{:?}", Credential::Bearer("super-secret"));
        assert!(!shown.contains("super-secret"));
    }
}
