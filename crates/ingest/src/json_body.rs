//! The one rule for JSON at every door, whatever a request's `Content-Type` says (a label may
//! be missing or wrong; the content decides):
//!
//! - a body that is one JSON value is one document: an array's elements are the events, any
//!   other value is one event (it may span lines: pretty-printed JSON);
//! - a body of more than one top-level value is NDJSON: one event per line, and a bad line is
//!   reported with its number;
//! - a blank body holds no events.
//!
//! A body that is neither, because a value that spans lines is broken, is refused with the
//! line and column where the JSON breaks. The HTTP door applies the rule to bodies without
//! `?parser=` (except `text/plain`, which is raw lines); TCP JSON listeners to each line; UDP
//! JSON listeners to each datagram.

use serde_json::value::RawValue;

/// How a JSON body holds its events.
#[derive(Debug)]
pub enum JsonBody<'a> {
    /// One document: its events' texts, in order.
    Document(Vec<&'a RawValue>),
    /// NDJSON: each non-blank line is an event.
    Lines,
}

/// Applies the rule to `text`.
pub fn classify(text: &str) -> Result<JsonBody<'_>, serde_json::Error> {
    let trimmed = text.trim_start();
    if trimmed.is_empty() {
        return Ok(JsonBody::Lines);
    }
    let whole = if trimmed.starts_with('[') {
        serde_json::from_str::<Vec<&RawValue>>(text)
    } else {
        serde_json::from_str::<&RawValue>(text).map(|v| vec![v])
    };
    match whole {
        Ok(values) => Ok(JsonBody::Document(values)),
        Err(_) if line_oriented(text) => Ok(JsonBody::Lines),
        Err(e) => Err(e),
    }
}

/// Whether a body that is not one JSON value reads as lines: it is one line, or one of its
/// first two lines is a JSON value by itself (a broken first line must not hide NDJSON).
fn line_oriented(text: &str) -> bool {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let complete = |line: &str| serde_json::from_str::<serde::de::IgnoredAny>(line).is_ok();
    match (lines.next(), lines.next()) {
        (Some(first), Some(second)) => complete(first) || complete(second),
        _ => true,
    }
}

/// The events' texts of one frame or datagram of a JSON listener, by the rule: a document's
/// values, else its non-blank lines (a broken one is refused by the parser, with its reason).
pub fn texts(text: &str) -> Vec<&str> {
    match classify(text) {
        Ok(JsonBody::Document(values)) => values.into_iter().map(RawValue::get).collect(),
        Ok(JsonBody::Lines) | Err(_) => text
            .lines()
            .map(|l| l.strip_suffix('\r').unwrap_or(l))
            .filter(|l| !l.trim().is_empty())
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(text: &str) -> String {
        match classify(text) {
            Ok(JsonBody::Document(v)) => format!(
                "document {}",
                v.iter().map(|r| r.get()).collect::<Vec<_>>().join(" ")
            ),
            Ok(JsonBody::Lines) => "lines".into(),
            Err(e) => format!("error at {}:{}", e.line(), e.column()),
        }
    }

    #[test]
    fn one_value_is_a_document_more_are_lines_whatever_the_label() {
        assert_eq!(shape(r#"{"a":1}"#), r#"document {"a":1}"#);
        assert_eq!(shape("{\n  \"a\": 1\n}\n"), "document {\n  \"a\": 1\n}");
        assert_eq!(
            shape(r#" [{"a":1}, {"b":2}] "#),
            r#"document {"a":1} {"b":2}"#
        );
        assert_eq!(
            shape("[\n {\"a\":1},\n {\"b\":2}\n]"),
            r#"document {"a":1} {"b":2}"#
        );
        assert_eq!(shape("{\"a\":1}\n{\"b\":2}\n"), "lines");
        assert_eq!(shape("[1]\n[2]\n"), "lines");
        assert_eq!(shape(""), "lines");
        assert_eq!(shape(" \n\r\n"), "lines");
    }

    #[test]
    fn broken_lines_stay_lines_and_a_broken_document_says_where() {
        // NDJSON with a bad line: read by lines so that every bad line is listed.
        assert_eq!(shape("{\"a\":1}\n{\"b\": tru}\n{\"c\":3}"), "lines");
        // A broken first line does not hide NDJSON.
        assert_eq!(shape("{\"a\":1\n{\"b\":2}\n"), "lines");
        // One line is always a line.
        assert_eq!(shape("{\"a\": tru}"), "lines");
        // A pretty-printed document broken on line 3.
        assert_eq!(shape("{\n  \"a\":\n}\n"), "error at 3:1");
    }

    #[test]
    fn listener_texts_split_arrays_and_lines() {
        assert_eq!(
            texts(r#"[{"a":1},{"b":2}]"#),
            vec![r#"{"a":1}"#, r#"{"b":2}"#]
        );
        assert_eq!(
            texts("{\"a\":1}\r\n\n{\"b\":2}"),
            vec![r#"{"a":1}"#, r#"{"b":2}"#]
        );
        assert_eq!(texts("{\"a\": tru}"), vec!["{\"a\": tru}"]);
        assert!(texts("  ").is_empty());
    }
}
