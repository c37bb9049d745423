//! A repository's store: its sealed segments, the work in progress of each data source, and the
//! read API that plans a scan (pruning by time, tags and tokens: see [`crate::plan`]) into
//! blocks that any thread can read.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use eddy_base::sync::{lock, read, write};
use eddy_event::codec::FieldsRef;
use eddy_event::Event;

use crate::block::{BlockBuilder, Compression};
use crate::bloom::DEFAULT_BITS_PER_TOKEN;
use crate::bus_block::BusBlock;
use crate::catalogue::{segment_path, wip_path, Catalogue};
use crate::plan::{Cut, Plan, Planner, ScanStats};
use crate::scan::Scan;
use crate::segment::{SegmentError, SegmentFile, SegmentInfo, SegmentWriter};

mod ownership;
mod published;
pub use ownership::EPOCH_FILE;
pub use published::IDENTITY_FILE;

/// How a repository's segments are cut, compressed and kept.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreConfig {
    /// A work in progress is sealed once it holds this many bytes of events (before compression).
    pub segment_bytes: u64,
    /// … or once its first event is this old (wall clock since it was digested).
    pub segment_age: Duration,
    /// A block is closed once it holds this many bytes of events.
    pub block_bytes: usize,
    /// Block compression.
    pub compression: Compression,
    /// Bloom filter bits per distinct token (10 ≈ 1 % false positives).
    pub bloom_bits_per_token: usize,
    /// Segments whose latest event is older than this are deleted.
    pub retention_age: Option<Duration>,
    /// The oldest segments are deleted while the repository's segments take more than this.
    pub retention_bytes: Option<u64>,
    /// Segments smaller than this (bytes of events) are merged with their neighbours.
    pub merge_below: u64,
}

impl Default for StoreConfig {
    fn default() -> StoreConfig {
        StoreConfig {
            segment_bytes: 1 << 30,
            segment_age: Duration::from_secs(3600),
            block_bytes: 1 << 20,
            compression: Compression::ZstdAuto,
            bloom_bits_per_token: DEFAULT_BITS_PER_TOKEN,
            retention_age: None,
            retention_bytes: None,
            merge_below: 64 << 20,
        }
    }
}

/// The work in progress of a repository, summed over its data sources.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct WorkInProgress {
    /// Data sources with work in progress.
    pub sources: usize,
    /// Events in it, in written and open blocks.
    pub events: u64,
    /// Their bytes before compression (the raw side of the ratio, as segments count it).
    pub raw_bytes: u64,
    /// Bytes its `.wip` files take on disk (blocks still open are in memory only).
    pub file_bytes: u64,
}

/// The raw bytes (before compression) of the blocks written to the `.wip` file at `path`, read
/// from their section directories without decompressing anything; a reader outside the
/// serving process (`eddy store ratio`) counts work in progress with it. Blocks still open in
/// the server's memory are not in the file. The walk stops at the first block it cannot
/// size (a torn tail, or a layout without a directory).
pub fn wip_file_raw_bytes(path: &Path) -> std::io::Result<u64> {
    let bytes = std::fs::read(path)?;
    // Blocks start after the segment file's 16-byte header.
    let mut at = 16;
    let mut raw = 0;
    while let Some((len, raw_len)) = bytes.get(at..).and_then(crate::sections::block_len) {
        if len == 0 {
            break;
        }
        raw += raw_len as u64;
        at += len;
    }
    Ok(raw)
}

/// A data source's segment in the making.
struct Wip {
    id: u64,
    source: String,
    partition: u32,
    writer: Option<SegmentWriter>,
    /// Set between sealing the file and publishing it in the catalogue.
    sealed: Option<Arc<SegmentFile>>,
    reader: Arc<File>,
    open: BlockBuilder,
    tags: Option<BTreeMap<String, String>>,
    first_offset: u64,
    last_offset: u64,
    /// Whether `last_offset` is an event's (a new work in progress has none yet).
    has_events: bool,
    raw_bytes: u64,
    started: Instant,
}

/// The work in progress of one bus partition, by data source (looked up per event by `&str`).
type PartitionWips = HashMap<String, Arc<Mutex<Wip>>>;

/// Adds one partition's events to their work in progress, remembering the last data source's,
/// so that a run of events from one source (the common case) takes the store-wide map's lock
/// once instead of per event. Made by [`RepoStore::appender`]; one thread appends to a
/// partition at a time.
pub struct Appender<'s> {
    store: &'s RepoStore,
    partition: u32,
    last: Option<(String, Arc<Mutex<Wip>>)>,
}

impl Appender<'_> {
    /// [`RepoStore::append`] for this appender's partition.
    pub fn append(
        &mut self,
        offset: u64,
        source: &str,
        event: &Event,
        fields: FieldsRef<'_>,
    ) -> Result<(), SegmentError> {
        let store = self.store;
        // The remembered work in progress, locked once per event; a sealed one has given its
        // writer away and is looked up afresh.
        let mut full = None;
        if let Some((s, wip)) = &self.last {
            let mut w = lock(wip);
            if s == source && w.writer.is_some() {
                full = Some(store.push(&mut w, offset, event, fields)?);
            }
        }
        let full = match full {
            Some(full) => full,
            None => {
                self.last = store
                    .wip(self.partition, source, offset)?
                    .map(|wip| (source.to_string(), wip));
                match &self.last {
                    Some((_, wip)) => store.push(&mut lock(wip), offset, event, fields)?,
                    None => return Ok(()),
                }
            }
        };
        if full {
            store.seal(self.partition, source)?;
        }
        Ok(())
    }

    /// Adds a block the door built (see [`crate::bus_block`]) whose events have the bus offsets
    /// from `base_offset` on, as it is, when none of them is in the store yet; returns whether
    /// it did. A block it did not take (a replay after a crash or an error, which the store
    /// holds part of) is for the caller to add event by event, which skips what is held.
    pub fn append_block(
        &mut self,
        base_offset: u64,
        block: BusBlock<'_>,
    ) -> Result<bool, SegmentError> {
        let store = self.store;
        let source = block.source;
        // None: a sealed segment holds the first event at least.
        let Some(wip) = store.wip(self.partition, source, base_offset)? else {
            return Ok(false);
        };
        let full = {
            let mut w = lock(&wip);
            if w.writer.is_none() || (w.has_events && base_offset <= w.last_offset) {
                return Ok(false);
            }
            store.push_block(&mut w, base_offset, block)?
        };
        self.last = Some((source.to_string(), wip));
        if full {
            store.seal(self.partition, source)?;
        }
        Ok(true)
    }
}

/// One repository's store.
pub struct RepoStore {
    name: String,
    dir: PathBuf,
    config: StoreConfig,
    catalogue: Mutex<Catalogue>,
    segments: RwLock<BTreeMap<u64, Arc<SegmentFile>>>,
    wips: Mutex<HashMap<u32, PartitionWips>>,
    /// Held for writing while segments and work in progress change hands, for reading while a
    /// scan is planned: no event is seen twice or missed.
    transition: RwLock<()>,
    /// Per partition, the bus offset below which every event has been appended (the digest
    /// says so after each batch): where a live reader of the bus takes over from a scan.
    digested: Mutex<HashMap<u32, u64>>,
    /// See [`RepoStore::identity`].
    identity: OnceLock<String>,
    /// Whether sealed segments wait for the bus's mark (a digest on a shared bus).
    hold_seals: AtomicBool,
    /// Per (partition, data source), the last offset other stores sealed, from their marks.
    sealed_elsewhere: Mutex<HashMap<(u32, String), u64>>,
}

impl std::fmt::Debug for RepoStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RepoStore({})", self.dir.display())
    }
}

impl RepoStore {
    /// Opens (creating) the store in `dir`: deletes work in progress left by a crash (it is
    /// rebuilt from the bus), finishes interrupted merges, and reconciles the catalogue with the
    /// segment files.
    pub fn open(name: &str, dir: &Path, config: StoreConfig) -> Result<RepoStore, SegmentError> {
        let io = |source| SegmentError::Io {
            path: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let loaded = Catalogue::load(dir);
        let mut catalogue = loaded.clone().unwrap_or_default();
        let mut on_disk = BTreeMap::new();
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if name.ends_with(".wip") || name.ends_with(".tmp") {
                std::fs::remove_file(&path).map_err(io)?;
            } else if let Some(id) = name
                .strip_suffix(".seg")
                .and_then(|i| i.parse::<u64>().ok())
            {
                on_disk.insert(id, path);
            }
        }
        let mut segments = BTreeMap::new();
        for (&id, path) in &on_disk {
            catalogue.next_id = catalogue.next_id.max(id + 1);
            if catalogue.segments.contains_key(&id) {
                continue;
            }
            match SegmentFile::open(path) {
                Ok(seg) => {
                    catalogue.insert(seg.footer().info.clone(), seg.file_len());
                    segments.insert(id, Arc::new(seg));
                }
                Err(e) => tracing::warn!("skipping segment: {e}"),
            }
        }
        catalogue.segments.retain(|id, _| on_disk.contains_key(id));
        // A merge that crashed before deleting what it replaced: finish it.
        let replaced: Vec<u64> = catalogue
            .segments
            .values()
            .flat_map(|e| e.info.replaces.iter().copied())
            .filter(|id| catalogue.segments.contains_key(id))
            .collect();
        for id in replaced {
            catalogue.segments.remove(&id);
            segments.remove(&id);
            std::fs::remove_file(segment_path(dir, id)).map_err(io)?;
        }
        if loaded.as_ref() != Some(&catalogue) {
            catalogue.persist(dir)?;
        }
        Ok(RepoStore {
            name: name.to_string(),
            dir: dir.to_path_buf(),
            config,
            catalogue: Mutex::new(catalogue),
            segments: RwLock::new(segments),
            wips: Mutex::new(HashMap::new()),
            transition: RwLock::new(()),
            digested: Mutex::new(HashMap::new()),
            identity: OnceLock::new(),
            hold_seals: AtomicBool::new(false),
            sealed_elsewhere: Mutex::new(HashMap::new()),
        })
    }

    /// The repository's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Its settings.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// A copy of the catalogue.
    pub fn catalogue(&self) -> Catalogue {
        lock(&self.catalogue).clone()
    }

    /// A fresh segment id.
    pub fn allocate_id(&self) -> u64 {
        lock(&self.catalogue).allocate_id()
    }

    /// The last offset of `partition` already sealed for `source`.
    pub fn sealed_upto(&self, partition: u32, source: &str) -> Option<u64> {
        lock(&self.catalogue).sealed_upto(partition, source)
    }

    /// Adds the event at bus `offset` of `partition` to its data source's work in progress,
    /// unless a sealed segment already holds it. Seals the work in progress when it is full.
    /// Its fields are `fields` (`event.fields` is not read: see [`BlockBuilder::push_with`]).
    pub fn append(
        &self,
        partition: u32,
        offset: u64,
        source: &str,
        event: &Event,
        fields: FieldsRef<'_>,
    ) -> Result<(), SegmentError> {
        self.appender(partition)
            .append(offset, source, event, fields)
    }

    /// An appender for `partition`'s events, for one thread: what a digest uses.
    pub fn appender(&self, partition: u32) -> Appender<'_> {
        Appender {
            store: self,
            partition,
            last: None,
        }
    }

    /// Adds the event to work in progress `w`, closing the block when it is full; returns
    /// whether the work in progress is due to be sealed.
    fn push(
        &self,
        w: &mut Wip,
        offset: u64,
        event: &Event,
        fields: FieldsRef<'_>,
    ) -> Result<bool, SegmentError> {
        if w.has_events && offset <= w.last_offset {
            // A digest round restarted from the committed offset (after an error) replays what
            // this work in progress holds already.
            return Ok(false);
        }
        let new_tags = w.open.push_with(event, fields);
        w.last_offset = offset;
        w.has_events = true;
        // The tags every event of the segment has change only with an event whose tags differ
        // from the one before.
        if new_tags {
            match &mut w.tags {
                Some(common) => common.retain(|k, v| event.tags.get(k) == Some(v)),
                None => w.tags = Some(event.tags.clone()),
            }
        }
        if w.open.payload_len() >= self.config.block_bytes {
            self.close_block(w)?;
        }
        Ok(w.raw_bytes + w.open.payload_len() as u64 >= self.config.segment_bytes)
    }

    /// Adds a whole block to work in progress `w` after the events it holds (whose open block
    /// is written first, so the events stay in offset order); returns whether the work in
    /// progress is due to be sealed.
    fn push_block(
        &self,
        w: &mut Wip,
        base_offset: u64,
        block: BusBlock<'_>,
    ) -> Result<bool, SegmentError> {
        if !w.open.is_empty() {
            self.close_block(w)?;
        }
        let count = u64::from(block.summary.count);
        if let Some(writer) = &mut w.writer {
            writer.append(block.stored, block.summary, block.bloom)?;
        }
        w.raw_bytes += block.weight;
        w.last_offset = base_offset + count.max(1) - 1;
        w.has_events = true;
        match &mut w.tags {
            Some(common) => common.retain(|k, v| block.tags.get(k) == Some(v)),
            None => w.tags = Some(block.tags),
        }
        Ok(w.raw_bytes >= self.config.segment_bytes)
    }

    /// The work in progress that takes the event at `offset`, started if needed; `None` if a
    /// sealed segment already holds that offset (a replay after a crash).
    fn wip(
        &self,
        partition: u32,
        source: &str,
        offset: u64,
    ) -> Result<Option<Arc<Mutex<Wip>>>, SegmentError> {
        let mut wips = lock(&self.wips);
        let mine = wips.entry(partition).or_default();
        if let Some(w) = mine.get(source) {
            // Offsets only grow: past the watermark when it started, past it still.
            return Ok(Some(w.clone()));
        }
        if self
            .skip_upto(partition, source)
            .is_some_and(|upto| offset <= upto)
        {
            return Ok(None);
        }
        let id = self.allocate_id();
        let writer = SegmentWriter::create(&wip_path(&self.dir, id))?;
        let wip = Arc::new(Mutex::new(Wip {
            id,
            source: source.to_string(),
            partition,
            reader: Arc::new(writer.reader()?),
            writer: Some(writer),
            sealed: None,
            open: BlockBuilder::new(),
            tags: None,
            first_offset: offset,
            last_offset: offset,
            has_events: false,
            raw_bytes: 0,
            started: Instant::now(),
        }));
        mine.insert(source.to_string(), wip.clone());
        Ok(Some(wip))
    }

    /// The work in progress of `source` in `partition`, if there is one.
    fn existing_wip(&self, partition: u32, source: &str) -> Option<Arc<Mutex<Wip>>> {
        lock(&self.wips).get(&partition)?.get(source).cloned()
    }

    fn close_block(&self, w: &mut Wip) -> Result<(), SegmentError> {
        // Segments are sized by what their events weigh as sent (as blocks are), not by the
        // smaller payload their columns encode to.
        w.raw_bytes += w.open.payload_len() as u64;
        let (stored, summary, bloom) = w
            .open
            .finish_and_reset(self.config.compression, self.config.bloom_bits_per_token);
        if let Some(writer) = &mut w.writer {
            writer.append(&stored, summary, bloom)?;
        }
        Ok(())
    }

    /// Seals the work in progress of `source` in `partition` into a segment.
    pub fn seal(&self, partition: u32, source: &str) -> Result<(), SegmentError> {
        let Some(wip) = self.existing_wip(partition, source) else {
            return Ok(());
        };
        let mut w = lock(&wip);
        if !w.open.is_empty() {
            self.close_block(&mut w)?;
        }
        let info = SegmentInfo {
            id: w.id,
            source: w.source.clone(),
            tags: w.tags.take().unwrap_or_default(),
            partition: w.partition,
            first_offset: w.first_offset,
            last_offset: w.last_offset,
            min_time: 0,
            max_time: 0,
            count: 0,
            raw_bytes: 0,
            sealed_at: eddy_log::now_ns(),
            replaces: Vec::new(),
        };
        if w.writer.is_none() {
            return Ok(());
        }
        self.list_unpublished(w.id, partition, source)?;
        let Some(writer) = w.writer.take() else {
            return Ok(());
        };
        let seg = self.seal_file(writer, info)?;
        w.sealed = Some(seg.clone());
        drop(w);
        self.publish(seg, || {
            if let Some(mine) = lock(&self.wips).get_mut(&partition) {
                mine.remove(source);
            }
        })
    }

    /// Seals `writer` as segment `info.id`.
    pub(crate) fn seal_file(
        &self,
        writer: SegmentWriter,
        info: SegmentInfo,
    ) -> Result<Arc<SegmentFile>, SegmentError> {
        let path = segment_path(&self.dir, info.id);
        writer.seal(info, &path)?;
        Ok(Arc::new(SegmentFile::open(&path)?))
    }

    /// Adds a sealed segment to the catalogue, deleting what it replaces; `also` runs in the
    /// same step, so a scan sees either the old state or the new.
    pub(crate) fn publish(
        &self,
        seg: Arc<SegmentFile>,
        also: impl FnOnce(),
    ) -> Result<(), SegmentError> {
        let info = seg.footer().info.clone();
        let replaced = info.replaces.clone();
        let _step = write(&self.transition);
        also();
        {
            let mut catalogue = lock(&self.catalogue);
            catalogue.insert(info.clone(), seg.file_len());
            for id in &replaced {
                catalogue.segments.remove(id);
            }
            catalogue.persist(&self.dir)?;
        }
        {
            let mut segments = write(&self.segments);
            segments.insert(info.id, seg);
            for id in &replaced {
                segments.remove(id);
            }
        }
        for id in replaced {
            remove_file(&segment_path(&self.dir, id))?;
        }
        Ok(())
    }

    /// Writes the open blocks of `partition`'s work in progress that hold at least an eighth of
    /// a block; returns how many. The digest calls it once its part of the bus has been quiet
    /// for [`crate::digest::QUIET_BEFORE_CLOSING_BLOCKS`], so that what arrived is compressed on
    /// disk (and counted by `eddy store ratio`) without waiting for a full block or a seal.
    /// Smaller open blocks wait, so that a trickling source does not make tiny blocks.
    pub fn close_quiet_blocks(&self, partition: u32) -> Result<usize, SegmentError> {
        let wips: Vec<_> = lock(&self.wips)
            .get(&partition)
            .into_iter()
            .flat_map(|mine| mine.values().cloned())
            .collect();
        let min = (self.config.block_bytes / 8).max(1);
        let mut closed = 0;
        for wip in wips {
            let mut w = lock(&wip);
            if w.writer.is_some() && w.open.payload_len() >= min {
                self.close_block(&mut w)?;
                closed += 1;
            }
        }
        Ok(closed)
    }

    /// Seals every work in progress (a benchmark's end; a server does not need it).
    pub fn seal_all(&self) -> Result<(), SegmentError> {
        let keys: Vec<(u32, String)> = lock(&self.wips)
            .iter()
            .flat_map(|(&p, mine)| mine.keys().map(move |s| (p, s.clone())))
            .collect();
        for (partition, source) in keys {
            self.seal(partition, &source)?;
        }
        Ok(())
    }

    /// Seals every work in progress of `partition` older than the configured age.
    pub fn seal_due(&self, partition: u32) -> Result<(), SegmentError> {
        let due: Vec<String> = lock(&self.wips)
            .get(&partition)
            .into_iter()
            .flatten()
            .filter(|(_, w)| lock(w).started.elapsed() >= self.config.segment_age)
            .map(|(s, _)| s.clone())
            .collect();
        for source in due {
            self.seal(partition, &source)?;
        }
        Ok(())
    }

    /// The bus offset of `partition` the digest may commit: the first offset still only in a
    /// work in progress or an unpublished segment, or `None` when everything read is sealed
    /// (and published).
    pub fn commit_point(&self, partition: u32) -> Option<u64> {
        let in_progress = lock(&self.wips)
            .get(&partition)
            .and_then(|mine| mine.values().map(|w| lock(w).first_offset).min());
        match (in_progress, self.first_unpublished_offset(partition)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Deletes segment `id` (retention).
    pub fn delete(&self, id: u64) -> Result<(), SegmentError> {
        let _step = write(&self.transition);
        {
            let mut catalogue = lock(&self.catalogue);
            if catalogue.segments.remove(&id).is_none() {
                return Ok(());
            }
            catalogue.unpublished.remove(&id);
            catalogue.persist(&self.dir)?;
        }
        write(&self.segments).remove(&id);
        remove_file(&segment_path(&self.dir, id))
    }

    /// An open handle on sealed segment `id`.
    pub fn segment(&self, id: u64) -> Result<Arc<SegmentFile>, SegmentError> {
        if let Some(s) = read(&self.segments).get(&id) {
            return Ok(s.clone());
        }
        let seg = Arc::new(SegmentFile::open(&segment_path(&self.dir, id))?);
        write(&self.segments).insert(id, seg.clone());
        Ok(seg)
    }

    /// Records that every event of `partition` below bus offset `next` has been appended (or
    /// was already sealed). Called by the digest after each batch.
    pub fn note_digested(&self, partition: u32, next: u64) {
        lock(&self.digested).insert(partition, next);
    }

    /// Plans `scan`: the blocks of sealed segments and work in progress that may hold matching
    /// events, with nothing decompressed yet.
    pub fn plan(&self, scan: &Scan) -> Plan {
        self.plan_into(scan, None)
    }

    /// [`RepoStore::plan`], and the [`Cut`] that says which bus records the plan holds: a
    /// live query reads the plan, then the bus from the cut, and sees every event once.
    pub fn plan_with_cut(&self, scan: &Scan) -> (Plan, Cut) {
        let mut cut = Cut::default();
        let plan = self.plan_into(scan, Some(&mut cut));
        (plan, cut)
    }

    /// Plans `scan`, noting in `cut` (when given) which bus records the plan holds.
    fn plan_into(&self, scan: &Scan, mut cut: Option<&mut Cut>) -> Plan {
        let mut planner = Planner::new(scan);
        let _step = read(&self.transition);
        // Read under the transition lock, before the work in progress: an event below `from`
        // is in the plan; one at or past it is in the plan only up to its source's `upto`.
        if let Some(cut) = cut.as_deref_mut() {
            for (&p, &from) in lock(&self.digested).iter() {
                cut.set_from(p, from);
            }
        }
        let entries: Vec<_> = {
            let catalogue = lock(&self.catalogue);
            if let Some(cut) = cut.as_deref_mut() {
                for ((p, source), &upto) in &catalogue.sealed_upto {
                    cut.note(*p, source, upto);
                }
            }
            catalogue.segments.values().cloned().collect()
        };
        planner.sealed(entries, |id| self.segment(id));
        let wips: Vec<_> = lock(&self.wips)
            .values()
            .flat_map(|mine| mine.values().cloned())
            .collect();
        let no_tags = BTreeMap::new();
        for wip in wips {
            let w = lock(&wip);
            if let Some(cut) = cut
                .as_deref_mut()
                .filter(|_| w.writer.is_some() || w.sealed.is_some())
            {
                cut.note(w.partition, &w.source, w.last_offset);
            }
            if !planner.tags_may_match(w.tags.as_ref().unwrap_or(&no_tags), &w.source) {
                continue;
            }
            match (&w.writer, &w.sealed) {
                (Some(writer), _) => {
                    let path = Arc::new(writer.path().to_path_buf());
                    planner.blocks(&w.reader, &path, writer.blocks(), writer.blooms());
                }
                // Sealed, not yet in the catalogue.
                (None, Some(seg)) => {
                    planner.segment(seg);
                    continue;
                }
                (None, None) => continue,
            }
            if !w.open.is_empty() {
                planner.open_block(w.open.view());
            }
        }
        planner.finish()
    }

    /// What the work in progress holds now, open blocks included: the part of the repository
    /// that `eddy store ratio` and the footprint count beside the sealed segments.
    pub fn work_in_progress(&self) -> WorkInProgress {
        let wips: Vec<_> = lock(&self.wips)
            .values()
            .flat_map(|mine| mine.values().cloned())
            .collect();
        let mut total = WorkInProgress::default();
        for wip in wips {
            let w = lock(&wip);
            let Some(writer) = &w.writer else { continue };
            total.sources += 1;
            for block in writer.blocks() {
                total.events += u64::from(block.summary.count);
                total.raw_bytes += u64::from(block.summary.raw_len);
            }
            total.events += w.open.len() as u64;
            total.raw_bytes += w.open.payload_len() as u64;
            total.file_bytes += writer.len();
        }
        total
    }

    /// The earliest and latest `@timestamp` the repository holds, sealed or in progress (none
    /// when it holds nothing): where to look when a time range finds nothing.
    pub fn time_bounds(&self) -> Option<(i64, i64)> {
        let mut bounds: Option<(i64, i64)> = None;
        let mut widen = |min: i64, max: i64| {
            bounds = Some(bounds.map_or((min, max), |(a, b)| (a.min(min), b.max(max))));
        };
        for entry in lock(&self.catalogue).segments.values() {
            if entry.info.count > 0 {
                widen(entry.info.min_time, entry.info.max_time);
            }
        }
        let wips: Vec<_> = lock(&self.wips)
            .values()
            .flat_map(|mine| mine.values().cloned())
            .collect();
        for wip in wips {
            let w = lock(&wip);
            if let Some(writer) = &w.writer {
                for block in writer.blocks().iter().filter(|b| b.summary.count > 0) {
                    widen(block.summary.min_time, block.summary.max_time);
                }
            }
            if let Some(info) = w.sealed.as_ref().map(|s| &s.footer().info) {
                if info.count > 0 {
                    widen(info.min_time, info.max_time);
                }
            }
            if !w.open.is_empty() {
                let view = w.open.view();
                for i in 0..view.len() {
                    widen(view.timestamp(i), view.timestamp(i));
                }
            }
        }
        bounds
    }

    /// Every event matching `scan`, read on the calling thread, with warnings for damaged
    /// blocks (a convenience over [`RepoStore::plan`] for small results and tests).
    pub fn collect(&self, scan: &Scan) -> (Vec<Event>, ScanStats) {
        let (events, stats, _) = self.read_matching(scan, |_| true, usize::MAX);
        (events, stats)
    }

    /// The events matching `scan` that `keep` accepts, read block by block on the calling
    /// thread until more than `limit` are found (then `true`: the result is cut short), with
    /// a warning for each damaged block.
    pub fn read_matching(
        &self,
        scan: &Scan,
        keep: impl Fn(&Event) -> bool,
        limit: usize,
    ) -> (Vec<Event>, ScanStats, bool) {
        let plan = self.plan(scan);
        let mut stats = plan.stats;
        let mut events = Vec::new();
        for task in &plan.tasks {
            match task.read() {
                Ok(mut e) => {
                    e.retain(&keep);
                    events.append(&mut e);
                }
                Err(err) => stats.warnings.push(format!("block skipped: {err}")),
            }
            if events.len() > limit {
                return (events, stats, true);
            }
        }
        (events, stats, false)
    }
}

pub(crate) fn remove_file(path: &Path) -> Result<(), SegmentError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(SegmentError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}
