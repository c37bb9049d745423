//! A parsed event's `@rawstring` as a template and its field values: the text with a hole
//! wherever a field's value appears as written, so the text is not stored twice (once in the
//! columns, once as text) and comes back byte for byte by filling the holes from the columns.
//!
//! `{"level":"INFO","ms":12}` becomes the template `{"level":"◊","ms":◊}` with holes for
//! `level` and `ms`; the thousands of events of a block that share a shape share one template,
//! kept once in the block's template dictionary, and each event stores only its template's
//! number. Access logs keep `◊ - ◊ [◊] "◊ ◊ ◊" ◊ ◊ "◊" "◊"`.
//!
//! A value makes a hole only where its text ([`hole_text`]) appears in the raw text and, where
//! the value begins or ends with a letter or digit, the text beside it does not: the words of
//! the raw text are then exactly the words of the literals and of the values, which the block's
//! bloom filter relies on. Longer values are placed first (they are the least ambiguous). Any
//! value that cannot be placed stays in the literal text; the answer is exact either way.
//!
//! Payload of the template section:
//!
//! ```text
//!  varint f, f × str field name (the holes' names)
//!  varint t, then per template: str first literal, varint h, h × (varint name index, str literal)
//!  per templated event (flag bit 6), in order: varint template number
//! ```

use foldhash::HashMap;
use std::borrow::Cow;

use eddy_event::wire::{put_str, put_varint, DecodeError, Reader};
use eddy_event::ValueRef;

/// Fields an event may have for its text to be templated (placing a hole is a search of the
/// text per field).
const MAX_FIELDS: usize = 64;

/// The text a value has in a raw line when it makes a hole; `None` for values that never do.
pub fn hole_text<'a>(v: ValueRef<'a>, digits: &'a mut itoa::Buffer) -> Option<Cow<'a, str>> {
    match v {
        ValueRef::Str("") | ValueRef::Null => None,
        ValueRef::Str(s) => Some(Cow::Borrowed(s)),
        ValueRef::Int(i) => Some(Cow::Borrowed(digits.format(i))),
        ValueRef::Float(f) if f.is_finite() => Some(Cow::Owned(f.to_string())),
        ValueRef::Float(_) => None,
        ValueRef::Bool(true) => Some(Cow::Borrowed("true")),
        ValueRef::Bool(false) => Some(Cow::Borrowed("false")),
    }
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric()
}

/// Whether `raw[at..at + len]` can be a hole: the characters beside it do not join a word of
/// the value's edge to a word of the literal.
fn stands_apart(raw: &str, at: usize, len: usize) -> bool {
    let inner = &raw[at..at + len];
    let first_word = inner.chars().next().is_some_and(is_word_char);
    let last_word = inner.chars().next_back().is_some_and(is_word_char);
    let before = raw[..at].chars().next_back().is_some_and(is_word_char);
    let after = raw[at + len..].chars().next().is_some_and(is_word_char);
    !(first_word && before || last_word && after)
}

/// A value's text: its own, or a range of the buffer of numbers' texts.
type HoleText<'a> = Result<&'a str, (usize, usize)>;

/// Finds the holes of `raw` for `fields` (name index, value): returns them sorted by position
/// as (start, end, name index). `None` when the event has too many fields to try.
pub fn find_holes(
    raw: &str,
    fields: &[(u32, ValueRef<'_>)],
    out: &mut Vec<(usize, usize, u32)>,
) -> bool {
    out.clear();
    if fields.len() > MAX_FIELDS {
        return false;
    }
    // Numbers' texts one after another in `numbers`; texts name either a value's own text or
    // a range of it (no allocation per value but this one buffer).
    let mut numbers = String::new();
    let mut texts: Vec<(HoleText<'_>, u32)> = Vec::with_capacity(fields.len());
    for &(name, v) in fields {
        let text = match v {
            ValueRef::Str(s) if !s.is_empty() => Ok(s),
            ValueRef::Str(_) | ValueRef::Null => continue,
            other => {
                let mut digits = itoa::Buffer::new();
                let Some(t) = hole_text(other, &mut digits) else {
                    continue;
                };
                let at = numbers.len();
                numbers.push_str(&t);
                Err((at, numbers.len()))
            }
        };
        texts.push((text, name));
    }
    fn text_of<'a>(t: &HoleText<'a>, numbers: &'a str) -> &'a str {
        match *t {
            Ok(s) => s,
            Err((from, to)) => numbers.get(from..to).unwrap_or_default(),
        }
    }
    let numbers = numbers.as_str();
    // Longest first, then by name, so that equal events get equal templates (names are
    // distinct: no two entries compare equal, so an unstable sort gives the same order).
    texts.sort_unstable_by_key(|(t, name)| (std::cmp::Reverse(text_of(t, numbers).len()), *name));
    let bytes = raw.as_bytes();
    for (text, name) in &texts {
        let needle = text_of(text, numbers).as_bytes();
        // Values are short: candidates by their first byte, then compared whole (building a
        // substring searcher per value cost more than the search).
        for at in memchr::memchr_iter(needle[0], bytes) {
            let end = at + needle.len();
            if end > bytes.len() {
                break;
            }
            if &bytes[at..end] == needle
                && out.iter().all(|&(s, e, _)| end <= s || at >= e)
                && raw.is_char_boundary(end)
                && stands_apart(raw, at, needle.len())
            {
                out.push((at, end, *name));
                break;
            }
        }
    }
    out.sort_unstable();
    true
}

/// A block's templates, gathered as events are added.
#[derive(Debug, Default)]
pub struct TemplateBuilder {
    /// The holes' field names, and their indexes.
    names: Vec<String>,
    name_index: HashMap<String, u32>,
    /// The name indexes of the previous event's fields, in its order.
    last_names: Vec<u32>,
    /// Each template encoded as the section stores it, and its number.
    templates: HashMap<Vec<u8>, u32>,
    in_order: Vec<Vec<u8>>,
    /// The template of each templated event.
    codes: Vec<u32>,
    scratch: Vec<u8>,
    holes: Vec<(usize, usize, u32)>,
    /// Whether the last templated event's template was new to the block.
    last_new: bool,
    /// Bytes of literal text the dictionary holds.
    literal_bytes: usize,
}

impl TemplateBuilder {
    /// Templated events so far.
    pub fn len(&self) -> usize {
        self.codes.len()
    }

    /// Whether no event was templated.
    pub fn is_empty(&self) -> bool {
        self.codes.is_empty()
    }

    /// Tries to template `raw` with its event's `fields`; returns whether it was (the event's
    /// values must then be in the block's columns). An event whose text the holes do not cover
    /// well is left to be stored as text, so the dictionary stays small.
    pub fn add<'v>(
        &mut self,
        raw: &str,
        fields: impl Iterator<Item = (&'v str, ValueRef<'v>)>,
    ) -> bool {
        let mut named: Vec<(u32, ValueRef<'v>)> = Vec::with_capacity(16);
        for (k, (name, v)) in fields.enumerate() {
            // Mostly the names of the event before, in the same order: no hashing then.
            let guess = self.last_names.get(k).copied();
            let index = match guess.filter(|&i| self.names[i as usize] == name) {
                Some(i) => i,
                None => match self.name_index.get(name) {
                    Some(&i) => i,
                    None => {
                        let i = self.names.len() as u32;
                        self.names.push(name.to_string());
                        self.name_index.insert(name.to_string(), i);
                        i
                    }
                },
            };
            match self.last_names.get_mut(k) {
                Some(slot) => *slot = index,
                None => self.last_names.push(index),
            }
            named.push((index, v));
        }
        let mut holes = std::mem::take(&mut self.holes);
        let placed = find_holes(raw, &named, &mut holes);
        let templated = placed && !holes.is_empty() && self.encode(raw, &holes);
        self.holes = holes;
        templated
    }

    /// Encodes the template of `raw` with `holes` and records it for the next event; `false`
    /// (nothing recorded) when it is new and would make the dictionary larger than the text
    /// it saves.
    fn encode(&mut self, raw: &str, holes: &[(usize, usize, u32)]) -> bool {
        let mut t = std::mem::take(&mut self.scratch);
        t.clear();
        let mut literals = 0;
        let first_end = holes.first().map_or(raw.len(), |h| h.0);
        put_str(&mut t, &raw[..first_end]);
        literals += first_end;
        put_varint(&mut t, holes.len() as u64);
        for (i, &(_, end, name)) in holes.iter().enumerate() {
            let next = holes.get(i + 1).map_or(raw.len(), |h| h.0);
            put_varint(&mut t, u64::from(name));
            put_str(&mut t, &raw[end..next]);
            literals += next - end;
        }
        let code = match self.templates.get(&t) {
            Some(&code) => {
                self.last_new = false;
                code
            }
            None => {
                // A new template that is mostly literal text would store the text anyway,
                // and fill the dictionary with one entry per event.
                if literals * 2 > raw.len() && self.templates.len() >= 16 {
                    self.scratch = t;
                    return false;
                }
                let code = self.in_order.len() as u32;
                self.last_new = true;
                self.literal_bytes += literals;
                self.templates.insert(t.clone(), code);
                self.in_order.push(t.clone());
                code
            }
        };
        self.scratch = t;
        self.codes.push(code);
        true
    }

    /// The holes of the event [`TemplateBuilder::add`] last templated: (start, end, name).
    pub fn last_holes(&self) -> &[(usize, usize, u32)] {
        &self.holes
    }

    /// Whether the event [`TemplateBuilder::add`] last templated has a template that no event
    /// of the block had before (its literal text is then new to the block).
    pub fn last_was_new(&self) -> bool {
        self.last_new
    }

    /// Writes the section's payload.
    pub fn write(&self, out: &mut Vec<u8>) {
        put_varint(out, self.names.len() as u64);
        for n in &self.names {
            put_str(out, n);
        }
        put_varint(out, self.in_order.len() as u64);
        for t in &self.in_order {
            out.extend_from_slice(t);
        }
        for &c in &self.codes {
            put_varint(out, u64::from(c));
        }
    }

    /// Empties it, keeping its memory.
    pub fn clear(&mut self) {
        self.names.clear();
        self.name_index.clear();
        self.last_names.clear();
        self.templates.clear();
        self.in_order.clear();
        self.codes.clear();
        self.literal_bytes = 0;
    }
}

/// One template: literal text and holes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// The text before the first hole.
    pub first: String,
    /// Each hole's field (an index into [`Templates::names`]) and the literal after it.
    pub holes: Vec<(u32, String)>,
}

/// A block's decoded templates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Templates {
    /// The fields holes name.
    pub names: Vec<String>,
    /// The templates.
    pub templates: Vec<Template>,
    /// Each templated event's template, in event order.
    pub codes: Vec<u32>,
}

impl Templates {
    /// Decodes a section payload holding `events` templated events.
    pub fn decode(payload: &[u8], events: usize) -> Result<Templates, DecodeError> {
        let mut r = Reader::new(payload);
        let mut t = Templates::default();
        for _ in 0..r.len("bad name count")? {
            t.names.push(r.string("truncated field name")?);
        }
        for _ in 0..r.len("bad template count")? {
            let first = r.string("truncated literal")?;
            let mut holes = Vec::new();
            for _ in 0..r.len("bad hole count")? {
                let name = r.varint_u32("bad hole name")?;
                if name as usize >= t.names.len() {
                    return r.fail("hole names an unknown field");
                }
                holes.push((name, r.string("truncated literal")?));
            }
            t.templates.push(Template { first, holes });
        }
        for _ in 0..events {
            let code = r.varint_u32("truncated template number")?;
            if code as usize >= t.templates.len() {
                return r.fail("unknown template number");
            }
            t.codes.push(code);
        }
        if !r.at_end() {
            return r.fail("trailing bytes after the templates");
        }
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eddy_event::{Parser, Value};
    use proptest::prelude::*;

    fn holes_of(raw: &str, fields: &[(&str, Value)]) -> Vec<(usize, usize, u32)> {
        let named: Vec<(u32, ValueRef<'_>)> = fields
            .iter()
            .enumerate()
            .map(|(i, (_, v))| (i as u32, v.into()))
            .collect();
        let mut out = Vec::new();
        find_holes(raw, &named, &mut out);
        out
    }

    #[test]
    fn an_access_log_line_is_all_holes_but_its_punctuation() {
        let line =
            r#"10.0.0.7 - - [24/Nov/2026:10:00:00 +0000] "GET /a/b HTTP/1.1" 404 512 "-" "curl/8""#;
        let e = Parser::Accesslog.parse(line, 0).unwrap();
        let fields: Vec<(&str, Value)> = e
            .fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        let holes = holes_of(line, &fields);
        let mut literal = String::new();
        let mut at = 0;
        for &(s, e, _) in &holes {
            literal.push_str(&line[at..s]);
            literal.push('◊');
            at = e;
        }
        literal.push_str(&line[at..]);
        assert_eq!(literal, r#"◊ - - [◊] "◊ ◊ ◊" ◊ ◊ "-" "◊""#);
    }

    #[test]
    fn a_value_inside_a_word_makes_no_hole() {
        // "5" in "took=5ms" would join the word "5ms".
        assert!(holes_of("took=5ms", &[("took", Value::Int(5))]).is_empty());
        assert_eq!(
            holes_of("took=5 ms", &[("took", Value::Int(5))]),
            vec![(5, 6, 0)]
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn holes_never_overlap_and_hold_their_value(
            raw in "[a-c0-9 ,\"=]{0,40}",
            values in proptest::collection::vec(prop_oneof!["[a-c0-9 ]{1,4}".prop_map(Value::Str), (0i64..100).prop_map(Value::Int)], 0..6),
        ) {
            let fields: Vec<(&str, Value)> = values.iter().map(|v| ("f", v.clone())).collect();
            let holes = holes_of(&raw, &fields);
            for w in holes.windows(2) {
                prop_assert!(w[0].1 <= w[1].0);
            }
            for &(s, e, i) in &holes {
                let mut digits = itoa::Buffer::new();
                let text = hole_text((&values[i as usize]).into(), &mut digits).unwrap();
                prop_assert_eq!(&raw[s..e], text.as_ref());
            }
        }
    }
}
