//! Apache/Nginx access logs: the common log format, optionally followed by referer and user
//! agent (the combined format):
//!
//! ```text
//! 127.0.0.1 - frank [10/Oct/2026:13:55:36 -0700] "GET /a.gif HTTP/1.0" 200 2326 "http://x/" "Mozilla/5.0"
//! ```
//!
//! Fields: `client`, `ident`, `user` (absent when `-`), `timestamp` (the bracketed time, which
//! becomes `@timestamp`), `method`, `url`, `protocol` (or `request` when the request line is not
//! three words), `status`, `bytes` (0 for `-`), `referer`, `user_agent`.

use std::borrow::Cow;

use super::cursor::Cursor;
use super::ParseError;
use crate::event::Event;
use crate::fields::FieldSink;
use crate::value::{Value, ValueRef};

fn word<'a>(c: &mut Cursor<'a>, field: &str) -> Result<&'a str, ParseError> {
    c.skip_spaces();
    let w = c.take_until(|b| b == b' ' || b == b'\t');
    if w.is_empty() {
        return Err(c.error(field, "expected a value, found the end of the line"));
    }
    Ok(w)
}

/// Puts a text that is borrowed from the line or, when it had escapes, owned.
fn put_text<S: FieldSink>(f: &mut S, name: &'static str, text: Cow<'_, str>) {
    match text {
        Cow::Borrowed(t) => f.put(Cow::Borrowed(name), ValueRef::Str(t)),
        Cow::Owned(t) => f.put_string(Cow::Borrowed(name), t),
    }
}

pub(crate) fn parse(line: &str, event: &mut Event) -> Result<(), ParseError> {
    fields_into(line, &mut event.fields)
}

/// The fields of `line`, into `f`.
pub(crate) fn fields_into<S: FieldSink>(line: &str, f: &mut S) -> Result<(), ParseError> {
    let mut c = Cursor::new(line);
    f.put(
        Cow::Borrowed("client"),
        ValueRef::Str(word(&mut c, "client")?),
    );
    for name in ["ident", "user"] {
        let w = word(&mut c, name)?;
        if w != "-" {
            f.put(Cow::Borrowed(name), ValueRef::Str(w));
        }
    }
    c.skip_spaces();
    c.expect(b'[', "timestamp")?;
    let ts = c.take_until(|b| b == b']');
    c.expect(b']', "timestamp")?;
    f.put(Cow::Borrowed("timestamp"), ValueRef::Str(ts));
    c.skip_spaces();
    let request = c.quoted(b'"', "request")?;
    let mut parts = request.split(' ');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(method), Some(url), Some(protocol), None) => {
            f.put(Cow::Borrowed("method"), ValueRef::Str(method));
            f.put(Cow::Borrowed("url"), ValueRef::Str(url));
            f.put(Cow::Borrowed("protocol"), ValueRef::Str(protocol));
        }
        _ => f.put(Cow::Borrowed("request"), ValueRef::Str(&request)),
    }
    let at = c.pos;
    let status = word(&mut c, "status")?;
    if status.len() != 3 || !status.bytes().all(|b| b.is_ascii_digit()) {
        c.pos = at + 1;
        return Err(c.error(
            "status",
            format!("expected a 3-digit status code, found {status:?}"),
        ));
    }
    f.put(Cow::Borrowed("status"), (&Value::infer(status)).into());
    let at = c.pos;
    let bytes = word(&mut c, "bytes")?;
    let bytes = match bytes {
        "-" => 0,
        b => b.parse::<i64>().map_err(|_| {
            c.pos = at + 1;
            c.error(
                "bytes",
                format!("expected a byte count or '-', found {b:?}"),
            )
        })?,
    };
    f.put(Cow::Borrowed("bytes"), ValueRef::Int(bytes));
    c.skip_spaces();
    if c.at_end() {
        return Ok(());
    }
    let referer = c.quoted(b'"', "referer")?;
    if referer != "-" {
        put_text(f, "referer", referer);
    }
    c.skip_spaces();
    let agent = c.quoted(b'"', "user_agent")?;
    put_text(f, "user_agent", agent);
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::parse::Parser;
    use crate::value::Value;

    #[test]
    fn combined_and_common_format() {
        let e = Parser::Accesslog
            .parse(r#"127.0.0.1 - frank [01/Jan/1970:00:00:07 +0000] "GET /a.gif?x=1 HTTP/1.0" 200 2326 "http://x/" "Mozilla/5.0 (X11)""#, 0)
            .unwrap();
        let f = &e.fields;
        assert_eq!(e.timestamp, 7_000_000_000);
        assert_eq!(f["client"], Value::from("127.0.0.1"));
        assert_eq!(f["user"], Value::from("frank"));
        assert!(!f.contains_key("ident"));
        assert_eq!(f["method"], Value::from("GET"));
        assert_eq!(f["url"], Value::from("/a.gif?x=1"));
        assert_eq!(f["status"], Value::Int(200));
        assert_eq!(f["bytes"], Value::Int(2326));
        assert_eq!(f["referer"], Value::from("http://x/"));
        assert_eq!(f["user_agent"], Value::from("Mozilla/5.0 (X11)"));
        let e = Parser::Accesslog
            .parse(r#"::1 - - [01/Jan/1970:00:00:07 +0000] "-" 400 - "#, 0)
            .unwrap();
        assert_eq!(e.fields["request"], Value::from("-"));
        assert_eq!(e.fields["bytes"], Value::Int(0));
    }

    #[test]
    fn errors_name_the_field_and_column() {
        let err = Parser::Accesslog
            .parse(
                r#"1.2.3.4 - - [01/Jan/1970:00:00:07 +0000] "GET / HTTP/1.1" 2x0 12"#,
                0,
            )
            .unwrap_err();
        assert_eq!(err.field.as_deref(), Some("status"));
        assert_eq!(err.column, 59);
        let err = Parser::Accesslog
            .parse("1.2.3.4 - - 01/Jan/1970", 0)
            .unwrap_err();
        assert_eq!(err.field.as_deref(), Some("timestamp"));
        let err = Parser::Accesslog.parse("", 0).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("client"));
    }
}
