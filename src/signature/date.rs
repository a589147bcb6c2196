//! Signed dates: IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), and the variants Tyk emits from
//! Go's `Mon, 02 Jan 2006 15:04:05 MST` layout: `UTC` instead of `GMT`, or a numeric offset
//! (`+04`, `-0330`, `+05:30`) for zones without an abbreviation. Other abbreviations are refused
//! unless configured in `signature.date_zones` (Go silently reads an unknown one as UTC).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use time::{Date, Month, OffsetDateTime, Weekday};

/// The last second of year 9999 (UTC), the end of what `time` and the formats here can show.
const MAX_UNIX: i64 = 253_402_300_799;

const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Why a date was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DateError {
    /// Not in the `Mon, 02 Jan 2006 15:04:05 ZONE` shape.
    #[error(
        "is not an HTTP date (expected e.g. `Thu, 04 Dec 2025 10:00:00 GMT`; UTC and numeric offsets are also accepted)"
    )]
    Shape,
    /// A field is out of range.
    #[error("has an impossible {0}")]
    Range(&'static str),
    /// The day name does not match the date.
    #[error("names the wrong weekday for its date")]
    Weekday,
    /// A zone abbreviation that is not configured.
    #[error(
        "uses the time zone `{0}`, which is ambiguous; send GMT/UTC, or map it in signature.date_zones (e.g. {0}=+01:00)"
    )]
    Zone(String),
}

fn two(b: &[u8]) -> Option<u32> {
    if b.len() == 2 && b.iter().all(u8::is_ascii_digit) {
        Some(u32::from(b[0] - b'0') * 10 + u32::from(b[1] - b'0'))
    } else {
        None
    }
}

/// The zone's offset from UTC in seconds.
fn zone_offset(z: &str, extra: &[(String, i32)]) -> Result<i32, DateError> {
    match z {
        "GMT" | "UTC" | "UT" | "Z" => return Ok(0),
        _ => {}
    }
    let b = z.as_bytes();
    if let Some(&s) = b.first()
        && (s == b'+' || s == b'-')
    {
        let sign = if s == b'+' { 1 } else { -1 };
        let rest = &b[1..];
        let (h, m) = match rest.len() {
            2 => (two(rest), Some(0)),
            4 => (two(&rest[..2]), two(&rest[2..])),
            5 if rest[2] == b':' => (two(&rest[..2]), two(&rest[3..])),
            _ => (None, None),
        };
        return match (h, m) {
            (Some(h), Some(m)) if h <= 14 && m < 60 => Ok(sign * (h as i32 * 3600 + m as i32 * 60)),
            _ => Err(DateError::Range("zone offset")),
        };
    }
    if !z.is_empty() && z.bytes().all(|c| c.is_ascii_alphabetic()) {
        return extra
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(z))
            .map(|(_, o)| *o)
            .ok_or_else(|| DateError::Zone(z.to_string()));
    }
    Err(DateError::Shape)
}

/// Weekday, day, month, year, clock and zone of `Mon, 02 Jan 2006 15:04:05 ZONE`: by position
/// for the canonical 29-byte IMF-fixdate, else split on spaces (runs of spaces tolerated).
#[allow(clippy::type_complexity)]
fn fields(s: &str) -> Option<(&str, &str, &str, &str, &str, &str)> {
    let b = s.as_bytes();
    if b.len() == 29
        && b.is_ascii()
        && &b[3..5] == b", "
        && [7, 11, 16, 25].iter().all(|&i| b[i] == b' ')
        && b[5..7].iter().chain(&b[12..16]).all(u8::is_ascii_digit)
    {
        return Some((
            &s[..3],
            &s[5..7],
            &s[8..11],
            &s[12..16],
            &s[17..25],
            &s[26..],
        ));
    }
    split_fields(s)
}

/// The same fields by splitting on spaces: any layout [`fields`] accepts.
#[allow(clippy::type_complexity)]
fn split_fields(s: &str) -> Option<(&str, &str, &str, &str, &str, &str)> {
    let (wd, rest) = s.split_once(", ")?;
    let mut parts = rest.split(' ').filter(|p| !p.is_empty());
    let f = (
        wd,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    parts.next().is_none().then_some(f)
}

/// Parses a signed `Date` (see the module doc). `extra` maps further zone abbreviations.
pub fn parse(s: &str, extra: &[(String, i32)]) -> Result<SystemTime, DateError> {
    let s = s.trim();
    if s.len() > 64 {
        return Err(DateError::Shape);
    }
    let (wd, day, mon, year, clock, zone) = fields(s).ok_or(DateError::Shape)?;
    let wd_idx = DAYS.iter().position(|d| *d == wd).ok_or(DateError::Shape)?;
    let month_idx = MONTHS
        .iter()
        .position(|m| *m == mon)
        .ok_or(DateError::Shape)?;
    let day: u8 = match day.len() {
        1 | 2 if day.bytes().all(|b| b.is_ascii_digit()) => {
            day.parse().map_err(|_| DateError::Shape)?
        }
        _ => return Err(DateError::Shape),
    };
    if year.len() != 4 || !year.bytes().all(|b| b.is_ascii_digit()) {
        return Err(DateError::Shape);
    }
    let year: i32 = year.parse().map_err(|_| DateError::Shape)?;
    let cb = clock.as_bytes();
    if cb.len() != 8 || cb[2] != b':' || cb[5] != b':' {
        return Err(DateError::Shape);
    }
    let (Some(h), Some(mi), Some(sec)) = (two(&cb[..2]), two(&cb[3..5]), two(&cb[6..])) else {
        return Err(DateError::Shape);
    };
    let offset = zone_offset(zone, extra)?;
    let month = Month::try_from(month_idx as u8 + 1).map_err(|_| DateError::Range("month"))?;
    let date = Date::from_calendar_date(year, month, day).map_err(|_| DateError::Range("day"))?;
    if h > 23 || mi > 59 || sec > 60 {
        return Err(DateError::Range("time"));
    }
    let weekday = [
        Weekday::Monday,
        Weekday::Tuesday,
        Weekday::Wednesday,
        Weekday::Thursday,
        Weekday::Friday,
        Weekday::Saturday,
        Weekday::Sunday,
    ][wd_idx];
    if date.weekday() != weekday {
        return Err(DateError::Weekday);
    }
    let local = date.midnight().assume_utc().unix_timestamp()
        + i64::from(h) * 3600
        + i64::from(mi) * 60
        + i64::from(sec.min(59));
    let utc = local - i64::from(offset);
    if !(0..=MAX_UNIX).contains(&utc) {
        return Err(DateError::Range("year"));
    }
    Ok(UNIX_EPOCH + Duration::from_secs(utc as u64))
}

fn parts(t: SystemTime) -> OffsetDateTime {
    OffsetDateTime::from(t)
}

fn format_with(t: SystemTime, zone: &str) -> String {
    let d = parts(t);
    format!(
        "{}, {:02} {} {:04} {:02}:{:02}:{:02} {zone}",
        DAYS[d.weekday().number_days_from_monday() as usize],
        d.day(),
        MONTHS[d.month() as usize - 1],
        d.year(),
        d.hour(),
        d.minute(),
        d.second()
    )
}

/// IMF-fixdate: `Thu, 04 Dec 2025 10:00:00 GMT`.
pub fn format_imf(t: SystemTime) -> String {
    format_with(t, "GMT")
}

/// What a Tyk gateway with TZ unset sends: `Thu, 04 Dec 2025 10:00:00 UTC`.
pub fn format_tyk(t: SystemTime) -> String {
    format_with(t, "UTC")
}

/// Seconds since the epoch (negative before it).
pub fn unix(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

/// `t` as seconds since the epoch, a `SystemTime` (saturating at the epoch).
pub fn from_unix(secs: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(s: &str) -> i64 {
        unix(parse(s, &[]).unwrap())
    }

    #[test]
    fn gmt_utc_and_offsets() {
        assert_eq!(at("Sun, 05 Jan 2014 21:31:40 GMT"), 1388957500);
        assert_eq!(at("Sun, 05 Jan 2014 21:31:40 UTC"), 1388957500);
        assert_eq!(at("Thu, 04 Dec 2025 10:00:00 UTC"), 1764842400);
        assert_eq!(at("Thu, 04 Dec 2025 14:00:00 +04"), 1764842400);
        assert_eq!(at("Thu, 04 Dec 2025 06:30:00 -0330"), 1764842400);
        assert_eq!(at("Thu, 04 Dec 2025 15:30:00 +05:30"), 1764842400);
    }

    #[test]
    fn unknown_abbreviations_are_refused_unless_mapped() {
        let e = parse("Thu, 04 Dec 2025 11:00:00 CET", &[]).unwrap_err();
        assert_eq!(e, DateError::Zone("CET".into()));
        assert!(e.to_string().contains("date_zones"));
        let zones = vec![("CET".to_string(), 3600)];
        assert_eq!(
            unix(parse("Thu, 04 Dec 2025 11:00:00 CET", &zones).unwrap()),
            1764842400
        );
    }

    #[test]
    fn malformed_dates() {
        for s in [
            "",
            "yesterday",
            "Thu 04 Dec 2025 10:00:00 GMT",
            "Thu, 04 Dec 25 10:00:00 GMT",
            "Thu, 04 Dec 2025 10:00 GMT",
            "Thu, 04 Dec 2025 10:00:00",
            "Thu, 04 Dec 2025 10:00:00 GMT extra",
            "Thu, 32 Dec 2025 10:00:00 GMT",
            "Thu, 04 Dex 2025 10:00:00 GMT",
            "Thu, 04 Dec 2025 25:00:00 GMT",
            "Thu, 04 Dec 2025 10:00:00 +1",
            "Thu, 04 Dec 2025 10:00:00 +99",
            "1764842400",
        ] {
            assert!(parse(s, &[]).is_err(), "{s}");
        }
        assert_eq!(
            parse("Fri, 04 Dec 2025 10:00:00 GMT", &[]),
            Err(DateError::Weekday)
        );
    }

    #[test]
    fn the_range_ends_with_year_9999_in_utc() {
        // Found with fuzz/fuzz_targets/date.rs: 9999-12-31 23:59:59 -14:00 is in year 10000 UTC,
        // which cannot be formatted (it panicked in `time` when shown or formatted back).
        assert_eq!(
            parse("Fri, 31 Dec 9999 23:59:59 -1400", &[]),
            Err(DateError::Range("year"))
        );
        assert_eq!(
            parse("Fri, 31 Dec 9999 10:00:00 -1400", &[]),
            Err(DateError::Range("year"))
        );
        let last = parse("Fri, 31 Dec 9999 23:59:59 GMT", &[]).unwrap();
        assert_eq!(unix(last), MAX_UNIX);
        assert_eq!(format_imf(last), "Fri, 31 Dec 9999 23:59:59 GMT");
        assert_eq!(at("Fri, 31 Dec 9999 09:59:59 -1400"), MAX_UNIX);
        assert_eq!(
            parse("Thu, 01 Jan 1970 00:00:00 +0100", &[]),
            Err(DateError::Range("year"))
        );
    }

    #[test]
    fn formats() {
        let t = from_unix(1764842400);
        assert_eq!(format_tyk(t), "Thu, 04 Dec 2025 10:00:00 UTC");
        assert_eq!(format_imf(t), "Thu, 04 Dec 2025 10:00:00 GMT");
    }

    proptest! {
        #[test]
        fn round_trips(secs in 0i64..253402300799) {
            let t = from_unix(secs);
            prop_assert_eq!(unix(parse(&format_imf(t), &[]).unwrap()), secs);
            prop_assert_eq!(unix(parse(&format_tyk(t), &[]).unwrap()), secs);
        }

        #[test]
        fn the_fixed_position_reading_agrees_with_splitting(
            s in "[A-Za-z]{3}, [0-9]{2} [A-Za-z]{3} [0-9]{4} [0-9:]{8} [A-Z+0-9]{3}|[ -~]{29}|[ a-z0-9,]{29}"
        ) {
            prop_assert_eq!(fields(&s), split_fields(&s));
        }

        #[test]
        fn never_panics(s in "\\PC{0,80}") {
            let _ = parse(&s, &[("CET".to_string(), 3600)]);
        }
    }
}
