//! Repair of damaged segments: a segment cut short (no trailer), with a damaged footer or with
//! damaged blocks is replaced by one holding every event that can still be had, from its own
//! readable blocks and from the bus, and what cannot be had is named.
//!
//! Where events come from, for a damaged segment of data source `s`, bus partition `p` and
//! offsets `first..=last` (from its footer, or from the catalogue when the footer is gone):
//!
//! 1. its blocks that still pass their checksum and decode (with a footer: copied as they are;
//!    without one: found by walking the zstd frames from the header on, and re-blocked);
//! 2. the records of `p` in `first..=last` keyed `s` that the bus still holds, decoded as the
//!    digest decodes them, less those whose `@id` is already among the events of step 1 or of an
//!    intact segment of `(p, s)` whose offsets overlap (a merge spans the ranges of the
//!    segments it replaced), counted as a multiset, so nothing is stored twice.
//!
//! The new segment names the damaged one in its footer's `replaces`, as a merge does, so a crash
//! halfway leaves either the damaged segment or its replacement in use; the damaged file is kept
//! beside it as `<id>.damaged`. The repair runs only on a store no server holds (the bus's `LOCK`
//! says so): a digest must not append while segments change hands.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use eddy_event::codec::FieldsRef;
use eddy_event::Event;
use eddy_log::Topic;
use uuid::Uuid;

use crate::block::{self, BlockBuilder, BlockSummary};
use crate::bloom::BloomFilter;
use crate::catalogue::{segment_files, wip_path};
use crate::digest::source_of;
use crate::sections;
use crate::segment::{read_block, SegmentError, SegmentFile, SegmentInfo, SegmentWriter};
use crate::store::RepoStore;

/// Where the blocks of a segment start (after the header).
const FIRST_BLOCK: u64 = 16;
/// The codec byte of a zstd block (see `block`).
const CODEC_ZSTD: u8 = 1;

/// What the repair of one damaged segment did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SegmentRepair {
    /// The damaged segment.
    pub segment: u64,
    /// Its file.
    pub path: PathBuf,
    /// What is wrong with it.
    pub problem: String,
    /// What it held, as its footer or the catalogue says (`None`: neither is left).
    pub held: Option<Held>,
    /// Events taken from its readable blocks.
    pub from_blocks: u64,
    /// Events re-digested from the bus.
    pub from_bus: u64,
    /// The segment that now holds them (`None`: nothing could be restored).
    pub restored_as: Option<u64>,
    /// Where the damaged file is kept.
    pub kept_as: PathBuf,
    /// What could not be restored (`None`: everything was).
    pub lost: Option<Lost>,
}

/// What a damaged segment held.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Held {
    /// Its bus partition.
    pub partition: u32,
    /// Its data source key.
    pub source: String,
    /// First bus offset.
    pub first_offset: u64,
    /// Last bus offset.
    pub last_offset: u64,
    /// Events.
    pub events: u64,
    /// Earliest `@timestamp` (ns).
    pub min_time: i64,
    /// Latest `@timestamp` (ns).
    pub max_time: i64,
}

/// What a repair could not restore.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Lost {
    /// Events missing (`None`: unknown, the segment's count is gone with its footer).
    pub events: Option<u64>,
    /// Bus offset ranges (inclusive) of the segment that the bus could not give back.
    pub bus_offsets: Vec<(u64, u64)>,
    /// Earliest `@timestamp` of what is missing, when known (ns).
    pub min_time: Option<i64>,
    /// Latest `@timestamp` of what is missing, when known (ns).
    pub max_time: Option<i64>,
    /// Why, in words.
    pub reason: String,
}

impl SegmentRepair {
    /// Whether every event of the segment was restored.
    pub fn complete(&self) -> bool {
        self.lost.is_none()
    }
}

/// Finds every damaged segment of `store` and repairs it, re-digesting from `topic` (the
/// repository's bus topic, `None` if it is gone). Intact segments are read but not changed.
pub fn repair(
    store: &RepoStore,
    topic: Option<&Topic>,
) -> Result<Vec<SegmentRepair>, SegmentError> {
    let dir = store.dir().to_path_buf();
    let files = segment_files(&dir).map_err(|source| SegmentError::Io {
        path: dir.clone(),
        source,
    })?;
    let mut repairs = Vec::new();
    for path in files {
        let Some(id) = segment_id(&path) else {
            continue;
        };
        let catalogue = store.catalogue();
        if !catalogue.segments.contains_key(&id)
            && catalogue
                .segments
                .values()
                .any(|e| e.info.replaces.contains(&id))
        {
            // Left behind by a merge or repair that finished: its events are in the segment
            // that replaced it.
            crate::store::remove_file(&path)?;
            continue;
        }
        let Some(salvage) = inspect(&path) else {
            continue;
        };
        let known = salvage
            .footer
            .clone()
            .or_else(|| catalogue.segments.get(&id).map(|e| e.info.clone()));
        repairs.push(restore(store, topic, id, &path, salvage, known)?);
    }
    Ok(repairs)
}

fn segment_id(path: &Path) -> Option<u64> {
    path.file_name()?
        .to_str()?
        .strip_suffix(".seg")?
        .parse()
        .ok()
}

/// A block copied as it is stored.
struct StoredBlock {
    stored: Vec<u8>,
    summary: BlockSummary,
    bloom: BloomFilter,
}

/// What a damaged segment still gives.
struct Salvage {
    problem: String,
    footer: Option<SegmentInfo>,
    /// Intact blocks of a segment whose footer is readable.
    copied: Vec<StoredBlock>,
    /// Events of intact blocks found without a footer, to be blocked again.
    events: Vec<Event>,
    /// `@id`s of everything salvaged, with how often each is seen.
    ids: HashMap<Uuid, u32>,
    salvaged: u64,
    /// Damaged blocks: events they held and their time range (from the footer).
    unreadable: Vec<BlockSummary>,
}

impl Salvage {
    fn new(problem: String, footer: Option<SegmentInfo>) -> Salvage {
        Salvage {
            problem,
            footer,
            copied: Vec::new(),
            events: Vec::new(),
            ids: HashMap::new(),
            salvaged: 0,
            unreadable: Vec::new(),
        }
    }

    fn note(&mut self, events: &[Event]) {
        for e in events {
            *self.ids.entry(e.id).or_default() += 1;
        }
        self.salvaged += events.len() as u64;
    }
}

/// What can be saved from the segment at `path`; `None` if it is intact.
fn inspect(path: &Path) -> Option<Salvage> {
    let seg = match SegmentFile::open(path) {
        Ok(seg) => seg,
        Err(e) => return Some(walk(path, e.to_string())),
    };
    let footer = seg.footer();
    let mut salvage = Salvage::new(String::new(), Some(footer.info.clone()));
    let mut problems = Vec::new();
    for (index, (entry, bloom)) in footer.blocks.iter().zip(&footer.blooms).enumerate() {
        let read = read_block(seg.file(), seg.path(), index, entry).and_then(|stored| {
            let events = seg.events(index)?;
            if events.len() as u64 != u64::from(entry.summary.count) {
                return Err(SegmentError::Block {
                    path: path.to_path_buf(),
                    block: index,
                    offset: entry.offset,
                    reason: format!(
                        "{} events where the footer says {}",
                        events.len(),
                        entry.summary.count
                    ),
                });
            }
            Ok((stored, events))
        });
        match read {
            Ok((stored, events)) => {
                salvage.note(&events);
                salvage.copied.push(StoredBlock {
                    stored,
                    summary: entry.summary.clone(),
                    bloom: bloom.clone(),
                });
            }
            Err(e) => {
                problems.push(e.to_string());
                salvage.unreadable.push(entry.summary.clone());
            }
        }
    }
    if problems.is_empty() {
        return None;
    }
    salvage.problem = problems.join("; ");
    Some(salvage)
}

/// Without a footer: the blocks from the header on, one after another, as long as they decode
/// (sectioned blocks and zstd frames carry their length; older blocks stored raw or with lz4
/// do not: the walk stops there).
fn walk(path: &Path, problem: String) -> Salvage {
    let mut salvage = Salvage::new(problem, None);
    let Ok(bytes) = std::fs::read(path) else {
        return salvage;
    };
    let mut at = FIRST_BLOCK as usize;
    while let Some(stored) = bytes.get(at..) {
        if stored.first() == Some(&sections::SECTIONED) {
            let Some((len, raw_len)) = sections::block_len(stored) else {
                break;
            };
            let Ok(events) = block::decode(&stored[..len], raw_len) else {
                break;
            };
            salvage.note(&events);
            salvage.events.extend(events);
            at += len;
            continue;
        }
        let Some((&CODEC_ZSTD, frame)) = stored.split_first() else {
            break;
        };
        let Ok(len) = zstd::zstd_safe::find_frame_compressed_size(frame) else {
            break;
        };
        let Ok(Some(raw_len)) = zstd::zstd_safe::get_frame_content_size(frame) else {
            break;
        };
        let Ok(raw_len) = usize::try_from(raw_len) else {
            break;
        };
        let Some(events) = frame
            .get(..len)
            .and_then(|f| block::decode(&stored[..=f.len()], raw_len).ok())
        else {
            break;
        };
        salvage.note(&events);
        salvage.events.extend(events);
        at += 1 + len;
    }
    salvage
}

/// Writes what `salvage` and the bus give for damaged segment `id` into a segment that
/// replaces it.
fn restore(
    store: &RepoStore,
    topic: Option<&Topic>,
    id: u64,
    path: &Path,
    mut salvage: Salvage,
    known: Option<SegmentInfo>,
) -> Result<SegmentRepair, SegmentError> {
    let config = store.config().clone();
    let new_id = store.allocate_id();
    let mut writer = SegmentWriter::create(&wip_path(store.dir(), new_id))?;
    for b in std::mem::take(&mut salvage.copied) {
        writer.append(&b.stored, b.summary, b.bloom)?;
    }
    let mut builder = BlockBuilder::new();
    let flush = |builder: &mut BlockBuilder, writer: &mut SegmentWriter, last: bool| {
        if builder.payload_len() >= config.block_bytes || (last && !builder.is_empty()) {
            let (stored, summary, bloom) =
                builder.finish_and_reset(config.compression, config.bloom_bits_per_token);
            writer.append(&stored, summary, bloom)?;
        }
        Ok::<(), SegmentError>(())
    };
    for e in &salvage.events {
        builder.push(e);
        flush(&mut builder, &mut writer, false)?;
    }
    let mut from_bus = 0;
    let mut bus_missing = Vec::new();
    if let Some(info) = &known {
        let mut taken = salvage.ids.clone();
        overlapping_ids(store, id, info, &mut taken);
        let mut push = |offset: u64, value: &[u8]| -> Result<(), SegmentError> {
            let Ok((event, encoded)) = crate::digest::decode_record(value) else {
                tracing::warn!(offset, "not an event, skipped");
                return Ok(());
            };
            if let Some(n) = taken.get_mut(&event.id).filter(|n| **n > 0) {
                *n -= 1;
                return Ok(());
            }
            builder.push_with(
                &event,
                encoded.map_or(FieldsRef::Map(&event.fields), FieldsRef::Encoded),
            );
            from_bus += 1;
            flush(&mut builder, &mut writer, false)
        };
        bus_missing = match topic {
            Some(topic) => reread(topic, info, &mut push)?,
            None => vec![(info.first_offset, info.last_offset)],
        };
    }
    flush(&mut builder, &mut writer, true)?;
    drop(builder);

    let kept_as = store.dir().join(format!("{id:020}.damaged"));
    keep(path, &kept_as)?;
    let restored = salvage.salvaged + from_bus;
    let restored_as = if restored > 0 {
        let tags = match &known {
            Some(info) => info.tags.clone(),
            None => common_tags(&salvage.events),
        };
        let info = SegmentInfo {
            id: new_id,
            source: known.as_ref().map_or(String::new(), |i| i.source.clone()),
            tags,
            // Unknown without footer and catalogue entry: a partition no bus has, so that the
            // catalogue's watermarks of real partitions stay as they are.
            partition: known.as_ref().map_or(u32::MAX, |i| i.partition),
            first_offset: known.as_ref().map_or(0, |i| i.first_offset),
            last_offset: known.as_ref().map_or(0, |i| i.last_offset),
            min_time: 0,
            max_time: 0,
            count: 0,
            raw_bytes: 0,
            sealed_at: eddy_log::now_ns(),
            replaces: vec![id],
        };
        let seg = store.seal_file(writer, info)?;
        store.publish(seg, || {})?;
        Some(new_id)
    } else {
        drop(writer);
        crate::store::remove_file(&wip_path(store.dir(), new_id))?;
        store.delete(id)?;
        crate::store::remove_file(path)?;
        None
    };
    Ok(SegmentRepair {
        segment: id,
        path: path.to_path_buf(),
        problem: salvage.problem.clone(),
        held: known.as_ref().map(|i| Held {
            partition: i.partition,
            source: i.source.clone(),
            first_offset: i.first_offset,
            last_offset: i.last_offset,
            events: i.count,
            min_time: i.min_time,
            max_time: i.max_time,
        }),
        from_blocks: salvage.salvaged,
        from_bus,
        restored_as,
        kept_as,
        lost: lost(
            &salvage,
            known.as_ref(),
            restored,
            bus_missing,
            topic.is_some(),
        ),
    })
}

/// What is missing after restoring `restored` events.
fn lost(
    salvage: &Salvage,
    known: Option<&SegmentInfo>,
    restored: u64,
    bus_missing: Vec<(u64, u64)>,
    have_bus: bool,
) -> Option<Lost> {
    let Some(info) = known else {
        return Some(Lost {
            events: None,
            bus_offsets: Vec::new(),
            min_time: None,
            max_time: None,
            reason: "neither its footer nor the catalogue says which data source, bus partition \
                     and offsets it held: only its readable blocks were restored"
                .into(),
        });
    };
    let missing = info.count.saturating_sub(restored);
    if missing == 0 {
        return None;
    }
    // The damaged blocks' time range when the footer names them, else the segment's.
    let (min_time, max_time) = if salvage.unreadable.is_empty() {
        (info.min_time, info.max_time)
    } else {
        (
            salvage
                .unreadable
                .iter()
                .map(|b| b.min_time)
                .min()
                .unwrap_or(info.min_time),
            salvage
                .unreadable
                .iter()
                .map(|b| b.max_time)
                .max()
                .unwrap_or(info.max_time),
        )
    };
    let reason = if !have_bus {
        "the repository's bus topic is gone".to_string()
    } else if bus_missing.is_empty() {
        "the bus holds the offsets, but not these events (not decodable)".to_string()
    } else {
        let ranges: Vec<String> = bus_missing
            .iter()
            .map(|(a, b)| format!("{a}-{b}"))
            .collect();
        format!(
            "the bus no longer holds offsets {} of partition {} (retention deleted them, or they are damaged)",
            ranges.join(", "),
            info.partition
        )
    };
    Some(Lost {
        events: Some(missing),
        bus_offsets: bus_missing,
        min_time: Some(min_time),
        max_time: Some(max_time),
        reason,
    })
}

/// Adds the `@id`s of every intact segment of the same partition and data source whose bus
/// offsets overlap `info`'s to `taken`.
fn overlapping_ids(store: &RepoStore, id: u64, info: &SegmentInfo, taken: &mut HashMap<Uuid, u32>) {
    for e in store.catalogue().segments.values() {
        let other = &e.info;
        if other.id == id
            || other.partition != info.partition
            || other.source != info.source
            || other.last_offset < info.first_offset
            || other.first_offset > info.last_offset
        {
            continue;
        }
        // A damaged one is repaired on its own, against what is restored before it.
        let Ok(seg) = store.segment(other.id) else {
            continue;
        };
        for index in 0..seg.footer().blocks.len() {
            for event in seg.events(index).unwrap_or_default() {
                *taken.entry(event.id).or_default() += 1;
            }
        }
    }
}

/// Feeds the records of `info`'s partition and data source in its offset range to `push`;
/// returns the ranges of that range the bus could not give.
fn reread(
    topic: &Topic,
    info: &SegmentInfo,
    push: &mut impl FnMut(u64, &[u8]) -> Result<(), SegmentError>,
) -> Result<Vec<(u64, u64)>, SegmentError> {
    let (first, last) = (info.first_offset, info.last_offset);
    let Ok(partition) = topic.partition(info.partition) else {
        return Ok(vec![(first, last)]);
    };
    let mut missing = Vec::new();
    let start = partition.start_offset();
    if start > first {
        missing.push((first, last.min(start - 1)));
    }
    let mut next = first.max(start);
    if next > last {
        return Ok(missing);
    }
    let mut reader = match topic.reader(info.partition, next) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!("cannot read the bus from offset {next}: {e}");
            missing.push((next, last));
            return Ok(missing);
        }
    };
    while next <= last {
        let records = match reader.poll() {
            Ok(r) if !r.is_empty() => r,
            Ok(_) => break,
            Err(e) => {
                tracing::warn!("cannot read the bus from offset {next}: {e}");
                break;
            }
        };
        for r in &records {
            if r.offset > last {
                return Ok(missing);
            }
            next = r.offset + 1;
            if source_of(r.key.as_deref()) == info.source {
                push(r.offset, &r.value)?;
            }
        }
    }
    if next <= last {
        missing.push((next, last));
    }
    Ok(missing)
}

fn common_tags(events: &[Event]) -> BTreeMap<String, String> {
    let mut iter = events.iter();
    let mut tags = iter.next().map(|e| e.tags.clone()).unwrap_or_default();
    for e in iter {
        tags.retain(|k, v| e.tags.get(k) == Some(v));
    }
    tags
}

/// Keeps the damaged file's bytes at `to` (a hard link, else a copy).
fn keep(from: &Path, to: &Path) -> Result<(), SegmentError> {
    crate::store::remove_file(to)?;
    if std::fs::hard_link(from, to).is_ok() {
        return Ok(());
    }
    std::fs::copy(from, to)
        .map(|_| ())
        .map_err(|source| SegmentError::Io {
            path: to.to_path_buf(),
            source,
        })
}
