//! One audit record as one line of JSON, written by hand into a reused buffer.
//!
//! Every tool call writes a record, so this is on the request path. Through `serde_json` and
//! `chrono` a line cost about 5,500 instructions (a map serializer per field and an RFC 3339
//! formatter); written directly it costs a fraction of that. The output is byte-for-byte what
//! `serde_json` makes of the record with its timestamp in front, except that U+2028, U+2029 and
//! U+0085 are escaped too (a test holds it to that), so the file format is the one the
//! `Serialize` derive of [`AuditRecord`] documents.

use std::{
    fmt::Write as _,
    net::SocketAddr,
    time::{SystemTime, UNIX_EPOCH},
};

use super::AuditRecord;

/// Appends `record` to `out` as a JSON object with the time `now` in its `ts` member.
pub(super) fn write_record(out: &mut String, now: SystemTime, record: &AuditRecord<'_>) {
    // Every field by name and no `..`: a field added to `AuditRecord` does not compile until
    // it is written here, in the place its `Serialize` derive gives it (the order below is the
    // struct's, which the test against `serde_json` checks).
    let AuditRecord {
        event,
        outcome,
        reason,
        detail,
        subject,
        issuer,
        method,
        credential_id,
        client_id,
        tool,
        remote_addr,
        retry_after_seconds,
        suppressed,
    } = *record;
    out.push_str("{\"ts\":\"");
    write_timestamp(out, now);
    out.push_str("\",\"event\":\"");
    out.push_str(event.as_str());
    out.push_str("\",\"outcome\":\"");
    out.push_str(outcome.as_str());
    out.push('"');
    let strings = [
        ("reason", reason),
        ("detail", detail),
        ("subject", subject),
        ("issuer", issuer),
        ("method", method),
        ("credential_id", credential_id),
        ("client_id", client_id),
        ("tool", tool),
    ];
    for (name, value) in strings {
        if let Some(value) = value {
            push_name(out, name);
            push_string(out, value);
        }
    }
    if let Some(addr) = remote_addr {
        push_name(out, "remote_addr");
        out.push('"');
        push_socket_addr(out, addr);
        out.push('"');
    }
    if let Some(seconds) = retry_after_seconds {
        push_name(out, "retry_after_seconds");
        push_number(out, seconds, 1);
    }
    if let Some(count) = suppressed {
        push_name(out, "suppressed");
        push_number(out, count, 1);
    }
    out.push('}');
}

/// `,"name":`, the start of a member after the first.
fn push_name(out: &mut String, name: &str) {
    out.push_str(",\"");
    out.push_str(name);
    out.push_str("\":");
}

/// A JSON string, escaped as `serde_json` escapes it (`"`, `\` and the control characters:
/// short forms where JSON has them, `\u00XX` otherwise), and U+2028, U+2029 and U+0085 as
/// `\u2028`, `\u2029` and `\u0085`, which some log shippers and JavaScript consumers take for
/// line breaks; everything else as is.
///
/// Eight bytes at a time are skipped while none of them needs a closer look, so a plain ASCII
/// value costs about a quarter of a byte-by-byte scan.
fn push_string(out: &mut String, value: &str) {
    out.push('"');
    let bytes = value.as_bytes();
    let mut clean_from = 0;
    let mut at = 0;
    while at < bytes.len() {
        if let Some(word) = bytes
            .get(at..at + 8)
            .and_then(|w| <[u8; 8]>::try_from(w).ok())
            && !needs_a_look(u64::from_le_bytes(word))
        {
            at += 8;
            continue;
        }
        let Some((escape, len)) = escape_at(bytes, at) else {
            at += 1;
            continue;
        };
        // `at` starts a character (an ASCII byte or the lead byte of one of the three), and
        // `clean_from` ends one, so both are character boundaries.
        out.push_str(value.get(clean_from..at).unwrap_or_default());
        match escape {
            Escape::Short(text) => out.push_str(text),
            Escape::Unicode(code) => {
                out.push_str("\\u");
                let digits =
                    [code >> 12, code >> 8, code >> 4, code].map(|d| HEX[usize::from(d & 0xf)]);
                out.push_str(ascii(&digits));
            }
        }
        at += len;
        clean_from = at;
    }
    out.push_str(value.get(clean_from..).unwrap_or_default());
    out.push('"');
}

/// Lower-case hexadecimal digits, as `serde_json` writes them.
const HEX: [u8; 16] = *b"0123456789abcdef";

/// How a character is written inside a JSON string.
enum Escape {
    /// A fixed form: `\"`, `\\`, `\n` and the other short escapes.
    Short(&'static str),
    /// `\uXXXX` with this code.
    Unicode(u16),
}

/// The escape of the character starting at `bytes[at]` and how many bytes it spans, or `None`
/// if it is written as is.
fn escape_at(bytes: &[u8], at: usize) -> Option<(Escape, usize)> {
    let byte = *bytes.get(at)?;
    let escape = match byte {
        b'"' => Escape::Short("\\\""),
        b'\\' => Escape::Short("\\\\"),
        b'\n' => Escape::Short("\\n"),
        b'\r' => Escape::Short("\\r"),
        b'\t' => Escape::Short("\\t"),
        0x08 => Escape::Short("\\b"),
        0x0c => Escape::Short("\\f"),
        0x00..=0x1f => Escape::Unicode(u16::from(byte)),
        // U+0085 (NEL) is C2 85 in UTF-8.
        0xc2 if bytes.get(at + 1) == Some(&0x85) => return Some((Escape::Unicode(0x85), 2)),
        // U+2028 and U+2029 are E2 80 A8 and E2 80 A9.
        0xe2 if bytes.get(at + 1) == Some(&0x80) => {
            return match bytes.get(at + 2) {
                Some(0xa8) => Some((Escape::Unicode(0x2028), 3)),
                Some(0xa9) => Some((Escape::Unicode(0x2029), 3)),
                _ => None,
            };
        }
        _ => return None,
    };
    Some((escape, 1))
}

/// Whether any of the eight bytes in `word` may need escaping: a control character, `"`, `\`,
/// or any non-ASCII byte (which might start U+0085, U+2028 or U+2029). Never "no" when one
/// does; with a non-ASCII byte in the word it is always "yes" (the byte-by-byte check decides).
fn needs_a_look(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // The high bit of a byte is set where that byte is zero.
    let zero = |w: u64| w.wrapping_sub(ONES) & !w;
    let control = word.wrapping_sub(ONES * 0x20) & !word;
    let quote = zero(word ^ (ONES * u64::from(b'"')));
    let backslash = zero(word ^ (ONES * u64::from(b'\\')));
    (control | quote | backslash | word) & HIGH != 0
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` in UTC, as `chrono`'s RFC 3339 formatter writes it with
/// milliseconds. A clock before 1970 is written as the epoch.
fn write_timestamp(out: &mut String, now: SystemTime) {
    let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since_epoch.as_secs();
    let (year, month, day) = civil_date(seconds / 86_400);
    let time_of_day = seconds % 86_400;
    let mut text = *b"0000-00-00T00:00:00.000Z";
    put_digits(&mut text[0..4], year);
    put_digits(&mut text[5..7], month);
    put_digits(&mut text[8..10], day);
    put_digits(&mut text[11..13], time_of_day / 3600);
    put_digits(&mut text[14..16], time_of_day / 60 % 60);
    put_digits(&mut text[17..19], time_of_day % 60);
    put_digits(&mut text[20..23], u64::from(since_epoch.subsec_millis()));
    if year > 9999 {
        // Beyond the four digits of the fixed layout (a clock set millennia ahead).
        push_number(out, year, 4);
        out.push_str(ascii(&text[4..]));
    } else {
        out.push_str(ascii(&text));
    }
}

/// Writes the last `field.len()` decimal digits of `value` into `field`, zero-padded.
fn put_digits(field: &mut [u8], mut value: u64) {
    for digit in field.iter_mut().rev() {
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// `value` in decimal, zero-padded to at least `width` digits (`core::fmt` costs several
/// times more for the same few digits).
fn push_number(out: &mut String, value: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut start = digits.len();
    let mut rest = value;
    while rest > 0 || start == digits.len() {
        start -= 1;
        digits[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    start = start.min(digits.len() - width.min(digits.len()));
    out.push_str(ascii(&digits[start..]));
}

/// Bytes this module wrote as ASCII, as a `str`.
fn ascii(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap_or_default()
}

/// A socket address as its `Display` writes it: `a.b.c.d:port` or `[v6]:port`.
fn push_socket_addr(out: &mut String, addr: SocketAddr) {
    match addr {
        SocketAddr::V4(v4) => {
            for (i, octet) in v4.ip().octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                push_number(out, u64::from(octet), 1);
            }
        }
        // Rare enough (and intricate enough: zero runs, embedded IPv4) to leave to `Display`.
        SocketAddr::V6(v6) => {
            let _ = write!(out, "[{}]", v6.ip());
            if v6.scope_id() != 0 {
                // `Display` of a scoped address puts `%scope` inside the brackets.
                out.pop();
                let _ = write!(out, "%{}]", v6.scope_id());
            }
        }
    }
    out.push(':');
    push_number(out, u64::from(addr.port()), 1);
}

/// The proleptic Gregorian date of a day count since 1970-01-01: the days are shifted to
/// start in March of year 0, so that the leap day ends a year, then split into 400-year eras,
/// years of the era and days of the year.
fn civil_date(days_since_epoch: u64) -> (u64, u64, u64) {
    const DAYS_FROM_0000_03_01_TO_EPOCH: u64 = 719_468;
    const DAYS_PER_ERA: u64 = 146_097;
    let days = days_since_epoch + DAYS_FROM_0000_03_01_TO_EPOCH;
    let era = days / DAYS_PER_ERA;
    let day_of_era = days % DAYS_PER_ERA;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::{net::SocketAddrV6, time::Duration};

    use serde::Serialize;

    use super::*;
    use crate::{AuditEvent, Outcome};

    #[derive(Serialize)]
    struct Reference<'a, 'r> {
        ts: String,
        #[serde(flatten)]
        record: &'r AuditRecord<'a>,
    }

    /// What `serde_json` and `chrono` make of the record, with U+2028, U+2029 and U+0085
    /// escaped (`serde_json` writes them raw; outside strings its output is ASCII, so
    /// replacing them is exact).
    fn reference(now: SystemTime, record: &AuditRecord<'_>) -> String {
        let ts = chrono::DateTime::<chrono::Utc>::from(now)
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        serde_json::to_string(&Reference { ts, record })
            .unwrap()
            .replace('\u{2028}', "\\u2028")
            .replace('\u{2029}', "\\u2029")
            .replace('\u{85}', "\\u0085")
    }

    fn written(now: SystemTime, record: &AuditRecord<'_>) -> String {
        let mut out = String::new();
        write_record(&mut out, now, record);
        out
    }

    #[test]
    fn lines_are_what_serde_json_writes() {
        let now = UNIX_EPOCH + Duration::from_millis(1_795_000_000_123);
        let addr: SocketAddr = "[2001:db8::1]:8443".parse().unwrap();
        let hostile = "quote \" backslash \\ newline \n tab \t nul \0 bell \x07 del \x7f \
                       unicode é 😀 \u{2028} \u{2029} \u{85} \u{84} \u{2027} \u{202a} € slash / end";
        let mut full = AuditRecord::new(AuditEvent::ToolCall, Outcome::RateLimited);
        full.reason = Some("rate_limited");
        full.detail = Some(hostile);
        full.subject = Some("alice\r\n{\"forged\":true}");
        full.issuer = Some("https://idp.example.com/realms/a\"b");
        full.method = Some("jwt");
        full.credential_id = Some("\u{1f}\u{8}\u{c}");
        full.client_id = Some("");
        full.tool = Some("delete-data");
        full.remote_addr = Some(addr);
        full.retry_after_seconds = Some(u64::MAX);
        full.suppressed = Some(412);
        let minimal = AuditRecord::new(AuditEvent::Authentication, Outcome::Allowed);
        let mut v4 = AuditRecord::new(AuditEvent::Login, Outcome::Denied);
        v4.remote_addr = Some("127.0.0.1:5000".parse().unwrap());
        v4.retry_after_seconds = Some(0);
        for record in [&full, &minimal, &v4] {
            assert_eq!(written(now, record), reference(now, record));
        }
        // A forged line break in a subject stays inside its string.
        assert_eq!(written(now, &full).lines().count(), 1);
    }

    #[test]
    fn every_control_character_is_escaped_like_serde_json() {
        let all: String = (0u8..0x80).map(char::from).collect();
        let mut record = AuditRecord::new(AuditEvent::Token, Outcome::Denied);
        record.detail = Some(&all);
        let now = UNIX_EPOCH;
        assert_eq!(written(now, &record), reference(now, &record));
    }

    #[test]
    fn line_and_paragraph_separators_and_next_line_are_escaped() {
        let mut record = AuditRecord::new(AuditEvent::Login, Outcome::Denied);
        record.subject = Some("a\u{2028}b\u{2029}c\u{85}d");
        let line = written(UNIX_EPOCH, &record);
        assert!(
            line.ends_with(r#""subject":"a\u2028b\u2029c\u0085d"}"#),
            "{line}"
        );
        // Their neighbours, and every other character, are left as `serde_json` leaves them.
        let near: String = ('\u{80}'..='\u{ff}')
            .chain('\u{2000}'..='\u{206f}')
            .chain(['😀', '\u{feff}', '\u{fffd}'])
            .collect();
        record.subject = Some(&near);
        assert_eq!(written(UNIX_EPOCH, &record), reference(UNIX_EPOCH, &record));
    }

    /// Whether `line` holds a raw control character or one of the three line breaks.
    fn has_raw_break(line: &str) -> bool {
        line.chars()
            .any(|c| c < ' ' || matches!(c, '\u{85}' | '\u{2028}' | '\u{2029}'))
    }

    #[test]
    fn no_raw_control_character_ever_reaches_a_line() {
        // Random strings over the characters that matter (and the bytes around them), at
        // every position relative to the eight-byte steps of the fast path.
        let alphabet: Vec<char> = (0u8..0x80)
            .map(char::from)
            .chain(['\u{84}', '\u{85}', '\u{86}', '\u{a0}', 'é', '€', '😀'])
            .chain(['\u{2027}', '\u{2028}', '\u{2029}', '\u{202a}'])
            .collect();
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move |n: usize| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n as u64) as usize
        };
        for _ in 0..5_000 {
            let len = next(40);
            let value: String = (0..len).map(|_| alphabet[next(alphabet.len())]).collect();
            let mut record = AuditRecord::new(AuditEvent::ToolCall, Outcome::Denied);
            record.detail = Some(&value);
            // The second half, shifted against the eight-byte steps.
            record.tool = Some(&value[value.ceil_char_boundary(value.len() / 2)..]);
            let line = written(UNIX_EPOCH, &record);
            assert!(!has_raw_break(&line), "{line:?}");
            assert_eq!(line, reference(UNIX_EPOCH, &record));
            let parsed: serde_json::Value = serde_json::from_str(&line).unwrap();
            assert_eq!(parsed["detail"], value.as_str());
        }
    }

    #[test]
    fn the_fast_path_flags_every_byte_that_needs_a_look() {
        for byte in 0..=255u8 {
            let needs = byte < 0x20 || byte == b'"' || byte == b'\\' || byte >= 0x80;
            for at in 0..8 {
                let mut word = [b'a'; 8];
                word[at] = byte;
                assert_eq!(
                    needs_a_look(u64::from_le_bytes(word)),
                    needs,
                    "{byte:#x} at {at}"
                );
            }
        }
    }

    #[test]
    fn timestamps_match_chrono_across_calendar_edges() {
        let mut seconds: Vec<u64> = vec![
            0,
            59,
            86_399,
            86_400,
            951_782_400,     // 2000-02-29
            951_868_800,     // 2000-03-01
            4_107_542_399,   // 2100-02-28T23:59:59
            4_107_542_400,   // 2100-03-01 (2100 is not a leap year)
            253_402_300_799, // 9999-12-31T23:59:59
        ];
        // And a pseudo-random spread over four centuries.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            seconds.push(x % 12_622_780_800);
        }
        for s in seconds {
            for millis in [0, 7, 999] {
                let now = UNIX_EPOCH + Duration::from_secs(s) + Duration::from_millis(millis);
                let mut ours = String::new();
                write_timestamp(&mut ours, now);
                let chrono = chrono::DateTime::<chrono::Utc>::from(now)
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
                assert_eq!(ours, chrono, "at {s} s");
            }
        }
    }

    #[test]
    fn socket_addresses_print_like_display() {
        let addrs: Vec<SocketAddr> = vec![
            "0.0.0.0:0".parse().unwrap(),
            "127.0.0.1:80".parse().unwrap(),
            "255.255.255.255:65535".parse().unwrap(),
            "10.20.30.40:8080".parse().unwrap(),
            "[::1]:443".parse().unwrap(),
            "[::ffff:192.0.2.1]:1".parse().unwrap(),
            "[2001:db8::8a2e:370:7334]:9".parse().unwrap(),
            SocketAddr::V6(SocketAddrV6::new("fe80::1".parse().unwrap(), 22, 0, 3)),
        ];
        for addr in addrs {
            let mut out = String::new();
            push_socket_addr(&mut out, addr);
            assert_eq!(out, addr.to_string());
        }
    }

    #[test]
    fn numbers_pad_to_their_width() {
        for (value, width, expected) in [
            (0, 1, "0"),
            (0, 3, "000"),
            (7, 2, "07"),
            (12345, 2, "12345"),
            (u64::MAX, 1, "18446744073709551615"),
            (5, 25, "00000000000000000005"),
        ] {
            let mut out = String::new();
            push_number(&mut out, value, width);
            assert_eq!(out, expected);
        }
    }

    #[test]
    fn a_clock_before_1970_writes_the_epoch() {
        let mut out = String::new();
        write_timestamp(&mut out, UNIX_EPOCH - Duration::from_secs(5));
        assert_eq!(out, "1970-01-01T00:00:00.000Z");
    }
}

/// What writing a line costs, run by hand (`--ignored`) in release: nanoseconds per record,
/// or, under valgrind with `AUDIT_MEASURE_ROUNDS` set, instructions.
#[cfg(test)]
mod measure {
    use std::{hint::black_box, time::Instant};

    use super::*;
    use crate::{AuditEvent, Outcome};

    #[test]
    #[ignore = "a measurement: cargo test --release -p mcp-gatekeeper --lib audit_line_cost -- --ignored --nocapture"]
    fn audit_line_cost() {
        let mut record = AuditRecord::new(AuditEvent::ToolCall, Outcome::Allowed);
        record.subject = Some("alice@example.com");
        record.method = Some("jwt");
        record.credential_id = Some("4b5d9e10fb1156846a0af95ebf21172f");
        record.client_id = Some("demo-admin");
        record.tool = Some("delete-data");
        record.remote_addr = Some("127.0.0.1:52440".parse().unwrap());
        let now = SystemTime::now();
        let mut line = String::with_capacity(256);
        // `AUDIT_MEASURE_ROUNDS` shrinks the run for an instruction count under valgrind.
        let rounds: u32 = std::env::var("AUDIT_MEASURE_ROUNDS")
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(2_000_000);
        let mut best = f64::MAX;
        for _ in 0..7 {
            let start = Instant::now();
            for _ in 0..rounds {
                line.clear();
                // What the request path does per record: the bounds check, then the line.
                assert!(black_box(&record).within_bounds());
                write_record(&mut line, black_box(now), black_box(&record));
                black_box(&line);
            }
            best = best.min(start.elapsed().as_nanos() as f64 / f64::from(rounds));
        }
        println!("audit line: {best:.1} ns per record ({} bytes)", line.len());
    }
}
