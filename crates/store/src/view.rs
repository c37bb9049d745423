//! A block decoded column by column, for queries: the texts of all its events in one buffer that
//! a search can run over once, and events built only for the rows a query keeps, with only the
//! parts it reads (a count builds none; a timechart needs no fields, so no parser runs).

use std::collections::BTreeMap;

use eddy_event::codec;
use eddy_event::wire::{unzigzag, unzigzag128, DecodeError, Reader};
use eddy_event::{Event, Parser, Value};

use crate::block::{LAYOUT_LINES, LAYOUT_SPLIT, LAYOUT_SPLIT_AT_COMMAS, NO_RAW, ODD_RAW};
use crate::split;
use crate::store::Scan;

/// Which parts of an event to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parts {
    /// `@rawstring`.
    pub raw: bool,
    /// The tags.
    pub tags: bool,
    /// The fields (for a parsed event, its parser runs).
    pub fields: bool,
}

impl Parts {
    /// Every part.
    pub const ALL: Parts = Parts {
        raw: true,
        tags: true,
        fields: true,
    };
}

/// Buffers a reading thread keeps from one block to the next (a fresh megabyte for every
/// block costs page faults).
#[derive(Debug, Default)]
pub struct ReadBuffers {
    pub(crate) stored: Vec<u8>,
    pub(crate) payload: Vec<u8>,
}

/// A decoded block's columns.
#[derive(Debug, Clone, Default)]
pub struct BlockView {
    times: Vec<i64>,
    ingests: Vec<i64>,
    flags: Vec<u8>,
    ids: Vec<u128>,
    tag_sets: Vec<BTreeMap<String, String>>,
    tag_index: Vec<u32>,
    /// Every event's `@rawstring` followed by a newline (just the newline for none), in event
    /// order.
    text: String,
    /// Where each event's text starts in `text`, and its end.
    starts: Vec<u32>,
    /// Each unparsed event's stored fields (empty for parsed events: their parser gives them).
    fields: Vec<BTreeMap<String, Value>>,
}

impl BlockView {
    /// Decodes an uncompressed payload (see [`crate::block`] for its layout).
    pub fn decode(payload: &[u8]) -> Result<BlockView, DecodeError> {
        let mut v = BlockView::default();
        v.decode_from(payload)?;
        Ok(v)
    }

    /// Decodes `payload` into this view, reusing its memory.
    pub fn decode_from(&mut self, payload: &[u8]) -> Result<(), DecodeError> {
        let v = self;
        let mut r = Reader::new(payload);
        let n = r.len("bad event count")?;
        let sets = r.len("bad tag set count")?;
        v.tag_sets.clear();
        for _ in 0..sets {
            v.tag_sets.push(r.string_map("truncated tag set")?);
        }
        deltas(&mut r, n, "truncated @timestamp", &mut v.times)?;
        deltas(&mut r, n, "truncated @ingesttimestamp", &mut v.ingests)?;
        v.flags.clear();
        v.flags.extend_from_slice(r.bytes(n, "truncated flags")?);
        v.ids.clear();
        let mut prev = 0u128;
        for _ in 0..n {
            prev = prev.wrapping_add(unzigzag128(r.varint128("truncated @id")?) as u128);
            v.ids.push(prev);
        }
        v.tag_index.clear();
        v.tag_index.resize(n, 0);
        if sets > 1 {
            for t in v.tag_index.iter_mut() {
                *t = r.varint_u32("bad tag set index")?;
                if *t as usize >= sets {
                    return r.fail("tag set index out of range");
                }
            }
        } else if sets == 0 && n > 0 {
            return r.fail("events without a tag set");
        }
        v.read_texts(&mut r)?;
        v.fields.clear();
        v.fields.resize(n, BTreeMap::new());
        for i in 0..n {
            match codec::parser_in_flags(v.flags[i]) {
                Ok(None) => v.fields[i] = codec::decode_fields(&mut r)?,
                Ok(Some(_)) => {}
                Err(_) => return r.fail("unknown parser code"),
            }
        }
        if !r.at_end() {
            return r.fail("trailing bytes after the events");
        }
        Ok(())
    }

    /// Reads the plain texts (any layout) and the texts with line breaks into `text` and
    /// `starts`, in event order.
    fn read_texts(&mut self, r: &mut Reader<'_>) -> Result<(), DecodeError> {
        let n = self.flags.len();
        let plain = self
            .flags
            .iter()
            .filter(|&&f| f & (NO_RAW | ODD_RAW) == 0)
            .count();
        // The buffers of the previous block, emptied.
        let mut text = std::mem::take(&mut self.text).into_bytes();
        text.clear();
        let mut starts = std::mem::take(&mut self.starts);
        starts.clear();
        let [layout] = r.array::<1>("truncated raw layout")?;
        match layout {
            LAYOUT_LINES => {
                let len = r.len("bad lines length")?;
                text.extend_from_slice(r.bytes(len, "truncated lines")?);
                let mut at = 0;
                for end in memchr::memchr_iter(b'\n', &text) {
                    starts.push(at as u32);
                    at = end + 1;
                }
                if at != text.len() {
                    return r.fail("lines do not end with a newline");
                }
                if starts.len() != plain {
                    return r.fail("lines and events differ in number");
                }
            }
            LAYOUT_SPLIT_AT_COMMAS => split::read_into(r, b',', plain, &mut text, &mut starts)?,
            LAYOUT_SPLIT => {
                let [separator] = r.array::<1>("truncated separator")?;
                split::read_into(r, separator, plain, &mut text, &mut starts)?
            }
            _ => return r.fail("unknown raw layout"),
        }
        if text.len() >= u32::MAX as usize {
            return r.fail("texts too long for one block");
        }
        if plain < n {
            (text, starts) = self.in_event_order(r, &text, &starts)?;
        } else {
            starts.push(text.len() as u32);
        }
        match String::from_utf8(text) {
            Ok(t) => self.text = t,
            Err(_) => return r.fail("@rawstring is not UTF-8"),
        }
        self.starts = starts;
        Ok(())
    }

    /// The texts in event order when some events have no plain text: those with line breaks
    /// are read after the plain ones, and events without a text get an empty one.
    fn in_event_order(
        &self,
        r: &mut Reader<'_>,
        plain: &[u8],
        plain_starts: &[u32],
    ) -> Result<(Vec<u8>, Vec<u32>), DecodeError> {
        let mut text = Vec::with_capacity(plain.len());
        let mut starts = Vec::with_capacity(self.flags.len() + 1);
        let mut next_plain = 0;
        for &f in &self.flags {
            starts.push(text.len() as u32);
            if f & NO_RAW != 0 {
            } else if f & ODD_RAW != 0 {
                let len = r.len("bad @rawstring length")?;
                text.extend_from_slice(r.bytes(len, "truncated @rawstring")?);
            } else {
                let from = plain_starts[next_plain] as usize;
                let to = plain_starts
                    .get(next_plain + 1)
                    .map_or(plain.len(), |&s| s as usize);
                // Without its newline, added below like every other text's.
                text.extend_from_slice(&plain[from..to - 1]);
                next_plain += 1;
            }
            text.push(b'\n');
        }
        if text.len() >= u32::MAX as usize {
            return r.fail("texts too long for one block");
        }
        starts.push(text.len() as u32);
        Ok((text, starts))
    }

    /// Events in the block.
    pub fn len(&self) -> usize {
        self.times.len()
    }

    /// Whether the block has no events.
    pub fn is_empty(&self) -> bool {
        self.times.is_empty()
    }

    /// Event `i`'s `@timestamp`.
    pub fn timestamp(&self, i: usize) -> i64 {
        self.times[i]
    }

    /// Every event's text, each followed by a newline (see [`BlockView::text_starts`]).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Where each event's text starts in [`BlockView::text`], then the end (one more than the
    /// events): event `i`'s text is `starts[i]..starts[i + 1] - 1`.
    pub fn text_starts(&self) -> &[u32] {
        &self.starts
    }

    /// Event `i`'s `@rawstring`.
    pub fn raw(&self, i: usize) -> Option<&str> {
        (self.flags[i] & NO_RAW == 0)
            .then(|| &self.text[self.starts[i] as usize..self.starts[i + 1] as usize - 1])
    }

    /// Whether event `i` has a `@rawstring` without line breaks (a line of the text).
    pub fn is_line(&self, i: usize) -> bool {
        self.flags[i] & (NO_RAW | ODD_RAW) == 0
    }

    /// Event `i`'s tags.
    pub fn tags(&self, i: usize) -> &BTreeMap<String, String> {
        &self.tag_sets[self.tag_index[i] as usize]
    }

    /// Which events `scan` keeps by time range and tags (its tokens are the caller's).
    pub fn kept_by(&self, scan: &Scan) -> Vec<bool> {
        let sets: Vec<bool> = self
            .tag_sets
            .iter()
            .map(|tags| {
                scan.tags
                    .iter()
                    .all(|(k, v)| tags.get(k).is_some_and(|have| have == v))
            })
            .collect();
        (0..self.len())
            .map(|i| {
                let t = self.times[i];
                t >= scan.start && t < scan.end && sets[self.tag_index[i] as usize]
            })
            .collect()
    }

    /// Builds event `i` with the given parts (its time and id always).
    pub fn event(&self, i: usize, parts: Parts) -> Event {
        let raw = self.raw(i);
        let parsed_by = codec::parser_in_flags(self.flags[i]).ok().flatten();
        Event {
            timestamp: self.times[i],
            ingest_timestamp: self.ingests[i],
            id: uuid::Uuid::from_u128(self.ids[i]),
            id_from_client: self.flags[i] & 1 == 1,
            parsed_by,
            raw: raw.filter(|_| parts.raw).map(str::to_string),
            tags: match parts.tags {
                true => self.tags(i).clone(),
                false => BTreeMap::new(),
            },
            fields: match (parts.fields, parsed_by, raw) {
                (false, _, _) => BTreeMap::new(),
                (true, Some(p), Some(raw)) => parsed_fields(p, raw, self.ingests[i]),
                (true, _, _) => self.fields[i].clone(),
            },
        }
    }

    /// Every event, whole.
    pub fn into_events(mut self) -> Vec<Event> {
        let mut fields = std::mem::take(&mut self.fields);
        (0..self.len())
            .map(|i| {
                let mut e = self.event(
                    i,
                    Parts {
                        fields: false,
                        ..Parts::ALL
                    },
                );
                e.fields = match (e.parsed_by, &e.raw) {
                    (Some(p), Some(raw)) => parsed_fields(p, raw, e.ingest_timestamp),
                    _ => std::mem::take(&mut fields[i]),
                };
                e
            })
            .collect()
    }
}

/// A parsed event's fields, from its text. A parser of a later version may not accept what an
/// older one did: the event keeps its raw text then, without fields.
fn parsed_fields(p: Parser, raw: &str, ingest: i64) -> BTreeMap<String, Value> {
    p.fields_of(raw, ingest).unwrap_or_default()
}

/// `n` values stored as zig-zag differences from the previous one, into `out`.
fn deltas(
    r: &mut Reader<'_>,
    n: usize,
    what: &'static str,
    out: &mut Vec<i64>,
) -> Result<(), DecodeError> {
    out.clear();
    let mut prev = 0i64;
    for _ in 0..n {
        prev = prev.wrapping_add(unzigzag(r.varint(what)?));
        out.push(prev);
    }
    Ok(())
}
