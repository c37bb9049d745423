//! A block: a run of one data source's events, laid out by column and compressed as one frame.
//!
//! The payload before compression (integers little-endian, `varint` = unsigned LEB128,
//! `zz` = zig-zag varint):
//!
//! ```text
//!  varint  n, the number of events
//!  varint  k, the number of distinct tag sets, then k × (varint m, m × (str name, str value))
//!  n × zz  @timestamp, each as the difference from the previous one (the first from 0)
//!  n × zz  @ingesttimestamp, likewise
//!  n × u8  flags, as in the bus encoding: bit 0 client @id, bits 1-3 parser code
//!  n × zz  @id as a 128-bit integer, the wrapping difference from the previous one
//!  n × varint  tag set index (only when k > 1)
//!  u8      the layout of the plain @rawstrings (those without a line break), in event order:
//!            0 lines: varint byte length, then each text followed by "\n"
//!            2 split: u8 separator, varint c (columns), one u8 per plain text (its pieces),
//!              c × varint column length, then the columns; piece i of a text, followed by
//!              "\n", is in column i, and the pieces joined by the separator are the text
//!              (how texts are cut: [`crate::split`])
//!            1 (written by earlier versions, still read): layout 2 with "," as separator
//!          the other @rawstrings (flag bit 5: they hold a line break), each varint length, bytes
//!          the fields of each event whose parser code is 0, one field map after another
//! ```
//!
//! Flags: bit 0 the client sent `@id`; bits 1-3 the parser code; bit 4 no `@rawstring`; bit 5
//! the `@rawstring` holds a line break.
//!
//! Texts take the split layout when their pieces line up (JSON objects cut at commas, access
//! logs at spaces; measured in [`crate::split`]): 12.7× on the benchmark's access logs at zstd
//! level 1 against 11.3× as lines at level 5, 5.98× on its application logs against 5.19×. A
//! trial compression of the first 64 KiB to choose was tried and misjudged: the gain only shows
//! over whole blocks.
//!
//! Why columns inside one frame: the compressor sees like next to like (timestamps that differ
//! by little, ids from one counter, lines without their lengths in between), which the benchmark
//! measured as better than rows; one frame keeps a block a single read and a single
//! decompression. Why no fields for parsed events: they are a function of `@rawstring` (see
//! [`eddy_event::Event::parsed_by`]), and storing both measured at about twice the size; the
//! parser gives them back when a block is read.
//!
//! On disk a block is one byte naming the codec (0 none, 1 zstd, 2 lz4: the store's own, older
//! numbering, `eddy_base::codec::Codec::segment_block_code`; new formats use the common table) and
//! the frame.

use std::collections::{BTreeMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::LazyLock;

use eddy_base::codec::Codec;
use eddy_event::codec::{self, FieldsRef};
use eddy_event::wire::{
    put_str, put_string_map, put_varint, put_varint128, zigzag, zigzag128, DecodeError,
};
use eddy_event::{Event, FlatFields, Parser, ValueRef};
use foldhash::HashMap;
use memchr::memmem::Finder;

use crate::bloom::{token_hash, token_hash_bytes, BloomFilter};
use crate::columns::ColumnBuilder;
use crate::layout::{LAYOUT_LINES, LAYOUT_SPLIT, NO_RAW, ODD_RAW, TEMPLATED};
use crate::sections::{self, Part, Role};
use crate::split::Splitter;
use crate::template::{HoleMaker, TemplateBuilder};
use crate::tokens::{byte_words, tag_tokens, text_tokens, value_tokens};
use crate::view::BlockView;

/// The zstd level of a block's core, templates and columns under [`Compression::ZstdAuto`].
/// Level 1, measured against 3 on the benchmark's data: JSON blocks 5 % smaller (their
/// columns of random ids gain nothing from the slower search), access-log blocks 1 % larger,
/// and a tenth fewer instructions to build a JSON block at the door.
const COLUMN_LEVEL: i32 = 1;

/// The column of the time text a client sent as `@timestamp` (never an event's field: the
/// view does not list it).
pub(crate) const SENT_TIME: &str = "@timestamp";

/// The text of a JSON `"@timestamp":"…"` or a key-value `@timestamp=…` in `raw`, if any.
fn sent_time_text(raw: &str) -> Option<&str> {
    // The searchers are built once: building one per event cost more than the search.
    static JSON_KEY: LazyLock<Finder<'static>> =
        LazyLock::new(|| Finder::new(b"\"@timestamp\":\""));
    static KV_KEY: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"@timestamp="));
    let bytes = raw.as_bytes();
    // A JSON object that opens with its time (what shippers write) needs no search: no key
    // starts at byte 0 when one starts at byte 1 (its second byte would be a quote, not '@').
    let json_key = match bytes.get(1..15) {
        Some(b"\"@timestamp\":\"") => Some(1),
        _ => JSON_KEY.find(bytes),
    };
    let (start, end) = if let Some(k) = json_key {
        let start = k + 14;
        (
            start,
            start + memchr::memchr2(b'"', b'\\', &raw.as_bytes()[start..])?,
        )
    } else {
        let start = KV_KEY.find(bytes)? + 11;
        let len =
            memchr::memchr2(b' ', b'"', &raw.as_bytes()[start..]).unwrap_or(raw.len() - start);
        (start, start + len)
    };
    raw.get(start..end).filter(|t| !t.is_empty())
}

/// Roughly the bytes a value takes encoded.
fn value_len(v: eddy_event::ValueRef<'_>) -> usize {
    match v {
        eddy_event::ValueRef::Str(s) => s.len() + 2,
        _ => 9,
    }
}

/// How blocks are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Stored as is.
    None,
    /// Zstandard at a level (1–22).
    Zstd(i32),
    /// Zstandard at the level measured best for each block's layout: 1 for split texts (access
    /// logs 12.7×, JSON 6.0×; higher levels are slower and hardly smaller), 5 for lines (access
    /// logs as lines: 11.3× where levels 1–4 stay under 10×). The default.
    ZstdAuto,
    /// LZ4 (block format with the size prepended): faster, larger.
    Lz4,
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Compression::None => write!(f, "none"),
            Compression::Zstd(level) => write!(f, "zstd-{level}"),
            Compression::ZstdAuto => write!(f, "zstd"),
            Compression::Lz4 => write!(f, "lz4"),
        }
    }
}

impl std::str::FromStr for Compression {
    type Err = String;

    /// `none`, `lz4`, `zstd` (level by layout) or `zstd-N`.
    fn from_str(s: &str) -> Result<Compression, String> {
        match s {
            "none" => Ok(Compression::None),
            "lz4" => Ok(Compression::Lz4),
            "zstd" => Ok(Compression::ZstdAuto),
            _ => match s.strip_prefix("zstd-").and_then(|l| l.parse::<i32>().ok()) {
                Some(level) if (1..=22).contains(&level) => Ok(Compression::Zstd(level)),
                _ => Err(format!(
                    "unknown compression {s:?}; expected none, lz4, zstd or zstd-1 … zstd-22"
                )),
            },
        }
    }
}

/// Why a stored block could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    /// The codec byte is unknown.
    #[error("unknown block codec {0}")]
    UnknownCodec(u8),
    /// The frame does not decompress.
    #[error("the compressed frame is damaged: {0}")]
    Decompress(String),
    /// The payload does not decode.
    #[error("the block's events do not decode: {0}")]
    Payload(#[from] DecodeError),
    /// One section of a sectioned block is damaged.
    #[error("{section}: {reason}")]
    Section {
        /// Which (e.g. `column "status"`).
        section: String,
        /// What is wrong.
        reason: String,
    },
}

/// Hashes are already uniformly spread: a set of them needs no second hash.
#[derive(Default)]
struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, _: &[u8]) {
        unreachable!("only u64 token hashes are hashed")
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
    fn write_u128(&mut self, v: u128) {
        self.0 = v as u64;
    }
}

type HashOnly = BuildHasherDefault<IdentityHasher>;

/// Columns a block keeps for the next to reuse (more are dropped: data with ever new field
/// names would otherwise keep them all).
const MAX_SPARE_COLUMNS: usize = 64;

/// Slots of [`BlockTokens`]' memory of recent text hashes.
const RECENT_TEXTS: usize = 1024;

/// Slots of [`BlockTokens`]' memory of recent token hashes.
const RECENT_TOKENS: usize = 4096;

/// The distinct tokens of a block, as hashes.
struct BlockTokens {
    set: HashSet<u64, HashOnly>,
    /// A direct-mapped memory of recent hashes: most tokens repeat within a block (methods,
    /// status codes, common words), and it spares the set most of its lookups.
    recent: Vec<u64>,
    /// The 128-bit hashes of the texts already taken apart into words (collisions: about one
    /// in 2^100 blocks).
    texts: HashSet<u128, HashOnly>,
    /// A direct-mapped memory of recent text hashes in front of `texts`, as `recent` is in
    /// front of `set`: a block's set outgrows the caches, and most pieces repeat.
    recent_texts: Vec<u128>,
}

impl Default for BlockTokens {
    fn default() -> BlockTokens {
        BlockTokens {
            set: HashSet::default(),
            recent: vec![0; RECENT_TOKENS],
            texts: HashSet::default(),
            recent_texts: vec![0; RECENT_TEXTS],
        }
    }
}

impl BlockTokens {
    fn add(&mut self, token: &str) {
        self.add_hash(token_hash(token));
    }

    fn add_hash(&mut self, h: u64) {
        match self.recent.get_mut((h as usize) % RECENT_TOKENS) {
            Some(slot) if *slot == h && h != 0 => {}
            Some(slot) => {
                *slot = h;
                self.set.insert(h);
            }
            None => {
                self.set.insert(h);
            }
        }
    }

    /// Adds the words of a piece of text, unless the block already had that piece: a text's
    /// words are the union of its pieces' words (pieces are cut at non-word bytes), and most
    /// pieces of a log repeat (user agents, request lines, JSON key-value pairs), so hashing a
    /// piece whole once costs far less than taking it apart again.
    fn add_words_of(&mut self, piece: &[u8]) {
        if self.new_text(xxhash_rust::xxh3::xxh3_128(piece)) {
            byte_words(piece, |t| self.add_hash(token_hash_bytes(t)));
        }
    }

    /// Adds the tokens of a field value whose text is `text` (the words, when a field's hole
    /// in its parsed text: `value_tokens` of a parsed event's field adds no words, so these
    /// are the text's words and the value whole), unless the block had a value of that text:
    /// hashing the text once costs less than hashing its whole-value token and its words.
    fn add_value_text(&mut self, text: &str, scratch: &mut String) {
        // Salted: a literal or line piece of the same text added its words, not the whole.
        const VALUE: u128 = 0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834;
        if self.new_text(xxhash_rust::xxh3::xxh3_128(text.as_bytes()) ^ VALUE) {
            byte_words(text.as_bytes(), |t| self.add_hash(token_hash_bytes(t)));
            value_tokens(ValueRef::Str(text), false, scratch, &mut |t: &str| {
                self.add(t)
            });
        }
    }

    /// Whether the block had no text of hash `h` before (it has now).
    fn new_text(&mut self, h: u128) -> bool {
        match self.recent_texts.get_mut((h as usize) % RECENT_TEXTS) {
            Some(slot) if *slot == h && h != 0 => false,
            Some(slot) => {
                *slot = h;
                self.texts.insert(h)
            }
            None => self.texts.insert(h),
        }
    }

    fn clear(&mut self) {
        self.set.clear();
        // A remembered hash would keep a text's words out of the next block's set.
        self.recent_texts.fill(0);
        self.texts.clear();
        // A remembered hash would keep a token out of the next block's set.
        self.recent.fill(0);
    }
}

/// What a block says about itself without being decompressed.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockSummary {
    /// Events in the block.
    pub count: u32,
    /// Earliest `@timestamp`.
    pub min_time: i64,
    /// Latest `@timestamp`.
    pub max_time: i64,
    /// Bytes of the payload before compression.
    pub raw_len: u32,
}

/// A block being filled.
#[derive(Default)]
pub struct BlockBuilder {
    count: u32,
    min_time: i64,
    max_time: i64,
    prev_time: i64,
    prev_ingest: i64,
    prev_id: u128,
    tag_sets: HashMap<BTreeMap<String, String>, u32>,
    last_tags: BTreeMap<String, String>,
    timestamps: Vec<u8>,
    ingests: Vec<u8>,
    flags: Vec<u8>,
    ids: Vec<u8>,
    tag_indexes: Vec<u32>,
    /// The plain texts stored as text (not templated), each followed by a newline.
    lines: Vec<u8>,
    odd_raws: Vec<u8>,
    /// Bytes of the texts rebuilt from templates and of unparsed events' fields (what the
    /// block holds before it is encoded, for its size).
    other_bytes: usize,
    columns: Vec<ColumnBuilder>,
    /// The previous block's columns, emptied, for this block's columns to reuse.
    spare_columns: Vec<ColumnBuilder>,
    column_of: HashMap<String, usize>,
    /// The columns of the previous event's fields, in its order.
    field_order: Vec<usize>,
    templates: TemplateBuilder,
    tokens: BlockTokens,
    /// The fields of the event being added, when its parser derives them.
    derived: FlatFields,
    /// The text of a decimal value, for its tokens.
    scratch: String,
    // Kept from block to block: refilling memory that is already mapped costs no page faults.
    splitter: Splitter,
    compressor: Option<zstd::bulk::Compressor<'static>>,
}

impl BlockBuilder {
    /// An empty block.
    pub fn new() -> BlockBuilder {
        BlockBuilder::default()
    }

    /// Events added so far.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes of payload so far (what "block size" counts: the raw side of the ratio).
    pub fn payload_len(&self) -> usize {
        self.timestamps.len()
            + self.ingests.len()
            + self.flags.len()
            + self.ids.len()
            + self.tag_indexes.len()
            + self.lines.len()
            + self.odd_raws.len()
            + self.other_bytes
    }

    /// Adds an event.
    pub fn push(&mut self, event: &Event) {
        self.push_with(event, FieldsRef::Map(&event.fields));
    }

    /// Adds an event whose fields are given apart (`event.fields` is not read), e.g. still
    /// encoded as the bus holds them: no field map is built for an event whose parser gives
    /// its fields back anyway. Returns whether the event's tags differ from the previous event's
    /// in this block (always for its first event), so a caller tracking tags compares only then.
    ///
    /// An event whose parser makes its fields, given without them (an empty map: what a bus
    /// record holds, see [`eddy_event::codec::decode_lazily`]), gets them from its parser here,
    /// into a buffer the block keeps; should the parser no longer read its text, it is stored
    /// as [`eddy_event::codec::derive_fields`] leaves it: its text, without fields or parser.
    pub fn push_with(&mut self, event: &Event, fields: FieldsRef<'_>) -> bool {
        let mut derived = std::mem::take(&mut self.derived);
        let (fields, parser) = match (fields, event.parsed_by, event.raw.as_deref()) {
            (FieldsRef::Map(m), Some(parser), Some(raw)) if m.is_empty() => {
                match parser.fields_into(raw, event.ingest_timestamp, &mut derived) {
                    Ok(()) => (FieldsRef::Flat(&derived), Some(parser)),
                    Err(_) => (fields, None),
                }
            }
            _ => (fields, event.parsed_by),
        };
        let new_tags = self.push_parsed(event, parser, fields);
        self.derived = derived;
        new_tags
    }

    /// [`BlockBuilder::push_with`] once the event's fields are known, made by `parser`.
    fn push_parsed(
        &mut self,
        event: &Event,
        parser: Option<Parser>,
        fields: FieldsRef<'_>,
    ) -> bool {
        if self.count == 0 {
            self.min_time = event.timestamp;
            self.max_time = event.timestamp;
        } else {
            self.min_time = self.min_time.min(event.timestamp);
            self.max_time = self.max_time.max(event.timestamp);
        }
        self.count += 1;
        put_varint(
            &mut self.timestamps,
            zigzag(event.timestamp.wrapping_sub(self.prev_time)),
        );
        self.prev_time = event.timestamp;
        put_varint(
            &mut self.ingests,
            zigzag(event.ingest_timestamp.wrapping_sub(self.prev_ingest)),
        );
        self.prev_ingest = event.ingest_timestamp;
        let mut flags = codec::flags(event.id_from_client, parser);
        // Bit k: the tokens of the k-th field are in already (see `BlockTokens::add_value_text`).
        let mut tokens_done: u64 = 0;
        // The time a client sent is read into `@timestamp` and is no field; its text is kept
        // in a column of its own so that it can be a hole of the template.
        let sent_time = match (parser, &event.raw) {
            (Some(_), Some(raw)) => sent_time_text(raw),
            _ => None,
        };
        let id = event.id.as_u128();
        put_varint128(
            &mut self.ids,
            zigzag128(id.wrapping_sub(self.prev_id) as i128),
        );
        self.prev_id = id;
        let tokens = &mut self.tokens;
        // Most events of a data source share the previous event's tags: no hashing then.
        let mut new_tags = false;
        let index = match self.tag_indexes.last() {
            Some(&last) if self.last_tags == event.tags => last,
            _ => {
                new_tags = true;
                let index = match self.tag_sets.get(&event.tags) {
                    Some(&i) => i,
                    None => {
                        let next = self.tag_sets.len() as u32;
                        self.tag_sets.insert(event.tags.clone(), next);
                        for v in event.tags.values() {
                            tag_tokens(v, |t| tokens.add(t));
                        }
                        next
                    }
                };
                self.last_tags.clone_from(&event.tags);
                index
            }
        };
        self.tag_indexes.push(index);
        match &event.raw {
            None => flags |= NO_RAW,
            Some(raw) if memchr::memchr(b'\n', raw.as_bytes()).is_some() => {
                flags |= ODD_RAW;
                put_str(&mut self.odd_raws, raw);
                text_tokens(raw, |t| self.tokens.add(t));
            }
            Some(raw)
                if parser.is_some()
                    && self.templates.add(
                        raw,
                        fields,
                        sent_time.map(|t| (SENT_TIME, ValueRef::Str(t))),
                    ) =>
            {
                flags |= TEMPLATED;
                self.other_bytes += raw.len() + 1;
                // The holes stand apart from the words around them (see `crate::template`):
                // the text's words are its literals' words and its values' words. A template
                // the block already had brought its literals' words then (the literals are
                // part of the template): only the values are new.
                let literals_known = !self.templates.last_was_new();
                let mut at = 0;
                let holes = self.templates.last_holes().iter();
                for (&(start, end, _), maker) in holes.zip(self.templates.last_hole_makers()) {
                    if !literals_known {
                        self.tokens.add_words_of(&raw.as_bytes()[at..start]);
                    }
                    // A field's hole holds the field's text as its value's tokens read it:
                    // its whole-value token comes with its words, once per distinct text.
                    match (maker, raw.get(start..end)) {
                        (HoleMaker::Field(f), Some(text)) if f < 64 => {
                            self.tokens.add_value_text(text, &mut self.scratch);
                            tokens_done |= 1 << f;
                        }
                        _ => self.tokens.add_words_of(&raw.as_bytes()[start..end]),
                    }
                    at = end;
                }
                if !literals_known {
                    self.tokens.add_words_of(&raw.as_bytes()[at..]);
                }
            }
            Some(raw) => {
                self.lines.extend_from_slice(raw.as_bytes());
                self.lines.push(b'\n');
            }
        }
        self.flags.push(flags);
        let row = self.count - 1;
        if let Some(t) = sent_time.filter(|_| flags & TEMPLATED != 0) {
            let column = self.column_index(SENT_TIME);
            self.columns[column].push(row, ValueRef::Str(t));
        }
        // The words of plain texts are gathered when the block is finished (see
        // `BlockTokens::add_words_of`); a parsed text's fields have their words in it.
        let words = parser.is_none() || event.raw.is_none();
        let mut k = 0;
        let mut scratch = std::mem::take(&mut self.scratch);
        fields.for_each(|name, v| {
            // Events of a source mostly have the fields of the one before, in the same order.
            let guess = self.field_order.get(k).copied();
            let column = match guess.filter(|&c| self.columns[c].name == name) {
                Some(c) => c,
                None => self.column_index(name),
            };
            match self.field_order.get_mut(k) {
                Some(slot) => *slot = column,
                None => self.field_order.push(column),
            }
            self.columns[column].push(row, v);
            if parser.is_none() {
                self.other_bytes += name.len() + value_len(v);
            }
            if k >= 64 || tokens_done & (1 << k) == 0 {
                let tokens = &mut self.tokens;
                value_tokens(v, words, &mut scratch, &mut |t: &str| tokens.add(t));
            }
            k += 1;
        });
        self.scratch = scratch;
        new_tags
    }

    /// The column of field `name`, made if the block has none yet.
    fn column_index(&mut self, name: &str) -> usize {
        if let Some(&c) = self.column_of.get(name) {
            return c;
        }
        // Mostly the previous block had it, with memory of the right size.
        let spare = self.spare_columns.iter().position(|c| c.name == name);
        let column = match spare.or_else(|| self.spare_columns.len().checked_sub(1)) {
            Some(i) => {
                let mut column = self.spare_columns.swap_remove(i);
                column.reuse_for(name);
                column
            }
            None => ColumnBuilder::new(name),
        };
        self.columns.push(column);
        self.column_of
            .insert(name.to_string(), self.columns.len() - 1);
        self.columns.len() - 1
    }

    /// The core section's payload: count, tag sets, flags, tag indexes (the times and the
    /// arrivals are sections of their own).
    fn write_core(&self, out: &mut Vec<u8>) {
        put_varint(out, u64::from(self.count));
        let mut sets: Vec<(&BTreeMap<String, String>, u32)> =
            self.tag_sets.iter().map(|(t, &i)| (t, i)).collect();
        sets.sort_unstable_by_key(|&(_, i)| i);
        put_varint(out, sets.len() as u64);
        for (tags, _) in &sets {
            put_string_map(out, tags);
        }
        out.extend_from_slice(&self.flags);
        if sets.len() > 1 {
            for &i in &self.tag_indexes {
                put_varint(out, u64::from(i));
            }
        }
    }

    /// The text section's payload: the plain texts as lines or, given a separator, in the
    /// split layout `self.splitter` holds; then the texts with line breaks.
    fn write_texts(&self, split: Option<u8>, out: &mut Vec<u8>) {
        match split {
            Some(separator) => {
                out.push(LAYOUT_SPLIT);
                self.splitter.write(separator, out);
            }
            None => {
                out.push(LAYOUT_LINES);
                put_varint(out, self.lines.len() as u64);
                out.extend_from_slice(&self.lines);
            }
        }
        out.extend_from_slice(&self.odd_raws);
    }

    /// The block as sections (see [`crate::sections`]), compressed at the levels of
    /// `compression` (`None`: stored as they are).
    fn write_sections(
        &self,
        split: Option<u8>,
        levels: [(Codec, i32); 2],
        compressor: &mut Option<zstd::bulk::Compressor<'static>>,
    ) -> (Vec<u8>, usize) {
        let mut core = Vec::with_capacity(self.flags.len() * 2 + 64);
        self.write_core(&mut core);
        let mut arrivals = Vec::with_capacity(self.ingests.len() + self.ids.len());
        arrivals.extend_from_slice(&self.ingests);
        arrivals.extend_from_slice(&self.ids);
        let mut texts = Vec::with_capacity(self.lines.len() + self.odd_raws.len() + 16);
        self.write_texts(split, &mut texts);
        let mut templates = Vec::new();
        if !self.templates.is_empty() {
            self.templates.write(&mut templates);
        }
        let mut order: Vec<usize> = (0..self.columns.len()).collect();
        order.sort_unstable_by(|&a, &b| self.columns[a].name.cmp(&self.columns[b].name));
        let n = self.count as usize;
        let encoded: Vec<Vec<u8>> = order
            .iter()
            .map(|&c| {
                let mut out = Vec::new();
                self.columns[c].encode(n, &mut out);
                out
            })
            .collect();
        let [text_level, other_level] = levels;
        let mut parts = vec![
            Part {
                role: Role::Core,
                name: "",
                payload: &core,
                range: None,
                bytes: None,
                level: other_level,
            },
            Part {
                role: Role::Times,
                name: "",
                payload: &self.timestamps,
                range: None,
                bytes: None,
                level: other_level,
            },
            Part {
                role: Role::Arrivals,
                name: "",
                payload: &arrivals,
                range: None,
                bytes: None,
                level: other_level,
            },
            Part {
                role: Role::Text,
                name: "",
                payload: &texts,
                range: None,
                bytes: None,
                level: text_level,
            },
        ];
        if !templates.is_empty() {
            parts.push(Part {
                role: Role::Templates,
                name: "",
                payload: &templates,
                range: None,
                bytes: None,
                level: other_level,
            });
        }
        for (&c, payload) in order.iter().zip(&encoded) {
            let column = &self.columns[c];
            parts.push(Part {
                role: Role::Column,
                name: &column.name,
                payload,
                range: column.range(),
                bytes: column.byte_set(),
                level: other_level,
            });
        }
        let raw_len = parts.iter().map(|p| p.payload.len()).sum();
        (sections::write(&parts, compressor), raw_len)
    }

    /// The events added so far, read back from the payload.
    pub fn events(&self) -> Vec<Event> {
        self.view().into_events()
    }

    /// The events added so far as a decoded block (how the work in progress is searched
    /// before its block is complete).
    pub fn view(&self) -> BlockView {
        let (stored, raw_len) = self.write_sections(None, [(Codec::None, 0); 2], &mut None);
        let mut view = BlockView::default();
        // A block this builder wrote always decodes.
        match view.decode_stored(&stored, raw_len) {
            Ok(()) => view,
            Err(_) => BlockView::default(),
        }
    }

    /// Finishes the block: its stored bytes (codec byte + frame), its summary and its bloom
    /// filter at `bits_per_token`.
    pub fn finish(
        mut self,
        compression: Compression,
        bits_per_token: usize,
    ) -> (Vec<u8>, BlockSummary, BloomFilter) {
        self.finish_and_reset(compression, bits_per_token)
    }

    /// Like [`BlockBuilder::finish`], but leaves the builder empty with its buffers kept, so
    /// the next block of a data source fills memory that is already there.
    pub fn finish_and_reset(
        &mut self,
        compression: Compression,
        bits_per_token: usize,
    ) -> (Vec<u8>, BlockSummary, BloomFilter) {
        let split = match compression {
            Compression::None => None,
            _ => self.splitter.split(&self.lines),
        };
        match split {
            Some(_) => {
                for column in self.splitter.columns() {
                    for piece in column.split(|&b| b == b'\n') {
                        self.tokens.add_words_of(piece);
                    }
                }
            }
            None => {
                for line in self.lines.split(|&b| b == b'\n') {
                    self.tokens.add_words_of(line);
                }
            }
        }
        let mut bloom = BloomFilter::with_capacity(self.tokens.set.len(), bits_per_token);
        for &h in &self.tokens.set {
            bloom.insert_hash(h);
        }
        let levels = match compression {
            Compression::None => [(Codec::None, 0); 2],
            Compression::Lz4 => [(Codec::Lz4, 0); 2],
            Compression::Zstd(level) => [(Codec::Zstd, level); 2],
            Compression::ZstdAuto => [
                (Codec::Zstd, if split.is_some() { 1 } else { 5 }),
                (Codec::Zstd, COLUMN_LEVEL),
            ],
        };
        let mut compressor = self.compressor.take();
        let stored = self.write_sections(split, levels, &mut compressor);
        self.compressor = compressor;
        let (stored, raw_len) = stored;
        let summary = BlockSummary {
            count: self.count,
            min_time: self.min_time,
            max_time: self.max_time,
            raw_len: u32::try_from(raw_len).unwrap_or(u32::MAX),
        };
        self.reset();
        (stored, summary, bloom)
    }

    fn reset(&mut self) {
        self.count = 0;
        (
            self.min_time,
            self.max_time,
            self.prev_time,
            self.prev_ingest,
            self.prev_id,
        ) = (0, 0, 0, 0, 0);
        self.tag_sets.clear();
        self.last_tags.clear();
        for column in [
            &mut self.timestamps,
            &mut self.ingests,
            &mut self.flags,
            &mut self.ids,
            &mut self.lines,
            &mut self.odd_raws,
        ] {
            column.clear();
        }
        self.other_bytes = 0;
        // The previous block's spares unused are dropped: kept are at most a block's columns.
        self.spare_columns.clear();
        self.spare_columns
            .extend(self.columns.drain(..).take(MAX_SPARE_COLUMNS));
        self.column_of.clear();
        self.field_order.clear();
        self.templates.clear();
        self.tag_indexes.clear();
        self.tokens.clear();
    }
}

/// The largest block payload read: blocks close at `block_size` (at most 64 MiB) plus one event
/// (at most the bus's largest batch, 64 MiB).
pub const MAX_PAYLOAD: usize = 128 << 20;

/// Decompresses a stored block (codec byte + frame) whose payload is `raw_len` bytes.
pub fn decompress(stored: &[u8], raw_len: usize) -> Result<Vec<u8>, BlockError> {
    let mut payload = Vec::new();
    decompress_into(stored, raw_len, &mut payload)?;
    Ok(payload)
}

/// Decompresses a zstd frame of `raw_len` bytes into `out` (which must be empty), with the
/// reading thread's context.
pub(crate) fn zstd_into(frame: &[u8], raw_len: usize, out: &mut Vec<u8>) -> Result<(), String> {
    eddy_base::codec::zstd_into(frame, raw_len, out).map_err(|e| e.to_string())
}

/// [`decompress`] into `payload` (replacing what it held, keeping its memory).
pub fn decompress_into(
    stored: &[u8],
    raw_len: usize,
    payload: &mut Vec<u8>,
) -> Result<(), BlockError> {
    let Some((&code, frame)) = stored.split_first() else {
        return Err(BlockError::Decompress("the block is empty".into()));
    };
    // A damaged length must not make us allocate: nothing larger is ever written.
    if raw_len > MAX_PAYLOAD {
        return Err(BlockError::Decompress(format!(
            "a payload of {raw_len} bytes is over the limit of {MAX_PAYLOAD}"
        )));
    }
    payload.clear();
    match Codec::from_segment_block_code(code) {
        Some(Codec::None) => payload.extend_from_slice(frame),
        Some(Codec::Zstd) => {
            // Frames are written with their content size: checked before memory is reserved.
            match zstd::zstd_safe::get_frame_content_size(frame) {
                Ok(Some(size)) if size == raw_len as u64 => {}
                Ok(Some(size)) => {
                    return Err(BlockError::Decompress(format!(
                        "the frame holds {size} bytes where the footer says {raw_len}"
                    )))
                }
                _ => {
                    return Err(BlockError::Decompress(
                        "the frame header is damaged (no content size)".into(),
                    ))
                }
            }
            zstd_into(frame, raw_len, payload).map_err(BlockError::Decompress)?;
        }
        Some(Codec::Lz4) => {
            // The size lz4 prepends is checked first: lz4_flex allocates what it says.
            let size = frame
                .get(..4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize);
            if size != Some(raw_len) {
                return Err(BlockError::Decompress(format!(
                    "the frame's size ({size:?}) is not the footer's {raw_len}"
                )));
            }
            *payload = lz4_flex::decompress_size_prepended(frame)
                .map_err(|e| BlockError::Decompress(e.to_string()))?
        }
        None => return Err(BlockError::UnknownCodec(code)),
    };
    if payload.len() != raw_len {
        return Err(BlockError::Decompress(format!(
            "{} bytes came out where the footer says {raw_len}",
            payload.len()
        )));
    }
    Ok(())
}

/// Decodes a stored block into its events.
pub fn decode(stored: &[u8], raw_len: usize) -> Result<Vec<Event>, BlockError> {
    let mut view = BlockView::default();
    view.decode_stored(stored, raw_len)?;
    Ok(view.into_events())
}

/// Decodes an uncompressed payload. Parsed events get their fields from their parser.
pub fn decode_payload(payload: &[u8]) -> Result<Vec<Event>, DecodeError> {
    Ok(BlockView::decode(payload)?.into_events())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use eddy_event::Parser;
    use proptest::prelude::*;

    /// Events as the bus holds them: unparsed ones with any content, and lines parsed by a
    /// real parser (whose fields the block drops and re-derives).
    pub(crate) fn event() -> impl Strategy<Value = Event> {
        let unparsed = eddy_event::arbitrary::event(
            proptest::option::of("(.|\n|,){0,80}"),
            proptest::collection::btree_map("[a-z]{1,4}", "[a-z0-9]{0,3}", 0..3),
            proptest::collection::btree_map(".{0,10}", eddy_event::arbitrary::value(), 0..6),
            Just(None),
        );
        let parsed = (
            prop_oneof![
                Just(Parser::Accesslog),
                Just(Parser::Json),
                Just(Parser::Kv),
                Just(Parser::None)
            ],
            100u16..600,
            "[a-z /]{0,12}",
            1_600_000_000_000_000_000i64..1_900_000_000_000_000_000,
        )
            .prop_map(|(parser, status, path, now)| {
                let line = match parser {
                    Parser::Accesslog => format!(
                        r#"10.0.0.{} - - [24/Nov/2026:10:00:00 +0000] "GET /{path} HTTP/1.1" {status} 12 "-" "curl/8""#,
                        status % 256
                    ),
                    Parser::Json => format!(r#"{{"status":{status},"path":"{path}","ok":true}}"#),
                    _ => format!("status={status} path=\"{path}\""),
                };
                parser.parse(&line, now).unwrap()
            });
        prop_oneof![unparsed, parsed, json_of_few_shapes()]
    }

    /// JSON lines of a few shapes whose values often repeat the keys, each other or the
    /// punctuation, or cannot be holes (escaped, empty, floats written two ways): a block
    /// refills the templates of earlier events of a shape (see `crate::template`), which must
    /// spell the text exactly or be refused.
    fn json_of_few_shapes() -> impl Strategy<Value = Event> {
        let value = prop_oneof![
            Just("\"a\"".to_string()),
            Just("\"ok\"".to_string()),
            Just("\"\"".to_string()),
            Just("\"a b\"".to_string()),
            Just("\"x\\\"y\"".to_string()),
            Just("\"é\"".to_string()),
            Just("\"1\"".to_string()),
            Just("1".to_string()),
            Just("12".to_string()),
            Just("1.50".to_string()),
            Just("1.5".to_string()),
            Just("true".to_string()),
            Just("null".to_string()),
        ];
        let key = prop_oneof![Just("a"), Just("ok"), Just("b"), Just("@timestamp")];
        (
            proptest::collection::vec((key, value), 0..5),
            1_600_000_000_000_000_000i64..1_900_000_000_000_000_000,
        )
            .prop_map(|(pairs, now)| {
                let body: Vec<String> = pairs.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
                let line = format!("{{{}}}", body.join(","));
                Parser::Json.parse(&line, now).unwrap()
            })
    }

    fn build(events: &[Event]) -> BlockBuilder {
        let mut b = BlockBuilder::new();
        for e in events {
            b.push(e);
        }
        b
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn a_blocks_tokens_are_exactly_its_events_tokens(
            events in proptest::collection::vec(event(), 1..40),
            twice in any::<bool>(),
        ) {
            // Events again (values, templates and texts the block has seen) must add nothing
            // and miss nothing: the tokens of a field's hole come once per text.
            let mut b = BlockBuilder::new();
            let mut expected = HashSet::new();
            for e in events.iter().chain(events.iter().filter(|_| twice)) {
                // As the digest adds them: parsed events without their fields.
                let mut read = e.clone();
                if read.parsed_by.is_some() && read.raw.is_some() {
                    read.fields.clear();
                }
                b.push(&read);
                crate::tokens::event_tokens(e, |t| {
                    expected.insert(token_hash(t));
                });
            }
            // The set is complete once the plain texts' words are in (at finishing): compare
            // the set the bloom filter is built from.
            let split = b.splitter.split(&b.lines);
            match split {
                Some(_) => {
                    for column in b.splitter.columns() {
                        for piece in column.split(|&c| c == b'\n') {
                            b.tokens.add_words_of(piece);
                        }
                    }
                }
                None => {
                    for line in b.lines.split(|&c| c == b'\n') {
                        b.tokens.add_words_of(line);
                    }
                }
            }
            let got: HashSet<u64> = b.tokens.set.iter().copied().collect();
            prop_assert_eq!(got, expected);
        }

        #[test]
        fn blocks_roundtrip_with_every_codec(events in proptest::collection::vec(event(), 1..40)) {
            for compression in [Compression::None, Compression::Zstd(3), Compression::Lz4, Compression::ZstdAuto] {
                let (stored, summary, bloom) = build(&events).finish(compression, 10);
                prop_assert_eq!(summary.count as usize, events.len());
                prop_assert_eq!(summary.min_time, events.iter().map(|e| e.timestamp).min().unwrap());
                prop_assert_eq!(summary.max_time, events.iter().map(|e| e.timestamp).max().unwrap());
                prop_assert_eq!(&decode(&stored, summary.raw_len as usize).unwrap(), &events);
                for e in &events {
                    crate::tokens::event_tokens(e, |t| assert!(bloom.may_contain(t), "{t} missing"));
                }
            }
        }

        #[test]
        fn damaged_blocks_error_never_panic(
            events in proptest::collection::vec(event(), 1..10),
            flip in any::<usize>(), bit in 0u8..8, cut in any::<usize>(),
        ) {
            for compression in [Compression::None, Compression::Zstd(3), Compression::Lz4] {
                let (stored, summary, _) = build(&events).finish(compression, 10);
                let mut bad = stored.clone();
                let i = flip % bad.len();
                bad[i] ^= 1 << bit;
                let _ = decode(&bad, summary.raw_len as usize);
                let _ = decode(&stored[..cut % stored.len()], summary.raw_len as usize);
            }
        }

        #[test]
        fn arbitrary_payloads_error_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode_payload(&data);
        }
    }

    #[test]
    fn the_open_block_reads_back() {
        let e = Parser::Json.parse(r#"{"a":1}"#, 5).unwrap();
        let b = build(&[e.clone(), e.clone()]);
        assert_eq!(b.events(), vec![e.clone(), e]);
    }

    #[test]
    fn json_and_access_lines_become_templates_and_would_split_as_text() {
        let json: Vec<Event> = (0..2000)
            .map(|i| {
                let line = format!(
                    r#"{{"service":"orders","host":"h-{}","level":"INFO","message":"done {i} in {}ms, ok","n":{i}}}"#,
                    i % 7,
                    i % 13
                );
                Parser::Json.parse(&line, i).unwrap()
            })
            .collect();
        let access: Vec<Event> = (0..500)
            .map(|i| {
                let line = format!(
                    r#"10.0.0.{} - - [24/Nov/2026:10:00:00 +0000] "GET /a/{i} HTTP/1.1" 200 {i} "-" "Mozilla/5.0 (X11, Linux)""#,
                    i % 9
                );
                Parser::Accesslog.parse(&line, i).unwrap()
            })
            .collect();
        for (events, separator) in [(json, b','), (access, b' ')] {
            // Parsed texts are templates over their fields; as texts, they would be split.
            let mut b = build(&events);
            assert!(b.lines.is_empty() && b.templates.len() == events.len());
            let texts: Vec<u8> = events
                .iter()
                .flat_map(|e| format!("{}\n", e.raw.as_deref().unwrap()).into_bytes())
                .collect();
            assert_eq!(b.splitter.split(&texts), Some(separator));
            let (stored, summary, bloom) = b.finish(Compression::ZstdAuto, 10);
            assert_eq!(decode(&stored, summary.raw_len as usize).unwrap(), events);
            // Words gathered from the columns are every event's words.
            for e in &events {
                crate::tokens::event_tokens(e, |t| assert!(bloom.may_contain(t), "{t} missing"));
            }
        }
    }

    #[test]
    fn a_client_timestamp_is_a_hole_of_the_template_and_no_field() {
        let events: Vec<Event> = (0..300)
            .map(|i| {
                let line = format!(
                    r#"{{"@timestamp":"2026-12-02T10:17:{:02}.{i:03}Z","level":"INFO","n":{i}}}"#,
                    i % 60
                );
                Parser::Json.parse(&line, 0).unwrap()
            })
            .collect();
        let mut b = build(&events);
        assert_eq!(b.templates.len(), events.len());
        // One shape, so one template, whatever the times.
        let (stored, summary, _) = b.finish_and_reset(Compression::ZstdAuto, 10);
        let back = decode(&stored, summary.raw_len as usize).unwrap();
        assert_eq!(back, events);
        assert!(back.iter().all(|e| !e.fields.contains_key("@timestamp")));
        let mut view = BlockView::default();
        view.decode_stored(&stored, summary.raw_len as usize)
            .unwrap();
        assert_eq!(view.template_count(), 1);
    }

    proptest! {
        #[test]
        fn the_sent_time_is_found_where_a_plain_search_finds_it(
            raw in "[{\"@a-z:=0-9 ]{0,6}(\"@timestamp\":\"|@timestamp=)?[0-9T:\" -]{0,12}(\"@timestamp\":\")?[0-9 ]{0,4}",
        ) {
            let plain = |raw: &str| -> Option<(usize, usize)> {
                let (start, end) = if let Some(k) = memchr::memmem::find(raw.as_bytes(), b"\"@timestamp\":\"") {
                    let start = k + 14;
                    (start, start + memchr::memchr2(b'"', b'\\', &raw.as_bytes()[start..])?)
                } else {
                    let start = memchr::memmem::find(raw.as_bytes(), b"@timestamp=")? + 11;
                    let len = memchr::memchr2(b' ', b'"', &raw.as_bytes()[start..]).unwrap_or(raw.len() - start);
                    (start, start + len)
                };
                Some((start, end)).filter(|(s, e)| e > s)
            };
            let found = sent_time_text(&raw).map(|t| {
                let start = t.as_ptr() as usize - raw.as_ptr() as usize;
                (start, start + t.len())
            });
            prop_assert_eq!(found, plain(&raw));
        }
    }

    #[test]
    fn compression_names_parse() {
        assert_eq!("zstd-7".parse(), Ok(Compression::Zstd(7)));
        assert_eq!("lz4".parse(), Ok(Compression::Lz4));
        assert!("zstd-40"
            .parse::<Compression>()
            .unwrap_err()
            .contains("zstd-22"));
        assert_eq!(Compression::Zstd(5).to_string(), "zstd-5");
        assert_eq!("zstd".parse(), Ok(Compression::ZstdAuto));
    }
}
