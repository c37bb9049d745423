//! Finding an event's own time: common field names and formats.
//!
//! Accepted: RFC 3339 (`2026-11-24T10:00:00.123+01:00`, also with a space for the `T`), the
//! common log format (`10/Oct/2026:13:55:36 -0700`), and Unix epochs in seconds, milliseconds,
//! microseconds or nanoseconds (told apart by magnitude), as numbers or numeric text.

use std::collections::BTreeMap;

use chrono::DateTime;

use crate::value::{Value, ValueRef};

/// Now, in ns since the Unix epoch (UTC); see [`eddy_base::time::now_ns`] for its overflow policy.
pub use eddy_base::time::now_ns;

/// Field names that hold an event's time, in the order they are tried.
pub const TIME_FIELDS: [&str; 8] = [
    "@timestamp",
    "timestamp",
    "time",
    "ts",
    "@t",
    "date",
    "datetime",
    "eventTime",
];

/// The place of `name` in [`TIME_FIELDS`]: a match on the name, where comparing it with each
/// in turn cost a door more than the rest of finding an event's time.
pub fn time_field_rank(name: &str) -> Option<usize> {
    match name {
        "@timestamp" => Some(0),
        "timestamp" => Some(1),
        "time" => Some(2),
        "ts" => Some(3),
        "@t" => Some(4),
        "date" => Some(5),
        "datetime" => Some(6),
        "eventTime" => Some(7),
        _ => None,
    }
}

/// An epoch number in s, ms, µs or ns, converted to ns. Epochs in seconds cover 1973–5138,
/// milliseconds 1973–5138 and so on; the ranges do not overlap.
pub fn epoch_to_ns(x: f64) -> Option<i64> {
    if !x.is_finite() || x <= 0.0 {
        return None;
    }
    let ns = if x < 1e11 {
        x * 1e9
    } else if x < 1e14 {
        x * 1e6
    } else if x < 1e17 {
        x * 1e3
    } else {
        x
    };
    (ns < i64::MAX as f64).then_some(ns as i64)
}

/// Like [`epoch_to_ns`] for integers, without losing nanosecond precision.
pub fn int_epoch_to_ns(i: i64) -> Option<i64> {
    match i {
        i if i <= 0 => None,
        i if i < 100_000_000_000 => i.checked_mul(1_000_000_000),
        i if i < 100_000_000_000_000 => i.checked_mul(1_000_000),
        i if i < 100_000_000_000_000_000 => i.checked_mul(1_000),
        i => Some(i),
    }
}

/// Parses a time written as text.
pub fn parse_time_text(s: &str) -> Option<i64> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if let Some(ns) = fast::rfc3339(s.as_bytes()).or_else(|| fast::common_log(s.as_bytes())) {
        return Some(ns);
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return int_epoch_to_ns(s.parse().ok()?);
    }
    if s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return epoch_to_ns(s.parse().ok()?);
    }
    by_chrono(s)
}

/// RFC 3339 (a space for the `T` too) or the common log format, by chrono: every shape the
/// hand-read ones in [`fast`] decline.
fn by_chrono(s: &str) -> Option<i64> {
    let rfc = if s.len() > 10 && s.as_bytes()[10] == b' ' {
        let mut t = s.to_string();
        t.replace_range(10..11, "T");
        DateTime::parse_from_rfc3339(&t)
    } else {
        DateTime::parse_from_rfc3339(s)
    };
    match rfc {
        Ok(t) => t.timestamp_nanos_opt(),
        Err(_) => DateTime::parse_from_str(s, "%d/%b/%Y:%H:%M:%S %z")
            .ok()
            .and_then(|t| t.timestamp_nanos_opt()),
    }
}

/// The two shapes almost every log writes, read by hand: chrono's general parser read its format
/// string again for every call, a tenth of a door's work on access lines. Each returns `None`
/// for anything it is not sure of (other widths, leap seconds, a time out of the nanosecond
/// range), which then goes to chrono: a property test holds them to chrono's answers.
mod fast {
    const NS: i64 = 1_000_000_000;

    /// `digits` ASCII digits at `at` as a number.
    fn num(b: &[u8], at: usize, digits: usize) -> Option<i64> {
        let part = b.get(at..at + digits)?;
        part.iter().try_fold(0i64, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0'))
        })
    }

    /// Days from 1970-01-01 to a valid date of the proleptic Gregorian calendar (Howard
    /// Hinnant's `days_from_civil`).
    fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
        let y = if month <= 2 { year - 1 } else { year };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = (month + 9) % 12;
        let doy = (153 * mp + 2) / 5 + day - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    fn days_in_month(year: i64, month: i64) -> i64 {
        match month {
            4 | 6 | 9 | 11 => 30,
            2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
            2 => 28,
            _ => 31,
        }
    }

    /// Nanoseconds since the epoch of a wall time and its offset east of UTC in seconds;
    /// `None` if a part is out of its range or the result out of `i64`'s.
    #[allow(clippy::too_many_arguments)]
    fn instant(
        year: i64,
        month: i64,
        day: i64,
        hour: i64,
        minute: i64,
        second: i64,
        nanos: i64,
        offset: i64,
    ) -> Option<i64> {
        if !(1..=12).contains(&month)
            || day < 1
            || day > days_in_month(year, month)
            || hour > 23
            || minute > 59
            || second > 59
        {
            return None;
        }
        let seconds =
            days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second
                - offset;
        seconds.checked_mul(NS)?.checked_add(nanos)
    }

    /// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`, the `T` also `t` or a space.
    pub(super) fn rfc3339(b: &[u8]) -> Option<i64> {
        if b.len() < 20
            || b[4] != b'-'
            || b[7] != b'-'
            || !matches!(b[10], b'T' | b't' | b' ')
            || b[13] != b':'
            || b[16] != b':'
        {
            return None;
        }
        let mut at = 19;
        let mut nanos = 0;
        if b[at] == b'.' {
            let digits = b[at + 1..]
                .iter()
                .take_while(|c| c.is_ascii_digit())
                .count();
            if !(1..=9).contains(&digits) {
                return None;
            }
            nanos = num(b, at + 1, digits)? * 10i64.pow(9 - digits as u32);
            at += 1 + digits;
        }
        let offset = match b.get(at..)? {
            [b'Z' | b'z'] => 0,
            [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
                let (h, m) = (num(b, at + 1, 2)?, num(b, at + 4, 2)?);
                if h > 23 || m > 59 {
                    return None;
                }
                let east = h * 3600 + m * 60;
                if *sign == b'-' {
                    -east
                } else {
                    east
                }
            }
            _ => return None,
        };
        instant(
            num(b, 0, 4)?,
            num(b, 5, 2)?,
            num(b, 8, 2)?,
            num(b, 11, 2)?,
            num(b, 14, 2)?,
            num(b, 17, 2)?,
            nanos,
            offset,
        )
    }

    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];

    /// The common log format's `DD/Mon/YYYY:HH:MM:SS ±HHMM`.
    pub(super) fn common_log(b: &[u8]) -> Option<i64> {
        if b.len() != 26
            || b[2] != b'/'
            || b[6] != b'/'
            || b[11] != b':'
            || b[14] != b':'
            || b[17] != b':'
            || b[20] != b' '
            || !matches!(b[21], b'+' | b'-')
        {
            return None;
        }
        let month = MONTHS.iter().position(|m| m[..] == b[3..6])? as i64 + 1;
        let (h, m) = (num(b, 22, 2)?, num(b, 24, 2)?);
        if h > 23 || m > 59 {
            return None;
        }
        let east = h * 3600 + m * 60;
        instant(
            num(b, 7, 4)?,
            month,
            num(b, 0, 2)?,
            num(b, 12, 2)?,
            num(b, 15, 2)?,
            num(b, 18, 2)?,
            0,
            if b[21] == b'-' { -east } else { east },
        )
    }
}

/// Parses a field value as a time.
pub fn parse_time_value(v: &Value) -> Option<i64> {
    parse_time_ref(v.into())
}

/// [`parse_time_value`] for a borrowed value (what field sinks and flat fields hold).
pub fn parse_time_ref(v: ValueRef<'_>) -> Option<i64> {
    match v {
        ValueRef::Int(i) => int_epoch_to_ns(i),
        ValueRef::Float(f) => epoch_to_ns(f),
        ValueRef::Str(s) => parse_time_text(s),
        ValueRef::Null | ValueRef::Bool(_) => None,
    }
}

/// The first of [`TIME_FIELDS`] that holds a readable time: its name and the time in ns.
pub fn detect(fields: &BTreeMap<String, Value>) -> Option<(&'static str, i64)> {
    TIME_FIELDS.iter().find_map(|name| {
        fields
            .get(*name)
            .and_then(parse_time_value)
            .map(|ns| (*name, ns))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_795_500_000_000_000_000; // 2026-11-24T...Z

    #[test]
    fn a_time_fields_rank_is_its_place_in_the_list() {
        for (rank, name) in TIME_FIELDS.iter().enumerate() {
            assert_eq!(time_field_rank(name), Some(rank));
        }
        for other in ["", "Time", "timestamps", "@timestam", "t", "dates"] {
            assert_eq!(time_field_rank(other), None);
        }
    }

    #[test]
    fn epochs_by_magnitude() {
        assert_eq!(parse_time_value(&Value::Int(1_795_500_000)), Some(T));
        assert_eq!(parse_time_value(&Value::Int(1_795_500_000_000)), Some(T));
        assert_eq!(
            parse_time_value(&Value::Int(1_795_500_000_000_000)),
            Some(T)
        );
        assert_eq!(parse_time_value(&Value::Int(T)), Some(T));
        assert_eq!(
            parse_time_value(&Value::Float(1_795_500_000.5)),
            Some(T + 500_000_000)
        );
        assert_eq!(parse_time_text("1795500000"), Some(T));
        assert_eq!(parse_time_value(&Value::Int(-5)), None);
    }

    #[test]
    fn rfc3339_and_common_log_format() {
        assert_eq!(parse_time_text("1970-01-01T00:00:01Z"), Some(1_000_000_000));
        assert_eq!(
            parse_time_text("1970-01-01T01:00:01.5+01:00"),
            Some(1_500_000_000)
        );
        assert_eq!(parse_time_text("1970-01-01 00:00:01Z"), Some(1_000_000_000));
        assert_eq!(
            parse_time_text("01/Jan/1970:00:00:02 +0000"),
            Some(2_000_000_000)
        );
        assert_eq!(
            parse_time_text("01/Jan/1970:01:00:02 +0100"),
            Some(2_000_000_000)
        );
        assert_eq!(parse_time_text("yesterday"), None);
        assert_eq!(parse_time_text(""), None);
    }

    #[test]
    fn century_years_are_leap_years_only_every_400() {
        for (text, leap) in [
            ("1900-02-29T00:00:00Z", false),
            ("2000-02-29T00:00:00Z", true),
            ("29/Feb/2100:00:00:00 +0000", false),
            ("29/Feb/2024:00:00:00 +0000", true),
        ] {
            assert_eq!(parse_time_text(text).is_some(), leap, "{text}");
            assert_eq!(parse_time_text(text), by_chrono(text), "{text}");
        }
    }

    proptest::proptest! {
        #[test]
        fn hand_read_rfc3339_times_agree_with_chrono(
            y in 1600i64..2300, mo in 0i64..14, d in 0i64..33, h in 0i64..25, mi in 0i64..61,
            sec in 0i64..62, frac in proptest::option::of("[0-9]{1,10}"),
            sep in proptest::sample::select(vec!['T', 't', ' ']),
            zone in proptest::sample::select(vec!["Z", "z", "+00:00", "-07:30", "+14:00",
                "+24:00", "-00:61", "+0100", ""]),
        ) {
            let text = format!(
                "{y:04}-{mo:02}-{d:02}{sep}{h:02}:{mi:02}:{sec:02}{}{zone}",
                frac.map(|f| format!(".{f}")).unwrap_or_default()
            );
            if let Some(ns) = fast::rfc3339(text.as_bytes()) {
                proptest::prop_assert_eq!(Some(ns), by_chrono(&text), "{}", text);
            }
            proptest::prop_assert_eq!(parse_time_text(&text), by_chrono(&text), "{}", text);
        }

        #[test]
        fn hand_read_common_log_times_agree_with_chrono(
            y in 1600i64..2300, mo in 0usize..13, d in 0i64..33, h in 0i64..25, mi in 0i64..61,
            sec in 0i64..62, sign in proptest::sample::select(vec!['+', '-']),
            zh in 0i64..26, zm in 0i64..61,
        ) {
            const NAMES: [&str; 13] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug",
                "Sep", "Oct", "Nov", "Dec", "jan"];
            let text = format!(
                "{d:02}/{}/{y:04}:{h:02}:{mi:02}:{sec:02} {sign}{zh:02}{zm:02}",
                NAMES[mo]
            );
            if let Some(ns) = fast::common_log(text.as_bytes()) {
                proptest::prop_assert_eq!(Some(ns), by_chrono(&text), "{}", text);
            }
            proptest::prop_assert_eq!(parse_time_text(&text), by_chrono(&text), "{}", text);
        }

        #[test]
        fn any_text_reads_as_chrono_reads_it(text in "[0-9Tt:./+ZzJan -]{0,32}") {
            let s = text.trim();
            let reference = if s.is_empty() {
                None
            } else if s.bytes().all(|b| b.is_ascii_digit()) {
                s.parse().ok().and_then(int_epoch_to_ns)
            } else if s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
                s.parse().ok().and_then(epoch_to_ns)
            } else {
                by_chrono(s)
            };
            proptest::prop_assert_eq!(parse_time_text(&text), reference, "{:?}", text);
        }
    }

    #[test]
    fn detects_the_first_known_field() {
        let mut f = BTreeMap::new();
        f.insert("time".to_string(), Value::Str("bogus".into()));
        f.insert("ts".to_string(), Value::Int(1_795_500_000));
        assert_eq!(detect(&f), Some(("ts", T)));
        f.insert(
            "@timestamp".to_string(),
            Value::Str("1970-01-01T00:00:01Z".into()),
        );
        assert_eq!(detect(&f), Some(("@timestamp", 1_000_000_000)));
    }
}
