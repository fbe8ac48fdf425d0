//! `--header 'Name: value'` arguments, and which of them carry secrets.

/// One HTTP header given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Header {
    /// As written (clients and servers compare names case-insensitively).
    pub(crate) name: String,
    /// Without surrounding whitespace.
    pub(crate) value: String,
}

/// Names whose values are credentials however they are spelled.
const SECRET_NAMES: [&str; 4] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-api-key",
];

/// Parts of a name that mark a credential (`X-Tenant-Token`, `Api-Key`, `X-Auth-Secret`).
const SECRET_NAME_PARTS: [&str; 6] = ["key", "token", "secret", "auth", "password", "session"];

impl Header {
    /// Whether the value is a credential that must not be written into a shared file.
    pub(crate) fn is_secret(&self) -> bool {
        let name = self.name.to_ascii_lowercase();
        SECRET_NAMES.contains(&name.as_str())
            || SECRET_NAME_PARTS.iter().any(|part| name.contains(part))
    }

    /// Whether the name is `Authorization`.
    pub(crate) fn is_authorization(&self) -> bool {
        self.name.eq_ignore_ascii_case("authorization")
    }
}

/// Parses `Name: value` (clap's value parser for `--header`).
pub(crate) fn parse_header(text: &str) -> Result<Header, String> {
    let Some((name, value)) = text.split_once(':') else {
        return Err("expected `Name: value`, e.g. `X-API-Key: mgk_...`".to_owned());
    };
    let name = name.trim();
    let value = value.trim();
    if name.is_empty() || !name.bytes().all(is_token_byte) {
        // The value is not repeated: it may be a secret.
        return Err(format!(
            "`{name}` is not a header name (letters, digits and !#$%&'*+-.^_`|~)"
        ));
    }
    if value.is_empty() {
        return Err(format!("the header `{name}` has no value"));
    }
    if !value
        .bytes()
        .all(|b| b == b' ' || b == b'\t' || b.is_ascii_graphic())
    {
        return Err(format!(
            "the value of `{name}` holds characters a header cannot carry (only visible ASCII \
             and spaces)"
        ));
    }
    Ok(Header {
        name: name.to_owned(),
        value: value.to_owned(),
    })
}

/// RFC 9110 §5.6.2 `tchar`.
fn is_token_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_parse_and_secrets_are_recognised() {
        let key = parse_header("X-API-Key:  mgk_abc ").unwrap();
        assert_eq!(
            (key.name.as_str(), key.value.as_str()),
            ("X-API-Key", "mgk_abc")
        );
        assert!(key.is_secret());
        let bearer = parse_header("Authorization: Bearer eyJ.x.y").unwrap();
        assert_eq!(bearer.value, "Bearer eyJ.x.y");
        assert!(bearer.is_secret() && bearer.is_authorization());
        assert!(parse_header("X-Tenant-Token: t").unwrap().is_secret());
        assert!(!parse_header("X-Tenant: acme").unwrap().is_secret());
        for bad in ["no colon", ": value", "Bad Name: v", "X-Empty:", "X: a\nb"] {
            assert!(parse_header(bad).is_err(), "{bad:?}");
        }
    }
}
