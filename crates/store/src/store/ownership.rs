//! What ties a store's offsets to its bus: the bus epoch they were read under, and the
//! partitions this node digests. On Kafka both change under the store's feet: a broker reset
//! starts offsets again at 0, and a rebalance moves a partition to another node.

use eddy_base::sync::{lock, write};

use super::{remove_file, RepoStore};
use crate::catalogue::wip_path;
use crate::segment::SegmentError;

/// The file in a store's directory naming the bus epoch its offsets belong to.
pub const EPOCH_FILE: &str = "bus_epoch";

impl RepoStore {
    /// Records that this store's offsets come from the bus epoch `epoch`; returns whether that
    /// is a reset, that is, the store recorded offsets under another epoch. After a reset the
    /// offsets the store sealed name other records (the new bus counts from 0 again), so its
    /// watermarks are dropped: skipping "already sealed" offsets would lose the new bus's
    /// events. Segments stay, and stay searchable. A store that never recorded an epoch (older
    /// versions) takes the bus's as its own.
    pub fn adopt_bus_epoch(&self, epoch: &str) -> Result<bool, SegmentError> {
        let path = self.dir.join(EPOCH_FILE);
        let io = |e: eddy_base::io::IoError| SegmentError::Io {
            path: path.clone(),
            source: e.source,
        };
        let recorded = eddy_base::fs::read_line_file(&path).map_err(io)?;
        if recorded.as_deref() == Some(epoch) {
            return Ok(false);
        }
        let reset = recorded.is_some();
        if reset {
            {
                let _step = write(&self.transition);
                let mut catalogue = lock(&self.catalogue);
                catalogue.sealed_upto.clear();
                // Their marks went with the old bus; the segments stay, as the others do.
                catalogue.unpublished.clear();
                catalogue.persist(&self.dir)?;
            }
            lock(&self.sealed_elsewhere).clear();
            let partitions: Vec<u32> = lock(&self.wips).keys().copied().collect();
            for p in partitions {
                self.forget_partition(p)?;
            }
        }
        eddy_base::fs::replace_file(&path, format!("{epoch}\n").as_bytes()).map_err(io)?;
        Ok(reset)
    }

    /// Drops `partition`'s work in progress: the partition has moved to another node, which
    /// digests those events again from the committed offset. Keeping them would store them
    /// twice across the cluster. Sealed segments are not touched.
    pub fn forget_partition(&self, partition: u32) -> Result<(), SegmentError> {
        let _step = write(&self.transition);
        let wips = lock(&self.wips).remove(&partition).unwrap_or_default();
        lock(&self.digested).remove(&partition);
        lock(&self.sealed_elsewhere).retain(|(p, _), _| *p != partition);
        for wip in wips.into_values() {
            let mut w = lock(&wip);
            if w.writer.take().is_some() {
                remove_file(&wip_path(&self.dir, w.id))?;
            }
        }
        Ok(())
    }
}
