//! Finding an event's own time: common field names and formats.
//!
//! Accepted: RFC 3339 (`2026-11-24T10:00:00.123+01:00`, also with a space for the `T`), the
//! common log format (`10/Oct/2026:13:55:36 -0700`), and Unix epochs in seconds, milliseconds,
//! microseconds or nanoseconds (told apart by magnitude), as numbers or numeric text.

use std::collections::BTreeMap;

use chrono::DateTime;

use crate::value::Value;

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
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return int_epoch_to_ns(s.parse().ok()?);
    }
    if s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return epoch_to_ns(s.parse().ok()?);
    }
    let rfc = if s.len() > 10 && s.as_bytes()[10] == b' ' {
        let mut t = s.to_string();
        t.replace_range(10..11, "T");
        DateTime::parse_from_rfc3339(&t)
    } else {
        DateTime::parse_from_rfc3339(s)
    };
    if let Ok(t) = rfc {
        return t.timestamp_nanos_opt();
    }
    DateTime::parse_from_str(s, "%d/%b/%Y:%H:%M:%S %z")
        .ok()
        .and_then(|t| t.timestamp_nanos_opt())
}

/// Parses a field value as a time.
pub fn parse_time_value(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => int_epoch_to_ns(*i),
        Value::Float(f) => epoch_to_ns(*f),
        Value::Str(s) => parse_time_text(s),
        _ => None,
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
