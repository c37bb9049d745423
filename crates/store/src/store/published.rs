//! Segments and a shared bus: on a bus other nodes digest too, a sealed segment counts only
//! once the bus has its mark (see [`crate::sealed_marks`]). Until then it is listed as
//! unpublished in the catalogue, the commit point stays below it, and a node that restarts
//! either confirms it (the mark is on the bus) or drops it (another node digests those events
//! again). The marks of other stores tell this one what they sealed of a partition it takes
//! over.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use eddy_base::sync::{lock, write};

use super::{remove_file, RepoStore};
use crate::catalogue::segment_path;
use crate::sealed_marks::SealedMark;
use crate::segment::{SegmentError, SegmentInfo};

/// The file in a store's directory holding its identity.
pub const IDENTITY_FILE: &str = "store_id";

impl RepoStore {
    /// This store's identity in sealed marks: random, made the first time it is asked for and
    /// kept in the store's directory, so that a store copied or wiped is another store.
    pub fn identity(&self) -> Result<String, SegmentError> {
        if let Some(id) = self.identity.get() {
            return Ok(id.clone());
        }
        let path = self.dir.join(IDENTITY_FILE);
        let io = |e: eddy_base::io::IoError| SegmentError::Io {
            path: path.clone(),
            source: e.source,
        };
        let id = match eddy_base::fs::read_line_file(&path).map_err(io)? {
            Some(id) => id,
            None => {
                let id = uuid::Uuid::new_v4().simple().to_string();
                eddy_base::fs::replace_file(&path, format!("{id}\n").as_bytes()).map_err(io)?;
                id
            }
        };
        Ok(self.identity.get_or_init(|| id).clone())
    }

    /// From now on every segment sealed is listed as unpublished until
    /// [`RepoStore::confirm_published`]: what a digest on a shared bus asks for.
    pub fn hold_seals_until_published(&self) {
        self.hold_seals.store(true, Ordering::Relaxed);
    }

    /// Lists segment `id` (about to be sealed for `source` in `partition`) as unpublished,
    /// durably, before its file exists: a crash after the file is written cannot make it look
    /// published.
    pub(super) fn list_unpublished(
        &self,
        id: u64,
        partition: u32,
        source: &str,
    ) -> Result<(), SegmentError> {
        if !self.hold_seals.load(Ordering::Relaxed) {
            return Ok(());
        }
        let mut catalogue = lock(&self.catalogue);
        let before = catalogue.sealed_upto(partition, source);
        catalogue.unpublished.insert(id, before);
        catalogue.persist(&self.dir)
    }

    /// The sealed segments of `partition` whose marks the bus does not have yet, oldest first.
    pub fn unpublished(&self, partition: u32) -> Vec<SegmentInfo> {
        let catalogue = lock(&self.catalogue);
        catalogue
            .unpublished
            .keys()
            .filter_map(|id| catalogue.segments.get(id))
            .filter(|e| e.info.partition == partition)
            .map(|e| e.info.clone())
            .collect()
    }

    /// The lowest offset of `partition` held only by unpublished segments: the commit point
    /// stays at or below it.
    pub(super) fn first_unpublished_offset(&self, partition: u32) -> Option<u64> {
        self.unpublished(partition)
            .iter()
            .map(|i| i.first_offset)
            .min()
    }

    /// The partitions with unpublished segments, or listed ones whose file was never written.
    pub fn partitions_with_unpublished(&self) -> Vec<u32> {
        let catalogue = lock(&self.catalogue);
        let mut partitions: Vec<u32> = catalogue
            .unpublished
            .keys()
            .filter_map(|id| catalogue.segments.get(id))
            .map(|e| e.info.partition)
            .collect();
        partitions.sort_unstable();
        partitions.dedup();
        partitions
    }

    /// Notes that the bus has segment `id`'s mark.
    pub fn confirm_published(&self, id: u64) -> Result<(), SegmentError> {
        let mut catalogue = lock(&self.catalogue);
        if catalogue.unpublished.remove(&id).is_some() {
            catalogue.persist(&self.dir)?;
        }
        Ok(())
    }

    /// Decides the unpublished segments of `partition` (every partition with `None`, which also
    /// forgets listed segments whose file was never written; call it so only while no digest
    /// thread seals): those `published` says the bus has are confirmed, the others are dropped
    /// and their data source's watermark goes back to where it was before them, so that this
    /// store digests those events again should the partition come back. Returns the ids
    /// dropped.
    pub fn settle_unpublished(
        &self,
        partition: Option<u32>,
        published: impl Fn(u64) -> bool,
    ) -> Result<Vec<u64>, SegmentError> {
        let mut dropped = Vec::new();
        // The common case, on every bus: nothing to settle, and scans need not wait for it.
        if lock(&self.catalogue).unpublished.is_empty() {
            return Ok(dropped);
        }
        let _step = write(&self.transition);
        {
            let mut catalogue = lock(&self.catalogue);
            let listed: Vec<(u64, Option<u64>)> = catalogue
                .unpublished
                .iter()
                .rev()
                .map(|(&id, &before)| (id, before))
                .collect();
            // Newest first: dropping several segments of one data source leaves the watermark
            // from before the oldest.
            for (id, before) in listed {
                let Some(info) = catalogue.segments.get(&id).map(|e| e.info.clone()) else {
                    if partition.is_none() {
                        catalogue.unpublished.remove(&id);
                    }
                    continue;
                };
                if partition.is_some_and(|p| p != info.partition) {
                    continue;
                }
                catalogue.unpublished.remove(&id);
                if published(id) {
                    continue;
                }
                let key = (info.partition, info.source.clone());
                match before {
                    Some(upto) => catalogue.sealed_upto.insert(key, upto),
                    None => catalogue.sealed_upto.remove(&key),
                };
                catalogue.segments.remove(&id);
                dropped.push(id);
            }
            catalogue.persist(&self.dir)?;
        }
        {
            let mut segments = write(&self.segments);
            for id in &dropped {
                segments.remove(id);
            }
        }
        for id in &dropped {
            remove_file(&segment_path(&self.dir, *id))?;
        }
        Ok(dropped)
    }

    /// Takes the marks of `partition` that other stores published: this store skips what they
    /// sealed, as it skips what it sealed itself. Replaces what it knew of that partition.
    pub fn adopt_sealed_elsewhere(&self, partition: u32, marks: &[SealedMark], me: &str) {
        let mut upto: HashMap<String, u64> = HashMap::new();
        for m in marks.iter().filter(|m| m.store != me) {
            let u = upto.entry(m.source.clone()).or_insert(m.upto);
            *u = (*u).max(m.upto);
        }
        let mut elsewhere = lock(&self.sealed_elsewhere);
        elsewhere.retain(|(p, _), _| *p != partition);
        elsewhere.extend(upto.into_iter().map(|(s, u)| ((partition, s), u)));
    }

    /// The last offset of `partition` that this store or another sealed for `source`.
    pub(super) fn skip_upto(&self, partition: u32, source: &str) -> Option<u64> {
        let own = self.sealed_upto(partition, source);
        let key = (partition, source.to_string());
        let elsewhere = lock(&self.sealed_elsewhere).get(&key).copied();
        own.max(elsewhere)
    }
}
