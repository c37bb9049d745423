//! Influx line protocol (`/api/v2/write`, `/write`): one point per line,
//! `measurement[,tag=value…] field=value[,field=value…] [timestamp]`, with backslash escapes
//! for commas, spaces and equals signs, string fields in double quotes, integers `12i`,
//! unsigned `12u`, floats, and booleans (`t`, `true`, `F`, …). `#` starts a comment line.
//!
//! Each point becomes an event: the tag `#measurement`, its tags as tags, its fields as
//! fields, `@timestamp` its timestamp at the request's precision (else the arrival time).

use eddy_event::{Event, Value};

use super::{event_at, ProtocolError};

const PROTOCOL: &str = "Influx line protocol";

/// A timestamp's unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// Nanoseconds (the default).
    Nanoseconds,
    /// Microseconds.
    Microseconds,
    /// Milliseconds.
    Milliseconds,
    /// Seconds.
    Seconds,
    /// Minutes (v1 only).
    Minutes,
    /// Hours (v1 only).
    Hours,
}

impl Precision {
    /// The precision a `precision` parameter names (v2: `ns`, `us`, `ms`, `s`; v1 also `n`,
    /// `u`, `m`, `h`).
    pub fn parse(text: &str) -> Result<Precision, String> {
        Ok(match text {
            "ns" | "n" => Precision::Nanoseconds,
            "us" | "u" | "µs" => Precision::Microseconds,
            "ms" => Precision::Milliseconds,
            "s" => Precision::Seconds,
            "m" => Precision::Minutes,
            "h" => Precision::Hours,
            other => {
                return Err(format!(
                    "precision {other:?} is not one of ns, us, ms, s (v1 also n, u, m, h)"
                ))
            }
        })
    }

    fn nanos(self) -> i64 {
        match self {
            Precision::Nanoseconds => 1,
            Precision::Microseconds => 1_000,
            Precision::Milliseconds => 1_000_000,
            Precision::Seconds => 1_000_000_000,
            Precision::Minutes => 60_000_000_000,
            Precision::Hours => 3_600_000_000_000,
        }
    }
}

/// The events of a line protocol body. All or nothing: the first bad line refuses it.
pub fn points(body: &[u8], precision: Precision, now: i64) -> Result<Vec<Event>, ProtocolError> {
    let text = std::str::from_utf8(body).map_err(|e| {
        ProtocolError::new(
            PROTOCOL,
            format!("byte {}", e.valid_up_to()),
            "the body is not UTF-8",
        )
    })?;
    let mut events = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let offset = line.len() - trimmed.len();
        let event = point(trimmed, precision, now).map_err(|(column, reason)| {
            ProtocolError::new(
                PROTOCOL,
                format!("line {}, column {}", i + 1, column + offset + 1),
                reason,
            )
        })?;
        events.push(event);
    }
    Ok(events)
}

/// Splits at the first unescaped `stop` byte outside quotes (when `quotes`). Returns the part
/// before and the index of `stop` (or the end).
fn until(s: &str, from: usize, stops: &[u8], quotes: bool) -> usize {
    let b = s.as_bytes();
    let mut i = from;
    let mut quoted = false;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 1,
            b'"' if quotes => quoted = !quoted,
            c if !quoted && stops.contains(&c) => return i,
            _ => {}
        }
        i += 1;
    }
    b.len().min(i)
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(n @ (',' | ' ' | '=' | '"' | '\\')) => out.push(n),
                Some(n) => {
                    out.push('\\');
                    out.push(n);
                }
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

type LineError = (usize, String);

fn point(line: &str, precision: Precision, now: i64) -> Result<Event, LineError> {
    let mut e = event_at(now, None);
    // measurement[,tags]
    let key_end = until(line, 0, b" ", false);
    let series = &line[..key_end];
    let measurement_end = until(series, 0, b",", false);
    let measurement = unescape(&series[..measurement_end]);
    if measurement.is_empty() {
        return Err((0, "the line has no measurement".into()));
    }
    e.tags.insert("measurement".into(), measurement);
    let mut at = measurement_end;
    while at < series.len() {
        let start = at + 1;
        let end = until(series, start, b",", false);
        let pair = &series[start..end];
        let eq = until(pair, 0, b"=", false);
        if eq >= pair.len() || eq == 0 || eq + 1 == pair.len() {
            return Err((start, format!("tag {pair:?} is not key=value")));
        }
        e.tags
            .insert(unescape(&pair[..eq]), unescape(&pair[eq + 1..]));
        at = end;
    }
    // fields
    if key_end >= line.len() {
        return Err((line.len(), "the line has no fields".into()));
    }
    let fields_start = key_end + 1;
    let fields_end = until(line, fields_start, b" ", true);
    let fields = &line[fields_start..fields_end];
    if fields.is_empty() {
        return Err((fields_start, "the line has no fields".into()));
    }
    let mut at = 0;
    while at <= fields.len() {
        let end = until(fields, at, b",", true);
        let pair = &fields[at..end];
        let column = fields_start + at;
        let eq = until(pair, 0, b"=", false);
        if eq == 0 || eq >= pair.len() {
            return Err((column, format!("field {pair:?} is not key=value")));
        }
        let name = unescape(&pair[..eq]);
        let value = field_value(&pair[eq + 1..])
            .map_err(|reason| (column + eq + 1, format!("field {name}: {reason}")))?;
        e.fields.insert(name, value);
        at = end + 1;
    }
    // timestamp
    let rest = line[fields_end..].trim();
    if !rest.is_empty() {
        let t: i64 = rest.parse().map_err(|_| {
            (
                fields_end + 1,
                format!("the timestamp {rest:?} is not an integer"),
            )
        })?;
        e.timestamp = t.checked_mul(precision.nanos()).ok_or_else(|| {
            (
                fields_end + 1,
                format!("the timestamp {rest} is out of range"),
            )
        })?;
    }
    Ok(e)
}

fn field_value(v: &str) -> Result<Value, String> {
    if let Some(quoted) = v.strip_prefix('"') {
        let inner = quoted
            .strip_suffix('"')
            .ok_or_else(|| format!("the string {v} is not closed"))?;
        return Ok(Value::Str(unescape(inner)));
    }
    match v {
        "t" | "T" | "true" | "True" | "TRUE" => return Ok(Value::Bool(true)),
        "f" | "F" | "false" | "False" | "FALSE" => return Ok(Value::Bool(false)),
        _ => {}
    }
    if let Some(i) = v.strip_suffix('i') {
        return i
            .parse::<i64>()
            .map(Value::Int)
            .map_err(|_| format!("{v} is not an integer"));
    }
    if let Some(u) = v.strip_suffix('u') {
        return u
            .parse::<u64>()
            .map(|u| i64::try_from(u).map_or(Value::Float(u as f64), Value::Int))
            .map_err(|_| format!("{v} is not an unsigned integer"));
    }
    match v.parse::<f64>() {
        Ok(f) if f.is_finite() => Ok(Value::Float(f)),
        _ => Err(format!(
            "{v:?} is not a number, a boolean or a quoted string"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn points_take_measurement_tags_fields_and_time_at_the_precision() {
        let body = "# comment\ncpu,host=web\\ 1,region=eu usage=0.5,cores=4i,ok=t,note=\"a \\\"b\\\", c\" 1700000000\n\nmem free=12u\n";
        let events = points(body.as_bytes(), Precision::Seconds, 9).unwrap();
        assert_eq!(events.len(), 2);
        let cpu = &events[0];
        assert_eq!(cpu.tags["measurement"], "cpu");
        assert_eq!(cpu.tags["host"], "web 1");
        assert_eq!(cpu.tags["region"], "eu");
        assert_eq!(cpu.fields["usage"], Value::Float(0.5));
        assert_eq!(cpu.fields["cores"], Value::Int(4));
        assert_eq!(cpu.fields["ok"], Value::Bool(true));
        assert_eq!(cpu.fields["note"], Value::from("a \"b\", c"));
        assert_eq!(cpu.timestamp, 1_700_000_000_000_000_000);
        assert_eq!(events[1].timestamp, 9);
        assert_eq!(events[1].fields["free"], Value::Int(12));
    }

    #[test]
    fn bad_lines_say_line_column_and_field() {
        let e = points(b"cpu usage=0.5\ncpu usage=abc\n", Precision::Nanoseconds, 0).unwrap_err();
        assert_eq!(e.at, "line 2, column 11");
        assert!(e.reason.contains("field usage"), "{e}");
        let e = points(b"cpu\n", Precision::Nanoseconds, 0).unwrap_err();
        assert!(e.reason.contains("no fields"), "{e}");
        let e = points(b"cpu a=1 soon\n", Precision::Nanoseconds, 0).unwrap_err();
        assert!(e.reason.contains("timestamp"), "{e}");
        assert!(Precision::parse("d").is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Err(e) = points(&body, Precision::Milliseconds, 0) {
                prop_assert!(!e.at.is_empty() && !e.reason.is_empty());
            }
        }

        #[test]
        fn line_like_text_never_panics(text in "[a-z,= \"\\\\0-9.ift]{0,60}") {
            let _ = points(text.as_bytes(), Precision::Hours, 0);
        }
    }
}
