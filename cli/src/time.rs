//! Points in time and durations as people write them on a command line: `90d`, `12h`,
//! `2027-01-01`, `2027-01-01T00:00:00Z`.

use std::time::Duration;

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};

const SECONDS_PER_UNIT: [(char, u64); 5] = [
    ('s', 1),
    ('m', 60),
    ('h', 60 * 60),
    ('d', 24 * 60 * 60),
    ('w', 7 * 24 * 60 * 60),
];

/// Parses `90d`, `12h`, `30m`, `45s`, `2w`, or several of them in a row (`1h30m`).
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let invalid = || {
        format!(
            "`{text}` is not a duration: write a number and a unit, s, m, h, d or w \
             (e.g. `90d`, `12h`, `1h30m`)"
        )
    };
    let mut seconds: u64 = 0;
    let mut digits = String::new();
    let mut units_seen = 0;
    for character in text.trim().chars() {
        if character.is_ascii_digit() {
            digits.push(character);
            continue;
        }
        let (_, unit_seconds) = SECONDS_PER_UNIT
            .iter()
            .find(|(unit, _)| *unit == character)
            .ok_or_else(invalid)?;
        let count: u64 = digits.parse().map_err(|_| invalid())?;
        digits.clear();
        units_seen += 1;
        seconds = count
            .checked_mul(*unit_seconds)
            .and_then(|part| seconds.checked_add(part))
            .ok_or_else(|| format!("`{text}` is too long a duration"))?;
    }
    // A number without a unit is refused: `90` could mean seconds or days.
    if !digits.is_empty() || units_seen == 0 {
        return Err(invalid());
    }
    if seconds == 0 {
        return Err(format!("`{text}` is no time at all"));
    }
    Ok(Duration::from_secs(seconds))
}

/// Parses when a key stops working: an RFC 3339 timestamp, a date (midnight UTC), or a
/// duration from now. It must be in the future.
pub(crate) fn parse_expiry(text: &str) -> Result<DateTime<Utc>, String> {
    let now = Utc::now();
    let at = if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        at.with_timezone(&Utc)
    } else if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        date.and_hms_opt(0, 0, 0)
            .map(|midnight| midnight.and_utc())
            .ok_or_else(|| format!("`{text}` is not a usable date"))?
    } else if text.starts_with(|c: char| c.is_ascii_digit()) && !text.contains('-') {
        let duration = parse_duration(text)?;
        chrono::Duration::from_std(duration)
            .ok()
            .and_then(|duration| now.checked_add_signed(duration))
            .ok_or_else(|| format!("`{text}` is too far in the future"))?
    } else {
        return Err(format!(
            "`{text}` is not a time: write an RFC 3339 timestamp (2027-01-01T00:00:00Z), a \
             date (2027-01-01, midnight UTC) or a duration from now (90d, 12h)"
        ));
    };
    if at <= now {
        return Err(format!("`{text}` ({}) is in the past", rfc3339(&at)));
    }
    Ok(at)
}

/// `2027-01-01T00:00:00Z`: whole seconds, UTC, as key files and logs show times.
pub(crate) fn rfc3339(at: &DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// "3 days", "5 hours", "12 minutes": a rough length for messages.
pub(crate) fn roughly(duration: chrono::Duration) -> String {
    let plural = |count: i64, unit: &str| {
        if count == 1 {
            format!("1 {unit}")
        } else {
            format!("{count} {unit}s")
        }
    };
    if duration.num_days() >= 2 {
        plural(duration.num_days(), "day")
    } else if duration.num_hours() >= 2 {
        plural(duration.num_hours(), "hour")
    } else {
        plural(duration.num_minutes().max(1), "minute")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units_and_refuse_bare_numbers() {
        assert_eq!(parse_duration("90d"), Ok(Duration::from_secs(90 * 86_400)));
        assert_eq!(parse_duration("12h"), Ok(Duration::from_secs(12 * 3600)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("2w"), Ok(Duration::from_secs(14 * 86_400)));
        for bad in [
            "",
            "90",
            "d",
            "1x",
            "h1",
            "0s",
            "-1h",
            "99999999999999999999d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn expiries_are_timestamps_dates_or_durations_in_the_future() {
        assert_eq!(
            parse_expiry("2999-01-01").map(|at| rfc3339(&at)),
            Ok("2999-01-01T00:00:00Z".to_owned())
        );
        assert_eq!(
            parse_expiry("2999-06-01T12:00:00+02:00").map(|at| rfc3339(&at)),
            Ok("2999-06-01T10:00:00Z".to_owned())
        );
        let in_a_day = parse_expiry("1d").unwrap() - Utc::now();
        assert!((in_a_day.num_seconds() - 86_400).abs() < 60);
        assert!(parse_expiry("2001-01-01").unwrap_err().contains("past"));
        assert!(parse_expiry("tomorrow").is_err());
        assert!(parse_expiry("2027-13-01").is_err());
    }
}
