//! A partition: an ordered sequence of segments with one writer, group commit and readers.
//!
//! Appends take the writer lock only to assign offsets and copy the batch into the page cache
//! (encoding, compression and the CRC happen before, in the caller's thread). In `Fsync` mode
//! the appender then waits for a sync that covers its batch: the first waiter becomes the
//! leader, optionally lingers, snapshots how far the file is written, fsyncs once, and advances
//! the *committed mark* for everyone up to that point. Readers never see past the committed mark,
//! so a record is visible exactly when its append can be acknowledged.
//!
//! A failed fsync, or a failed roll to a new segment, poisons the partition: every waiting and
//! later append gets [`Error::Poisoned`], because after a failed fsync the file's contents are
//! unknown. A failed write of a batch (a full disk) does not: the batch is not stored, its
//! appender gets the error, and the partition takes the next append as if it had not been
//! tried, so ingest resumes by itself once there is space.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::Duration;

use eddy_base::fs::sync_dir;
use eddy_base::sync::{lock, read, wait, write};
use tokio::sync::watch;

use crate::batch::{self, EncodedBatch};
use crate::config::{ConfigCell, Durability};
use crate::contract::Polled;
use crate::damage::Damage;
use crate::error::{CorruptReason, Error, IoContext, IoError, Result};
use crate::record::{now_ns, Record, StoredRecord};
use crate::segment::{ReadOut, Segment, SegmentInfo};
use crate::signal::Signal;

/// How far readers may read: every offset below `next_offset`, which ends in the segment based
/// at `segment_base` at byte `position`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Mark {
    pub next_offset: u64,
    pub segment_base: u64,
    pub position: u64,
}

/// Why a write under the writer lock failed.
enum Failed {
    /// Writing the batch: nothing of it counts, and the partition takes the next append.
    Batch(Error),
    /// Rolling to a new segment: the partition refuses further writes.
    Roll(Error),
}

/// How a process uses a partition's files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// The one writer: recovers, appends, publishes its committed mark for other processes.
    Write,
    /// A reader in another process. `live`: a writer is running, so read only up to the mark
    /// it publishes (what it has acknowledged); otherwise every whole batch on disk.
    ReadOnly { live: bool },
}

/// The committed mark as the writer publishes it for readers in other processes: a 28-byte
/// file `committed` in the partition directory (u64 next offset, u64 segment base, u64 byte
/// position, u32 CRC32C of the 24 bytes before it; little-endian), rewritten in place after
/// every commit and never fsynced: it is a live hint, rebuilt from the segments at every open.
const MARK_FILE: &str = "committed";

fn encode_mark(m: Mark) -> [u8; 28] {
    let mut b = [0u8; 28];
    b[0..8].copy_from_slice(&m.next_offset.to_le_bytes());
    b[8..16].copy_from_slice(&m.segment_base.to_le_bytes());
    b[16..24].copy_from_slice(&m.position.to_le_bytes());
    let crc = crc32c::crc32c(&b[..24]);
    b[24..28].copy_from_slice(&crc.to_le_bytes());
    b
}

fn read_mark(dir: &Path) -> Option<Mark> {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::open(dir.join(MARK_FILE)).ok()?;
    let mut b = [0u8; 28];
    file.read_exact_at(&mut b, 0).ok()?;
    let le = |r: std::ops::Range<usize>| {
        let mut x = [0u8; 8];
        x.copy_from_slice(&b[r]);
        u64::from_le_bytes(x)
    };
    let crc = u32::from_le_bytes([b[24], b[25], b[26], b[27]]);
    (crc32c::crc32c(&b[..24]) == crc).then(|| Mark {
        next_offset: le(0..8),
        segment_base: le(8..16),
        position: le(16..24),
    })
}

impl Mark {
    /// The end of `segment`'s whole batches.
    fn end_of(segment: &Segment) -> Mark {
        let info = segment.info();
        Mark {
            next_offset: info.next_offset,
            segment_base: info.base_offset,
            position: info.len,
        }
    }
}

/// What an append got: the offsets of its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendAck {
    /// The partition written.
    pub partition: u32,
    /// Offset of the first record.
    pub base_offset: u64,
    /// Offset of the last record.
    pub last_offset: u64,
}

/// A snapshot of a partition for `describe`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PartitionInfo {
    /// Partition number.
    pub partition: u32,
    /// Oldest offset still held.
    pub start_offset: u64,
    /// Next offset to be written (records below it are readable).
    pub end_offset: u64,
    /// Number of segment files.
    pub segments: usize,
    /// Bytes in segment files.
    pub size_bytes: u64,
    /// Newest record timestamp (ns), if any.
    pub max_timestamp: Option<i64>,
}

/// What retention removed from a partition.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RetentionOutcome {
    /// Segments deleted.
    pub segments: usize,
    /// Bytes freed.
    pub bytes: u64,
}

struct Writer {
    active: Arc<Segment>,
    next_offset: u64,
}

struct Commit {
    written: Mark,
    written_segment: Arc<Segment>,
    committed: Mark,
    syncing: bool,
    poisoned: Option<String>,
    dirty: bool,
}

/// One partition of a topic.
pub struct Partition {
    topic: Arc<str>,
    id: u32,
    dir: PathBuf,
    config: Arc<ConfigCell>,
    durability: Durability,
    writer: Mutex<Writer>,
    segments: RwLock<Vec<Arc<Segment>>>,
    commit: Mutex<Commit>,
    commit_cv: Condvar,
    visible: watch::Sender<Mark>,
    signal: Arc<Signal>,
    access: Access,
    /// The writer's published mark, for readers in other processes.
    mark_file: Option<std::fs::File>,
}

impl std::fmt::Debug for Partition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Partition({}/{})", self.topic, self.id)
    }
}

impl Partition {
    /// The partition's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Opens (or creates) the partition in `dir`, recovering its segments. `floor`: an offset a
    /// consumer has already committed; if recovery lost records up to it, the partition goes on
    /// from there (see [`Partition::advance_to`]).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn open(
        topic: Arc<str>,
        id: u32,
        dir: PathBuf,
        config: Arc<ConfigCell>,
        durability: Durability,
        signal: Arc<Signal>,
        access: Access,
        floor: u64,
    ) -> Result<Partition> {
        let write = access == Access::Write;
        if write {
            std::fs::create_dir_all(&dir).context(|| format!("creating {}", dir.display()))?;
        }
        let bases = segment_bases(&dir)?;
        if write {
            remove_orphan_indexes(&dir, &bases);
        }

        let interval = config.get().index_interval_bytes;
        let mut segments = Vec::with_capacity(bases.len().max(1));
        // The writer's last published mark: what readers in other processes may have seen.
        let published = match access {
            Access::ReadOnly { live: false } => None,
            _ => read_mark(&dir),
        };
        match bases.split_last() {
            Some((&last, sealed)) => {
                for &base in sealed {
                    segments.push(Arc::new(Segment::open_sealed(&dir, base, interval, write)?));
                }
                segments.push(Arc::new(if write {
                    Segment::open_active(&dir, last, interval)?
                } else {
                    let limit = match published {
                        Some(m) if m.segment_base == last => m.position,
                        Some(m) if m.segment_base < last => 0,
                        _ => u64::MAX,
                    };
                    Segment::open_active_read_only(&dir, last, interval, limit)?
                }));
            }
            None if write => {
                segments.push(Arc::new(Segment::create(&dir, 0)?));
                sync_dir(&dir)?;
            }
            None => {
                return Err(Error::Io(IoError {
                    context: format!("opening partition {}", dir.display()),
                    source: std::io::Error::new(std::io::ErrorKind::NotFound, "no segment files"),
                }))
            }
        }
        if let Some(damaged) = segments.last().filter(|s| write && s.is_damaged()).cloned() {
            // Keep the damaged file as it is, good batches after the damage included, and
            // append to a new one.
            damaged.seal()?;
            let next = damaged.info().next_offset;
            segments.push(Arc::new(Segment::create(&dir, next)?));
            sync_dir(&dir)?;
        }
        for pair in segments.windows(2) {
            let (a, b) = (pair[0].info(), pair[1].info());
            if a.next_offset != b.base_offset {
                tracing::warn!(
                    file = %pair[0].path.display(),
                    ends_at = a.next_offset,
                    next_segment_starts_at = b.base_offset,
                    "segments are not contiguous"
                );
            }
        }
        let active = segments.last().cloned().ok_or(Error::Closed)?;
        let mark = Mark::end_of(&active);
        let mark_file = if write {
            let path = dir.join(MARK_FILE);
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .context(|| format!("opening {}", path.display()))?;
            write_mark(&file, mark);
            Some(file)
        } else {
            None
        };
        let partition = Partition {
            topic,
            id,
            dir,
            config,
            durability,
            writer: Mutex::new(Writer {
                active: active.clone(),
                next_offset: mark.next_offset,
            }),
            segments: RwLock::new(segments),
            commit: Mutex::new(Commit {
                written: mark,
                written_segment: active,
                committed: mark,
                syncing: false,
                poisoned: None,
                dirty: false,
            }),
            commit_cv: Condvar::new(),
            visible: watch::Sender::new(mark),
            signal,
            access,
            mark_file,
        };
        if write {
            let seen = published.map_or(0, |m| m.next_offset);
            partition.advance_to(floor.max(seen))?;
        }
        Ok(partition)
    }

    /// Moves the partition's end forward to `offset` if it is below it, so that no offset below
    /// it is ever handed out again. Recovery can end a partition below offsets that consumers
    /// have already seen and committed (a tail cut short or damaged on disk, or the `Interval`
    /// policy after a power cut); reusing those offsets would make consumers treat new records
    /// as done. Like Kafka after an unclean leader election, the lost offsets stay a gap: the
    /// partition continues in a new segment based at `offset`. Returns whether it moved.
    pub fn advance_to(&self, offset: u64) -> Result<bool> {
        if self.access != Access::Write {
            return Err(Error::ReadOnly);
        }
        let mut w = lock(&self.writer);
        let from = w.next_offset;
        if from >= offset {
            return Ok(false);
        }
        let empty = w.active.info().len == 0;
        if empty {
            w.active.delete_files()?;
        } else {
            w.active.seal()?;
        }
        let segment = Arc::new(Segment::create(&self.dir, offset)?);
        sync_dir(&self.dir)?;
        {
            let mut list = write(&self.segments);
            if empty {
                list.pop();
            }
            list.push(segment.clone());
        }
        w.active = segment;
        w.next_offset = offset;
        let mark = Mark::end_of(&w.active);
        let mut c = lock(&self.commit);
        c.written = mark;
        c.written_segment = w.active.clone();
        self.publish(&mut c, mark);
        tracing::warn!(
            topic = %self.topic,
            partition = self.id,
            recovered_end = from,
            continues_at = offset,
            "the partition ends below an offset a consumer has already seen (records lost on disk); offsets go on from there and are never reused"
        );
        Ok(true)
    }

    /// The partition number.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The topic name.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Checks record sizes against the topic's limits and encodes the batch.
    pub fn encode(&self, records: &[Record]) -> Result<EncodedBatch> {
        self.encode_with(records, self.config.get().compression)
    }

    /// Like [`Partition::encode`] with an explicit compression.
    pub fn encode_with(
        &self,
        records: &[Record],
        compression: batch::Compression,
    ) -> Result<EncodedBatch> {
        if records.is_empty() {
            return Err(Error::EmptyBatch);
        }
        batch::check_record_sizes(records, self.config.get().max_record_bytes)?;
        Ok(EncodedBatch::encode(records, compression, now_ns()))
    }

    /// Appends records as one batch and returns once the durability policy is met.
    pub fn append(&self, records: &[Record]) -> Result<AppendAck> {
        let batch = self.encode(records)?;
        self.append_encoded(batch)
    }

    fn poisoned(&self, cause: &str) -> Error {
        Error::Poisoned {
            topic: self.topic.to_string(),
            partition: self.id,
            cause: cause.to_string(),
        }
    }

    /// Appends a batch built by [`Partition::encode`].
    pub fn append_encoded(&self, batch: EncodedBatch) -> Result<AppendAck> {
        let ack = self.write_encoded(batch)?;
        self.wait_for(ack)?;
        Ok(ack)
    }

    /// The first half of [`Partition::append_encoded`]: writes the batch (not yet durable under
    /// [`Durability::Fsync`]), so that a producer with shares for several partitions can write
    /// them all before waiting for any fsync ([`Partition::wait_for`]).
    pub(crate) fn write_encoded(&self, mut batch: EncodedBatch) -> Result<AppendAck> {
        if self.access != Access::Write {
            return Err(Error::ReadOnly);
        }
        if batch.record_count() == 0 || batch.len() <= batch::HEADER_LEN {
            // Would read back as corrupt (a laid-out batch built with nothing in it).
            return Err(Error::EmptyBatch);
        }
        if batch.len() > self.config.get().max_batch_bytes {
            return Err(Error::BatchTooLarge {
                records: batch.record_count() as usize,
                size: batch.len(),
                limit: self.config.get().max_batch_bytes,
            });
        }
        let count = u64::from(batch.record_count());
        let base = {
            let mut w = lock(&self.writer);
            if let Some(cause) = &lock(&self.commit).poisoned {
                return Err(self.poisoned(cause));
            }
            let result = self.write_locked(&mut w, &mut batch);
            let mut c = lock(&self.commit);
            match result {
                Ok(base) => {
                    c.written = Mark::end_of(&w.active);
                    c.written_segment = w.active.clone();
                    c.dirty = true;
                    if matches!(self.durability, Durability::Interval { .. }) {
                        let mark = c.written;
                        self.publish(&mut c, mark);
                    }
                    base
                }
                Err(Failed::Batch(e)) => {
                    // Nothing of the batch counts (see `Segment::append`): the next append may
                    // succeed, once there is space again.
                    tracing::error!(topic = %self.topic, partition = self.id, error = %e, "write failed; the batch was not stored");
                    return Err(e);
                }
                Err(Failed::Roll(e)) => {
                    self.poison(&mut c, "write failed", &e);
                    return Err(e);
                }
            }
        };
        Ok(AppendAck {
            partition: self.id,
            base_offset: base,
            last_offset: base + count - 1,
        })
    }

    /// The second half of [`Partition::append_encoded`]: returns once the durability policy is
    /// met for the records `ack` names.
    pub(crate) fn wait_for(&self, ack: AppendAck) -> Result<()> {
        if let Durability::Fsync { linger } = self.durability {
            self.wait_durable(ack.last_offset + 1, linger)?;
        }
        Ok(())
    }

    fn write_locked(&self, w: &mut Writer, batch: &mut EncodedBatch) -> Result<u64, Failed> {
        let info = w.active.info();
        let count = u64::from(batch.record_count());
        let too_big = info.len + batch.len() as u64 > self.config.get().segment_bytes;
        let too_old = now_ns().saturating_sub(w.active.created_ns())
            > (self.config.get().segment_ms as i64).saturating_mul(1_000_000);
        let offsets_full = w.next_offset + count - info.base_offset > u64::from(u32::MAX);
        if info.len > 0 && (too_big || too_old || offsets_full) {
            self.roll(w).map_err(Failed::Roll)?;
        }
        let base = w.next_offset;
        batch.set_base_offset(base);
        w.active
            .append(
                batch.as_bytes(),
                batch.header(),
                self.config.get().index_interval_bytes,
            )
            .map_err(Failed::Batch)?;
        w.next_offset += count;
        Ok(base)
    }

    /// Seals the active segment and starts a new one at the next offset.
    ///
    /// A failure here poisons the partition: the old segment may be half sealed (synced, its
    /// index written) and the new one half made.
    fn roll(&self, w: &mut Writer) -> Result<()> {
        w.active.seal()?;
        let segment = Arc::new(Segment::create(&self.dir, w.next_offset)?);
        sync_dir(&self.dir)?;
        write(&self.segments).push(segment.clone());
        tracing::debug!(topic = %self.topic, partition = self.id, sealed = %w.active.path.display(), "rolled segment");
        w.active = segment;
        Ok(())
    }

    /// Advances the committed mark and wakes readers. Called with the commit lock held.
    fn publish(&self, c: &mut Commit, mark: Mark) {
        if mark.next_offset > c.committed.next_offset {
            c.committed = mark;
            if let Some(file) = &self.mark_file {
                write_mark(file, mark);
            }
            self.visible.send_replace(mark);
            self.signal.bump();
        }
    }

    /// Group commit: returns once everything below `end` is durable.
    fn wait_durable(&self, end: u64, linger: Duration) -> Result<()> {
        let mut c = lock(&self.commit);
        loop {
            if c.committed.next_offset >= end {
                return Ok(());
            }
            if let Some(cause) = &c.poisoned {
                return Err(self.poisoned(cause));
            }
            if c.syncing {
                c = wait(&self.commit_cv, c);
                continue;
            }
            c.syncing = true;
            drop(c);
            if !linger.is_zero() {
                std::thread::sleep(linger);
            }
            let (mark, segment) = {
                let mut c = lock(&self.commit);
                c.dirty = false;
                (c.written, c.written_segment.clone())
            };
            let result = segment.sync();
            c = lock(&self.commit);
            c.syncing = false;
            match result {
                Ok(()) => self.publish(&mut c, mark),
                Err(e) => {
                    tracing::error!(topic = %self.topic, partition = self.id, error = %e, "fsync failed; partition refuses further writes");
                    c.poisoned.get_or_insert_with(|| e.to_string());
                }
            }
            self.commit_cv.notify_all();
        }
    }

    /// Fsyncs whatever is written but not yet synced (the `Interval` policy's background sync,
    /// and shutdown).
    pub(crate) fn flush(&self) -> Result<()> {
        let segment = {
            let mut c = lock(&self.commit);
            if !c.dirty || c.poisoned.is_some() {
                return Ok(());
            }
            c.dirty = false;
            c.written_segment.clone()
        };
        if let Err(e) = segment.sync() {
            lock(&self.commit)
                .poisoned
                .get_or_insert_with(|| e.to_string());
            return Err(e);
        }
        Ok(())
    }

    /// In a read-only partition, takes in what the writing process has committed since the last
    /// refresh, and wakes followers. Returns whether anything new became readable.
    pub(crate) fn refresh(&self) -> Result<bool> {
        let Access::ReadOnly { .. } = self.access else {
            return Ok(false);
        };
        let Some(mark) = read_mark(&self.dir) else {
            return Ok(false);
        };
        if mark.next_offset <= self.committed().next_offset {
            return Ok(false);
        }
        let interval = self.config.get().index_interval_bytes;
        let segments = self.segments();
        let Some(active) = segments.last() else {
            return Ok(false);
        };
        if mark.segment_base == active.base_offset {
            active.extend_to(mark.position, interval)?;
        } else if mark.segment_base > active.base_offset {
            // The writer sealed our last segment and started others.
            active.mark_sealed(interval)?;
            let new_bases = segment_bases(&self.dir)?
                .into_iter()
                .filter(|&b| b > active.base_offset && b <= mark.segment_base);
            let mut added = Vec::new();
            for base in new_bases {
                added.push(Arc::new(if base == mark.segment_base {
                    Segment::open_active_read_only(&self.dir, base, interval, mark.position)?
                } else {
                    Segment::open_sealed(&self.dir, base, interval, false)?
                }));
            }
            write(&self.segments).extend(added);
        } else {
            return Ok(false); // the writer restarted and is behind what we saw; wait
        }
        let mut c = lock(&self.commit);
        self.publish(&mut c, mark);
        Ok(true)
    }

    pub(crate) fn committed(&self) -> Mark {
        *self.visible.borrow()
    }

    fn segments(&self) -> Vec<Arc<Segment>> {
        read(&self.segments).clone()
    }

    /// Oldest offset still held.
    pub fn start_offset(&self) -> u64 {
        read(&self.segments).first().map_or(0, |s| s.base_offset)
    }

    /// Why the partition refuses appends, if a write or fsync failed (it needs a restart).
    pub fn failure(&self) -> Option<String> {
        lock(&self.commit).poisoned.clone()
    }

    /// Next offset to be written; every offset below it is readable.
    pub fn end_offset(&self) -> u64 {
        self.committed().next_offset
    }

    /// Sizes and offsets, for `describe`.
    pub fn info(&self) -> PartitionInfo {
        let segments = self.segments();
        let infos: Vec<SegmentInfo> = segments.iter().map(|s| s.info()).collect();
        let max_ts = infos
            .iter()
            .map(|i| i.max_timestamp)
            .max()
            .filter(|&t| t != i64::MIN);
        PartitionInfo {
            partition: self.id,
            start_offset: infos.first().map_or(0, |i| i.base_offset),
            end_offset: self.end_offset(),
            segments: infos.len(),
            size_bytes: infos.iter().map(|i| i.len).sum(),
            max_timestamp: max_ts,
        }
    }

    /// Deletes whole sealed segments that are past the topic's age or size retention and end
    /// at or below `floor` (the offset every protecting consumer group has committed past;
    /// `u64::MAX` when none protects the topic).
    pub fn enforce_retention(&self, now_ns: i64, floor: u64) -> Result<RetentionOutcome> {
        if self.access != Access::Write {
            return Ok(RetentionOutcome::default());
        }
        let cutoff = self
            .config
            .get()
            .retention_ms
            .map(|ms| now_ns.saturating_sub((ms as i64).saturating_mul(1_000_000)));
        self.roll_idle(now_ns, cutoff, floor)?;
        let segments = self.segments();
        let infos: Vec<SegmentInfo> = segments.iter().map(|s| s.info()).collect();
        let mut total: u64 = infos.iter().map(|i| i.len).sum();
        let mut doomed = 0;
        // The last segment is the active one and is never deleted.
        for info in &infos[..infos.len().saturating_sub(1)] {
            if !info.sealed {
                break;
            }
            let by_age = cutoff.is_some_and(|c| info.max_timestamp < c);
            let by_size = self
                .config
                .get()
                .retention_bytes
                .is_some_and(|limit| total > limit);
            if !(by_age || by_size) || info.next_offset > floor {
                break;
            }
            total -= info.len;
            doomed += 1;
        }
        if doomed == 0 {
            return Ok(RetentionOutcome::default());
        }
        let removed: Vec<Arc<Segment>> = {
            let mut list = write(&self.segments);
            // Only the front can have changed shape: the writer appends at the back.
            let n = doomed.min(list.len().saturating_sub(1));
            list.drain(..n).collect()
        };
        let mut outcome = RetentionOutcome::default();
        for segment in removed {
            let info = segment.info();
            segment.delete_files()?;
            tracing::info!(
                topic = %self.topic,
                partition = self.id,
                file = %segment.path.display(),
                bytes = info.len,
                offsets = %format_args!("{}..{}", info.base_offset, info.next_offset),
                "retention deleted segment"
            );
            outcome.segments += 1;
            outcome.bytes += info.len;
        }
        sync_dir(&self.dir)?;
        Ok(outcome)
    }

    /// Seals the active segment when only an append would have rolled it: it is past
    /// `segment_ms`, every record in it is past the age `cutoff` and at or below `floor`. Without
    /// this a topic that stops receiving keeps its last segment (up to `segment_bytes` per
    /// partition) forever, however short its retention.
    fn roll_idle(&self, now_ns: i64, cutoff: Option<i64>, floor: u64) -> Result<()> {
        let mut w = lock(&self.writer);
        let info = w.active.info();
        let segment_ns = (self.config.get().segment_ms as i64).saturating_mul(1_000_000);
        let too_old = now_ns.saturating_sub(w.active.created_ns()) > segment_ns;
        let expired = cutoff.is_some_and(|c| info.max_timestamp < c);
        if info.len == 0 || !too_old || !expired || w.next_offset > floor {
            return Ok(());
        }
        let mut c = lock(&self.commit);
        if c.poisoned.is_some() {
            return Ok(());
        }
        if let Err(e) = self.roll(&mut w) {
            self.poison(&mut c, "rolling an idle segment failed", &e);
            return Err(e);
        }
        Ok(())
    }

    /// Refuses further writes after a roll that failed half way (see [`Partition::roll`]), and
    /// wakes whoever waits on the commit so that they see it.
    fn poison(&self, c: &mut Commit, what: &str, e: &Error) {
        tracing::error!(topic = %self.topic, partition = self.id, error = %e, "{what}; partition refuses further writes");
        c.poisoned.get_or_insert_with(|| e.to_string());
        self.commit_cv.notify_all();
    }

    /// The first offset whose record timestamp is at or after `ts` (ns); the end offset if none.
    pub fn offset_for_time(&self, ts: i64) -> Result<u64> {
        let mark = self.committed();
        for segment in self.segments() {
            if segment.base_offset > mark.segment_base {
                break;
            }
            let end = self.readable_end(&segment, mark)?;
            if let Some(offset) = segment.offset_for_time(ts, end)? {
                return Ok(offset);
            }
        }
        Ok(mark.next_offset)
    }

    fn readable_end(&self, segment: &Segment, mark: Mark) -> Result<u64> {
        if segment.base_offset > mark.segment_base {
            return Ok(0);
        }
        segment.readable_end((segment.base_offset == mark.segment_base).then_some(mark.position))
    }

    /// Checks every batch of every segment, records included, and returns every damaged
    /// stretch.
    pub fn verify(&self) -> Result<Vec<Damage>> {
        let segments = self.segments();
        let mut problems = Vec::new();
        for (i, segment) in segments.iter().enumerate() {
            problems.extend(segment.verify(segments.get(i + 1).map(|s| s.base_offset))?);
        }
        Ok(problems)
    }

    /// The damage found so far: by recovery at open, and by readers that skipped it.
    pub fn damage(&self) -> Vec<Damage> {
        let segments = self.segments();
        segments
            .iter()
            .enumerate()
            .flat_map(|(i, s)| s.damage(segments.get(i + 1).map(|s| s.base_offset)))
            .collect()
    }

    /// Waits until data past `seen_version` of the topic's signal appears or `timeout` passes.
    pub(crate) fn signal(&self) -> &Arc<Signal> {
        &self.signal
    }

    fn out_of_range(&self, requested: u64) -> Error {
        Error::OffsetOutOfRange {
            topic: self.topic.to_string(),
            partition: self.id,
            requested,
            earliest: self.start_offset(),
            latest: self.end_offset(),
        }
    }
}

/// Where a reader stopped inside a segment, so the next read continues without an index seek.
struct Cursor {
    segment: Arc<Segment>,
    batch_offset: u64,
    position: u64,
}

/// Reads a partition in order from a position, and follows its tail.
pub struct PartitionReader {
    partition: Arc<Partition>,
    next_offset: u64,
    cursor: Option<Cursor>,
    max_bytes: usize,
    /// Where the last poll met damage, for [`PartitionReader::skip_damage`].
    damaged: Option<(Arc<Segment>, u64, CorruptReason)>,
    /// Whether polls skip damage themselves (see [`PartitionReader::skipping_damage`]).
    skip_damaged: bool,
    /// Records skipped as damaged so far.
    skipped: u64,
}

impl std::fmt::Debug for PartitionReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PartitionReader({:?} at {})",
            self.partition, self.next_offset
        )
    }
}

impl PartitionReader {
    pub(crate) fn new(partition: Arc<Partition>, offset: u64) -> PartitionReader {
        PartitionReader {
            partition,
            next_offset: offset,
            cursor: None,
            max_bytes: 1 << 20,
            damaged: None,
            skip_damaged: false,
            skipped: 0,
        }
    }

    /// Sets about how many bytes one poll reads (default 1 MiB).
    pub fn with_max_bytes(mut self, max_bytes: usize) -> PartitionReader {
        self.max_bytes = max_bytes.max(1);
        self
    }

    /// Makes polls skip damaged bus data with a warning instead of failing, for readers that
    /// would rather go on without the records (live views, pipelines, `eddy consume`) than stop.
    /// [`PartitionReader::skipped`] counts what they lost.
    pub fn skipping_damage(mut self) -> PartitionReader {
        self.skip_damaged = true;
        self
    }

    /// Records skipped as damaged so far.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// The next offset this reader will return.
    pub fn position(&self) -> u64 {
        self.next_offset
    }

    /// The partition read.
    pub fn partition(&self) -> &Arc<Partition> {
        &self.partition
    }

    /// Moves to `offset`.
    pub fn seek(&mut self, offset: u64) {
        self.next_offset = offset;
        self.cursor = None;
    }

    /// Returns the next readable records (about `max_bytes` of them), or none if the reader is
    /// at the end. Never blocks on new data. Damaged data is an [`Error::Corrupt`], unless the
    /// reader is [`PartitionReader::skipping_damage`].
    pub fn poll(&mut self) -> Result<Vec<StoredRecord>> {
        Ok(self.poll_into(false)?.into_records())
    }

    /// Like [`PartitionReader::poll`], but a laid-out batch that starts at or after the
    /// position comes whole (see [`crate::BusReader::poll_laid_out`]), its layout not called.
    pub fn poll_laid_out(&mut self) -> Result<Vec<Polled>> {
        Ok(self.poll_into(true)?.into_polled())
    }

    /// `whole`: hand out laid-out batches whole.
    fn poll_into(&mut self, whole: bool) -> Result<ReadOut> {
        loop {
            match self.poll_once(whole) {
                Err(e @ Error::Corrupt { .. }) if self.skip_damaged => match self.skip_damage()? {
                    Some(damage) => {
                        self.skipped += damage.records();
                        tracing::warn!(topic = %self.partition.topic, partition = self.partition.id, "a reader skipped damaged bus data: {damage}");
                    }
                    None => return Err(e),
                },
                polled => return polled,
            }
        }
    }

    fn poll_once(&mut self, whole: bool) -> Result<ReadOut> {
        let mark = self.partition.committed();
        let mut out = ReadOut::new(whole);
        if self.next_offset >= mark.next_offset {
            if self.next_offset < self.partition.start_offset() {
                return Err(self.partition.out_of_range(self.next_offset));
            }
            return Ok(out);
        }
        let mut cursor = match self.cursor.take() {
            Some(c) => c,
            None => self.locate()?,
        };
        loop {
            let end = self.partition.readable_end(&cursor.segment, mark)?;
            let read = cursor.segment.read(
                self.next_offset,
                cursor.batch_offset,
                cursor.position,
                end,
                self.max_bytes,
                &mut out,
            );
            let outcome = match read {
                Ok(outcome) => outcome,
                Err(e) => {
                    if let Some(last) = out.last_offset() {
                        // Hand out what was read before the damage; the next poll meets it.
                        self.next_offset = last + 1;
                        return Ok(out);
                    }
                    if let Error::Corrupt {
                        position, reason, ..
                    } = &e
                    {
                        self.damaged = Some((cursor.segment.clone(), *position, reason.clone()));
                    }
                    return Err(e);
                }
            };
            cursor.batch_offset = outcome.next_offset;
            cursor.position = outcome.position;
            if let Some(last) = out.last_offset() {
                self.next_offset = last + 1;
                self.cursor = Some(cursor);
                return Ok(out);
            }
            if cursor.position < end {
                continue; // only skipped batches before the wanted offset so far
            }
            // At the end of what this segment has readable: the committed end, or the end of a
            // sealed segment with more after it.
            let info = cursor.segment.info();
            if !info.sealed || cursor.segment.base_offset >= mark.segment_base {
                self.cursor = Some(cursor);
                return Ok(out);
            }
            let Some(next) = self
                .partition
                .segments()
                .into_iter()
                .find(|s| s.base_offset > cursor.segment.base_offset)
            else {
                self.cursor = Some(cursor);
                return Ok(out);
            };
            cursor = Cursor {
                batch_offset: next.base_offset,
                position: 0,
                segment: next,
            };
        }
    }

    /// After a poll failed with [`Error::Corrupt`], moves past the damaged stretch to the next
    /// good batch (or the next segment) and says what this reader could not read; `None` if the
    /// last poll met no damage. Skipping is the caller's decision: the records in the stretch
    /// are lost to it. The partition remembers the damage ([`Partition::damage`]).
    pub fn skip_damage(&mut self) -> Result<Option<Damage>> {
        let Some((segment, position, reason)) = self.damaged.take() else {
            return Ok(None);
        };
        let mark = self.partition.committed();
        let limit = (segment.base_offset == mark.segment_base).then_some(mark.position);
        let stretch = segment.damage_at(position, self.next_offset, reason, limit)?;
        let next_segment = self
            .partition
            .segments()
            .into_iter()
            .find(|s| s.base_offset > segment.base_offset)
            .map(|s| s.base_offset);
        let mut damage = stretch.damage(&segment.path, next_segment.unwrap_or(mark.next_offset));
        damage.offsets.start = damage.offsets.start.max(self.next_offset);
        damage.offsets.start = damage.offsets.start.min(damage.offsets.end);
        self.next_offset = self.next_offset.max(damage.offsets.end);
        self.cursor = stretch.resumes_at.map(|h| Cursor {
            segment,
            batch_offset: h.base_offset,
            position: stretch.end,
        });
        Ok(Some(damage))
    }

    fn locate(&self) -> Result<Cursor> {
        let segments = self.partition.segments();
        let first = segments.first().map_or(0, |s| s.base_offset);
        if self.next_offset < first {
            return Err(self.partition.out_of_range(self.next_offset));
        }
        let i = segments.partition_point(|s| s.base_offset <= self.next_offset);
        let segment = segments
            .get(i.wrapping_sub(1))
            .cloned()
            .ok_or_else(|| self.partition.out_of_range(self.next_offset))?;
        let (batch_offset, position) = segment.seek(self.next_offset)?;
        Ok(Cursor {
            segment,
            batch_offset,
            position,
        })
    }

    /// Like [`PartitionReader::poll`], but waits up to `timeout` for new data if there is none:
    /// the writer wakes it as soon as data is committed.
    pub fn poll_wait(&mut self, timeout: Duration) -> Result<Vec<StoredRecord>> {
        Ok(self.poll_wait_into(timeout, false)?.into_records())
    }

    /// Like [`PartitionReader::poll_laid_out`], but waits up to `timeout` for new data as
    /// [`PartitionReader::poll_wait`] does.
    pub fn poll_laid_out_wait(&mut self, timeout: Duration) -> Result<Vec<Polled>> {
        Ok(self.poll_wait_into(timeout, true)?.into_polled())
    }

    fn poll_wait_into(&mut self, timeout: Duration, whole: bool) -> Result<ReadOut> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let seen = self.partition.signal().version();
            let out = self.poll_into(whole)?;
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if out.last_offset().is_some() || left.is_zero() {
                return Ok(out);
            }
            self.partition.signal().wait_past(seen, left);
        }
    }
}

fn write_mark(file: &std::fs::File, mark: Mark) {
    use std::os::unix::fs::FileExt;
    // Only a hint for other processes: a failure here must not fail the append.
    if let Err(e) = file.write_all_at(&encode_mark(mark), 0) {
        tracing::warn!(error = %e, "cannot publish the committed mark for other processes");
    }
}

/// The base offsets of the segment files in `dir`, in order.
pub(crate) fn segment_bases(dir: &Path) -> Result<Vec<u64>> {
    let mut bases = Vec::new();
    for entry in std::fs::read_dir(dir).context(|| format!("listing {}", dir.display()))? {
        let entry = entry.context(|| format!("listing {}", dir.display()))?;
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".log")) else {
            continue;
        };
        match stem.parse::<u64>() {
            Ok(base) => bases.push(base),
            Err(_) => {
                tracing::warn!(file = %entry.path().display(), "ignoring a file that is not a segment")
            }
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

fn remove_orphan_indexes(dir: &Path, bases: &[u64]) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let is_index = matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("index" | "timeindex")
        );
        let base = path
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.parse::<u64>().ok());
        if let (true, Some(base)) = (is_index, base) {
            if bases.binary_search(&base).is_err() {
                tracing::info!(file = %path.display(), "removing index of a deleted segment");
                let _ = std::fs::remove_file(&path);
            }
        }
    }
}
