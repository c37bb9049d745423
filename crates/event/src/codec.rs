//! The binary encoding of an event as a bus record value.
//!
//! Compact and cheap both ways, because every event is encoded once at ingest and decoded by
//! every reader of the bus (digest, live queries, pipelines). Integers are little-endian;
//! lengths and counts are unsigned LEB128 varints.
//!
//! ```text
//!  u8        format version: 2
//!  u8        flags: bit 0 = @id came from the client
//!  i64       @timestamp (ns)
//!  i64       @ingesttimestamp (ns)
//!  [u8; 16]  @id (UUID bytes)
//!  varint    @rawstring length + 1 (0 = none), then its bytes
//!  varint    tag count, then per tag: varint len, name, varint len, value
//!  varint    field count, then per field: varint len, name, u8 kind, payload
//!              kind 0 null (no payload) · 1 false · 2 true · 3 int (i64) · 4 float (f64 bits)
//!              · 5 string (varint len, bytes)
//! ```
//!
//! Decoding never trusts the bytes: every length is checked against what is left, text must be
//! UTF-8, and trailing bytes are an error.

use std::collections::BTreeMap;

use crate::event::Event;
use crate::value::Value;

/// The current format version.
pub const VERSION: u8 = 2;

/// Why bytes are not an encoded event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot decode event at byte {position}: {reason}")]
pub struct DecodeError {
    /// Where decoding stopped.
    pub position: usize,
    /// What was wrong.
    pub reason: &'static str,
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// Appends the encoding of `event` to `out`.
pub fn encode_into(event: &Event, out: &mut Vec<u8>) {
    out.push(VERSION);
    out.push(u8::from(event.id_from_client));
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
    put_varint(out, event.tags.len() as u64);
    for (k, v) in &event.tags {
        put_str(out, k);
        put_str(out, v);
    }
    put_varint(out, event.fields.len() as u64);
    for (k, v) in &event.fields {
        put_str(out, k);
        match v {
            Value::Null => out.push(0),
            Value::Bool(false) => out.push(1),
            Value::Bool(true) => out.push(2),
            Value::Int(i) => {
                out.push(3);
                out.extend_from_slice(&i.to_le_bytes());
            }
            Value::Float(f) => {
                out.push(4);
                out.extend_from_slice(&f.to_bits().to_le_bytes());
            }
            Value::Str(s) => {
                out.push(5);
                put_str(out, s);
            }
        }
    }
}

/// Whether encoded bytes hold an event whose `@id` came from the client, without decoding it.
pub fn has_client_id(buf: &[u8]) -> bool {
    buf.len() > 1 && buf[0] == VERSION && buf[1] & 1 == 1
}

/// The encoding of `event`.
pub fn encode(event: &Event) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + event.raw.as_ref().map_or(0, |r| r.len() * 2));
    encode_into(event, &mut out);
    out
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn fail<T>(&self, reason: &'static str) -> Result<T, DecodeError> {
        Err(DecodeError {
            position: self.pos,
            reason,
        })
    }

    fn bytes(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        match self.pos.checked_add(n).filter(|&end| end <= self.buf.len()) {
            Some(end) => {
                let out = &self.buf[self.pos..end];
                self.pos = end;
                Ok(out)
            }
            None => self.fail(what),
        }
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.bytes(N, what)?);
        Ok(a)
    }

    fn varint(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let [b] = self.array::<1>(what)?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        self.fail(what)
    }

    fn len(&mut self, what: &'static str) -> Result<usize, DecodeError> {
        let n = self.varint(what)?;
        // A length can never exceed what is left; checking here also bounds allocations.
        match usize::try_from(n)
            .ok()
            .filter(|&n| n <= self.buf.len() - self.pos)
        {
            Some(n) => Ok(n),
            None => self.fail(what),
        }
    }

    fn string(&mut self, what: &'static str) -> Result<String, DecodeError> {
        let n = self.len(what)?;
        self.text(n, what)
    }

    fn text(&mut self, n: usize, what: &'static str) -> Result<String, DecodeError> {
        let at = self.pos;
        let b = self.bytes(n, what)?;
        String::from_utf8(b.to_vec()).map_err(|_| DecodeError {
            position: at,
            reason: "text is not UTF-8",
        })
    }
}

/// Decodes an event encoded by [`encode`].
pub fn decode(buf: &[u8]) -> Result<Event, DecodeError> {
    let mut r = Reader { buf, pos: 0 };
    let [version] = r.array::<1>("empty input")?;
    if version != VERSION {
        r.pos = 0;
        return r.fail("unknown format version");
    }
    let [flags] = r.array::<1>("truncated flags")?;
    if flags > 1 {
        r.pos -= 1;
        return r.fail("unknown flags");
    }
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
            Some(r.text(len, "truncated @rawstring")?)
        }
    };
    let mut tags = BTreeMap::new();
    for _ in 0..r.len("bad tag count")? {
        let k = r.string("truncated tag name")?;
        let v = r.string("truncated tag value")?;
        tags.insert(k, v);
    }
    let mut fields = BTreeMap::new();
    for _ in 0..r.len("bad field count")? {
        let k = r.string("truncated field name")?;
        let [kind] = r.array::<1>("truncated field kind")?;
        let v = match kind {
            0 => Value::Null,
            1 => Value::Bool(false),
            2 => Value::Bool(true),
            3 => Value::Int(i64::from_le_bytes(r.array("truncated int")?)),
            4 => Value::Float(f64::from_bits(u64::from_le_bytes(
                r.array("truncated float")?,
            ))),
            5 => Value::Str(r.string("truncated string")?),
            _ => {
                r.pos -= 1;
                return r.fail("unknown field kind");
            }
        };
        fields.insert(k, v);
    }
    if r.pos != buf.len() {
        return r.fail("trailing bytes after the event");
    }
    Ok(Event {
        timestamp,
        ingest_timestamp,
        id,
        id_from_client: flags == 1,
        raw,
        tags,
        fields,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::Int),
            any::<f64>()
                .prop_filter("NaN breaks equality", |f| !f.is_nan())
                .prop_map(Value::Float),
            ".{0,40}".prop_map(Value::Str),
        ]
    }

    fn event() -> impl Strategy<Value = Event> {
        (
            any::<i64>(),
            any::<i64>(),
            (any::<u128>(), any::<bool>()),
            proptest::option::of(".{0,200}"),
            proptest::collection::btree_map(".{0,10}", ".{0,10}", 0..5),
            proptest::collection::btree_map(".{0,20}", value(), 0..20),
        )
            .prop_map(
                |(timestamp, ingest_timestamp, (id, id_from_client), raw, tags, fields)| Event {
                    timestamp,
                    ingest_timestamp,
                    id: uuid::Uuid::from_u128(id),
                    id_from_client,
                    raw,
                    tags,
                    fields,
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn roundtrips(e in event()) {
            let bytes = encode(&e);
            prop_assert_eq!(has_client_id(&bytes), e.id_from_client);
            prop_assert_eq!(decode(&bytes).unwrap(), e);
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
    fn a_parsed_access_log_line_roundtrips() {
        let line = r#"127.0.0.1 - frank [10/Oct/2026:13:55:36 -0700] "GET /a.gif HTTP/1.0" 200 2326 "http://x/" "Mozilla/5.0""#;
        let e = crate::Parser::Accesslog.parse(line, 1).unwrap();
        let bytes = encode(&e);
        assert_eq!(decode(&bytes).unwrap(), e);
        let err = decode(&bytes[..bytes.len() - 1]).unwrap_err();
        assert!(err.reason.contains("truncated"), "{err}");
    }
}
