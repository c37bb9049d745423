//! The binary encoding of an event as a bus record value.
//!
//! Compact and cheap both ways, because every event is encoded once at ingest and decoded by
//! every reader of the bus (digest, live queries, pipelines). Integers are little-endian;
//! lengths and counts are unsigned LEB128 varints.
//!
//! ```text
//!  u8        format version: 3 (2 is read too)
//!  u8        flags: bit 0 = @id came from the client; bits 1-3 = the parser that made the
//!            fields from @rawstring ([`Parser::code`], 0 = none); bit 4 = the fields are
//!            derived: no field map follows (version 3 only)
//!  i64       @timestamp (ns)
//!  i64       @ingesttimestamp (ns)
//!  [u8; 16]  @id (UUID bytes)
//!  varint    @rawstring length + 1 (0 = none), then its bytes
//!  varint    tag count, then per tag: varint len, name, varint len, value
//!  varint    field count, then per field: varint len, name, u8 kind, payload   (not derived)
//!              kind 0 null (no payload) · 1 false · 2 true · 3 int (i64) · 4 float (f64 bits)
//!              · 5 string (varint len, bytes)
//! ```
//!
//! Derived fields: an event whose fields are exactly what its parser makes of its `@rawstring`
//! ([`Event::parsed_by`]) keeps only the raw text, its time, id and tags (which a door may set
//! beside the parser: they are always written); the reader parses the raw text again
//! ([`derive_fields`]). The fields of a parsed line are a second copy of its text, so version 2,
//! which wrote both, made a bus record about twice the size of the line. Whatever the parser
//! cannot re-derive (fields a gatekeeper added, a client's tags, its `@id`) is written: an event
//! with such fields has no parser ([`Event::parsed_by`] is cleared) and a full field map.
//!
//! Version 2 is version 3 without bit 4: its records are read as they are.
//!
//! Decoding never trusts the bytes: every length is checked against what is left, text must be
//! UTF-8, and trailing bytes are an error.

use std::collections::BTreeMap;

use crate::event::Event;
use crate::fields::FlatFields;
use crate::parse::Parser;
use crate::value::{Value, ValueRef};

/// The current format version.
pub const VERSION: u8 = 3;

/// The version before derived fields, still read.
pub const VERSION_2: u8 = 2;

/// Flag bit 4: the fields are derived from `@rawstring`, no field map follows.
const DERIVED: u8 = 1 << 4;

pub use crate::wire::DecodeError;
use crate::wire::{put_str, put_string_map, put_varint, Reader};

/// The flags byte of `event` (shared with the segment store's blocks): bit 0 its `@id` came
/// from the client, bits 1-3 the [`Parser::code`] of the parser that made its fields.
pub fn flags_of(event: &Event) -> u8 {
    flags(event.id_from_client, event.parsed_by)
}

/// The flags byte of an event whose fields `parser` made (see [`flags_of`]).
pub fn flags(id_from_client: bool, parser: Option<Parser>) -> u8 {
    u8::from(id_from_client) | (parser.map_or(0, Parser::code) << 1)
}

/// The parser named by bits 1-3 of a flags byte; `Err` with the code if it names none.
pub fn parser_in_flags(flags: u8) -> Result<Option<Parser>, u8> {
    match (flags >> 1) & 7 {
        0 => Ok(None),
        code => Parser::from_code(code).map(Some).ok_or(code),
    }
}

/// Appends the encoding of `event` to `out`.
pub fn encode_into(event: &Event, out: &mut Vec<u8>) {
    let derived = event.parsed_by.is_some() && event.raw.is_some();
    out.push(VERSION);
    out.push(flags_of(event) | if derived { DERIVED } else { 0 });
    out.extend_from_slice(&event.timestamp.to_le_bytes());
    out.extend_from_slice(&event.ingest_timestamp.to_le_bytes());
    out.extend_from_slice(event.id.as_bytes());
    match &event.raw {
        None => put_varint(out, 0),
        Some(r) => {
            put_varint(out, r.len() as u64 + 1);
            out.extend_from_slice(r.as_bytes());
        }
    }
    put_string_map(out, &event.tags);
    if !derived {
        encode_fields(&event.fields, out);
    }
}

/// Appends a field map: a varint count, then per field its name, a kind byte and the payload.
pub fn encode_fields(fields: &BTreeMap<String, Value>, out: &mut Vec<u8>) {
    put_varint(out, fields.len() as u64);
    for (k, v) in fields {
        put_str(out, k);
        encode_value(v.into(), out);
    }
}

/// Appends a field's kind byte and payload.
fn encode_value(v: ValueRef<'_>, out: &mut Vec<u8>) {
    match v {
        ValueRef::Null => out.push(0),
        ValueRef::Bool(false) => out.push(1),
        ValueRef::Bool(true) => out.push(2),
        ValueRef::Int(i) => {
            out.push(3);
            out.extend_from_slice(&i.to_le_bytes());
        }
        ValueRef::Float(f) => {
            out.push(4);
            out.extend_from_slice(&f.to_bits().to_le_bytes());
        }
        ValueRef::Str(s) => {
            out.push(5);
            put_str(out, s);
        }
    }
}

/// Whether encoded bytes hold an event whose `@id` came from the client, without decoding it.
pub fn has_client_id(buf: &[u8]) -> bool {
    buf.len() > 1 && matches!(buf[0], VERSION | VERSION_2) && buf[1] & 1 == 1
}

/// The encoding of `event`.
pub fn encode(event: &Event) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + event.raw.as_ref().map_or(0, |r| r.len()));
    encode_into(event, &mut out);
    out
}

/// Decodes an event encoded by [`encode`] (derived fields parsed again).
pub fn decode(buf: &[u8]) -> Result<Event, DecodeError> {
    let (event, fields) = decode_lazily(buf)?;
    with_fields(event, fields)
}

/// Gives an event [`decode_lazily`] left without fields its fields: those written, or those
/// its parser derives (what [`decode`] does in one go, for a reader that first looks at the
/// event's tags or times).
pub fn with_fields(
    mut event: Event,
    fields: Option<EncodedFields<'_>>,
) -> Result<Event, DecodeError> {
    match fields {
        Some(fields) => event.fields = fields.to_map()?,
        None => derive_fields(&mut event),
    }
    Ok(event)
}

/// Decodes an event but for its fields: those written stay encoded (their structure checked,
/// their text not yet: see [`EncodedFields`]; readable without building a map: what a reader
/// that needs only some of them, or passes them on, wants); `None` when they are derived, for
/// [`derive_fields`] to make (the event has its raw text and parser then).
pub fn decode_lazily(buf: &[u8]) -> Result<(Event, Option<EncodedFields<'_>>), DecodeError> {
    let mut event = Event::unnamed(0);
    let fields = decode_lazily_into(buf, &mut event)?;
    Ok((event, fields))
}

/// [`decode_lazily`] into `event`, whose memory is reused: a reader of every record (the
/// digest) then copies the raw text into a string it has, and keeps the tag map when the
/// record's tags are the previous record's (mostly: a partition's records come in runs of one
/// data source), where a new event cost two allocations or more per record. On an error
/// `event` holds some of the record (or of the one before): it is not to be used.
pub fn decode_lazily_into<'b>(
    buf: &'b [u8],
    event: &mut Event,
) -> Result<Option<EncodedFields<'b>>, DecodeError> {
    let mut r = Reader::new(buf);
    let [version] = r.array::<1>("empty input")?;
    let known_flags = match version {
        VERSION => 0b1_1111,
        VERSION_2 => 0b1111,
        _ => {
            r.pos = 0;
            return r.fail("unknown format version");
        }
    };
    let [flags] = r.array::<1>("truncated flags")?;
    let parsed_by = match parser_in_flags(flags) {
        Ok(p) if flags & !known_flags == 0 && (flags & DERIVED == 0 || p.is_some()) => p,
        _ => {
            r.pos -= 1;
            return r.fail("unknown flags");
        }
    };
    let timestamp = i64::from_le_bytes(r.array("truncated @timestamp")?);
    let ingest_timestamp = i64::from_le_bytes(r.array("truncated @ingesttimestamp")?);
    let id = uuid::Uuid::from_bytes(r.array("truncated @id")?);
    let raw = match r.varint("bad @rawstring length")? {
        0 => None,
        n => {
            let left = r.buf.len() - r.pos;
            let Some(len) = usize::try_from(n - 1).ok().filter(|&l| l <= left) else {
                return r.fail("bad @rawstring length");
            };
            Some(r.str(len, "truncated @rawstring")?)
        }
    };
    match (raw, &mut event.raw) {
        (Some(text), Some(kept)) => {
            kept.clear();
            kept.push_str(text);
        }
        (Some(text), kept) => *kept = Some(text.to_string()),
        (None, kept) => *kept = None,
    }
    r.string_map_into("truncated tags", &mut event.tags)?;
    let derived = flags & DERIVED != 0;
    if derived && event.raw.is_none() {
        return r.fail("derived fields without @rawstring");
    }
    if derived && !r.at_end() {
        return r.fail("trailing bytes after derived fields");
    }
    // The fields are the rest of the record: their structure is checked by their reader.
    let fields = (!derived).then(|| EncodedFields {
        bytes: &buf[r.pos..],
        at: r.pos,
        checked: false,
    });
    event.timestamp = timestamp;
    event.ingest_timestamp = ingest_timestamp;
    event.id = id;
    event.id_from_client = flags & 1 == 1;
    event.parsed_by = parsed_by;
    event.fields.clear();
    Ok(fields)
}

/// Gives an event whose fields were not written (see [`decode_lazily`]) the fields its parser
/// makes of its raw text. Should the parser no longer read that text (a parser changed between
/// versions), the event keeps its raw text, without fields or parser: an acknowledged event is
/// never dropped for it.
pub fn derive_fields(event: &mut Event) {
    let (Some(parser), Some(raw)) = (event.parsed_by, event.raw.as_deref()) else {
        return;
    };
    match parser.fields_of(raw, event.ingest_timestamp) {
        Ok(fields) => event.fields = fields,
        Err(_) => {
            event.fields.clear();
            event.parsed_by = None;
        }
    }
}

/// Reads a field map written by [`encode_fields`].
pub fn decode_fields(r: &mut Reader<'_>) -> Result<BTreeMap<String, Value>, DecodeError> {
    EncodedFields::read(r)?.to_map()
}

/// A field map as [`encode_fields`] wrote it, checked once by whoever reads it
/// ([`EncodedFields::to_map`] fails on bad structure, text that is not UTF-8 or trailing bytes;
/// [`EncodedFields::iter`] and [`FieldsRef::values`] stop at the first bad field), so that a
/// reader that only looks at some of it (the digest tokenising a parsed event's values) pays for
/// one pass, not two.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodedFields<'a> {
    bytes: &'a [u8],
    /// Where the map starts in the reader's input (error positions count from there).
    at: usize,
    /// Whether the structure is known to be sound (taken by [`EncodedFields::read`]).
    checked: bool,
}

impl<'a> EncodedFields<'a> {
    /// Takes the field map at the reader's position, its structure checked (where more follows
    /// it, its end can only be found by walking it).
    pub fn read(r: &mut Reader<'a>) -> Result<EncodedFields<'a>, DecodeError> {
        let at = r.pos;
        for _ in 0..r.len("bad field count")? {
            skip_field(r)?;
        }
        Ok(EncodedFields {
            bytes: &r.buf[at..r.pos],
            at,
            checked: true,
        })
    }

    /// The fields in order, up to the first that is damaged or whose text is not UTF-8.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, ValueRef<'a>)> {
        let mut r = Reader::new(self.bytes);
        let n = r.len("bad field count").unwrap_or(0);
        (0..n).map_while(move |_| read_field(&mut r).ok())
    }

    /// The values in order, up to the first damaged field (names are skipped unchecked).
    fn values(&self) -> impl Iterator<Item = ValueRef<'a>> {
        let mut r = Reader::new(self.bytes);
        let n = r.len("bad field count").unwrap_or(0);
        (0..n).map_while(move |_| {
            let name = r.len("truncated field name").ok()?;
            r.bytes(name, "truncated field name").ok()?;
            read_value(&mut r).ok()
        })
    }

    /// The fields as a map; an error if the structure is damaged, a text is not UTF-8 or bytes
    /// follow the map.
    pub fn to_map(&self) -> Result<BTreeMap<String, Value>, DecodeError> {
        let mut r = Reader::new(self.bytes);
        let mut map = BTreeMap::new();
        let n = r.len("bad field count").map_err(|e| self.positioned(e))?;
        for _ in 0..n {
            let (k, v) = read_field(&mut r).map_err(|e| self.positioned(e))?;
            map.insert(k.to_string(), v.into());
        }
        if r.pos != self.bytes.len() {
            return Err(self.positioned(DecodeError {
                position: r.pos,
                reason: "trailing bytes after the fields",
            }));
        }
        Ok(map)
    }

    /// An error at a position in this map, as a position in the reader's input.
    fn positioned(&self, e: DecodeError) -> DecodeError {
        DecodeError {
            position: self.at + e.position,
            ..e
        }
    }

    /// Appends the encoding to `out`; an empty map if its structure turns out damaged (what
    /// it would decode as is then unknown, and a block must never hold undecodable bytes).
    fn encode_into(&self, out: &mut Vec<u8>) {
        let sound = self.checked || {
            let mut r = Reader::new(self.bytes);
            r.len("")
                .is_ok_and(|n| (0..n).all(|_| skip_field(&mut r).is_ok()))
                && r.pos == self.bytes.len()
        };
        if sound {
            out.extend_from_slice(self.bytes);
        } else {
            put_varint(out, 0);
        }
    }
}

/// Steps over one field, checking its structure but not its text.
fn skip_field(r: &mut Reader<'_>) -> Result<(), DecodeError> {
    let n = r.len("truncated field name")?;
    r.bytes(n, "truncated field name")?;
    let [kind] = r.array::<1>("truncated field kind")?;
    match kind {
        0..=2 => {}
        3 => {
            r.array::<8>("truncated int")?;
        }
        4 => {
            r.array::<8>("truncated float")?;
        }
        5 => {
            let n = r.len("truncated string")?;
            r.bytes(n, "truncated string")?;
        }
        _ => {
            r.pos -= 1;
            return r.fail("unknown field kind");
        }
    }
    Ok(())
}

fn read_field<'a>(r: &mut Reader<'a>) -> Result<(&'a str, ValueRef<'a>), DecodeError> {
    let k = r.string_ref("truncated field name")?;
    Ok((k, read_value(r)?))
}

fn read_value<'a>(r: &mut Reader<'a>) -> Result<ValueRef<'a>, DecodeError> {
    let [kind] = r.array::<1>("truncated field kind")?;
    Ok(match kind {
        0 => ValueRef::Null,
        1 => ValueRef::Bool(false),
        2 => ValueRef::Bool(true),
        3 => ValueRef::Int(i64::from_le_bytes(r.array("truncated int")?)),
        4 => ValueRef::Float(f64::from_bits(u64::from_le_bytes(
            r.array("truncated float")?,
        ))),
        5 => ValueRef::Str(r.string_ref("truncated string")?),
        _ => {
            r.pos -= 1;
            return r.fail("unknown field kind");
        }
    })
}

/// An event's fields: its map, still encoded, or derived into a [`FlatFields`].
#[derive(Debug, Clone, Copy)]
pub enum FieldsRef<'a> {
    /// A map.
    Map(&'a BTreeMap<String, Value>),
    /// As [`encode_fields`] wrote them.
    Encoded(EncodedFields<'a>),
    /// Derived by a parser into a reused buffer ([`Parser::fields_into`]).
    Flat(&'a FlatFields),
}

impl<'a> FieldsRef<'a> {
    /// The values, in name order for a map and encoding order (also name order when a map was
    /// encoded) otherwise.
    pub fn values(self) -> impl Iterator<Item = ValueRef<'a>> {
        let (map, encoded, flat) = match self {
            FieldsRef::Map(m) => (Some(m.values().map(ValueRef::from)), None, None),
            FieldsRef::Encoded(e) => (None, Some(e.values()), None),
            FieldsRef::Flat(f) => (None, None, Some(f.iter().map(|(_, v)| v))),
        };
        map.into_iter()
            .flatten()
            .chain(encoded.into_iter().flatten())
            .chain(flat.into_iter().flatten())
    }

    /// The names and values, in name order (see [`FieldsRef::values`]).
    pub fn iter(self) -> impl Iterator<Item = (&'a str, ValueRef<'a>)> {
        let (map, encoded, flat) = match self {
            FieldsRef::Map(m) => (
                Some(m.iter().map(|(k, v)| (k.as_str(), ValueRef::from(v)))),
                None,
                None,
            ),
            FieldsRef::Encoded(e) => (None, Some(e.iter()), None),
            FieldsRef::Flat(f) => (None, None, Some(f.iter())),
        };
        map.into_iter()
            .flatten()
            .chain(encoded.into_iter().flatten())
            .chain(flat.into_iter().flatten())
    }

    /// Calls `f` with each name and value, in the order of [`FieldsRef::iter`]: one loop per
    /// kind, where the iterator asks at every field which kind it walks (a tenth of the
    /// digest's work on a field was that chain of iterators).
    pub fn for_each(self, mut f: impl FnMut(&'a str, ValueRef<'a>)) {
        match self {
            FieldsRef::Map(m) => m.iter().for_each(|(k, v)| f(k, v.into())),
            FieldsRef::Encoded(e) => e.iter().for_each(|(k, v)| f(k, v)),
            FieldsRef::Flat(flat) => flat.iter().for_each(|(k, v)| f(k, v)),
        }
    }

    /// Appends their encoding (as [`encode_fields`]) to `out`.
    pub fn encode_into(self, out: &mut Vec<u8>) {
        match self {
            FieldsRef::Map(m) => encode_fields(m, out),
            FieldsRef::Encoded(e) => e.encode_into(out),
            FieldsRef::Flat(f) => {
                put_varint(out, f.len() as u64);
                for (k, v) in f.iter() {
                    put_str(out, k);
                    encode_value(v, out);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Parser;
    use proptest::prelude::*;

    /// Events whose fields are written: any fields, and no parser or no raw text.
    fn event() -> impl Strategy<Value = Event> {
        crate::arbitrary::event(
            proptest::option::of(".{0,200}"),
            proptest::collection::btree_map(".{0,10}", ".{0,10}", 0..5),
            proptest::collection::btree_map(".{0,20}", crate::arbitrary::value(), 0..20),
            (0u8..7).prop_map(crate::Parser::from_code),
        )
        .prop_map(|mut e| {
            if e.raw.is_some() {
                e.parsed_by = None;
            }
            e
        })
    }

    /// Lines each parser reads, with pieces that vary.
    fn parsed_event() -> impl Strategy<Value = Event> {
        let word = "[a-zA-Z0-9_./-]{1,12}";
        let line = prop_oneof![
            (word, 100u16..600, any::<u32>(), word).prop_map(|(url, status, bytes, agent)| (
                Parser::Accesslog,
                format!(r#"10.0.0.1 - - [10/Oct/2026:13:55:36 -0700] "GET /{url} HTTP/1.1" {status} {bytes} "-" "{agent}""#)
            )),
            (word, any::<i64>(), any::<f64>().prop_filter("NaN", |f| !f.is_nan()), any::<bool>(), ".{0,20}")
                .prop_map(|(k, i, f, b, s)| (
                    Parser::Json,
                    serde_json::json!({ k: { "i": i, "f": f, "list": [b, s.clone()] }, "msg": s, "#host": "h" }).to_string()
                )),
            (word, word, ".{0,12}").prop_map(|(a, b, c)| (
                Parser::Kv,
                format!("level={a} user={b} msg={c:?} n=5")
            )),
            (word, word).prop_map(|(host, msg)| (
                Parser::Syslog,
                format!("<165>1 2026-11-24T10:00:00.003Z {host} app - ID47 [id@1 a=\"3\"] {msg}")
            )),
            (word, any::<u16>()).prop_map(|(name, v)| (
                Parser::Statsd,
                format!("{name}:{v}|c|#service:web")
            )),
            ".{0,40}".prop_map(|l| (Parser::None, l)),
        ];
        (
            line,
            any::<i64>(),
            any::<u128>(),
            any::<bool>(),
            proptest::collection::btree_map("[a-z]{1,6}", ".{0,8}", 0..3),
        )
            .prop_filter_map(
                "the line must parse",
                |((parser, line), arrived, id, from_client, tags)| {
                    let mut e = parser.parse(&line, arrived).ok()?;
                    e.id = uuid::Uuid::from_u128(id);
                    e.id_from_client = from_client;
                    // A door's tags beside the parser's.
                    e.tags.extend(tags);
                    Some(e)
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn one_event_decoded_into_again_and_again_is_each_record_decoded_afresh(
            events in proptest::collection::vec(prop_oneof![event(), parsed_event()], 1..8),
            cut in any::<usize>(),
        ) {
            let mut reused = Event::new(0);
            for (i, e) in events.iter().enumerate() {
                let mut bytes = encode(e);
                // Now and then a damaged record, which must fail as it fails alone and leave
                // the next record's decoding unharmed.
                if i == cut % (events.len() + 1) {
                    bytes.truncate(cut % bytes.len());
                }
                let fresh = decode_lazily(&bytes);
                let into = decode_lazily_into(&bytes, &mut reused);
                match (fresh, into) {
                    (Ok((fresh, f1)), Ok(f2)) => {
                        prop_assert_eq!(&reused, &fresh);
                        prop_assert_eq!(f1, f2);
                    }
                    (Err(a), Err(b)) => prop_assert_eq!(a, b),
                    (a, b) => prop_assert!(false, "{:?} against {:?}", a, b),
                }
            }
        }

        #[test]
        fn roundtrips(e in event()) {
            let bytes = encode(&e);
            prop_assert_eq!(has_client_id(&bytes), e.id_from_client);
            prop_assert_eq!(decode(&bytes).unwrap(), e.clone());
            // Lazily: the same event, its fields still encoded exactly as `encode_fields` would.
            let (without, fields) = decode_lazily(&bytes).unwrap();
            let fields = fields.unwrap();
            prop_assert!(without.fields.is_empty());
            prop_assert_eq!(fields.to_map().unwrap(), e.fields.clone());
            let (mut direct, mut passed_on) = (Vec::new(), Vec::new());
            encode_fields(&e.fields, &mut direct);
            FieldsRef::Encoded(fields).encode_into(&mut passed_on);
            prop_assert_eq!(direct, passed_on);
            let values: Vec<ValueRef<'_>> = FieldsRef::Map(&e.fields).values().collect();
            prop_assert_eq!(FieldsRef::Encoded(fields).values().collect::<Vec<_>>(), values);
        }

        #[test]
        fn a_parsed_event_read_back_equals_the_event_written_for_each_parser(e in parsed_event()) {
            let bytes = encode(&e);
            prop_assert_eq!(decode(&bytes).unwrap(), e.clone());
            prop_assert_eq!(has_client_id(&bytes), e.id_from_client);
            // The fields were not written: the record is the raw text and little more.
            let (lazy, fields) = decode_lazily(&bytes).unwrap();
            prop_assert!(fields.is_none());
            prop_assert_eq!(lazy.parsed_by, e.parsed_by);
            let raw = e.raw.as_deref().unwrap_or_default();
            let tags: usize = e.tags.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
            prop_assert!(bytes.len() <= 2 + 8 + 8 + 16 + 3 + raw.len() + 2 + tags, "{} bytes", bytes.len());
        }

        #[test]
        fn arbitrary_bytes_error_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode(&data);
        }

        #[test]
        fn truncations_and_flips_error_never_panic(e in event(), cut in any::<usize>(), flip in any::<usize>(), bit in 0u8..8) {
            let bytes = encode(&e);
            let cut = cut % bytes.len();
            prop_assert!(decode(&bytes[..cut]).is_err());
            let mut bad = bytes.clone();
            let i = flip % bad.len();
            bad[i] ^= 1 << bit;
            let _ = decode(&bad);
        }
    }

    #[test]
    fn field_text_that_is_not_utf8_is_an_error_saying_where() {
        let mut e = Event::new(1);
        e.fields.insert("k".into(), Value::Str("xyz".into()));
        let mut bytes = encode(&e);
        let at = bytes.windows(3).position(|w| w == b"xyz").unwrap();
        bytes[at] = 0xff;
        let err = decode(&bytes).unwrap_err();
        assert_eq!((err.position, err.reason), (at, "text is not UTF-8"));
        // Read lazily, the structure is fine and iterating stops before the bad text.
        let (_, fields) = decode_lazily(&bytes).unwrap();
        assert_eq!(fields.unwrap().iter().count(), 0);
    }

    #[test]
    fn damaged_fields_are_found_by_their_reader() {
        let mut e = Event::new(1);
        e.fields.insert("a".into(), Value::Int(1));
        e.fields.insert("b".into(), Value::Str("two".into()));
        let mut bytes = encode(&e);
        bytes.push(7);
        // The event itself reads; its fields say what is wrong when read whole.
        let (_, fields) = decode_lazily(&bytes).unwrap();
        let err = fields.unwrap().to_map().unwrap_err();
        assert_eq!(
            (err.position, err.reason),
            (bytes.len() - 1, "trailing bytes after the fields")
        );
        assert_eq!(decode(&bytes).unwrap_err().position, bytes.len() - 1);
        // Cut inside the second field: the values stop before it, and passing the fields on
        // writes an empty map rather than bytes no one could read.
        let cut = &bytes[..bytes.len() - 3];
        let fields = decode_lazily(cut).unwrap().1.unwrap();
        let values: Vec<_> = FieldsRef::Encoded(fields).values().collect();
        assert_eq!(values, [ValueRef::Int(1)]);
        let mut out = Vec::new();
        FieldsRef::Encoded(fields).encode_into(&mut out);
        assert_eq!(out, [0]);
    }

    #[test]
    fn a_parsed_access_log_line_roundtrips() {
        let line = r#"127.0.0.1 - frank [10/Oct/2026:13:55:36 -0700] "GET /a.gif HTTP/1.0" 200 2326 "http://x/" "Mozilla/5.0""#;
        let e = crate::Parser::Accesslog.parse(line, 1).unwrap();
        let bytes = encode(&e);
        assert_eq!(decode(&bytes).unwrap(), e);
        let err = decode(&bytes[..bytes.len() - 1]).unwrap_err();
        assert!(err.reason.contains("truncated"), "{err}");
        // Trailing bytes after a derived record are damage, not a field map.
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            decode(&longer).unwrap_err().reason,
            "trailing bytes after derived fields"
        );
    }

    #[test]
    fn a_raw_text_its_parser_no_longer_reads_keeps_the_event_without_fields() {
        let mut e = crate::Parser::Json.parse(r#"{"a":1}"#, 1).unwrap();
        // As if the JSON parser of a later version refused what an earlier one read.
        e.raw = Some("not json".into());
        let back = decode(&encode(&e)).unwrap();
        assert_eq!(back.raw.as_deref(), Some("not json"));
        assert_eq!((back.parsed_by, back.fields.len()), (None, 0));
        assert_eq!((back.id, back.timestamp), (e.id, e.timestamp));
    }

    #[test]
    fn derived_fields_need_a_parser_and_a_raw_text() {
        let e = crate::Parser::Kv.parse("a=1", 1).unwrap();
        let mut bytes = encode(&e);
        bytes[1] &= !0b1110;
        assert_eq!(decode(&bytes).unwrap_err().reason, "unknown flags");
        // Version 2 had no bit 4.
        let mut bytes = encode(&e);
        bytes[0] = VERSION_2;
        assert_eq!(decode(&bytes).unwrap_err().reason, "unknown flags");
    }
}
