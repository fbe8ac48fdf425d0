//! HTTP Basic client credentials, the one parser the seed token endpoint and the OAuth
//! authorization server's client authentication share.
//!
//! RFC 7617: `Authorization: Basic base64(user-id ":" password)`, the scheme name in any case,
//! the base64 of RFC 4648 §4 (padded), the text UTF-8, the id ending at the first colon (the
//! secret may hold more). RFC 6749 §2.3.1 adds that an OAuth client form-urlencodes its id and
//! secret before joining them, so `+` is a space and `%XX` a byte; a part that is not valid form
//! encoding (a `%` without two hex digits after it, or bytes that do not decode to UTF-8) is
//! taken as sent, as clients that do not encode send it.
//!
//! Many clients do not encode (`curl -u`, most HTTP libraries' "basic auth"), which only
//! matters for a secret holding `+` or `%`. The OAuth server follows RFC 6749 and checks the
//! decoded secret only; the seed token endpoint, whose users configure their secrets by hand
//! and call it with `curl`, also tries the secret as sent
//! ([`BasicCredentials::secret_as_sent`]).

use base64::{Engine as _, engine::general_purpose::STANDARD};
use http::{HeaderMap, header};

/// Why an `Authorization` header gave no Basic credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BasicError {
    /// More than one `Authorization` header: which one counts would be the server's guess.
    Several,
    /// Another scheme (`Bearer`, `Digest`, ...).
    NotBasic,
    /// `Basic` with something that is not base64 of UTF-8 `id:secret` with a non-empty id.
    Malformed,
}

/// A client id and secret from an `Authorization: Basic` header.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct BasicCredentials {
    /// The client id, form-decoded (as sent when it is not valid form encoding); never empty.
    pub(crate) id: String,
    /// The secret, form-decoded (as sent when it is not valid form encoding).
    pub(crate) secret: String,
    /// The secret exactly as sent, when that differs from [`secret`](Self::secret): what a
    /// client that does not form-encode meant.
    pub(crate) secret_as_sent: Option<String>,
}

/// The Basic credentials of a request: `Ok(None)` without an `Authorization` header.
///
/// # Errors
/// See [`BasicError`].
pub(crate) fn from_headers(headers: &HeaderMap) -> Result<Option<BasicCredentials>, BasicError> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(BasicError::Several);
    }
    parse(value.as_bytes()).map(Some)
}

/// Parses one `Authorization` header value.
///
/// # Errors
/// [`BasicError::NotBasic`] for another scheme, [`BasicError::Malformed`] otherwise.
pub(crate) fn parse(value: &[u8]) -> Result<BasicCredentials, BasicError> {
    // RFC 9110 §11.4: credentials = auth-scheme [ 1*SP token68 ]; the scheme is
    // case-insensitive.
    let (scheme, rest) = match value.iter().position(|&b| b == b' ') {
        Some(space) => (&value[..space], &value[space + 1..]),
        None => (value, &[][..]),
    };
    if !scheme.eq_ignore_ascii_case(b"basic") {
        return Err(BasicError::NotBasic);
    }
    let decoded = STANDARD
        .decode(rest.trim_ascii())
        .map_err(|_| BasicError::Malformed)?;
    let decoded = String::from_utf8(decoded).map_err(|_| BasicError::Malformed)?;
    let (id, secret) = decoded.split_once(':').ok_or(BasicError::Malformed)?;
    let id = form_decode(id).unwrap_or_else(|| id.to_owned());
    if id.is_empty() {
        return Err(BasicError::Malformed);
    }
    let (secret, secret_as_sent) = match form_decode(secret) {
        Some(decoded) if decoded != secret => (decoded, Some(secret.to_owned())),
        _ => (secret.to_owned(), None),
    };
    Ok(BasicCredentials {
        id,
        secret,
        secret_as_sent,
    })
}

/// Decodes `application/x-www-form-urlencoded` text (`+` is a space, `%XX` a byte); `None` when
/// an escape is malformed or the result is not UTF-8.
pub(crate) fn form_decode(text: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        rest = tail;
        match byte {
            b'+' => bytes.push(b' '),
            b'%' => {
                let (hex, tail) = rest.split_at_checked(2)?;
                let mut decoded = [0u8; 1];
                hex::decode_to_slice(hex, &mut decoded).ok()?;
                bytes.push(decoded[0]);
                rest = tail;
            }
            other => bytes.push(other),
        }
    }
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn basic(user_pass: &str) -> String {
        format!("Basic {}", STANDARD.encode(user_pass))
    }

    fn credentials(id: &str, secret: &str, as_sent: Option<&str>) -> BasicCredentials {
        BasicCredentials {
            id: id.into(),
            secret: secret.into(),
            secret_as_sent: as_sent.map(Into::into),
        }
    }

    #[test]
    fn id_and_secret_are_form_decoded_and_the_secret_kept_as_sent() {
        assert_eq!(
            parse(basic("my%20app:s%3Acret%2B").as_bytes()),
            Ok(credentials("my app", "s:cret+", Some("s%3Acret%2B")))
        );
        assert_eq!(
            parse(basic("a+b:x+y").as_bytes()),
            Ok(credentials("a b", "x y", Some("x+y")))
        );
        // Nothing to decode: one secret.
        assert_eq!(
            parse(basic("svc:plain-secret-0123").as_bytes()),
            Ok(credentials("svc", "plain-secret-0123", None))
        );
        // The id ends at the first colon; the secret keeps the others.
        assert_eq!(
            parse(basic("svc:a:b:c").as_bytes()),
            Ok(credentials("svc", "a:b:c", None))
        );
        // An empty secret is a secret (that never matches a configured one).
        assert_eq!(
            parse(basic("svc:").as_bytes()),
            Ok(credentials("svc", "", None))
        );
    }

    #[test]
    fn parts_that_are_not_form_encoding_are_taken_as_sent() {
        assert_eq!(
            parse(basic("100%:50%off+").as_bytes()),
            Ok(credentials("100%", "50%off+", None))
        );
        // `%ff` decodes to a byte that is not UTF-8.
        assert_eq!(
            parse(basic("id%ff:s%ff").as_bytes()),
            Ok(credentials("id%ff", "s%ff", None))
        );
    }

    #[test]
    fn the_scheme_is_case_insensitive() {
        let encoded = STANDARD.encode("svc:secret");
        for scheme in ["Basic", "basic", "BASIC", "bAsIc"] {
            assert_eq!(
                parse(format!("{scheme} {encoded}").as_bytes()),
                Ok(credentials("svc", "secret", None)),
                "{scheme}"
            );
        }
        // Extra spaces around the credentials are tolerated.
        assert_eq!(
            parse(format!("Basic   {encoded} ").as_bytes()),
            Ok(credentials("svc", "secret", None))
        );
    }

    #[test]
    fn other_schemes_are_not_basic() {
        for value in [
            "Bearer abc",
            "Digest username=x",
            "Basically abc",
            "",
            "Bearer",
        ] {
            assert_eq!(
                parse(value.as_bytes()),
                Err(BasicError::NotBasic),
                "{value}"
            );
        }
    }

    #[test]
    fn malformed_credentials_are_refused() {
        let not_utf8 = format!("Basic {}", STANDARD.encode([b'a', b':', 0xff]));
        let unpadded = format!("Basic {}", STANDARD.encode("svc:x").trim_end_matches('='));
        for value in [
            "Basic".to_owned(),
            "Basic ".to_owned(),
            "Basic !!!".to_owned(),
            basic("no-colon"),
            basic(":secret-without-id"),
            not_utf8,
            unpadded,
        ] {
            assert_eq!(
                parse(value.as_bytes()),
                Err(BasicError::Malformed),
                "{value}"
            );
        }
    }

    #[test]
    fn one_authorization_header_at_most() {
        let mut headers = HeaderMap::new();
        assert_eq!(from_headers(&headers), Ok(None));
        let value = HeaderValue::from_str(&basic("svc:secret")).unwrap();
        headers.append(header::AUTHORIZATION, value.clone());
        assert_eq!(
            from_headers(&headers),
            Ok(Some(credentials("svc", "secret", None)))
        );
        headers.append(header::AUTHORIZATION, value);
        assert_eq!(from_headers(&headers), Err(BasicError::Several));
    }

    #[test]
    fn form_decoding() {
        assert_eq!(form_decode("a+b%2Bc%3a").as_deref(), Some("a b+c:"));
        assert_eq!(form_decode("%"), None);
        assert_eq!(form_decode("%zz"), None);
        assert_eq!(form_decode("%+f"), None);
        assert_eq!(form_decode("%ff"), None);
        assert_eq!(form_decode("%C3%A9").as_deref(), Some("é"));
    }
}
