//! A block's fields as typed columns: each field of the block's events is one column, encoded
//! by its type and compressed on its own (see [`crate::sections`]), so a query about `status`
//! decompresses the `status` column and nothing else.
//!
//! A column's payload (before compression; `varint` is unsigned LEB128, `zz` zig-zag):
//!
//! ```text
//!  u8      kind: 0 null, 1 bool, 2 int, 3 float, 4 string, 5 mixed
//!  varint  m, the events that have the field
//!  presence  nothing when every event has it (m = n), else a bitmap of n bits, LSB first
//!  values of the m events, by kind:
//!    null    nothing
//!    bool    a bitmap of m bits
//!    int     zz base, u8 width w, then each value − base in w bits (frame of reference)
//!    float   m × f64, little-endian
//!    string  u8 form:
//!              0 dictionary: varint d, d × str, u8 width w, m codes of w bits
//!              1 plain: m × varint length, then the texts one after another
//!    mixed   m × (u8 kind, payload) as the bus encodes a field's value
//! ```
//!
//! Strings take a dictionary when at most half of them are distinct: a block's status codes,
//! levels and hosts become a few entries and one small code per event, and filters and
//! group-bys work on the codes. Integers are stored as their distance from the block's
//! smallest, in as many bits as the largest distance needs.

use foldhash::{HashMap, HashMapExt};

use eddy_event::wire::{put_str, put_varint, unzigzag, zigzag, DecodeError, Reader};
use eddy_event::{Value, ValueRef};

const KIND_NULL: u8 = 0;
const KIND_BOOL: u8 = 1;
const KIND_INT: u8 = 2;
const KIND_FLOAT: u8 = 3;
const KIND_STR: u8 = 4;
const KIND_MIXED: u8 = 5;

const STR_DICTIONARY: u8 = 0;
const STR_PLAIN: u8 = 1;

/// The smallest and largest value of a numeric column, kept outside its compressed frame so a
/// filter can skip the block without decompressing anything.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Range {
    /// Integers from `.0` to `.1`.
    Int(i64, i64),
    /// Numbers from `.0` to `.1` (NaN excluded).
    Float(f64, f64),
}

/// Which bytes a text column's values hold, as a templated text holds them (a line break inside
/// a value as a space), kept outside the column's compressed frame: a regex whose state only a
/// few bytes move knows without decompressing that no value of the column moves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ByteSet(pub [u64; 4]);

impl ByteSet {
    /// Adds the bytes of `text`.
    pub fn add(&mut self, text: &[u8]) {
        // A flag per byte value, folded into bits once: a store per byte where setting the
        // bit was a read, a shift and a write (a block's column texts are most of its bytes).
        let mut seen = [false; 256];
        for &b in text {
            seen[usize::from(b)] = true;
        }
        seen[usize::from(b' ')] |= std::mem::take(&mut seen[usize::from(b'\n')]);
        for (b, _) in seen.iter().enumerate().filter(|(_, &s)| s) {
            self.0[b >> 6] |= 1 << (b & 63);
        }
    }

    /// Whether it holds `b`.
    pub fn holds(&self, b: u8) -> bool {
        self.0[usize::from(b >> 6)] & (1 << (b & 63)) != 0
    }

    /// Whether it holds any of `bytes`.
    pub fn holds_any(&self, bytes: &[u8]) -> bool {
        bytes.iter().any(|&b| self.holds(b))
    }
}

/// The values of one field, in event order, as they are added.
#[derive(Debug, Clone)]
enum Gathered {
    Null,
    Bool(Vec<bool>),
    Int(Vec<i64>),
    Float(Vec<f64>),
    /// Texts one after another, with where each ends.
    Str(Vec<u8>, Vec<u32>),
    Mixed(Vec<Value>),
}

/// One field's column being filled.
#[derive(Debug, Clone)]
pub struct ColumnBuilder {
    /// The field.
    pub name: String,
    /// The events that have it, in order.
    rows: Vec<u32>,
    values: Gathered,
}

impl ColumnBuilder {
    /// An empty column for `name`.
    pub fn new(name: &str) -> ColumnBuilder {
        ColumnBuilder {
            name: name.to_string(),
            rows: Vec::new(),
            values: Gathered::Null,
        }
    }

    /// Empties it for field `name`, keeping its memory: the vector of its values' kind is
    /// refilled when the first value is of that kind again (new vectors grew by reallocation
    /// and page faults, block after block).
    pub fn reuse_for(&mut self, name: &str) {
        self.name.clear();
        self.name.push_str(name);
        self.rows.clear();
        match &mut self.values {
            Gathered::Null => {}
            Gathered::Bool(v) => v.clear(),
            Gathered::Int(v) => v.clear(),
            Gathered::Float(v) => v.clear(),
            Gathered::Str(bytes, ends) => {
                bytes.clear();
                ends.clear();
            }
            Gathered::Mixed(v) => v.clear(),
        }
    }

    /// Events that have the field.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether no event has it.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Adds event `row`'s value (rows must come in increasing order).
    pub fn push(&mut self, row: u32, v: ValueRef<'_>) {
        let first = self.rows.is_empty();
        self.rows.push(row);
        let same_kind = matches!(
            (&self.values, v),
            (Gathered::Null, ValueRef::Null)
                | (Gathered::Bool(_), ValueRef::Bool(_))
                | (Gathered::Int(_), ValueRef::Int(_))
                | (Gathered::Float(_), ValueRef::Float(_))
                | (Gathered::Str(..), ValueRef::Str(_))
        );
        // A column reused keeps its (emptied) vector for values of its last kind.
        if first && !same_kind {
            self.values = match v {
                ValueRef::Null => Gathered::Null,
                ValueRef::Bool(_) => Gathered::Bool(Vec::new()),
                ValueRef::Int(_) => Gathered::Int(Vec::new()),
                ValueRef::Float(_) => Gathered::Float(Vec::new()),
                ValueRef::Str(_) => Gathered::Str(Vec::new(), Vec::new()),
            };
        }
        match (&mut self.values, v) {
            (Gathered::Null, ValueRef::Null) => {}
            (Gathered::Bool(b), ValueRef::Bool(x)) => b.push(x),
            (Gathered::Int(i), ValueRef::Int(x)) => i.push(x),
            (Gathered::Float(f), ValueRef::Float(x)) => f.push(x),
            (Gathered::Str(bytes, ends), ValueRef::Str(s)) => {
                bytes.extend_from_slice(s.as_bytes());
                ends.push(bytes.len() as u32);
            }
            (Gathered::Mixed(all), v) => all.push(v.into()),
            (_, v) => {
                // A second kind of value: every value is kept with its kind from now on.
                let count = self.rows.len() - 1;
                let mut all = self.gathered_values(count);
                all.push(v.into());
                self.values = Gathered::Mixed(all);
            }
        }
    }

    /// The first `count` values gathered, as values.
    fn gathered_values(&self, count: usize) -> Vec<Value> {
        match &self.values {
            Gathered::Null => vec![Value::Null; count],
            Gathered::Bool(b) => b.iter().map(|&x| Value::Bool(x)).collect(),
            Gathered::Int(i) => i.iter().map(|&x| Value::Int(x)).collect(),
            Gathered::Float(f) => f.iter().map(|&x| Value::Float(x)).collect(),
            Gathered::Str(bytes, ends) => texts(bytes, ends)
                .map(|t| Value::Str(String::from_utf8_lossy(t).into_owned()))
                .collect(),
            Gathered::Mixed(all) => all.clone(),
        }
    }

    /// The range of a numeric column.
    pub fn range(&self) -> Option<Range> {
        match &self.values {
            Gathered::Int(i) => Some(Range::Int(*i.iter().min()?, *i.iter().max()?)),
            Gathered::Float(f) => {
                let mut numbers = f.iter().copied().filter(|x| !x.is_nan());
                let first = numbers.next()?;
                let (lo, hi) = numbers.fold((first, first), |(lo, hi), x| (lo.min(x), hi.max(x)));
                Some(Range::Float(lo, hi))
            }
            _ => None,
        }
    }

    /// The bytes a non-numeric column's values hold as texts hold them; `None` for numbers,
    /// which are written with digits, '-' and '.' only (their range says they are numbers).
    pub fn byte_set(&self) -> Option<ByteSet> {
        let mut set = ByteSet::default();
        match &self.values {
            Gathered::Int(_) | Gathered::Float(_) => return None,
            Gathered::Null => {}
            Gathered::Bool(b) => {
                for (x, text) in [(true, "true"), (false, "false")] {
                    if b.contains(&x) {
                        set.add(text.as_bytes());
                    }
                }
            }
            Gathered::Str(bytes, _) => set.add(bytes),
            Gathered::Mixed(all) => {
                let mut digits = itoa::Buffer::new();
                for v in all {
                    if let Some(text) = crate::template::hole_text(ValueRef::from(v), &mut digits) {
                        set.add(text.as_bytes());
                    }
                }
            }
        }
        Some(set)
    }

    /// Writes the column's payload for a block of `n` events.
    pub fn encode(&self, n: usize, out: &mut Vec<u8>) {
        out.push(match &self.values {
            Gathered::Null => KIND_NULL,
            Gathered::Bool(_) => KIND_BOOL,
            Gathered::Int(_) => KIND_INT,
            Gathered::Float(_) => KIND_FLOAT,
            Gathered::Str(..) => KIND_STR,
            Gathered::Mixed(_) => KIND_MIXED,
        });
        let m = self.rows.len();
        put_varint(out, m as u64);
        if m != n {
            let mut bits = vec![false; n];
            for &r in &self.rows {
                if let Some(b) = bits.get_mut(r as usize) {
                    *b = true;
                }
            }
            put_bitmap(out, bits.into_iter());
        }
        match &self.values {
            Gathered::Null => {}
            Gathered::Bool(b) => put_bitmap(out, b.iter().copied()),
            Gathered::Int(values) => {
                let base = values.iter().copied().min().unwrap_or(0);
                put_varint(out, zigzag(base));
                pack(out, values.iter().map(|&v| v.wrapping_sub(base) as u64));
            }
            Gathered::Float(values) => {
                for f in values {
                    out.extend_from_slice(&f.to_le_bytes());
                }
            }
            Gathered::Str(bytes, ends) => encode_strings(bytes, ends, out),
            Gathered::Mixed(all) => {
                for v in all {
                    put_value(out, v);
                }
            }
        }
    }
}

/// The texts of a buffer cut at `ends`.
fn texts<'a>(bytes: &'a [u8], ends: &'a [u32]) -> impl Iterator<Item = &'a [u8]> + 'a {
    let starts = std::iter::once(0).chain(ends.iter().copied());
    starts
        .zip(ends.iter().copied())
        .map(move |(s, e)| bytes.get(s as usize..e as usize).unwrap_or_default())
}

fn encode_strings(bytes: &[u8], ends: &[u32], out: &mut Vec<u8>) {
    let limit = ends.len() / 2;
    // Sized for the most texts the dictionary may take: growing it rehashed every text so far,
    // several times over for the many columns whose texts are mostly distinct.
    let mut codes: HashMap<&[u8], u32> = HashMap::with_capacity(limit.max(1) + 1);
    let mut dictionary: Vec<&[u8]> = Vec::new();
    let mut assigned = Vec::with_capacity(ends.len());
    for t in texts(bytes, ends) {
        let next = dictionary.len() as u32;
        let code = *codes.entry(t).or_insert_with(|| {
            dictionary.push(t);
            next
        });
        if dictionary.len() > limit.max(1) {
            break;
        }
        assigned.push(code);
    }
    if assigned.len() == ends.len() {
        out.push(STR_DICTIONARY);
        put_varint(out, dictionary.len() as u64);
        for t in &dictionary {
            put_varint(out, t.len() as u64);
            out.extend_from_slice(t);
        }
        pack(out, assigned.iter().map(|&c| u64::from(c)));
    } else {
        out.push(STR_PLAIN);
        for t in texts(bytes, ends) {
            put_varint(out, t.len() as u64);
        }
        out.extend_from_slice(bytes);
    }
}

/// Appends bits, LSB first, eight to a byte.
fn put_bitmap(out: &mut Vec<u8>, bits: impl Iterator<Item = bool>) {
    let mut byte = 0u8;
    let mut used = 0;
    for b in bits {
        byte |= u8::from(b) << used;
        used += 1;
        if used == 8 {
            out.push(byte);
            (byte, used) = (0, 0);
        }
    }
    if used > 0 {
        out.push(byte);
    }
}

fn read_bitmap(r: &mut Reader<'_>, n: usize, what: &'static str) -> Result<Vec<bool>, DecodeError> {
    let bytes = r.bytes(n.div_ceil(8), what)?;
    Ok((0..n).map(|i| bytes[i / 8] >> (i % 8) & 1 == 1).collect())
}

/// Appends a width byte and the values in that many bits each, LSB first.
fn pack(out: &mut Vec<u8>, values: impl Iterator<Item = u64> + Clone) {
    let width = values
        .clone()
        .fold(0u64, |acc, v| acc | v)
        .checked_ilog2()
        .map_or(0, |b| b + 1);
    out.push(width as u8);
    if width == 0 {
        return;
    }
    let mut acc: u128 = 0;
    let mut bits = 0u32;
    for v in values {
        acc |= u128::from(v) << bits;
        bits += width;
        while bits >= 8 {
            out.push(acc as u8);
            acc >>= 8;
            bits -= 8;
        }
    }
    if bits > 0 {
        out.push(acc as u8);
    }
}

/// Reads `m` values written by [`pack`], each mapped by `f`; and their bit width.
fn unpack<T>(
    r: &mut Reader<'_>,
    m: usize,
    what: &'static str,
    f: impl Fn(u64) -> T,
) -> Result<(Vec<T>, u32), DecodeError> {
    let [width] = r.array::<1>(what)?;
    let width = u32::from(width);
    if width > 64 {
        return r.fail("bit width over 64");
    }
    if width == 0 {
        return Ok(((0..m).map(|_| f(0)).collect(), 0));
    }
    let len = (m as u64 * u64::from(width)).div_ceil(8);
    let bytes = r.bytes(usize::try_from(len).unwrap_or(usize::MAX), what)?;
    let mask = if width == 64 {
        u64::MAX
    } else {
        (1u64 << width) - 1
    };
    let mut out = Vec::with_capacity(m);
    let w = width as usize;
    // Narrow values: each lies within one unaligned 8-byte window from its first byte, read
    // without a loop per bit; the last few values (whose window runs past the end) and wide
    // values take the byte-by-byte path.
    let mut k = 0;
    if w <= 56 {
        while k < m {
            let bit = k * w;
            let Some(window) = bytes.get(bit / 8..bit / 8 + 8) else {
                break;
            };
            let mut word = [0u8; 8];
            word.copy_from_slice(window);
            out.push(f((u64::from_le_bytes(word) >> (bit % 8)) & mask));
            k += 1;
        }
    }
    for k in k..m {
        let bit = k * w;
        let mut acc: u128 = 0;
        for (j, &b) in bytes.iter().skip(bit / 8).take(9).enumerate() {
            acc |= u128::from(b) << (8 * j);
        }
        out.push(f((acc >> (bit % 8)) as u64 & mask));
    }
    Ok((out, width))
}

fn put_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.push(0),
        Value::Bool(b) => out.push(1 + u8::from(*b)),
        Value::Int(i) => {
            out.push(3);
            out.extend_from_slice(&i.to_le_bytes());
        }
        Value::Float(f) => {
            out.push(4);
            out.extend_from_slice(&f.to_le_bytes());
        }
        Value::Str(s) => {
            out.push(5);
            put_str(out, s);
        }
    }
}

fn read_value(r: &mut Reader<'_>) -> Result<Value, DecodeError> {
    Ok(match r.array::<1>("truncated value kind")?[0] {
        0 => Value::Null,
        1 => Value::Bool(false),
        2 => Value::Bool(true),
        3 => Value::Int(i64::from_le_bytes(r.array::<8>("truncated integer")?)),
        4 => Value::Float(f64::from_le_bytes(r.array::<8>("truncated number")?)),
        5 => Value::Str(r.string("truncated text")?),
        _ => return r.fail("unknown value kind"),
    })
}

/// A column's values, decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    /// Every value is null.
    Null,
    /// Booleans.
    Bool(Vec<bool>),
    /// Integers.
    Int(Vec<i64>),
    /// Numbers.
    Float(Vec<f64>),
    /// Texts as codes into a dictionary.
    Dictionary {
        /// The distinct texts.
        entries: Entries,
        /// Each value's entry.
        codes: Vec<u32>,
    },
    /// Texts, one after another.
    Plain {
        /// The texts.
        text: String,
        /// Where each ends in `text`.
        ends: Vec<u32>,
    },
    /// Values of several kinds.
    Mixed(Vec<Value>),
}

/// A dictionary's distinct texts, one after another in one buffer (one allocation and one
/// UTF-8 check per dictionary, where a string per entry costs both per entry).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entries {
    text: String,
    /// Where each entry ends in `text`.
    ends: Vec<u32>,
}

impl Entries {
    /// Reads `d` length-prefixed entries.
    fn read(r: &mut Reader<'_>, d: usize) -> Result<Entries, DecodeError> {
        let mut bytes = Vec::new();
        let mut ends = Vec::with_capacity(d);
        let at = r.pos;
        for _ in 0..d {
            let n = r.len("bad dictionary entry length")?;
            bytes.extend_from_slice(r.bytes(n, "truncated dictionary entry")?);
            ends.push(u32::try_from(bytes.len()).or_else(|_| r.fail("dictionary too long"))?);
        }
        let bad = DecodeError {
            position: at,
            reason: "dictionary entry is not UTF-8",
        };
        let text = String::from_utf8(bytes).map_err(|_| bad.clone())?;
        // Each entry must be UTF-8 by itself, not only all of them together.
        if ends.iter().any(|&e| !text.is_char_boundary(e as usize)) {
            return Err(bad);
        }
        Ok(Entries { text, ends })
    }

    /// The entries one after another.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// How many entries there are.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Entry `i`.
    pub fn get(&self, i: usize) -> Option<&str> {
        let end = *self.ends.get(i)? as usize;
        let start = match i {
            0 => 0,
            _ => self.ends[i - 1] as usize,
        };
        self.text.get(start..end)
    }

    /// The entries in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        (0..self.len()).map(|i| self.get(i).unwrap_or_default())
    }
}

/// A decoded column: which events have the field, and their values.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    /// The field.
    pub name: String,
    /// For each event, the index of its value; `None` when every event has one (the index is
    /// the event's).
    slots: Option<Vec<u32>>,
    /// How many values there are.
    count: usize,
    /// The values.
    pub values: Values,
    int_bounds: Option<(i64, i64)>,
}

/// Marks an event without the field in [`Column`]'s slots.
const ABSENT: u32 = u32::MAX;

impl Column {
    /// Decodes a column payload of a block of `n` events.
    pub fn decode(name: &str, payload: &[u8], n: usize) -> Result<Column, DecodeError> {
        let mut r = Reader::new(payload);
        let [kind] = r.array::<1>("truncated column kind")?;
        let m = usize::try_from(r.varint("bad value count")?).unwrap_or(usize::MAX);
        if m > n {
            return r.fail("more values than events");
        }
        let slots = match m == n {
            true => None,
            false => {
                let present = read_bitmap(&mut r, n, "truncated presence")?;
                let mut next = 0u32;
                let slots: Vec<u32> = present
                    .iter()
                    .map(|&p| match p {
                        true => {
                            next += 1;
                            next - 1
                        }
                        false => ABSENT,
                    })
                    .collect();
                if next as usize != m {
                    return r.fail("presence and value count differ");
                }
                Some(slots)
            }
        };
        let mut int_bounds = None;
        let values = match kind {
            KIND_NULL => Values::Null,
            KIND_BOOL => Values::Bool(read_bitmap(&mut r, m, "truncated booleans")?),
            KIND_INT => {
                let base = unzigzag(r.varint("bad integer base")?);
                let (values, width) = unpack(&mut r, m, "truncated integers", |d| {
                    base.wrapping_add(d as i64)
                })?;
                // The frame of reference is the smallest value; the width bounds the largest.
                int_bounds = (width < 63)
                    .then(|| base.checked_add((1i64 << width) - 1))
                    .flatten()
                    .map(|hi| (base, hi));
                Values::Int(values)
            }
            KIND_FLOAT => {
                let bytes = r.bytes(m.saturating_mul(8), "truncated numbers")?;
                Values::Float(
                    bytes
                        .chunks_exact(8)
                        .map(|c| {
                            f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])
                        })
                        .collect(),
                )
            }
            KIND_STR => match r.array::<1>("truncated string form")?[0] {
                STR_DICTIONARY => {
                    let d = r.len("bad dictionary size")?;
                    let entries = Entries::read(&mut r, d)?;
                    let (codes, _) = unpack(&mut r, m, "truncated codes", |c| {
                        u32::try_from(c).unwrap_or(u32::MAX)
                    })?;
                    if codes.iter().any(|&c| c as usize >= d) {
                        return r.fail("code outside the dictionary");
                    }
                    Values::Dictionary { entries, codes }
                }
                STR_PLAIN => {
                    let mut ends = Vec::with_capacity(m);
                    let mut end = 0u64;
                    for _ in 0..m {
                        end += r.varint("bad text length")?;
                        ends.push(u32::try_from(end).or_else(|_| r.fail("texts too long"))?);
                    }
                    let len = usize::try_from(end).unwrap_or(usize::MAX);
                    let at = r.pos;
                    let bytes = r.bytes(len, "truncated texts")?;
                    let text = match std::str::from_utf8(bytes) {
                        Ok(t) => t.to_string(),
                        Err(_) => {
                            return Err(DecodeError {
                                position: at,
                                reason: "text is not UTF-8",
                            })
                        }
                    };
                    // Cut only at character boundaries, or reading a value would panic.
                    if ends.iter().any(|&e| !text.is_char_boundary(e as usize)) {
                        return r.fail("a text ends inside a character");
                    }
                    Values::Plain { text, ends }
                }
                _ => return r.fail("unknown string form"),
            },
            KIND_MIXED => {
                let mut all = Vec::with_capacity(m.min(payload.len()));
                for _ in 0..m {
                    all.push(read_value(&mut r)?);
                }
                Values::Mixed(all)
            }
            _ => return r.fail("unknown column kind"),
        };
        if !r.at_end() {
            return r.fail("trailing bytes after the column");
        }
        Ok(Column {
            name: name.to_string(),
            slots,
            count: m,
            values,
            int_bounds,
        })
    }

    /// Bounds of an integer column's values, known without reading them: the smallest value,
    /// and an upper bound of the largest.
    pub fn int_bounds(&self) -> Option<(i64, i64)> {
        self.int_bounds
    }

    /// The index of event `row`'s value, if it has the field.
    #[inline]
    pub fn slot(&self, row: usize) -> Option<usize> {
        match &self.slots {
            None => (row < self.count).then_some(row),
            Some(slots) => slots
                .get(row)
                .copied()
                .filter(|&s| s != ABSENT)
                .map(|s| s as usize),
        }
    }

    /// How many events have the field.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Whether every event of the block has the field.
    pub fn is_dense(&self) -> bool {
        self.slots.is_none()
    }

    /// Value number `slot` (see [`Column::slot`]).
    pub fn value_at(&self, slot: usize) -> Option<ValueRef<'_>> {
        Some(match &self.values {
            Values::Null => (slot < self.count).then_some(ValueRef::Null)?,
            Values::Bool(b) => ValueRef::Bool(*b.get(slot)?),
            Values::Int(i) => ValueRef::Int(*i.get(slot)?),
            Values::Float(f) => ValueRef::Float(*f.get(slot)?),
            Values::Dictionary { entries, codes } => {
                ValueRef::Str(entries.get(*codes.get(slot)? as usize)?)
            }
            Values::Plain { text, ends } => {
                let end = *ends.get(slot)? as usize;
                let start = match slot {
                    0 => 0,
                    _ => ends[slot - 1] as usize,
                };
                ValueRef::Str(text.get(start..end)?)
            }
            Values::Mixed(all) => ValueRef::from(all.get(slot)?),
        })
    }

    /// Event `row`'s value, if it has the field.
    pub fn get(&self, row: usize) -> Option<ValueRef<'_>> {
        self.value_at(self.slot(row)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn roundtrip(values: &[Option<Value>]) -> Column {
        let mut b = ColumnBuilder::new("f");
        for (row, v) in values.iter().enumerate() {
            if let Some(v) = v {
                b.push(row as u32, v.into());
            }
        }
        let mut out = Vec::new();
        b.encode(values.len(), &mut out);
        Column::decode("f", &out, values.len()).unwrap()
    }

    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::Int),
            (-5i64..5).prop_map(Value::Int),
            any::<f64>().prop_map(Value::Float),
            "[a-c]{0,2}".prop_map(Value::Str),
            ".{0,12}".prop_map(Value::Str),
        ]
    }

    /// Values of one kind, as most fields are.
    fn same_kind() -> impl Strategy<Value = Vec<Option<Value>>> {
        prop_oneof![
            proptest::collection::vec(
                proptest::option::of(any::<i64>().prop_map(Value::Int)),
                0..60
            ),
            proptest::collection::vec(
                proptest::option::of((0i64..300).prop_map(Value::Int)),
                0..60
            ),
            proptest::collection::vec(
                proptest::option::of("[a-d]{1,2}".prop_map(Value::Str)),
                0..60
            ),
            proptest::collection::vec(proptest::option::of(".{0,8}".prop_map(Value::Str)), 0..60),
            proptest::collection::vec(
                proptest::option::of(any::<bool>().prop_map(Value::Bool)),
                0..60
            ),
            proptest::collection::vec(
                proptest::option::of(any::<f64>().prop_map(Value::Float)),
                0..60
            ),
        ]
    }

    fn check(values: &[Option<Value>]) -> Result<(), TestCaseError> {
        let c = roundtrip(values);
        for (row, v) in values.iter().enumerate() {
            let got: Option<Value> = c.get(row).map(Into::into);
            match (v, &got) {
                // NaN is not equal to itself: compare bits.
                (Some(Value::Float(a)), Some(Value::Float(b))) => {
                    prop_assert_eq!(a.to_bits(), b.to_bits())
                }
                _ => prop_assert_eq!(v, &got),
            }
        }
        prop_assert_eq!(c.get(values.len()), None);
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn columns_of_one_kind_roundtrip_with_absences(values in same_kind()) {
            check(&values)?;
        }

        #[test]
        fn columns_of_mixed_kinds_roundtrip(values in proptest::collection::vec(proptest::option::of(value()), 0..40)) {
            check(&values)?;
        }

        #[test]
        fn damaged_columns_error_never_panic(
            values in same_kind(), flip in any::<usize>(), bit in 0u8..8, cut in any::<usize>(),
        ) {
            let mut b = ColumnBuilder::new("f");
            for (row, v) in values.iter().enumerate() {
                if let Some(v) = v {
                    b.push(row as u32, v.into());
                }
            }
            let mut out = Vec::new();
            b.encode(values.len(), &mut out);
            let mut bad = out.clone();
            let i = flip % bad.len();
            bad[i] ^= 1 << bit;
            if let Ok(c) = Column::decode("f", &bad, values.len()) {
                for row in 0..values.len() + 1 {
                    let _ = c.get(row);
                }
            }
            let _ = Column::decode("f", &out[..cut % out.len()], values.len());
        }
    }

    #[test]
    fn low_cardinality_texts_take_a_dictionary_and_integers_few_bits() {
        let statuses: Vec<Option<Value>> = (0..1000)
            .map(|i| Some(Value::Str(["200", "404", "500"][i % 3].into())))
            .collect();
        let c = roundtrip(&statuses);
        assert!(matches!(&c.values, Values::Dictionary { entries, .. } if entries.len() == 3));
        let mut b = ColumnBuilder::new("bytes");
        for row in 0..1000u32 {
            b.push(row, ValueRef::Int(1_000_000 + i64::from(row % 16)));
        }
        let mut out = Vec::new();
        b.encode(1000, &mut out);
        // Four bits per value.
        assert!(out.len() < 1000 / 2 + 16, "{}", out.len());
        assert_eq!(b.range(), Some(Range::Int(1_000_000, 1_000_015)));
    }
}
