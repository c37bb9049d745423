//! Parsing of durations, sizes and points in time, as given on the command line and in config.

use std::time::Duration;

/// Why a duration, size or time does not parse; the text names the input and what would do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitsError {
    /// Not a duration.
    #[error("invalid duration {input:?}: {reason} (examples: 500ms, 15m, 7d)")]
    Duration {
        /// The text as given.
        input: String,
        /// What the duration parser said.
        reason: String,
    },
    /// No number where a size starts.
    #[error("invalid size {0:?}: expected a number with an optional unit, like 512MiB")]
    SizeNumber(String),
    /// A size with a unit eddy does not know.
    #[error(
        "invalid size {input:?}: unknown unit {unit:?} (use B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)"
    )]
    SizeUnit {
        /// The text as given.
        input: String,
        /// The unit, lower-cased.
        unit: String,
    },
    /// A size over `u64::MAX` bytes.
    #[error("size {0:?} is too large")]
    SizeTooLarge(String),
    /// A time before the Unix epoch.
    #[error("time {0:?} is before 1970")]
    TimeBefore1970(String),
    /// A time after the last one an `i64` of ns can hold.
    #[error("time {0:?} is after 2262, the last time eddy can represent")]
    TimeAfter2262(String),
    /// Neither an RFC 3339 time nor a relative one.
    #[error("invalid time {0:?}: use RFC 3339 (2026-11-24T10:00:00Z) or a relative time like 15m or 24h")]
    Time(String),
}

/// `250ms`, `15m`, `7d`, `1h 30m` (humantime), or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, UnitsError> {
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(s).map_err(|e| UnitsError::Duration {
        input: s.to_string(),
        reason: e.to_string(),
    })
}

/// `1048576`, `64KiB`, `256MiB`, `10GB` (KB/MB/GB are powers of 1000, KiB/MiB/GiB of 1024).
pub fn parse_size(s: &str) -> Result<u64, UnitsError> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| UnitsError::SizeNumber(s.to_string()))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        "t" | "tb" => 1_000_000_000_000,
        "tib" => 1 << 40,
        other => {
            return Err(UnitsError::SizeUnit {
                input: s.to_string(),
                unit: other.to_string(),
            })
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| UnitsError::SizeTooLarge(s.to_string()))
}

/// A point in time as ns since the epoch: RFC 3339 (`2026-11-24T10:00:00Z`), or a duration
/// meaning that long ago (`15m`, `24h`).
pub fn parse_time(s: &str) -> Result<i64, UnitsError> {
    if let Ok(t) = humantime::parse_rfc3339_weak(s) {
        let since_epoch = t
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|_| UnitsError::TimeBefore1970(s.to_string()))?;
        return i64::try_from(since_epoch.as_nanos())
            .map_err(|_| UnitsError::TimeAfter2262(s.to_string()));
    }
    match humantime::parse_duration(s) {
        Ok(ago) => Ok(crate::time::now_ns().saturating_sub(ago.as_nanos() as i64)),
        Err(_) => Err(UnitsError::Time(s.to_string())),
    }
}

/// A duration for people: a space between each number and its unit (`7 days`, `1 h 30 min`,
/// `250 ms`), in a form [`parse_duration`] reads back.
pub fn format_duration(d: Duration) -> String {
    let compact = humantime::format_duration(d).to_string();
    let parts: Vec<String> = compact
        .split_whitespace()
        .map(|part| {
            let at = part
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(part.len());
            let (number, unit) = part.split_at(at);
            // humantime's `m` reads as metres; `min` is the SI symbol.
            let unit = if unit == "m" { "min" } else { unit };
            format!("{number} {unit}")
        })
        .collect();
    parts.join(" ")
}

/// Formats ns since the epoch as RFC 3339 with nanoseconds.
pub fn format_time(ns: i64) -> String {
    if ns < 0 {
        return ns.to_string();
    }
    let t = std::time::UNIX_EPOCH + Duration::from_nanos(ns as u64);
    humantime::format_rfc3339_nanos(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("64KiB").unwrap(), 65536);
        assert_eq!(parse_size("1GB").unwrap(), 1_000_000_000);
        assert!(parse_size("12XB").unwrap_err().to_string().contains("XB"));
        assert!(parse_size("lots").is_err());
    }

    #[test]
    fn times_and_durations() {
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert_eq!(parse_time("1970-01-01T00:00:01Z").unwrap(), 1_000_000_000);
        let ago = parse_time("1h").unwrap();
        assert!(crate::time::now_ns() - ago >= 3_600_000_000_000);
        assert!(parse_time("yesterday-ish").is_err());
        assert!(parse_time("2999-01-01T00:00:00Z")
            .unwrap_err()
            .to_string()
            .contains("2262"));
        assert_eq!(format_time(1_000_000_000), "1970-01-01T00:00:01.000000000Z");
    }

    #[test]
    fn durations_print_with_a_space_between_number_and_unit() {
        for (d, text) in [
            (Duration::from_secs(7 * 86_400), "7 days"),
            (Duration::from_secs(86_400), "1 day"),
            (Duration::from_secs(5_400), "1 h 30 min"),
            (Duration::from_millis(250), "250 ms"),
            (Duration::from_secs(10), "10 s"),
        ] {
            assert_eq!(format_duration(d), text);
            assert_eq!(parse_duration(text).unwrap(), d, "{text} reads back");
        }
    }
}
