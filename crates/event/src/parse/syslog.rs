//! Syslog messages, RFC 5424 and RFC 3164 (BSD), told apart by the version digit after `<PRI>`.
//!
//! ```text
//! RFC 5424: <34>1 2026-11-24T10:00:00.003Z host app 1234 ID47 [exampleSDID@32473 iut="3"] message
//! RFC 3164: <34>Nov 24 10:00:00 host app[1234]: message
//! ```
//!
//! Fields: `facility` and `severity` (numbers) with `facility_name` and `severity_name`, `host`,
//! `app`, `procid`, `msgid` (5424), structured data as `sd.<id>.<param>`, `message`, and
//! `timestamp`. RFC 3164 has no year: the year is the arrival year, or the one before when that
//! would put the message more than a day in the future. `-` (NILVALUE) fields are left out.

use chrono::{Datelike, NaiveDateTime, TimeZone, Utc};

use super::cursor::Cursor;
use super::ParseError;
use crate::event::Event;
use crate::value::Value;

const FACILITIES: [&str; 24] = [
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv",
    "ftp", "ntp", "audit", "alert", "clock", "local0", "local1", "local2", "local3", "local4",
    "local5", "local6", "local7",
];
const SEVERITIES: [&str; 8] = [
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
];

pub(crate) fn parse(line: &str, event: &mut Event) -> Result<(), ParseError> {
    let mut c = Cursor::new(line);
    c.expect(b'<', "priority")?;
    let at = c.pos;
    let pri = c.take_until(|b| !b.is_ascii_digit());
    let pri: u8 = match pri.parse() {
        Ok(p) if p <= 191 && pri.len() <= 3 => p,
        _ => {
            c.pos = at;
            return Err(c.error(
                "priority",
                format!("expected a priority 0..=191, found {pri:?}"),
            ));
        }
    };
    c.expect(b'>', "priority")?;
    let f = &mut event.fields;
    let (facility, severity) = (pri / 8, pri % 8);
    f.insert("facility".into(), Value::Int(i64::from(facility)));
    f.insert("severity".into(), Value::Int(i64::from(severity)));
    f.insert(
        "facility_name".into(),
        Value::from(FACILITIES[usize::from(facility)]),
    );
    f.insert(
        "severity_name".into(),
        Value::from(SEVERITIES[usize::from(severity)]),
    );
    if c.rest().starts_with("1 ") {
        c.pos += 2;
        rfc5424(&mut c, event)
    } else {
        rfc3164(&mut c, event)
    }
}

fn header_word<'a>(c: &mut Cursor<'a>, field: &str) -> Result<Option<&'a str>, ParseError> {
    let w = c.take_until(|b| b == b' ');
    if w.is_empty() {
        return Err(c.error(
            field,
            "expected a header field, found a space or the end of the line",
        ));
    }
    if c.peek() == Some(b' ') {
        c.pos += 1;
    } else if field != "msgid" {
        return Err(c.error(field, "the header ends too early"));
    }
    Ok((w != "-").then_some(w))
}

fn rfc5424(c: &mut Cursor<'_>, event: &mut Event) -> Result<(), ParseError> {
    for field in ["timestamp", "host", "app", "procid", "msgid"] {
        if let Some(w) = header_word(c, field)? {
            let v = if field == "procid" {
                Value::infer(w)
            } else {
                Value::from(w)
            };
            event.fields.insert(field.into(), v);
        }
    }
    if let Some(Value::Str(ts)) = event.fields.get("timestamp") {
        if crate::time::parse_time_text(ts).is_none() {
            return Err(ParseError {
                column: 1,
                field: Some("timestamp".into()),
                reason: format!("{ts:?} is not an RFC 3339 time"),
            });
        }
    }
    // Structured data: "-" or one or more [id param="value" ...] elements.
    match c.peek() {
        Some(b'-') => c.pos += 1,
        Some(b'[') => {
            while c.peek() == Some(b'[') {
                c.pos += 1;
                let id = c.take_until(|b| b == b' ' || b == b']' || b == b'=' || b == b'"');
                if id.is_empty() {
                    return Err(c.error("structured_data", "expected an SD-ID after '['"));
                }
                loop {
                    match c.peek() {
                        Some(b']') => {
                            c.pos += 1;
                            break;
                        }
                        Some(b' ') => {
                            c.pos += 1;
                            let name =
                                c.take_until(|b| b == b'=' || b == b' ' || b == b']' || b == b'"');
                            if name.is_empty() {
                                return Err(c.error("structured_data", "expected a parameter name"));
                            }
                            let field = format!("sd.{id}.{name}");
                            c.expect(b'=', &field)?;
                            let value = c.quoted(b'"', &field)?;
                            event.fields.insert(field, Value::Str(value.into_owned()));
                        }
                        _ => {
                            return Err(
                                c.error("structured_data", "expected ' ', a parameter or ']'")
                            )
                        }
                    }
                }
            }
        }
        _ => return Err(c.error("structured_data", "expected '-' or '['")),
    }
    if c.peek() == Some(b' ') {
        c.pos += 1;
    }
    let msg = c.rest().trim_start_matches('\u{feff}');
    if !msg.is_empty() {
        event.fields.insert("message".into(), Value::from(msg));
    }
    Ok(())
}

fn rfc3164(c: &mut Cursor<'_>, event: &mut Event) -> Result<(), ParseError> {
    // "Mmm dd hh:mm:ss" — 15 bytes, the day padded with a space.
    let stamp = c.rest().get(..15).unwrap_or("");
    let arrival = Utc.timestamp_nanos(event.ingest_timestamp);
    let parsed =
        NaiveDateTime::parse_from_str(&format!("{} {stamp}", arrival.year()), "%Y %b %e %H:%M:%S")
            .map_err(|_| {
                c.error(
                    "timestamp",
                    format!("expected a time like \"Nov 24 10:00:00\", found {stamp:?}"),
                )
            })?;
    let mut ts = Utc.from_utc_datetime(&parsed);
    if ts > arrival + chrono::Duration::days(1) {
        if let Some(prev) = ts.with_year(arrival.year() - 1) {
            ts = prev;
        }
    }
    c.pos += 15;
    event
        .fields
        .insert("timestamp".into(), Value::Str(ts.to_rfc3339()));
    c.expect(b' ', "host")?;
    let host = c.take_until(|b| b == b' ');
    if !host.is_empty() {
        event.fields.insert("host".into(), Value::from(host));
    }
    c.skip_spaces();
    // TAG[PID]: — the tag is optional in practice; without a colon the rest is the message.
    let rest = c.rest();
    let tag_end = rest.find([':', '[', ' ']);
    if let Some(end) = tag_end.filter(|&e| e > 0 && rest[e..].starts_with([':', '['])) {
        event.fields.insert("app".into(), Value::from(&rest[..end]));
        c.pos += end;
        if c.peek() == Some(b'[') {
            c.pos += 1;
            let pid = c.take_until(|b| b == b']');
            c.expect(b']', "procid")?;
            event.fields.insert("procid".into(), Value::infer(pid));
        }
        if c.peek() == Some(b':') {
            c.pos += 1;
        }
        c.skip_spaces();
    }
    let msg = c.rest();
    if !msg.is_empty() {
        event.fields.insert("message".into(), Value::from(msg));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::parse::Parser;
    use crate::value::Value;

    // 2026-11-24T12:00:00Z
    const NOW: i64 = 1_795_521_600_000_000_000;

    #[test]
    fn rfc5424_with_structured_data() {
        let e = Parser::Syslog
            .parse(
                r#"<165>1 2026-11-24T10:00:00.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" eventSource="Application \"x\""][other@1 a="b"] An application event"#,
                NOW,
            )
            .unwrap();
        let f = &e.fields;
        assert_eq!(f["facility"], Value::Int(20));
        assert_eq!(f["severity_name"], Value::from("notice"));
        assert_eq!(f["host"], Value::from("mymachine.example.com"));
        assert_eq!(f["app"], Value::from("evntslog"));
        assert!(!f.contains_key("procid"));
        assert_eq!(f["msgid"], Value::from("ID47"));
        assert_eq!(f["sd.exampleSDID@32473.iut"], Value::from("3"));
        assert_eq!(
            f["sd.exampleSDID@32473.eventSource"],
            Value::from("Application \"x\"")
        );
        assert_eq!(f["sd.other@1.a"], Value::from("b"));
        assert_eq!(f["message"], Value::from("An application event"));
        assert_eq!(e.timestamp, 1_795_514_400_003_000_000);
    }

    #[test]
    fn rfc5424_nil_everything() {
        let e = Parser::Syslog.parse("<14>1 - - - - - -", NOW).unwrap();
        assert_eq!(e.timestamp, NOW, "no time: the arrival time");
        assert!(!e.fields.contains_key("message"));
    }

    #[test]
    fn rfc3164_with_and_without_pid() {
        let e = Parser::Syslog
            .parse(
                "<34>Nov 24 10:00:00 mymachine su[230]: 'su root' failed",
                NOW,
            )
            .unwrap();
        assert_eq!(e.fields["app"], Value::from("su"));
        assert_eq!(e.fields["procid"], Value::Int(230));
        assert_eq!(e.fields["message"], Value::from("'su root' failed"));
        assert_eq!(e.timestamp, 1_795_514_400_000_000_000);
        let e = Parser::Syslog
            .parse("<13>Nov  3 01:02:03 host cron: job done", NOW)
            .unwrap();
        assert_eq!(e.fields["app"], Value::from("cron"));
        assert_eq!(e.fields["message"], Value::from("job done"));
        // December seen in November is last year's.
        let e = Parser::Syslog
            .parse("<13>Dec 31 23:00:00 host x: y", NOW)
            .unwrap();
        assert!(e.timestamp < NOW);
    }

    #[test]
    fn bad_headers_say_where() {
        let err = Parser::Syslog.parse("<999>1 - - - - - -", NOW).unwrap_err();
        assert_eq!((err.field.as_deref(), err.column), (Some("priority"), 2));
        let err = Parser::Syslog
            .parse("<13>1 yesterday h a - - -", NOW)
            .unwrap_err();
        assert_eq!(err.field.as_deref(), Some("timestamp"));
        let err = Parser::Syslog
            .parse(r#"<13>1 - h a - - [x a="b] msg"#, NOW)
            .unwrap_err();
        assert_eq!(err.field.as_deref(), Some("sd.x.a"));
        let err = Parser::Syslog
            .parse("<13>Foo 99 10:00 h x: y", NOW)
            .unwrap_err();
        assert_eq!(err.field.as_deref(), Some("timestamp"));
    }
}
