//! A block decoded column by column, for queries: the texts of all its events in one buffer that
//! a search can run over once, and events built only for the rows a query keeps, with only the
//! parts it reads (a count builds none; a timechart needs no fields, so no parser runs).

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::{Mutex, OnceLock};

use eddy_event::codec;
use eddy_event::wire::{unzigzag, unzigzag128, DecodeError, Reader};
use eddy_event::{Event, Parser, Value};

use crate::block::{self, BlockError};
use crate::columns::{self, Column};
use crate::layout::{
    LAYOUT_LINES, LAYOUT_SPLIT, LAYOUT_SPLIT_AT_COMMAS, NO_RAW, ODD_RAW, TEMPLATED,
};
use crate::scan::Scan;
use crate::sections::{self, Role, Section, SECTIONED};
use crate::split::{self, SplitLayout};
use crate::template::{hole_text, Templates};

/// How many times a block's text section was decompressed, in this process (a query about
/// fields should not need any: tests check it).
static TEXT_READS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many times a sectioned block's texts were decompressed so far in this process.
pub fn text_reads() -> u64 {
    TEXT_READS.load(std::sync::atomic::Ordering::Relaxed)
}

/// How many times each field column was decompressed, by name, in this process (a regex
/// should decompress only the columns it can touch: tests check it).
static COLUMN_READS: Mutex<Vec<(String, u64)>> = Mutex::new(Vec::new());

/// How many times column `name` of some block was decompressed so far in this process.
pub fn column_reads(name: &str) -> u64 {
    COLUMN_READS
        .lock()
        .map(|reads| reads.iter().find(|(n, _)| n == name).map_or(0, |r| r.1))
        .unwrap_or(0)
}

fn count_column_read(name: &str) {
    if let Ok(mut reads) = COLUMN_READS.lock() {
        match reads.iter_mut().find(|(n, _)| n == name) {
            Some(r) => r.1 += 1,
            None => reads.push((name.to_string(), 1)),
        }
    }
}

/// What of a sectioned block to decompress (older blocks are one frame: all of it).
#[derive(Debug, Clone, PartialEq)]
pub struct Needs {
    /// The texts (and every column, which templated texts are rebuilt from).
    pub text: bool,
    /// The field columns: `None` for all of them.
    pub fields: Option<Vec<String>>,
    /// The events' times. Without them a block is read as if every event were inside the
    /// query's range: ask for them unless the block lies within it (or load them later with
    /// [`crate::BlockTask::load`]).
    pub times: bool,
    /// The events' ingest times and ids (needed to build events).
    pub arrivals: bool,
    /// Conditions every event the query keeps meets: a block whose column ranges show that no
    /// event can is ruled out after its core, with nothing else decompressed.
    pub bounds: Vec<Bound>,
    /// Texts some field of every event the query keeps equals: a block whose dictionary of the
    /// field holds none of them is ruled out once that column is decompressed.
    pub texts: Vec<TextBound>,
}

/// Only events whose `field` is exactly one of `texts` can pass the query.
#[derive(Debug, Clone, PartialEq)]
pub struct TextBound {
    /// A field (no tag, no `@` field).
    pub field: String,
    /// The texts it may equal.
    pub texts: Vec<String>,
}

/// Only events whose `field` is a number from `lo` to `hi` can pass the query.
#[derive(Debug, Clone, PartialEq)]
pub struct Bound {
    /// A field (no tag, no `@` field).
    pub field: String,
    /// The smallest number that can pass.
    pub lo: f64,
    /// The largest number that can pass.
    pub hi: f64,
}

impl Bound {
    /// Whether no event of a block can meet the bound, given the block's column of the field
    /// (`None`: no event has the field) and its range.
    fn rules_out(&self, column: Option<Option<columns::Range>>) -> bool {
        match column {
            None => true,
            Some(Some(columns::Range::Int(lo, hi))) => {
                (hi as f64) < self.lo || (lo as f64) > self.hi
            }
            Some(Some(columns::Range::Float(lo, hi))) => hi < self.lo || lo > self.hi,
            // Not every value is a number: any may pass.
            Some(None) => false,
        }
    }
}

impl Default for Needs {
    fn default() -> Needs {
        Needs::ALL
    }
}

impl Needs {
    /// Everything.
    pub const ALL: Needs = Needs {
        text: true,
        fields: None,
        times: true,
        arrivals: true,
        bounds: Vec::new(),
        texts: Vec::new(),
    };

    /// Whether the query names `field` (or every field).
    fn names(&self, field: &str) -> bool {
        self.fields
            .as_ref()
            .is_none_or(|names| names.iter().any(|n| n == field))
    }
}

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
/// block costs page faults); the view keeps its payload.
#[derive(Debug, Default)]
pub struct ReadBuffers {
    pub(crate) stored: Vec<u8>,
}

/// Where the plain texts (those without a line break) sit in the payload.
#[derive(Debug, Clone)]
enum PlainTexts {
    /// One after another, each followed by a newline.
    Lines(Range<usize>),
    /// Cut into columns.
    Split(SplitLayout),
}

/// Every event's text in one buffer, each followed by a newline (just the newline for none).
#[derive(Debug, Clone, Default)]
struct Texts {
    text: String,
    /// Where each event's text starts in `text`, then the end.
    starts: Vec<u32>,
}

/// The buffers of the texts built for the previous block, for the next one to reuse.
#[derive(Debug, Default)]
struct Spare(Mutex<Texts>);

impl Clone for Spare {
    fn clone(&self) -> Spare {
        Spare::default()
    }
}

/// A block's split texts as stored: column by column, so that a search for something that
/// cannot hold the separator or a newline runs over them without rebuilding the lines.
#[derive(Debug, Clone, Copy)]
pub struct SplitColumns<'a> {
    payload: &'a [u8],
    layout: &'a SplitLayout,
}

impl<'a> SplitColumns<'a> {
    /// The byte the pieces of a line are joined with (never part of a word).
    pub fn separator(&self) -> u8 {
        self.layout.separator
    }

    /// Each line's number of pieces (line `k` is the `k`-th event that is a line).
    pub fn counts(&self) -> &'a [u8] {
        self.payload
            .get(self.layout.counts.clone())
            .unwrap_or_default()
    }

    /// The columns: column `c` holds piece `c` of each line that has more than `c` pieces, in
    /// line order, each followed by a newline. Checked as UTF-8 when the block was decoded.
    pub fn columns(&self) -> impl ExactSizeIterator<Item = &'a [u8]> + 'a {
        let payload = self.payload;
        self.layout
            .columns
            .iter()
            .map(move |r| payload.get(r.clone()).unwrap_or_default())
    }

    /// All the columns, one after another.
    pub fn region(&self) -> &'a [u8] {
        self.payload.get(self.layout.region()).unwrap_or_default()
    }
}

/// The parts of a block's core that a view may leave compressed until asked
/// ([`crate::BlockTask::load`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deferred {
    /// The events' times.
    Times,
    /// The events' ingest times and ids.
    Arrivals,
}

impl Deferred {
    fn role(self) -> Role {
        match self {
            Deferred::Times => Role::Times,
            Deferred::Arrivals => Role::Arrivals,
        }
    }
}

/// A field column of a sectioned block: decompressed with the block when the query names it,
/// else on first use, so that a regex over templated texts reads only the columns whose bytes
/// can move it.
#[derive(Debug, Clone)]
pub(crate) struct LazyColumn {
    pub(crate) section: Section,
    /// `None` inside when it could not be decoded (the view's late error says why).
    decoded: OnceLock<Option<Column>>,
}

impl LazyColumn {
    fn name(&self) -> &str {
        &self.section.name
    }
}

/// A decoded block's columns.
#[derive(Debug, Clone, Default)]
pub struct BlockView {
    count: usize,
    times: Vec<i64>,
    ingests: Vec<i64>,
    flags: Vec<u8>,
    ids: Vec<u128>,
    tag_sets: Vec<BTreeMap<String, String>>,
    tag_index: Vec<u32>,
    /// The uncompressed block.
    payload: Vec<u8>,
    /// The plain texts in `payload` (`None` for a view never decoded).
    plain: Option<PlainTexts>,
    /// The texts with line breaks in `payload`, in event order.
    odd: Vec<Range<usize>>,
    /// For each event that is a line, its index (only when some events are not lines).
    line_events: Vec<u32>,
    /// Built on first use: a count over a search of the split columns needs no lines.
    texts: OnceLock<Texts>,
    spare: Spare,
    /// Each unparsed event's stored fields (empty for parsed events: their parser gives them).
    fields: Vec<BTreeMap<String, Value>>,
    /// What to decompress of a sectioned block.
    needs: Needs,
    /// Whether the block is sectioned: fields come from `columns`, not from a parser.
    sectioned: bool,
    /// The field columns: every one when the texts are read (templated texts are rebuilt from
    /// them), else those the needs name.
    columns: Vec<LazyColumn>,
    /// The stored block, kept while some column is left compressed.
    stored: Vec<u8>,
    /// Why a column left compressed could not be decoded when it was first used.
    late_error: OnceLock<BlockError>,
    /// Every column of the block, with its range if numeric (known without decompressing).
    column_names: Vec<(String, Option<columns::Range>)>,
    /// The templates of templated texts, with each hole's column in `columns`.
    pub(crate) templates: Option<(Templates, Vec<Option<usize>>)>,
    /// The sections of the core not decompressed yet (see [`Deferred`]).
    deferred: Vec<Section>,
    /// Memory for decompressing a deferred section.
    scratch: Vec<u8>,
    /// Whether the needs' bounds ruled the block out: only its core was read.
    ruled_out: bool,
}

impl BlockView {
    /// An empty view that decompresses only what `needs` says of the blocks it reads.
    pub fn with_needs(needs: Needs) -> BlockView {
        BlockView {
            needs,
            ..BlockView::default()
        }
    }

    /// Decodes a stored block (codec byte and frame, or sections) whose payload is `raw_len`
    /// bytes, reusing this view's memory.
    pub fn decode_stored(&mut self, stored: &[u8], raw_len: usize) -> Result<(), BlockError> {
        if stored.first() == Some(&SECTIONED) {
            // A damaged length must not make us allocate: nothing larger is ever written.
            if raw_len > block::MAX_PAYLOAD {
                return Err(BlockError::Decompress(format!(
                    "a payload of {raw_len} bytes is over the limit of {}",
                    block::MAX_PAYLOAD
                )));
            }
            let result = self.decode_sections(stored, raw_len);
            if result.is_err() {
                self.plain = None;
            }
            return result;
        }
        self.sectioned = false;
        self.ruled_out = false;
        self.deferred.clear();
        self.columns.clear();
        self.late_error.take();
        self.column_names.clear();
        self.templates = None;
        let mut payload = self.take_payload_buffer();
        block::decompress_into(stored, raw_len, &mut payload)?;
        Ok(self.decode_owned(payload)?)
    }

    fn decode_sections(&mut self, stored: &[u8], raw_len: usize) -> Result<(), BlockError> {
        let directory = sections::directory(stored)?;
        let sum = directory
            .iter()
            .map(|s| s.raw_len)
            .fold(0usize, usize::saturating_add);
        if sum != raw_len {
            return Err(BlockError::Decompress(format!(
                "the sections hold {sum} bytes where the footer says {raw_len}"
            )));
        }
        self.sectioned = true;
        if let Some(texts) = self.texts.take() {
            if let Ok(mut spare) = self.spare.0.lock() {
                *spare = texts;
            }
        }
        let mut buffer = self.take_payload_buffer();
        let named = |s: &sections::Section| {
            let label = s.label();
            move |e: DecodeError| BlockError::Section {
                section: label,
                reason: e.to_string(),
            }
        };
        let Some(core) = directory.iter().find(|s| s.role == Role::Core) else {
            return Err(BlockError::Decompress(
                "the block has no core section".into(),
            ));
        };
        // Format 4 keeps the times and the arrivals out of the core, in sections of their own.
        let split_core = directory.iter().any(|s| s.role == Role::Times);
        sections::read(stored, core, &mut buffer)?;
        let mut r = Reader::new(&buffer);
        self.decode_core(&mut r, !split_core).map_err(named(core))?;
        if !r.at_end() {
            return Err(named(core)(DecodeError {
                position: r.pos,
                reason: "trailing bytes after the events",
            }));
        }
        self.deferred.clear();
        if split_core {
            self.times.clear();
            self.ingests.clear();
            self.ids.clear();
            for part in [Deferred::Times, Deferred::Arrivals] {
                let Some(s) = directory.iter().find(|s| s.role == part.role()) else {
                    return Err(BlockError::Decompress(format!(
                        "the block has no section for {:?}",
                        part
                    )));
                };
                self.deferred.push(s.clone());
            }
            if self.needs.times {
                self.load(stored, Deferred::Times)?;
            }
            if self.needs.arrivals {
                self.load(stored, Deferred::Arrivals)?;
            }
        }
        self.fields.clear();
        self.columns.clear();
        self.late_error.take();
        self.column_names.clear();
        self.templates = None;
        self.column_names.extend(
            directory
                .iter()
                .filter(|s| s.role == Role::Column)
                .map(|s| (s.name.clone(), s.range)),
        );
        self.ruled_out = self.needs.bounds.iter().any(|b| {
            !self.has_tag(&b.field)
                && b.rules_out(
                    directory
                        .iter()
                        .find(|s| s.role == Role::Column && s.name == b.field)
                        .map(|s| s.range),
                )
        });
        if self.ruled_out {
            self.plain = None;
            self.payload = buffer;
            return Ok(());
        }
        // The columns of text bounds first: a dictionary without any of a bound's texts rules
        // the block out before anything else is decompressed.
        let (bound, rest): (Vec<&Section>, Vec<&Section>) = directory
            .iter()
            .filter(|s| s.role == Role::Column)
            .partition(|s| self.needs.texts.iter().any(|t| t.field == s.name));
        for s in &bound {
            self.add_column(stored, s, &mut buffer)?;
        }
        if self.rules_out_by_dictionary() {
            self.ruled_out = true;
            self.plain = None;
            self.payload = buffer;
            return Ok(());
        }
        let mut lazy = false;
        for s in &rest {
            lazy |= self.add_column(stored, s, &mut buffer)?;
        }
        self.stored.clear();
        if lazy {
            self.stored.extend_from_slice(stored);
        }
        if self.needs.text {
            if let Some(t) = directory.iter().find(|s| s.role == Role::Templates) {
                sections::read(stored, t, &mut buffer)?;
                let templated = self.flags.iter().filter(|&&f| f & TEMPLATED != 0).count();
                let templates = Templates::decode(&buffer, templated).map_err(named(t))?;
                let holes = templates
                    .names
                    .iter()
                    .map(|name| self.columns.iter().position(|c| c.name() == name))
                    .collect();
                self.templates = Some((templates, holes));
            }
            let Some(text) = directory.iter().find(|s| s.role == Role::Text) else {
                return Err(BlockError::Decompress(
                    "the block has no text section".into(),
                ));
            };
            TEXT_READS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            sections::read(stored, text, &mut buffer)?;
            let mut r = Reader::new(&buffer);
            self.read_texts(&mut r).map_err(named(text))?;
            if !r.at_end() {
                return Err(named(text)(DecodeError {
                    position: r.pos,
                    reason: "trailing bytes after the texts",
                }));
            }
        } else {
            self.plain = None;
        }
        self.payload = buffer;
        Ok(())
    }

    /// Decompresses a deferred part of the core of the block `stored` (the block this view was
    /// decoded from); nothing if it is there already.
    pub(crate) fn load(&mut self, stored: &[u8], part: Deferred) -> Result<(), BlockError> {
        let Some(k) = self.deferred.iter().position(|s| s.role == part.role()) else {
            return Ok(());
        };
        let section = self.deferred.swap_remove(k);
        let mut buffer = std::mem::take(&mut self.scratch);
        sections::read(stored, &section, &mut buffer)?;
        let mut r = Reader::new(&buffer);
        let n = self.count;
        let mut read = || -> Result<(), DecodeError> {
            match part {
                Deferred::Times => deltas(&mut r, n, "truncated @timestamp", &mut self.times)?,
                Deferred::Arrivals => {
                    deltas(&mut r, n, "truncated @ingesttimestamp", &mut self.ingests)?;
                    ids(&mut r, n, &mut self.ids)?;
                }
            }
            match r.at_end() {
                true => Ok(()),
                false => r.fail("trailing bytes"),
            }
        };
        let result = read();
        self.scratch = buffer;
        result.map_err(|e| BlockError::Section {
            section: section.label(),
            reason: e.to_string(),
        })
    }

    /// Adds column `s` of the block `stored`: decompressed now if the needs name it, left
    /// compressed (then `true`) if the texts are read, else not at all.
    fn add_column(
        &mut self,
        stored: &[u8],
        s: &Section,
        buffer: &mut Vec<u8>,
    ) -> Result<bool, BlockError> {
        let decoded = OnceLock::new();
        let lazy = !self.needs.names(&s.name);
        if !lazy {
            let _ = decoded.set(Some(decode_column(stored, s, self.count, buffer)?));
        } else if !self.needs.text {
            return Ok(false);
        }
        self.columns.push(LazyColumn {
            section: s.clone(),
            decoded,
        });
        Ok(lazy)
    }

    /// Whether a text bound's column is a dictionary that holds none of its texts (its
    /// column decompressed; a tag of that name may hold them).
    fn rules_out_by_dictionary(&self) -> bool {
        self.needs.texts.iter().any(|t| {
            let column = self.columns.iter().position(|c| c.name() == t.field);
            let Some(column) = column.and_then(|c| self.columns[c].decoded.get()) else {
                return false;
            };
            match column.as_ref().map(|c| &c.values) {
                Some(columns::Values::Dictionary { entries, .. }) => {
                    !self.has_tag(&t.field)
                        && !entries.iter().any(|e| t.texts.iter().any(|x| x == e))
                }
                _ => false,
            }
        })
    }

    /// Whether the needs' bounds showed that no event of the block can pass the query: only
    /// its core (and the times or arrivals asked for) was decompressed.
    pub fn ruled_out(&self) -> bool {
        self.ruled_out
    }

    /// Whether `part` of the core is decompressed.
    pub fn has(&self, part: Deferred) -> bool {
        !self.deferred.iter().any(|s| s.role == part.role())
    }

    /// A copy of `other` that keeps this view's needs (a thread's view reads the next stored
    /// block with them).
    pub(crate) fn copy_from(&mut self, other: &BlockView) {
        let needs = std::mem::take(&mut self.needs);
        self.clone_from(other);
        self.needs = needs;
    }

    /// Decodes an uncompressed payload (see [`crate::block`] for its layout).
    pub fn decode(payload: &[u8]) -> Result<BlockView, DecodeError> {
        let mut v = BlockView::default();
        v.decode_from(payload)?;
        Ok(v)
    }

    /// Decodes `payload` into this view, reusing its memory.
    pub fn decode_from(&mut self, payload: &[u8]) -> Result<(), DecodeError> {
        let mut buffer = self.take_payload_buffer();
        buffer.extend_from_slice(payload);
        self.decode_owned(buffer)
    }

    /// The payload buffer, emptied, for the next block to be decompressed into and handed to
    /// [`BlockView::decode_owned`] (saves copying a megabyte per block).
    pub(crate) fn take_payload_buffer(&mut self) -> Vec<u8> {
        self.plain = None;
        let mut buffer = std::mem::take(&mut self.payload);
        buffer.clear();
        buffer
    }

    /// Decodes `payload`, which the view keeps.
    pub(crate) fn decode_owned(&mut self, payload: Vec<u8>) -> Result<(), DecodeError> {
        if let Some(texts) = self.texts.take() {
            if let Ok(mut spare) = self.spare.0.lock() {
                *spare = texts;
            }
        }
        let result = self.decode_payload(&payload);
        self.payload = payload;
        if result.is_err() {
            self.plain = None;
        }
        result
    }

    fn decode_payload(&mut self, payload: &[u8]) -> Result<(), DecodeError> {
        let mut r = Reader::new(payload);
        self.decode_core(&mut r, true)?;
        let n = self.count;
        if self.flags.iter().any(|&f| f & TEMPLATED != 0) {
            return r.fail("a templated text in a block without templates");
        }
        self.read_texts(&mut r)?;
        self.fields.clear();
        self.fields.resize(n, BTreeMap::new());
        for i in 0..n {
            match codec::parser_in_flags(self.flags[i]) {
                Ok(None) => self.fields[i] = codec::decode_fields(&mut r)?,
                Ok(Some(_)) => {}
                Err(_) => return r.fail("unknown parser code"),
            }
        }
        if !r.at_end() {
            return r.fail("trailing bytes after the events");
        }
        Ok(())
    }

    /// Decodes the count, tag sets, flags and tag indexes, and (`with_arrivals`: formats 1 to
    /// 3) the times, ingest times and ids between them.
    fn decode_core(&mut self, r: &mut Reader<'_>, with_arrivals: bool) -> Result<(), DecodeError> {
        let v = self;
        let n = r.len("bad event count")?;
        v.count = n;
        let sets = r.len("bad tag set count")?;
        v.tag_sets.clear();
        for _ in 0..sets {
            v.tag_sets.push(r.string_map("truncated tag set")?);
        }
        if with_arrivals {
            deltas(r, n, "truncated @timestamp", &mut v.times)?;
            deltas(r, n, "truncated @ingesttimestamp", &mut v.ingests)?;
        }
        v.flags.clear();
        v.flags.extend_from_slice(r.bytes(n, "truncated flags")?);
        if with_arrivals {
            ids(r, n, &mut v.ids)?;
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
        // Each distinct flag byte is checked once: a block has a handful among thousands.
        let mut seen = [false; 256];
        v.flags.iter().for_each(|&f| seen[usize::from(f)] = true);
        if (0..=u8::MAX).any(|f| seen[usize::from(f)] && codec::parser_in_flags(f).is_err()) {
            return r.fail("unknown parser code");
        }
        Ok(())
    }

    /// Reads where the plain texts (any layout) and the texts with line breaks are, checking
    /// them (UTF-8, counts) so that building the texts later cannot fail.
    fn read_texts(&mut self, r: &mut Reader<'_>) -> Result<(), DecodeError> {
        // Events whose text is a line, and events without a text, in one pass over the flags.
        let (plain, odd) = self.flags.iter().fold((0, 0), |(plain, odd), &f| {
            (
                plain + usize::from(f & (NO_RAW | ODD_RAW | TEMPLATED) == 0),
                odd + usize::from(f & (NO_RAW | ODD_RAW) == ODD_RAW),
            )
        });
        let [layout] = r.array::<1>("truncated raw layout")?;
        let (texts, region) = match layout {
            LAYOUT_LINES => {
                let len = r.len("bad lines length")?;
                let at = r.pos;
                let lines = r.bytes(len, "truncated lines")?;
                if lines.last().is_some_and(|&b| b != b'\n') {
                    return r.fail("lines do not end with a newline");
                }
                if split::count_newlines(lines) != plain {
                    return r.fail("lines and events differ in number");
                }
                (PlainTexts::Lines(at..r.pos), at..r.pos)
            }
            LAYOUT_SPLIT_AT_COMMAS | LAYOUT_SPLIT => {
                let separator = match layout {
                    LAYOUT_SPLIT => r.array::<1>("truncated separator")?[0],
                    _ => b',',
                };
                let layout = split::read_layout(r, separator, plain)?;
                let region = layout.region();
                (PlainTexts::Split(layout), region)
            }
            _ => return r.fail("unknown raw layout"),
        };
        if std::str::from_utf8(&r.buf[region.clone()]).is_err() {
            return r.fail("@rawstring is not UTF-8");
        }
        self.odd.clear();
        for _ in 0..odd {
            let len = r.len("bad @rawstring length")?;
            let at = r.pos;
            if std::str::from_utf8(r.bytes(len, "truncated @rawstring")?).is_err() {
                return r.fail("@rawstring is not UTF-8");
            }
            self.odd.push(at..r.pos);
        }
        // Every text and its newline, with one newline per event without a text (templated
        // texts are checked as they are rebuilt).
        if region.len() + self.odd.iter().map(|o| o.len() + 1).sum::<usize>() + self.flags.len()
            >= u32::MAX as usize
        {
            return r.fail("texts too long for one block");
        }
        self.line_events.clear();
        if plain < self.flags.len() {
            let lines = self.flags.iter().enumerate();
            self.line_events.extend(
                lines
                    .filter(|(_, &f)| f & (NO_RAW | ODD_RAW | TEMPLATED) == 0)
                    .map(|(i, _)| i as u32),
            );
        }
        self.plain = Some(texts);
        Ok(())
    }

    /// The texts, built on first use from the checked layout.
    fn texts(&self) -> &Texts {
        self.texts.get_or_init(|| {
            let mut spare = self
                .spare
                .0
                .lock()
                .map(|mut s| std::mem::take(&mut *s))
                .unwrap_or_default();
            self.build_texts(&mut spare);
            spare
        })
    }

    fn build_texts(&self, texts: &mut Texts) {
        let mut text = std::mem::take(&mut texts.text).into_bytes();
        let starts = &mut texts.starts;
        text.clear();
        starts.clear();
        let payload = &self.payload;
        let Some(plain) = &self.plain else {
            starts.push(0);
            return;
        };
        match plain {
            PlainTexts::Lines(range) => {
                text.extend_from_slice(&payload[range.clone()]);
                let mut at = 0;
                for end in memchr::memchr_iter(b'\n', &text) {
                    starts.push(at as u32);
                    at = end + 1;
                }
            }
            PlainTexts::Split(layout) => split::rebuild(payload, layout, &mut text, starts),
        }
        if starts.len() == self.flags.len() {
            starts.push(text.len() as u32);
        } else {
            self.in_event_order(&mut text, starts);
        }
        // Checked as UTF-8 when decoded, and cut only at newlines and separators (ASCII).
        texts.text = String::from_utf8(text).unwrap_or_default();
    }

    /// Puts the texts in event order when some events are not lines: those with line breaks
    /// come from `odd`, and events without a text get an empty one.
    fn in_event_order(&self, text: &mut Vec<u8>, starts: &mut Vec<u32>) {
        let plain = std::mem::take(text);
        let plain_starts = std::mem::take(starts);
        text.reserve(plain.len());
        let (mut next_plain, mut next_odd, mut next_template) = (0, 0, 0);
        for (index, &f) in self.flags.iter().enumerate() {
            starts.push(text.len() as u32);
            if f & NO_RAW != 0 {
            } else if f & TEMPLATED != 0 {
                self.render_template(next_template, index, text);
                next_template += 1;
            } else if f & ODD_RAW != 0 {
                if let Some(odd) = self.odd.get(next_odd) {
                    text.extend_from_slice(&self.payload[odd.clone()]);
                }
                next_odd += 1;
            } else {
                let from = plain_starts
                    .get(next_plain)
                    .map_or(plain.len(), |&s| s as usize);
                let to = plain_starts
                    .get(next_plain + 1)
                    .map_or(plain.len(), |&s| s as usize);
                // Without its newline, added below like every other text's.
                text.extend_from_slice(&plain[from..to.max(from + 1) - 1]);
                next_plain += 1;
            }
            text.push(b'\n');
        }
        starts.push(text.len() as u32);
    }

    /// Appends the text of event `index`, the `k`-th templated one, from its template and
    /// the columns.
    fn render_template(&self, k: usize, index: usize, text: &mut Vec<u8>) {
        let Some((templates, holes)) = &self.templates else {
            return;
        };
        let Some(t) = templates
            .codes
            .get(k)
            .and_then(|&c| templates.templates.get(c as usize))
        else {
            return;
        };
        text.extend_from_slice(t.first.as_bytes());
        let mut digits = itoa::Buffer::new();
        for (name, literal) in &t.holes {
            let value = holes
                .get(*name as usize)
                .copied()
                .flatten()
                .and_then(|c| self.column_at(c)?.get(index));
            if let Some(hole) = value.and_then(|v| hole_text(v, &mut digits)) {
                // A hole's value is a piece of a text without line breaks; should a damaged
                // column hold one, it must not cut the texts apart.
                let at = text.len();
                text.extend_from_slice(hole.as_bytes());
                if memchr::memchr(b'\n', &text[at..]).is_some() {
                    text[at..]
                        .iter_mut()
                        .filter(|b| **b == b'\n')
                        .for_each(|b| *b = b' ');
                }
            }
            text.extend_from_slice(literal.as_bytes());
        }
    }

    /// How many templates the block's texts share.
    pub fn template_count(&self) -> usize {
        self.templates
            .as_ref()
            .map_or(0, |(t, _)| t.templates.len())
    }

    /// Each templated event's index, with its template's number.
    pub(crate) fn templated_events(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        let codes = self
            .templates
            .as_ref()
            .map_or(&[][..], |(t, _)| &t.codes[..]);
        (0..self.len())
            .filter(|&i| self.is_templated(i))
            .zip(codes.iter().map(|&c| c as usize))
    }

    /// Whether event `i`'s text is rebuilt from a template and its fields.
    pub fn is_templated(&self, i: usize) -> bool {
        self.flags.get(i).is_some_and(|f| f & TEMPLATED != 0)
    }

    /// For each event, whether `test` holds for a piece of its template (a literal, or the
    /// text of a value in a hole), deciding each literal and each distinct value once; `None`
    /// when no text is templated. Events whose text is not templated get `None`. This decides
    /// exactly whether a text holds a single word: a word never crosses from a literal into a
    /// hole (see [`crate::template`]).
    pub fn match_template_pieces(&self, test: &dyn Fn(&str) -> bool) -> Option<Vec<Option<bool>>> {
        let (templates, holes) = self.templates.as_ref()?;
        let literal_hit: Vec<bool> = templates
            .templates
            .iter()
            .map(|t| test(&t.first) || t.holes.iter().any(|(_, l)| test(l)))
            .collect();
        // Per hole name: whether each value of its column (by slot, or by dictionary entry)
        // passes.
        let mut digits = itoa::Buffer::new();
        let mut value_hits: Vec<Option<Vec<bool>>> = Vec::with_capacity(holes.len());
        for c in holes {
            value_hits.push(c.and_then(|c| self.column_at(c)).map(|column| {
                match &column.values {
                    columns::Values::Dictionary { entries, .. } => {
                        entries.iter().map(test).collect()
                    }
                    _ => (0..column.count())
                        .map(|slot| {
                            column
                                .value_at(slot)
                                .and_then(|v| hole_text(v, &mut digits).map(|t| test(&t)))
                                .unwrap_or(false)
                        })
                        .collect(),
                }
            }));
        }
        let hole_hit = |name: u32, i: usize| -> bool {
            let (Some(Some(c)), Some(Some(hits))) =
                (holes.get(name as usize), value_hits.get(name as usize))
            else {
                return false;
            };
            let Some(column) = self.column_at(*c) else {
                return false;
            };
            let Some(slot) = column.slot(i) else {
                return false;
            };
            match &column.values {
                columns::Values::Dictionary { codes, .. } => hits[codes[slot] as usize],
                _ => hits[slot],
            }
        };
        let mut out = vec![None; self.len()];
        for (i, code) in self.templated_events() {
            let Some(t) = templates.templates.get(code) else {
                continue;
            };
            out[i] = Some(literal_hit[code] || t.holes.iter().any(|&(name, _)| hole_hit(name, i)));
        }
        Some(out)
    }

    /// The split columns of the block's lines, when they are stored that way and every line
    /// is among them (no text is templated).
    pub fn split_columns(&self) -> Option<SplitColumns<'_>> {
        if self.templates.is_some() {
            return None;
        }
        match &self.plain {
            Some(PlainTexts::Split(layout)) => Some(SplitColumns {
                payload: &self.payload,
                layout,
            }),
            _ => None,
        }
    }

    /// The event that is line `k` (of the events that are lines, in order).
    pub fn line_event(&self, k: usize) -> usize {
        match self.line_events.is_empty() {
            true => k,
            false => self.line_events.get(k).map_or(usize::MAX, |&i| i as usize),
        }
    }

    /// Events in the block.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the block has no events.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Event `i`'s `@timestamp`.
    pub fn timestamp(&self, i: usize) -> i64 {
        self.times[i]
    }

    /// Every event's text, each followed by a newline (see [`BlockView::text_starts`]).
    pub fn text(&self) -> &str {
        &self.texts().text
    }

    /// Where each event's text starts in [`BlockView::text`], then the end (one more than the
    /// events): event `i`'s text is `starts[i]..starts[i + 1] - 1`.
    pub fn text_starts(&self) -> &[u32] {
        &self.texts().starts
    }

    /// Event `i`'s `@rawstring`.
    pub fn raw(&self, i: usize) -> Option<&str> {
        let Texts { text, starts } = self.texts();
        (self.flags[i] & NO_RAW == 0).then(|| &text[starts[i] as usize..starts[i + 1] as usize - 1])
    }

    /// Whether every event has a `@rawstring` (a text filter then needs no whole event).
    pub fn every_event_has_text(&self) -> bool {
        self.flags.iter().all(|f| f & NO_RAW == 0)
    }

    /// Whether event `i` has a `@rawstring` without line breaks (a line of the text).
    pub fn is_line(&self, i: usize) -> bool {
        self.flags[i] & (NO_RAW | ODD_RAW) == 0
    }

    /// Event `i`'s tags.
    pub fn tags(&self, i: usize) -> &BTreeMap<String, String> {
        &self.tag_sets[self.tag_index[i] as usize]
    }

    /// Which events `scan` keeps by time range and tags (its tokens are the caller's). A view
    /// whose times are deferred keeps every time: its block lies within the scan's range.
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
        // Without a tag condition that any event fails, the loops need no tag look-up.
        let every_set = sets.iter().all(|&s| s);
        if !self.has(Deferred::Times) {
            if every_set {
                return vec![true; self.len()];
            }
            return self.tag_index.iter().map(|&t| sets[t as usize]).collect();
        }
        if every_set {
            let (start, end) = (scan.start, scan.end);
            return self.times.iter().map(|&t| t >= start && t < end).collect();
        }
        (0..self.len())
            .map(|i| {
                let t = self.times[i];
                t >= scan.start && t < scan.end && sets[self.tag_index[i] as usize]
            })
            .collect()
    }

    /// Builds event `i` with the given parts (its time and id always).
    pub fn event(&self, i: usize, parts: Parts) -> Event {
        let parsed_by = codec::parser_in_flags(self.flags[i]).ok().flatten();
        // Only what is asked for: the texts are built on first use.
        let raw = (parts.raw || (parts.fields && parsed_by.is_some() && !self.sectioned))
            .then(|| self.raw(i))
            .flatten();
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
                (true, _, _) if self.sectioned => self.column_fields(i),
                (true, Some(p), Some(raw)) => parsed_fields(p, raw, self.ingests[i]),
                (true, _, _) => self.fields[i].clone(),
            },
        }
    }

    /// Event `i`'s fields from the decompressed columns.
    fn column_fields(&self, i: usize) -> BTreeMap<String, Value> {
        (0..self.columns.len())
            .filter_map(|c| self.column_at(c))
            .filter(|c| c.name != crate::block::SENT_TIME)
            .filter_map(|c| Some((c.name.clone(), c.get(i)?.into())))
            .collect()
    }

    /// The names of the block's tags.
    pub fn tag_names(&self) -> impl Iterator<Item = &str> {
        self.tag_sets
            .iter()
            .flat_map(|t| t.keys().map(String::as_str))
    }

    /// Whether some event of the block has a tag named `name`.
    pub fn has_tag(&self, name: &str) -> bool {
        self.tag_sets.iter().any(|t| t.contains_key(name))
    }

    /// Whether the block's fields are stored as columns (else a parser derives them).
    pub fn has_columns(&self) -> bool {
        self.sectioned
    }

    /// The column of `field`, if the block has it and it was asked for (or the texts were).
    pub fn column(&self, field: &str) -> Option<&Column> {
        let c = self.columns.iter().position(|c| c.name() == field)?;
        self.column_at(c)
    }

    /// How many field columns the view holds (see [`BlockView::column_at`]).
    pub(crate) fn column_count(&self) -> usize {
        self.columns.len()
    }

    /// Column `c`, decompressed now if it was left compressed; `None` when it does not decode
    /// (then [`BlockView::late_error`] says why).
    pub(crate) fn column_at(&self, c: usize) -> Option<&Column> {
        let lazy = self.columns.get(c)?;
        lazy.decoded
            .get_or_init(|| {
                decode_column(&self.stored, &lazy.section, self.count, &mut Vec::new())
                    .map_err(|e| self.late_error.set(e))
                    .ok()
            })
            .as_ref()
    }

    /// Whether a value of column `c` may hold one of `bytes`, from its section's summary
    /// alone; `None` when the summary cannot tell (no byte set, or not a number).
    pub(crate) fn column_may_hold(&self, c: usize, bytes: &[u8]) -> Option<bool> {
        let s = &self.columns.get(c)?.section;
        match (s.bytes, s.range) {
            (Some(set), _) => Some(set.holds_any(bytes)),
            // Numbers are written with digits, '-' and '.' only.
            (None, Some(_)) => Some(
                bytes
                    .iter()
                    .any(|b| b.is_ascii_digit() || b"-.".contains(b)),
            ),
            (None, None) => None,
        }
    }

    /// Decompresses every column left compressed (before building whole events, which read
    /// them all): the first that does not decode is the error.
    pub fn decode_columns(&self) -> Result<(), BlockError> {
        (0..self.columns.len()).for_each(|c| {
            self.column_at(c);
        });
        self.late_error()
    }

    /// Why a column left compressed could not be decoded when first used: the block is damaged
    /// and what was read of it must not count.
    pub fn late_error(&self) -> Result<(), BlockError> {
        match self.late_error.get() {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// Every field column of the block, with a numeric one's range (known without
    /// decompressing it).
    pub fn column_names(&self) -> &[(String, Option<columns::Range>)] {
        &self.column_names
    }

    /// Event `i` as a bus record holds it: its fields only where no parser makes them (the
    /// parser is not run).
    pub(crate) fn bus_event(&self, i: usize) -> Event {
        let parsed = matches!(codec::parser_in_flags(self.flags[i]), Ok(Some(_)));
        self.event(
            i,
            Parts {
                fields: !parsed,
                ..Parts::ALL
            },
        )
    }

    /// Every event, whole.
    pub fn into_events(mut self) -> Vec<Event> {
        if self.sectioned {
            return (0..self.len()).map(|i| self.event(i, Parts::ALL)).collect();
        }
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
/// Decompresses and decodes column `s` of the block `stored` of `n` events.
fn decode_column(
    stored: &[u8],
    s: &Section,
    n: usize,
    buffer: &mut Vec<u8>,
) -> Result<Column, BlockError> {
    count_column_read(&s.name);
    sections::read(stored, s, buffer)?;
    Column::decode(&s.name, buffer, n).map_err(|e| BlockError::Section {
        section: s.label(),
        reason: e.to_string(),
    })
}

fn parsed_fields(p: Parser, raw: &str, ingest: i64) -> BTreeMap<String, Value> {
    p.fields_of(raw, ingest).unwrap_or_default()
}

/// `n` ids stored as zig-zag differences from the previous one, into `out`.
fn ids(r: &mut Reader<'_>, n: usize, out: &mut Vec<u128>) -> Result<(), DecodeError> {
    out.clear();
    let mut prev = 0u128;
    for _ in 0..n {
        prev = prev.wrapping_add(unzigzag128(r.varint128("truncated @id")?) as u128);
        out.push(prev);
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::{BlockBuilder, Compression};

    fn access_block() -> (Vec<u8>, usize) {
        let mut b = BlockBuilder::new();
        for n in 0..200 {
            let line = format!(
                r#"10.0.0.{n} - - [24/Nov/2026:10:00:00 +0000] "GET /a/{n} HTTP/1.1" 200 {n} "-" "curl/8""#
            );
            b.push(
                &Parser::Accesslog
                    .parse(&line, 1_795_000_000_000_000_000)
                    .unwrap(),
            );
        }
        let (stored, summary, _) = b.finish(Compression::ZstdAuto, 10);
        (stored, summary.raw_len as usize)
    }

    fn texts_only() -> BlockView {
        BlockView::with_needs(Needs {
            fields: Some(Vec::new()),
            ..Needs::ALL
        })
    }

    #[test]
    fn columns_the_query_does_not_name_are_decompressed_on_first_use() {
        let (stored, raw_len) = access_block();
        let mut view = texts_only();
        view.decode_stored(&stored, raw_len).unwrap();
        let url = view.columns.iter().position(|c| c.name() == "url").unwrap();
        assert!(view.columns[url].decoded.get().is_none());
        assert!(view.column_may_hold(url, b"\"") == Some(false));
        assert!(view.column_may_hold(url, b"/") == Some(true));
        let status = view
            .columns
            .iter()
            .position(|c| c.name() == "status")
            .unwrap();
        assert_eq!(view.column_may_hold(status, b"\""), Some(false));
        assert_eq!(view.column_may_hold(status, b"7"), Some(true));
        assert_eq!(
            view.raw(5),
            Some(
                r#"10.0.0.5 - - [24/Nov/2026:10:00:00 +0000] "GET /a/5 HTTP/1.1" 200 5 "-" "curl/8""#
            )
        );
        assert!(view.late_error().is_ok());
    }

    #[test]
    fn a_column_left_compressed_that_does_not_decode_is_a_late_error_naming_it() {
        let (mut stored, raw_len) = access_block();
        let s = sections::directory(&stored)
            .unwrap()
            .into_iter()
            .find(|s| s.role == Role::Column && s.name == "method")
            .unwrap();
        stored[s.span()].iter_mut().for_each(|b| *b ^= 0xff);
        sections::reseal(&mut stored);
        let mut view = texts_only();
        view.decode_stored(&stored, raw_len).unwrap();
        assert!(view.column("method").is_none());
        let e = view.late_error().unwrap_err().to_string();
        assert!(e.contains("column \"method\""), "{e}");
        assert!(view.decode_columns().is_err());
    }
}
