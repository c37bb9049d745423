//! Damaged stretches of segment files, and finding the next good batch after one.
//!
//! A bad batch (a flipped bit, a sector that reads back wrong) must not make the rest of a
//! partition unreadable. Batches are self-delimiting and each carries a CRC, so after a bad one
//! the next good batch can be found again: the first byte position after it where a header
//! parses, its CRC matches and its base offset continues the partition's sequence. The bytes in
//! between are a [`Damage`]: their records are lost, everything after them is read as usual.
//! Offsets are never renumbered, so the lost records leave a gap in the partition's offsets.
//!
//! A stretch with no good batch after it runs to the end of the file: at the tail of the
//! active segment that is a write cut short (truncated at open), anywhere else it is damage.

use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::batch::{self, BatchHeader, Frame, HEADER_LEN, MAGIC};
use crate::error::{CorruptReason, IoContext, Result};

/// A stretch of a segment file that holds no readable batch.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Damage {
    /// The segment file.
    pub file: PathBuf,
    /// The damaged bytes: from the first bad batch to the next good one (or the file's end).
    pub bytes: Range<u64>,
    /// The offsets whose records cannot be read: from the first one the bad batch held (or the
    /// first a reader wanted in it) to the base offset of the next good batch.
    pub offsets: Range<u64>,
    /// What check failed at the start of the stretch.
    pub reason: String,
}

impl Damage {
    /// Records that cannot be read.
    pub fn records(&self) -> u64 {
        self.offsets.end.saturating_sub(self.offsets.start)
    }
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} bytes {}..{}: {}; offsets {}..{} ({} records) unreadable",
            self.file.display(),
            self.bytes.start,
            self.bytes.end,
            self.reason,
            self.offsets.start,
            self.offsets.end,
            self.records()
        )
    }
}

/// A bad stretch as a scan or a reader found it, before it is reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stretch {
    /// Byte position of the bad batch.
    pub start: u64,
    /// Byte position of the next good batch, or the end of what was scanned.
    pub end: u64,
    /// The offset the bad batch should have started at.
    pub first_offset: u64,
    /// The next good batch's header, if one was found.
    pub resumes_at: Option<BatchHeader>,
    /// Why the batch at `start` is bad.
    pub reason: CorruptReason,
}

impl Stretch {
    /// The stretch as reported; `end_offset` bounds the lost offsets when no good batch follows
    /// (the segment's known end, or the next segment's base).
    pub fn damage(&self, file: &Path, end_offset: u64) -> Damage {
        let offsets_end = self
            .resumes_at
            .map_or(end_offset, |h| h.base_offset)
            .max(self.first_offset);
        Damage {
            file: file.to_path_buf(),
            bytes: self.start..self.end,
            offsets: self.first_offset..offsets_end,
            reason: self.reason.to_string(),
        }
    }
}

/// Whether the batch after a candidate (if there is one before `end`) continues its offsets.
/// The CRC does not cover the base offset, so damage that hit only a header's offset field
/// would otherwise pass for a good batch and renumber its records.
fn continues(
    file: &File,
    path: &Path,
    position: u64,
    header: &BatchHeader,
    end: u64,
) -> Result<bool> {
    let next = position + u64::from(header.batch_len);
    if next + HEADER_LEN as u64 > end {
        return Ok(true);
    }
    let mut head = [0u8; HEADER_LEN];
    file.read_exact_at(&mut head, next)
        .context(|| format!("reading {} at byte {next}", path.display()))?;
    Ok(matches!(batch::parse_header(&head), Ok(Some(h)) if h.base_offset == header.next_offset()))
}

/// Size of the reads while searching for the next good batch.
const SEARCH_CHUNK: usize = 1 << 20;

/// Finds the first whole, CRC-valid batch in `file` after byte `from` and before `end` whose
/// base offset is at least `min_offset` (and below `max_offset`, when known), and whose
/// successor, if any, continues its offsets. Batches are found by their magic byte, then
/// checked in full, so damage cannot fake one except by a 1 in 2^32 CRC collision with a
/// plausible header and offset, or by hitting the (uncovered) offset field of the last batch.
pub(crate) fn next_good_batch(
    file: &File,
    path: &Path,
    from: u64,
    end: u64,
    min_offset: u64,
    max_offset: Option<u64>,
) -> Result<Option<(u64, BatchHeader)>> {
    const MAGIC_AT: usize = 16;
    let mut chunk_start = from + 1;
    while chunk_start + (HEADER_LEN as u64) <= end {
        let len = ((end - chunk_start) as usize).min(SEARCH_CHUNK + HEADER_LEN);
        let mut buf = vec![0u8; len];
        file.read_exact_at(&mut buf, chunk_start)
            .context(|| format!("reading {} at byte {chunk_start}", path.display()))?;
        let searchable = len.saturating_sub(HEADER_LEN - 1);
        // Searching from MAGIC_AT, a hit's index is where its header starts.
        for at in memchr::memchr_iter(MAGIC, &buf[MAGIC_AT.min(len)..]) {
            if at >= searchable {
                break;
            }
            let position = chunk_start + at as u64;
            let header = match batch::parse_header(&buf[at..]) {
                Ok(Some(h)) => h,
                _ => continue,
            };
            let plausible = header.base_offset >= min_offset
                && max_offset.is_none_or(|max| header.next_offset() <= max)
                && position + u64::from(header.batch_len) <= end;
            if !plausible {
                continue;
            }
            let whole = if at + header.batch_len as usize <= buf.len() {
                buf[at..at + header.batch_len as usize].to_vec()
            } else {
                let mut whole = vec![0u8; header.batch_len as usize];
                file.read_exact_at(&mut whole, position)
                    .context(|| format!("reading {} at byte {position}", path.display()))?;
                whole
            };
            if matches!(batch::check(&whole), Ok(Frame::Complete(_)))
                && batch::verify_crc(&header, &whole).is_ok()
                && continues(file, path, position, &header, end)?
            {
                return Ok(Some((position, header)));
            }
        }
        chunk_start += searchable.max(1) as u64;
    }
    Ok(None)
}
