//! An event's fields in one reusable buffer: what a reader that derives the fields of every
//! event it reads (the digest) fills instead of a map.
//!
//! [`FlatFields`] holds the same fields, in the same order, as the `BTreeMap<String, Value>`
//! a parser fills ([`crate::Parser::fields_of`]): names in byte order, a name given twice keeps
//! its last value. Its texts (names and string values) go one after another into one string,
//! so deriving the fields of an event allocates nothing once the buffer has grown; a map cost
//! an allocation per field name, per string value and per tree node, and as many frees.

use std::borrow::Cow;
use std::collections::BTreeMap;

use crate::value::{Value, ValueRef};

/// Where parsers put the fields they read: a map, or a [`FlatFields`].
pub(crate) trait FieldSink {
    /// Sets field `name` to `value` (a later value of the same name replaces it).
    fn put(&mut self, name: Cow<'_, str>, value: ValueRef<'_>);

    /// [`FieldSink::put`] for a string value the parser already owns.
    fn put_string(&mut self, name: Cow<'_, str>, value: String) {
        self.put(name, ValueRef::Str(&value));
    }
}

impl FieldSink for BTreeMap<String, Value> {
    fn put(&mut self, name: Cow<'_, str>, value: ValueRef<'_>) {
        self.insert(name.into_owned(), value.into());
    }

    fn put_string(&mut self, name: Cow<'_, str>, value: String) {
        self.insert(name.into_owned(), Value::Str(value));
    }
}

/// A value whose text is a range of [`FlatFields`]' text.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Slot {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(u32, u32),
}

/// An event's fields, in name order, in one buffer (see the module's doc).
#[derive(Debug, Default, Clone)]
pub struct FlatFields {
    text: String,
    /// (name's first bytes, name's range in `text`, value), in the order put until
    /// [`FlatFields::finish`] sorts them.
    entries: Vec<(u64, (u32, u32), Slot)>,
}

/// The first eight bytes of a name as a number that orders as the names do (shorter names
/// padded with zeros, which sort first): most names differ there, so sorting compares numbers.
fn prefix_of(name: &str) -> u64 {
    let mut first = [0u8; 8];
    let n = name.len().min(8);
    first[..n].copy_from_slice(&name.as_bytes()[..n]);
    u64::from_be_bytes(first)
}

impl FlatFields {
    /// No fields (the memory is kept).
    pub fn clear(&mut self) {
        self.text.clear();
        self.entries.clear();
    }

    /// How many fields.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Appends `s` to the text; its range.
    fn keep(&mut self, s: &str) -> (u32, u32) {
        let from = self.text.len();
        self.text.push_str(s);
        // Ranges are u32: a field text of 4 GiB is beyond any bus record.
        (from as u32, self.text.len() as u32)
    }

    fn text_at(&self, (from, to): (u32, u32)) -> &str {
        self.text
            .get(from as usize..to as usize)
            .unwrap_or_default()
    }

    fn value_at(&self, slot: Slot) -> ValueRef<'_> {
        match slot {
            Slot::Null => ValueRef::Null,
            Slot::Bool(b) => ValueRef::Bool(b),
            Slot::Int(i) => ValueRef::Int(i),
            Slot::Float(f) => ValueRef::Float(f),
            Slot::Str(from, to) => ValueRef::Str(self.text_at((from, to))),
        }
    }

    fn slot_of(&mut self, value: ValueRef<'_>) -> Slot {
        match value {
            ValueRef::Null => Slot::Null,
            ValueRef::Bool(b) => Slot::Bool(b),
            ValueRef::Int(i) => Slot::Int(i),
            ValueRef::Float(f) => Slot::Float(f),
            ValueRef::Str(s) => {
                let (from, to) = self.keep(s);
                Slot::Str(from, to)
            }
        }
    }

    /// Puts the fields in name order, the last value of a name given twice kept: the map's
    /// order and content. Parsers call it once they are done.
    pub(crate) fn finish(&mut self) {
        let text = &self.text;
        let name = |r: (u32, u32)| text.get(r.0 as usize..r.1 as usize).unwrap_or_default();
        let order = |a: &(u64, (u32, u32), Slot), b: &(u64, (u32, u32), Slot)| {
            a.0.cmp(&b.0).then_with(|| name(a.1).cmp(name(b.1)))
        };
        // Lines that give their fields in name order need no sort.
        if self.entries.windows(2).all(|w| order(&w[0], &w[1]).is_lt()) {
            return;
        }
        // Stable: of the values of one name, the last put stays last.
        self.entries.sort_by(order);
        let mut kept: usize = 0;
        for i in 0..self.entries.len() {
            let entry = self.entries[i];
            match self.entries.get(i + 1) {
                Some(next) if order(next, &entry).is_eq() => {}
                _ => {
                    self.entries[kept] = entry;
                    kept += 1;
                }
            }
        }
        self.entries.truncate(kept);
    }

    /// The value of field `name`.
    pub fn get(&self, name: &str) -> Option<ValueRef<'_>> {
        self.position(name)
            .map(|i| self.value_at(self.entries[i].2))
    }

    fn position(&self, name: &str) -> Option<usize> {
        let prefix = prefix_of(name);
        self.entries
            .binary_search_by(|e| e.0.cmp(&prefix).then_with(|| self.text_at(e.1).cmp(name)))
            .ok()
    }

    /// Removes field `name` (once [`FlatFields::finish`]ed); whether it was there.
    pub(crate) fn remove(&mut self, name: &str) -> bool {
        match self.position(name) {
            Some(i) => {
                self.entries.remove(i);
                true
            }
            None => false,
        }
    }

    /// Sets field `name` keeping the name order (once [`FlatFields::finish`]ed).
    pub(crate) fn set(&mut self, name: &str, value: ValueRef<'_>) {
        let slot = self.slot_of(value);
        let prefix = prefix_of(name);
        match self
            .entries
            .binary_search_by(|e| e.0.cmp(&prefix).then_with(|| self.text_at(e.1).cmp(name)))
        {
            Ok(i) => self.entries[i].2 = slot,
            Err(i) => {
                let range = self.keep(name);
                self.entries.insert(i, (prefix, range, slot));
            }
        }
    }

    /// The fields in name order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, ValueRef<'_>)> + Clone + '_ {
        self.entries
            .iter()
            .map(|&(_, name, slot)| (self.text_at(name), self.value_at(slot)))
    }

    /// The fields as a map.
    pub fn to_map(&self) -> BTreeMap<String, Value> {
        self.iter()
            .map(|(k, v)| (k.to_string(), v.into()))
            .collect()
    }

    /// Replaces the fields with those of `map`.
    pub(crate) fn fill_from(&mut self, map: &BTreeMap<String, Value>) {
        self.clear();
        for (k, v) in map {
            let name = self.keep(k);
            let slot = self.slot_of(v.into());
            self.entries.push((prefix_of(k), name, slot));
        }
    }
}

impl FieldSink for FlatFields {
    fn put(&mut self, name: Cow<'_, str>, value: ValueRef<'_>) {
        let range = self.keep(&name);
        let slot = self.slot_of(value);
        self.entries.push((prefix_of(&name), range, slot));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn flat_fields_hold_what_a_map_holds_after_the_same_puts(
            puts in proptest::collection::vec(("[a-d.@]{0,3}", crate::arbitrary::value()), 0..20),
            removed in "[a-d.@]{0,3}",
            set in ("[a-d.@]{0,3}", crate::arbitrary::value()),
        ) {
            let (mut map, mut flat) = (BTreeMap::new(), FlatFields::default());
            for (k, v) in &puts {
                map.put(Cow::Borrowed(k.as_str()), v.into());
                flat.put(Cow::Borrowed(k.as_str()), v.into());
            }
            flat.finish();
            prop_assert_eq!(flat.to_map(), map.clone());
            let names: Vec<&str> = flat.iter().map(|(k, _)| k).collect();
            prop_assert_eq!(names, map.keys().map(String::as_str).collect::<Vec<_>>());
            prop_assert_eq!(flat.remove(&removed), map.remove(&removed).is_some());
            flat.set(&set.0, (&set.1).into());
            map.insert(set.0.clone(), set.1.clone());
            prop_assert_eq!(flat.to_map(), map.clone());
            for k in map.keys() {
                prop_assert_eq!(flat.get(k), map.get(k).map(ValueRef::from));
            }
        }
    }
}
