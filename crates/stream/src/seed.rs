//! Where a live window's past comes from, and reading the bus up to where the tap is.
//!
//! On the embedded bus this node digests every partition, so its store holds the window's past
//! and the bus is read only from the store's [`Cut`] on. On a shared bus (Kafka) other nodes
//! digest some partitions, so the window's past is read from the bus itself: every partition
//! from the first offset whose time is inside the window ([`eddy_log::Bus::offset_for_time`]).
//! A partition whose retention already removed part of the window is reported as a [`Gap`],
//! never silently counted short.

use std::time::Duration;

use eddy_log::{Bus, BusReader, StoredRecord};
use eddy_store::Cut;

use crate::ReadHandle;

/// How long a seed waits for records it knows the bus holds before it gives up on a partition.
const SEED_POLL: Duration = Duration::from_secs(5);

/// Part of a window that the bus no longer holds (deleted by its retention).
#[derive(Debug, Clone)]
pub(crate) struct Gap {
    /// What the answer says about it.
    pub message: String,
    /// The gap is inside the window while the window starts before this time (ns).
    pub until: i64,
}

/// Where reading the bus starts for a seed: per partition the first offset the seed lacks.
pub(crate) struct Start {
    /// Which records the store already gave the window (none when seeded from the bus).
    pub cut: Cut,
    /// Per partition, the offset reading starts at.
    pub read: Vec<u64>,
    /// The window's start at seeding: records before it are outside the window, not late.
    pub window_start: i64,
    /// Warnings of the seed (damaged blocks, gaps).
    pub warnings: Vec<String>,
    /// Stretches of the window the bus no longer holds.
    pub gaps: Vec<Gap>,
}

/// Seeds `live` at `now`: from the store on a bus this node alone digests, else from the bus.
pub(crate) fn start(
    repo: &ReadHandle,
    live: &mut eddy_query::Live,
    now: i64,
) -> Result<Start, eddy_log::Error> {
    let window_start = live.window().bounds(now).0;
    if !repo.seeds_from_bus() {
        let partitions = repo.bus.partition_count(&repo.topic)?;
        let (cut, warnings) = live.seed(&repo.store, now);
        let read = (0..partitions)
            .map(|p| Ok(cut.from(p).max(repo.bus.offsets(&repo.topic, p)?.0)))
            .collect::<Result<_, eddy_log::Error>>()?;
        return Ok(Start {
            cut,
            read,
            window_start,
            warnings,
            gaps: Vec::new(),
        });
    }
    let (read, gaps) = from_window_start(&*repo.bus, &repo.topic, window_start)?;
    Ok(Start {
        cut: Cut::default(),
        read,
        window_start,
        warnings: gaps.iter().map(|g| g.message.clone()).collect(),
        gaps,
    })
}

/// Per partition of `topic`, the first offset whose time is at or after `window_start`, and
/// the gaps where the bus's retention removed part of the window.
fn from_window_start(
    bus: &dyn Bus,
    topic: &str,
    window_start: i64,
) -> Result<(Vec<u64>, Vec<Gap>), eddy_log::Error> {
    let partitions = bus.partition_count(topic)?;
    let mut read = Vec::with_capacity(partitions as usize);
    let mut gaps = Vec::new();
    for p in 0..partitions {
        let (first, _) = bus.offsets(topic, p)?;
        let from = bus.offset_for_time(topic, p, window_start)?.max(first);
        // Records before `first` were deleted: if the oldest held one is inside the window,
        // some of the deleted ones may have been too.
        if from == first && first > 0 {
            if let Some(gap) = gap_before(bus, topic, p, first, window_start)? {
                gaps.push(gap);
            }
        }
        read.push(from);
    }
    Ok((read, gaps))
}

/// The gap in partition `p` if its oldest record (at `first`) is newer than `window_start`.
fn gap_before(
    bus: &dyn Bus,
    topic: &str,
    p: u32,
    first: u64,
    window_start: i64,
) -> Result<Option<Gap>, eddy_log::Error> {
    let mut reader = bus.reader(topic, p, first)?;
    let oldest = reader.poll(SEED_POLL)?.first().map(|r| r.timestamp);
    Ok(oldest.filter(|&t| t > window_start).map(|t| Gap {
        message: format!(
            "incomplete window: the bus no longer holds partition {p} of {topic:?} before \
             offset {first} (its oldest event is from {}); events of the window before then \
             were removed by the bus's retention and are not counted",
            eddy_event::units::format_time(t),
        ),
        until: t,
    }))
}

/// Readers of a repository's partitions made once and kept across catch-ups (on Kafka each is
/// a client of its own).
pub(crate) struct Replayer<'a> {
    repo: &'a ReadHandle,
    readers: Vec<Option<Box<dyn BusReader>>>,
}

impl<'a> Replayer<'a> {
    /// A replayer of `repo`'s topic.
    pub fn new(repo: &'a ReadHandle) -> Replayer<'a> {
        Replayer {
            repo,
            readers: Vec::new(),
        }
    }

    /// The repository it reads.
    pub fn repository(&self) -> &ReadHandle {
        self.repo
    }

    /// Reads partition `p`'s records in `[from, upto)`, handing each to `each`.
    pub fn replay(
        &mut self,
        p: u32,
        from: u64,
        upto: u64,
        mut each: impl FnMut(StoredRecord),
    ) -> Result<(), eddy_log::Error> {
        if self.readers.len() <= p as usize {
            self.readers.resize_with(p as usize + 1, || None);
        }
        let slot = &mut self.readers[p as usize];
        let reader = match slot {
            Some(r) if r.position() == from => r,
            Some(r) => {
                r.seek(from)?;
                r
            }
            None => slot.insert(
                self.repo
                    .bus
                    .reader_skipping_damage(&self.repo.topic, p, from)?,
            ),
        };
        while reader.position() < upto {
            let records = reader.poll(SEED_POLL)?;
            if records.is_empty() {
                break;
            }
            for r in records.into_iter().filter(|r| r.offset < upto) {
                each(r);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use eddy_log::{
        AppendAck, GroupMember, Log, Membership, PartitionChoice, Record, Result, TopicConfig,
    };

    use super::*;

    /// The embedded log, told to be shared: a bus whose retention can be driven in a test.
    struct SharedLog(Arc<Log>);

    impl Bus for SharedLog {
        fn kind(&self) -> &'static str {
            "shared-test"
        }
        fn shared(&self) -> bool {
            true
        }
        fn epoch(&self) -> Result<String> {
            self.0.epoch()
        }
        fn ensure_topic(&self, name: &str, config: &TopicConfig) -> Result<u32> {
            self.0.ensure_topic(name, config)
        }
        fn partition_count(&self, topic: &str) -> Result<u32> {
            self.0.partition_count(topic)
        }
        fn produce(&self, t: &str, r: Vec<Record>, c: PartitionChoice) -> Result<Vec<AppendAck>> {
            self.0.produce(t, r, c)
        }
        fn offsets(&self, topic: &str, partition: u32) -> Result<(u64, u64)> {
            self.0.offsets(topic, partition)
        }
        fn reader(&self, topic: &str, p: u32, offset: u64) -> Result<Box<dyn BusReader>> {
            self.0.reader(topic, p, offset)
        }
        fn commit(&self, group: &str, topic: &str, offsets: &[(u32, u64)]) -> Result<()> {
            self.0.commit(group, topic, offsets)
        }
        fn committed(&self, group: &str, topic: &str, partition: u32) -> Result<Option<u64>> {
            self.0.committed(group, topic, partition)
        }
        fn join(
            &self,
            group: &str,
            topic: &str,
            on_change: Box<dyn FnMut(Membership) + Send>,
        ) -> Result<Box<dyn GroupMember>> {
            self.0.join(group, topic, on_change)
        }
        fn offset_for_time(&self, topic: &str, partition: u32, time_ns: i64) -> Result<u64> {
            self.0.offset_for_time(topic, partition, time_ns)
        }
    }

    const MINUTE: i64 = 60_000_000_000;

    /// A one-partition topic of 4 KiB segments holding 200 records a second apart from
    /// `first`, of which retention (by size) deleted the oldest.
    fn topic_with_deleted_head(first: i64) -> (tempfile::TempDir, SharedLog) {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(Log::open(dir.path()).unwrap());
        let config = TopicConfig {
            partitions: 1,
            segment_bytes: 4096,
            retention_bytes: Some(8192),
            ..TopicConfig::default()
        };
        log.ensure_topic("t", &config).unwrap();
        for i in 0..200 {
            let record = Record::new(vec![b'x'; 100]).with_timestamp(first + i * MINUTE / 60);
            log.produce("t", vec![record], PartitionChoice::Explicit(0))
                .unwrap();
        }
        log.enforce_retention().unwrap();
        let bus = SharedLog(log);
        assert!(
            bus.offsets("t", 0).unwrap().0 > 0,
            "retention deleted the head"
        );
        (dir, bus)
    }

    #[test]
    fn a_window_reaching_past_what_the_bus_keeps_is_named_as_a_gap() {
        let now = eddy_log::now_ns();
        // Records from 10 minutes ago on; the window starts 15 minutes ago.
        let (_dir, bus) = topic_with_deleted_head(now - 10 * MINUTE);
        let (first, _) = bus.offsets("t", 0).unwrap();
        let (read, gaps) = from_window_start(&bus, "t", now - 15 * MINUTE).unwrap();
        assert_eq!(read, vec![first]);
        assert_eq!(gaps.len(), 1, "{gaps:?}");
        assert!(
            gaps[0]
                .message
                .contains(&format!("partition 0 of \"t\" before offset {first}")),
            "{}",
            gaps[0].message
        );
        assert_eq!(
            gaps[0].until,
            now - 10 * MINUTE + first as i64 * MINUTE / 60
        );
    }

    #[test]
    fn a_window_inside_what_the_bus_keeps_starts_at_its_first_event_without_a_gap() {
        let now = eddy_log::now_ns();
        let (_dir, bus) = topic_with_deleted_head(now - 10 * MINUTE);
        // The window starts at the 195th record's time: retention deleted none of it.
        let (read, gaps) =
            from_window_start(&bus, "t", now - 10 * MINUTE + 195 * MINUTE / 60).unwrap();
        assert_eq!(read, vec![195]);
        assert!(gaps.is_empty(), "{gaps:?}");
    }
}
