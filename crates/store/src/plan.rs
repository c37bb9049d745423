//! Planning a scan: the blocks of a repository's sealed segments and work in progress that may
//! hold matching events — pruned by time range, tags and bloom filters, with nothing
//! decompressed yet — as [`BlockTask`]s that any thread can read, what was skipped
//! ([`ScanStats`]), and the [`Cut`] that says which bus records a plan holds. The store hands
//! the `Planner` its segments and work in progress while it holds them still.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

use eddy_event::Event;

use crate::bloom::{token_hash, BloomFilter};
use crate::catalogue::Entry;
use crate::scan::Scan;
use crate::segment::{block_error, read_view, BlockEntry, SegmentError, SegmentFile};
use crate::view::{BlockView, Deferred, Parts, ReadBuffers};

/// What planning skipped and kept.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ScanStats {
    /// Sealed segments in the repository.
    pub segments: usize,
    /// Of them, skipped by time range or tags.
    pub segments_skipped: usize,
    /// Blocks in the kept segments and the work in progress.
    pub blocks: usize,
    /// Of them, skipped by time range or bloom filter.
    pub blocks_skipped: usize,
    /// Compressed bytes the kept blocks take.
    pub bytes_to_read: u64,
    /// Problems met while planning (an unreadable segment), each naming the file.
    pub warnings: Vec<String>,
}

/// One block to read.
#[derive(Debug, Clone)]
pub struct BlockTask {
    source: TaskSource,
    scan: Arc<Scan>,
}

#[derive(Debug, Clone)]
enum TaskSource {
    Stored {
        file: Arc<File>,
        path: Arc<PathBuf>,
        index: usize,
        entry: BlockEntry,
    },
    Open(Arc<BlockView>),
}

impl BlockTask {
    /// Compressed bytes the block takes on disk (0 for work in progress in memory).
    pub fn stored_len(&self) -> u64 {
        match &self.source {
            TaskSource::Stored { entry, .. } => u64::from(entry.stored_len),
            TaskSource::Open(_) => 0,
        }
    }

    /// The block's events that are in the scan's time range and have its tags. A damaged block
    /// is an error naming the file and block; the caller reports it and goes on.
    pub fn read(&self) -> Result<Vec<Event>, SegmentError> {
        let view = self.open()?;
        // Only the kept events are built: a parser runs for no event the scan drops.
        Ok(view
            .kept_by(&self.scan)
            .iter()
            .enumerate()
            .filter(|&(_, &keep)| keep)
            .map(|(i, _)| view.event(i, Parts::ALL))
            .collect())
    }

    /// The block decoded (all its events: [`BlockView::kept_by`] with [`BlockTask::scan`]
    /// says which are in the scan's time range and have its tags).
    pub fn open(&self) -> Result<BlockView, SegmentError> {
        let mut view = BlockView::default();
        self.open_into(&mut ReadBuffers::default(), &mut view)?;
        Ok(view)
    }

    /// [`BlockTask::open`] into `view`, with buffers a reading thread keeps from one block to
    /// the next.
    pub fn open_into(
        &self,
        buffers: &mut ReadBuffers,
        view: &mut BlockView,
    ) -> Result<(), SegmentError> {
        match &self.source {
            TaskSource::Stored {
                file,
                path,
                index,
                entry,
            } => read_view(file, path, *index, entry, buffers, view),
            TaskSource::Open(open) => {
                view.copy_from(open);
                Ok(())
            }
        }
    }

    /// Decompresses `part` of the block's core, which [`BlockTask::open_into`] left out of
    /// `view` by its needs (`buffers` still holding the block).
    pub fn load(
        &self,
        buffers: &ReadBuffers,
        view: &mut BlockView,
        part: Deferred,
    ) -> Result<(), SegmentError> {
        match &self.source {
            TaskSource::Stored {
                path, index, entry, ..
            } => view
                .load(&buffers.stored, part)
                .map_err(|e| block_error(path, *index, entry, e.to_string())),
            TaskSource::Open(_) => Ok(()),
        }
    }

    /// The columns of `view` (opened from this task) that were left compressed and failed to
    /// decode when first used, as an error naming the file and block: nothing read of the
    /// block may count. With `all`, every column left compressed is decoded first (before
    /// building whole events).
    pub fn check_columns(&self, view: &BlockView, all: bool) -> Result<(), SegmentError> {
        let checked = match all {
            true => view.decode_columns(),
            false => view.late_error(),
        };
        match (&self.source, checked) {
            (_, Ok(())) | (TaskSource::Open(_), Err(_)) => Ok(()),
            (
                TaskSource::Stored {
                    path, index, entry, ..
                },
                Err(e),
            ) => Err(block_error(path, *index, entry, e.to_string())),
        }
    }

    /// Whether every event of the block is inside the scan's time range (its times are not
    /// needed to decide which events the scan keeps).
    pub fn within_range(&self) -> bool {
        match &self.source {
            TaskSource::Stored { entry, .. } => {
                self.scan.start <= entry.summary.min_time && entry.summary.max_time < self.scan.end
            }
            TaskSource::Open(_) => false,
        }
    }

    /// The scan this block was planned for.
    pub fn scan(&self) -> &Scan {
        &self.scan
    }
}

/// Which bus records a plan holds, per partition: those below `from`, and those of a data
/// source up to the last offset sealed or in work in progress when it was planned.
#[derive(Debug, Clone, Default)]
pub struct Cut {
    partitions: HashMap<u32, PartitionCut>,
}

#[derive(Debug, Clone, Default)]
struct PartitionCut {
    from: u64,
    upto: HashMap<String, u64>,
}

impl Cut {
    /// Every record of `partition` before `from` is in the plan.
    pub(crate) fn set_from(&mut self, partition: u32, from: u64) {
        self.partitions.entry(partition).or_default().from = from;
    }

    /// The plan holds `source`'s records of `partition` up to `last`.
    pub(crate) fn note(&mut self, partition: u32, source: &str, last: u64) {
        let upto = self
            .partitions
            .entry(partition)
            .or_default()
            .upto
            .entry(source.to_string())
            .or_insert(last);
        *upto = (*upto).max(last);
    }

    /// Where a reader of `partition` starts: every record before it is in the plan.
    pub fn from(&self, partition: u32) -> u64 {
        self.partitions.get(&partition).map_or(0, |p| p.from)
    }

    /// Whether the plan holds the record at `offset` of `partition` from data source `source`
    /// (the record's key).
    pub fn holds(&self, partition: u32, offset: u64, source: &str) -> bool {
        self.partitions.get(&partition).is_some_and(|p| {
            offset < p.from || p.upto.get(source).is_some_and(|&upto| offset <= upto)
        })
    }
}

/// A scan's blocks, ready to read (from any threads), and what planning skipped.
#[derive(Debug, Default)]
pub struct Plan {
    /// The blocks to read.
    pub tasks: Vec<BlockTask>,
    /// Counts of what was pruned.
    pub stats: ScanStats,
}

/// A plan being made: the blocks kept so far, and the scan with its tokens hashed.
pub(crate) struct Planner {
    plan: Plan,
    scan: Arc<Scan>,
    token_hashes: Vec<u64>,
}

impl Planner {
    pub(crate) fn new(scan: &Scan) -> Planner {
        Planner {
            plan: Plan::default(),
            scan: Arc::new(scan.clone()),
            // Hashed once, tried on every block's filter.
            token_hashes: scan.tokens.iter().map(|t| token_hash(t)).collect(),
        }
    }

    /// Plans the repository's sealed segments (the catalogue's `entries`): those the scan's time
    /// range and tags may match are opened by `open` and their blocks planned.
    pub(crate) fn sealed(
        &mut self,
        entries: Vec<Entry>,
        open: impl Fn(u64) -> Result<Arc<SegmentFile>, SegmentError>,
    ) {
        self.plan.stats.segments = entries.len();
        for e in entries {
            let i = &e.info;
            if !self.scan.overlaps(i.min_time, i.max_time)
                || !self.scan.tags_may_match(&i.tags, &i.source)
            {
                self.plan.stats.segments_skipped += 1;
                continue;
            }
            let seg = match open(i.id) {
                Ok(s) => s,
                Err(err) => {
                    self.plan
                        .stats
                        .warnings
                        .push(format!("segment skipped: {err}"));
                    continue;
                }
            };
            self.segment(&seg);
        }
    }

    /// Whether events with the `tags` common to a work in progress of `source` may match.
    pub(crate) fn tags_may_match(&self, tags: &BTreeMap<String, String>, source: &str) -> bool {
        self.scan.tags_may_match(tags, source)
    }

    /// Plans the blocks of a sealed segment.
    pub(crate) fn segment(&mut self, seg: &SegmentFile) {
        let path = Arc::new(seg.path().to_path_buf());
        let footer = seg.footer();
        self.blocks(seg.file(), &path, &footer.blocks, &footer.blooms);
    }

    /// Plans the blocks written to `file` (a segment or a work in progress).
    pub(crate) fn blocks(
        &mut self,
        file: &Arc<File>,
        path: &Arc<PathBuf>,
        blocks: &[BlockEntry],
        blooms: &[BloomFilter],
    ) {
        let stats = &mut self.plan.stats;
        for (index, (entry, bloom)) in blocks.iter().zip(blooms).enumerate() {
            stats.blocks += 1;
            let s = &entry.summary;
            if !self.scan.overlaps(s.min_time, s.max_time)
                || !self.token_hashes.iter().all(|&h| bloom.may_contain_hash(h))
            {
                stats.blocks_skipped += 1;
                continue;
            }
            stats.bytes_to_read += u64::from(entry.stored_len);
            self.plan.tasks.push(BlockTask {
                source: TaskSource::Stored {
                    file: file.clone(),
                    path: path.clone(),
                    index,
                    entry: entry.clone(),
                },
                scan: self.scan.clone(),
            });
        }
    }

    /// Plans the block a work in progress is filling, read as it stands (it has no bloom
    /// filter yet, so it is always read).
    pub(crate) fn open_block(&mut self, view: BlockView) {
        self.plan.stats.blocks += 1;
        self.plan.tasks.push(BlockTask {
            source: TaskSource::Open(Arc::new(view)),
            scan: self.scan.clone(),
        });
    }

    /// The plan made.
    pub(crate) fn finish(self) -> Plan {
        self.plan
    }
}
