//! Where a live window's past comes from, and reading the bus up to where the tap is.
//!
//! On the embedded bus this node digests every partition, so its store holds the window's past
//! and the bus is read only from the store's [`Cut`] on. On a shared bus (Kafka) other nodes
//! digest some partitions, so the window's past is read from the bus itself: every partition
//! from the first offset whose time is inside the window ([`eddy_log::Bus::offset_for_time`]).
//! A partition whose retention already removed part of the window is reported as a [`Gap`],
//! never silently counted short.

use std::time::Duration;

use eddy_log::{BusReader, StoredRecord};
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
    let partitions = repo.bus.partition_count(&repo.topic)?;
    if !repo.seeds_from_bus() {
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
    let mut read = Vec::with_capacity(partitions as usize);
    let mut gaps = Vec::new();
    for p in 0..partitions {
        let (first, _) = repo.bus.offsets(&repo.topic, p)?;
        let from = repo
            .bus
            .offset_for_time(&repo.topic, p, window_start)?
            .max(first);
        // Records before `first` were deleted: if the oldest held one is inside the window,
        // some of the deleted ones may have been too.
        if from == first && first > 0 {
            if let Some(gap) = gap_before(repo, p, first, window_start)? {
                gaps.push(gap);
            }
        }
        read.push(from);
    }
    Ok(Start {
        cut: Cut::default(),
        read,
        window_start,
        warnings: gaps.iter().map(|g| g.message.clone()).collect(),
        gaps,
    })
}

/// The gap in partition `p` if its oldest record (at `first`) is newer than `window_start`.
fn gap_before(
    repo: &ReadHandle,
    p: u32,
    first: u64,
    window_start: i64,
) -> Result<Option<Gap>, eddy_log::Error> {
    let mut reader = repo.bus.reader(&repo.topic, p, first)?;
    let oldest = reader.poll(SEED_POLL)?.first().map(|r| r.timestamp);
    Ok(oldest.filter(|&t| t > window_start).map(|t| Gap {
        message: format!(
            "incomplete window: the bus no longer holds partition {p} of {:?} before offset \
             {first} (its oldest event is from {}); events of the window before then were \
             removed by the bus's retention and are not counted",
            repo.topic,
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
