//! Distinguished names as RFC 4514 strings. A certificate's subject is written out here once,
//! and a name written by hand (an OAuth client's `tls_client_auth_subject_dn`, RFC 8705 §2.1.2)
//! is read and written again by the same rules, so the two can then be compared as strings:
//! `cn=svc, o=Example` and `CN=svc,O=Example` are one name, `CN=svc` and `CN=SVC` are two.
//!
//! The rules: the last RDN first (RFC 4514 §2.1), `,` between RDNs and `+` between the values
//! of a multi-valued RDN (those sorted, a set has no order), the RFC 4514 short names for the
//! types it lists (others by dotted OID), values escaped as §2.4 requires and nothing more,
//! and non-string values as `#` and the hex of their DER encoding.

use x509_parser::{
    asn1_rs::{Tag, ToDer as _},
    x509::{AttributeTypeAndValue, X509Name},
};

/// Attribute types written by name: RFC 4514 §3's table.
const SHORT_NAMES: [(&str, &str); 9] = [
    ("CN", "2.5.4.3"),
    ("L", "2.5.4.7"),
    ("ST", "2.5.4.8"),
    ("O", "2.5.4.10"),
    ("OU", "2.5.4.11"),
    ("C", "2.5.4.6"),
    ("STREET", "2.5.4.9"),
    ("DC", "0.9.2342.19200300.100.1.25"),
    ("UID", "0.9.2342.19200300.100.1.1"),
];

/// Other names people write for types found in client certificates (as OpenSSL prints them),
/// read but written as their OID.
const OTHER_NAMES: [(&str, &str); 7] = [
    ("SN", "2.5.4.4"),
    ("SERIALNUMBER", "2.5.4.5"),
    ("TITLE", "2.5.4.12"),
    ("GN", "2.5.4.42"),
    ("GIVENNAME", "2.5.4.42"),
    ("EMAILADDRESS", "1.2.840.113549.1.9.1"),
    ("E", "1.2.840.113549.1.9.1"),
];

/// The longest distinguished name read by hand, in bytes.
const MAX_DN_BYTES: usize = 4096;

/// `name` as an RFC 4514 string under the rules above.
pub(crate) fn of_certificate(name: &X509Name<'_>) -> String {
    let rdns: Vec<Vec<String>> = name
        .iter()
        .map(|rdn| {
            let mut values: Vec<String> = rdn.iter().map(attribute).collect();
            values.sort_unstable();
            values
        })
        .collect();
    join(rdns.iter().rev())
}

/// One `TYPE=value` of a certificate's name.
fn attribute(attribute: &AttributeTypeAndValue<'_>) -> String {
    let oid = attribute.attr_type().to_id_string();
    let mut out = type_name(&oid).to_owned();
    out.push('=');
    let value = attribute.attr_value();
    let text = match value.tag() {
        // UTF-16 big-endian: in older certificates.
        Tag::BmpString => {
            let units: Vec<u16> = value
                .data
                .chunks(2)
                .map(|pair| u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]))
                .collect();
            String::from_utf16(&units).ok()
        }
        _ => attribute.as_str().ok().map(str::to_owned),
    };
    match text {
        Some(text) => escape_into(&text, &mut out),
        None => {
            out.push('#');
            out.push_str(&hex::encode(value.to_der_vec().unwrap_or_default()));
        }
    }
    out
}

/// The short name of type `oid`, or the OID itself.
fn type_name(oid: &str) -> &str {
    SHORT_NAMES
        .iter()
        .find(|(_, o)| *o == oid)
        .map_or(oid, |(name, _)| name)
}

/// RDNs (each a sorted list of `TYPE=value`) joined into one string.
fn join<'a>(rdns: impl Iterator<Item = &'a Vec<String>>) -> String {
    let mut out = String::new();
    for (i, rdn) in rdns.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&rdn.join("+"));
    }
    out
}

/// Appends `value` escaped as RFC 4514 §2.4 requires: `"+,;<>\` everywhere, a leading `#` or
/// space, a trailing space, and NUL (as `\00`).
fn escape_into(value: &str, out: &mut String) {
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        match c {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            '\0' => out.push_str("\\00"),
            c => out.push(c),
        }
    }
}

/// Reads a distinguished name written as RFC 4514 says and writes it under the rules above.
/// Lenient where people differ harmlessly (spaces around `,`, `+` and `=`, the case of type
/// names, hex escapes of printable characters); values keep their case.
///
/// # Errors
/// When the text is not such a name (an empty one included); the message says why.
pub(crate) fn normalize(dn: &str) -> Result<String, String> {
    if dn.len() > MAX_DN_BYTES {
        return Err(format!(
            "a distinguished name is at most {MAX_DN_BYTES} bytes"
        ));
    }
    let mut rdns: Vec<Vec<String>> = Vec::new();
    let mut rdn: Vec<String> = Vec::new();
    // The last text always ends an RDN, so none is left open.
    for (text, ends_rdn) in split_unescaped(dn)? {
        let (name, value) = text
            .split_once('=')
            .ok_or_else(|| format!("`{}` is not TYPE=value", text.trim()))?;
        let oid = type_oid(name.trim())?;
        let mut attribute = type_name(&oid).to_owned();
        attribute.push('=');
        value_into(value, &mut attribute)?;
        rdn.push(attribute);
        if ends_rdn {
            rdn.sort_unstable();
            rdns.push(std::mem::take(&mut rdn));
        }
    }
    Ok(join(rdns.iter()))
}

/// The attribute-type-and-value texts of `dn`, each with whether an RDN ends after it.
fn split_unescaped(dn: &str) -> Result<Vec<(&str, bool)>, String> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, byte) in dn.bytes().enumerate() {
        if escaped {
            escaped = false;
            continue;
        }
        match byte {
            b'\\' => escaped = true,
            b',' | b'+' => {
                parts.push((&dn[start..i], byte == b','));
                start = i + 1;
            }
            _ => {}
        }
    }
    if escaped {
        return Err("the name ends in a lone `\\`".to_owned());
    }
    parts.push((&dn[start..], true));
    if parts.iter().any(|(text, _)| text.trim().is_empty()) {
        return Err("the name has an empty component".to_owned());
    }
    Ok(parts)
}

/// The OID of a type written by name (any case) or as a dotted OID (`OID.` prefix allowed).
fn type_oid(name: &str) -> Result<String, String> {
    let upper = name.to_ascii_uppercase();
    if let Some((_, oid)) = SHORT_NAMES
        .iter()
        .chain(&OTHER_NAMES)
        .find(|(short, _)| *short == upper)
    {
        return Ok((*oid).to_owned());
    }
    let dotted = upper.strip_prefix("OID.").unwrap_or(&upper);
    let well_formed = !dotted.is_empty()
        && dotted
            .split('.')
            .all(|arc| !arc.is_empty() && arc.bytes().all(|b| b.is_ascii_digit()))
        && dotted.contains('.');
    if well_formed {
        Ok(dotted.to_owned())
    } else {
        Err(format!("unknown attribute type `{name}`"))
    }
}

/// Appends `value` (as written after `=`) in canonical form: unescaped, its unescaped outer
/// spaces dropped, escaped again; or a `#hex` value in lower case.
fn value_into(value: &str, out: &mut String) -> Result<(), String> {
    let trimmed = value.trim_start_matches(' ');
    if let Some(hex) = trimmed.strip_prefix('#') {
        let hex = hex.trim_end_matches(' ');
        if hex.is_empty() || hex.len() % 2 != 0 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("`#{hex}` is not a hex-encoded value"));
        }
        out.push('#');
        out.push_str(&hex.to_ascii_lowercase());
        return Ok(());
    }
    // Bytes with whether each was escaped: only unescaped spaces at the ends are dropped.
    let mut bytes: Vec<(u8, bool)> = Vec::with_capacity(trimmed.len());
    let mut iter = trimmed.bytes().peekable();
    while let Some(byte) = iter.next() {
        if byte == b'"' {
            return Err("a `\"` in a value must be escaped".to_owned());
        }
        if byte != b'\\' {
            bytes.push((byte, false));
            continue;
        }
        let Some(next) = iter.next() else {
            return Err("the name ends in a lone `\\`".to_owned());
        };
        if next.is_ascii_hexdigit()
            && let Some(low) = iter.peek().copied().filter(u8::is_ascii_hexdigit)
        {
            iter.next();
            let pair = [next, low];
            let text = std::str::from_utf8(&pair).unwrap_or_default();
            let byte = u8::from_str_radix(text, 16).map_err(|e| e.to_string())?;
            bytes.push((byte, true));
        } else if b" \"#+,;<=>\\".contains(&next) {
            bytes.push((next, true));
        } else {
            return Err(format!("`\\{}` is not an escape", next as char));
        }
    }
    while bytes
        .last()
        .is_some_and(|&(b, escaped)| b == b' ' && !escaped)
    {
        bytes.pop();
    }
    let raw: Vec<u8> = bytes.into_iter().map(|(b, _)| b).collect();
    let text = String::from_utf8(raw).map_err(|_| "a value is not UTF-8".to_owned())?;
    if text.is_empty() {
        return Err("a value is empty".to_owned());
    }
    escape_into(&text, out);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_written_differently_become_one() {
        for written in [
            "CN=svc,O=Example Corp,C=DE",
            "cn=svc, o=Example Corp, c=DE",
            "CN = svc ,O= Example Corp,C=DE",
            "2.5.4.3=svc,OID.2.5.4.10=Example Corp,C=DE",
            "CN=\\73vc,O=Example\\20Corp,C=DE",
        ] {
            assert_eq!(
                normalize(written).unwrap(),
                "CN=svc,O=Example Corp,C=DE",
                "{written}"
            );
        }
        assert_ne!(
            normalize("CN=SVC").unwrap(),
            normalize("CN=svc").unwrap(),
            "values keep their case"
        );
        assert_eq!(normalize("OU=b+CN=a,O=x").unwrap(), "CN=a+OU=b,O=x");
        assert_eq!(
            normalize("CN=a\\,b\\+c,emailAddress=x@example.org").unwrap(),
            "CN=a\\,b\\+c,1.2.840.113549.1.9.1=x@example.org"
        );
        assert_eq!(normalize("CN=\\ a\\ ").unwrap(), "CN=\\ a\\ ");
        assert_eq!(normalize("CN=#04024869").unwrap(), "CN=#04024869");
        assert_eq!(normalize("CN=Gr\\C3\\BC\\C3\\9Fe").unwrap(), "CN=Grüße");
    }

    #[test]
    fn what_is_not_a_name_is_refused() {
        for bad in [
            "",
            "CN",
            "CN=",
            "CN=a,",
            ",CN=a",
            "CN=a\\",
            "CN=a\\q",
            "XX=a",
            "1=a",
            "CN=#abc",
            "CN=\"quoted\"",
            "CN=\\ff",
        ] {
            assert!(normalize(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn certificate_names_are_written_last_rdn_first() {
        use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
        use x509_parser::prelude::FromDer as _;

        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::CountryName, "DE");
        name.push(DnType::OrganizationName, "Example, Inc.");
        name.push(DnType::CommonName, " svc#1");
        params.distinguished_name = name;
        let key = KeyPair::generate().unwrap();
        let der = params.self_signed(&key).unwrap().der().to_vec();
        let (_, cert) = x509_parser::certificate::X509Certificate::from_der(&der).unwrap();
        let written = of_certificate(cert.subject());
        assert_eq!(written, "CN=\\ svc#1,O=Example\\, Inc.,C=DE");
        assert_eq!(
            normalize(&written).unwrap(),
            written,
            "read back as written"
        );
    }
}
