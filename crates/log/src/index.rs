//! The sparse offset index and time index of one segment.
//!
//! An entry is taken at the first batch of a segment and then at the first batch starting at least
//! `index_interval_bytes` after the previous entry, so a read seeks to the nearest entry and scans
//! at most about that many bytes. Both indexes get an entry at the same batches, and a sealed
//! segment ends both with an entry for its end, so the segment's next offset, size and newest
//! timestamp are known without reading the log file.
//!
//! Files (little-endian, fixed-size entries, written and fsynced when the segment is sealed; the
//! active segment's index lives only in memory and is rebuilt by the recovery scan):
//!
//! ```text
//!  <base>.index      per entry: u32 offset - base, u32 byte position of the batch in <base>.log
//!  <base>.timeindex  per entry: i64 largest timestamp of all batches before this one (ns),
//!                               u32 offset - base of this batch
//! ```
//!
//! The time entry holds the maximum *before* its batch: if it is below a wanted time `t`, no
//! earlier batch can hold a record at or after `t`, so a time seek starts there. Index files are
//! derived data: when one is missing or inconsistent with its log file, it is rebuilt by a scan.

use std::path::Path;

use crate::error::{IoContext, Result};

/// Bytes per offset-index entry.
const OFFSET_ENTRY: usize = 8;
/// Bytes per time-index entry.
const TIME_ENTRY: usize = 12;

/// One indexed position: a batch's offset (relative to the segment base), its byte position and
/// the largest timestamp of everything before it in the segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    pub rel_offset: u32,
    pub position: u32,
    pub max_ts_before: i64,
}

/// The in-memory index of one segment.
#[derive(Debug, Default, Clone)]
pub(crate) struct SegmentIndex {
    entries: Vec<Entry>,
}

impl SegmentIndex {
    pub fn push(&mut self, entry: Entry) {
        self.entries.push(entry);
    }

    pub fn last(&self) -> Option<&Entry> {
        self.entries.last()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The last entry at or before `rel_offset`, or the segment start.
    pub fn seek_offset(&self, rel_offset: u32) -> Entry {
        let i = self.entries.partition_point(|e| e.rel_offset <= rel_offset);
        self.entries
            .get(i.wrapping_sub(1))
            .copied()
            .unwrap_or(Entry {
                rel_offset: 0,
                position: 0,
                max_ts_before: i64::MIN,
            })
    }

    /// The last entry before which every batch is older than `ts`: a time seek scans from here.
    pub fn seek_time(&self, ts: i64) -> Entry {
        let i = self.entries.partition_point(|e| e.max_ts_before < ts);
        self.entries
            .get(i.wrapping_sub(1))
            .copied()
            .unwrap_or(Entry {
                rel_offset: 0,
                position: 0,
                max_ts_before: i64::MIN,
            })
    }

    /// Writes both index files and fsyncs them.
    pub fn write_files(&self, offset_path: &Path, time_path: &Path) -> Result<()> {
        let mut offsets = Vec::with_capacity(self.entries.len() * OFFSET_ENTRY);
        let mut times = Vec::with_capacity(self.entries.len() * TIME_ENTRY);
        for e in &self.entries {
            offsets.extend_from_slice(&e.rel_offset.to_le_bytes());
            offsets.extend_from_slice(&e.position.to_le_bytes());
            times.extend_from_slice(&e.max_ts_before.to_le_bytes());
            times.extend_from_slice(&e.rel_offset.to_le_bytes());
        }
        for (path, bytes) in [(offset_path, offsets), (time_path, times)] {
            let file = std::fs::File::create(path)
                .context(|| format!("creating index {}", path.display()))?;
            std::io::Write::write_all(&mut &file, &bytes)
                .context(|| format!("writing index {}", path.display()))?;
            file.sync_all()
                .context(|| format!("syncing index {}", path.display()))?;
        }
        Ok(())
    }

    /// Loads a sealed segment's index files, or says why they cannot be trusted.
    pub fn read_files(
        offset_path: &Path,
        time_path: &Path,
        log_len: u64,
    ) -> std::result::Result<SegmentIndex, String> {
        let offsets =
            std::fs::read(offset_path).map_err(|e| format!("{}: {e}", offset_path.display()))?;
        let times =
            std::fs::read(time_path).map_err(|e| format!("{}: {e}", time_path.display()))?;
        if offsets.len() % OFFSET_ENTRY != 0 || times.len() % TIME_ENTRY != 0 {
            return Err("index file size is not a whole number of entries".into());
        }
        let n = offsets.len() / OFFSET_ENTRY;
        if n != times.len() / TIME_ENTRY || n < 2 {
            return Err(format!(
                "offset and time index disagree ({n} and {} entries)",
                times.len() / TIME_ENTRY
            ));
        }
        let mut entries = Vec::with_capacity(n);
        for (o, t) in offsets
            .chunks_exact(OFFSET_ENTRY)
            .zip(times.chunks_exact(TIME_ENTRY))
        {
            let le32 = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            let rel_offset = le32(&o[0..4]);
            let position = le32(&o[4..8]);
            let mut ts = [0u8; 8];
            ts.copy_from_slice(&t[0..8]);
            if le32(&t[8..12]) != rel_offset {
                return Err(format!(
                    "time entry for offset {rel_offset} points elsewhere"
                ));
            }
            entries.push(Entry {
                rel_offset,
                position,
                max_ts_before: i64::from_le_bytes(ts),
            });
        }
        let first = entries[0];
        if first.rel_offset != 0 || first.position != 0 {
            return Err("first entry is not the segment start".into());
        }
        for w in entries.windows(2) {
            if w[1].rel_offset <= w[0].rel_offset
                || w[1].position <= w[0].position
                || w[1].max_ts_before < w[0].max_ts_before
            {
                return Err(format!(
                    "entries out of order at offset {}",
                    w[1].rel_offset
                ));
            }
        }
        let end = entries[n - 1];
        if u64::from(end.position) != log_len {
            return Err(format!(
                "end entry says {} bytes, the log file has {log_len}",
                end.position
            ));
        }
        Ok(SegmentIndex { entries })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index() -> SegmentIndex {
        let mut idx = SegmentIndex::default();
        for (rel, pos, ts) in [
            (0, 0, i64::MIN),
            (10, 4100, 50),
            (25, 8300, 90),
            (40, 12000, 95),
        ] {
            idx.push(Entry {
                rel_offset: rel,
                position: pos,
                max_ts_before: ts,
            });
        }
        idx
    }

    #[test]
    fn offset_seek_finds_entry_at_or_before() {
        let idx = index();
        assert_eq!(idx.seek_offset(0).position, 0);
        assert_eq!(idx.seek_offset(9).position, 0);
        assert_eq!(idx.seek_offset(10).position, 4100);
        assert_eq!(idx.seek_offset(39).position, 8300);
        assert_eq!(idx.seek_offset(1000).position, 12000);
    }

    #[test]
    fn time_seek_starts_where_everything_before_is_older() {
        let idx = index();
        assert_eq!(idx.seek_time(10).rel_offset, 0);
        assert_eq!(idx.seek_time(50).rel_offset, 0);
        assert_eq!(idx.seek_time(51).rel_offset, 10);
        assert_eq!(idx.seek_time(91).rel_offset, 25);
        assert_eq!(idx.seek_time(1000).rel_offset, 40);
    }

    #[test]
    fn files_roundtrip_and_inconsistency_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let (o, t) = (dir.path().join("0.index"), dir.path().join("0.timeindex"));
        let idx = index();
        idx.write_files(&o, &t).unwrap();
        let back = SegmentIndex::read_files(&o, &t, 12000).unwrap();
        assert_eq!(back.entries, idx.entries);
        let err = SegmentIndex::read_files(&o, &t, 13000).unwrap_err();
        assert!(err.contains("13000"), "{err}");
        std::fs::write(&o, [1, 2, 3]).unwrap();
        assert!(SegmentIndex::read_files(&o, &t, 12000).is_err());
    }
}
