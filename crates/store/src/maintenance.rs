//! Background care of a repository's segments: retention by age and size, and merging of
//! small segments (a data source that sealed by age leaves many) into larger ones.
//!
//! A merge copies the compressed blocks as they are (checking each checksum) behind a new
//! footer that names the segments it replaces, so it costs one sequential read and write and
//! no recompression; a crash halfway leaves either the old segments or the new one in use.

use std::collections::BTreeMap;

use crate::catalogue::{wip_path, Entry};
use crate::segment::{read_block, SegmentError, SegmentInfo, SegmentWriter};
use crate::store::RepoStore;

/// What one round did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MaintenanceOutcome {
    /// Segments deleted by retention.
    pub deleted: usize,
    /// Bytes they took.
    pub deleted_bytes: u64,
    /// Segments merged away.
    pub merged: usize,
}

/// Applies retention, then merges small neighbours.
pub fn run_once(store: &RepoStore, now_ns: i64) -> Result<MaintenanceOutcome, SegmentError> {
    let mut outcome = MaintenanceOutcome::default();
    let config = store.config().clone();
    let mut entries: Vec<Entry> = store.catalogue().segments.into_values().collect();
    entries.sort_by_key(|e| (e.info.max_time, e.info.id));
    // Segment id → its file's bytes, once even when both rules expire it.
    let mut expired = BTreeMap::new();
    if let Some(age) = config.retention_age {
        let limit = now_ns.saturating_sub(i64::try_from(age.as_nanos()).unwrap_or(i64::MAX));
        expired.extend(
            entries
                .iter()
                .filter(|e| e.info.max_time < limit)
                .map(|e| (e.info.id, e.file_bytes)),
        );
    }
    if let Some(max) = config.retention_bytes {
        let mut total: u64 = entries.iter().map(|e| e.file_bytes).sum();
        for e in &entries {
            if total <= max {
                break;
            }
            total -= e.file_bytes;
            expired.insert(e.info.id, e.file_bytes);
        }
    }
    for (id, bytes) in expired {
        store.delete(id)?;
        outcome.deleted += 1;
        outcome.deleted_bytes += bytes;
    }
    outcome.merged = merge_small(store)?;
    Ok(outcome)
}

/// Merges runs of small segments of the same data source and partition, in bus order.
fn merge_small(store: &RepoStore) -> Result<usize, SegmentError> {
    let config = store.config();
    let mut by_source: BTreeMap<(u32, String), Vec<SegmentInfo>> = BTreeMap::new();
    let catalogue = store.catalogue();
    for e in catalogue.segments.into_values() {
        // An unpublished segment may yet be dropped: it must keep its own id until then.
        if e.info.raw_bytes < config.merge_below && !catalogue.unpublished.contains_key(&e.info.id)
        {
            by_source
                .entry((e.info.partition, e.info.source.clone()))
                .or_default()
                .push(e.info);
        }
    }
    let mut merged = 0;
    for (_, mut infos) in by_source {
        infos.sort_by_key(|i| i.first_offset);
        let mut run: Vec<SegmentInfo> = Vec::new();
        let mut run_bytes = 0;
        for info in infos {
            if run_bytes + info.raw_bytes > config.segment_bytes && run.len() >= 2 {
                merged += merge(store, &run)?;
                run.clear();
                run_bytes = 0;
            }
            run_bytes += info.raw_bytes;
            run.push(info);
        }
        if run.len() >= 2 {
            merged += merge(store, &run)?;
        }
    }
    Ok(merged)
}

fn merge(store: &RepoStore, run: &[SegmentInfo]) -> Result<usize, SegmentError> {
    let id = store.allocate_id();
    let mut writer = SegmentWriter::create(&wip_path(store.dir(), id))?;
    let mut tags = run[0].tags.clone();
    for info in run {
        let seg = store.segment(info.id)?;
        let footer = seg.footer();
        for (index, (entry, bloom)) in footer.blocks.iter().zip(&footer.blooms).enumerate() {
            let stored = read_block(seg.file(), seg.path(), index, entry)?;
            writer.append(&stored, entry.summary.clone(), bloom.clone())?;
        }
        tags.retain(|k, v| info.tags.get(k) == Some(v));
    }
    let info = SegmentInfo {
        id,
        source: run[0].source.clone(),
        tags,
        partition: run[0].partition,
        first_offset: run.iter().map(|i| i.first_offset).min().unwrap_or(0),
        last_offset: run.iter().map(|i| i.last_offset).max().unwrap_or(0),
        min_time: 0,
        max_time: 0,
        count: 0,
        raw_bytes: 0,
        sealed_at: eddy_log::now_ns(),
        replaces: run.iter().map(|i| i.id).collect(),
    };
    let seg = store.seal_file(writer, info)?;
    store.publish(seg, || {})?;
    Ok(run.len())
}
