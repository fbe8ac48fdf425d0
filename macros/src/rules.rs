//! The value grammars checked at compile time: rates, tool names and scope tokens.

/// A parsed `rate = ...`: `calls` per `per_secs` seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RateSpec {
    pub(crate) calls: u32,
    pub(crate) per_secs: u64,
}

/// Every form `rate = ...` accepts, for the messages.
pub(crate) const RATE_GRAMMAR: &str = "expected `rate = N` (calls per minute) or `rate = \"N/s\"`, `\"N/min\"`, `\"N/h\"` or `\"N/day\"`";

/// Parses the string form `"N/unit"`.
pub(crate) fn parse_rate_str(text: &str) -> Result<RateSpec, String> {
    let Some((count, unit)) = text.split_once('/') else {
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit() || b == b'_') {
            return Err(format!(
                "rate `\"{text}\"` has no unit\n= help: write `rate = \"{text}/min\"` (or `/s`, `/h`, `/day`), or the number `rate = {text}` for calls per minute"
            ));
        }
        return Err(format!("invalid rate `\"{text}\"`\n= note: {RATE_GRAMMAR}"));
    };
    let per_secs = match unit.trim() {
        "s" | "sec" | "second" => 1,
        "m" | "min" | "minute" => 60,
        "h" | "hour" => 3600,
        "d" | "day" => 86_400,
        other => {
            /// The unit spellings a typo is compared with.
            const UNITS: &[&str] = &["s", "sec", "second", "min", "minute", "h", "hour", "day"];
            let hint = match crate::suggest::did_you_mean(other, UNITS.iter().copied()) {
                Some(unit) => format!("help: did you mean `{unit}`?"),
                None => "note: the units are `s`, `min`, `h` and `day`".to_owned(),
            };
            return Err(format!("unknown rate unit `{other}`\n= {hint}"));
        }
    };
    let calls = parse_count(count.trim(), text)?;
    check_rate(RateSpec { calls, per_secs })
}

/// Parses the integer form (calls per minute).
pub(crate) fn parse_rate_int(digits: &str) -> Result<RateSpec, String> {
    let calls = parse_count(digits, digits)?;
    check_rate(RateSpec {
        calls,
        per_secs: 60,
    })
}

/// The number of calls in `count` (a part of `whole`, which messages show).
fn parse_count(count: &str, whole: &str) -> Result<u32, String> {
    if count.starts_with('-') {
        return Err(format!("rate `{whole}` must be a positive number of calls"));
    }
    if count.is_empty() || !count.bytes().all(|b| b.is_ascii_digit() || b == b'_') {
        return Err(format!("invalid rate `{whole}`\n= note: {RATE_GRAMMAR}"));
    }
    let digits: String = count.chars().filter(|c| *c != '_').collect();
    match digits.parse::<u32>() {
        Ok(0) => Err(format!("rate `{whole}` allows no calls: use at least 1")),
        Ok(n) => Ok(n),
        Err(_) => Err(format!(
            "rate `{whole}` is too large: at most {} calls per period",
            u32::MAX
        )),
    }
}

/// What `concurrency = ...` accepts, for the messages.
pub(crate) const CONCURRENCY_GRAMMAR: &str = "expected `concurrency = N`, the most calls of this tool one caller may have in flight, as a number such as `concurrency = 2`";

/// Parses `concurrency = N`: at least one call, at most `u32::MAX`.
pub(crate) fn parse_concurrency(digits: &str) -> Result<u32, String> {
    let plain: String = digits.chars().filter(|c| *c != '_').collect();
    match plain.parse::<u32>() {
        Ok(0) => Err(format!(
            "concurrency `{digits}` allows no calls: use at least 1"
        )),
        Ok(n) => Ok(n),
        Err(_) => Err(format!(
            "concurrency `{digits}` is too large: at most {} calls",
            u32::MAX
        )),
    }
}

/// The limiter spaces calls `per / calls` apart, which must be at least a nanosecond.
fn check_rate(rate: RateSpec) -> Result<RateSpec, String> {
    if u64::from(rate.calls) > rate.per_secs * 1_000_000_000 {
        return Err(format!(
            "rate of {} calls per {} s is too high to enforce (more than one call per nanosecond)",
            rate.calls, rate.per_secs
        ));
    }
    Ok(rate)
}

/// MCP tool names: 1 to 64 characters of `[A-Za-z0-9_.-]` (the intersection of what the spec
/// recommends and what the conformance suite accepts).
pub(crate) fn check_tool_name(name: &str) -> Result<(), String> {
    /// The help line of every invalid name.
    const ALLOWED: &str = "help: use only ASCII letters, digits, `_`, `.` and `-`";
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(format!(
            "tool name `{name}` contains {}\n= {ALLOWED}",
            describe(bad)
        ));
    }
    match name.len() {
        0 => Err(format!("empty tool name\n= {ALLOWED}")),
        1..=64 => Ok(()),
        n => Err(format!(
            "tool name is too long: {n} characters, at most 64 are allowed"
        )),
    }
}

/// RFC 6749 §3.3 scope tokens: `1*( %x21 / %x23-5B / %x5D-7E )`.
pub(crate) fn check_scope(scope: &str) -> Result<(), String> {
    if scope.is_empty() {
        return Err("empty scope: a scope is at least one character".into());
    }
    if let Some(bad) = scope.chars().find(|&c| {
        !(c == '\x21' || ('\x23'..='\x5b').contains(&c) || ('\x5d'..='\x7e').contains(&c))
    }) {
        return Err(format!(
            "invalid scope `{scope}`: {} is not allowed in a scope\n= note: OAuth scopes are made of visible ASCII characters except `\"` and `\\` (RFC 6749, section 3.3)",
            describe(bad)
        ));
    }
    Ok(())
}

/// A character as an error message shows it.
fn describe(c: char) -> String {
    match c {
        ' ' => "a space".to_owned(),
        c if c.is_control() || c.is_whitespace() => format!("{c:?}"),
        c => format!("`{c}`"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_forms() {
        assert_eq!(
            parse_rate_int("10"),
            Ok(RateSpec {
                calls: 10,
                per_secs: 60
            })
        );
        assert_eq!(
            parse_rate_str("5/s"),
            Ok(RateSpec {
                calls: 5,
                per_secs: 1
            })
        );
        assert_eq!(
            parse_rate_str("50/min"),
            Ok(RateSpec {
                calls: 50,
                per_secs: 60
            })
        );
        assert_eq!(
            parse_rate_str("1_000/h"),
            Ok(RateSpec {
                calls: 1000,
                per_secs: 3600
            })
        );
        assert_eq!(
            parse_rate_str("7 / day"),
            Ok(RateSpec {
                calls: 7,
                per_secs: 86_400
            })
        );
    }

    #[test]
    fn rate_errors_say_what_is_accepted() {
        assert!(
            parse_rate_str("10/fortnight")
                .unwrap_err()
                .contains("`fortnight`")
        );
        assert!(parse_rate_str("10").unwrap_err().contains("has no unit"));
        assert!(
            parse_rate_str("ten")
                .unwrap_err()
                .contains("expected `rate = N`")
        );
        assert!(
            parse_rate_str("10/mins")
                .unwrap_err()
                .contains("did you mean `min`?")
        );
        assert!(
            parse_rate_str("x/min")
                .unwrap_err()
                .contains("invalid rate")
        );
        assert!(parse_rate_int("0").unwrap_err().contains("no calls"));
        assert!(parse_rate_str("-3/min").unwrap_err().contains("positive"));
        assert!(
            parse_rate_int("99999999999")
                .unwrap_err()
                .contains("too large")
        );
        assert!(
            parse_rate_str("4000000000/s")
                .unwrap_err()
                .contains("too high")
        );
    }

    #[test]
    fn tool_names() {
        assert!(check_tool_name("read-data").is_ok());
        assert!(check_tool_name("a.b_c-D9").is_ok());
        assert!(check_tool_name("").is_err());
        assert!(check_tool_name(&"x".repeat(65)).is_err());
        assert!(
            check_tool_name("read data")
                .unwrap_err()
                .contains("contains a space")
        );
        assert!(check_tool_name("ns/tool").is_err());
    }

    #[test]
    fn scopes() {
        assert!(check_scope("data:write").is_ok());
        assert!(check_scope("https://api.example.com/read").is_ok());
        assert!(check_scope("a\"b").is_err());
        assert!(check_scope("a\\b").is_err());
        assert!(check_scope("é").is_err());
        assert!(check_scope("").is_err());
    }
}
