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

use eddy_event::codec::FieldsRef;
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
    let bytes = raw.as_bytes();
    // Mostly the value and its neighbours are ASCII: their bytes are their characters then,
    // with no decoding.
    let (Some(&first), Some(&last)) = (bytes.get(at), bytes.get(at + len - 1)) else {
        return stands_apart_in_characters(raw, at, len);
    };
    let before = at.checked_sub(1).and_then(|i| bytes.get(i)).copied();
    let after = bytes.get(at + len).copied();
    if !(first.is_ascii()
        && last.is_ascii()
        && before.is_none_or(|b| b.is_ascii())
        && after.is_none_or(|b| b.is_ascii()))
    {
        return stands_apart_in_characters(raw, at, len);
    }
    let word = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_alphanumeric());
    !(first.is_ascii_alphanumeric() && word(before) || last.is_ascii_alphanumeric() && word(after))
}

/// [`stands_apart`] for a value or neighbours beyond ASCII.
fn stands_apart_in_characters(raw: &str, at: usize, len: usize) -> bool {
    let inner = &raw[at..at + len];
    let first_word = inner.chars().next().is_some_and(is_word_char);
    let last_word = inner.chars().next_back().is_some_and(is_word_char);
    let before = raw[..at].chars().next_back().is_some_and(is_word_char);
    let after = raw[at + len..].chars().next().is_some_and(is_word_char);
    !(first_word && before || last_word && after)
}

/// Finds the holes of `raw` for `fields` (name index, value): returns them sorted by position
/// as (start, end, name index). `None` when the event has too many fields to try.
pub fn find_holes(
    raw: &str,
    fields: &[(u32, ValueRef<'_>)],
    out: &mut Vec<(usize, usize, u32)>,
) -> bool {
    HoleFinder::default().find(raw, fields, out)
}

/// Where a value's text is: its own (a string), or a range of [`HoleFinder`]'s numbers' texts.
#[derive(Debug, Clone, Copy)]
enum TextAt {
    Own,
    Numbers(u32, u32),
}

/// The search of [`find_holes`] with its buffers kept from event to event (the digest places
/// the holes of every event it templates: allocating per event was a tenth of the search).
#[derive(Debug)]
pub struct HoleFinder {
    /// Numbers' texts one after another.
    numbers: String,
    /// Per value to place: its order key (longest first, then by name), which field, and where
    /// its text is.
    order: Vec<(u64, u32, TextAt)>,
    /// The positions of each byte of the text, as linked lists in text order: `first[b]` is
    /// one past the first position of byte `b` (0: none), `next[i]` one past the next position
    /// after `i` that holds the same byte. One pass over the text builds them; a search for a
    /// value's first byte was a `memchr` call per candidate, a third of the cost.
    first: Box<[u32; 256]>,
    next: Vec<u32>,
    /// The holes of the last search as (start, end, name, index of the field in the list
    /// searched), in text order once it is done: which value made which hole.
    placed: Vec<(usize, usize, u32, u32)>,
}

impl Default for HoleFinder {
    fn default() -> HoleFinder {
        HoleFinder {
            numbers: String::new(),
            order: Vec::new(),
            first: Box::new([0; 256]),
            next: Vec::new(),
            placed: Vec::new(),
        }
    }
}

impl HoleFinder {
    /// [`find_holes`].
    pub fn find(
        &mut self,
        raw: &str,
        fields: &[(u32, ValueRef<'_>)],
        out: &mut Vec<(usize, usize, u32)>,
    ) -> bool {
        out.clear();
        self.placed.clear();
        if fields.len() > MAX_FIELDS {
            return false;
        }
        let bytes = raw.as_bytes();
        // Positions are u32: a longer text (never a log line) is not templated.
        if u32::try_from(bytes.len()).is_err() {
            return false;
        }
        self.numbers.clear();
        self.order.clear();
        for (i, &(name, v)) in fields.iter().enumerate() {
            let (len, at) = match v {
                ValueRef::Str(s) if !s.is_empty() => (s.len(), TextAt::Own),
                ValueRef::Str(_) | ValueRef::Null => continue,
                other => {
                    let mut digits = itoa::Buffer::new();
                    let Some(t) = hole_text(other, &mut digits) else {
                        continue;
                    };
                    let from = self.numbers.len();
                    self.numbers.push_str(&t);
                    let to = self.numbers.len();
                    (to - from, TextAt::Numbers(from as u32, to as u32))
                }
            };
            // Longest first, then by name, so that equal events get equal templates (names
            // are distinct, so no two keys are equal and the order is total).
            let longest_first = u64::from(u32::MAX - len.min(u32::MAX as usize) as u32);
            self.order
                .push(((longest_first << 32) | u64::from(name), i as u32, at));
        }
        if self.order.is_empty() {
            return true;
        }
        self.order.sort_unstable_by_key(|&(key, _, _)| key);
        self.index(bytes);
        for &(_, field, at) in &self.order {
            let needle = match (at, fields.get(field as usize)) {
                (TextAt::Own, Some(&(_, ValueRef::Str(s)))) => s.as_bytes(),
                (TextAt::Numbers(from, to), _) => self
                    .numbers
                    .as_bytes()
                    .get(from as usize..to as usize)
                    .unwrap_or_default(),
                _ => continue,
            };
            let (Some(&head), Some(&tail)) = (needle.first(), needle.last()) else {
                continue;
            };
            let name = fields[field as usize].0;
            let mut candidate = self.first[usize::from(head)];
            while candidate != 0 {
                let at = candidate as usize - 1;
                candidate = self.next[at];
                let end = at + needle.len();
                if end > bytes.len() {
                    break;
                }
                // The last byte first: most candidates differ there, without a call.
                if bytes[end - 1] == tail
                    && &bytes[at..end] == needle
                    && self.placed.iter().all(|&(s, e, _, _)| end <= s || at >= e)
                    && raw.is_char_boundary(end)
                    && stands_apart(raw, at, needle.len())
                {
                    self.placed.push((at, end, name, field));
                    break;
                }
            }
        }
        // Holes start at distinct positions: sorted by where they start.
        self.placed.sort_unstable_by_key(|&(start, ..)| start);
        out.extend(
            self.placed
                .iter()
                .map(|&(start, end, name, _)| (start, end, name)),
        );
        true
    }

    /// For each hole the last [`HoleFinder::find`] placed, in its order, the index in the list
    /// searched of the field that made it.
    pub fn placed_fields(&self) -> impl Iterator<Item = u32> + '_ {
        self.placed.iter().map(|&(.., field)| field)
    }

    /// Builds the position lists of `bytes` (see [`HoleFinder::first`]).
    fn index(&mut self, bytes: &[u8]) {
        self.first.fill(0);
        self.next.clear();
        self.next.resize(bytes.len(), 0);
        let first = &mut *self.first;
        for (i, (next, &b)) in self.next.iter_mut().zip(bytes).enumerate().rev() {
            let slot = &mut first[usize::from(b)];
            *next = *slot;
            *slot = i as u32 + 1;
        }
    }
}

/// What made a hole: the field at an index of the event's fields, or the extra value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoleMaker {
    /// The field at this index.
    Field(u32),
    /// The `extra` value of [`TemplateBuilder::add`].
    Extra,
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
    finder: HoleFinder,
    /// The memory of [`TemplateBuilder::add`]'s list of named values, kept empty between calls.
    named: Vec<(u32, ValueRef<'static>)>,
    /// Whether the last templated event's template was new to the block.
    last_new: bool,
    /// The index among the last event's named values of the `extra` value given to
    /// [`TemplateBuilder::add`], if any.
    last_extra: Option<u32>,
    /// Bytes of literal text the dictionary holds.
    literal_bytes: usize,
    /// The template the last event of each shape got, taken apart for
    /// [`TemplateBuilder::refill`], by [`shape_of`] its named values.
    by_shape: HashMap<u64, KnownTemplate>,
    /// For each hole of the last templated event, the index among its named values of the
    /// value that filled it.
    hole_fields: Vec<u32>,
    /// Events templated by refilling a known template, without a search.
    refills: usize,
}

/// Shapes [`TemplateBuilder::by_shape`] keeps: data with ever new field names would otherwise
/// keep them all.
const MAX_SHAPES: usize = 256;

/// A template's literals and holes, to try the next event of the same shape against: the
/// events of a data source mostly share a few shapes, and refilling a known template with the
/// new values is a comparison where searching the text for each value was a fifth of building
/// a block.
#[derive(Debug, Default)]
struct KnownTemplate {
    /// Its number in the block.
    code: u32,
    /// The literal texts one after another.
    literals: String,
    /// Where the literal before the first hole ends in `literals`.
    first_end: usize,
    /// Per hole: its name index, the index among the named values of the value that filled
    /// it last (where the next event's mostly is), where the literal after it ends in
    /// `literals`, and whether the literals beside it keep any value apart (see
    /// [`apart_between`]).
    holes: Vec<(u32, u32, usize, bool)>,
}

/// Whether any value between the literals `before` and `after` stands apart (see
/// [`stands_apart`]): each is `None` at the text's edge, or ends (`before`) or starts
/// (`after`) with an ASCII byte that is no letter or digit. An empty literal between two holes
/// keeps nothing apart: the value beside is then the neighbour.
fn apart_between(before: Option<&[u8]>, after: Option<&[u8]>) -> bool {
    let keeps_apart =
        |b: Option<&u8>| b.is_some_and(|b| b.is_ascii() && !b.is_ascii_alphanumeric());
    let before = before.is_none_or(|t| keeps_apart(t.last()));
    let after = after.is_none_or(|t| keeps_apart(t.first()));
    before && after
}

/// What picks the template to try for an event: the names of its values in their order, and
/// which are empty (an empty value makes no hole).
fn shape_of(named: &[(u32, ValueRef<'_>)]) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = foldhash::fast::FixedState::with_seed(0).build_hasher();
    for &(name, v) in named {
        let empty = matches!(v, ValueRef::Str("") | ValueRef::Null);
        h.write_u64(u64::from(name) << 1 | u64::from(empty));
    }
    h.finish()
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
    ///
    /// `extra` is one more named value, after the fields (the time text a client sent).
    pub fn add<'v>(
        &mut self,
        raw: &str,
        fields: FieldsRef<'v>,
        extra: Option<(&'v str, ValueRef<'v>)>,
    ) -> bool {
        let mut named = recycle(std::mem::take(&mut self.named));
        let mut k = 0;
        let mut name_value = |name: &str, v: ValueRef<'v>| {
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
            k += 1;
            named.push((index, v));
        };
        fields.for_each(&mut name_value);
        if let Some((name, v)) = extra {
            name_value(name, v);
        }
        // The extra value is the last named.
        self.last_extra = extra.map(|_| named.len() as u32 - 1);
        let mut holes = std::mem::take(&mut self.holes);
        let shape = shape_of(&named);
        let templated = if self.refill(shape, raw, &named, &mut holes) {
            true
        } else {
            let placed = self.finder.find(raw, &named, &mut holes);
            self.hole_fields.clear();
            self.hole_fields.extend(self.finder.placed_fields());
            let templated = placed && !holes.is_empty() && self.encode(raw, &holes);
            if templated {
                self.remember(shape, raw, &holes);
            }
            templated
        };
        self.named = recycle(named);
        self.holes = holes;
        templated
    }

    /// Templates `raw` with the template the last event of its `shape` got, if that
    /// template's literals and the `named` values in its holes spell `raw` exactly and each
    /// value stands apart from the literals beside it (what the search requires of a hole, see
    /// [`stands_apart`]). The holes may then differ from those a search would place (a value
    /// that also appears earlier in the text), never in what they spell; two shapes of one
    /// hash only cost a refill that fails.
    fn refill(
        &mut self,
        shape: u64,
        raw: &str,
        named: &[(u32, ValueRef<'_>)],
        holes: &mut Vec<(usize, usize, u32)>,
    ) -> bool {
        let Some(known) = self.by_shape.get_mut(&shape) else {
            return false;
        };
        let bytes = raw.as_bytes();
        let literals = known.literals.as_bytes();
        if !bytes.starts_with(&literals[..known.first_end]) {
            return false;
        }
        holes.clear();
        self.hole_fields.clear();
        let (mut at, mut literal_start) = (known.first_end, known.first_end);
        let mut digits = itoa::Buffer::new();
        for (name, field, literal_end, apart) in &mut known.holes {
            if named.get(*field as usize).is_none_or(|n| n.0 != *name) {
                match named.iter().position(|n| n.0 == *name) {
                    Some(f) => *field = f as u32,
                    None => return false,
                }
            }
            let text = match named[*field as usize].1 {
                ValueRef::Str(s) => s,
                ValueRef::Int(i) => digits.format(i),
                ValueRef::Bool(true) => "true",
                ValueRef::Bool(false) => "false",
                // Floats' texts are rare in holes and cost an allocation: the search does them.
                ValueRef::Float(_) | ValueRef::Null => return false,
            };
            let end = at + text.len();
            if text.is_empty()
                || !bytes[at..].starts_with(text.as_bytes())
                || !(*apart || stands_apart(raw, at, text.len()))
            {
                return false;
            }
            let literal = &literals[literal_start..*literal_end];
            if !bytes[end..].starts_with(literal) {
                return false;
            }
            holes.push((at, end, *name));
            self.hole_fields.push(*field);
            at = end + literal.len();
            literal_start = *literal_end;
        }
        if at != bytes.len() {
            return false;
        }
        self.last_new = false;
        self.codes.push(known.code);
        self.refills += 1;
        true
    }

    /// Keeps the template the last event got (`raw` with `holes`) for the next event of its
    /// `shape` (see [`TemplateBuilder::refill`]).
    fn remember(&mut self, shape: u64, raw: &str, holes: &[(usize, usize, u32)]) {
        if self.by_shape.len() >= MAX_SHAPES && !self.by_shape.contains_key(&shape) {
            self.by_shape.clear();
        }
        let known = self.by_shape.entry(shape).or_default();
        known.code = self.codes.last().copied().unwrap_or_default();
        known.literals.clear();
        known.holes.clear();
        known
            .literals
            .push_str(&raw[..holes.first().map_or(raw.len(), |h| h.0)]);
        known.first_end = known.literals.len();
        let bytes = raw.as_bytes();
        for (i, (&(start, end, name), &field)) in holes.iter().zip(&self.hole_fields).enumerate() {
            let previous_end = i.checked_sub(1).map(|p| holes[p].1);
            let next = holes.get(i + 1).map(|h| h.0);
            let before = match previous_end {
                None if start == 0 => None,
                p => Some(&bytes[p.unwrap_or(0)..start]),
            };
            let after = match next {
                None if end == raw.len() => None,
                n => Some(&bytes[end..n.unwrap_or(raw.len())]),
            };
            known
                .literals
                .push_str(&raw[end..next.unwrap_or(raw.len())]);
            let apart = apart_between(before, after);
            known.holes.push((name, field, known.literals.len(), apart));
        }
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
        // Mostly the template of the event before: a comparison, where a lookup hashed it.
        let last = self
            .codes
            .last()
            .copied()
            .filter(|&c| self.in_order.get(c as usize) == Some(&t));
        let code = match last.or_else(|| self.templates.get(&t).copied()) {
            Some(code) => {
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

    /// For each of [`TemplateBuilder::last_holes`], whether the `extra` value made it rather
    /// than a field, and the index of that field among the event's fields.
    pub fn last_hole_makers(&self) -> impl Iterator<Item = HoleMaker> + '_ {
        let extra = self.last_extra;
        self.hole_fields.iter().map(move |&f| match extra {
            Some(e) if e == f => HoleMaker::Extra,
            _ => HoleMaker::Field(f),
        })
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
        // Template numbers are the block's.
        self.by_shape.clear();
    }
}

/// An empty vector of the same layout with `v`'s memory, for values that borrow for another
/// lifetime (collecting an emptied vector in place keeps its allocation).
fn recycle<'a, 'b>(mut v: Vec<(u32, ValueRef<'a>)>) -> Vec<(u32, ValueRef<'b>)> {
    v.clear();
    v.into_iter().map(|_| (0, ValueRef::Null)).collect()
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
    use std::collections::BTreeMap;

    /// Adds `raw` with fields `f0`, `f1`, … holding `values`; returns whether it was templated.
    fn add(builder: &mut TemplateBuilder, raw: &str, values: &[Value]) -> bool {
        let fields: BTreeMap<String, Value> = values
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("f{i}"), v.clone()))
            .collect();
        builder.add(raw, FieldsRef::Map(&fields), None)
    }

    /// The text of templated event `i` of `templates`, its holes filled from `values`.
    fn spell(templates: &Templates, i: usize, values: &[Value]) -> String {
        let t = &templates.templates[templates.codes[i] as usize];
        let mut text = t.first.clone();
        for (name, literal) in &t.holes {
            let field: usize = templates.names[*name as usize][1..].parse().unwrap();
            let mut digits = itoa::Buffer::new();
            text.push_str(&hole_text((&values[field]).into(), &mut digits).unwrap());
            text.push_str(literal);
        }
        text
    }

    #[test]
    fn an_event_of_a_known_shape_refills_its_template_without_a_search() {
        let mut b = TemplateBuilder::default();
        assert!(add(
            &mut b,
            r#"{"level":"INFO","ms":12}"#,
            &[Value::from("INFO"), Value::Int(12)]
        ));
        assert!(add(
            &mut b,
            r#"{"level":"WARN","ms":7}"#,
            &[Value::from("WARN"), Value::Int(7)]
        ));
        assert_eq!(b.refills, 1);
        assert_eq!(b.last_holes(), &[(10, 14, 0), (21, 22, 1)]);
        assert_eq!(b.codes, vec![0, 0]);
        // Same names, but a value the text escapes: the refill cannot spell it; a search places
        // only `ms`, a new template.
        assert!(add(
            &mut b,
            r#"{"level":"a\"b","ms":7}"#,
            &[Value::from("a\"b"), Value::Int(7)]
        ));
        assert_eq!(b.refills, 1);
        assert_eq!(b.codes, vec![0, 0, 1]);
        // A value that would join a word of the literal beside it is no hole.
        assert!(add(&mut b, "took=5 ms", &[Value::Int(5)]));
        assert!(!add(&mut b, "took=55ms", &[Value::Int(55)]));
        assert_eq!(b.refills, 1);
    }

    proptest! {
        #[test]
        fn refilled_templates_spell_their_texts_with_holes_that_stand_apart(
            events in proptest::collection::vec(
                (0usize..3, proptest::collection::vec(prop_oneof![
                    "[ab1 é\"-]{0,3}".prop_map(Value::Str),
                    (0i64..20).prop_map(Value::Int),
                ], 3)),
                1..30,
            ),
        ) {
            const SHAPES: [&str; 3] = [r#"{"a":"◊","b":◊,"c":"◊"}"#, "◊ - ◊ [◊]", "k=◊ ◊b◊"];
            let mut b = TemplateBuilder::default();
            let mut templated = Vec::new();
            for (shape, values) in &events {
                let mut raw = String::new();
                for (i, piece) in SHAPES[*shape].split('◊').enumerate() {
                    if i > 0 {
                        let mut digits = itoa::Buffer::new();
                        raw.push_str(&hole_text((&values[i - 1]).into(), &mut digits).unwrap_or_default());
                    }
                    raw.push_str(piece);
                }
                if add(&mut b, &raw, values) {
                    for &(start, end, _) in b.last_holes() {
                        prop_assert!(stands_apart(&raw, start, end - start), "{:?} in {:?}", start..end, raw);
                    }
                    templated.push((raw, values.clone()));
                }
            }
            let mut payload = Vec::new();
            b.write(&mut payload);
            let templates = Templates::decode(&payload, templated.len()).unwrap();
            for (i, (raw, values)) in templated.iter().enumerate() {
                prop_assert_eq!(&spell(&templates, i, values), raw);
            }
        }
    }

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

    /// The hole search as it was first written (a `memchr` per candidate, a fresh sort), which
    /// the block format's templates were made with: the kept buffers must not change a hole.
    fn reference_holes(raw: &str, fields: &[(u32, ValueRef<'_>)]) -> Vec<(usize, usize, u32)> {
        let mut texts: Vec<(String, u32)> = fields
            .iter()
            .filter_map(|&(name, v)| {
                let mut digits = itoa::Buffer::new();
                let t = hole_text(v, &mut digits)?.into_owned();
                Some((t, name))
            })
            .collect();
        texts.sort_by_key(|(t, name)| (std::cmp::Reverse(t.len()), *name));
        let bytes = raw.as_bytes();
        let mut out: Vec<(usize, usize, u32)> = Vec::new();
        for (text, name) in &texts {
            let needle = text.as_bytes();
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
        out
    }

    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            "[a-c0-9 é\"]{0,5}".prop_map(Value::Str),
            (-20i64..200).prop_map(Value::Int),
            (-5.0f64..5.0).prop_map(|f| Value::Float((f * 4.0).round() / 4.0)),
            any::<bool>().prop_map(Value::Bool),
            Just(Value::Null),
        ]
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

        #[test]
        fn the_ascii_test_of_standing_apart_is_the_character_test(
            raw in "[a-b0-9 ,.é\"=-]{1,12}",
            at in 0usize..12,
            len in 1usize..12,
        ) {
            let end = at + len;
            if end <= raw.len() && raw.is_char_boundary(at) && raw.is_char_boundary(end) {
                prop_assert_eq!(stands_apart(&raw, at, len), stands_apart_in_characters(&raw, at, len));
            }
        }

        #[test]
        fn one_finder_reused_places_the_holes_the_first_search_placed(
            events in proptest::collection::vec(
                ("[a-c0-9 ,.é\"=-]{0,60}", proptest::collection::vec(value(), 0..8)),
                1..6,
            ),
        ) {
            let mut finder = HoleFinder::default();
            let mut out = Vec::new();
            for (raw, values) in &events {
                let named: Vec<(u32, ValueRef<'_>)> =
                    values.iter().enumerate().map(|(i, v)| (i as u32, v.into())).collect();
                prop_assert!(finder.find(raw, &named, &mut out));
                prop_assert_eq!(&out, &reference_holes(raw, &named), "{:?} in {:?}", values, raw);
            }
        }
    }
}
