//! `key=value` pairs anywhere in a line. Text that is not a pair is skipped; values run to the
//! next space unless quoted with `"` or `'` (backslash escapes). Values that read as numbers
//! become numbers.

use super::cursor::Cursor;
use super::ParseError;
use crate::event::Event;
use crate::value::Value;

fn is_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'@')
}

pub(crate) fn parse(line: &str, event: &mut Event) -> Result<(), ParseError> {
    let mut c = Cursor::new(line);
    while !c.at_end() {
        c.skip_spaces();
        let start = c.pos;
        let key = c.take_until(|b| !is_key_byte(b));
        if key.is_empty() || c.peek() != Some(b'=') {
            // Not a pair: skip this word.
            if c.pos == start {
                c.pos += c.rest().chars().next().map_or(1, char::len_utf8);
            }
            c.take_until(|b| b == b' ' || b == b'\t');
            continue;
        }
        c.pos += 1; // '='
        let value = match c.peek() {
            Some(q @ (b'"' | b'\'')) => Value::Str(c.quoted(q, key)?.into_owned()),
            _ => Value::infer(c.take_until(|b| b == b' ' || b == b'\t')),
        };
        event.fields.insert(key.to_string(), value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::parse::Parser;
    use crate::value::Value;

    #[test]
    fn pairs_quotes_numbers_and_noise() {
        let e = Parser::Kv
            .parse(r#"2026-11-24 INFO level=info msg="hello \"world\"" user='bob smith' n=5 x=1.5 empty= tail"#, 0)
            .unwrap();
        assert_eq!(e.fields["level"], Value::Str("info".into()));
        assert_eq!(e.fields["msg"], Value::Str("hello \"world\"".into()));
        assert_eq!(e.fields["user"], Value::Str("bob smith".into()));
        assert_eq!(e.fields["n"], Value::Int(5));
        assert_eq!(e.fields["x"], Value::Float(1.5));
        assert_eq!(e.fields["empty"], Value::Str(String::new()));
        assert_eq!(e.fields.len(), 6);
    }

    #[test]
    fn unclosed_quote_is_an_error_with_column_and_field() {
        let err = Parser::Kv.parse(r#"a=1 msg="oops"#, 0).unwrap_err();
        assert_eq!(err.column, 9);
        assert_eq!(err.field.as_deref(), Some("msg"));
        assert!(err.reason.contains("never closed"));
    }
}
