//! Segment files: one `<base>.log` of back-to-back batches (see [`crate::batch`]) plus its
//! indexes (see [`crate::index`]). A partition is a sequence of segments; only the last, the
//! active segment, is written, and it is sealed when it reaches its size or age.
//!
//! Recovery rules:
//! - The active segment is scanned batch by batch on open (header shape, CRC, offset sequence).
//!   The first bad batch starts a torn or corrupt tail: the file is truncated there and a warning
//!   names the file, the byte offset and the reason. Everything before it was written whole.
//! - A bad batch with good batches after it is damage, not a torn tail (see [`crate::damage`]):
//!   the active segment is then kept whole and sealed, so records acknowledged after the damage
//!   stay readable, and the partition goes on in a new segment.
//! - A sealed segment is trusted as far as its index files agree with its size. If they do not,
//!   it is scanned and its indexes rebuilt; damage it finds is kept as it is and a warning names
//!   the file and offset. A sealed segment is never truncated or changed at open.
//! - Readers reaching damage get [`Error::Corrupt`]; [`crate::PartitionReader::skip_damage`] moves
//!   them past it deliberately, to the next good batch.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytes::Bytes;
use eddy_base::sync::{read, write};

use crate::batch::{self, BatchHeader, Frame, HEADER_LEN};
use crate::contract::{LaidOutBatch, Polled};
use crate::damage::{self, Damage, Stretch};
use crate::error::{CorruptReason, Error, IoContext, IoError, Result};
use crate::index::{Entry, SegmentIndex};
use crate::record::StoredRecord;

/// Size of the reads of a recovery or verification scan.
const SCAN_CHUNK: usize = 4 << 20;

pub(crate) fn log_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.log"))
}

fn index_paths(dir: &Path, base: u64) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{base:020}.index")),
        dir.join(format!("{base:020}.timeindex")),
    )
}

/// Mutable facts about a segment, changed only by the partition's writer.
#[derive(Debug)]
struct State {
    index: SegmentIndex,
    /// Bytes of whole batches in the file.
    len: u64,
    /// Offset after the last record.
    next_offset: u64,
    /// Largest record timestamp (i64::MIN when empty).
    max_timestamp: i64,
    /// Bytes written since the last index entry.
    since_entry: u64,
    sealed: bool,
    /// Damaged stretches found so far, by position. One with no good batch after it ends what
    /// is readable in this segment; readers skip the others deliberately.
    damage: Vec<Stretch>,
    /// Laid-out batches a deep scan could check only for shape and CRC, their layout not being
    /// registered in this process.
    unchecked: u64,
}

impl State {
    /// The state of a segment file's first `end` bytes, and its first bad batch if any.
    fn scanned(
        file: &File,
        path: &Path,
        base_offset: u64,
        end: u64,
        interval: u64,
        deep: bool,
    ) -> Result<(State, Vec<Stretch>)> {
        let mut state = State::empty(base_offset);
        let bad = scan(
            file,
            path,
            base_offset,
            &mut state,
            end,
            interval,
            deep,
            true,
        )?;
        Ok((state, bad))
    }

    /// Where readable data ends for good: the start of damage that no good batch follows.
    fn dead_end(&self) -> Option<&Stretch> {
        self.damage.iter().find(|s| s.resumes_at.is_none())
    }

    fn empty(base_offset: u64) -> State {
        State {
            index: SegmentIndex::default(),
            len: 0,
            next_offset: base_offset,
            max_timestamp: i64::MIN,
            since_entry: 0,
            sealed: false,
            damage: Vec::new(),
            unchecked: 0,
        }
    }

    /// Ends the index with an entry for the segment's end (at sealing): its next offset, size
    /// and newest timestamp are then known without reading the log file.
    fn push_end(&mut self, base_offset: u64) {
        if self
            .index
            .last()
            .is_some_and(|e| u64::from(e.position) == self.len)
        {
            return;
        }
        self.index.push(Entry {
            rel_offset: (self.next_offset - base_offset) as u32,
            position: self.len as u32,
            max_ts_before: self.max_timestamp,
        });
    }

    /// Accounts for one whole batch written at `position` (the current end).
    fn add_batch(&mut self, base_offset: u64, position: u64, header: &BatchHeader, interval: u64) {
        if self.index.len() == 0 || self.since_entry >= interval {
            self.index.push(Entry {
                rel_offset: (self.next_offset - base_offset) as u32,
                position: position as u32,
                max_ts_before: self.max_timestamp,
            });
            self.since_entry = 0;
        }
        self.since_entry += u64::from(header.batch_len);
        self.len = position + u64::from(header.batch_len);
        self.next_offset = header.next_offset();
        self.max_timestamp = self.max_timestamp.max(header.max_timestamp);
    }
}

/// One segment file and what is known about it.
#[derive(Debug)]
pub(crate) struct Segment {
    pub base_offset: u64,
    pub path: PathBuf,
    dir: PathBuf,
    file: File,
    /// When the segment file was created (ns, from the file system), for `segment_ms`.
    created_ns: i64,
    state: RwLock<State>,
}

/// A snapshot of a segment for describing and retention.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SegmentInfo {
    pub base_offset: u64,
    pub next_offset: u64,
    pub len: u64,
    pub max_timestamp: i64,
    pub sealed: bool,
}

/// What reads hand out: records, and (when `whole`) laid-out batches as they are.
#[derive(Debug, Default)]
pub(crate) struct ReadOut {
    /// Whether a laid-out batch at or after the wanted offset is handed out whole.
    whole: bool,
    /// Finished groups, in offset order.
    polled: Vec<Polled>,
    /// The records after the last laid-out batch.
    records: Vec<StoredRecord>,
}

impl ReadOut {
    /// `whole`: laid-out batches at or after the wanted offset whole, the rest as records;
    /// otherwise records only, laid-out batches decoded through their layouts.
    pub fn new(whole: bool) -> ReadOut {
        ReadOut {
            whole,
            ..ReadOut::default()
        }
    }

    /// The offset of the last record handed out, if any.
    pub fn last_offset(&self) -> Option<u64> {
        if let Some(r) = self.records.last() {
            return Some(r.offset);
        }
        match self.polled.last()? {
            Polled::Records(records) => records.last().map(|r| r.offset),
            Polled::LaidOut(b) => Some(b.base_offset + u64::from(b.record_count) - 1),
        }
    }

    fn push_laid_out(&mut self, batch: LaidOutBatch) {
        if !self.records.is_empty() {
            self.polled
                .push(Polled::Records(std::mem::take(&mut self.records)));
        }
        self.polled.push(Polled::LaidOut(batch));
    }

    /// The records read (a read that is not `whole` holds no laid-out batches).
    pub fn into_records(mut self) -> Vec<StoredRecord> {
        if self.polled.is_empty() {
            return self.records;
        }
        let mut out = Vec::new();
        for p in self.polled {
            if let Polled::Records(r) = p {
                out.extend(r);
            }
        }
        out.append(&mut self.records);
        out
    }

    /// Everything read, grouped.
    pub fn into_polled(mut self) -> Vec<Polled> {
        if !self.records.is_empty() {
            self.polled.push(Polled::Records(self.records));
        }
        self.polled
    }
}

/// How far a read got inside one segment.
pub(crate) struct ReadOutcome {
    /// Offset after the last batch read.
    pub next_offset: u64,
    /// Byte position after the last batch read.
    pub position: u64,
}

impl Segment {
    /// Creates a new, empty active segment.
    pub fn create(dir: &Path, base_offset: u64) -> Result<Segment> {
        let path = log_path(dir, base_offset);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .context(|| format!("creating segment {}", path.display()))?;
        Ok(Segment::with_state(
            dir,
            path,
            file,
            base_offset,
            State::empty(base_offset),
        ))
    }

    fn with_state(
        dir: &Path,
        path: PathBuf,
        file: File,
        base_offset: u64,
        state: State,
    ) -> Segment {
        let created_ns = file
            .metadata()
            .and_then(|m| m.created().or_else(|_| m.modified()))
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or_else(crate::record::now_ns, |d| d.as_nanos() as i64);
        Segment {
            base_offset,
            path,
            dir: dir.to_path_buf(),
            file,
            created_ns,
            state: RwLock::new(state),
        }
    }

    fn open_file(path: &Path, write: bool) -> Result<File> {
        Ok(OpenOptions::new()
            .read(true)
            .write(write)
            .open(path)
            .context(|| format!("opening segment {}", path.display()))?)
    }

    /// Opens the last segment of a partition: scans it whole and truncates a torn tail. Damage
    /// with good batches after it is kept (see [`Segment::is_damaged`]).
    pub fn open_active(dir: &Path, base_offset: u64, index_interval: u64) -> Result<Segment> {
        let path = log_path(dir, base_offset);
        let file = Segment::open_file(&path, true)?;
        let file_len = file_len(&file, &path)?;
        let (mut state, mut bad) =
            State::scanned(&file, &path, base_offset, file_len, index_interval, false)?;
        if let Some(tail) = bad.pop_if(|s| s.resumes_at.is_none()) {
            tracing::warn!(
                file = %path.display(),
                byte_offset = tail.start,
                dropped_bytes = file_len - tail.start,
                reason = %tail.reason,
                "truncating torn or corrupt tail of the active segment"
            );
            file.set_len(tail.start)
                .context(|| format!("truncating {} to {} bytes", path.display(), tail.start))?;
            file.sync_all()
                .context(|| format!("syncing {} after truncation", path.display()))?;
        }
        for stretch in &bad {
            tracing::warn!(damage = %stretch.damage(&path, state.next_offset), "damaged batch inside the active segment; the good batches after it are kept");
        }
        state.damage = bad;
        Ok(Segment::with_state(dir, path, file, base_offset, state))
    }

    /// Opens the last segment of a partition that another process writes: scans up to `limit`
    /// bytes (what that process has made visible) and changes nothing on disk.
    pub fn open_active_read_only(
        dir: &Path,
        base_offset: u64,
        index_interval: u64,
        limit: u64,
    ) -> Result<Segment> {
        let path = log_path(dir, base_offset);
        let file = Segment::open_file(&path, false)?;
        let file_len = file_len(&file, &path)?;
        let (mut state, mut bad) = State::scanned(
            &file,
            &path,
            base_offset,
            file_len.min(limit),
            index_interval,
            false,
        )?;
        if let Some(tail) = bad.pop_if(|s| s.resumes_at.is_none()) {
            tracing::warn!(file = %path.display(), byte_offset = tail.start, reason = %tail.reason, "reading only up to a torn or corrupt tail");
        }
        state.damage = bad;
        Ok(Segment::with_state(dir, path, file, base_offset, state))
    }

    /// Takes in batches another process appended, up to byte `end` (read-only logs).
    pub fn extend_to(&self, end: u64, index_interval: u64) -> Result<()> {
        let mut s = self.write_state();
        if end <= s.len {
            return Ok(());
        }
        let bad = scan(
            &self.file,
            &self.path,
            self.base_offset,
            &mut s,
            end,
            index_interval,
            false,
            true,
        )?;
        for stretch in &bad {
            tracing::warn!(damage = %stretch.damage(&self.path, s.next_offset), "damaged batch in data the writer appended");
        }
        s.damage.retain(|d| !bad.iter().any(|b| b.start == d.start));
        s.damage.extend(bad);
        Ok(())
    }

    /// Marks a segment sealed once another process has sealed it (read-only logs).
    pub fn mark_sealed(&self, index_interval: u64) -> Result<()> {
        let file_len = file_len(&self.file, &self.path)?;
        self.extend_to(file_len, index_interval)?;
        let mut s = self.write_state();
        s.push_end(self.base_offset);
        s.sealed = true;
        Ok(())
    }

    /// Opens a sealed segment from its index files, rebuilding them by a scan if needed.
    pub fn open_sealed(
        dir: &Path,
        base_offset: u64,
        index_interval: u64,
        write: bool,
    ) -> Result<Segment> {
        let path = log_path(dir, base_offset);
        let file = Segment::open_file(&path, write)?;
        let file_len = file_len(&file, &path)?;
        let (offset_path, time_path) = index_paths(dir, base_offset);
        let state = match SegmentIndex::read_files(&offset_path, &time_path, file_len) {
            Ok(index) => {
                let end = *index.last().unwrap_or(&Entry {
                    rel_offset: 0,
                    position: 0,
                    max_ts_before: i64::MIN,
                });
                State {
                    index,
                    len: file_len,
                    next_offset: base_offset + u64::from(end.rel_offset),
                    max_timestamp: end.max_ts_before,
                    since_entry: 0,
                    sealed: true,
                    damage: Vec::new(),
                    unchecked: 0,
                }
            }
            Err(why) => {
                tracing::warn!(file = %path.display(), reason = %why, "rebuilding segment index by a scan");
                let (mut state, bad) =
                    State::scanned(&file, &path, base_offset, file_len, index_interval, false)?;
                for stretch in &bad {
                    tracing::warn!(damage = %stretch.damage(&path, state.next_offset), "damage inside a sealed segment; readers skip it only when asked to");
                }
                state.push_end(base_offset);
                // A damaged segment keeps no index, so every open finds and reports its damage.
                if write && bad.is_empty() {
                    state.index.write_files(&offset_path, &time_path)?;
                }
                state.sealed = true;
                state.damage = bad;
                state
            }
        };
        Ok(Segment::with_state(dir, path, file, base_offset, state))
    }

    fn read_state(&self) -> RwLockReadGuard<'_, State> {
        read(&self.state)
    }

    fn write_state(&self) -> RwLockWriteGuard<'_, State> {
        write(&self.state)
    }

    pub fn info(&self) -> SegmentInfo {
        let s = self.read_state();
        SegmentInfo {
            base_offset: self.base_offset,
            next_offset: s.next_offset,
            len: s.len,
            max_timestamp: s.max_timestamp,
            sealed: s.sealed,
        }
    }

    pub fn created_ns(&self) -> i64 {
        self.created_ns
    }

    /// Appends one encoded batch (its base offset already set) at the end of the file. Called
    /// only by the partition's writer, under its lock.
    ///
    /// A failed write (a full disk) leaves the segment as it was: what it wrote of the batch
    /// lies past the segment's end, is cut off if the file lets it, and is otherwise
    /// overwritten by the next batch or cut as a torn tail by recovery.
    pub fn append(&self, bytes: &[u8], header: &BatchHeader, index_interval: u64) -> Result<()> {
        let mut s = self.write_state();
        let position = s.len;
        let written = self.write_batch(bytes, position);
        if written.is_err() {
            let _ = self.file.set_len(position);
        }
        written.context(|| {
            format!(
                "writing {} bytes to {} at byte {position}",
                bytes.len(),
                self.path.display()
            )
        })?;
        s.add_batch(self.base_offset, position, header, index_interval);
        Ok(())
    }

    fn write_batch(&self, bytes: &[u8], position: u64) -> std::io::Result<()> {
        #[cfg(any(test, feature = "fault-injection"))]
        if let Some(e) = crate::fault::full_disk(&self.dir) {
            self.file
                .write_all_at(&bytes[..bytes.len() / 2], position)?;
            return Err(e);
        }
        self.file.write_all_at(bytes, position)
    }

    /// Makes the file's data durable.
    pub fn sync(&self) -> Result<()> {
        Ok(self
            .file
            .sync_data()
            .context(|| format!("fsync of {}", self.path.display()))?)
    }

    /// Seals the segment: syncs its data and writes its index files.
    pub fn seal(&self) -> Result<()> {
        self.sync()?;
        let mut s = self.write_state();
        s.push_end(self.base_offset);
        // A damaged segment keeps no index, so every open finds and reports its damage.
        if s.damage.is_empty() {
            let (offset_path, time_path) = index_paths(&self.dir, self.base_offset);
            s.index.write_files(&offset_path, &time_path)?;
        }
        s.sealed = true;
        Ok(())
    }

    /// Deletes the segment's files (readers holding it keep reading through the open handle).
    pub fn delete_files(&self) -> Result<()> {
        let (offset_path, time_path) = index_paths(&self.dir, self.base_offset);
        for path in [&self.path, &offset_path, &time_path] {
            match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(Error::Io(IoError {
                        context: format!("deleting {}", path.display()),
                        source: e,
                    }))
                }
            }
        }
        Ok(())
    }

    fn corrupt(&self, position: u64, reason: CorruptReason) -> Error {
        if let CorruptReason::UnknownLayout(layout) = reason {
            // Whole bytes this process cannot read: not damage, so nothing skips it as such.
            return Error::UnknownLayout {
                path: self.path.clone(),
                position,
                layout,
            };
        }
        Error::Corrupt {
            path: self.path.clone(),
            position,
            reason,
        }
    }

    fn read_bytes(&self, position: u64, len: usize) -> Result<Bytes> {
        let mut buf = vec![0u8; len];
        self.file.read_exact_at(&mut buf, position).context(|| {
            format!(
                "reading {len} bytes of {} at byte {position}",
                self.path.display()
            )
        })?;
        Ok(Bytes::from(buf))
    }

    /// Where to start reading for `offset`: the indexed batch at or before it, as (its base
    /// offset, its byte position).
    pub fn seek(&self, offset: u64) -> Result<(u64, u64)> {
        let s = self.read_state();
        let rel = offset
            .saturating_sub(self.base_offset)
            .min(u64::from(u32::MAX)) as u32;
        let e = s.index.seek_offset(rel);
        Ok((
            self.base_offset + u64::from(e.rel_offset),
            u64::from(e.position),
        ))
    }

    /// The byte position where this segment's readable data ends: `committed_position` when
    /// the committed mark lies in this segment (even if it was just sealed: sealing makes data
    /// durable before its appenders are acknowledged), else the whole segment.
    pub fn readable_end(&self, committed_position: Option<u64>) -> Result<u64> {
        let s = self.read_state();
        let end = committed_position.map_or(s.len, |p| p.min(s.len));
        Ok(s.dead_end().map_or(end, |d| end.min(d.start)))
    }

    /// Reads whole batches from `position` (the start of a batch with base `batch_offset`) up to
    /// `end`, about `max_bytes` of them, and pushes the records at or after `from_offset`.
    pub fn read(
        &self,
        from_offset: u64,
        mut batch_offset: u64,
        mut position: u64,
        end: u64,
        max_bytes: usize,
        out: &mut ReadOut,
    ) -> Result<ReadOutcome> {
        let mut read_total = 0usize;
        while position < end && read_total < max_bytes {
            let want = ((end - position) as usize).min(max_bytes.max(HEADER_LEN));
            let chunk = self.read_bytes(position, want)?;
            let mut at = 0usize;
            loop {
                let frame = batch::check(&chunk[at..]).map_err(|r| self.corrupt(position, r))?;
                let header = match frame {
                    Frame::Complete(h) => h,
                    Frame::Incomplete { needed } if at == 0 => {
                        // A batch larger than the chunk: read it whole.
                        let len = chunk.len() + needed;
                        if position + len as u64 > end {
                            return Err(self.corrupt(
                                position,
                                CorruptReason::Truncated {
                                    needed: position + len as u64 - end,
                                },
                            ));
                        }
                        let whole = self.read_bytes(position, len)?;
                        let h =
                            self.decode_into(&whole, position, batch_offset, from_offset, out)?;
                        batch_offset = h.next_offset();
                        position += len as u64;
                        read_total += len;
                        break;
                    }
                    Frame::Incomplete { .. } => break,
                };
                let len = header.batch_len as usize;
                if header.next_offset() <= from_offset && header.base_offset == batch_offset {
                    // Wholly before the wanted offset: skip without decoding.
                } else {
                    let batch = chunk.slice(at..at + len);
                    self.decode_into(&batch, position, batch_offset, from_offset, out)?;
                }
                batch_offset = header.next_offset();
                position += len as u64;
                read_total += len;
                at += len;
                if at >= chunk.len() {
                    break;
                }
            }
        }
        if position < end {
            // Stopped by max_bytes: fine. Otherwise we are at `end`.
        } else if let Some(d) = self.read_state().dead_end().filter(|d| position >= d.start) {
            return Err(self.corrupt(d.start, d.reason.clone()));
        }
        Ok(ReadOutcome {
            next_offset: batch_offset,
            position,
        })
    }

    fn decode_into(
        &self,
        batch: &Bytes,
        position: u64,
        expected_base: u64,
        from_offset: u64,
        out: &mut ReadOut,
    ) -> Result<BatchHeader> {
        let gap = |found| {
            self.corrupt(
                position,
                CorruptReason::OffsetGap {
                    expected: expected_base,
                    found,
                },
            )
        };
        let whole = out.whole
            && matches!(batch::parse_header(batch), Ok(Some(h)) if h.laid_out && h.base_offset >= from_offset);
        if whole {
            // Handed out as it is: the layout is not called, so the digest never pays for it.
            let (header, payload) =
                batch::laid_out_payload(batch).map_err(|r| self.corrupt(position, r))?;
            if header.base_offset != expected_base {
                return Err(gap(header.base_offset));
            }
            out.push_laid_out(LaidOutBatch {
                base_offset: header.base_offset,
                record_count: header.record_count,
                first_timestamp: header.first_timestamp,
                max_timestamp: header.max_timestamp,
                payload,
            });
            return Ok(header);
        }
        let records = &mut out.records;
        let before = records.len();
        let header = batch::decode(batch, from_offset, |r| records.push(r)).map_err(|r| {
            records.truncate(before);
            self.corrupt(position, r)
        })?;
        if header.base_offset != expected_base {
            records.truncate(before);
            return Err(gap(header.base_offset));
        }
        Ok(header)
    }

    /// The first offset in this segment whose record timestamp is at or after `ts`, looking no
    /// further than `end`.
    pub fn offset_for_time(&self, ts: i64, end: u64) -> Result<Option<u64>> {
        let (mut offset, mut position) = {
            let s = self.read_state();
            if s.max_timestamp < ts {
                return Ok(None);
            }
            let e = s.index.seek_time(ts);
            (
                self.base_offset + u64::from(e.rel_offset),
                u64::from(e.position),
            )
        };
        while position < end {
            let head = self.read_bytes(position, HEADER_LEN.min((end - position) as usize))?;
            let header = batch::parse_header(&head)
                .map_err(|r| self.corrupt(position, r))?
                .ok_or_else(|| {
                    let needed = (HEADER_LEN - head.len()) as u64;
                    self.corrupt(position, CorruptReason::Truncated { needed })
                })?;
            if header.max_timestamp >= ts {
                if position + u64::from(header.batch_len) > end {
                    let needed = position + u64::from(header.batch_len) - end;
                    return Err(self.corrupt(position, CorruptReason::Truncated { needed }));
                }
                let whole = self.read_bytes(position, header.batch_len as usize)?;
                let mut records = ReadOut::new(false);
                match self.decode_into(&whole, position, offset, 0, &mut records) {
                    Ok(_) => {}
                    // Without its layout, the batch's start: no record before it is at or
                    // after `ts`, which is all a reader starting there needs.
                    Err(Error::UnknownLayout { .. }) => return Ok(Some(offset)),
                    Err(e) => return Err(e),
                }
                let records = records.into_records();
                return Ok(records.iter().find(|r| r.timestamp >= ts).map(|r| r.offset));
            }
            offset = header.next_offset();
            position += u64::from(header.batch_len);
        }
        Ok(None)
    }

    /// Reads and checks every batch, records included; returns every damaged stretch. A
    /// laid-out batch whose layout this process has not registered is checked for shape and
    /// CRC only and is not damage (a warning counts them).
    /// `end_offset`: where the segment's offsets end (the next segment's base), for damage that
    /// runs to the end of the file.
    pub fn verify(&self, end_offset: Option<u64>) -> Result<Vec<Damage>> {
        // The whole file, not just the prefix known to be good.
        let len = file_len(&self.file, &self.path)?;
        let (state, bad) = State::scanned(
            &self.file,
            &self.path,
            self.base_offset,
            len,
            u64::MAX,
            true,
        )?;
        if state.unchecked > 0 {
            tracing::warn!(
                file = %self.path.display(),
                batches = state.unchecked,
                "laid-out batches whose layout this process has not registered were checked for shape and CRC only, not their records"
            );
        }
        let end_offset = end_offset.unwrap_or(state.next_offset);
        Ok(bad
            .iter()
            .map(|b| b.damage(&self.path, end_offset))
            .collect())
    }

    /// Whether a scan found damage with good batches after it (the segment must not take more
    /// appends: it is sealed and kept as it is).
    pub fn is_damaged(&self) -> bool {
        !self.read_state().damage.is_empty()
    }

    /// The damage found so far; `end_offset` as in [`Segment::verify`].
    pub fn damage(&self, end_offset: Option<u64>) -> Vec<Damage> {
        let s = self.read_state();
        let end_offset = end_offset.unwrap_or(s.next_offset);
        s.damage
            .iter()
            .map(|d| d.damage(&self.path, end_offset))
            .collect()
    }

    /// The damaged stretch that starts with the bad batch a reader met at `position`, wanting
    /// `first_offset`: from there to the next good batch before `limit` (the committed end, in
    /// the segment the writer appends to), or to the end. Remembered, and logged when new.
    pub fn damage_at(
        &self,
        position: u64,
        first_offset: u64,
        reason: CorruptReason,
        limit: Option<u64>,
    ) -> Result<Stretch> {
        let (sealed, next_offset) = {
            let s = self.read_state();
            let known = s.damage.iter().find(|d| d.start == position);
            // Damage at the tail of the segment being written may yet be followed by more.
            if let Some(d) = known.filter(|d| s.sealed || d.resumes_at.is_some()) {
                return Ok(d.clone());
            }
            (s.sealed, s.next_offset)
        };
        let end = match limit {
            Some(limit) => limit,
            None => file_len(&self.file, &self.path)?,
        };
        let found = damage::next_good_batch(
            &self.file,
            &self.path,
            position,
            end,
            first_offset,
            sealed.then_some(next_offset),
        )?;
        let stretch = Stretch {
            start: position,
            end: found.map_or(end, |(q, _)| q),
            first_offset,
            resumes_at: found.map(|(_, h)| h),
            reason,
        };
        let mut s = self.write_state();
        s.damage.retain(|d| d.start != position);
        let at = s.damage.partition_point(|d| d.start < position);
        s.damage.insert(at, stretch.clone());
        tracing::warn!(damage = %stretch.damage(&self.path, next_offset), "skipping damaged bus data");
        Ok(stretch)
    }
}

fn file_len(file: &File, path: &Path) -> Result<u64> {
    Ok(file
        .metadata()
        .context(|| format!("stat {}", path.display()))?
        .len())
}

/// Reads `file` from `state.len` (a batch boundary) to `end`, checking each batch and adding it
/// to `state`. At a bad batch it returns where it is and why or, with `resync`, looks for the
/// next good batch and goes on from there, returning every damaged stretch.
#[allow(clippy::too_many_arguments)]
fn scan(
    file: &File,
    path: &Path,
    base_offset: u64,
    state: &mut State,
    end: u64,
    index_interval: u64,
    deep: bool,
    resync: bool,
) -> Result<Vec<Stretch>> {
    let mut stretches = Vec::new();
    let mut buf: Vec<u8> = Vec::new();
    let mut buf_pos = state.len; // file position of buf[0]
    let mut at = 0usize;
    loop {
        let position = buf_pos + at as u64;
        if position >= end {
            return Ok(stretches);
        }
        let checked = match batch::check(&buf[at..]) {
            Err(reason) => Err(reason),
            Ok(Frame::Complete(header)) => {
                let bytes = &buf[at..at + header.batch_len as usize];
                batch::verify_crc(&header, bytes)
                    .and_then(|()| {
                        if header.base_offset != state.next_offset {
                            return Err(CorruptReason::OffsetGap {
                                expected: state.next_offset,
                                found: header.base_offset,
                            });
                        }
                        if deep {
                            match batch::decode(&Bytes::copy_from_slice(bytes), 0, |_| {}) {
                                // Whole (CRC, shape) but not checkable here: not damage.
                                Err(CorruptReason::UnknownLayout(_)) => state.unchecked += 1,
                                Err(reason) => return Err(reason),
                                Ok(_) => {}
                            }
                        }
                        Ok(())
                    })
                    .map(|()| header)
            }
            Ok(Frame::Incomplete { needed }) => {
                let have = buf.len() - at;
                let whole = position + (have + needed) as u64;
                if whole > end {
                    Err(CorruptReason::Truncated {
                        needed: whole - end,
                    })
                } else {
                    let want = (have + needed)
                        .max(SCAN_CHUNK)
                        .min((end - position) as usize);
                    let mut next = vec![0u8; want];
                    file.read_exact_at(&mut next, position)
                        .context(|| format!("reading {} at byte {position}", path.display()))?;
                    buf = next;
                    buf_pos = position;
                    at = 0;
                    continue;
                }
            }
        };
        match checked {
            Ok(header) => {
                state.add_batch(base_offset, position, &header, index_interval);
                at += header.batch_len as usize;
            }
            Err(reason) => {
                let found = if resync {
                    damage::next_good_batch(file, path, position, end, state.next_offset, None)?
                } else {
                    None
                };
                stretches.push(Stretch {
                    start: position,
                    end: found.map_or(end, |(q, _)| q),
                    first_offset: state.next_offset,
                    resumes_at: found.map(|(_, h)| h),
                    reason,
                });
                let Some((q, header)) = found else {
                    return Ok(stretches);
                };
                // Offsets go on from the good batch: the lost ones are a gap, never reused. An
                // index entry right after the gap lets readers seek past it.
                state.next_offset = header.base_offset;
                state.since_entry = u64::MAX;
                buf.clear();
                buf_pos = q;
                at = 0;
            }
        }
    }
}
