//! One JSON object per line.
//!
//! The object is walked once, straight into the event: nested objects and arrays become dotted
//! field names as they are read, without building a JSON tree first (that tree was most of the
//! cost of ingesting JSON). The result is the same as [`crate::flatten_json`] over the parsed
//! value (property-tested).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::ParseError;
use crate::event::Event;
use crate::fields::{FieldSink, FlatFields};
use crate::value::{Value, ValueRef};

/// Which fields a parse builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fields {
    /// Every field, flattened.
    All,
    /// Only the top-level keys that may hold the event's time ([`crate::time::TIME_FIELDS`]);
    /// every other value is still read whole, so the same lines are refused for the same
    /// reasons, but nothing of it is kept.
    TimeOnly,
}

pub(crate) fn parse(line: &str, event: &mut Event, fields: Fields) -> Result<(), ParseError> {
    let special = walk(line, &mut event.fields, Some(&mut event.tags), fields)?;
    if let Some(text) = special.id {
        event.id = id_of(&text)?;
        event.id_from_client = true;
        // Results show the client's id as it was sent, not the UUID it maps to.
        if text != event.id.to_string() {
            event.fields.insert("@id".into(), Value::Str(text));
        }
    }
    if let Some(Value::Null) = event.fields.get("@timestamp") {
        event.fields.remove("@timestamp");
    }
    Ok(())
}

/// The fields [`parse`] makes of `line` (with [`Fields::All`]), into `out`: the same lines are
/// refused, tags and the id are read and checked but not kept.
pub(crate) fn fields_into(line: &str, out: &mut FlatFields) -> Result<(), ParseError> {
    out.clear();
    if !flat_object_into(line, out) {
        out.clear();
        walk_fields_into(line, out)?;
    }
    out.finish();
    if let Some(ValueRef::Null) = out.get("@timestamp") {
        out.remove("@timestamp");
    }
    Ok(())
}

/// [`fields_into`] with serde_json's walk, before the fields are put in order.
fn walk_fields_into(line: &str, out: &mut FlatFields) -> Result<(), ParseError> {
    let special = walk(line, out, None, Fields::All)?;
    if let Some(text) = special.id {
        let id = id_of(&text)?;
        if text != id.to_string() {
            out.put(Cow::Borrowed("@id"), ValueRef::Str(&text));
        }
    }
    Ok(())
}

/// Puts the fields of `line` into `out` as [`walk_fields_into`] would, if `line` is an object
/// of the plainest kind: keys and string values without escapes or control characters, integers
/// of at most 18 digits (never `-0`), `true`, `false` and `null`, no nesting, no key with a
/// meaning of its own. Anything else (or anything invalid) is `false`, with some fields put,
/// and is left to serde_json, which then accepts or refuses it: this accepts only what it
/// checked all of, so it never accepts a line serde_json refuses. What shippers write is of that
/// kind, and a walk of its own bytes costs the digest a third of serde_json's.
pub(crate) fn flat_object_into<S: FieldSink>(line: &str, out: &mut S) -> bool {
    let bytes = line.as_bytes();
    let mut at = skip_space(bytes, 0);
    if bytes.get(at) != Some(&b'{') {
        return false;
    }
    at = skip_space(bytes, at + 1);
    if bytes.get(at) == Some(&b'}') {
        return skip_space(bytes, at + 1) == bytes.len();
    }
    loop {
        let Some((key, after)) = plain_string(line, at) else {
            return false;
        };
        if key == "@id" || key == "@rawstring" || key == "@ingesttimestamp" || key.starts_with('#')
        {
            return false;
        }
        at = skip_space(bytes, after);
        if bytes.get(at) != Some(&b':') {
            return false;
        }
        at = skip_space(bytes, at + 1);
        let value = match bytes.get(at) {
            Some(b'"') => match plain_string(line, at) {
                Some((text, after)) => {
                    at = after;
                    ValueRef::Str(text)
                }
                None => return false,
            },
            Some(b't') if bytes[at..].starts_with(b"true") => {
                at += 4;
                ValueRef::Bool(true)
            }
            Some(b'f') if bytes[at..].starts_with(b"false") => {
                at += 5;
                ValueRef::Bool(false)
            }
            Some(b'n') if bytes[at..].starts_with(b"null") => {
                at += 4;
                ValueRef::Null
            }
            Some(b'-' | b'0'..=b'9') => match plain_integer(bytes, at) {
                Some((i, after)) => {
                    at = after;
                    ValueRef::Int(i)
                }
                None => return false,
            },
            _ => return false,
        };
        out.put(Cow::Borrowed(key), value);
        at = skip_space(bytes, at);
        match bytes.get(at) {
            Some(b',') => at = skip_space(bytes, at + 1),
            Some(b'}') => return skip_space(bytes, at + 1) == bytes.len(),
            _ => return false,
        }
    }
}

/// Past the JSON white space (what serde_json skips) from `at`.
fn skip_space(bytes: &[u8], mut at: usize) -> usize {
    while let Some(b' ' | b'\n' | b'\t' | b'\r') = bytes.get(at) {
        at += 1;
    }
    at
}

/// The string that opens at `at` (a quote) and where it ends, if it has no escape and no
/// control character.
fn plain_string(line: &str, at: usize) -> Option<(&str, usize)> {
    let bytes = line.as_bytes();
    if bytes.get(at) != Some(&b'"') {
        return None;
    }
    let start = at + 1;
    let end = string_stop(bytes, start)?;
    if bytes[end] != b'"' {
        return None;
    }
    // Between two ASCII quotes: on character boundaries.
    Some((line.get(start..end)?, end + 1))
}

/// The first quote, backslash or control character at or after `from`: eight bytes per step,
/// where a byte at a time cost more than serde_json's whole walk saved.
fn string_stop(bytes: &[u8], from: usize) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut at = from;
    while let Some(eight) = bytes.get(at..at + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(eight);
        let x = u64::from_le_bytes(word);
        // The high bit of each byte that is zero after the xor, or below 0x20. A byte above a
        // flagged one may be flagged falsely (a borrow), never one below: the lowest is exact.
        let zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
        let stops = zero(x ^ (ONES * u64::from(b'"')))
            | zero(x ^ (ONES * u64::from(b'\\')))
            | (x.wrapping_sub(ONES * 0x20) & !x & HIGH);
        if stops != 0 {
            return Some(at + (stops.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    bytes
        .get(at..)?
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
        .map(|i| at + i)
}

/// The integer at `at` and where it ends, if it is one JSON reads as an `i64` with no doubt:
/// at most 18 digits, no leading zero, not `-0`, no fraction or exponent after it.
fn plain_integer(bytes: &[u8], at: usize) -> Option<(i64, usize)> {
    let negative = bytes.get(at) == Some(&b'-');
    let start = at + usize::from(negative);
    let digits = bytes
        .get(start..)?
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    let end = start + digits;
    if digits == 0
        || digits > 18
        || (bytes[start] == b'0' && (digits > 1 || negative))
        || matches!(bytes.get(end), Some(b'.' | b'e' | b'E'))
    {
        return None;
    }
    let mut n: i64 = 0;
    for &b in &bytes[start..end] {
        n = n * 10 + i64::from(b - b'0');
    }
    Some((if negative { -n } else { n }, end))
}

/// The event id for a client's `@id` text, or why it cannot be one.
fn id_of(text: &str) -> Result<uuid::Uuid, ParseError> {
    crate::event::client_id(text).map_err(|reason| ParseError {
        column: 1,
        field: Some("@id".into()),
        reason,
    })
}

/// Walks the object of `line` once: fields into `out`, tags into `tags` (when given), and the
/// keys with a meaning of their own into the result.
fn walk<S: FieldSink>(
    line: &str,
    out: &mut S,
    tags: Option<&mut BTreeMap<String, String>>,
    fields: Fields,
) -> Result<Special, ParseError> {
    let mut special = Special::default();
    let mut de = serde_json::Deserializer::from_str(line);
    let walked = TopLevel {
        out,
        tags,
        special: &mut special,
        fields,
    }
    .deserialize(&mut de)
    .and_then(|()| de.end());
    walked.map_err(|e| {
        // A type error can only be the line itself not being an object: it starts at column 1.
        // Otherwise serde_json counts columns in characters on the line; ours are bytes.
        let column = if e.classify() == serde_json::error::Category::Data {
            1
        } else {
            line.char_indices()
                .nth(e.column().saturating_sub(1))
                .map_or(line.len() + 1, |(i, _)| i + 1)
                .min(line.len() + 1)
                .max(1)
        };
        ParseError {
            column,
            field: None,
            reason: format!("invalid JSON: {e}"),
        }
    })?;
    Ok(special)
}

/// Keys with a meaning of their own, checked once the object is read.
#[derive(Default)]
struct Special {
    id: Option<String>,
}

/// A key, borrowed from the line when it has no escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

struct TopLevel<'a, S> {
    out: &'a mut S,
    tags: Option<&'a mut BTreeMap<String, String>>,
    special: &'a mut Special,
    fields: Fields,
}

impl<'de, S: FieldSink> DeserializeSeed<'de> for TopLevel<'_, S> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, S: FieldSink> Visitor<'de> for TopLevel<'_, S> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        while let Some(Key(key)) = map.next_key()? {
            if key == "@id" {
                let v: serde_json::Value = map.next_value()?;
                self.special.id = Some(match v {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                });
            } else if let Some(tag) = key.strip_prefix('#') {
                let v: serde_json::Value = map.next_value()?;
                let text = match v {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                if let Some(tags) = self.tags.as_deref_mut() {
                    tags.insert(tag.to_string(), text);
                }
            } else if key == "@rawstring" || key == "@ingesttimestamp" {
                // Set by eddy, not by clients.
                map.next_value::<IgnoredAny>()?;
            } else if self.fields == Fields::All || crate::time::time_field_rank(&key).is_some() {
                map.next_value_seed(Flatten {
                    name: key,
                    out: &mut *self.out,
                })?;
            } else {
                map.next_value_seed(Check)?;
            }
        }
        Ok(())
    }
}

/// Writes a JSON value under `name`: scalars as they are, objects and arrays as dotted names.
struct Flatten<'a, 'n, S> {
    name: Cow<'n, str>,
    out: &'a mut S,
}

impl<S: FieldSink> Flatten<'_, '_, S> {
    fn put(self, v: ValueRef<'_>) {
        self.out.put(self.name, v);
    }

    fn child(&mut self, key: &str) -> Flatten<'_, 'static, S> {
        Flatten {
            name: Cow::Owned(format!("{}.{key}", self.name)),
            out: &mut *self.out,
        }
    }
}

impl<'de, S: FieldSink> DeserializeSeed<'de> for Flatten<'_, '_, S> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, S: FieldSink> Visitor<'de> for Flatten<'_, '_, S> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        self.put(ValueRef::Null);
        Ok(())
    }
    fn visit_bool<E>(self, v: bool) -> Result<(), E> {
        self.put(ValueRef::Bool(v));
        Ok(())
    }
    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        self.put(ValueRef::Int(v));
        Ok(())
    }
    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        self.put(i64::try_from(v).map_or(ValueRef::Float(v as f64), ValueRef::Int));
        Ok(())
    }
    fn visit_f64<E>(self, v: f64) -> Result<(), E> {
        self.put(ValueRef::Float(v));
        Ok(())
    }
    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        self.put(ValueRef::Str(v));
        Ok(())
    }
    fn visit_string<E>(self, v: String) -> Result<(), E> {
        self.out.put_string(self.name, v);
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        while let Some(Key(key)) = map.next_key()? {
            map.next_value_seed(self.child(&key))?;
        }
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0usize;
        while seq.next_element_seed(self.child(&i.to_string()))?.is_some() {
            i += 1;
        }
        Ok(())
    }
}

/// Reads a JSON value as [`Flatten`] does (strings unescaped, numbers parsed, keys read as
/// keys), so that it fails where [`Flatten`] would, but keeps nothing and allocates nothing.
struct Check;

impl<'de> DeserializeSeed<'de> for Check {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Check {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_key::<Key>()?.is_some() {
            map.next_value_seed(Check)?;
        }
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Check)?.is_some() {}
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::parse::Parser;
    use crate::value::Value;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        #[test]
        fn the_plain_object_walk_puts_what_serde_json_puts_and_refuses_nothing_it_takes(
            line in r##"[ \t]?\{( ?"[a-c#@é]{0,2}(id)?" ?: ?(-?[0-9]{1,3}|[0-9]{17,20}|"[a-c\\"\x01 é]{0,3}"|true|null|fals|1\.5|2e3|\[\]|\{"d":1\}) ?,?){0,4}\}? ?x?"##,
        ) {
            use super::*;
            let mut fast = FlatFields::default();
            let mut walked = FlatFields::default();
            let fast_ok = flat_object_into(&line, &mut fast);
            let walk = walk_fields_into(&line, &mut walked);
            if fast_ok {
                prop_assert!(walk.is_ok(), "{:?} taken, serde_json refuses it: {:?}", line, walk);
                fast.finish();
                walked.finish();
                prop_assert_eq!(fast.to_map(), walked.to_map(), "{:?}", line);
            }
            // And the whole derivation, either way.
            let mut derived = FlatFields::default();
            let mut reference = FlatFields::default();
            let got = fields_into(&line, &mut derived).map(|()| derived.to_map());
            let expected = walk_fields_into(&line, &mut reference).map(|()| {
                reference.finish();
                if let Some(ValueRef::Null) = reference.get("@timestamp") {
                    reference.remove("@timestamp");
                }
                reference.to_map()
            });
            prop_assert_eq!(got, expected, "{:?}", line);
        }
    }

    proptest! {
        #[test]
        fn a_string_stops_where_a_byte_at_a_time_stops(
            text in proptest::collection::vec(prop_oneof![Just(b'"'), Just(b'\\'), 0u8..0x30, 0x5bu8..0x5e, 0x7fu8..=0xff, any::<u8>()], 0..40),
            from in 0usize..40,
        ) {
            let plain = text
                .get(from..)
                .and_then(|t| t.iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20))
                .map(|i| from + i);
            prop_assert_eq!(super::string_stop(&text, from), plain);
        }
    }

    #[test]
    fn a_shippers_line_takes_the_plain_walk() {
        let line = r#"{"@timestamp":"2026-12-03T10:00:00.123Z","service":"api","n":-12,"ok":true,"x":null, "msg" : "a b"}"#;
        let mut out = crate::fields::FlatFields::default();
        assert!(super::flat_object_into(line, &mut out));
        for refused in [
            r#"{"a":1.5}"#,
            r#"{"a":"\n"}"#,
            r#"{"a":-0}"#,
            r##"{"#t":"x"}"##,
            r#"{"a":1,}"#,
        ] {
            assert!(!super::flat_object_into(refused, &mut out), "{refused}");
        }
    }

    #[test]
    fn string_ids_map_to_one_uuid_each_and_are_returned_as_sent() {
        let a = Parser::Json.parse(r#"{"@id":"my-id-1"}"#, 1).unwrap();
        let again = Parser::Json.parse(r#"{"@id":"my-id-1","x":2}"#, 9).unwrap();
        let b = Parser::Json.parse(r#"{"@id":"my-id-2"}"#, 1).unwrap();
        assert!(a.id_from_client);
        assert_eq!(
            a.id, again.id,
            "the same id, the same event for de-duplication"
        );
        assert_ne!(a.id, b.id);
        assert_eq!(a.fields["@id"], Value::Str("my-id-1".into()));
        // A UUID is the id itself; only a differently written one is kept as sent.
        let uuid = "0190b2e0-0000-7000-8000-000000000000";
        let u = Parser::Json
            .parse(&format!(r#"{{"@id":"{uuid}"}}"#), 1)
            .unwrap();
        assert_eq!(u.id.to_string(), uuid);
        assert!(!u.fields.contains_key("@id"));
        let upper = Parser::Json
            .parse(&format!(r#"{{"@id":"{}"}}"#, uuid.to_uppercase()), 1)
            .unwrap();
        assert_eq!(upper.id, u.id);
        assert_eq!(upper.fields["@id"], Value::Str(uuid.to_uppercase()));
    }

    #[test]
    fn objects_tags_ids_and_times() {
        let e = Parser::Json
            .parse(
                r##"{"@timestamp":"1970-01-01T00:00:05Z","#host":"web-1","@id":"0190b2e0-0000-7000-8000-000000000000","http":{"status":500}}"##,
                1,
            )
            .unwrap();
        assert_eq!(e.timestamp, 5_000_000_000);
        assert_eq!(e.tags["host"], "web-1");
        assert_eq!(e.id.to_string(), "0190b2e0-0000-7000-8000-000000000000");
        assert!(e.id_from_client);
        assert!(!Parser::Json.parse("{}", 1).unwrap().id_from_client);
        assert_eq!(e.fields["http.status"], Value::Int(500));
    }

    fn json_value() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<u64>().prop_map(serde_json::Value::from),
            (-1e9f64..1e9).prop_map(serde_json::Value::from),
            ".{0,8}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
                proptest::collection::btree_map("[a-z\\\\\"]{1,4}", inner, 0..4)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        #[test]
        fn walking_the_line_equals_flattening_the_parsed_value(
            fields in proptest::collection::btree_map("[a-z.\\\\\"]{1,6}", json_value(), 0..6)
        ) {
            let object = serde_json::Value::Object(fields.into_iter().collect());
            let line = object.to_string();
            let mut want = std::collections::BTreeMap::new();
            // The tree the old path built from the same line (floats parse the same way).
            let reparsed: serde_json::Value = serde_json::from_str(&line).unwrap();
            crate::flatten_json(reparsed, "", &mut want);
            want.remove("@timestamp");
            let mut got = Parser::Json.parse(&line, 0).unwrap().fields;
            got.remove("@timestamp");
            proptest::prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn errors_say_where() {
        let err = Parser::Json.parse(r#"{"a": tru}"#, 0).unwrap_err();
        assert!(err.reason.contains("invalid JSON"), "{err}");
        assert!(err.column >= 7, "{err:?}");
        let err = Parser::Json.parse("[1,2]", 0).unwrap_err();
        assert!(err.reason.contains("object"));
        let err = Parser::Json.parse(r#"{"@id":""}"#, 0).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("@id"));
        let long = format!(
            r#"{{"@id":"{}"}}"#,
            "x".repeat(crate::MAX_CLIENT_ID_BYTES + 1)
        );
        let err = Parser::Json.parse(&long, 0).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("@id"));
        assert!(err.reason.contains("256 bytes"), "{err}");
        let err = Parser::Json.parse(r#"{"a":1} x"#, 0).unwrap_err();
        assert!(err.reason.contains("trailing"), "{err}");
        assert_eq!(err.column, 9, "{err:?}");
    }
}
