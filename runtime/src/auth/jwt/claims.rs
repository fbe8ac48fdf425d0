//! The claims of a JWT payload as `jsonwebtoken` hands them over, and how a verifier reads them.
//!
//! `jsonwebtoken` decodes the payload into a type of ours once the signature has verified, and
//! checks `exp`, `iss` and `aud` itself. The claims this crate reads beyond those (and
//! their names depend on the configuration: the role and scope claims) are read here, and each
//! must have its type. The payload's members are kept in order with their duplicates, because
//! a claim given twice would leave it to the parser which value counts: a duplicate of a claim
//! the verifier reads is refused, a duplicate of any other is not looked at.

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;

use super::rules::ClaimPath;

/// Why a token's claims were refused, for the debug log only.
pub(crate) type Refusal = &'static str;

/// The claims every verifier reads (and type-checks) besides its role and scope claims; `role`,
/// `roles`, `scope` and `permissions` are read whatever the configuration, as they always were.
pub(super) const ALWAYS_READ: [&str; 11] = [
    "sub",
    "exp",
    "nbf",
    "iat",
    "jti",
    "client_id",
    "azp",
    "role",
    "roles",
    "scope",
    "permissions",
];

/// A JWT payload: a JSON object, its members in order, duplicates kept.
#[derive(Debug)]
pub(crate) struct Claims(Vec<(String, Value)>);

impl Claims {
    /// The value of claim `name`, `None` when it is absent or `null`.
    ///
    /// # Errors
    /// When the payload gives the claim more than once.
    pub(crate) fn get(&self, name: &str) -> Result<Option<&Value>, Refusal> {
        let mut found = self.0.iter().filter(|(n, _)| n == name).map(|(_, v)| v);
        let first = found.next();
        if found.next().is_some() {
            return Err("duplicate_claim");
        }
        Ok(first.filter(|value| !value.is_null()))
    }

    /// Claim `name` as a string.
    pub(crate) fn string(&self, name: &str) -> Result<Option<&str>, Refusal> {
        match self.get(name)? {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err("claim_format"),
        }
    }

    /// Claim `name` as a NumericDate in whole seconds, read as `jsonwebtoken` reads `exp` and
    /// `nbf`: a non-negative integer, or a finite non-negative number (rounded).
    pub(super) fn date(&self, name: &str) -> Result<Option<u64>, Refusal> {
        let Some(value) = self.get(name)? else {
            return Ok(None);
        };
        if let Some(secs) = value.as_u64() {
            return Ok(Some(secs));
        }
        match value.as_f64() {
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                clippy::cast_precision_loss
            )]
            Some(secs) if value.is_f64() && secs >= 0.0 && secs < u64::MAX as f64 => {
                Ok(Some(secs.round() as u64))
            }
            _ => Err("claim_format"),
        }
    }

    /// Appends the strings of claim `name` to `out`: a string (split on whitespace when
    /// `split`), or an array of strings. `role` and `scope` must be strings, `roles` and
    /// `permissions` arrays; any other claim may be either.
    pub(super) fn strings<'c>(
        &'c self,
        name: &str,
        split: bool,
        out: &mut Vec<&'c str>,
    ) -> Result<(), Refusal> {
        let shape = match name {
            // RFC 9068 §2.2.3 (and RFC 8693 §4.2): `scope` is a space-separated string.
            "role" | "scope" => Shape::String,
            "roles" | "permissions" => Shape::Array,
            _ => Shape::Either,
        };
        match (self.get(name)?, shape) {
            (None, _) => {}
            (Some(Value::String(s)), Shape::String | Shape::Either) if split => {
                out.extend(s.split_ascii_whitespace());
            }
            (Some(Value::String(s)), Shape::String | Shape::Either) => out.push(s),
            (Some(Value::Array(items)), Shape::Array | Shape::Either) => {
                for item in items {
                    out.push(item.as_str().ok_or("claim_format")?);
                }
            }
            (Some(_), _) => return Err("claim_format"),
        }
        Ok(())
    }

    /// Appends the strings found at `path`: a top-level claim as [`strings`](Self::strings)
    /// reads it, or a value inside nested objects, which may be a string (split on whitespace
    /// when `split`) or an array of strings. A path leading through something other than an
    /// object finds nothing; a value of the wrong type at its end is refused.
    pub(super) fn strings_at<'c>(
        &'c self,
        path: &ClaimPath,
        split: bool,
        out: &mut Vec<&'c str>,
    ) -> Result<(), Refusal> {
        let (first, rest) = match path.as_slice() {
            [] => return Ok(()),
            [name] => return self.strings(name, split, out),
            [first, rest @ ..] => (first, rest),
        };
        let mut value = self.get(first)?;
        for segment in rest {
            value = match value {
                Some(Value::Object(members)) => members.get(segment.as_str()),
                _ => None,
            }
            .filter(|v| !v.is_null());
        }
        match value {
            None => {}
            Some(Value::String(s)) if split => out.extend(s.split_ascii_whitespace()),
            Some(Value::String(s)) => out.push(s),
            Some(Value::Array(items)) => {
                for item in items {
                    out.push(item.as_str().ok_or("claim_format")?);
                }
            }
            Some(_) => return Err("claim_format"),
        }
        Ok(())
    }

    /// Checks that claim `name` is a string or an array of strings (`aud`).
    pub(super) fn check_strings(&self, name: &str) -> Result<(), Refusal> {
        let mut ignored = Vec::new();
        self.strings(name, false, &mut ignored)
    }
}

/// What type a role or scope claim must have.
#[derive(Clone, Copy)]
enum Shape {
    String,
    Array,
    Either,
}

impl<'de> Deserialize<'de> for Claims {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // An object only: a derived struct would also take an array, by position.
        deserializer.deserialize_map(ClaimsVisitor)
    }
}

struct ClaimsVisitor;

impl<'de> Visitor<'de> for ClaimsVisitor {
    type Value = Claims;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JWT claims object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut members = Vec::with_capacity(map.size_hint().unwrap_or(8).min(32));
        while let Some(member) = map.next_entry::<String, Value>()? {
            members.push(member);
        }
        Ok(Claims(members))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn claims(json: &str) -> Claims {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn only_an_object_is_a_claims_set() {
        for json in ["[]", r#"["a", 1]"#, "null", "1", r#""a""#] {
            assert!(serde_json::from_str::<Claims>(json).is_err(), "{json}");
        }
        assert!(serde_json::from_str::<Claims>("{}").is_ok());
    }

    #[test]
    fn duplicates_are_refused_where_read() {
        let c = claims(r#"{"a":1,"a":2,"b":null,"b":1,"c":3}"#);
        assert_eq!(c.get("a"), Err("duplicate_claim"));
        assert_eq!(c.get("b"), Err("duplicate_claim"));
        assert_eq!(c.get("c"), Ok(Some(&json!(3))));
        assert_eq!(c.get("d"), Ok(None));
    }

    #[test]
    fn null_is_absent() {
        let c = claims(r#"{"a":null}"#);
        assert_eq!(c.string("a"), Ok(None));
        assert_eq!(c.date("a"), Ok(None));
        let mut out = Vec::new();
        assert_eq!(c.strings("a", true, &mut out), Ok(()));
        assert!(out.is_empty());
    }

    #[test]
    fn dates_are_non_negative_numbers() {
        let c = claims(
            r#"{"a":5,"b":5.5,"c":-1,"d":-0.5,"e":1e300,"f":"5","g":[5],"h":18446744073709551615}"#,
        );
        assert_eq!(c.date("a"), Ok(Some(5)));
        assert_eq!(c.date("b"), Ok(Some(6)));
        assert_eq!(c.date("h"), Ok(Some(u64::MAX)));
        for name in ["c", "d", "e", "f", "g"] {
            assert_eq!(c.date(name), Err("claim_format"), "{name}");
        }
    }

    #[test]
    fn role_and_scope_claims_have_their_shapes() {
        let c = claims(
            r#"{"role":"a b","roles":["c"],"scope":"d e","permissions":["f"],"x":"g h","y":["i"]}"#,
        );
        let mut out = Vec::new();
        c.strings("role", false, &mut out).unwrap();
        c.strings("roles", false, &mut out).unwrap();
        c.strings("scope", true, &mut out).unwrap();
        c.strings("permissions", true, &mut out).unwrap();
        c.strings("x", true, &mut out).unwrap();
        c.strings("y", true, &mut out).unwrap();
        assert_eq!(out, ["a b", "c", "d", "e", "f", "g", "h", "i"]);
        let wrong =
            claims(r#"{"role":["a"],"roles":"b","scope":["c"],"permissions":"d","x":5,"y":[1]}"#);
        for name in ["role", "roles", "scope", "permissions", "x", "y"] {
            assert_eq!(
                wrong.strings(name, true, &mut Vec::new()),
                Err("claim_format"),
                "{name}"
            );
        }
    }
}
