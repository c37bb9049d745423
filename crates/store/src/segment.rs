//! The segment file: one data source's events from one bus partition, in compressed blocks,
//! with a footer that lets a search skip what cannot match.
//!
//! # Layout
//!
//! Integers in fixed width are little-endian; `varint` is unsigned LEB128, `zz` a zig-zag
//! varint, `str` a varint length and UTF-8 bytes.
//!
//! ```text
//!  header   8 bytes  magic "EDDYSEG\n"
//!           u16      format version (2)
//!           6 bytes  zero
//!  blocks   one after another, each a codec byte and a compressed frame (see `block`)
//!  footer   varint id · str data source key · varint n, n × (str, str) tags every event shares
//!           · varint bus partition · varint first offset · varint last offset
//!           · zz min @timestamp · zz max @timestamp · varint events · varint raw bytes
//!           · zz sealed at (ns) · varint n, n × varint ids of the segments this one replaces
//!           · varint blocks, then per block: varint file offset · varint stored length
//!             · varint payload length · varint events · zz min @timestamp · zz max @timestamp
//!             · u32 CRC-32C of the stored bytes · varint bloom length · the bloom filter
//!  trailer  u64 footer length · u32 CRC-32C of the footer · u16 format version · 2 bytes zero
//!           · 8 bytes magic "EDDYEND\n"
//! ```
//!
//! Every byte is covered by a checksum: the blocks by theirs in the footer, the footer by the
//! trailer's. A reader needs the trailer (fixed size, at the end) and the footer to plan a
//! search, then reads only the blocks that survive pruning.
//!
//! # Versioning
//!
//! The version is in the header and the trailer. A reader accepts every version up to its own
//! and refuses later ones with a message naming both; a sample file of each version is kept in
//! `tests/samples/` and a test reads it.
//!
//! - 1: the first.
//! - 2: blocks may hold their texts in split layout 2 (columns cut at a separator the block
//!   names, e.g. access logs at spaces: see [`crate::split`]); version 1 readers do not know it.
//! - 3: blocks are sectioned (codec byte 3, see [`crate::sections`]): the core, the texts, the
//!   templates of texts rebuilt from fields, and one typed column per field, each compressed on
//!   its own; parsed events' fields are stored, not re-derived.
//! - 4: the times and the arrivals (ingest times and ids) leave the core for sections of their
//!   own, so that a query reads them only when it needs them (a version 3 reader would take
//!   the core for damaged, hence the new number).
//! - 5: a text column's section carries the set of bytes its values hold, so that a regex can
//!   leave a column compressed whose values cannot move it (a version 4 reader would refuse the
//!   unknown summary kind).
//!
//! # Recovery
//!
//! A segment is written as `<id>.wip` while its blocks are produced, then sealed: footer and
//! trailer appended, the file synced, renamed to `<id>.seg`, and the directory synced. Only a
//! `.seg` file is a segment; a `.wip` file left by a crash is deleted at start (its events are
//! still in the bus, past the committed offset). A segment that replaces others (a merge) names
//! them in its footer: if a crash left them behind, they are deleted at start. A damaged segment
//! is replaced the same way by [`crate::repair`].

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use eddy_base::fs::sync_dir;
use eddy_event::wire::{
    put_str, put_string_map, put_varint, unzigzag, zigzag, DecodeError, Reader,
};
use eddy_event::Event;

use crate::block::BlockSummary;
use crate::bloom::BloomFilter;
use crate::view::{BlockView, ReadBuffers};

/// The first bytes of every segment file.
pub const MAGIC: &[u8; 8] = b"EDDYSEG\n";
/// The last bytes of every sealed segment file.
pub const END_MAGIC: &[u8; 8] = b"EDDYEND\n";
/// The format version this build writes (and the latest it reads).
pub const VERSION: u16 = 5;
const HEADER_LEN: u64 = 16;
const TRAILER_LEN: u64 = 24;
/// Footers beyond this are refused rather than allocated (a damaged length).
const MAX_FOOTER: u64 = 1 << 30;

/// What went wrong with a segment file, naming the file (and the block).
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The header, trailer or footer is damaged or of an unknown version.
    #[error("{path}: {reason}")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A block is damaged.
    #[error("{path}: block {block} (at byte {offset}): {reason}")]
    Block {
        /// The file.
        path: PathBuf,
        /// The block's index.
        block: usize,
        /// Its position in the file.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SegmentError + '_ {
    move |source| SegmentError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn damaged(path: &Path, reason: impl Into<String>) -> SegmentError {
    SegmentError::Damaged {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// What a segment is, without its blocks: what the catalogue keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    /// Unique within its repository, never reused; the file is `<id>.seg`.
    pub id: u64,
    /// The data source key (the bus record key).
    pub source: String,
    /// Tags that every event of the segment has, with their values.
    pub tags: BTreeMap<String, String>,
    /// The bus partition its events came from.
    pub partition: u32,
    /// The first bus offset it holds.
    pub first_offset: u64,
    /// The last bus offset it holds: the digest commits past it only once this file is sealed.
    pub last_offset: u64,
    /// Earliest `@timestamp`.
    pub min_time: i64,
    /// Latest `@timestamp`.
    pub max_time: i64,
    /// Events.
    pub count: u64,
    /// Bytes of events before compression.
    pub raw_bytes: u64,
    /// When it was sealed (ns).
    pub sealed_at: i64,
    /// Segments this one replaces (a merge).
    pub replaces: Vec<u64>,
}

/// Where a block is and what it holds.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockEntry {
    /// Byte offset of the stored block in the file.
    pub offset: u64,
    /// Its stored length.
    pub stored_len: u32,
    /// Counts and time range.
    pub summary: BlockSummary,
    /// CRC-32C of the stored bytes.
    pub crc: u32,
}

/// A segment's footer.
#[derive(Debug, Clone, PartialEq)]
pub struct Footer {
    /// The segment.
    pub info: SegmentInfo,
    /// Its blocks, in file order.
    pub blocks: Vec<BlockEntry>,
    /// The tokens of each block.
    pub blooms: Vec<BloomFilter>,
}

impl Footer {
    fn encode(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(128 + self.blooms.iter().map(|b| 48 + b.byte_len()).sum::<usize>());
        encode_info(&self.info, &mut out);
        put_varint(&mut out, self.blocks.len() as u64);
        for (b, bloom) in self.blocks.iter().zip(&self.blooms) {
            put_varint(&mut out, b.offset);
            put_varint(&mut out, u64::from(b.stored_len));
            put_varint(&mut out, u64::from(b.summary.raw_len));
            put_varint(&mut out, u64::from(b.summary.count));
            put_varint(&mut out, zigzag(b.summary.min_time));
            put_varint(&mut out, zigzag(b.summary.max_time));
            out.extend_from_slice(&b.crc.to_le_bytes());
            let bloom = bloom.to_bytes();
            put_varint(&mut out, bloom.len() as u64);
            out.extend_from_slice(&bloom);
        }
        out
    }

    fn decode(buf: &[u8]) -> Result<Footer, DecodeError> {
        let mut r = Reader::new(buf);
        let info = decode_info(&mut r)?;
        let mut blocks = Vec::new();
        let mut blooms = Vec::new();
        for _ in 0..r.len("bad block count")? {
            let offset = r.varint("bad block offset")?;
            let stored_len = r.varint_u32("bad block length")?;
            let raw_len = r.varint_u32("bad block payload length")?;
            let count = r.varint_u32("bad block event count")?;
            let min_time = unzigzag(r.varint("bad block min time")?);
            let max_time = unzigzag(r.varint("bad block max time")?);
            let crc = u32::from_le_bytes(r.array("truncated block checksum")?);
            let n = r.len("bad bloom length")?;
            let bloom = match BloomFilter::from_bytes(r.bytes(n, "truncated bloom")?) {
                Ok(b) => b,
                Err(_) => return r.fail("bad bloom filter"),
            };
            blocks.push(BlockEntry {
                offset,
                stored_len,
                summary: BlockSummary {
                    count,
                    min_time,
                    max_time,
                    raw_len,
                },
                crc,
            });
            blooms.push(bloom);
        }
        if !r.at_end() {
            return r.fail("trailing bytes in the footer");
        }
        Ok(Footer {
            info,
            blocks,
            blooms,
        })
    }
}

/// Appends a segment's description (the footer's first part; the catalogue's entry).
pub fn encode_info(i: &SegmentInfo, out: &mut Vec<u8>) {
    put_varint(out, i.id);
    put_str(out, &i.source);
    put_string_map(out, &i.tags);
    put_varint(out, u64::from(i.partition));
    put_varint(out, i.first_offset);
    put_varint(out, i.last_offset);
    put_varint(out, zigzag(i.min_time));
    put_varint(out, zigzag(i.max_time));
    put_varint(out, i.count);
    put_varint(out, i.raw_bytes);
    put_varint(out, zigzag(i.sealed_at));
    put_varint(out, i.replaces.len() as u64);
    for &r in &i.replaces {
        put_varint(out, r);
    }
}

/// Reads what [`encode_info`] wrote.
pub fn decode_info(r: &mut Reader<'_>) -> Result<SegmentInfo, DecodeError> {
    let id = r.varint("bad id")?;
    let source = r.string("bad data source")?;
    let tags = r.string_map("bad tags")?;
    let partition = r.varint_u32("bad partition")?;
    let first_offset = r.varint("bad first offset")?;
    let last_offset = r.varint("bad last offset")?;
    let min_time = unzigzag(r.varint("bad min time")?);
    let max_time = unzigzag(r.varint("bad max time")?);
    let count = r.varint("bad event count")?;
    let raw_bytes = r.varint("bad raw size")?;
    let sealed_at = unzigzag(r.varint("bad seal time")?);
    let mut replaces = Vec::new();
    for _ in 0..r.len("bad replaced count")? {
        replaces.push(r.varint("bad replaced id")?);
    }
    Ok(SegmentInfo {
        id,
        source,
        tags,
        partition,
        first_offset,
        last_offset,
        min_time,
        max_time,
        count,
        raw_bytes,
        sealed_at,
        replaces,
    })
}

/// A segment being written: blocks are appended (not synced) as they fill, then the footer
/// seals it.
#[derive(Debug)]
pub struct SegmentWriter {
    file: File,
    path: PathBuf,
    len: u64,
    blocks: Vec<BlockEntry>,
    blooms: Vec<BloomFilter>,
}

impl SegmentWriter {
    /// Starts `path` (conventionally `<id>.wip`), replacing any file there.
    pub fn create(path: &Path) -> Result<SegmentWriter, SegmentError> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(io(path))?;
        let mut header = [0u8; HEADER_LEN as usize];
        header[..8].copy_from_slice(MAGIC);
        header[8..10].copy_from_slice(&VERSION.to_le_bytes());
        file.write_all(&header).map_err(io(path))?;
        Ok(SegmentWriter {
            file,
            path: path.to_path_buf(),
            len: HEADER_LEN,
            blocks: Vec::new(),
            blooms: Vec::new(),
        })
    }

    /// Appends a finished block.
    pub fn append(
        &mut self,
        stored: &[u8],
        summary: BlockSummary,
        bloom: BloomFilter,
    ) -> Result<&BlockEntry, SegmentError> {
        self.file.write_all(stored).map_err(io(&self.path))?;
        self.blocks.push(BlockEntry {
            offset: self.len,
            stored_len: u32::try_from(stored.len()).unwrap_or(u32::MAX),
            summary,
            crc: crc32c::crc32c(stored),
        });
        self.blooms.push(bloom);
        self.len += stored.len() as u64;
        Ok(&self.blocks[self.blocks.len() - 1])
    }

    /// The blocks written so far.
    pub fn blocks(&self) -> &[BlockEntry] {
        &self.blocks
    }

    /// Their bloom filters.
    pub fn blooms(&self) -> &[BloomFilter] {
        &self.blooms
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether no block was written.
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// A handle to read the blocks written so far (while more are appended).
    pub fn reader(&self) -> Result<File, SegmentError> {
        self.file.try_clone().map_err(io(&self.path))
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Seals the segment: appends footer and trailer, syncs, renames to `sealed_path`, syncs the
    /// directory. `info.count`, time range and raw size are taken from the blocks.
    pub fn seal(
        mut self,
        mut info: SegmentInfo,
        sealed_path: &Path,
    ) -> Result<Footer, SegmentError> {
        info.count = self.blocks.iter().map(|b| u64::from(b.summary.count)).sum();
        info.raw_bytes = self
            .blocks
            .iter()
            .map(|b| u64::from(b.summary.raw_len))
            .sum();
        info.min_time = self
            .blocks
            .iter()
            .map(|b| b.summary.min_time)
            .min()
            .unwrap_or(0);
        info.max_time = self
            .blocks
            .iter()
            .map(|b| b.summary.max_time)
            .max()
            .unwrap_or(0);
        let footer = Footer {
            info,
            blocks: std::mem::take(&mut self.blocks),
            blooms: std::mem::take(&mut self.blooms),
        };
        let bytes = footer.encode();
        let mut trailer = Vec::with_capacity(TRAILER_LEN as usize);
        trailer.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        trailer.extend_from_slice(&crc32c::crc32c(&bytes).to_le_bytes());
        trailer.extend_from_slice(&VERSION.to_le_bytes());
        trailer.extend_from_slice(&[0, 0]);
        trailer.extend_from_slice(END_MAGIC);
        let path = self.path.clone();
        self.file.write_all(&bytes).map_err(io(&path))?;
        self.file.write_all(&trailer).map_err(io(&path))?;
        self.file.sync_all().map_err(io(&path))?;
        std::fs::rename(&path, sealed_path).map_err(io(&path))?;
        if let Some(dir) = sealed_path.parent() {
            sync_dir(dir).map_err(|e| io(dir)(e.source))?;
        }
        Ok(footer)
    }
}

/// Reads one stored block at `entry` from `file`, checking its checksum.
pub fn read_block(
    file: &File,
    path: &Path,
    index: usize,
    entry: &BlockEntry,
) -> Result<Vec<u8>, SegmentError> {
    let mut stored = Vec::new();
    read_block_into(file, path, index, entry, &mut stored)?;
    Ok(stored)
}

pub(crate) fn block_error(
    path: &Path,
    index: usize,
    entry: &BlockEntry,
    reason: String,
) -> SegmentError {
    SegmentError::Block {
        path: path.to_path_buf(),
        block: index,
        offset: entry.offset,
        reason,
    }
}

/// [`read_block`] into `stored`, whose memory is kept from one block to the next.
fn read_block_into(
    file: &File,
    path: &Path,
    index: usize,
    entry: &BlockEntry,
    stored: &mut Vec<u8>,
) -> Result<(), SegmentError> {
    // The buffer is reused block after block: zero only what it grows by, the read overwrites.
    let len = entry.stored_len as usize;
    if stored.len() < len {
        stored.resize(len, 0);
    }
    stored.truncate(len);
    file.read_exact_at(stored, entry.offset).map_err(|e| {
        block_error(
            path,
            index,
            entry,
            format!("cannot read {} bytes: {e}", entry.stored_len),
        )
    })?;
    let crc = crc32c::crc32c(stored);
    if crc != entry.crc {
        return Err(block_error(
            path,
            index,
            entry,
            format!(
                "checksum mismatch (stored {:08x}, computed {crc:08x}){}",
                entry.crc,
                crate::sections::damaged_section(stored)
                    .map(|s| format!(" in {s}"))
                    .unwrap_or_default()
            ),
        ));
    }
    Ok(())
}

/// Reads and decodes one block's events.
pub fn read_events(
    file: &File,
    path: &Path,
    index: usize,
    entry: &BlockEntry,
) -> Result<Vec<Event>, SegmentError> {
    let mut view = BlockView::default();
    read_view(
        file,
        path,
        index,
        entry,
        &mut ReadBuffers::default(),
        &mut view,
    )?;
    Ok(view.into_events())
}

/// Reads and decodes one block into `view`, column by column, with `buffers` kept from one
/// block to the next by the reading thread.
pub fn read_view(
    file: &File,
    path: &Path,
    index: usize,
    entry: &BlockEntry,
    buffers: &mut ReadBuffers,
    view: &mut BlockView,
) -> Result<(), SegmentError> {
    read_block_into(file, path, index, entry, &mut buffers.stored)?;
    view.decode_stored(&buffers.stored, entry.summary.raw_len as usize)
        .map_err(|e| block_error(path, index, entry, e.to_string()))
}

/// A sealed segment file, open for reading (from several threads at once).
#[derive(Debug)]
pub struct SegmentFile {
    file: Arc<File>,
    path: PathBuf,
    footer: Footer,
    file_len: u64,
}

impl SegmentFile {
    /// Opens a sealed segment and reads its footer.
    pub fn open(path: &Path) -> Result<SegmentFile, SegmentError> {
        let file = File::open(path).map_err(io(path))?;
        let file_len = file.metadata().map_err(io(path))?.len();
        if file_len < HEADER_LEN + TRAILER_LEN {
            return Err(damaged(
                path,
                format!("only {file_len} bytes: not a sealed segment"),
            ));
        }
        let mut header = [0u8; HEADER_LEN as usize];
        file.read_exact_at(&mut header, 0).map_err(io(path))?;
        if &header[..8] != MAGIC {
            return Err(damaged(path, "not a segment file (bad magic)"));
        }
        check_version(path, u16::from_le_bytes([header[8], header[9]]))?;
        if header[10..].iter().any(|&b| b != 0) {
            return Err(damaged(path, "reserved header bytes are not zero"));
        }
        let mut trailer = [0u8; TRAILER_LEN as usize];
        file.read_exact_at(&mut trailer, file_len - TRAILER_LEN)
            .map_err(io(path))?;
        if &trailer[16..] != END_MAGIC {
            return Err(damaged(
                path,
                "no trailer: the segment was never sealed or is cut short",
            ));
        }
        let version = u16::from_le_bytes([trailer[12], trailer[13]]);
        check_version(path, version)?;
        if version != u16::from_le_bytes([header[8], header[9]]) {
            return Err(damaged(
                path,
                "the header and the trailer name different format versions",
            ));
        }
        if trailer[14..16] != [0, 0] {
            return Err(damaged(path, "reserved trailer bytes are not zero"));
        }
        let footer_len = u64::from_le_bytes(trailer[..8].try_into().unwrap_or_default());
        let footer_crc = u32::from_le_bytes(trailer[8..12].try_into().unwrap_or_default());
        if footer_len > MAX_FOOTER || footer_len > file_len - HEADER_LEN - TRAILER_LEN {
            return Err(damaged(
                path,
                format!("footer length {footer_len} does not fit the file"),
            ));
        }
        let footer_at = file_len - TRAILER_LEN - footer_len;
        let mut bytes = vec![0u8; footer_len as usize];
        file.read_exact_at(&mut bytes, footer_at)
            .map_err(io(path))?;
        let crc = crc32c::crc32c(&bytes);
        if crc != footer_crc {
            return Err(damaged(
                path,
                format!("footer checksum mismatch (stored {footer_crc:08x}, computed {crc:08x})"),
            ));
        }
        let footer = Footer::decode(&bytes).map_err(|e| {
            damaged(
                path,
                format!(
                    "footer at byte {}: {}",
                    footer_at + e.position as u64,
                    e.reason
                ),
            )
        })?;
        for (i, b) in footer.blocks.iter().enumerate() {
            if b.offset < HEADER_LEN || b.offset + u64::from(b.stored_len) > footer_at {
                return Err(damaged(
                    path,
                    format!("block {i} lies outside the data area"),
                ));
            }
        }
        Ok(SegmentFile {
            file: Arc::new(file),
            path: path.to_path_buf(),
            footer,
            file_len,
        })
    }

    /// Its footer.
    pub fn footer(&self) -> &Footer {
        &self.footer
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open file, for block reads that outlive this handle.
    pub fn file(&self) -> &Arc<File> {
        &self.file
    }

    /// Its size in bytes.
    pub fn file_len(&self) -> u64 {
        self.file_len
    }

    /// Bytes of footer and trailer (the index part of the file: blooms and block table).
    pub fn index_len(&self) -> u64 {
        let blocks: u64 = self
            .footer
            .blocks
            .iter()
            .map(|b| u64::from(b.stored_len))
            .sum();
        self.file_len - HEADER_LEN - blocks
    }

    /// The events of block `index`.
    pub fn events(&self, index: usize) -> Result<Vec<Event>, SegmentError> {
        match self.footer.blocks.get(index) {
            Some(entry) => read_events(&self.file, &self.path, index, entry),
            None => Err(damaged(&self.path, format!("no block {index}"))),
        }
    }

    /// Checks every block: checksum, decompression and decoding. Returns every problem found.
    pub fn verify(&self) -> Vec<SegmentError> {
        let mut problems = Vec::new();
        let mut count = 0u64;
        for (i, entry) in self.footer.blocks.iter().enumerate() {
            match read_events(&self.file, &self.path, i, entry) {
                Ok(events) if events.len() as u32 != entry.summary.count => {
                    problems.push(SegmentError::Block {
                        path: self.path.clone(),
                        block: i,
                        offset: entry.offset,
                        reason: format!(
                            "{} events where the footer says {}",
                            events.len(),
                            entry.summary.count
                        ),
                    })
                }
                Ok(events) => count += events.len() as u64,
                Err(e) => problems.push(e),
            }
        }
        if problems.is_empty() && count != self.footer.info.count {
            problems.push(damaged(
                &self.path,
                format!(
                    "{count} events in blocks where the footer says {}",
                    self.footer.info.count
                ),
            ));
        }
        problems
    }
}

fn check_version(path: &Path, version: u16) -> Result<(), SegmentError> {
    if version == 0 || version > VERSION {
        return Err(damaged(
            path,
            format!("segment format version {version}; this eddy reads versions 1 to {VERSION}: upgrade eddy"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::{BlockBuilder, Compression};
    use proptest::prelude::*;

    pub(crate) fn info(id: u64) -> SegmentInfo {
        SegmentInfo {
            id,
            source: "#host=a".into(),
            tags: BTreeMap::from([("host".into(), "a".into())]),
            partition: 1,
            first_offset: 10,
            last_offset: 20,
            min_time: 0,
            max_time: 0,
            count: 0,
            raw_bytes: 0,
            sealed_at: 7,
            replaces: vec![3, 4],
        }
    }

    fn write(dir: &Path, blocks: &[Vec<Event>]) -> (PathBuf, Footer) {
        let wip = dir.join("1.wip");
        let mut w = SegmentWriter::create(&wip).unwrap();
        for events in blocks {
            let mut b = BlockBuilder::new();
            events.iter().for_each(|e| b.push(e));
            let (stored, summary, bloom) = b.finish(Compression::Zstd(3), 10);
            w.append(&stored, summary, bloom).unwrap();
        }
        let sealed = dir.join("1.seg");
        let footer = w.seal(info(1), &sealed).unwrap();
        assert!(!wip.exists());
        (sealed, footer)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(40))]

        #[test]
        fn segments_roundtrip(blocks in proptest::collection::vec(
            proptest::collection::vec(crate::block::tests::event(), 1..20), 0..4)) {
            let dir = tempfile::tempdir().unwrap();
            let (path, footer) = write(dir.path(), &blocks);
            let seg = SegmentFile::open(&path).unwrap();
            prop_assert_eq!(seg.footer(), &footer);
            prop_assert_eq!(seg.footer().info.count, blocks.iter().map(|b| b.len() as u64).sum::<u64>());
            for (i, events) in blocks.iter().enumerate() {
                prop_assert_eq!(&seg.events(i).unwrap(), events);
            }
            prop_assert!(seg.verify().is_empty());
        }

        #[test]
        fn any_flipped_bit_is_detected(flip in any::<usize>(), bit in 0u8..8) {
            let dir = tempfile::tempdir().unwrap();
            let e = eddy_event::Parser::Json.parse(r#"{"a":1,"b":"some text"}"#, 1).unwrap();
            let (path, _) = write(dir.path(), &[vec![e.clone(); 50], vec![e; 30]]);
            let mut bytes = std::fs::read(&path).unwrap();
            let i = flip % bytes.len();
            bytes[i] ^= 1 << bit;
            std::fs::write(&path, &bytes).unwrap();
            match SegmentFile::open(&path) {
                Err(e) => prop_assert!(e.to_string().contains("1.seg"), "{e}"),
                Ok(seg) => {
                    let problems = seg.verify();
                    prop_assert!(!problems.is_empty(), "flip at {i} went unnoticed");
                    let text = problems[0].to_string();
                    prop_assert!(text.contains("1.seg") && text.contains("block"), "{text}");
                }
            }
        }
    }

    #[test]
    fn later_versions_and_cut_files_are_refused_with_reasons() {
        let dir = tempfile::tempdir().unwrap();
        let e = eddy_event::Parser::None.parse("x", 1).unwrap();
        let (path, _) = write(dir.path(), &[vec![e]]);
        let bytes = std::fs::read(&path).unwrap();
        let mut later = bytes.clone();
        later[8] = 9;
        std::fs::write(&path, &later).unwrap();
        let err = SegmentFile::open(&path).unwrap_err().to_string();
        assert!(
            err.contains("version 9") && err.contains("upgrade"),
            "{err}"
        );
        std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        let err = SegmentFile::open(&path).unwrap_err().to_string();
        assert!(err.contains("never sealed"), "{err}");
    }
}
