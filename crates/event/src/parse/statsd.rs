//! StatsD metric lines, with sample rates and the common `|#tag:value` extension:
//!
//! ```text
//! name:value|type[|@sample_rate][|#tag1:value1,tag2]
//! ```
//!
//! Types: `c` counter, `g` gauge (a leading `+`/`-` marks a delta), `ms` timer, `h` histogram,
//! `d` distribution, `s` set. Fields: `metric`, `value` (a number; text for sets), `type` (its
//! name), `sample_rate`, for counters `count` (value ÷ sample rate), for gauges `delta`
//! (true for `+n`/`-n`), and each tag as `tag.<name>` (a tag without a value is `true`).

use super::cursor::Cursor;
use super::ParseError;
use crate::event::Event;
use crate::value::Value;

pub(crate) fn parse(line: &str, event: &mut Event) -> Result<(), ParseError> {
    let f = &mut event.fields;
    let mut c = Cursor::new(line.trim_end());
    let name = c.take_until(|b| b == b':' || b == b'|');
    if name.is_empty() {
        return Err(c.error("metric", "expected a metric name"));
    }
    c.expect(b':', "value")?;
    let at = c.pos;
    let value = c.take_until(|b| b == b'|');
    c.expect(b'|', "type")?;
    let kind = c.take_until(|b| b == b'|');
    let kind_name = match kind {
        "c" => "counter",
        "g" => "gauge",
        "ms" => "timer",
        "h" => "histogram",
        "d" => "distribution",
        "s" => "set",
        other => {
            c.pos -= other.len();
            return Err(c.error(
                "type",
                format!("unknown metric type {other:?}; expected c, g, ms, h, d or s"),
            ));
        }
    };
    let number = if kind == "s" {
        None
    } else {
        match value.parse::<f64>() {
            Ok(v) if v.is_finite() => Some(v),
            _ => {
                c.pos = at;
                return Err(c.error("value", format!("expected a number, found {value:?}")));
            }
        }
    };
    let mut rate = 1.0;
    while c.peek() == Some(b'|') {
        c.pos += 1;
        match c.peek() {
            Some(b'@') => {
                c.pos += 1;
                let at = c.pos;
                let r = c.take_until(|b| b == b'|');
                rate = match r.parse::<f64>() {
                    Ok(r) if r > 0.0 && r <= 1.0 => r,
                    _ => {
                        c.pos = at;
                        return Err(c.error(
                            "sample_rate",
                            format!("expected a rate in (0, 1], found {r:?}"),
                        ));
                    }
                };
            }
            Some(b'#') => {
                c.pos += 1;
                for tag in c
                    .take_until(|b| b == b'|')
                    .split(',')
                    .filter(|t| !t.is_empty())
                {
                    match tag.split_once(':') {
                        Some((k, v)) => f.insert(format!("tag.{k}"), Value::from(v)),
                        None => f.insert(format!("tag.{tag}"), Value::Bool(true)),
                    };
                }
            }
            // Unknown extensions (e.g. `|c:container-id`, `|T<timestamp>`) are kept out.
            _ => {
                c.take_until(|b| b == b'|');
            }
        }
    }
    f.insert("metric".into(), Value::from(name));
    f.insert("type".into(), Value::from(kind_name));
    f.insert("sample_rate".into(), Value::Float(rate));
    match number {
        None => {
            f.insert("value".into(), Value::from(value));
        }
        Some(v) => {
            f.insert(
                "value".into(),
                if v.fract() == 0.0 && v.abs() < 9e15 {
                    Value::Int(v as i64)
                } else {
                    Value::Float(v)
                },
            );
            if kind == "c" {
                f.insert("count".into(), Value::Float(v / rate));
            }
            if kind == "g" {
                f.insert("delta".into(), Value::Bool(value.starts_with(['+', '-'])));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::parse::Parser;
    use crate::value::Value;

    #[test]
    fn every_type_rate_and_tags() {
        let e = Parser::Statsd
            .parse("http.requests:1|c|@0.1|#service:web,region:eu,canary", 0)
            .unwrap();
        let f = &e.fields;
        assert_eq!(f["metric"], Value::from("http.requests"));
        assert_eq!(f["type"], Value::from("counter"));
        assert_eq!(f["count"], Value::Float(10.0));
        assert_eq!(f["tag.service"], Value::from("web"));
        assert_eq!(f["tag.canary"], Value::Bool(true));
        let e = Parser::Statsd.parse("queue.depth:-3|g", 0).unwrap();
        assert_eq!(e.fields["delta"], Value::Bool(true));
        assert_eq!(e.fields["value"], Value::Int(-3));
        let e = Parser::Statsd.parse("latency:12.5|ms", 0).unwrap();
        assert_eq!(e.fields["value"], Value::Float(12.5));
        let e = Parser::Statsd.parse("users:u42|s", 0).unwrap();
        assert_eq!(e.fields["value"], Value::from("u42"));
        for t in ["h", "d"] {
            assert!(Parser::Statsd.parse(&format!("x:1|{t}"), 0).is_ok());
        }
    }

    #[test]
    fn errors_name_field_and_column() {
        let err = Parser::Statsd.parse("x:abc|c", 0).unwrap_err();
        assert_eq!((err.field.as_deref(), err.column), (Some("value"), 3));
        let err = Parser::Statsd.parse("x:1|zz", 0).unwrap_err();
        assert_eq!((err.field.as_deref(), err.column), (Some("type"), 5));
        let err = Parser::Statsd.parse("x:1|c|@2", 0).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("sample_rate"));
        let err = Parser::Statsd.parse("x1|c", 0).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("value"));
        assert!(Parser::Statsd.parse("", 0).is_err());
    }
}
