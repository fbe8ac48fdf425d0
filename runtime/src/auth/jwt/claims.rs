//! The claims of a JWT payload, parsed in one pass and borrowed from the payload.
//!
//! Only the claims a verifier reads are materialised, and each of those must have its type;
//! everything else is skipped unparsed (but must still be valid JSON). A claim read twice would
//! leave it to the parser which value counts, so a duplicate of a read claim is refused.

use std::{borrow::Cow, fmt};

use serde::de::{
    self, Deserialize, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Unexpected,
    Visitor,
};
use serde_json::Value;

use crate::auth::jws::{JsonStr, Refusal};

/// The role and scope claims that have a field of their own in [`Claims`].
pub(super) const LIST_FIELDS: [&str; 5] = ["role", "roles", "scope", "scp", "permissions"];

/// What a verifier reads beyond the claims it always reads.
#[derive(Clone, Copy)]
pub(super) struct Reading<'c> {
    /// `iss`, when an issuer is configured.
    pub(super) issuer: bool,
    /// `aud`, when audiences are configured.
    pub(super) audience: bool,
    /// `scp`, when it is the role claim or one of the scope claims.
    pub(super) scp: bool,
    /// The configured role and scope claims [`Claims`] has no field for, kept as JSON.
    pub(super) extra: &'c [String],
}

/// Parses a payload: a JSON object, nothing after it.
pub(super) fn parse<'p, 'c>(
    payload: &'p [u8],
    reading: Reading<'c>,
) -> Result<Claims<'p, 'c>, serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_slice(payload);
    let claims = reading.deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(claims)
}

/// The claims a verifier reads. Absent and `null` claims are `None`.
#[derive(Default)]
pub(super) struct Claims<'p, 'c> {
    pub(super) sub: Option<JsonStr<'p>>,
    pub(super) exp: Option<u64>,
    pub(super) nbf: Option<u64>,
    pub(super) iat: Option<u64>,
    pub(super) iss: Option<JsonStr<'p>>,
    pub(super) aud: Option<Strings<'p>>,
    pub(super) jti: Option<JsonStr<'p>>,
    pub(super) client_id: Option<JsonStr<'p>>,
    pub(super) azp: Option<JsonStr<'p>>,
    role: Option<JsonStr<'p>>,
    roles: Option<Vec<JsonStr<'p>>>,
    scope: Option<JsonStr<'p>>,
    scp: Option<Strings<'p>>,
    permissions: Option<Vec<JsonStr<'p>>>,
    /// The claims of [`Reading::extra`] that are present, by name.
    extra: Vec<(&'c str, Value)>,
}

impl<'p> Claims<'p, '_> {
    /// Appends the strings of claim `name` to `out`: a string (split on whitespace when
    /// `split`), or an array of strings. `role` and `scope` must be strings, `roles` and
    /// `permissions` arrays (checked when parsing); another claim of another type makes the
    /// token invalid.
    pub(super) fn strings<'s>(
        &'s self,
        name: &str,
        split: bool,
        out: &mut Vec<&'s str>,
    ) -> Result<(), Refusal> {
        match name {
            "role" => push_str(self.role.as_deref(), split, out),
            "scope" => push_str(self.scope.as_deref(), split, out),
            "roles" => out.extend(self.roles.iter().flatten().map(|s| &**s)),
            "permissions" => out.extend(self.permissions.iter().flatten().map(|s| &**s)),
            "scp" => match &self.scp {
                Some(Strings::One(s)) => push_str(Some(s), split, out),
                Some(Strings::Many(items)) => out.extend(items.iter().map(|s| &**s)),
                None => {}
            },
            _ => {
                let value = self.extra.iter().find(|(n, _)| *n == name).map(|(_, v)| v);
                return push_value(value, split, out);
            }
        }
        Ok(())
    }
}

fn push_str<'s>(value: Option<&'s str>, split: bool, out: &mut Vec<&'s str>) {
    match value {
        Some(s) if split => out.extend(s.split_ascii_whitespace()),
        Some(s) => out.push(s),
        None => {}
    }
}

fn push_value<'s>(
    value: Option<&'s Value>,
    split: bool,
    out: &mut Vec<&'s str>,
) -> Result<(), Refusal> {
    match value {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(s)) => {
            push_str(Some(s), split, out);
            Ok(())
        }
        Some(Value::Array(items)) => items.iter().try_for_each(|item| match item {
            Value::String(s) => {
                out.push(s);
                Ok(())
            }
            _ => Err("claim_format"),
        }),
        Some(_) => Err("claim_format"),
    }
}

/// A claim that may be one string or an array of strings (`aud`, `scp`).
pub(super) enum Strings<'p> {
    One(JsonStr<'p>),
    Many(Vec<JsonStr<'p>>),
}

impl Strings<'_> {
    /// Whether `wanted` is the string, or one of the strings.
    pub(super) fn contains(&self, wanted: &str) -> bool {
        match self {
            Strings::One(s) => &**s == wanted,
            Strings::Many(items) => items.iter().any(|s| &**s == wanted),
        }
    }
}

impl<'de> Deserialize<'de> for Strings<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StringsVisitor)
    }
}

struct StringsVisitor;

impl<'de> Visitor<'de> for StringsVisitor {
    type Value = Strings<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string or an array of strings")
    }

    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
        Ok(Strings::One(JsonStr(Cow::Borrowed(s))))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Strings::One(JsonStr(Cow::Owned(s.to_owned()))))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(16));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Strings::Many(items))
    }
}

/// A JWT NumericDate as whole seconds since the epoch, read like `jsonwebtoken` reads `exp`
/// and `nbf`: a non-negative integer, or a finite non-negative fraction (rounded).
struct NumericDate(u64);

impl<'de> Deserialize<'de> for NumericDate {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NumericDateVisitor)
    }
}

struct NumericDateVisitor;

impl Visitor<'_> for NumericDateVisitor {
    type Value = NumericDate;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a non-negative number of seconds")
    }

    fn visit_u64<E: de::Error>(self, secs: u64) -> Result<Self::Value, E> {
        Ok(NumericDate(secs))
    }

    fn visit_i64<E: de::Error>(self, secs: i64) -> Result<Self::Value, E> {
        u64::try_from(secs)
            .map(NumericDate)
            .map_err(|_| E::invalid_value(Unexpected::Signed(secs), &self))
    }

    fn visit_f64<E: de::Error>(self, secs: f64) -> Result<Self::Value, E> {
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        if secs.is_finite() && secs >= 0.0 && secs < u64::MAX as f64 {
            Ok(NumericDate(secs.round() as u64))
        } else {
            Err(E::invalid_value(Unexpected::Float(secs), &self))
        }
    }
}

/// The claims [`Claims`] has a field for.
#[derive(Clone, Copy)]
enum Known {
    Sub,
    Exp,
    Nbf,
    Iat,
    Iss,
    Aud,
    Jti,
    ClientId,
    Azp,
    Role,
    Roles,
    Scope,
    Scp,
    Permissions,
}

impl Known {
    fn named(name: &str) -> Option<Self> {
        Some(match name {
            "sub" => Known::Sub,
            "exp" => Known::Exp,
            "nbf" => Known::Nbf,
            "iat" => Known::Iat,
            "iss" => Known::Iss,
            "aud" => Known::Aud,
            "jti" => Known::Jti,
            "client_id" => Known::ClientId,
            "azp" => Known::Azp,
            "role" => Known::Role,
            "roles" => Known::Roles,
            "scope" => Known::Scope,
            "scp" => Known::Scp,
            "permissions" => Known::Permissions,
            _ => return None,
        })
    }

    /// This claim's bit in the set of claims seen so far.
    fn bit(self) -> u16 {
        1 << self as u16
    }
}

impl Reading<'_> {
    fn reads(self, claim: Known) -> bool {
        match claim {
            Known::Iss => self.issuer,
            Known::Aud => self.audience,
            Known::Scp => self.scp,
            _ => true,
        }
    }
}

impl<'de, 'c> DeserializeSeed<'de> for Reading<'c> {
    type Value = Claims<'de, 'c>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        // An object only: a derived struct would also take an array, by position.
        deserializer.deserialize_map(self)
    }
}

impl<'de, 'c> Visitor<'de> for Reading<'c> {
    type Value = Claims<'de, 'c>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JWT claims object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut claims = Claims::default();
        let mut seen = 0u16;
        while let Some(name) = map.next_key::<JsonStr<'de>>()? {
            match Known::named(&name) {
                Some(claim) if self.reads(claim) => {
                    if seen & claim.bit() != 0 {
                        return Err(de::Error::custom("duplicate claim"));
                    }
                    seen |= claim.bit();
                    claims.read(claim, &mut map)?;
                }
                Some(_) => {
                    map.next_value::<IgnoredAny>()?;
                }
                None => match self.extra.iter().find(|extra| **extra == *name) {
                    Some(extra) => {
                        if claims.extra.iter().any(|(n, _)| *n == extra.as_str()) {
                            return Err(de::Error::custom("duplicate claim"));
                        }
                        claims.extra.push((extra.as_str(), map.next_value()?));
                    }
                    None => {
                        map.next_value::<IgnoredAny>()?;
                    }
                },
            }
        }
        Ok(claims)
    }
}

impl<'de> Claims<'de, '_> {
    fn read<A: MapAccess<'de>>(&mut self, claim: Known, map: &mut A) -> Result<(), A::Error> {
        let date = |d: Option<NumericDate>| d.map(|NumericDate(secs)| secs);
        match claim {
            Known::Sub => self.sub = map.next_value()?,
            Known::Exp => self.exp = date(map.next_value()?),
            Known::Nbf => self.nbf = date(map.next_value()?),
            Known::Iat => self.iat = date(map.next_value()?),
            Known::Iss => self.iss = map.next_value()?,
            Known::Aud => self.aud = map.next_value()?,
            Known::Jti => self.jti = map.next_value()?,
            Known::ClientId => self.client_id = map.next_value()?,
            Known::Azp => self.azp = map.next_value()?,
            Known::Role => self.role = map.next_value()?,
            Known::Roles => self.roles = map.next_value()?,
            Known::Scope => self.scope = map.next_value()?,
            Known::Scp => self.scp = map.next_value()?,
            Known::Permissions => self.permissions = map.next_value()?,
        }
        Ok(())
    }
}
